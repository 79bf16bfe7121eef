"""apply's report is the cluster's truth under faults: one scenario per fault, the same invariants for all.

Each scenario runs a real Executor (proxmoxer over HTTPS) against the simulator with a fault injected, and
the simulator records every state the cluster passes through. For every scenario:

* every guest is on exactly one known node, power states are as before, no lock is left (but a fault's own
  lock, and a migration the report says may still run in PVE);
* no capacity or rule violation at any instant: each recorded state, with the migrations under way held on
  both nodes, breaks no rule the first state did not already break (judged by the feasibility module);
* the report equals the cluster's truth: done means on the target, failed means not on the target (0 guests
  reported failed that moved), unknown means its task still runs, skipped means we started nothing; and no
  migrate call was carried out twice (a lost answer is never sent again).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable

import numpy as np
import pytest

from proxlb_opt.adapters.proxmox import ProxmoxClient
from proxlb_opt.apply import DONE, FAILED, SKIPPED, UNKNOWN, ApplyReport, Executor, PlannedStep
from proxlb_opt.cluster import Cluster, with_placement
from proxlb_opt.config import Settings
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.problem import build_problem
from proxlb_opt.simulator import Faults, NodeEvent, RequestFault, SimulatorServer
from tests.integration.conftest import FAST, rebalance_cluster, settings_for

MIGRATE = "/nodes/{node}/qemu/{vmid}/migrate"
TASK_STATUS = "/nodes/{node}/tasks/{upid}/status"
OUTSIDER = "admin@pve"  # the user of migrations made by "someone else"

#: Six moves in three waves over the skewed cluster: a live VM, an HA VM (hamigrate), a container
#: (restart mode), a stopped VM with a local disk. Each is within every limit, in any order.
STEPS = [
    PlannedStep(101, "web01", "vm", "pve1", "pve3", wave=1),
    PlannedStep(103, "db01", "vm", "pve1", "pve2", wave=1),
    PlannedStep(102, "web02", "vm", "pve1", "pve2", wave=2),
    PlannedStep(105, "ct01", "ct", "pve1", "pve3", wave=2),
    PlannedStep(104, "app01", "vm", "pve1", "pve3", wave=3),
    PlannedStep(106, "old01", "vm", "pve1", "pve2", wave=3),
]


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    faults: Faults = Faults()
    #: Called with the simulator on each event the executor emits (to act mid-run).
    hook: Callable[[SimulatorServer, dict], None] | None = None
    settings: dict = dataclasses.field(default_factory=dict)  # balancing/optimizer overrides
    expect: dict[int, str] = dataclasses.field(default_factory=dict)  # vmid → state the report must give


def _once(action: Callable[[SimulatorServer], None], when: str = "start") -> Callable[[SimulatorServer, dict], None]:
    done = threading.Event()

    def hook(sim: SimulatorServer, event: dict) -> None:
        if event.get("event") == when and not done.is_set():
            done.set()
            action(sim)
    return hook


def _outsider_moves_104(sim: SimulatorServer) -> None:
    sim.state.migrate("pve1", 104, "qemu", {"target": "pve2", "online": "1"}, OUTSIDER)


SCENARIOS = [
    Scenario("no fault", expect={v: DONE for v in (101, 102, 103, 104, 105, 106)}),
    Scenario("migrate answer lost after the work was done",
             Faults(requests=(RequestFault(MIGRATE, "POST", action="lost", first=2),)),
             expect={v: DONE for v in (101, 102, 103, 104, 105, 106)}),
    Scenario("migrate answered 502 by a proxy, not carried out",
             Faults(requests=(RequestFault(MIGRATE, "POST", status=502, first=1),)),
             expect={101: FAILED, 103: DONE}),
    Scenario("migrate answered 504 by a proxy after PVE started it",
             Faults(requests=(RequestFault(MIGRATE, "POST", action="late", status=504, first=2),)),
             expect={v: DONE for v in (101, 102, 103, 104, 105, 106)}),
    Scenario("migrate answered 500 by PVE", Faults(requests=(RequestFault(MIGRATE, "POST", status=500, first=1),)),
             expect={101: FAILED, 103: DONE}),
    Scenario("migrate answered 401: expired ticket, one re-login",
             Faults(requests=(RequestFault(MIGRATE, "POST", status=401, first=1),)),
             expect={v: DONE for v in (101, 102, 103, 104, 105, 106)}),
    Scenario("task status answers 500", Faults(requests=(RequestFault(TASK_STATUS, "GET", status=500, every=2),)),
             expect={v: DONE for v in (101, 102, 103, 104, 105, 106)}),
    Scenario("task status answers lost", Faults(requests=(RequestFault(TASK_STATUS, "GET", action="lost", every=2),)),
             expect={v: DONE for v in (101, 102, 103, 104, 105, 106)}),
    Scenario("cluster resources 503 then empty",
             Faults(requests=(RequestFault("/cluster/resources", "GET", status=503, first=2),
                              RequestFault("/cluster/resources", "GET", action="empty", every=4))),
             expect={v: DONE for v in (101, 102, 103, 104, 105, 106)}),
    Scenario("task status answers garbled", Faults(requests=(RequestFault(TASK_STATUS, "GET", action="garbled",
                                                                         every=2),))),
    Scenario("migrate answer garbled after the work was done",
             Faults(requests=(RequestFault(MIGRATE, "POST", action="garbled", first=1),))),
    Scenario("cluster resources garbled", Faults(requests=(RequestFault("/cluster/resources", "GET",
                                                                        action="garbled", every=3),))),
    Scenario("task log garbled", Faults(requests=(RequestFault("/nodes/{node}/tasks/{upid}/log", "GET",
                                                                action="garbled"),))),
    Scenario("connections dropped at random", Faults(drop_probability=0.12, seed=7)),
    Scenario("first connections dropped", Faults(drop_first=4)),
    Scenario("migration task fails", Faults(task_error={101: "migration problems"}),
             expect={101: FAILED, 103: DONE, 102: DONE, 105: DONE}),
    Scenario("HA guest's real migration fails", Faults(task_error={103: "migration problems"}),
             expect={103: FAILED, 101: DONE}),
    Scenario("migration task hangs", Faults(task_hang=frozenset({104})), settings={"max_job_validation": 2},
             expect={104: UNKNOWN, 106: DONE}),
    Scenario("local disk copy fails", Faults(storage_error={106: ""}), expect={106: FAILED}),
    Scenario("tickets expire every 20 simulated seconds", Faults(ticket_lifetime_s=20),
             expect={v: DONE for v in (101, 102, 103, 104, 105, 106)}),
    Scenario("tickets revoked mid-run", hook=_once(lambda sim: sim.invalidate_tickets()),
             expect={v: DONE for v in (101, 102, 103, 104, 105, 106)}),
    Scenario("target node goes down after the first migrate",
             Faults(node_events=(NodeEvent("pve3", "offline", after_migrations=2),)),
             expect={105: SKIPPED, 104: SKIPPED}),
    Scenario("source node goes down after the first migrate",
             Faults(node_events=(NodeEvent("pve1", "offline", after_migrations=1),)), settings={"max_job_validation": 4},
             expect={101: DONE, 102: SKIPPED, 104: SKIPPED}),
    Scenario("guest moved by someone else mid-run", hook=_once(_outsider_moves_104),
             expect={104: SKIPPED, 101: DONE}),
    Scenario("guest locked by a backup", Faults(locked={105: "backup"}), expect={105: SKIPPED, 104: DONE}),
    Scenario("cluster loses quorum", Faults(no_quorum=True), expect={v: FAILED for v in (101, 103)}),
]


def _run(scenario: Scenario) -> None:
    seed = rebalance_cluster()
    with SimulatorServer(seed, time_scale=FAST) as sim:
        settings = settings_for(sim, **{k: v for k, v in scenario.settings.items() if k != "max_job_validation"})
        if "max_job_validation" in scenario.settings:
            settings = dataclasses.replace(settings, max_job_validation=scenario.settings["max_job_validation"])
        power = {vmid: sim.state.is_running(vmid) for vmid in sim.state.placement()}
        sim.state.record_history()
        sim.faults = scenario.faults

        def emit(event: dict) -> None:
            if scenario.hook is not None:
                scenario.hook(sim, event)

        executor = Executor(ProxmoxClient(settings.api), settings, emit=emit, pickup_grace=0.5)
        report = executor.run(list(STEPS))
        sim.faults = Faults()  # so that the end state can be read as it is (offline nodes stay offline)
        time.sleep(0.2)  # what still runs in PVE (HA rounds) settles: 80 simulated seconds
        assert_truth(sim, seed, settings, report, power, scenario)


def assert_truth(sim: SimulatorServer, seed: Cluster, settings: Settings, report: ApplyReport,
                 power: dict[int, bool], scenario: Scenario) -> None:
    by_vmid = {r.step.vmid: r for r in report.results}
    for vmid, state in scenario.expect.items():
        assert by_vmid[vmid].state == state, (vmid, by_vmid[vmid].message)
    placement = sim.state.placement()
    nodes = set(seed.node_names)
    # Every guest on exactly one node (the simulator keeps one record per guest; it must name a real node).
    assert sorted(placement) == sorted(int(v) for v in seed.guest_vmid)
    assert all(node in nodes for node in placement.values())
    unknown = {vmid for vmid, r in by_vmid.items() if r.state == UNKNOWN}
    tasks = sim.state.tasks()
    for vmid in placement:
        if vmid not in unknown:
            assert sim.state.is_running(vmid) == power[vmid], f"{vmid}: power state changed"
            assert sim.state.lock_of(vmid) in (None, scenario.faults.locked.get(vmid)), f"{vmid}: lock left"
    # The report equals the cluster's truth.
    for vmid, result in by_vmid.items():
        where = placement[vmid]
        assert result.state in (DONE, SKIPPED, FAILED, UNKNOWN), (vmid, result.state)
        ours = [t for t in tasks if t.vmid == vmid and t.user != OUTSIDER and t.type in ("qmigrate", "vzmigrate")]
        ha_requests = [t for t in tasks if t.vmid == vmid and t.type == "hamigrate"]
        assert len(ours) <= 1 and len(ha_requests) <= 1, f"{vmid}: migrate carried out twice"
        if result.state == DONE:
            assert where == result.step.target, (vmid, result.message)
        elif result.state == FAILED:
            assert where != result.step.target, f"{vmid} reported failed but moved: {result.message}"
        elif result.state == UNKNOWN:
            assert result.upid is None or sim.state.task(result.upid).status == "running", result.message
        else:
            assert not ours and not ha_requests, f"{vmid} reported skipped but we migrated it: {result.message}"
    assert_no_new_violation_at_any_instant(sim, seed, settings)
    assert report.exit_code() in (0, 6, 7)


def assert_no_new_violation_at_any_instant(sim: SimulatorServer, seed: Cluster, settings: Settings) -> None:
    """Replays the simulator's history: each state, with the migrations under way held on both nodes (as PVE
    holds them), judged by the feasibility module, breaks no rule and no hard limit's capacity that the first
    recorded state did not break already."""
    history = sim.state.history()
    assert len(history) > 1
    problem = build_problem(seed, settings, check_domains=False)
    order = [int(v) for v in seed.guest_vmid]
    index = {name: i for i, name in enumerate(seed.node_names)}
    first = None
    for point in history:
        placed = np.array([index[point.guests[v].node] for v in order], dtype=np.int64)
        occ = Occupancy(problem, placed)
        for g, vmid in enumerate(order):
            target = point.guests[vmid].target
            if target is not None and target != point.guests[vmid].node:
                occ.start(g, index[target])
        broken = {rule for rule in occ.broken_rules() if rule[0] not in ("capacity", "budget")}
        for n, k in zip(*np.nonzero(occ.hard > problem.hard.capacity)):
            broken.add(("capacity", f"{seed.node_names[n]}: {problem.hard.names[k]}"))
        if first is None:
            first = broken
        assert broken <= first, f"new violation at simulated {point.now:.0f}: {sorted(broken - first)}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_fault_matrix(scenario: Scenario) -> None:
    _run(scenario)


def test_the_matrix_has_fifteen_scenarios_or_more() -> None:
    assert len(SCENARIOS) >= 15 and len({s.name for s in SCENARIOS}) == len(SCENARIOS)


def test_every_instant_check_sees_a_violation() -> None:
    """The replay is not vacuous: an outsider overfilling a node is caught at the instant it happens."""
    seed = rebalance_cluster()
    with SimulatorServer(seed, time_scale=FAST) as sim:
        settings = settings_for(sim)
        sim.state.record_history()
        for vmid in (101, 102, 103, 104):  # web01 and web02 together on pve3: anti-affinity broken again
            sim.state.migrate("pve1", vmid, "qemu", {"target": "pve3", "online": "1"}, OUTSIDER)
        time.sleep(0.3)
        report = ApplyReport()
        with pytest.raises(AssertionError, match="new violation"):
            assert_truth(sim, seed, settings, report, {v: sim.state.is_running(v) for v in sim.state.placement()},
                         Scenario("outsider"))


def test_lost_answer_is_never_sent_again() -> None:
    seed = rebalance_cluster()
    faults = Faults(requests=(RequestFault(MIGRATE, "POST", action="lost", first=1),))
    with SimulatorServer(seed, time_scale=FAST, faults=faults) as sim:
        settings = settings_for(sim)
        report = Executor(ProxmoxClient(settings.api), settings).run([STEPS[0]])
        assert report.results[0].state == DONE and "answer to migrate was lost" in report.results[0].message
        assert sim.request_count.by_path.get(f"POST {MIGRATE}") == 1
