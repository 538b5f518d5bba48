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


def synth_hicodet(out: str, seed: int | None = None, num_train: int | None = None, num_test: int | None = None,
                  image_size: int | None = None, detections: bool = False, overwrite: bool = False) -> None:
    """Sizes left unset and the scene are the hqm task's `data.synth` defaults (the one source), so the folder is the
    dataset `data.root: null` uses; `detections` draws every class instead (DEFR detection's HICO-like scene)."""
    from raysweep.data.synth.hicodet import HICO_LIKE, generate_hicodet, scene_of
    from raysweep.tasks.defr.detection_config import SynthDetectionsConfig
    from raysweep.tasks.hqm.config import SynthHicoDetConfig

    default = SynthHicoDetConfig()
    path = generate_hicodet(Path(out), seed=default.seed if seed is None else seed,
                            num_train=default.num_train if num_train is None else num_train,
                            num_test=default.num_test if num_test is None else num_test,
                            image_size=default.image_size if image_size is None else image_size,
                            scene=HICO_LIKE if detections else scene_of(default),
                            detections=SynthDetectionsConfig() if detections else None, overwrite=overwrite,
                            progress=wanted())
    extra = " (with detections/test2015.json and the recognition view anno.pkl)" if detections else ""
    print(f"synthetic HICO-DET written to {path}{extra}")


def synth_vcoco(out: str, seed: int, num_train: int, num_test: int, image_size: int, overwrite: bool = False) -> None:
    from raysweep.data.synth.vcoco import generate_vcoco

    path = generate_vcoco(Path(out), seed=seed, num_train=num_train, num_test=num_test, image_size=image_size,
                          overwrite=overwrite, progress=wanted())
    print(f"synthetic V-COCO written to {path} (official ground-truth files in {path / 'official'})")
