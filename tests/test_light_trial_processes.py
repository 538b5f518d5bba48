"""A trial's Tune driver and Train controller load neither torch nor the task code (fast, no Ray instance).

What these processes import is what unpickling the trainable, the train function and the backend config pulls in,
plus the driver's own imports; each check runs in a fresh interpreter so this test process's imports do not count.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "raysweep.tasks.base", "raysweep.sweep.worker", "optuna")


def _imports_after(code: str) -> dict[str, bool]:
    probe = f"import sys, json\n{code}\nprint(json.dumps({{m: m in sys.modules for m in {list(HEAVY)!r}}}))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=240,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_drivers_trainer_and_the_controllers_payload_import_nothing_heavy(tmp_path) -> None:
    payload = tmp_path / "payload.pkl"
    code = (  # what the Tune driver imports and builds, and what reaches the controller (pickled)
        "import pickle, ray.train, ray.cloudpickle as cp\n"
        "from ray.tune.integration.ray_train import TuneReportCallback\n"
        "from raysweep.sweep.driver import trial_config\n"
        "from raysweep.sweep.torch_backend import LightTorchConfig, light_torch_trainer\n"
        "from raysweep.experiment.layout import FAILURE_KEY\n"
        "from raysweep.sweep.worker_entry import train_loop_per_worker\n"
        "trial_config({'a': {'b': 1}}, {'a.c': 2})\n"
        "trainer = light_torch_trainer(train_loop_per_worker, train_loop_config={'x': 1},\n"
        "    scaling_config=ray.train.ScalingConfig(num_workers=2))\n"
        f"open({str(payload)!r}, 'wb').write(cp.dumps((train_loop_per_worker, LightTorchConfig())))\n"
    )
    assert not any(_imports_after(code).values())
    controller = f"import ray, pickle\nfn, cfg = pickle.loads(open({str(payload)!r}, 'rb').read())\ncfg.backend_cls\n"
    assert not any(_imports_after(controller).values())


SWEEP_PROCESS_HEAVY = ("torch", "torchvision", "timm", "raysweep.tasks.base", "raysweep.tasks.defr.task")


def _tiny_space(tmp_path: Path, data_root: str = "null") -> Path:
    space = tmp_path / "tiny.yaml"
    space.write_text(
        "task: defr\n"
        f"config: {{data: {{root: {data_root}, synth: {{num_train: 40, num_test: 20, image_size: 32}}, image_size: 32}},"
        " model: {depth: 1, patch_size: 8}}\n"
        f"storage: {{cache_dir: {tmp_path / 'cache'}}}\n"
        "search: {optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-3}}\n")
    return space


def test_the_sweeps_own_process_never_imports_torch(tmp_path) -> None:
    """`raysweep tune`'s process lives as long as the sweep: it validates, prepares (in a child process), runs Tune's
    loop and lays out the table from the task's card, with torch and the model code never loaded."""
    space = _tiny_space(tmp_path)
    code = (
        "import sys, json\n"
        "from raysweep.spec.load import load_sweep\n"
        "from raysweep.sweep import tuner\n"
        "from raysweep.sweep.driver import make_trainable\n"
        "from raysweep.sweep.runner import _trial_plan\n"
        "from raysweep.sweep.task_cache import prepare_task\n"
        "from raysweep.sweep.ray_session import local_gpus\n"
        "from raysweep.results.tables import task_table\n"
        f"sweep = load_sweep({str(space)!r}, [])\n"
        "assert sweep.max_epochs >= 1 and sweep.metric == 'val.map'\n"
        "prepare_task(sweep)\n"
        f"tuner.tune_config(sweep, 1, {str(tmp_path / 'journal')!r}, 'x')\n"
        f"tuner.run_config(sweep, {str(tmp_path / 'store')!r}, 'x')\n"
        "from ray.tune.logger import TBXLoggerCallback\n"
        "TBXLoggerCallback()  # Tune adds it to the sweep's process (tensorboardX's writer would import torch)\n"
        f"make_trainable(_trial_plan(sweep, {str(tmp_path / 'store' / 'x')!r}))\n"
        "local_gpus()\n"
        "from raysweep.experiment.meta import versions\n"
        "assert versions()['torch']\n"
        "assert task_table('defr', [{}]).columns\n"
        f"print(json.dumps({{m: m in sys.modules for m in {list(SWEEP_PROCESS_HEAVY)!r}}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == dict.fromkeys(SWEEP_PROCESS_HEAVY, False)
    assert any((tmp_path / "cache").rglob("anno*")), "the child process did not prepare the embedded data"


def test_bad_input_found_while_preparing_is_the_same_one_line_error(tmp_path) -> None:
    from raysweep.errors import DataError
    from raysweep.spec.load import load_sweep
    from raysweep.sweep.task_cache import prepare_task

    sweep = load_sweep(_tiny_space(tmp_path, data_root=str(tmp_path / "missing")), [])
    with pytest.raises(DataError, match=r"data.root .*missing.*: no such folder"):
        prepare_task(sweep, in_child=True)  # as `raysweep tune` runs it (this test process may hold the task code)


def test_light_config_matches_ray_torch_config() -> None:
    from ray.train.torch.config import TorchConfig
    from ray.train.v2._internal.util import TrainingFramework

    from raysweep.sweep.torch_backend import LightTorchConfig

    light = LightTorchConfig()
    assert light.framework is TrainingFramework.TORCH
    assert light.to_dict() == {**TorchConfig().to_dict(), "backend": None}
    assert pickle.loads(pickle.dumps(light)) == light


def test_worker_side_process_group_setup_calls_rays_helper_as_ray_does(monkeypatch) -> None:
    """The keyword arguments the light backend sends match Ray's `_setup_torch_process_group` (gloo, one rank)."""
    import socket

    import torch.distributed as dist

    from raysweep.sweep import torch_backend

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # what on_start's first call sets on every worker
    monkeypatch.setenv("MASTER_PORT", str(port))
    torch_backend._worker_setup_process_group(backend="gloo", world_rank=0, world_size=1, init_method="env://",
                                              timeout_s=30)
    try:
        assert dist.is_initialized() and dist.get_world_size() == 1 and dist.get_backend() == "gloo"
    finally:
        dist.destroy_process_group()
    with torch_backend._DeviceContext():  # no CUDA here: selects nothing, raises nothing
        pass


def test_timeline_marks_only_when_asked(tmp_path, monkeypatch) -> None:
    from raysweep.sweep import timeline

    target = tmp_path / "marks.jsonl"
    monkeypatch.delenv(timeline.TIMELINE_ENV, raising=False)
    timeline.mark("nothing")
    assert not target.exists()
    monkeypatch.setenv(timeline.TIMELINE_ENV, str(target))
    timeline.mark("one")
    timeline.mark("two")
    events = [json.loads(line)["event"] for line in target.read_text().splitlines()]
    assert events == ["one", "two"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
