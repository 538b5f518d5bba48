"""Never ask Tune for more concurrent trials than the cluster has trial-driver slots.

Each running trial's driver holds one `sweep_driver` slot (only the head has them: cluster.yaml gives it 8). When
`max_concurrent_trials` is larger, Tune still launches that many trials: Optuna suggests a configuration for each
(without the feedback of the running ones), and the extra trials wait in pending placement groups until a slot frees,
so the GPUs they were counted for stay idle anyway. Capping at the slots keeps the search informed and says which
setting to raise (benchmarks/bench_cluster_scale.py, docs/cluster.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

DRIVER_RESOURCE = "sweep_driver"  # = raysweep.sweep.driver.DRIVER_RESOURCE (that module would import Ray here)

log = logging.getLogger(__name__)


def cap_by_driver_slots(wanted: int, cluster: Mapping[str, float]) -> int:
    """`wanted` concurrent trials, at most the cluster's `sweep_driver` slots (unchanged when it has none yet)."""
    slots = int(cluster.get(DRIVER_RESOURCE, 0))
    if slots < 1 or wanted <= slots:
        return wanted
    log.warning(
        "%d trials could run at a time, but the cluster has %d %r slots for trial drivers: running %d at a "
        "time. Raise the head's `%s` in cluster.yaml (each running trial's driver, Train controller and "
        "placement-group cleaner live there: size the head's memory with it) or set trials.max_concurrent",
        wanted,
        slots,
        DRIVER_RESOURCE,
        slots,
        DRIVER_RESOURCE,
    )
    return slots
