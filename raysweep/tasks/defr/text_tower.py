"""Which CLIP text tower `classifier.text_encoder` means, given the image backbone (see docs/defr.md).

DEFR embeds its class prompts with the text tower of the same CLIP checkpoint as the image tower (ViT-B/32 text for
the p32 configs, ViT-B/16 text for p16) and back-projects them with that checkpoint's `visual.proj`. Text from a
different CLIP model lands in a different joint space, so mixing them is silently wrong. Therefore:

- `clip` under a CLIP backbone is the backbone's own CLIP model: same architecture, same weights (`model.weights`,
  unless `classifier.text_encoder_weights` names them otherwise), and its projection;
- `clip` under any other backbone is OpenAI's ViT-B/32 text tower with its own visual projection (DEFR's
  `classifier_weights_p32`, which its ImageNet configs back-project with);
- an explicit CLIP text tower (`clip:<arch>` for an OpenAI-family model, `open_clip:<arch>`) under a CLIP backbone
  must be that backbone's model; a different one is refused while the space file is validated, unless
  `classifier.project` is `linear` (the rows then stay in their own text space and a trained map joins the two:
  an explicit choice).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from raysweep.tasks.defr.config import ClassifierConfig, ModelConfig

OPENAI_CLIP_PREFIX = "clip:"
OPEN_CLIP_PREFIX = "open_clip:"
_DEFAULT_TAGS = (None, "hub", "openai")  # weights that all mean OpenAI's release of an architecture


class ClipModelRef(NamedTuple):
    """One CLIP model: architecture, weights ('random', 'hub', a tag or a path) and whether it is OpenAI-family."""

    arch: str
    weights: Optional[str]
    openai_family: bool

    def describe(self) -> str:
        weights = "OpenAI weights" if self.weights in _DEFAULT_TAGS else f"weights {self.weights}"
        return f"CLIP {self.arch} ({weights})"


def backbone_clip_model(model: ModelConfig) -> Optional[ClipModelRef]:
    """The CLIP model whose image tower `model.backbone` is, or None for a non-CLIP backbone."""
    from raysweep.tasks.defr.backbone_names import open_clip_arch as _open_clip_arch

    name = model.backbone.strip()
    arch = _open_clip_arch(name, model.patch_size)
    if not arch:
        return None
    return ClipModelRef(arch, model.weights, not name.startswith(OPEN_CLIP_PREFIX))


def text_clip_model(classifier: ClassifierConfig) -> Optional[ClipModelRef]:
    """The CLIP model an explicit CLIP text encoder names (`clip:<arch>` / `open_clip:<arch>`); None otherwise
    (also for plain `clip`, which follows the backbone)."""
    encoder = classifier.text_encoder
    for prefix, openai_family in ((OPENAI_CLIP_PREFIX, True), (OPEN_CLIP_PREFIX, False)):
        if encoder.startswith(prefix) and len(encoder) > len(prefix):
            return ClipModelRef(encoder[len(prefix):], classifier.text_encoder_weights, openai_family)
    return None


def resolve_text_encoder(model: ModelConfig, classifier: ClassifierConfig) -> tuple[str, Optional[str]]:
    """(encoder, weights) that actually embed the class prompts.

    Under a CLIP backbone, plain `clip`, and an explicit CLIP tower of the backbone's architecture, become exactly
    the backbone's model: its form (`clip:<arch>` for the OpenAI family, else `open_clip:<arch>`) and its weights
    (`model.weights`, unless `classifier.text_encoder_weights` is given; random backbone weights leave the text tower
    at its default, the hub release). Everything else is unchanged (plain `clip` elsewhere is OpenAI ViT-B/32).
    """
    encoder, weights = classifier.text_encoder, classifier.text_encoder_weights
    backbone = backbone_clip_model(model)
    explicit = text_clip_model(classifier)
    follows = encoder == "clip" or (explicit is not None and _base_arch(explicit.arch) == _base_arch(backbone.arch)
                                    if backbone is not None else False)
    if backbone is None or not follows:
        return encoder, weights
    prefix = OPENAI_CLIP_PREFIX if backbone.openai_family else OPEN_CLIP_PREFIX
    if weights is None and backbone.weights != "random":
        weights = backbone.weights
    return f"{prefix}{backbone.arch}", weights


def text_tower_mismatch(model: ModelConfig, classifier: ClassifierConfig) -> Optional[str]:
    """One line naming both models when an explicit CLIP text tower differs from the CLIP backbone's model and its
    rows would be read in the backbone's space; None when they agree (or the choice is explicit, see module doc)."""
    if classifier.init != "language" or classifier.project == "linear":
        return None
    backbone = backbone_clip_model(model)
    if backbone is None:
        return None
    if classifier.text_encoder == "clip":
        text = ClipModelRef(backbone.arch, classifier.text_encoder_weights, backbone.openai_family)
    else:
        text = text_clip_model(classifier)
        if text is None:
            return None
    same_arch = _base_arch(text.arch) == _base_arch(backbone.arch)
    same_weights = (text.weights is None or backbone.weights == "random"  # a random tower has no text of its own
                    or _same_weights(text.weights, backbone.weights))
    if same_arch and same_weights:  # resolve_text_encoder then builds exactly the backbone's model
        return None
    shown = repr(classifier.text_encoder) + (f" with classifier.text_encoder_weights {text.weights!r}"
                                             if classifier.text_encoder_weights else "")
    return (f"classifier.text_encoder {shown} is the text tower of {text.describe()}, but model.backbone "
            f"{model.backbone!r} is the image tower of {backbone.describe()}; their embedding spaces differ: use "
            f"classifier.text_encoder 'clip' (the backbone's own text tower) or set classifier.project 'linear' to "
            f"join them with a trained map on purpose")


def _base_arch(arch: str) -> str:
    return arch[: -len("-quickgelu")] if arch.endswith("-quickgelu") else arch


def _same_weights(a: Optional[str], b: Optional[str]) -> bool:
    if a in _DEFAULT_TAGS and b in _DEFAULT_TAGS:
        return True
    return a == b
