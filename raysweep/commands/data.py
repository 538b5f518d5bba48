"""`raysweep data synth ...`: write the embedded synthetic datasets in their real layouts, with a progress bar
(where progress is wanted: raysweep.progress)."""

from __future__ import annotations

from pathlib import Path

from raysweep.progress import wanted


def synth_hico(out: str, seed: int, num_train: int, num_test: int, image_size: int, overwrite: bool = False) -> None:
    from raysweep.data.synth.hico import generate_hico

    path = generate_hico(Path(out), seed=seed, num_train=num_train, num_test=num_test, image_size=image_size,
                         overwrite=overwrite, progress=wanted())
    print(f"synthetic HICO written to {path}")


def synth_hicodet(out: str, seed: int, num_train: int, num_test: int, image_size: int,
                  detections: bool = False, overwrite: bool = False) -> None:
    from raysweep.data.synth.hicodet import generate_hicodet
    from raysweep.tasks.defr.detection_config import SynthDetectionsConfig

    path = generate_hicodet(Path(out), seed=seed, num_train=num_train, num_test=num_test, image_size=image_size,
                            detections=SynthDetectionsConfig() if detections else None, overwrite=overwrite,
                            progress=wanted())
    extra = " (with detections/test2015.json and the recognition view anno.pkl)" if detections else ""
    print(f"synthetic HICO-DET written to {path}{extra}")


def synth_vcoco(out: str, seed: int, num_train: int, num_test: int, image_size: int, overwrite: bool = False) -> None:
    from raysweep.data.synth.vcoco import generate_vcoco

    path = generate_vcoco(Path(out), seed=seed, num_train=num_train, num_test=num_test, image_size=image_size,
                          overwrite=overwrite, progress=wanted())
    print(f"synthetic V-COCO written to {path} (official ground-truth files in {path / 'official'})")
