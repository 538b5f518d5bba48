"""The embedded synthetic HOI vocabulary: 8 everyday objects, 9 verbs plus `no_interaction`, 34 (verb, object) classes.

This is our own small vocabulary, not HICO's 600 classes. It keeps HICO's conventions so the same code paths run on
both: classes are grouped by object, verbs are alphabetical inside a block and `no_interaction` closes every block.
Only combinations the renderer can draw as a distinct picture are included.

`COCO_CATEGORY_ID` and `HICO_VERB_ID` place the vocabulary in HICO-DET's id spaces (COCO category ids 1..90 for
objects, 1-based ids of HICO's 117 verbs), for a synthetic HICO-DET generator.
"""

from __future__ import annotations

NO_INTERACTION = "no_interaction"

# Object blocks, in class order; verbs per object, alphabetical, `no_interaction` last.
_BLOCKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ball", ("carry", "hold", "kick", "look_at", "throw")),
    ("bicycle", ("carry", "look_at", "ride", "walk")),
    ("book", ("carry", "hold", "look_at")),
    ("chair", ("carry", "look_at", "sit_on")),
    ("cup", ("carry", "hold", "look_at")),
    ("dog", ("carry", "look_at", "walk")),
    ("kite", ("fly", "hold", "look_at")),
    ("umbrella", ("carry", "hold")),
)

OBJECTS: list[str] = [obj for obj, _ in _BLOCKS]
VERBS: list[str] = sorted({v for _, verbs in _BLOCKS for v in verbs}) + [NO_INTERACTION]
HOI_CLASSES: list[tuple[str, str]] = [(v, obj) for obj, verbs in _BLOCKS for v in (*verbs, NO_INTERACTION)]

# COCO category ids (the 91-id space HICO-DET annotations use; person = 1).
PERSON_COCO_ID = 1
COCO_CATEGORY_ID: dict[str, int] = {
    "ball": 37,  # sports ball
    "bicycle": 2,
    "book": 84,
    "chair": 62,
    "cup": 47,
    "dog": 18,
    "kite": 38,
    "umbrella": 28,
}

# 1-based ids in HICO's alphabetical 117-verb list. HICO has no "look_at"; its nearest verb is "inspect" (42).
HICO_VERB_ID: dict[str, int] = {
    "carry": 9,
    "fly": 31,
    "hold": 37,
    "kick": 45,
    "look_at": 42,
    "no_interaction": 58,
    "ride": 77,
    "sit_on": 88,
    "throw": 105,
    "walk": 111,
}

# Gerunds the simple spelling rule below gets wrong, plus phrases that read better in prompts.
_GERUND_EXCEPTIONS: dict[str, str] = {
    "no_interaction": "not interacting with",
    "be": "being",
    "see": "seeing",
    "flee": "fleeing",
    "tie": "tying",
    "lie": "lying",
    "die": "dying",
    "dye": "dyeing",
    "hoe": "hoeing",
    "toe": "toeing",
    "visit": "visiting",
    "exit": "exiting",
    "control": "controlling",
    "open": "opening",
    "listen": "listening",
    "herd": "herding",
    "board": "boarding",
    "fix": "fixing",
    "row": "rowing",
    "mow": "mowing",
    "sew": "sewing",
    "tow": "towing",
    "blow": "blowing",
    "flow": "flowing",
    "throw": "throwing",
    "show": "showing",
    "text": "texting",
    "paint": "painting",
    "train": "training",
    "sail": "sailing",
    "peel": "peeling",
    "greet": "greeting",
    "wear": "wearing",
    "load": "loading",
    "read": "reading",
    "feed": "feeding",
    "kiss": "kissing",
    "stir": "stirring",
    "tag": "tagging",
    "hug": "hugging",
    "zip": "zipping",
    "hop": "hopping",
    "flip": "flipping",
    "grab": "grabbing",
    "pet": "petting",
    "cut": "cutting",
    "sit": "sitting",
    "run": "running",
    "set": "setting",
    "stop": "stopping",
    "dry": "drying",
    "fly": "flying",
}

_VOWELS = set("aeiou")


def _gerund_word(word: str) -> str:
    if word in _GERUND_EXCEPTIONS:
        return _GERUND_EXCEPTIONS[word]
    if word.endswith("ie"):
        return word[:-2] + "ying"
    if word.endswith("e") and not word.endswith(("ee", "ye", "oe")) and len(word) > 2:
        return word[:-1] + "ing"
    # Short consonant-vowel-consonant words double their last consonant (sit -> sitting); longer ones usually do not.
    if (
        len(word) <= 4
        and len(word) >= 3
        and word[-1] not in _VOWELS | {"w", "x", "y"}
        and word[-2] in _VOWELS
        and word[-3] not in _VOWELS
    ):
        return word + word[-1] + "ing"
    return word + "ing"


def verb_ing(verb: str) -> str:
    """Present participle of an underscore-joined verb phrase, for prompts: 'sit_on' -> 'sitting on'.

    Works for this vocabulary and for HICO-style verbs ('hop_on' -> 'hopping on', 'drink_with' -> 'drinking with').
    """
    if verb in _GERUND_EXCEPTIONS:
        return _GERUND_EXCEPTIONS[verb]
    head, *rest = verb.split("_")
    return " ".join([_gerund_word(head.lower()), *rest])


def object_words(obj: str) -> str:
    """'sports_ball' -> 'sports ball'."""
    return obj.replace("_", " ")


def hoi_list() -> list[dict]:
    """The class table as `anno.pkl` stores it: 1-based id, verb, object and the verb's gerund."""
    return [
        {"id": i + 1, "verb": verb, "object": obj, "verb_ing": verb_ing(verb)}
        for i, (verb, obj) in enumerate(HOI_CLASSES)
    ]
