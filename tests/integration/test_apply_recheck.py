"""The pieces apply's truth rests on: the adapter tells "never sent" from "answer lost", renews a dead ticket
once, and the live re-check judges every hard limit (assigned memory too) through the feasibility module."""

from __future__ import annotations

import socket

import pytest

from proxlb_opt.adapters.proxmox import AnswerLost, AuthError, ProxmoxClient
from proxlb_opt.apply import PlannedStep, recheck
from proxlb_opt.config import settings_from_dict
from proxlb_opt.errors import CollectionError
from proxlb_opt.simulator import Faults, RequestFault, SimulatorServer
from tests.builders import cluster, guest, node
from tests.integration.conftest import FAST, api_section, rebalance_cluster, settings_for

MIGRATE = "/nodes/{node}/qemu/{vmid}/migrate"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_lost_post_answer_is_answer_lost_and_a_lost_get_is_repeated():
    faults = Faults(requests=(RequestFault(MIGRATE, "POST", action="lost", first=1),
                              RequestFault("/version", "GET", action="lost", first=1)))
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, faults=faults) as sim:
        client = ProxmoxClient(settings_for(sim, api=api_section(sim, retries=2, wait_time=0)).api)
        assert client.get("version")["release"]  # the GET whose answer was lost is simply asked again
        with pytest.raises(AnswerLost, match="may have been carried out"):
            client.post("nodes/pve1/qemu/104/migrate", target="pve3", online=1)
        assert [t.vmid for t in sim.state.tasks()] == [104]  # carried out once, not sent again


def test_a_request_never_sent_fails_over_to_the_next_host():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        dead = f"127.0.0.1:{_free_port()}"  # nothing listens: connection refused, the request never left
        settings = settings_for(sim, api=api_section(sim, hosts=[dead, sim.address]))
        client = ProxmoxClient(settings.api)
        upid = client.post("nodes/pve1/qemu/104/migrate", target="pve3", online=1)
        assert upid.startswith("UPID:pve1:") and len(sim.state.tasks()) == 1


def test_no_host_reachable_is_a_collection_error_not_answer_lost():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        settings = settings_for(sim, api=api_section(sim, hosts=[f"127.0.0.1:{_free_port()}"]))
    with pytest.raises(CollectionError) as caught:
        ProxmoxClient(settings.api).post("nodes/pve1/qemu/104/migrate", target="pve3", online=1)
    assert not isinstance(caught.value, AnswerLost)


def test_a_revoked_ticket_gets_one_fresh_login():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        client = ProxmoxClient(settings_for(sim).api)
        client.get("version")
        sim.invalidate_tickets()
        assert client.get("version")["release"]
        assert client.post("nodes/pve1/qemu/104/migrate", target="pve3", online=1).startswith("UPID:")


def test_a_refused_token_is_one_auth_error():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        api = api_section(sim, token=True)
        api["token_secret"] = "00000000-0000-0000-0000-000000000000"
        with pytest.raises(AuthError) as caught:
            ProxmoxClient(settings_for(sim, api=api).api).get("version")
        assert "\n" not in str(caught.value) and api["token_secret"] not in str(caught.value)


def _settings(**proxmox_cluster):
    return settings_from_dict({"proxmox_cluster": proxmox_cluster,
                               "balancing": {"enable": True, "balance_types": ["vm", "ct"]}, "optimizer": {"workers": 1}})


def test_recheck_judges_assigned_memory_not_only_used_memory():
    # b is assigned 24G but uses 2G: by used memory it fits on pve2 (16G), by assigned memory it does not.
    c = cluster([node("pve1", "64G"), node("pve2", "16G")],
                [guest(1, "pve1", "24G", name="b", memory_used="2G")])
    step = PlannedStep(1, "b", "vm", "pve1", "pve2", wave=1)
    verdict = recheck(c, _settings(), step)
    assert verdict is not None and "assigned memory" in verdict[1]
    assert recheck(c, _settings(overprovisioning=True), step) is None


def test_recheck_holds_a_migration_under_way_on_its_target():
    c = cluster([node("pve1", "64G"), node("pve2", "32G")],
                [guest(1, "pve1", "20G", name="a"), guest(2, "pve1", "20G", name="b")])
    step = PlannedStep(2, "b", "vm", "pve1", "pve2", wave=1)
    assert recheck(c, _settings(), step) is None
    held = recheck(c, _settings(), step, running={1: "pve2"})
    assert held is not None and "pve2" in held[1]
    unknown_target = recheck(c, _settings(), step, running={1: None})  # unknown: held on this step's target
    assert unknown_target is not None
