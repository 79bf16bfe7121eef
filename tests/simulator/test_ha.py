"""The simulated HA manager through proxmoxer: master, datacenter crs, PVE 9.2 fields, and HA rules enforced
the way PVE enforces them (refused, co-migrated, or moved back by the CRM)."""

from __future__ import annotations

import re
from typing import Iterator

import pytest
from proxmoxer import ProxmoxAPI, ResourceException

from proxlb_opt.cluster import HaRule
from proxlb_opt.simulator import SimulatorServer
from tests.simulator.helpers import client, ha_cluster, task_status
from tests.simulator.schema_check import returns_of, violations

CTIME = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"  # Perl's scalar localtime()


@pytest.fixture
def ha_sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(ha_cluster(), time_scale=0.0, pve_version="9.2.6") as server:
        yield server


@pytest.fixture
def ha_api(ha_sim) -> ProxmoxAPI:
    return client(ha_sim)


def _status(api) -> list[dict]:
    return api.cluster.ha.status.current.get()


def _tasks(sim, vmid, ttype):
    return [t for t in sim.state.tasks() if t.vmid == vmid and t.type == ttype]


# ---------------------------------------------------------------------- master, crs, 9.2 fields

def test_status_order_and_master_entry(ha_sim, ha_api):
    entries = _status(ha_api)
    assert [e["type"] for e in entries[:6]] == ["quorum", "master", "fencing", "lrm", "lrm", "lrm"]
    assert {e["type"] for e in entries[6:]} == {"service"}
    master = entries[1]
    assert master["id"] == "master" and master["node"] == "pve1"
    assert re.fullmatch(rf"pve1 \(active, {CTIME}\)", master["status"])
    assert master["timestamp"] == int(ha_sim.now())
    assert entries[2]["status"] == "armed (CRM watchdog active)" and entries[2]["armed-state"] == "armed"
    lrm = {e["node"]: e["status"] for e in entries if e["type"] == "lrm"}
    assert re.fullmatch(rf"pve1 \(active, watchdog active, {CTIME}\)", lrm["pve1"])
    assert violations(returns_of("/cluster/ha/status/current"), entries) == []


def test_master_is_configurable_at_run_time(ha_sim, ha_api):
    ha_sim.state.set_ha_master("pve3")
    assert [e["node"] for e in _status(ha_api) if e["type"] == "master"] == ["pve3"]
    ha_sim.state.set_crs("ha=dynamic")
    master = next(e for e in _status(ha_api) if e["type"] == "master")
    assert master["status"].endswith(") - dynamic load CRS")
    ha_sim.state.set_node_online("pve3", False)  # another node takes the manager lock over
    assert next(e for e in _status(ha_api) if e["type"] == "master")["node"] == "pve1"
    ha_sim.state.set_ha_master(None)
    entries = _status(ha_api)
    assert "master" not in {e["type"] for e in entries}
    assert next(e for e in entries if e["type"] == "fencing")["armed-state"] == "standby"
    with pytest.raises(ValueError):
        ha_sim.state.set_ha_master("pve9")


def test_master_given_at_start(model):
    with SimulatorServer(model, time_scale=0.0, ha_master="pve2") as sim:
        assert next(e for e in _status(client(sim)) if e["type"] == "master")["node"] == "pve2"


def test_cluster_options_crs_as_pve_parses_it(ha_sim, ha_api):
    options = ha_api.cluster.options.get()
    assert "crs" not in options and options["mac_prefix"] == "BC:24:11" and options["allowed-tags"] == []
    ha_sim.state.set_crs("ha=dynamic,ha-auto-rebalance=1,ha-auto-rebalance-threshold=25,"
                         "ha-auto-rebalance-margin=5,ha-auto-rebalance-method=topsis")
    assert ha_api.cluster.options.get()["crs"] == {
        "ha": "dynamic", "ha-auto-rebalance": 1, "ha-auto-rebalance-threshold": "25",
        "ha-auto-rebalance-margin": "5", "ha-auto-rebalance-method": "topsis"}
    ha_sim.state.set_crs({"ha": "static", "ha-rebalance-on-start": True})
    assert ha_api.cluster.options.get()["crs"] == {"ha": "static", "ha-rebalance-on-start": 1}
    for bad in ("ha=fancy", "ha-auto-rebalance-threshold=20", "ha-auto-rebalance=1,ha-auto-rebalance-margin=120",
                "nonsense=1", "ha"):
        with pytest.raises(ValueError):
            ha_sim.state.set_crs(bad)


def test_crs_given_at_start(model):
    with SimulatorServer(model, time_scale=0.0, crs="ha=static") as sim:
        options = client(sim).cluster.options.get()
        assert options["crs"] == {"ha": "static"} and options["allowed-tags"] == ["plb_affinity_web", "prod"]


def test_auto_rebalance_on_pve_9_2(ha_sim, ha_api):
    resources = {r["sid"]: r for r in ha_api.cluster.ha.resources.get()}
    assert resources["vm:100"]["auto-rebalance"] == 1 and resources["vm:100"]["failback"] == 0
    ha_sim.state.set_ha_resource(100, auto_rebalance=False, failback=True)
    resources = {r["sid"]: r for r in ha_api.cluster.ha.resources.get()}
    assert (resources["vm:100"]["auto-rebalance"], resources["vm:100"]["failback"]) == (0, 1)
    service = next(e for e in _status(ha_api) if e.get("sid") == "vm:100")
    assert service["auto-rebalance"] == 0
    nodes = ha_api.cluster.resources.get(type="node")
    assert {n["host-arch"] for n in nodes} == {"x86_64"}
    assert ha_api.version.get() == {"version": "9.2.6", "release": "9.2", "repoid": "42ab1e2b"}
    with pytest.raises(ValueError):
        ha_sim.state.set_ha_resource(120, auto_rebalance=False)  # not HA-managed


def test_pve_9_1_has_no_9_2_fields(api):
    assert all("auto-rebalance" not in r for r in api.cluster.ha.resources.get())
    assert all("auto-rebalance" not in e for e in _status(api))
    assert all("host-arch" not in n for n in api.cluster.resources.get(type="node"))
    assert all("affinity" not in r for r in api.cluster.ha.rules.get(type="node-affinity"))


def test_node_affinity_rules_with_negative_affinity(ha_api):
    rules = {r["rule"]: r for r in ha_api.cluster.ha.rules.get(type="node-affinity")}
    assert {k: rules["not-pve3"][k] for k in ("type", "resources", "nodes", "strict", "affinity")} == {
        "type": "node-affinity", "resources": "vm:105", "nodes": "pve3", "strict": 1, "affinity": "negative"}
    assert rules["pinned"]["affinity"] == "positive"  # 9.2.6 fills the default
    assert rules["prefer-pve2"]["nodes"] == "pve2:2,pve1" and rules["prefer-pve2"]["strict"] == 0
    assert violations(returns_of("/cluster/ha/rules"), list(rules.values())) == []


def test_ha_answers_match_the_schema_on_9_2(ha_api):
    assert violations(returns_of("/cluster/ha/resources"), ha_api.cluster.ha.resources.get()) == []
    precondition = ha_api.nodes("pve1").qemu(100).migrate.get()
    assert violations(returns_of("/nodes/{node}/qemu/{vmid}/migrate"), precondition,
                      keyed_by_name=["not_allowed_nodes"]) == []


# ---------------------------------------------------------------------- rules enforced like PVE

def test_negative_resource_affinity_fails_the_hamigrate_task(ha_sim, ha_api):
    precondition = ha_api.nodes("pve1").qemu(100).migrate.get()
    assert precondition["not_allowed_nodes"] == {"pve2": {"blocking-ha-resources": [
        {"sid": "vm:101", "cause": "resource-affinity"}]}}
    upid = ha_api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    ha_sim.advance(1)
    status = task_status(ha_api, upid)
    assert status["exitstatus"] == "command 'ha-manager migrate vm:100 pve2' failed: exit code 255"
    log = [line["t"] for line in ha_api.nodes("pve1").tasks(upid).log.get()]
    assert log[1:] == ["cannot migrate resource 'vm:100' to node 'pve2':", "",
                       "- resource 'vm:101' on target node 'pve2' in negative affinity with resource 'vm:100'",
                       "TASK ERROR: command 'ha-manager migrate vm:100 pve2' failed: exit code 255"]
    ha_sim.advance(600)
    assert _tasks(ha_sim, 100, "qmigrate") == [] and ha_sim.state.placement()[100] == "pve1"
    assert ha_sim.state.guest(100).hastate == "started"
    assert any("in negative affinity with service 'vm:100'" in m for _, m in ha_sim.state.ha_log())


def test_positive_resource_affinity_moves_the_partners_along(ha_sim, ha_api):
    assert ha_api.nodes("pve1").qemu(102).migrate.get()["dependent-ha-resources"] == ["vm:103"]
    upid = ha_api.nodes("pve1").qemu(102).migrate.post(target="pve2", online=1)
    ha_sim.advance(1)
    log = [line["t"] for line in ha_api.nodes("pve1").tasks(upid).log.get()]
    assert "also migrate resource 'vm:103' in positive affinity with resource 'vm:102' to target node 'pve2'" in log
    assert task_status(ha_api, upid)["exitstatus"] == "OK"
    ha_sim.advance(600)
    assert (ha_sim.state.placement()[102], ha_sim.state.placement()[103]) == ("pve2", "pve2")
    for vmid in (102, 103):
        [task] = _tasks(ha_sim, vmid, "qmigrate")
        assert task.user == "root@pam" and task.exitstatus == "OK"


@pytest.mark.parametrize("vmid,target,allowed", [
    (104, "pve3", {"pve1", "pve2"}),  # strict positive: only pve1/pve2
    (105, "pve3", {"pve1", "pve2"}),  # strict negative: never pve3
])
def test_strict_node_affinity_is_restored_by_the_crm(ha_sim, ha_api, vmid, target, allowed):
    upid = ha_api.nodes("pve1").qemu(vmid).migrate.post(target=target, online=1)
    ha_sim.advance(12)  # hamigrate (1 s), CRM pickup (4 s), the live migration (3 s + 2 GiB)
    assert task_status(ha_api, upid)["exitstatus"] == "OK"
    [first] = _tasks(ha_sim, vmid, "qmigrate")
    assert first.exitstatus == "OK" and ha_sim.state.placement()[vmid] == target  # PVE lets it happen...
    ha_sim.advance(600)
    assert ha_sim.state.placement()[vmid] in allowed  # ...and the CRM's next round moves it back
    back = _tasks(ha_sim, vmid, "qmigrate")[1]
    assert back.node == target and back.user == "root@pam" and back.exitstatus == "OK"
    assert any(f"migrate service 'vm:{vmid}' to node" in m for _, m in ha_sim.state.ha_log())


def test_non_strict_node_affinity_needs_failback(ha_sim, ha_api):
    ha_api.nodes("pve2").qemu(106).migrate.post(target="pve3", online=1)
    ha_sim.advance(600)
    assert ha_sim.state.placement()[106] == "pve3"  # failback off (the simulator's default): it stays
    ha_sim.state.set_ha_resource(106, failback=True)
    ha_api.nodes("pve3").qemu(106).migrate.post(target="pve1", online=1)
    ha_sim.advance(600)
    assert ha_sim.state.placement()[106] == "pve2"  # failback on (PVE's default): the preferred node


def test_plain_guests_and_rule_changes(ha_sim, ha_api):
    ha_api.nodes("pve1").qemu(120).migrate.post(target="pve3", online=1)
    ha_sim.advance(600)
    assert ha_sim.state.placement()[120] == "pve3" and len(_tasks(ha_sim, 120, "qmigrate")) == 1
    # New rules apply in the CRM's next round: ct:110 must now leave pve1.
    ha_sim.state.set_ha_rules([*ha_sim.cluster.ha_rules,
                               HaRule("ct-off-pve1", "node-affinity", (110,), affinity="negative", strict=True,
                                      node_priorities=(("pve1", 0),))])
    ha_sim.advance(600)
    assert ha_sim.state.placement()[110] != "pve1"
    [relocate] = _tasks(ha_sim, 110, "vzmigrate")
    assert relocate.user == "root@pam" and relocate.exitstatus == "OK"
    assert any("relocate service 'ct:110'" in m for _, m in ha_sim.state.ha_log())
    with pytest.raises(ResourceException):
        ha_api.nodes("pve1").lxc(110).status.current.get()  # it lives elsewhere now
