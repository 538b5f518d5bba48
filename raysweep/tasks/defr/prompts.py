"""Sentences describing each HOI class, fed to a text encoder for language-initialised classifiers
(DEFR's `prompts.json` format).

DEFR's prompts are "a person {verb} the {object}" for interactions and "a person and a {object}" for the per-object
`no_interaction` classes, plus 73 hand-edited paraphrases that we do not reproduce (pass `file:<path>` for those).
Ensembles give a class several sentences; `embeddings.text_embeddings` averages their unit embeddings.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from raysweep.errors import ConfigError, did_you_mean
from raysweep.tasks.defr.config import PromptConfig

NO_INTERACTION = "no_interaction"
PLACEHOLDERS = ("verb", "verb_ing", "object")
NAMED_TEMPLATES: dict[str, tuple[str, ...]] = {
    "default": ("a person {verb} the {object}",),
    "gerund": ("a person {verb_ing} the {object}",),
    "photo": ("a photo of a person {verb_ing} a {object}",),
}
NAMED_TEMPLATES["ensemble"] = NAMED_TEMPLATES["default"] + NAMED_TEMPLATES["gerund"] + NAMED_TEMPLATES["photo"]
FILE_PREFIX = "file:"

# Gerunds that the spelling rules below get wrong (stress-final two-syllable verbs double their consonant).
_IRREGULAR_GERUNDS = {"be": "being", "control": "controlling", "patrol": "patrolling", "refer": "referring",
                      "admit": "admitting", "quit": "quitting", "picnic": "picnicking", "ski": "skiing",
                      "dye": "dyeing"}
_VOWELS = set("aeiou")


def gerund(verb: str) -> str:
    """The -ing form of a (possibly multi-word, underscore-joined) verb: 'sit_on' -> 'sitting on'.

    Only the first word is inflected. Rules: 'ie' -> 'ying' (tie -> tying); a silent final 'e' is dropped
    (ride -> riding) but not after 'e'/'o'/'y' (see -> seeing, hoe -> hoeing); a one-syllable verb ending
    consonant-vowel-consonant doubles the consonant unless it is w/x/y (run -> running, row -> rowing).
    """
    head, *rest = verb.replace("_", " ").split(" ")
    return " ".join([_gerund_word(head.lower()), *rest])


def _gerund_word(word: str) -> str:
    if word in _IRREGULAR_GERUNDS:
        return _IRREGULAR_GERUNDS[word]
    if word.endswith("ie"):
        return word[:-2] + "ying"
    if word.endswith("e") and len(word) > 2 and word[-2] not in "eoy":
        return word[:-1] + "ing"
    vowel_groups = sum(1 for i, c in enumerate(word) if c in _VOWELS and (i == 0 or word[i - 1] not in _VOWELS))
    if (len(word) >= 3 and vowel_groups == 1 and word[-1] not in _VOWELS | set("wxy")
            and word[-2] in _VOWELS and word[-3] not in _VOWELS):
        return word + word[-1] + "ing"
    return word + "ing"


def class_prompts(class_names: list[tuple[str, str]], cfg: PromptConfig) -> list[list[str]]:
    """One list of sentences per class, in class order. `class_names`: (verb, object) pairs, underscores allowed."""
    if cfg.template.startswith(FILE_PREFIX):
        return _file_prompts(cfg.template[len(FILE_PREFIX):], len(class_names))
    templates = _templates(cfg.template)
    _check_placeholders(cfg.no_interaction, "prompts.no_interaction")
    prompts = []
    for verb, obj in class_names:
        words = dict(verb=verb.replace("_", " "), verb_ing=gerund(verb), object=obj.replace("_", " "))
        if verb == NO_INTERACTION:
            prompts.append([cfg.no_interaction.format(**words)])
        else:
            prompts.append([t.format(**words) for t in templates])
    return prompts


def _templates(template: str) -> tuple[str, ...]:
    if template in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[template]
    fields = _check_placeholders(template, "prompts.template")
    if not fields:
        raise ConfigError(
            f"prompts.template {template!r} is neither a named template{did_you_mean(template, NAMED_TEMPLATES)} "
            f"nor a template with placeholders; allowed: {', '.join(NAMED_TEMPLATES)}, a string using "
            f"{{verb}}/{{verb_ing}}/{{object}}, or 'file:<path>'")
    return (template,)


def _check_placeholders(template: str, key: str) -> set[str]:
    """The placeholder names used in `template`; ConfigError for unknown ones or broken braces."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"{key} {template!r} is not a valid template ({exc}); "
                          f"write placeholders as {{verb}}, {{verb_ing}} or {{object}}") from exc
    unknown = sorted(fields - set(PLACEHOLDERS))
    if unknown:
        raise ConfigError(f"{key} {template!r} uses unknown placeholder(s) {unknown}; allowed: "
                          f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    return fields


def _file_prompts(path: str, num_classes: int) -> list[list[str]]:
    """A JSON list with one sentence, or a list of sentences, per class."""
    file = Path(path).expanduser()
    try:
        entries = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"prompts.template: prompt file {str(file)!r} does not exist") from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise ConfigError(f"prompts.template: prompt file {str(file)!r} is not readable JSON ({exc})") from exc
    if not isinstance(entries, list) or len(entries) != num_classes:
        got = f"{len(entries)} entries" if isinstance(entries, list) else f"a JSON {type(entries).__name__}"
        raise ConfigError(f"prompts.template: prompt file {str(file)!r} has {got}; it must be a JSON list with one "
                          f"sentence (or list of sentences) for each of the {num_classes} classes")
    prompts = []
    for i, entry in enumerate(entries):
        sentences = [entry] if isinstance(entry, str) else entry
        if not isinstance(sentences, list) or not sentences or not all(isinstance(s, str) for s in sentences):
            raise ConfigError(f"prompts.template: prompt file {str(file)!r}, entry {i}: expected a sentence or a "
                              f"non-empty list of sentences, got {entry!r}")
        prompts.append(list(sentences))
    return prompts
