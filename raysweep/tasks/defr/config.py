"""DEFR's config: every field is a dotted key a search space can fix or sweep (e.g. `classifier.init`).

Defaults are the embedded default (synthetic HICO, tiny random ViT, offline MiniLM text encoder, CPU);
`search_spaces/defr_paper.yaml` sets the paper's values.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from raysweep.tasks.config_base import StrictModel, TaskConfig, TrainSection
from raysweep.tasks.defr.detection_config import DetectionConfig


class SynthHicoConfig(StrictModel):
    """Size of the embedded synthetic HICO (used when `data.root` is null)."""

    num_train: int = Field(1600, ge=10)
    num_test: int = Field(400, ge=10)
    image_size: int = Field(64, ge=32, le=1024)
    seed: int = Field(0, ge=0, le=2**32 - 1)


class DataConfig(StrictModel):
    root: Optional[str] = None  # folder with anno.pkl + images/; null = embedded synthetic HICO in the cache
    synth: SynthHicoConfig = SynthHicoConfig()
    image_size: int = Field(64, ge=16, le=2048)  # square input (paper: 672)
    min_samples: int = Field(1, ge=1)  # rare-class rebalancing (paper: 40; 1 = off)
    # Carve a validation split out of the training images (stratified so rare classes keep positives on both
    # sides; the same for every trial). Set by the sweep from the space file's `selection:`.
    validation: bool = False
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    val_seed: int = Field(0, ge=0)  # the split's own seed: not train.seed, so every trial sees the same split
    augment: bool = True
    aug_bright: float = Field(0.4, ge=0.0)
    aug_contra: float = Field(0.4, ge=0.0)
    aug_crop_scale: tuple[float, float] = (0.7, 1.0)
    aug_crop_ratio: tuple[float, float] = (0.7, 1.3)
    normalisation: Literal["auto", "clip", "half", "imagenet"] = "auto"  # auto: chosen by backbone family
    vocabulary: Optional[str] = None  # JSON/TSV giving (verb, object) per class, overriding anno.pkl's hoi_list
    # Few@k class lists: null = DEFR's lists on 600-class HICO, else derived from training counts; "defr",
    # "derived", or a JSON file {"few@1": [...], ...} (see tasks/defr/few_shot.py)
    few_shot_lists: Optional[str] = None
    max_bad_images: float = Field(0.01, ge=0.0, le=1.0)  # fraction of unreadable images tolerated (skipped)
    loader_workers: int = Field(0, ge=0)
    # anno.pkl is read by a restricted unpickler (numpy arrays and built-in types only); true reads any pickle,
    # which can run code: only for a file you trust
    allow_pickle: bool = False


class ModelConfig(StrictModel):
    # Backbone: "vit_tiny" / "vit_small" (random, embedded default), a timm name ("vit_base_patch32_224",
    # "vit_base_patch32_224.augreg_in21k"), a paper alias ("ImageNet1k-ViT-B", "ImageNet21k-ViT-B",
    # "CLIP-ViT-B"), or an open_clip image tower "open_clip:ViT-B-32" / "open_clip:RN50".
    backbone: str = "vit_tiny"
    patch_size: int = Field(16, ge=1)  # for paper aliases / random ViTs (paper: 32; 16 for p16)
    # "random" (no pretrained weights), "hub" (timm/open_clip default tag), a hub tag (e.g. "openai"), or a local
    # checkpoint path. Asking for weights never silently falls back to random.
    weights: str = "random"
    # Random ViTs only. stem "conv" is a hybrid ViT (a small conv stem of stride patch_size feeds the tokens, as the
    # ViT paper's R50+ViT hybrids): it learns far faster from a few hundred images than linear patch embedding.
    stem: Literal["patch", "conv"] = "conv"
    pool: Literal["cls", "avg"] = "cls"  # random ViTs only: image feature = CLS token, or the mean of patch tokens
    width: int = Field(384, ge=8)  # random ViTs only: embedding width (384 = MiniLM's, so language init fits)
    depth: int = Field(2, ge=1)
    heads: int = Field(6, ge=1)
    drop_path: float = Field(0.0, ge=0.0, lt=1.0)


TEXT_ENCODER_NAMES = ("minilm", "bert", "simcse", "clip")  # the forms embeddings._resolve accepts
TEXT_ENCODER_PREFIXES = ("clip:", "open_clip:", "st:", "hf:")
ENCODER_FORMS = ("'minilm', 'bert', 'simcse', 'clip' (the CLIP backbone's own text tower; else OpenAI ViT-B-32), "
                 "'clip:<arch>', 'open_clip:<arch>', 'st:<sentence-transformers name or path>', "
                 "'hf:<transformers name or path>'")


class ClassifierConfig(StrictModel):
    head: Literal["cosine", "linear", "mixing"] = "cosine"  # mixing = DEFR's i-* (fixed C, trainable M = I)
    init: Literal["rand", "language"] = "language"
    shuffle: bool = False  # ablation: language rows assigned to the wrong classes (a seeded permutation)
    # Text encoder for language init: "minilm" (offline, 384-d), "bert" (bert-base-uncased [CLS]),
    # "simcse", "clip" (the text tower + projection of the CLIP backbone's own model; OpenAI ViT-B-32 under other
    # backbones), "clip:<arch>" (OpenAI-family), "open_clip:<arch>", "st:<sentence-transformers name or path>",
    # "hf:<transformers name or path>". Under a CLIP backbone a CLIP text tower of another model is refused unless
    # project is "linear" (see tasks/defr/text_tower.py).
    text_encoder: str = "minilm"
    text_encoder_weights: Optional[str] = None  # local path or hub tag for the text encoder (None = its default)
    project: Literal["auto", "clip_proj", "linear", "none"] = "auto"  # text width != image width
    log_scale: float = 4.61  # s = exp(log_scale); 0 means an un-normalised linear probe (paper's *-linear)
    log_scale_trainable: bool = False
    log_scale_max: float = 4.61

    @field_validator("text_encoder")
    @classmethod
    def _known_encoder(cls, value: str) -> str:
        """Reject a misspelt encoder while the space file is checked, not when a trial first encodes text.

        Only the form is checked (the names and prefixes `embeddings.text_embeddings` resolves); whether a hub
        model can be loaded is found out by the sweep's preparation.
        """
        from raysweep.errors import did_you_mean

        prefixed = any(value.startswith(p) and len(value) > len(p) for p in TEXT_ENCODER_PREFIXES)
        if value in TEXT_ENCODER_NAMES or prefixed:
            return value
        raise ValueError(f"{value!r} is not a known text encoder{did_you_mean(value, TEXT_ENCODER_NAMES)}; "
                         f"allowed: {ENCODER_FORMS}")


class PromptConfig(StrictModel):
    # A template over {verb}/{verb_ing}/{object}, a named one ("default", "gerund", "photo", "ensemble"),
    # or "file:<path>" with one sentence per class (JSON list, class order of the dataset).
    template: str = "default"
    no_interaction: str = "a person and a {object}"  # wording for the per-object 'no interaction' class


class LossConfig(StrictModel):
    name: Literal["lse_sign", "bce", "wbce", "focal"] = "lse_sign"
    focal_alpha: float = Field(0.25, ge=0.0, le=1.0)
    focal_gamma: float = Field(2.0, ge=0.0)


class OptimConfig(StrictModel):
    lr: float = Field(1e-3, gt=0.0)
    backbone_lr_mult: float = Field(1.0, ge=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    no_decay_norm_bias: bool = True  # exclude norms/biases/pos-embeddings from weight decay
    schedule: Literal["cosine_restarts", "cosine_warmup", "cosine", "multistep", "plateau", "constant"] = "cosine_warmup"
    t0: int = Field(5, ge=1)  # cosine_restarts period in epochs (paper: 5)
    warmup_epochs: float = Field(0.5, ge=0.0)
    milestones: tuple[int, ...] = (10, 20, 30)
    gamma: float = Field(0.1, gt=0.0)
    grad_clip_norm: Optional[float] = None


class TrainConfig(TrainSection):
    """epochs, eval_every (paper: 5), test_every and seed come from TrainSection."""

    epochs: int = Field(4, ge=1)
    batch_size: int = Field(32, ge=1)  # per worker (paper: 16 per GPU)
    eval_batch_size: int = Field(128, ge=1)
    amp: Literal["off", "bf16"] = "off"  # bf16 autocast, GPU only


class DefrConfig(TaskConfig):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    prompts: PromptConfig = PromptConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    detection: DetectionConfig = DetectionConfig()  # off by default; docs/defr_detection.md

    @field_validator("model")
    @classmethod
    def _known_backbone(cls, model: ModelConfig) -> ModelConfig:
        """Reject an unknown backbone name while the space file is checked, not when a trial builds the model.

        On DefrConfig rather than ModelConfig, so a bare ModelConfig may still name anything (build_backbone reports
        it then). Mirrors build_backbone's dispatch; timm is imported only for names that are not built in, and
        open_clip architectures are checked when the model is built.
        """
        from raysweep.errors import did_you_mean
        from raysweep.tasks.defr import backbone_names as backbones

        name = model.backbone.strip()
        if name in backbones.RANDOM_VITS:
            return model
        arch = backbones.open_clip_arch(name, model.patch_size)
        if arch:
            return model
        if arch is None:
            import timm

            if timm.is_model(backbones.timm_name(name, model.patch_size).split(".")[0]):
                return model
            hint = did_you_mean(name.split(".")[0], [*backbones.RANDOM_VITS, *timm.list_models()])
        else:
            hint = " (open_clip: needs an architecture, e.g. 'open_clip:ViT-B-32')"
        raise ValueError(f"model.backbone {model.backbone!r} is not a known backbone{hint}; "
                         f"allowed: {backbones.BACKBONE_FORMS}")

    @model_validator(mode="after")
    def _check(self) -> DefrConfig:
        if self.classifier.head == "mixing" and self.classifier.init != "language":
            raise ValueError("classifier.head 'mixing' needs classifier.init 'language' (it mixes fixed text rows)")
        from raysweep.tasks.defr.text_tower import text_tower_mismatch

        mismatch = text_tower_mismatch(self.model, self.classifier)
        if mismatch:
            raise ValueError(mismatch)
        self._check_shapes()
        return self

    def _check_shapes(self) -> None:
        """Shapes that only building the model would reject, caught while the space file is checked."""
        from raysweep.tasks.defr.backbone_names import RANDOM_VITS, backbone_patch_size

        model = self.model
        if model.backbone.strip() in RANDOM_VITS and model.width % model.heads:
            raise ValueError(f"model.width {model.width} must be divisible by model.heads {model.heads} (each "
                             f"attention head gets width / heads channels)")
        patch = backbone_patch_size(model.backbone.strip(), model.patch_size)
        if patch and self.data.image_size % patch:
            size = self.data.image_size
            fitting = max(patch, size // patch * patch)
            raise ValueError(f"data.image_size {size} is not a multiple of the patch size {patch} of model.backbone "
                             f"{model.backbone!r}; use a multiple of {patch} (e.g. {fitting})")
