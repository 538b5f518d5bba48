"""`raysweep dashboard`: optuna-dashboard serves the experiment's journal study on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna

from raysweep.experiment.layout import STUDY_FILE
from raysweep.experiment.study import TRIAL_ID_ATTR, study_storage
from support import run_cli


def _experiment_with_a_study(folder: Path) -> None:
    folder.mkdir(parents=True)
    study = optuna.create_study(study_name="exp", storage=study_storage(folder / STUDY_FILE), direction="maximize")
    trial = study.ask({"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
    trial.set_user_attr(TRIAL_ID_ATTR, "abc_00000")
    trial.report(0.25, 1)
    study.tell(trial, 0.3)


def test_dashboard_serves_the_study_over_http(tmp_path: Path) -> None:
    experiment = tmp_path / "store" / "exp"
    _experiment_with_a_study(experiment)
    proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "dashboard", str(experiment)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line
        url = line.split("http://", 1)[1].split("/", 1)[0]
        deadline, body = time.time() + 60, None
        while time.time() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://{url}/api/studies", timeout=5) as response:
                    assert response.status == 200
                    body = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, "the dashboard never answered"
        assert [s["study_name"] for s in body["study_summaries"]] == ["exp"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group this test started
        proc.wait(timeout=30)


def test_dashboard_without_a_study_is_one_line(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["dashboard", str(tmp_path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and STUDY_FILE in err
