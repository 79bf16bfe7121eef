"""Migration through the API: preconditions, PVE's checks and texts, tasks, locks, HA detour, containers."""

from __future__ import annotations

import time

import pytest
from proxmoxer import ResourceException

from tests.simulator.helpers import task_status, wait_task

GIB = 1024**3


def _node_mem(api, name):
    return next(n["mem"] for n in api.nodes.get() if n["node"] == name)


def _raises(call, status):
    with pytest.raises(ResourceException) as err:
        call()
    assert err.value.status_code == status
    return err.value


def test_precondition_shapes(api):
    local = api.nodes("pve1").qemu(101).migrate.get(target="pve2")
    assert local["running"] == 1 and sorted(local["allowed_nodes"]) == ["pve2", "pve3"]
    assert [d["volid"] for d in local["local_disks"]] == ["local:101/vm-101-disk-0.qcow2"]
    assert local["local_disks"][0]["size"] == 64 * GIB and local["local_resources"] == []
    assert api.nodes("pve2").qemu(102).migrate.get()["running"] == 0
    ct = api.nodes("pve2").lxc(200).migrate.get()
    assert set(ct) >= {"running", "allowed-nodes", "not-allowed-nodes"}  # hyphens for LXC
    ha = api.nodes("pve1").qemu(300).migrate.get()
    assert ha["not_allowed_nodes"] == {"pve2": {"blocking-ha-resources": [{"sid": "ct:301",
                                                                             "cause": "resource-affinity"}]}}


def test_live_migration_moves_the_guest_and_clears_the_lock(sim, api):
    before = _node_mem(api, "pve2")
    upid = api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert upid.startswith("UPID:pve1:") and ":qmigrate:100:root@pam:" in upid
    status = wait_task(api, upid)
    assert status["exitstatus"] == "OK" and status["node"] == "pve1"
    assert sim.state.placement()[100] == "pve2" and sim.state.lock_of(100) is None
    assert {g["vmid"] for g in api.nodes("pve2").qemu.get()} == {100, 102}
    assert _node_mem(api, "pve2") == before + 4 * GIB  # node usage follows placement
    assert api.nodes("pve2").qemu(100).config.get()["name"] == "web1"
    assert sim.state.to_cluster().node_names[int(sim.state.to_cluster().guest_node[0])] == "pve2"


def test_memory_is_held_on_both_nodes_while_migrating(frozen, frozen_api):
    api = frozen_api
    src, dst = _node_mem(api, "pve1"), _node_mem(api, "pve2")
    upid = api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    frozen.advance(2)  # a 4 GiB guest at 1 GiB/s takes 3 s + 4 s
    assert task_status(api, upid)["status"] == "running"
    assert (_node_mem(api, "pve1"), _node_mem(api, "pve2")) == (src, dst + 4 * GIB)
    resource = next(r for r in api.cluster.resources.get(type="vm") if r["vmid"] == 100)
    assert resource["lock"] == "migrate" and resource["node"] == "pve1"
    assert api.nodes("pve1").qemu(100).config.get()["lock"] == "migrate"
    err = _raises(lambda: api.nodes("pve1").qemu(100).migrate.post(target="pve3", online=1), 500)
    assert err.content == "VM is locked (migrate)"
    frozen.advance(5)
    assert task_status(api, upid)["exitstatus"] == "OK"
    assert (_node_mem(api, "pve1"), _node_mem(api, "pve2")) == (src - 4 * GIB, dst + 4 * GIB)


def test_duration_grows_with_memory_and_local_disks(frozen, frozen_api):
    api = frozen_api
    small = api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)  # 4 GiB used
    big = api.nodes("pve1").qemu(101).migrate.post(target="pve2", online=1, **{"with-local-disks": 1})
    frozen.advance(1000)
    durations = {}
    for upid in (small, big):
        item = next(t for t in api.nodes("pve1").tasks.get(source="all") if t["upid"] == upid)
        durations[upid] = item["endtime"] - item["starttime"]
    assert durations[small] == 7  # 3 s + 4 GiB / 1 GiB/s
    assert durations[big] == 3 + 12 + 40  # memory 12 GiB + local disk 40 GiB
    assert frozen.state.placement()[101] == "pve2"


@pytest.mark.parametrize("params,status,message,errors", [
    ({"target": "pve1", "online": 1}, 400, "Parameter verification failed.", {"target": "target is local node."}),
    ({"target": "pve9", "online": 1}, 500, "no such cluster node 'pve9'", None),
    ({"target": "pve2"}, 500, "can't migrate running VM without --online", None),
    ({"online": 1}, 400, "Parameter verification failed.", {"target": "property is missing and it is not optional"}),
    ({"target": "pve2", "with_local_disks": 1}, 400, "Parameter verification failed.", None),
])
def test_qemu_checks_before_the_task(sim, api, params, status, message, errors):
    err = _raises(lambda: api.nodes("pve1").qemu(100).migrate.post(**params), status)
    assert err.content == message
    if errors:
        assert err.errors == errors
    assert sim.state.tasks() == () and sim.state.lock_of(100) is None


def test_guest_not_on_that_node(api):
    err = _raises(lambda: api.nodes("pve2").qemu(100).migrate.post(target="pve3", online=1), 500)
    assert err.content == "Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist"
    err = _raises(lambda: api.nodes("pve2").qemu(200).migrate.post(target="pve3"), 500)  # a CT, asked as QEMU
    assert "qemu-server/200.conf" in err.content


def test_stopped_vm_migrates_offline(sim, api):
    status = wait_task(api, api.nodes("pve2").qemu(102).migrate.post(target="pve3"))
    assert status["exitstatus"] == "OK" and sim.state.placement()[102] == "pve3"
    assert not sim.state.is_running(102)


def test_live_migration_with_local_disk_needs_the_flag(sim, api):
    status = wait_task(api, api.nodes("pve1").qemu(101).migrate.post(target="pve2", online=1))
    assert status["exitstatus"] == "migration aborted"
    log = [line["t"] for line in api.nodes("pve1").tasks(status["upid"]).log.get()]
    assert any("without with-local-disks option" in line for line in log) and log[-1] == "TASK ERROR: migration aborted"
    assert sim.state.placement()[101] == "pve1" and sim.state.lock_of(101) is None


def test_running_container_needs_restart(sim, api):
    err = _raises(lambda: api.nodes("pve2").lxc(200).migrate.post(target="pve1"), 500)
    assert err.content == "can't migrate running container without --online or --restart"
    online = wait_task(api, api.nodes("pve2").lxc(200).migrate.post(target="pve1", online=1))
    assert online["exitstatus"] == "migration aborted"
    log = " ".join(line["t"] for line in api.nodes("pve2").tasks(online["upid"]).log.get())
    assert "lxc live migration is currently not implemented" in log
    upid = api.nodes("pve2").lxc(200).migrate.post(target="pve1", restart=1)
    assert ":vzmigrate:200:" in upid
    assert wait_task(api, upid)["exitstatus"] == "OK"
    assert sim.state.placement()[200] == "pve1" and sim.state.is_running(200)


def test_container_restart_mode_stops_it_during_the_move(frozen, frozen_api):
    upid = frozen_api.nodes("pve2").lxc(200).migrate.post(target="pve1", restart=1)
    frozen.advance(1)
    status = frozen_api.nodes("pve2").lxc(200).status.current.get()
    assert status["status"] == "stopped" and status["lock"] == "migrate"
    frozen.advance(100)
    assert task_status(frozen_api, upid)["exitstatus"] == "OK"
    assert frozen_api.nodes("pve1").lxc(200).status.current.get()["status"] == "running"


def test_ha_vm_goes_through_hamigrate_then_qmigrate(frozen, frozen_api):
    api = frozen_api
    upid = api.nodes("pve1").qemu(300).migrate.post(target="pve3", online=1)
    assert ":hamigrate:300:root@pam:" in upid
    frozen.advance(1)
    assert task_status(api, upid)["exitstatus"] == "OK"
    resource = next(r for r in api.cluster.resources.get(type="vm") if r["vmid"] == 300)
    assert resource["hastate"] == "migrate" and resource["node"] == "pve1" and "lock" not in resource
    frozen.advance(4)  # the CRM hands the request to the LRM, which starts the real migration
    [real] = api.nodes("pve1").tasks.get(vmid=300, typefilter="qmigrate", source="all")
    assert real["user"] == "root@pam" and "status" not in real  # still running
    assert frozen.state.lock_of(300) == "migrate"
    frozen.advance(60)
    assert task_status(api, real["upid"])["exitstatus"] == "OK"
    assert frozen.state.placement()[300] == "pve3" and frozen.state.lock_of(300) is None
    assert next(e for e in api.cluster.ha.status.current.get() if e.get("sid") == "vm:300")["node"] == "pve3"
    assert next(r for r in api.cluster.resources.get(type="vm") if r["vmid"] == 300)["hastate"] == "started"


def test_ha_container_migrates_in_restart_mode(sim, api):
    upid = api.nodes("pve2").lxc(301).migrate.post(target="pve3", restart=1)
    assert ":hamigrate:301:" in upid and wait_task(api, upid)["exitstatus"] == "OK"
    for _ in range(400):  # the LRM's vzmigrate follows ~15 simulated seconds later
        found = api.nodes("pve2").tasks.get(vmid=301, typefilter="vzmigrate")
        if found:
            break
        time.sleep(0.005)
    assert found and found[0]["status"] == "OK"
    assert sim.state.placement()[301] == "pve3" and sim.state.is_running(301)
