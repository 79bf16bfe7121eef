"""Endpoint semantics beyond the schema: units, filters, routing errors, and the endpoints the extract lacks."""

from __future__ import annotations

import pytest
import requests
from proxmoxer import ResourceException

from tests.simulator.helpers import token_client, wait_task

GIB = 1024**3


def _by_id(items):
    return {item["id"]: item for item in items}


def test_resources_carry_model_values_in_api_units(api):
    items = _by_id(api.cluster.resources.get())
    web = items["qemu/100"]
    assert (web["maxmem"], web["mem"], web["maxdisk"]) == (8 * GIB, 4 * GIB, 32 * GIB)
    assert web["maxcpu"] == 2 and web["cpu"] == pytest.approx(0.25)  # 0.5 cores of 2 vCPUs
    assert web["tags"] == "plb_affinity_web;prod" and web["pool"] == "prod"
    assert web["disk"] == 0  # QEMU reports no file system usage without the agent
    assert items["lxc/200"]["disk"] == 3 * GIB
    assert items["qemu/102"]["status"] == "stopped" and items["qemu/102"]["mem"] == 0
    assert items["qemu/300"]["hastate"] == "started" and "hastate" not in web
    node = items["node/pve1"]
    assert node["maxmem"] == 64 * GIB and node["mem"] == 24 * GIB  # reported usage, kept as given
    assert node["cpu"] == pytest.approx(4 / 16) and node["maxcpu"] == 16
    assert items["node/pve3"]["hastate"] == "maintenance"
    assert {i["type"] for i in items.values()} == {"node", "qemu", "lxc", "storage", "pool", "sdn"}


def test_resources_type_filter(api):
    assert {i["type"] for i in api.cluster.resources.get(type="vm")} == {"qemu", "lxc"}
    assert {i["type"] for i in api.cluster.resources.get(type="node")} == {"node"}
    storages = api.cluster.resources.get(type="storage")
    assert {(s["storage"], s["shared"]) for s in storages} == {("local", 0), ("ceph-vm", 1)}
    with pytest.raises(ResourceException) as err:
        api.cluster.resources.get(type="bogus")
    assert err.value.status_code == 400 and "type" in err.value.errors


def test_guest_lists_per_node_and_psi_types(api):
    qemu = {g["vmid"]: g for g in api.nodes("pve1").qemu.get()}
    assert set(qemu) == {100, 101, 300}
    assert isinstance(qemu[100]["pressurecpusome"], float)
    lxc = api.nodes("pve2").lxc.get()
    assert {g["vmid"] for g in lxc} == {200, 301}
    assert all(isinstance(g["pressurememorysome"], str) for g in lxc)  # LXC PSI comes as strings


def test_status_current_reports_ha(api):
    assert api.nodes("pve1").qemu(300).status.current.get()["ha"] == {"managed": 1, "state": "started"}
    assert api.nodes("pve1").qemu(100).status.current.get()["ha"] == {"managed": 0}
    assert api.nodes("pve2").lxc(301).status.current.get()["ha"]["managed"] == 1


def test_config_tells_local_from_shared_disks(api):
    local = api.nodes("pve1").qemu(101).config.get()
    shared = api.nodes("pve1").qemu(100).config.get()
    assert local["scsi0"].startswith("local:101/") and "size=64G" in local["scsi0"]
    assert shared["scsi0"].startswith("ceph-vm:")
    assert local["memory"] == "16384"  # a string in PVE 9
    assert shared["tags"] == "plb_affinity_web;prod"
    ct = api.nodes("pve3").lxc(201).config.get()
    assert ct["rootfs"].startswith("local:201/") and ct["memory"] == 1024
    assert len(shared["digest"]) == 40


def test_guest_on_another_node_has_no_config(api):
    with pytest.raises(ResourceException) as err:
        api.nodes("pve2").qemu(100).config.get()
    assert err.value.status_code == 500
    assert err.value.content == "Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist"


def test_node_version_status_storage(api):
    assert api.nodes("pve2").version.get()["version"] == "9.1.1"
    status = api.nodes("pve1").status.get()
    assert status["memory"]["total"] == 64 * GIB and len(status["loadavg"]) == 3
    assert all(isinstance(x, str) for x in status["loadavg"])
    local = next(s for s in api.nodes("pve1").storage.get() if s["storage"] == "local")
    assert local["total"] == 1024 * GIB and local["used"] == 40 * GIB  # db1's local disk


def test_rrddata_resolution_and_fields(api):
    hour = api.nodes("pve1").rrddata.get(timeframe="hour", cf="AVERAGE")
    assert len(hour) == 60 and all(b["time"] - a["time"] == 60 for a, b in zip(hour, hour[1:]))
    assert "pressurememorysome" in hour[-1] and "pressurecpufull" not in hour[-1]  # no node cpu "full" PSI
    week = api.nodes("pve1").rrddata.get(timeframe="week")
    assert len(week) == 336 and week[1]["time"] - week[0]["time"] == 1800
    guest = api.nodes("pve2").lxc(200).rrddata.get(timeframe="hour", cf="MAX")
    assert {"cpu", "maxmem", "mem", "netin", "pressurecpufull"} <= set(guest[-1])
    stopped = api.nodes("pve2").qemu(102).rrddata.get(timeframe="hour")
    assert stopped[-1]["mem"] == 0 and "pressurecpusome" not in stopped[-1]  # no value → field omitted
    with pytest.raises(ResourceException) as err:
        api.nodes("pve1").qemu(100).rrddata.get(timeframe="decade")  # decade exists for nodes only
    assert err.value.status_code == 400


def test_pools_and_deprecated_pool_path(api):
    assert api.pools.get() == [{"poolid": "prod"}]
    [prod] = api.pools.get(poolid="prod")
    assert {m["vmid"] for m in prod["members"]} == {100, 200}
    assert {m["vmid"] for m in api.pools("prod").get()["members"]} == {100, 200}
    assert {m["vmid"] for m in api.pools.get(poolid="prod", type="lxc")[0]["members"]} == {200}
    with pytest.raises(ResourceException):
        api.pools("nope").get()


def test_ha_resources_and_rules_filters(api):
    assert [r["sid"] for r in api.cluster.ha.resources.get()] == ["vm:300", "ct:301"]
    assert [r["sid"] for r in api.cluster.ha.resources.get(type="ct")] == ["ct:301"]
    rules = api.cluster.ha.rules.get()
    assert {r["rule"]: r["resources"] for r in rules} == {"keep-apart": "vm:300,ct:301", "prefer-pve1": "vm:300"}
    node_rules = api.cluster.ha.rules.get(type="node-affinity")
    assert node_rules[0]["nodes"] == "pve1:2,pve2" and node_rules[0]["strict"] == 0
    assert [r["rule"] for r in api.cluster.ha.rules.get(resource="ct:301")] == ["keep-apart"]


def test_ha_status_shows_maintenance_mode(api):
    lrm = {e["node"]: e["status"] for e in api.cluster.ha.status.current.get() if e["type"] == "lrm"}
    assert "maintenance mode" in lrm["pve3"]
    assert "maintenance mode" not in lrm["pve1"]


def test_permissions(api):
    perms = api.access.permissions.get()
    assert perms["/"]["VM.Migrate"] == 1 and perms["/"]["Sys.Audit"] == 1
    assert set(api.access.permissions.get(path="/vms")) == {"/vms"}


def test_task_lists_and_log(api):
    upid = api.nodes("pve2").qemu(102).migrate.post(target="pve1")
    wait_task(api, upid)
    [item] = api.nodes("pve2").tasks.get(vmid=102, typefilter="qmigrate")
    assert item["upid"] == upid and item["status"] == "OK" and item["endtime"] >= item["starttime"]
    assert api.nodes("pve2").tasks.get(source="active") == []
    assert api.nodes("pve1").tasks.get() == []  # tasks live on the node that ran them
    assert upid in [t["upid"] for t in api.cluster.tasks.get()]
    log = api.nodes("pve2").tasks(upid).log.get()
    assert log[-1] == {"n": len(log), "t": "TASK OK"}
    assert "starting migration of VM 102 to node 'pve1'" in log[0]["t"]


def test_token_tasks_split_user_and_tokenid(sim):
    api = token_client(sim)
    upid = api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    status = wait_task(api, upid)
    assert (status["user"], status["tokenid"]) == ("root@pam", "proxlb")
    assert upid.endswith(":root@pam!proxlb:")


def test_unknown_task_and_malformed_upid(api):
    with pytest.raises(ResourceException) as err:
        api.nodes("pve1").tasks("UPID:pve1:00000001:00000001:00000001:qmigrate:100:root@pam:").status.get()
    assert err.value.status_code == 400 and err.value.errors == {"upid": "no such task"}
    with pytest.raises(ResourceException) as err:
        api.nodes("pve1").tasks("garbage").status.get()
    assert err.value.errors == {"upid": "unable to parse worker upid"}


def test_routing_errors(sim, api):
    with pytest.raises(ResourceException) as err:
        api.nodes("pve1").frobnicate.get()
    assert err.value.status_code == 501 and err.value.content == "Method 'GET /nodes/pve1/frobnicate' not implemented"
    with pytest.raises(ResourceException) as err:
        api.nodes("nowhere").status.get()
    assert err.value.status_code == 500 and err.value.content.startswith("hostname lookup 'nowhere' failed")
    outside = requests.get(f"https://127.0.0.1:{sim.port}/index.html", verify=sim.ca_file, timeout=5)
    assert outside.status_code == 404


def test_request_counter_by_path_template(sim, api):
    sim.reset_request_count()
    api.nodes.get()
    for node in ("pve1", "pve2"):
        api.nodes(node).qemu.get()
    count = sim.request_count
    assert count.total == 3 and count.dropped == 0
    assert dict(count.by_path) == {"GET /nodes": 1, "GET /nodes/{node}/qemu": 2}
