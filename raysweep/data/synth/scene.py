"""What a synthetic HOI detection dataset shows (`Scene`), and the scenes the project uses by default.

The one source of the synthetic HICO-DET's scene defaults: `EMBEDDED` is what the `hqm` task's `data.synth`
defaults to (and so what `raysweep data synth hicodet` writes), `HICO_LIKE` every class at its drawn size (DEFR's
detection views). The synthetic V-COCO's scene (`synth.vcoco.VcocoScene`) extends `Scene`. Light on purpose: task
configs import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from raysweep.data.synth.plan import PAIRS_PER_IMAGE_P
from raysweep.data.synth.vocabulary import HOI_CLASSES, OBJECTS
from raysweep.errors import ConfigError


@dataclass(frozen=True)
class Scene:
    """What the images show: which objects (their classes, in vocabulary order), how many pairs per image
    (probabilities of 1, 2, 3), and a size factor on every object."""

    dataset: ClassVar[str] = "synthetic HICO-DET"  # names the dataset in error messages

    objects: tuple[str, ...] = tuple(OBJECTS)
    pairs_per_image: tuple[float, float, float] = PAIRS_PER_IMAGE_P
    object_scale: float = 1.0

    def __post_init__(self) -> None:
        unknown = [o for o in self.objects if o not in OBJECTS]
        if unknown or not self.objects or len(set(self.objects)) != len(self.objects):
            raise ConfigError(f"{self.dataset}: objects must be distinct names from {OBJECTS}, got "
                              f"{list(self.objects)}")
        p = self.pairs_per_image
        if len(p) != 3 or min(p) < 0 or abs(sum(p) - 1.0) > 1e-6:
            raise ConfigError(f"{self.dataset}: pairs_per_image must be 3 probabilities (of 1, 2, 3 pairs) "
                              f"summing to 1, got {list(p)}")
        if not 0.25 <= self.object_scale <= 4.0:
            raise ConfigError(f"{self.dataset}: object_scale must be in [0.25, 4], got {self.object_scale!r}")

    @property
    def classes(self) -> list[tuple[str, str]]:
        """The (verb, object) classes shown, in vocabulary order."""
        return [c for c in HOI_CLASSES if c[1] in self.objects]

    def as_dict(self) -> dict:
        return {"objects": [o for o in OBJECTS if o in self.objects],
                "pairs_per_image": [float(x) for x in self.pairs_per_image], "object_scale": float(self.object_scale)}


HICO_LIKE = Scene()
# The six larger objects (26 classes), mostly one pair per image, objects drawn 1.8x larger: a tiny DETR trained from
# scratch on one CPU core learns it within minutes (on HICO_LIKE it stays at mAP 0).
EMBEDDED = Scene(objects=("ball", "bicycle", "chair", "dog", "kite", "umbrella"), pairs_per_image=(1.0, 0.0, 0.0),
                 object_scale=1.8)
