"""The local Ray instance of `raysweep tune` is on the loopback interface: its node address is 127.0.0.1 and every
process of the instance (GCS, raylet, agents, workers, this driver) listens on loopback addresses only. Without
raysweep's switch, ray 2.60 listens on the wildcard address and on the machine's routable one."""

from __future__ import annotations

import os

import pytest

from support import write_space

pytestmark = pytest.mark.slow


LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def test_local_instance_listens_on_loopback_only(tmp_path, monkeypatch) -> None:
    import ray
    from ray._private import ray_constants

    psutil = pytest.importorskip("psutil")  # ray[default] brings it (importable once ray is imported)

    from raysweep.sweep.local_ray import SINGLE_MACHINE_SWITCH

    # restored after the test: other tests of this process see Ray's defaults again
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", ray_constants.ENABLE_RAY_CLUSTER)
    monkeypatch.setenv(SINGLE_MACHINE_SWITCH, os.environ.get(SINGLE_MACHINE_SWITCH, "1"))

    from raysweep.spec.load import load_sweep
    from raysweep.sweep.ray_session import init_ray

    sweep = load_sweep(write_space(tmp_path, "task: defr\nray: {dashboard_port: 8266}\n"))
    init_ray(sweep, None, 1)
    try:
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        assert all(node["NodeManagerAddress"] == "127.0.0.1" for node in ray.nodes())
        assert ray.get(ray.remote(lambda: 1 + 1).remote()) == 2  # the instance works
        listeners = []
        for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
            try:
                listeners += [(proc.name(), c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet")
                              if c.status == psutil.CONN_LISTEN]
            except psutil.Error:
                continue
    finally:
        ray.shutdown()
    assert len({name for name, _, _ in listeners}) >= 3  # gcs_server, raylet, the agents: the instance was seen
    exposed = [entry for entry in listeners if entry[1] not in LOOPBACK]
    assert exposed == []
