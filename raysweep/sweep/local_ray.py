"""Keep the local Ray instance of `raysweep tune` on the loopback interface.

A local instance (`ray.init(address="local")`) takes the machine's routable address as its node address, so GCS,
the raylet, the object manager, the dashboard agent and every worker listen on all interfaces, reachable by anyone
on the network. Ray has no `bind_host` for these; `--node-ip-address=127.0.0.1` alone does not move them. What
does is Ray's switch for single-machine instances, `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (read by
`ray._private.services.get_node_ip_address`): the node address becomes 127.0.0.1. It is safe here because a local
instance of raysweep never takes other nodes; joining a cluster (`--address`) leaves it alone.

Measured with ray 2.60 (listening sockets of the instance's processes): 11 on `0.0.0.0`, `::` or the routable
address without it, none off loopback with it (`tests/test_local_ray_binding.py`; docs/security.md).
"""

from __future__ import annotations

import os

SINGLE_MACHINE_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def bind_to_loopback() -> None:
    """Before `ray.init(address="local")`: node address 127.0.0.1 for this process and every process Ray starts."""
    from ray._private import ray_constants

    os.environ[SINGLE_MACHINE_SWITCH] = "0"  # inherited by GCS, raylet, agents and workers
    ray_constants.ENABLE_RAY_CLUSTER = False  # this process read the variable when ray was imported
