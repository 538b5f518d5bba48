"""`raysweep dashboard EXPERIMENT`: optuna-dashboard on the experiment's study, on 127.0.0.1 and a free port.

Works while the sweep runs (the searcher appends to the journal live) and after it. Only local experiment folders:
a URI experiment's journal is copied next to its results when the sweep ends; download that file and give its folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from raysweep.errors import UserError
from raysweep.experiment import storage
from raysweep.experiment.layout import STUDY_FILE
from raysweep.experiment.study import study_storage
from raysweep.sweep.ray_session import dashboard_port


def run(experiment: str, port: Optional[int] = None, host: str = "127.0.0.1") -> None:
    if storage.is_uri(experiment):
        raise UserError(f"{experiment}: the dashboard reads a local study file; download "
                        f"{storage.join(experiment, STUDY_FILE)} and give its folder")
    folder = Path(experiment).expanduser()
    journal = folder / STUDY_FILE if folder.is_dir() else folder
    if not journal.is_file():
        raise UserError(f"{experiment}: no Optuna study here (expected {folder / STUDY_FILE}, written by "
                        f"`raysweep tune` since this version); give an experiment folder <storage>/<name>")
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise UserError("optuna-dashboard is not installed; `pip install optuna-dashboard`") from None
    chosen = dashboard_port(host, port or 0)
    print(f"Optuna dashboard for {journal}: http://{host}:{chosen}/  (Ctrl-C to stop)", flush=True)
    run_server(study_storage(str(journal)), host=host, port=chosen)
