"""The experiment's Optuna study on disk: Optuna's journal storage on a file beside the results (no Ray here).

A journal file is safe on NFS (no SQLite locking), is appended live by the searcher, and is readable by
`optuna-dashboard <path>`, `raysweep dashboard` and `optuna.load_study` while the sweep runs. Its study is named after
the experiment; each trial carries its Tune trial id as the user attribute `ray_trial_id`.
"""

from __future__ import annotations

from pathlib import Path

STUDY_FILE = "optuna_study.journal"
TRIAL_ID_ATTR = "ray_trial_id"


def study_storage(journal_path: str | Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(journal_path)))


def load_study(experiment_dir: str | Path, name: str | None = None):
    """The study of a local experiment folder (its only study when `name` is None)."""
    import optuna

    storage = study_storage(Path(experiment_dir) / STUDY_FILE)
    if name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        name = names[0] if len(names) == 1 else Path(experiment_dir).name
    return optuna.load_study(study_name=name, storage=storage)
