"""Concurrency is capped by the cluster's trial-driver slots (raysweep.sweep.driver_slots); no Ray started."""

from __future__ import annotations

import logging
from pathlib import Path

from raysweep.spec.load import load_sweep
from raysweep.sweep.driver_slots import DRIVER_RESOURCE, cap_by_driver_slots
from raysweep.sweep.ray_session import concurrency as _concurrency

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "defr.yaml"


def test_cap_by_driver_slots(caplog):
    assert cap_by_driver_slots(4, {"GPU": 64, DRIVER_RESOURCE: 8}) == 4
    assert cap_by_driver_slots(8, {"GPU": 64, DRIVER_RESOURCE: 8}) == 8
    assert cap_by_driver_slots(5, {"GPU": 64}) == 5  # no slots known (before Ray started): unchanged
    with caplog.at_level(logging.WARNING):
        assert cap_by_driver_slots(64, {"GPU": 64, DRIVER_RESOURCE: 8}) == 8
    assert "8 'sweep_driver' slots" in caplog.text


def test_cluster_concurrency_stops_at_the_heads_driver_slots():
    # 64 one-GPU trials fit the GPUs, but cluster.yaml's head has 8 driver slots: 8 at a time, not 64 blind samples
    sweep = load_sweep(SPACE, ["trials.num_samples=200", "trials.max_concurrent=null", "resources.use_gpu=true",
                               "resources.cpus_per_worker=4"])
    cluster = {"CPU": 8 + 64 * 4, "GPU": 64, DRIVER_RESOURCE: 8}
    assert _concurrency(sweep, cluster, local=False) == 8
    assert _concurrency(sweep, {**cluster, DRIVER_RESOURCE: 64}, local=False) == 64
