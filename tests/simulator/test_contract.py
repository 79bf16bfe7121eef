"""Every schema-listed endpoint, called through proxmoxer, answers in the shape the PVE schema declares.

Known, documented differences between real PVE and its declared schema (FACTS 4.6, 4.9) are
passed to the checker explicitly: QEMU/LXC `not_allowed_nodes` is keyed by node name, and LXC
PSI values are strings.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from proxmoxer import ResourceException

from proxlb_opt.simulator import SimulatorServer
from tests.simulator.helpers import FAST, client, wait_task
from tests.simulator.schema_check import returns_of, schema_paths, violations

LXC_PSI = ("pressurecpusome", "pressurecpufull", "pressureiosome", "pressureiofull", "pressurememorysome",
           "pressurememoryfull")

# (schema path, case id, call, checker options)
Case = tuple[str, str, Callable[[Any], Any], dict]
CASES: list[Case] = [
    ("/version", "version", lambda a: a.version.get(), {}),
    ("/cluster/status", "cluster-status", lambda a: a.cluster.status.get(), {}),
    ("/cluster/resources", "resources-all", lambda a: a.cluster.resources.get(), {}),
    ("/cluster/resources", "resources-vm", lambda a: a.cluster.resources.get(type="vm"), {}),
    ("/cluster/resources", "resources-node", lambda a: a.cluster.resources.get(type="node"), {}),
    ("/cluster/resources", "resources-storage", lambda a: a.cluster.resources.get(type="storage"), {}),
    ("/cluster/tasks", "cluster-tasks", lambda a: a.cluster.tasks.get(), {}),
    ("/cluster/ha/resources", "ha-resources", lambda a: a.cluster.ha.resources.get(), {}),
    ("/cluster/ha/rules", "ha-rules", lambda a: a.cluster.ha.rules.get(), {}),
    ("/cluster/ha/status/current", "ha-status", lambda a: a.cluster.ha.status.current.get(), {}),
    ("/nodes", "nodes", lambda a: a.nodes.get(), {}),
    ("/nodes/{node}/status", "node-status", lambda a: a.nodes("pve1").status.get(), {}),
    ("/nodes/{node}/qemu", "qemu-list", lambda a: a.nodes("pve1").qemu.get(), {}),
    ("/nodes/{node}/qemu/{vmid}/config", "qemu-config-shared", lambda a: a.nodes("pve1").qemu(100).config.get(), {}),
    ("/nodes/{node}/qemu/{vmid}/config", "qemu-config-local", lambda a: a.nodes("pve1").qemu(101).config.get(), {}),
    ("/nodes/{node}/qemu/{vmid}/status/current", "qemu-status",
     lambda a: a.nodes("pve1").qemu(100).status.current.get(), {}),
    ("/nodes/{node}/qemu/{vmid}/status/current", "qemu-status-ha",
     lambda a: a.nodes("pve1").qemu(300).status.current.get(), {}),
    ("/nodes/{node}/qemu/{vmid}/migrate", "qemu-precondition-local",
     lambda a: a.nodes("pve1").qemu(101).migrate.get(), {"keyed_by_name": ["not_allowed_nodes"]}),
    ("/nodes/{node}/qemu/{vmid}/migrate", "qemu-precondition-ha",
     lambda a: a.nodes("pve1").qemu(300).migrate.get(target="pve3"), {"keyed_by_name": ["not_allowed_nodes"]}),
    ("/nodes/{node}/lxc", "lxc-list", lambda a: a.nodes("pve2").lxc.get(), {"string_numbers": LXC_PSI}),
    ("/nodes/{node}/lxc/{vmid}/config", "lxc-config", lambda a: a.nodes("pve2").lxc(200).config.get(), {}),
    ("/nodes/{node}/lxc/{vmid}/status/current", "lxc-status", lambda a: a.nodes("pve2").lxc(301).status.current.get(),
     {"string_numbers": LXC_PSI}),
    ("/nodes/{node}/lxc/{vmid}/migrate", "lxc-precondition", lambda a: a.nodes("pve2").lxc(301).migrate.get(),
     {"keyed_by_name": ["not-allowed-nodes"]}),
    ("/nodes/{node}/rrddata", "node-rrd", lambda a: a.nodes("pve1").rrddata.get(timeframe="hour"), {}),
    ("/nodes/{node}/storage", "node-storage", lambda a: a.nodes("pve1").storage.get(), {}),
    ("/pools", "pools", lambda a: a.pools.get(), {}),
    ("/pools", "pool-members", lambda a: a.pools.get(poolid="prod"), {}),
    ("/nodes/{node}/qemu/{vmid}/rrddata", "qemu-rrd", lambda a: a.nodes("pve1").qemu(100).rrddata.get(timeframe="day"),
     {}),
]


@pytest.fixture(params=["9.1.1", "9.2.6"])
def busy_api(request, model):
    """A client on a simulator (as PVE 9.1 and 9.2) with one finished migration, so task lists are not empty."""
    with SimulatorServer(model, time_scale=FAST, pve_version=request.param) as sim:
        api = client(sim)
        wait_task(api, api.nodes("pve2").qemu(102).migrate.post(target="pve1"))
        yield api


@pytest.mark.parametrize("path,case_id,call,options", CASES, ids=[c[1] for c in CASES])
def test_get_answers_match_the_schema(busy_api, path, case_id, call, options):
    value = call(busy_api)
    assert value not in (None, [], {}), f"{case_id}: empty answer proves nothing"
    assert violations(returns_of(path), value, **options) == []


def test_task_status_running_and_stopped_match_the_schema(frozen, frozen_api):
    upid = frozen_api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    schema = returns_of("/nodes/{node}/tasks/{upid}/status")
    running = frozen_api.nodes("pve1").tasks(upid).status.get()
    assert running["status"] == "running" and "exitstatus" not in running
    assert violations(schema, running) == []
    frozen.advance(600)
    stopped = frozen_api.nodes("pve1").tasks(upid).status.get()
    assert stopped["status"] == "stopped" and stopped["exitstatus"] == "OK"
    assert violations(schema, stopped) == []


def test_post_answers_match_the_schema(sim, api):
    import requests

    login = requests.post(f"{sim.url}/access/ticket", data={"username": sim.user, "password": sim.password},
                          verify=sim.ca_file, timeout=5).json()["data"]
    assert violations(returns_of("/access/ticket", "POST"), login) == []
    qemu = api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    lxc = api.nodes("pve2").lxc(200).migrate.post(target="pve1", restart=1)
    for path, upid in (("/nodes/{node}/qemu/{vmid}/migrate", qemu), ("/nodes/{node}/lxc/{vmid}/migrate", lxc)):
        assert violations(returns_of(path, "POST"), upid) == []


def test_ha_groups_is_gone_on_pve9(api):
    with pytest.raises(ResourceException) as err:
        api.cluster.ha.groups.get()
    assert err.value.status_code == 500
    assert err.value.content == "cannot index groups: ha groups have been migrated to rules"


def test_every_schema_endpoint_is_covered():
    covered = {c[0] for c in CASES} | {"/nodes/{node}/tasks/{upid}/status", "/cluster/ha/groups", "/access/ticket"}
    declared = {p for p, methods in schema_paths().items() if "GET" in methods}
    assert declared - covered == set()


def test_checker_catches_wrong_types():
    schema = returns_of("/nodes")
    assert violations(schema, [{"node": "a", "status": "online", "maxmem": "12"}])  # string for integer
    assert violations(schema, [{"status": "online"}])  # required `node` missing
    flag = returns_of("/cluster/status")
    assert violations(flag, [{"id": "node/a", "name": "a", "type": "node", "online": True}])  # JSON true, not 1
