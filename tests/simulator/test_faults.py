"""One test per injected fault, set at start or changed at run time, observed through proxmoxer."""

from __future__ import annotations

import time

import pytest
import requests
from proxmoxer import ResourceException

from proxlb_opt.simulator import Faults, SimState, SimulatorServer
from tests.simulator.helpers import FAST, client, small_cluster, task_status, wait_task

GIB = 1024**3


def test_locked_guest(model):
    with SimulatorServer(model, time_scale=FAST, faults=Faults(locked={100: "backup", 200: "snapshot"})) as sim:
        api = client(sim)
        resource = next(r for r in api.cluster.resources.get(type="vm") if r["vmid"] == 100)
        assert resource["lock"] == "backup"
        with pytest.raises(ResourceException) as err:
            api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
        assert (err.value.status_code, err.value.content) == (500, "VM is locked (backup)")
        with pytest.raises(ResourceException):
            api.nodes("pve1").qemu(100).migrate.get()  # the precondition check fails early too
        # LXC checks the lock inside the task, as pve-container does.
        status = wait_task(api, api.nodes("pve2").lxc(200).migrate.post(target="pve1", restart=1))
        assert status["exitstatus"] == "migration aborted"
        assert sim.state.placement()[200] == "pve2"
        sim.faults = Faults()  # lifted at run time
        assert wait_task(api, api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1))["exitstatus"] == "OK"


def test_offline_node(sim, api):
    sim.faults = Faults(offline_nodes={"pve3"})
    with pytest.raises(ResourceException) as err:
        api.nodes("pve3").status.get()
    assert (err.value.status_code, err.value.content) == (595, "No route to host")
    with pytest.raises(ResourceException):
        api.nodes("pve3").tasks.get()
    nodes = {n["node"]: n for n in api.nodes.get()}
    assert nodes["pve3"]["status"] == "offline" and "mem" not in nodes["pve3"]
    ct = next(r for r in api.cluster.resources.get(type="vm") if r["vmid"] == 201)
    assert ct["status"] == "unknown"
    assert next(s for s in api.cluster.status.get() if s["id"] == "node/pve3")["online"] == 0
    status = wait_task(api, api.nodes("pve1").qemu(100).migrate.post(target="pve3", online=1))
    assert status["exitstatus"] == "migration aborted"
    log = " ".join(line["t"] for line in api.nodes("pve1").tasks(status["upid"]).log.get())
    assert "Can't connect to destination address" in log
    assert sim.state.placement()[100] == "pve1" and sim.state.lock_of(100) is None


def test_task_ending_in_error(frozen, frozen_api):
    frozen.faults = Faults(task_error={100: "migration problems"})
    src, dst = (next(n["mem"] for n in frozen_api.nodes.get() if n["node"] == name) for name in ("pve1", "pve2"))
    upid = frozen_api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    frozen.advance(100)
    status = task_status(frozen_api, upid)
    assert (status["status"], status["exitstatus"]) == ("stopped", "migration problems")
    assert frozen.state.placement()[100] == "pve1" and frozen.state.lock_of(100) is None
    after = tuple(next(n["mem"] for n in frozen_api.nodes.get() if n["node"] == name) for name in ("pve1", "pve2"))
    assert after == (src, dst)  # the target released the memory it held
    assert frozen_api.nodes("pve1").tasks.get(errors=1)[0]["upid"] == upid


def test_task_that_never_ends(frozen, frozen_api):
    frozen.faults = Faults(task_hang={100})
    upid = frozen_api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    frozen.advance(86_400)
    assert task_status(frozen_api, upid)["status"] == "running"
    assert frozen.state.lock_of(100) == "migrate" and frozen.state.placement()[100] == "pve1"
    assert frozen.state.node_usage("pve2").mem_used_mib == 4096 + 1536  # still held on the target
    assert [t["upid"] for t in frozen_api.nodes("pve1").tasks.get(source="active")] == [upid]


def test_task_ending_with_warnings(sim, api):
    sim.faults = Faults(task_warnings={100})
    status = wait_task(api, api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1))
    assert status["exitstatus"] == "WARNINGS: 1"
    assert sim.state.placement()[100] == "pve2" and sim.state.lock_of(100) is None
    log = api.nodes("pve1").tasks(status["upid"]).log.get()
    assert log[-1]["t"] == "TASK WARNINGS: 1" and any(line["t"].split(" ", 2)[-1].startswith("WARN:") for line in log)


def test_lost_quorum(sim, api):
    sim.faults = Faults(no_quorum=True)
    with pytest.raises(ResourceException) as err:
        api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert (err.value.status_code, err.value.content) == (500, "cluster not ready - no quorum?")
    assert api.cluster.status.get()[0]["quorate"] == 0  # reads still work
    quorum = next(e for e in api.cluster.ha.status.current.get() if e["type"] == "quorum")
    assert quorum["quorate"] == 0 and quorum["status"].startswith("No quorum on node")
    with pytest.raises(ResourceException) as err:  # PVE checks "local node" before quorum
        api.nodes("pve1").qemu(100).migrate.post(target="pve1", online=1)
    assert err.value.status_code == 400


def test_slow_responses(sim, api):
    sim.faults = Faults(delay=0.2)
    started = time.monotonic()
    assert api.version.get()["release"] == "9.1"
    assert time.monotonic() - started >= 0.2


def test_dropped_connections_first_n(sim, api):
    sim.reset_request_count()
    sim.faults = Faults(drop_first=2)
    for _ in range(2):
        with pytest.raises(requests.exceptions.ConnectionError):
            api.nodes.get()
    assert len(api.nodes.get()) == 3
    count = sim.request_count
    assert (count.total, count.dropped) == (3, 2)


def test_dropped_connections_with_probability_are_seeded(sim, api):
    def outcomes() -> list[bool]:
        sim.faults = Faults(drop_probability=0.5, seed=7)
        results = []
        for _ in range(16):
            try:
                api.version.get()
                results.append(True)
            except requests.exceptions.ConnectionError:
                results.append(False)
        return results

    first = outcomes()
    assert first == outcomes()  # same seed, same pattern
    assert True in first and False in first
    assert sim.request_count.dropped == 2 * first.count(False)


def test_fault_sets_are_normalised():
    faults = Faults(locked=[100], task_error=[101], offline_nodes=["pve3"], task_hang=[5])
    assert faults.locked == {100: "backup"} and faults.task_error == {101: "migration problems"}
    assert faults.offline_nodes == frozenset({"pve3"}) and faults.task_hang == frozenset({5})
    state = SimState(small_cluster(), time_scale=0, faults=Faults(drop_first=1))
    assert state.should_drop() and not state.should_drop()


def test_storage_error_on_a_local_disk_copy(frozen, frozen_api):
    frozen.faults = Faults(storage_error={101})
    before = frozen.state.node_usage("pve2").disk_used_mib
    upid = frozen_api.nodes("pve1").qemu(101).migrate.post(target="pve2", online=1, **{"with-local-disks": 1})
    frozen.advance(5)
    assert task_status(frozen_api, upid)["status"] == "running"
    assert frozen.state.node_usage("pve2").disk_used_mib == before + 40 * 1024  # copying
    frozen.advance(60)
    status = task_status(frozen_api, upid)
    assert (status["status"], status["exitstatus"]) == ("stopped", "migration aborted")
    log = [line["t"] for line in frozen_api.nodes("pve1").tasks(upid).log.get()]
    assert "ERROR: storage migration for 'local:101/vm-101-disk-0.qcow2' to storage 'local' failed - command " in log[-3]
    assert "pvesm import local:101/vm-101-disk-0.qcow2" in log[-3] and log[-3].endswith("failed: exit code 255")
    assert "ERROR: migration aborted (duration 00:00:" in log[-2] and log[-1] == "TASK ERROR: migration aborted"
    assert frozen.state.placement()[101] == "pve1" and frozen.state.lock_of(101) is None
    assert frozen.state.node_usage("pve2").disk_used_mib == before  # the partial copy is gone


def test_storage_error_text_and_containers(sim, api):
    sim.faults = Faults(storage_error={201: "zfs error: cannot receive: out of space", 200: ""})
    status = wait_task(api, api.nodes("pve3").lxc(201).migrate.post(target="pve1"))
    log = " ".join(line["t"] for line in api.nodes("pve3").tasks(status["upid"]).log.get())
    assert status["exitstatus"] == "migration aborted"
    assert "storage migration for 'local:201/vm-201-disk-0.raw' to storage 'local' failed - zfs error" in log
    shared = wait_task(api, api.nodes("pve2").lxc(200).migrate.post(target="pve1", restart=1))
    log = " ".join(line["t"] for line in api.nodes("pve2").tasks(shared["upid"]).log.get())
    assert "storage 'ceph-vm' is not available on node 'pve1'" in log
    assert sim.state.placement()[200] == "pve2" and sim.state.is_running(200)


def test_storage_error_on_shared_storage_is_refused_before_the_task(sim, api):
    sim.faults = Faults(storage_error=[100])
    with pytest.raises(ResourceException) as err:
        api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert (err.value.status_code, err.value.content) == (500, "storage 'ceph-vm' is not available on node 'pve2'")
    assert sim.state.tasks() == ()


def test_update_faults_keeps_the_other_fields(sim, api):
    sim.faults = Faults(locked={100: "backup"})
    sim.update_faults(no_quorum=True)
    assert sim.faults.locked == {100: "backup"} and sim.faults.no_quorum
