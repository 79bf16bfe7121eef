"""Two applies at once (the single-instance lock bypassed: two Executors, two clients): the live re-check
holds the other run's migration on its target (read from the task's log), so no capacity or rule is broken at
any instant, replayed from the simulator's history.

What the re-check cannot close is the moment between one run's read and its migrate call; the second run is
therefore started while the first one's migration runs (as a second `apply` started by hand would find it).
"""

from __future__ import annotations

import threading

from proxlb_opt.adapters.proxmox import ProxmoxClient
from proxlb_opt.apply import DONE, SKIPPED, Executor, PlannedStep
from proxlb_opt.simulator import SimulatorServer
from tests.builders import cluster, guest, node
from tests.integration.conftest import FAST, settings_for
from tests.integration.test_fault_matrix import assert_no_new_violation_at_any_instant


def _seed():
    """pve3 (32G) takes a (20G) and d (8G), or b (20G) and d, never a and b together."""
    return cluster([node("pve1", "64G"), node("pve2", "64G"), node("pve3", "32G")],
                   [guest(201, "pve1", "20G", name="a"), guest(202, "pve2", "20G", name="b"),
                    guest(203, "pve1", "8G", name="c"), guest(204, "pve2", "8G", name="d")])


def _step(vmid, name, source, target, wave):
    return PlannedStep(vmid=vmid, name=name, type="vm", source=source, target=target, wave=wave)


def _two_runs(first_steps, second_steps, time_scale=FAST / 8):
    seed = _seed()
    with SimulatorServer(seed, time_scale=time_scale) as sim:
        settings = settings_for(sim)
        sim.state.record_history()
        reports: dict[str, object] = {}
        second_started = threading.Event()

        def second():
            reports["second"] = Executor(ProxmoxClient(settings.api), settings).run(second_steps)

        thread = threading.Thread(target=second)

        def emit(event):
            if event.get("event") == "start" and not second_started.is_set():
                second_started.set()
                thread.start()  # the second apply begins while the first one's migration runs

        reports["first"] = Executor(ProxmoxClient(settings.api), settings, emit=emit).run(first_steps)
        thread.join(timeout=120)
        assert not thread.is_alive()
        assert_no_new_violation_at_any_instant(sim, seed, settings)
        placement = sim.state.placement()
        for report in reports.values():
            for r in report.results:
                if r.state == DONE:
                    assert placement[r.step.vmid] == r.step.target
        assert all(sim.state.lock_of(v) is None for v in placement)
        return reports["first"], reports["second"], placement


def test_second_apply_does_not_fill_a_node_the_first_is_filling():
    first, second, placement = _two_runs(
        [_step(201, "a", "pve1", "pve3", 1)],
        [_step(202, "b", "pve2", "pve3", 1), _step(204, "d", "pve2", "pve3", 2)])
    assert [r.state for r in first.results] == [DONE]
    b, d = second.results
    assert b.state == SKIPPED and "no longer allowed" in b.message  # a's migration is held on pve3
    assert d.state == DONE, d.message  # a (20G) and d (8G) fit
    assert sorted(v for v, n in placement.items() if n == "pve3") == [201, 204]


def test_two_applies_into_the_same_node_from_both_sides():
    """Both plans fill pve3; whatever interleaving the waves take, pve3 is never over its capacity."""
    first, second, placement = _two_runs(
        [_step(201, "a", "pve1", "pve3", 1), _step(203, "c", "pve1", "pve3", 2)],
        [_step(202, "b", "pve2", "pve3", 1), _step(204, "d", "pve2", "pve3", 2)],
        time_scale=FAST / 4)
    assert first.results[0].state == DONE and second.results[0].state == SKIPPED
    on_pve3 = [v for v, n in placement.items() if n == "pve3"]
    assert 201 in on_pve3 and 202 not in on_pve3 and len(on_pve3) <= 2
