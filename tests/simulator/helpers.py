"""Helpers for the simulator tests: the small test cluster, proxmoxer clients, task polling."""

from __future__ import annotations

import time
from typing import Any

from proxmoxer import ProxmoxAPI
from proxmoxer.tools import Tasks

from proxlb_opt.cluster import Cluster, cluster_from_dict
from proxlb_opt.simulator import SimulatorServer

FAST = 1000.0  # simulated seconds per real second: a few-GiB migration ends within milliseconds


def small_cluster() -> Cluster:
    """3 nodes (pve3 in HA maintenance), QEMU and LXC guests, local and shared disks, HA guests and rules."""
    nodes = [
        {"name": "pve1", "cpus": 16, "memory": "64G", "disk": "1T", "memory_used": "24G", "cpu_usage": 4},
        {"name": "pve2", "cpus": 16, "memory": "64G", "disk": "1T"},
        {"name": "pve3", "cpus": 8, "memory": "32G", "disk": "512G", "maintenance": True},
    ]
    guests = [
        {"vmid": 100, "name": "web1", "node": "pve1", "memory": "8G", "memory_used": "4G", "cpus": 2,
         "cpu_usage": 0.5, "disk": "32G", "tags": ["plb_affinity_web", "prod"], "pool": "prod"},
        {"vmid": 101, "name": "db1", "node": "pve1", "memory": "16G", "memory_used": "12G", "cpus": 4,
         "cpu_usage": 1.5, "disk": "64G", "disk_used": "40G", "local_disk": True},
        {"vmid": 102, "name": "batch", "node": "pve2", "memory": "4G", "status": "stopped", "disk": "16G"},
        {"vmid": 200, "name": "dns", "type": "ct", "node": "pve2", "memory": "2G", "memory_used": "1G",
         "cpus": 1, "disk": "8G", "disk_used": "3G", "pool": "prod"},
        {"vmid": 201, "name": "mail", "type": "ct", "node": "pve3", "memory": "1G", "status": "stopped",
         "disk": "4G", "local_disk": True},
        {"vmid": 300, "name": "ha-vm", "node": "pve1", "memory": "4G", "memory_used": "2G", "disk": "16G",
         "ha": True},
        {"vmid": 301, "name": "ha-ct", "type": "ct", "node": "pve2", "memory": "1G", "memory_used": "512M",
         "disk": "4G", "ha": True},
    ]
    ha_rules = [
        {"rule": "keep-apart", "type": "resource-affinity", "resources": "vm:300,ct:301", "affinity": "negative"},
        {"rule": "prefer-pve1", "type": "node-affinity", "resources": "vm:300", "nodes": "pve1:2,pve2",
         "strict": False},
    ]
    data = {"version": 1, "cluster": "simtest", "nodes": nodes, "guests": guests, "ha_rules": ha_rules}
    return cluster_from_dict(data, source="<simulator-test>")


def ha_cluster() -> Cluster:
    """3 equal nodes and HA guests under every kind of HA rule, for the HA manager tests.

    vm:100 and vm:101 must stay apart; vm:102 and vm:103 together; vm:104 only on pve1/pve2
    (strict); vm:105 never on pve3 (strict, negative node affinity); vm:106 prefers pve2 (non-strict);
    ct:110 is HA without rules; vm:120 is not HA-managed.
    """
    nodes = [{"name": f"pve{i}", "cpus": 16, "memory": "64G", "disk": "1T"} for i in (1, 2, 3)]
    spec = [(100, "pve1"), (101, "pve2"), (102, "pve1"), (103, "pve1"), (104, "pve1"), (105, "pve1"), (106, "pve2")]
    guests = [{"vmid": vmid, "name": f"ha{vmid}", "node": node, "memory": "4G", "memory_used": "2G", "disk": "16G",
               "ha": True} for vmid, node in spec]
    guests += [{"vmid": 110, "name": "ha-ct", "type": "ct", "node": "pve1", "memory": "1G", "disk": "4G", "ha": True},
               {"vmid": 120, "name": "plain", "node": "pve1", "memory": "4G", "memory_used": "2G", "disk": "16G"}]
    ha_rules = [
        {"rule": "apart", "type": "resource-affinity", "resources": "vm:100,vm:101", "affinity": "negative"},
        {"rule": "together", "type": "resource-affinity", "resources": "vm:102,vm:103", "affinity": "positive"},
        {"rule": "pinned", "type": "node-affinity", "resources": "vm:104", "nodes": "pve1,pve2", "strict": True},
        {"rule": "not-pve3", "type": "node-affinity", "resources": "vm:105", "nodes": "pve3", "strict": True,
         "affinity": "negative"},
        {"rule": "prefer-pve2", "type": "node-affinity", "resources": "vm:106", "nodes": "pve2:2,pve1"},
    ]
    data = {"version": 1, "cluster": "hatest", "nodes": nodes, "guests": guests, "ha_rules": ha_rules}
    return cluster_from_dict(data, source="<simulator-ha-test>")


def client(server: SimulatorServer, **extra: Any) -> ProxmoxAPI:
    """proxmoxer over verified HTTPS with the simulator's CA, password login."""
    return ProxmoxAPI("127.0.0.1", port=server.port, user=server.user, password=server.password,
                      verify_ssl=server.ca_file, timeout=5, **extra)


def token_client(server: SimulatorServer, secret: str | None = None) -> ProxmoxAPI:
    return ProxmoxAPI("127.0.0.1", port=server.port, user=server.user, token_name=server.token_name,
                      token_value=secret or server.token_secret, verify_ssl=server.ca_file, timeout=5)


def task_status(prox: ProxmoxAPI, upid: str) -> dict:
    node = Tasks.decode_upid(upid)["node"]  # tasks are polled on the node in the UPID (the source)
    return prox.nodes(node).tasks(upid).status.get()


def wait_task(prox: ProxmoxAPI, upid: str, timeout: float = 5.0) -> dict:
    """Poll a task until it is stopped; its final status."""
    deadline = time.monotonic() + timeout
    while True:
        status = task_status(prox, upid)
        if status["status"] == "stopped":
            return status
        assert time.monotonic() < deadline, f"task {upid} still running after {timeout} s"
        time.sleep(0.005)
