"""Tune callback that writes `raysweep_meta.json` when the first trial starts.

An experiment folder with a meta file has run something and is continued with `--resume`; one without it (a start
that failed inside Ray Tune before any trial, e.g. on a scheduler or sampler setting) is started again under the
same name, instead of being stuck between "already exists" and a resume that cannot work.
"""

from __future__ import annotations

from ray.tune import Callback

from raysweep.experiment import storage


class MetaOnFirstTrial(Callback):
    def __init__(self, path: str, text: str) -> None:
        self.path, self.text, self.written = path, text, False

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if not self.written:
            if not storage.exists(self.path):
                storage.write_text_atomic(self.path, self.text)
            self.written = True
