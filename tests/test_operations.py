"""Operations (issue 13): the run lock, the audit log, the service's metrics and their config keys.

The lock is tested across processes (a second process holding the flock, one killed while holding it);
the metrics over a real HTTP GET and through the node_exporter textfile, both parsed with
prometheus_client's own text-format parser. The end-to-end runs against the simulator are in
tests/integration/test_operations.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from proxlb_opt.adapters.audit import AuditLog, default_audit_path, secrets_of
from proxlb_opt.adapters.lock import Holder, RunLock, default_lock_path, lock_path, service_lock_path
from proxlb_opt.adapters.metrics import ServiceMetrics
from proxlb_opt.apply import PlannedStep
from proxlb_opt.config import parse_listen, settings_from_dict
from proxlb_opt.errors import ConfigError, LockHeldError
from proxlb_opt.adapters.operations import ServiceWatch, apply_lock
from proxlb_opt.service import Round, run_service

ROOT = Path(__file__).resolve().parents[1]

HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from proxlb_opt.adapters.lock import RunLock
    lock = RunLock(Path(sys.argv[1]), "proxlb-opt apply").acquire()
    print("locked", flush=True)
    sys.stdin.read()  # holds the lock until the test closes stdin (or kills it)
""")


@pytest.fixture
def holder():
    """Start a second process holding the lock on a path; yields a function path -> Popen."""
    started: list[subprocess.Popen] = []

    def start(path: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        started.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


# ============================================================================ the lock


def test_a_second_process_is_refused_while_the_first_holds_the_lock(tmp_path, holder):
    path = tmp_path / "run" / "proxlb-opt.lock"
    first = holder(path)
    with pytest.raises(LockHeldError) as refused:
        RunLock(path, "proxlb-opt apply").acquire()
    message = str(refused.value)
    assert refused.value.exit_code == 75
    assert "\n" not in message and f"pid {first.pid} (proxlb-opt apply)" in message and str(path) in message
    first.stdin.close()  # the holder ends normally
    first.wait(timeout=10)
    with RunLock(path, "proxlb-opt apply") as lock:
        assert lock.held


def test_a_lock_file_left_by_a_killed_process_does_not_block(tmp_path, holder):
    path = tmp_path / "proxlb-opt.lock"
    first = holder(path)
    first.send_signal(signal.SIGKILL)  # no chance to release or clean up
    first.wait(timeout=10)
    left = Holder.from_text(path.read_text())
    assert left is not None and left.pid == first.pid  # the dead holder's name is still in the file
    lock = RunLock(path, "proxlb-opt service").acquire()
    try:
        mine = Holder.from_text(path.read_text())
        assert mine.pid == os.getpid() and mine.command == "proxlb-opt service"
    finally:
        lock.release()
    assert path.exists() and path.read_text() == ""  # kept (never removed), emptied of the ended holder


def test_holder_line_round_trips_and_names_pid_command_host_and_time():
    h = Holder(4242, "proxlb-opt apply", "pve1", datetime(2026, 11, 30, 8, 0, 3, tzinfo=timezone.utc).timestamp())
    back = Holder.from_text(h.to_line())
    assert back == h
    text = back.describe(now=h.since + 60)
    assert text.startswith("pid 4242 (proxlb-opt apply) on pve1 since ")
    assert Holder.from_text("") is None and Holder.from_text("garbage") is None


def test_same_process_second_open_is_refused_too(tmp_path):
    """flock belongs to the open file: a service round and an apply in one process exclude each other."""
    path = tmp_path / "x.lock"
    with RunLock(path, "one"):
        with pytest.raises(LockHeldError, match=rf"pid {os.getpid()} \(one\)"):
            RunLock(path, "two").acquire()


def test_default_lock_path_order(tmp_path):
    assert default_lock_path({"RUNTIME_DIRECTORY": str(tmp_path)}) == tmp_path / "proxlb-opt.lock"
    writable = tmp_path / "run"
    writable.mkdir()
    assert default_lock_path({}, writable / "proxlb-opt") == writable / "proxlb-opt" / "proxlb-opt.lock"
    missing = Path("/nonexistent-dir/proxlb-opt")
    assert default_lock_path({"XDG_RUNTIME_DIR": "/run/user/1000"}, missing) == Path("/run/user/1000/proxlb-opt.lock")
    fallback = default_lock_path({}, missing)
    assert fallback.name == f"proxlb-opt-{os.getuid()}.lock"
    assert lock_path("/srv/x.lock") == Path("/srv/x.lock")
    assert service_lock_path(Path("/run/proxlb-opt/proxlb-opt.lock")) == Path("/run/proxlb-opt/proxlb-opt.service.lock")


def test_the_lock_file_may_not_be_a_symlink(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me")
    (tmp_path / "evil.lock").symlink_to(target)
    with pytest.raises(ConfigError, match="optimizer.lock_file"):
        RunLock(tmp_path / "evil.lock", "apply").acquire()
    assert target.read_text() == "keep me"


def test_apply_locks_only_when_it_may_migrate(tmp_path):
    path = tmp_path / "l.lock"
    on = settings_from_dict({"balancing": {"enable": True}, "optimizer": {"lock_file": str(path)}})
    off = settings_from_dict({"balancing": {"enable": False}, "optimizer": {"lock_file": str(path)}})
    with apply_lock(off):
        assert not path.exists()
    with apply_lock(on):
        with pytest.raises(LockHeldError):
            RunLock(path, "other").acquire()
    RunLock(path, "other").acquire().release()


# ============================================================================ config keys


def test_operations_keys_are_read():
    s = settings_from_dict({"optimizer": {"lock_file": "/tmp/a.lock", "audit_log": "/tmp/a.jsonl",
                                          "metrics_listen": "[::1]:9877", "metrics_textfile": "/tmp/p.prom"}})
    assert (s.lock_file, s.audit_log, s.metrics_listen, s.metrics_textfile) == (
        "/tmp/a.lock", "/tmp/a.jsonl", ("::1", 9877), "/tmp/p.prom")
    defaults = settings_from_dict({})
    assert (defaults.lock_file, defaults.audit_log, defaults.metrics_listen, defaults.metrics_textfile) == (
        None, None, None, None)
    assert settings_from_dict({"optimizer": {"audit_log": "none"}}).audit_log == ""


@pytest.mark.parametrize("value, expected", [("9877", ("127.0.0.1", 9877)), ("0.0.0.0:9100", ("0.0.0.0", 9100)),
                                             (9877, ("127.0.0.1", 9877)), ("[::]:80", ("::", 80))])
def test_parse_listen(value, expected):
    assert parse_listen(value, "x") == expected


@pytest.mark.parametrize("value", ["host", "::1:80", "h:99999", ":80", "h:x"])
def test_parse_listen_refuses(value):
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_listen(value, "x")


# ============================================================================ the audit log


def _step(vmid=101, reason="balance", **kw):
    return PlannedStep(vmid=vmid, name=f"g{vmid}", type="vm", source="pve1", target="pve2", wave=1,
                       reason=reason, **kw)


def _event(kind, step, **kw):
    return {"event": kind, "vmid": step.vmid, "name": step.name, "type": step.type, "from": step.source,
            "to": step.target, "wave": step.wave, "hop": step.hop, "reason": step.reason, "message": "",
            "upid": None, "seconds": 0.0, **kw}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_audit_log_records_run_start_planned_steps_and_end(tmp_path):
    path = tmp_path / "audit" / "audit.jsonl"
    audit = AuditLog.open(str(path), "apply")
    a, b = _step(101), _step(102, reason="maintenance")
    seen = []
    emit = audit.tee(seen.append)
    with audit.running([a, b]):
        emit(_event("start", a, upid="UPID:pve1:1"))
        emit(_event("done", a, upid="UPID:pve1:1", seconds=3.2))
        emit(_event("skipped", b, message="already on pve2"))
    emit({"event": "summary", "done": 1})
    lines = _lines(path)
    assert [line["event"] for line in lines] == ["run_start", "planned", "planned", "step", "step", "step", "run_end"]
    assert len({line["run"] for line in lines}) == 1 and all(line["command"] == "apply" for line in lines)
    assert lines[0]["migrations"] == 2
    assert lines[2] | {"time": None} == {"time": None, "run": audit.run, "command": "apply", "round": None,
                                         "event": "planned", "vmid": 102, "name": "g102", "type": "vm",
                                         "from": "pve1", "to": "pve2", "reason": "maintenance", "wave": 1, "hop": 0}
    assert [line["outcome"] for line in lines[3:6]] == ["started", "done", "skipped"]
    assert lines[5]["reason"] == "maintenance" and lines[5]["message"] == "already on pve2"
    assert lines[6] | {"time": None} == {"time": None, "run": audit.run, "command": "apply", "round": None,
                                         "event": "run_end", "outcome": "ok", "done": 1, "skipped": 1, "failed": 0,
                                         "error": None}
    assert lines[0]["time"].endswith("Z")
    assert len(seen) == 4  # every event still reaches the printer


def test_audit_log_appends_and_ends_an_interrupted_run_as_error(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text('{"earlier": true}\n')
    audit = AuditLog.open(str(path), "apply")
    with pytest.raises(KeyboardInterrupt):
        with audit.running([_step()]):
            audit.record(_event("failed", _step(), message="task error"))
            raise KeyboardInterrupt
    lines = _lines(path)
    assert lines[0] == {"earlier": True}  # append-only
    assert lines[-1]["event"] == "run_end" and lines[-1]["outcome"] == "failed" and lines[-1]["failed"] == 1
    assert lines[-1]["error"] == "KeyboardInterrupt"


def test_audit_log_never_writes_the_credentials(tmp_path):
    password = settings_from_dict({"proxmox_api": {"hosts": ["h"], "user": "root@pam", "pass": "hunter2-pw"}})
    token = settings_from_dict({"proxmox_api": {"hosts": ["h"], "user": "root@pam", "token_id": "t",
                                                "token_secret": "0f1e-secret"}})
    assert secrets_of(password) == ("hunter2-pw",) and secrets_of(token) == ("0f1e-secret",)
    path = tmp_path / "audit.jsonl"
    audit = AuditLog.open(str(path), "apply", secrets_of(password) + secrets_of(token))
    with audit.running([_step()]):
        audit.record(_event("failed", _step(), message="401: hunter2-pw rejected, token 0f1e-secret"))
    text = path.read_text()
    assert "hunter2-pw" not in text and "0f1e-secret" not in text and "********" in text


def test_audit_log_off_and_default_path(tmp_path, monkeypatch):
    assert AuditLog.open("", "apply").path is None  # audit_log: none
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    assert default_audit_path() == tmp_path / "audit.jsonl"
    assert AuditLog.open(None, "apply").path == tmp_path / "audit.jsonl"


def test_audit_log_that_cannot_be_opened(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="optimizer.audit_log"):  # configured: refuse to migrate unrecorded
        AuditLog.open(str(blocker / "audit.jsonl"), "apply")
    monkeypatch.setenv("STATE_DIRECTORY", str(blocker))  # the default: a warning, nothing recorded
    assert AuditLog.open(None, "apply").path is None
    assert "cannot be opened" in caplog.text


# ============================================================================ metrics


def _result(steps=3, status="optimal"):
    return SimpleNamespace(plan=SimpleNamespace(steps=[object()] * steps), status=status,
                           spread_per_resource_before={"memory": 30.0, "cpu": 10.0},
                           spread_per_resource_after={"memory": 5.0, "cpu": 4.0},
                           spread_before=20.0, spread_after=4.5, bound=4.0, solve_seconds=1.5, sequence_seconds=0.5)


def _feed(metrics: ServiceMetrics) -> None:
    metrics.begin_round()
    metrics.observe({"event": "plan", "result": _result(), "apply": True})
    for kind in ("start", "done", "start", "done", "start", "failed"):
        metrics.observe({"event": kind, "vmid": 101})
    metrics.observe({"event": "round", "migrations": 3, "done": 2, "failed": 1, "error": "1 migration(s) failed"})
    metrics.lock_refused()


def _samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _check_fed(samples: dict[tuple, float]) -> None:
    assert samples[("proxlb_opt_migrations_total", (("outcome", "done"),))] == 2
    assert samples[("proxlb_opt_migrations_total", (("outcome", "failed"),))] == 1
    assert samples[("proxlb_opt_migrations_total", (("outcome", "skipped"),))] == 0
    assert samples[("proxlb_opt_migrations_planned_total", ())] == 3
    assert samples[("proxlb_opt_rounds_total", (("result", "error"),))] == 1
    assert samples[("proxlb_opt_rounds_total", (("result", "ok"),))] == 0
    assert samples[("proxlb_opt_lock_refusals_total", ())] == 1
    assert samples[("proxlb_opt_spread_before_ratio", (("resource", "memory"),))] == pytest.approx(0.30)
    assert samples[("proxlb_opt_spread_after_ratio", (("resource", "cpu"),))] == pytest.approx(0.04)
    assert samples[("proxlb_opt_balance_spread_after_ratio", ())] == pytest.approx(0.045)
    assert samples[("proxlb_opt_balance_spread_lower_bound_ratio", ())] == pytest.approx(0.04)
    assert samples[("proxlb_opt_last_round_plan_status", (("status", "optimal"),))] == 1
    assert samples[("proxlb_opt_last_round_migrations_planned", ())] == 3
    assert samples[("proxlb_opt_last_round_migrations", (("outcome", "done"),))] == 2
    assert samples[("proxlb_opt_last_round_error", ())] == 1
    assert samples[("proxlb_opt_last_round_applied", ())] == 1
    assert samples[("proxlb_opt_last_round_solve_seconds", ())] == pytest.approx(2.0)
    assert samples[("proxlb_opt_last_round_timestamp_seconds", ())] > 1.7e9
    assert samples[("proxlb_opt_last_round_duration_seconds", ())] >= 0
    assert samples[("proxlb_opt_lock_held", ())] == 0
    assert ("proxlb_opt_build_info", (("version", __import__("proxlb_opt").__version__),)) in samples


def test_metrics_are_served_over_http_and_parse():
    metrics = ServiceMetrics()
    host, port = metrics.serve("127.0.0.1", 0)
    try:
        _feed(metrics)
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
            text = response.read().decode()
    finally:
        metrics.close()
    _check_fed(_samples(text))
    assert all(line.startswith(("#", "proxlb_opt_")) for line in text.splitlines() if line)
    assert "python_gc" not in text and "process_cpu" not in text  # a private registry, not the global one


def test_metrics_textfile_is_written_whole(tmp_path):
    metrics = ServiceMetrics()
    _feed(metrics)
    path = tmp_path / "textfile" / "proxlb_opt.prom"
    path.parent.mkdir()
    metrics.write_textfile(str(path))
    _check_fed(_samples(path.read_text()))
    assert [p.name for p in path.parent.iterdir()] == ["proxlb_opt.prom"]  # no temporary file left beside it


def test_metrics_textfile_that_cannot_be_written_only_warns(tmp_path, caplog):
    ServiceMetrics().write_textfile(str(tmp_path / "missing-dir" / "x.prom"))
    assert "cannot be written" in caplog.text


# ============================================================================ the service's watch


def _config(tmp_path: Path, **optimizer) -> Path:
    path = tmp_path / "proxlb.yaml"
    path.write_text(yaml.safe_dump({"proxmox_api": {"hosts": ["127.0.0.1:1"], "user": "root@pam", "pass": "x"},
                                    "balancing": {"enable": True},
                                    "optimizer": {"lock_file": str(tmp_path / "run.lock"), **optimizer}}))
    return path


def test_a_second_service_refuses_to_start(tmp_path, holder):
    config = _config(tmp_path)
    other = holder(service_lock_path(tmp_path / "run.lock"))
    with pytest.raises(LockHeldError, match=f"pid {other.pid}"):
        run_service(config, True, False, lambda e: None, round_fn=lambda *a, **k: pytest.fail("no round may run"))


def test_a_round_finding_the_run_lock_held_is_skipped_and_counted(tmp_path, holder):
    textfile = tmp_path / "metrics.prom"
    config = _config(tmp_path, metrics_textfile=str(textfile), audit_log=str(tmp_path / "audit.jsonl"))
    other = holder(tmp_path / "run.lock")  # e.g. an administrator's apply
    events: list[dict] = []
    outcome = run_service(config, True, False, events.append,
                          round_fn=lambda *a, **k: pytest.fail("the round may not run without the lock"))
    assert isinstance(outcome.error, LockHeldError) and f"pid {other.pid}" in str(outcome.error)
    assert events[-1]["event"] == "round" and "holds the lock" in events[-1]["error"]
    samples = _samples(textfile.read_text())
    assert samples[("proxlb_opt_lock_refusals_total", ())] == 1
    assert samples[("proxlb_opt_rounds_total", (("result", "error"),))] == 1
    assert not (tmp_path / "audit.jsonl").exists() or (tmp_path / "audit.jsonl").read_text() == ""


def test_a_round_holds_the_run_lock_and_a_dry_run_takes_none(tmp_path):
    config = _config(tmp_path)
    seen = []

    def round_fn(settings, dry_run, emit, **kwargs):
        try:
            RunLock(tmp_path / "run.lock", "probe").acquire().release()
            seen.append("free")
        except LockHeldError:
            seen.append("held")
        return Round()

    run_service(config, True, False, lambda e: None, round_fn=round_fn)
    run_service(config, True, True, lambda e: None, round_fn=round_fn)
    assert seen == ["held", "free"]
    RunLock(tmp_path / "run.lock", "after").acquire().release()  # released when the service ended


def test_service_watch_serves_metrics_for_its_life(tmp_path):
    port = _free_port()
    settings = settings_from_dict({"balancing": {"enable": True},
                                   "optimizer": {"lock_file": str(tmp_path / "l.lock"),
                                                 "metrics_listen": f"127.0.0.1:{port}"}})
    with ServiceWatch(settings, dry_run=False):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert b"proxlb_opt_rounds_total" in response.read()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
