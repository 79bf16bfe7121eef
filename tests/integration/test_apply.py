"""apply against the simulator: end to end through the CLI, and one test per injected fault."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from proxlb_opt.adapters.proxmox import ProxmoxClient
from proxlb_opt.apply import DONE, FAILED, SKIPPED, UNKNOWN, Executor, PlannedStep
from proxlb_opt.cluster import load_model
from proxlb_opt.simulator import Faults, SimulatorServer
from tests.integration.conftest import FAST, rebalance_cluster, settings_for, write_config

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo.yaml"


def cli(*args, stdin: str = ""):
    return subprocess.run([sys.executable, "-m", "proxlb_opt", *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=300)


def test_end_to_end_demo_plan_then_apply(tmp_path):
    seed = load_model(DEMO)
    with SimulatorServer(seed, time_scale=FAST) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim)
        power_before = {vmid: sim.state.is_running(vmid) for vmid in sim.state.placement()}
        locks_before = {vmid: sim.state.lock_of(vmid) for vmid in sim.state.placement()}
        planned = cli("plan", "--config", config, "--json", "-o", tmp_path / "plan.json")
        assert planned.returncode == 0, planned.stderr
        plan = json.loads(planned.stdout)
        assert plan["migrations"] and plan["spread_after"] < plan["spread_before"]
        applied = cli("apply", "--config", config, "--plan", tmp_path / "plan.json", "--yes", "--json")
        assert applied.returncode == 0, applied.stderr
        events = [json.loads(line) for line in applied.stdout.splitlines()]
        summary = events[-1]
        assert summary["event"] == "summary" and summary["failed"] == 0 and summary["skipped"] == 0
        final = sim.state.placement()
        target = {int(v): seed.node_names[n] for v, n in zip(seed.guest_vmid, seed.guest_node)}
        for m in plan["migrations"]:
            target[m["vmid"]] = m["to"]
        assert final == target  # every guest on exactly one node: the plan's target
        assert {vmid: sim.state.is_running(vmid) for vmid in final} == power_before
        assert {vmid: sim.state.lock_of(vmid) for vmid in final} == locks_before  # no lock left behind by us


def _run(sim: SimulatorServer, steps, **optimizer):
    settings = settings_for(sim, **optimizer)
    events = []
    report = Executor(ProxmoxClient(settings.api), settings, emit=events.append).run(steps)
    return report, events


def _step(vmid, source, target, wave=0, hop=0, name="g"):
    return PlannedStep(vmid=vmid, name=name, type="vm", source=source, target=target, wave=wave, hop=hop)


def _assert_nothing_lost(sim: SimulatorServer, seed_vmids):
    placement = sim.state.placement()
    assert sorted(placement) == sorted(seed_vmids)
    assert all(sim.state.lock_of(v) in (None, "backup") for v in placement)


VMIDS = [int(v) for v in rebalance_cluster().guest_vmid]


def test_locked_guest_is_skipped_not_failed():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, faults=Faults(locked={104: "backup"})) as sim:
        report, _ = _run(sim, [_step(104, "pve1", "pve3"), _step(108, "pve2", "pve3", wave=1)])
        assert [r.state for r in report.results] == [SKIPPED, DONE]
        assert "locked (backup)" in report.results[0].message
        _assert_nothing_lost(sim, VMIDS)


def test_offline_target_is_skipped():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, faults=Faults(offline_nodes={"pve3"})) as sim:
        report, _ = _run(sim, [_step(104, "pve1", "pve3")])
        assert report.results[0].state == SKIPPED and "offline" in report.results[0].message
        assert sim.state.placement()[104] == "pve1"


def test_task_error_fails_and_stops_dependents():
    faults = Faults(task_error={104: "migration aborted"})
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, faults=faults) as sim:
        steps = [_step(104, "pve1", "pve3"), _step(108, "pve2", "pve1", wave=1), _step(101, "pve1", "pve2", wave=1)]
        report, _ = _run(sim, steps)
        states = [r.state for r in report.results]
        assert states == [FAILED, SKIPPED, DONE]  # 108 counted on room 104 was to free on pve1
        assert "migration aborted" in report.results[0].message and not report.ok
        assert sim.state.placement()[104] == "pve1"
        _assert_nothing_lost(sim, VMIDS)


def test_task_that_never_ends_times_out():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, faults=Faults(task_hang={104})) as sim:
        settings = settings_for(sim)
        from dataclasses import replace
        settings = replace(settings, max_job_validation=1)
        report = Executor(ProxmoxClient(settings.api), settings).run([_step(104, "pve1", "pve3")])
        # The task may still end either way: not "failed" but still running in PVE, with its UPID.
        assert report.results[0].state == UNKNOWN and "still running in PVE" in report.results[0].message
        assert report.results[0].upid in report.results[0].message and report.exit_code() == 7


def test_warnings_count_as_done():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, faults=Faults(task_warnings={104})) as sim:
        report, _ = _run(sim, [_step(104, "pve1", "pve3")])
        assert report.results[0].state == DONE and "warnings" in report.results[0].message
        assert sim.state.placement()[104] == "pve3"


def test_lost_quorum_refuses_migrations():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, faults=Faults(no_quorum=True)) as sim:
        report, _ = _run(sim, [_step(104, "pve1", "pve3")])
        assert report.results[0].state == FAILED and "quorum" in report.results[0].message
        _assert_nothing_lost(sim, VMIDS)


def test_slow_responses_still_work():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, faults=Faults(delay=0.02)) as sim:
        report, _ = _run(sim, [_step(104, "pve1", "pve3")])
        assert report.results[0].state == DONE


def test_dropped_connections_are_retried():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, faults=Faults(drop_probability=0.15, seed=3)) as sim:
        from tests.integration.conftest import api_section
        api = dict(api_section(sim), hosts=[sim.address] * 4, wait_time=0)
        settings = settings_for(sim, api=api)
        report = Executor(ProxmoxClient(settings.api), settings).run([_step(104, "pve1", "pve3")])
        assert report.results[0].state == DONE


def test_ha_guest_goes_through_hamigrate():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        report, _ = _run(sim, [_step(103, "pve1", "pve2")])
        assert report.results[0].state == DONE and sim.state.placement()[103] == "pve2"
        types = [t["type"] if isinstance(t, dict) else getattr(t, "type", None) for t in sim.state.tasks()]
        assert "hamigrate" in types and "qmigrate" in types


def test_container_restart_and_already_moved_guest():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        steps = [_step(105, "pve1", "pve3"), _step(108, "pve3", "pve1", wave=1), _step(108, "pve2", "pve3", wave=2)]
        steps[0] = PlannedStep(vmid=105, name="ct01", type="ct", source="pve1", target="pve3", wave=0)
        report, _ = _run(sim, steps)
        assert report.results[0].state == DONE and sim.state.is_running(105)
        assert report.results[1].state == SKIPPED and "not on pve3" in report.results[1].message


def test_apply_refuses_without_yes_when_not_interactive(tmp_path):
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim)
        out = cli("apply", "--config", config, "--json")
        assert out.returncode == 2 and "--yes" in out.stderr
        assert np.all([sim.state.lock_of(v) is None for v in VMIDS])


def test_service_once_plans_and_applies(tmp_path):
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim)
        dry = cli("service", "--config", config, "--once", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "plan:" in dry.stderr and sim.state.placement()[101] == "pve1"
        # Each move with its guest's name, then the round's summary.
        assert "wave 1: " in dry.stderr and "web01" in dry.stderr and "round 1: dry run" in dry.stderr
        before = sim.state.placement()
        real = cli("service", "--config", config, "--once", "--json")
        assert real.returncode == 0, real.stderr
        events = [json.loads(line) for line in real.stdout.splitlines()]
        moved = [e for e in events if e["event"] == "done"]
        assert events[0]["event"] == "plan" and events[-1]["event"] == "round" and events[-1]["done"] == len(moved)
        after = sim.state.placement()
        assert moved and sum(before[v] != after[v] for v in after) == len(moved)
        assert sorted(after) == sorted(before)


def test_snapshot_and_anonymize(tmp_path):
    seed = rebalance_cluster()
    with SimulatorServer(seed, time_scale=FAST) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim)
        plain = cli("snapshot", "--config", config, "-o", tmp_path / "cluster.yaml")
        assert plain.returncode == 0, plain.stderr
        anon = cli("snapshot", "--config", config, "-o", tmp_path / "anon.json", "--anonymize")
        assert anon.returncode == 0, anon.stderr
    snap = load_model(tmp_path / "cluster.yaml")
    assert snap.node_names == seed.node_names and sorted(snap.guest_names) == sorted(seed.guest_names)
    hidden = load_model(tmp_path / "anon.json")
    text = (tmp_path / "anon.json").read_text()
    assert "web01" not in text and "pve1" not in text and sim.password not in text
    assert hidden.node_names == ("node1", "node2", "node3")
    assert any(t.startswith("plb_anti_affinity_") for tags in hidden.guest_tags for t in tags)
    assert "plb_pin_node1" in {t for tags in hidden.guest_tags for t in tags}
    offline = cli("plan", "--model", tmp_path / "anon.json", "--json", "--workers", "1")
    assert offline.returncode == 0 and json.loads(offline.stdout)["migrations"]
