"""QPIC + HQM's config: every field is a dotted key a search space can fix or sweep (e.g. `hqm.gbs`).

Defaults are the embedded default: synthetic HICO-DET, a tiny random ResNet-ish backbone and transformer, small
images, CPU. The comments give the papers' values (QPIC's and HQM's recipes); `search_spaces/hqm_paper.yaml` sets them.
The HQM ablation is `hqm.gbs` x `hqm.amm` on one implementation: neither = QPIC, both = HQM (alternating).
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from raysweep.data.synth.scene import EMBEDDED as EMBEDDED_SCENE
from raysweep.tasks.config_base import StrictModel, TaskConfig, TrainSection


class SynthHicoDetConfig(StrictModel):
    """The embedded synthetic HICO-DET (used when `data.root` is null): sizes and scene.

    The one source of the embedded dataset's defaults (`raysweep data synth hicodet` writes these too). The scene
    defaults are `raysweep.data.synth.scene.EMBEDDED`: the six larger objects (26 classes), drawn 1.8x larger,
    mostly one pair in an image: a tiny DETR trained from scratch on one CPU core learns that within minutes, but
    not the full 34-class scene (`objects` = all eight, pairs [0.4, 0.4, 0.2], scale 1), where it stays at mAP 0
    (docs/benchmarks.md).
    """

    num_train: int = Field(400, ge=10)
    num_test: int = Field(300, ge=10)
    image_size: int = Field(128, ge=32, le=1024)
    seed: int = Field(0, ge=0)
    objects: tuple[str, ...] = EMBEDDED_SCENE.objects
    pairs_per_image: tuple[float, float, float] = EMBEDDED_SCENE.pairs_per_image  # of 1, 2, 3 pairs in an image
    object_scale: float = Field(EMBEDDED_SCENE.object_scale, ge=0.25, le=4.0)

    @model_validator(mode="after")
    def _check(self) -> SynthHicoDetConfig:
        from raysweep.data.synth.vocabulary import OBJECTS

        unknown = [o for o in self.objects if o not in OBJECTS]
        if unknown or not self.objects or len(set(self.objects)) != len(self.objects):
            raise ValueError(f"data.synth.objects = {list(self.objects)}: give distinct names from {OBJECTS}")
        p = self.pairs_per_image
        if min(p) < 0 or abs(sum(p) - 1.0) > 1e-6:
            raise ValueError(f"data.synth.pairs_per_image = {list(p)}: probabilities of 1, 2, 3 pairs must be "
                             f">= 0 and sum to 1")
        return self


class DataConfig(StrictModel):
    # "hicodet", or "vcoco": V-COCO in QPIC's layout (29 verb classes, 80 objects + "missing"; docs/hqm.md).
    dataset: Literal["hicodet", "vcoco"] = "hicodet"
    # Folder with annotations/{trainval_hico.json, test_hico.json, corre_hico.npy} and images/{train2015,test2015}
    # (V-COCO: annotations/{trainval_vcoco.json, test_vcoco.json, corre_vcoco.npy}, images/{train2014,val2014});
    # null = the embedded synthetic dataset, generated into the cache.
    root: Optional[str] = None
    synth: SynthHicoDetConfig = SynthHicoDetConfig()
    # Shorter side for training, chosen at random (paper: 480, 512, ..., 800) and the cap on the longer side (1333).
    # The embedded default trains at the image size only: with QPIC's multi-scale resize, crop and colour jitter
    # scaled down (scales 96..128, crops 64..112, jitter 0.4) the tiny model stays near mAP 0 (0.02 after 40 epochs).
    train_scales: tuple[int, ...] = (128,)
    max_size: int = Field(213, ge=16)
    # The crop alternative: resize the short side to one of these (paper: 400, 500, 600), then crop a random
    # size in [crop_min, crop_max] on each side (paper: 384, 600), then the multi-scale resize above.
    # Embedded default: 128 / 128..128 on 128 px images, i.e. the crop keeps the whole image.
    crop_resize_scales: tuple[int, ...] = (128,)
    crop_min: int = Field(128, ge=8)
    crop_max: int = Field(128, ge=8)
    test_size: int = Field(128, ge=16)  # paper: 800
    test_max_size: int = Field(213, ge=16)  # paper: 1333
    augment: bool = True  # flip, colour jitter, random resize / crop (False: resize to max(train_scales) only)
    color_jitter: float = Field(0.0, ge=0.0)  # brightness = contrast = saturation (paper: 0.4)
    loader_workers: int = Field(0, ge=0)
    # Carve a validation split out of the training images (stratified over HOI classes; the same for every trial).
    # Set by the sweep from the space file's `selection:`; the test split is then reported beside it.
    validation: bool = False
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    val_seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        for key in ("train_scales", "crop_resize_scales"):
            sizes = getattr(self, key)
            if not sizes or min(sizes) < 8:
                raise ValueError(f"data.{key} = {list(sizes)} needs at least one size, all >= 8")
        if self.crop_min > self.crop_max:
            raise ValueError(f"data.crop_min <= data.crop_max must hold, but got ({self.crop_min}, {self.crop_max})")
        if self.crop_min > min(self.crop_resize_scales):
            raise ValueError(f"data.crop_min ({self.crop_min}) must not exceed the smallest data.crop_resize_scales "
                             f"({min(self.crop_resize_scales)}): the crop would not fit")
        return self


class ModelConfig(StrictModel):
    backbone: Literal["resnet50", "resnet101", "resnet18", "resnet34", "tiny"] = "tiny"  # paper: resnet50
    tiny_width: int = Field(16, ge=4)  # "tiny" only: channels of the first stage (the last has 8x)
    d_model: int = Field(64, ge=8)  # paper: 256
    nhead: int = Field(4, ge=1)  # paper: 8
    enc_layers: int = Field(2, ge=0)  # paper: 6
    dec_layers: int = Field(2, ge=1)  # paper: 6
    dim_feedforward: int = Field(128, ge=8)  # paper: 2048
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    pre_norm: bool = False  # DETR's normalize_before; the papers use post-norm
    # paper: 100 (also QPIC's cap on boxes per training image). 8 for one pair per synthetic image: with 16 the
    # embedded default takes off later and less reliably (mAP 0.14 vs 0.37 after 40 epochs, same data and seed).
    num_queries: int = Field(8, ge=1)
    aux_loss: bool = True  # losses on every decoder layer, not only the last
    # A DETR checkpoint (e.g. detr-r50-e632da11.pth), converted as QPIC's convert_parameters does, or a QPIC- or
    # HQM-layout checkpoint; null = random init (torchvision ResNets without ImageNet weights).
    pretrained: Optional[str] = None
    # Where the four heads sit in the state dict: "qpic" (top level) or "hqm" (under transformer.decoder, so files
    # trained with HQM's code load and saves look like HQM's). Same computation either way.
    layout: Literal["qpic", "hqm"] = "qpic"
    # "xavier": HQM's heads get the transformer's xavier re-init (a side effect of living inside the decoder).
    head_init: Literal["torch_default", "xavier"] = "torch_default"

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.d_model % self.nhead:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.nhead ({self.nhead})")
        if self.d_model % 2:
            raise ValueError(f"model.d_model ({self.d_model}) must be even (half for y, half for x positions)")
        return self


class MatcherConfig(StrictModel):
    cost_obj_class: float = Field(1.0, ge=0.0)
    cost_verb_class: float = Field(1.0, ge=0.0)
    cost_bbox: float = Field(2.5, ge=0.0)  # QPIC's README value (code default 5)
    cost_giou: float = Field(1.0, ge=0.0)  # QPIC's README value (code default 2)


class LossConfig(StrictModel):
    obj_ce: float = Field(1.0, ge=0.0)
    verb: float = Field(1.0, ge=0.0)
    bbox: float = Field(2.5, ge=0.0)
    giou: float = Field(1.0, ge=0.0)
    eos_coef: float = Field(0.1, ge=0.0)  # CE weight of the no-object class
    verb_loss_type: Literal["focal", "bce"] = "focal"


class HardPositiveConfig(StrictModel):
    """HQM's hard-positive branches (docs/hqm.md). Both off = QPIC."""

    gbs: bool = False  # shifted-GT queries (GBS)
    amm: bool = False  # attention-masked learnable queries (AMM)
    # With both on, which branch runs in an iteration: "ajl" alternates GBS, AMM, GBS, ... restarting with GBS
    # every epoch (the paper's recipe); "random" picks one at random each iteration.
    alternation: Literal["ajl", "random"] = "ajl"
    hard_weight: float = Field(0.8, ge=0.0)  # hard-branch loss weights = this x the main weights
    gbs_band: tuple[float, float] = (0.4, 0.6)  # accepted IoU with the GT box, strict on both ends
    gbs_attempts: int = Field(40, ge=1)
    gbs_accept_ratio: float = Field(0.7, ge=0.0, le=1.0)  # fraction of the batch's boxes that must be in band
    gbs_step: float = Field(0.04, gt=0.0)  # grid step of scale and shift (k in -10..9)
    amm_topk: int = Field(100, ge=1)  # K: most-attended keys per (head, query); clamped to the number of keys
    amm_fraction: float = Field(0.4, ge=0.0, le=1.0)  # floor(fraction * K) of them are hidden
    amm_skip_final_norm: bool = True  # the reference's AMM heads see the raw layer output (no decoder.norm)

    @model_validator(mode="after")
    def _check(self) -> HardPositiveConfig:
        lo, hi = self.gbs_band
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"hqm.gbs_band needs 0 <= low < high <= 1, but got ({lo}, {hi})")
        return self


class OptimConfig(StrictModel):
    lr: float = Field(1e-4, gt=0.0)
    # 0 freezes the whole backbone; > 0 trains layer2..layer4. Paper 1e-5 for the pretrained R50; the random tiny
    # backbone needs ~3e-4 (search_spaces/hqm.yaml): at lr/10 it stays near mAP 0, at 5e-4 it does not take off.
    lr_backbone: float = Field(1e-5, ge=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    lr_drop: int = Field(28, ge=1)  # StepLR x0.1 every lr_drop epochs (paper: 100 QPIC, 55 HQM)
    clip_max_norm: float = Field(0.1, ge=0.0)  # 0 = no clipping


class TrainConfig(TrainSection):
    """test_every and seed come from TrainSection; epochs and eval_every have HQM's defaults."""

    epochs: int = Field(36, ge=1)  # paper: 150 QPIC, 80 HQM; the embedded default takes off around epoch 20-30
    batch_size: int = Field(4, ge=1)  # per worker (paper: 2 per GPU x 8)
    eval_batch_size: int = Field(8, ge=1)
    # Evaluate every k epochs and after the last (QPIC: every epoch; HQM: every 5th, and every epoch after 40).
    eval_every: int = Field(5, ge=1)
    # bf16 autocast of the network's forward on a GPU trial (CPU trials ignore it); the matcher and the losses run
    # in fp32 on the network's outputs.
    amp: Literal["off", "bf16"] = "off"


class EvalConfig(StrictModel):
    # "qpic": QPIC's Python evaluator (top 100 triplets per image, GT-less images never yield FPs);
    # "official": the official HO-RCNN Matlab protocol (docs/hicodet_protocols.md).
    protocol: Literal["qpic", "official"] = "qpic"
    # V-COCO only (always the official evaluator's agent / role AP): the ground truth it reads. "qpic": rebuilt from
    # test_vcoco.json (persons without any hoi are ignored, no clipping); "official": vcoco_test.json, the COCO
    # instances file and vcoco_test.ids, found in data.root, data.root/official or v-coco's data/ layout there.
    vcoco_ground_truth: Literal["qpic", "official"] = "qpic"


class HqmConfig(TaskConfig):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    matcher: MatcherConfig = MatcherConfig()
    loss: LossConfig = LossConfig()
    hqm: HardPositiveConfig = HardPositiveConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
