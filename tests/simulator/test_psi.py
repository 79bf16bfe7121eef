"""Pressure stall information as PVE 9 reports it: live per guest, nodes only in rrddata, defaults from load
(psi.py's formula) and values a test sets, with their history in rrddata."""

from __future__ import annotations

from typing import Iterator

import pytest
from proxmoxer import ProxmoxAPI

from proxlb_opt.cluster import Cluster, cluster_from_dict
from proxlb_opt.simulator import SimulatorServer
from proxlb_opt.simulator.psi import GUEST_KEYS, NODE_KEYS, knee
from tests.simulator.helpers import client


def psi_cluster() -> Cluster:
    """A hot node (memory 15/16 GiB, CPU demand 9 of 8 cores) and a cold one, with a VM and a CT on each."""
    nodes = [{"name": "hot", "cpus": 8, "memory": "16G", "disk": "512G", "memory_used": "15G", "cpu_usage": 9},
             {"name": "cold", "cpus": 8, "memory": "64G", "disk": "512G"}]
    guests = [
        {"vmid": 100, "name": "hot-vm", "node": "hot", "memory": "4G", "memory_used": "4G", "cpus": 2, "disk": "8G"},
        {"vmid": 101, "name": "hot-ct", "type": "ct", "node": "hot", "memory": "2G", "memory_used": "1G",
         "disk": "8G"},
        {"vmid": 200, "name": "cold-vm", "node": "cold", "memory": "8G", "memory_used": "2G", "disk": "8G"},
        {"vmid": 201, "name": "cold-off", "node": "cold", "memory": "8G", "status": "stopped", "disk": "8G"},
    ]
    return cluster_from_dict({"version": 1, "cluster": "psi", "nodes": nodes, "guests": guests}, source="<psi>")


@pytest.fixture
def psi_sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(psi_cluster(), time_scale=0.0) as server:
        yield server


@pytest.fixture
def psi_api(psi_sim) -> ProxmoxAPI:
    return client(psi_sim)


def _psi(item: dict) -> dict:
    return {k: item[k] for k in GUEST_KEYS}


def test_default_formula_from_load(psi_api):
    [vm] = psi_api.nodes("hot").qemu.get()
    # CPU: 9 of 8 cores → knee(1.125) = 75; memory: the guest uses all of its 4 GiB → knee(1.0) = 50.
    assert _psi(vm) == {"pressurecpusome": 75.0, "pressurecpufull": 37.5, "pressureiosome": 0.0,
                        "pressureiofull": 0.0, "pressurememorysome": 50.0, "pressurememoryfull": 25.0}
    [ct] = psi_api.nodes("hot").lxc.get()
    # The CT uses half its memory, but its node 15/16 GiB → knee(0.9375) = 37.5; LXC sends strings.
    assert _psi(ct) == {"pressurecpusome": "75.00", "pressurecpufull": "37.50", "pressureiosome": "0.00",
                        "pressureiofull": "0.00", "pressurememorysome": "37.50", "pressurememoryfull": "18.75"}
    cold = {g["vmid"]: g for g in psi_api.nodes("cold").qemu.get()}
    assert set(_psi(cold[200]).values()) == {0.0} and set(_psi(cold[201]).values()) == {0.0}
    assert (knee(0.75), knee(1.0), knee(2.0)) == (0.0, 50.0, 100.0)


def test_node_psi_only_in_rrddata(psi_api):
    hot = psi_api.nodes("hot").rrddata.get(timeframe="hour")[-1]
    cold = psi_api.nodes("cold").rrddata.get(timeframe="hour")[-1]
    assert set(NODE_KEYS) <= set(hot) and "pressurecpufull" not in hot
    assert hot["pressurecpusome"] > cold["pressurecpusome"] == 0.0
    assert hot["pressurememorysome"] > cold["pressurememorysome"] == 0.0
    places = [psi_api.cluster.resources.get(), psi_api.nodes.get(), [psi_api.nodes("hot").status.get()]]
    assert not any(k.startswith("pressure") for items in places for item in items for k in item)


def test_set_guest_values_show_live_and_in_rrddata(psi_sim, psi_api):
    psi_sim.state.set_pressure(200, pressurememorysome=42.5, pressurememoryfull=30)
    vm = psi_api.nodes("cold").qemu(200).status.current.get()
    assert (vm["pressurememorysome"], vm["pressurememoryfull"], vm["pressurecpusome"]) == (42.5, 30.0, 0.0)
    for cf in ("AVERAGE", "MAX"):
        last = psi_api.nodes("cold").qemu(200).rrddata.get(timeframe="hour", cf=cf)[-1]
        assert (last["pressurememorysome"], last["pressurememoryfull"]) == (42.5, 30.0)
    psi_sim.state.set_pressure(101, pressurecpufull=12)  # strings for containers
    assert psi_api.nodes("hot").lxc(101).status.current.get()["pressurecpufull"] == "12.00"
    psi_sim.state.set_pressure(201, pressurecpusome=99)  # a stopped guest has no pressure
    assert psi_api.nodes("cold").qemu(201).status.current.get()["pressurecpusome"] == 0.0


def test_set_node_values_keep_their_history_in_rrddata(psi_sim, psi_api):
    psi_sim.state.set_pressure("cold", pressurecpusome=80, pressureiofull=5)
    psi_sim.advance(600)  # ten hour-buckets later the spike ends
    psi_sim.state.clear_pressure("cold")
    psi_sim.advance(600)
    rows = psi_api.nodes("cold").rrddata.get(timeframe="hour")
    spike = [r["time"] for r in rows if r["pressurecpusome"] == 80.0]
    assert 9 <= len(spike) <= 11 and all(r["pressureiofull"] == 5.0 for r in rows if r["time"] in spike)
    assert rows[-1]["pressurecpusome"] == 0.0 and rows[0]["pressurecpusome"] == 0.0
    assert rows[-1]["pressureiofull"] == 0.05  # the default baseline again


def test_set_values_are_checked(psi_sim):
    with pytest.raises(ValueError):
        psi_sim.state.set_pressure("hot", pressurecpufull=10)  # nodes have no cpu "full"
    with pytest.raises(ValueError):
        psi_sim.state.set_pressure(100, pressurecpusome=101)
    with pytest.raises(ValueError):
        psi_sim.state.set_pressure("nowhere", pressurecpusome=1)
    with pytest.raises(ValueError):
        psi_sim.state.set_pressure(999, pressurecpusome=1)
