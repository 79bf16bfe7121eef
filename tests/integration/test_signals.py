"""SIGINT/SIGTERM for `apply` and `service`: the CLI runs as a subprocess against the simulator over HTTPS and
gets real signals. The running migration is waited for (never abandoned), no new one starts, the report is
written and the exit code is 130 (SIGINT) or 143 (SIGTERM); `optimizer.interrupt_wait` bounds the wait and a
second signal ends it sooner, still with the report."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from proxlb_opt.simulator import Faults, SimulatorServer
from tests.integration.conftest import rebalance_cluster, write_config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SLOW = 10.0  # simulated seconds per real second: web01's live migration takes about a second and a half


def _plan(path: Path, sim: SimulatorServer) -> Path:
    seed = rebalance_cluster()
    plan = {"version": 2, "cluster": seed.name or "cluster", "nodes": [{"name": n} for n in seed.node_names],
            "migrations": [
                {"vmid": 101, "name": "web01", "type": "vm", "from": "pve1", "to": "pve3", "wave": 1},
                {"vmid": 102, "name": "web02", "type": "vm", "from": "pve1", "to": "pve2", "wave": 2}]}
    path.write_text(json.dumps(plan))
    return path


class Cli:
    """The CLI as a subprocess; stdout's JSON lines are read as they come."""

    def __init__(self, *args: object):
        self.proc = subprocess.Popen([sys.executable, "-m", "proxlb_opt", *map(str, args)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, event: str, timeout: float = 60.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.proc.stderr.read()}"
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.seen.append(item)
            if item.get("event") == event:
                return item
        raise AssertionError(f"no {event!r} event within {timeout} s")

    def finish(self, timeout: float = 60.0) -> tuple[int, list[dict], str]:
        code = self.proc.wait(timeout=timeout)
        stderr = self.proc.stderr.read()
        time.sleep(0.1)
        while not self.lines.empty():
            line = self.lines.get()
            try:
                self.seen.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return code, self.seen, stderr


def _summary(events: list[dict]) -> dict:
    return next(e for e in reversed(events) if e.get("event") == "summary")


def _no_traceback(stderr: str, service: bool = False) -> None:
    """No traceback; one `error:` line at the end (the service also logs its round's error, as for any round)."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == (2 if service else 1), stderr
    assert stderr.splitlines()[-1].startswith("error: stopped by SIG"), stderr


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_lets_the_running_migration_finish_and_starts_no_new_one(tmp_path, signum, code):
    with SimulatorServer(rebalance_cluster(), time_scale=SLOW) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim)
        cli = Cli("apply", "--config", config, "--plan", _plan(tmp_path / "plan.json", sim), "--yes", "--json")
        start = cli.wait_for("start")
        assert start["vmid"] == 101
        cli.proc.send_signal(signum)
        exit_code, events, stderr = cli.finish()
        assert exit_code == code, stderr
        summary = _summary(events)
        states = {s["vmid"]: s["state"] for s in summary["steps"]}
        assert states == {101: "done", 102: "skipped"}
        assert summary["signal"] == signal.Signals(signum).name and summary["exit_code"] == code
        assert "not started" in next(s["message"] for s in summary["steps"] if s["vmid"] == 102)
        assert any(e.get("event") == "interrupt" for e in events)
        placement = sim.state.placement()
        assert placement[101] == "pve3" and placement[102] == "pve1"  # the truth the report gave
        assert sim.state.lock_of(101) is None and sim.state.lock_of(102) is None
        assert [t.vmid for t in sim.state.tasks() if t.type == "qmigrate"] == [101]
        _no_traceback(stderr)
        assert f"stopped by {signal.Signals(signum).name}" in stderr


def test_interrupt_wait_bounds_the_wait_and_the_report_names_what_still_runs(tmp_path):
    with SimulatorServer(rebalance_cluster(), time_scale=SLOW, faults=Faults(task_hang=frozenset({101}))) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim, interrupt_wait=1)
        cli = Cli("apply", "--config", config, "--plan", _plan(tmp_path / "plan.json", sim), "--yes", "--json")
        cli.wait_for("start")
        sent = time.monotonic()
        cli.proc.send_signal(signal.SIGTERM)
        exit_code, events, stderr = cli.finish()
        assert exit_code == 143, stderr
        assert time.monotonic() - sent < 20  # one second of waiting, then the report (not max_job_validation)
        summary = _summary(events)
        step = next(s for s in summary["steps"] if s["vmid"] == 101)
        assert step["state"] == "unknown" and "still running in PVE" in step["message"]
        assert summary["still_running"][0]["upid"] == step["upid"]
        assert sim.state.task(step["upid"]).status == "running"  # it does still run: the report is the truth
        _no_traceback(stderr)


def test_a_second_signal_stops_waiting_but_still_reports(tmp_path):
    with SimulatorServer(rebalance_cluster(), time_scale=SLOW, faults=Faults(task_hang=frozenset({101}))) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim, interrupt_wait=300)
        cli = Cli("apply", "--config", config, "--plan", _plan(tmp_path / "plan.json", sim), "--yes", "--json")
        cli.wait_for("start")
        cli.proc.send_signal(signal.SIGINT)
        cli.wait_for("interrupt")
        time.sleep(0.3)
        assert cli.proc.poll() is None  # still waiting for the migration
        sent = time.monotonic()
        cli.proc.send_signal(signal.SIGINT)
        exit_code, events, stderr = cli.finish()
        assert exit_code == 130, stderr
        assert time.monotonic() - sent < 20
        summary = _summary(events)
        assert {s["vmid"]: s["state"] for s in summary["steps"]} == {101: "unknown", 102: "skipped"}
        _no_traceback(stderr)


def test_service_stops_its_round_on_sigterm(tmp_path):
    with SimulatorServer(rebalance_cluster(), time_scale=SLOW) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim)
        cli = Cli("service", "--config", config, "--json")
        start = cli.wait_for("start", timeout=120)
        cli.proc.send_signal(signal.SIGTERM)
        exit_code, events, stderr = cli.finish()
        assert exit_code == 143, stderr
        round_event = next(e for e in events if e.get("event") == "round")
        assert round_event["signal"] == "SIGTERM" and round_event["done"] >= 1
        ended = {e["vmid"]: e["event"] for e in events if e.get("event") in ("done", "failed", "unknown")}
        assert ended.get(start["vmid"]) == "done"  # the running migration was waited for
        started = [e["vmid"] for e in events if e.get("event") == "start"]
        assert all(sim.state.lock_of(v) is None for v in sim.state.placement())
        migrated = {t.vmid for t in sim.state.tasks() if t.type in ("qmigrate", "hamigrate", "vzmigrate")}
        assert migrated == set(started)  # nothing started after the signal
        _no_traceback(stderr, service=True)


def test_service_stops_between_rounds_at_once(tmp_path):
    with SimulatorServer(rebalance_cluster(), time_scale=SLOW * 40) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim)
        cli = Cli("service", "--config", config, "--json")
        cli.wait_for("round", timeout=120)  # the first round is over; the next one is hours away
        time.sleep(0.3)
        sent = time.monotonic()
        cli.proc.send_signal(signal.SIGTERM)
        exit_code, events, stderr = cli.finish()
        assert exit_code == 143 and time.monotonic() - sent < 10, stderr
        assert "Traceback" not in stderr and stderr.splitlines()[-1] == "error: stopped by SIGTERM between rounds"


def test_a_signal_before_any_migration_ends_apply_at_once_with_a_report(tmp_path):
    # Every answer takes half a second: the signal comes while apply still reads the cluster.
    with SimulatorServer(rebalance_cluster(), time_scale=SLOW, faults=Faults(delay=0.5)) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim)
        cli = Cli("apply", "--config", config, "--yes", "--json")  # plans live first
        deadline = time.monotonic() + 60
        while sim.request_count.total < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        sent = time.monotonic()
        cli.proc.send_signal(signal.SIGTERM)
        exit_code, events, stderr = cli.finish()
        assert exit_code == 143 and time.monotonic() - sent < 10, stderr
        summary = _summary(events)
        assert summary["exit_code"] == 143 and "before any migration started" in summary["error"]
        assert not [t for t in sim.state.tasks()]
        _no_traceback(stderr)
