"""`raysweep data synth ...`: write the embedded synthetic datasets in their real layouts."""

from __future__ import annotations

from pathlib import Path


def synth_hico(out: str, seed: int, num_train: int, num_test: int, image_size: int) -> None:
    from raysweep.data.synth.hico import generate_hico

    path = generate_hico(Path(out), seed=seed, num_train=num_train, num_test=num_test, image_size=image_size)
    print(f"synthetic HICO written to {path}")


def synth_hicodet(out: str, seed: int, num_train: int, num_test: int, image_size: int,
                  detections: bool = False) -> None:
    from raysweep.data.synth.hicodet import generate_hicodet
    from raysweep.tasks.defr.detection_config import SynthDetectionsConfig

    path = generate_hicodet(Path(out), seed=seed, num_train=num_train, num_test=num_test, image_size=image_size,
                            detections=SynthDetectionsConfig() if detections else None)
    extra = " (with detections/test2015.json and the recognition view anno.pkl)" if detections else ""
    print(f"synthetic HICO-DET written to {path}{extra}")


def synth_vcoco(out: str, seed: int, num_train: int, num_test: int, image_size: int) -> None:
    from raysweep.data.synth.vcoco import generate_vcoco

    path = generate_vcoco(Path(out), seed=seed, num_train=num_train, num_test=num_test, image_size=image_size)
    print(f"synthetic V-COCO written to {path} (official ground-truth files in {path / 'official'})")
