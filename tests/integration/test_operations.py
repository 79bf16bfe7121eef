"""Operations against the simulator: the audit log of a real apply, apply refused while another run holds
the lock, and a service round's metrics scraped over HTTP and read from the textfile."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from proxlb_opt.adapters.lock import service_lock_path
from proxlb_opt.service import run_service
from proxlb_opt.simulator import SimulatorServer
from tests.integration.conftest import FAST, rebalance_cluster, write_config
from tests.test_operations import _free_port, holder  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "proxlb_opt", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def _samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_apply_writes_the_audit_log(tmp_path):
    audit = tmp_path / "log" / "audit.jsonl"
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim, audit_log=str(audit),
                              lock_file=str(tmp_path / "proxlb-opt.lock"))
        before = sim.state.placement()
        out = cli("apply", "--config", config, "--yes", "--json")
        assert out.returncode == 0, out.stderr
        after = sim.state.placement()
        summary = json.loads(out.stdout.splitlines()[-1])
        password = sim.password
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    kinds = [line["event"] for line in lines]
    planned = [line for line in lines if line["event"] == "planned"]
    steps = [line for line in lines if line["event"] == "step"]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end" and len({line["run"] for line in lines}) == 1
    assert lines[0]["migrations"] == len(planned) == len(summary["steps"]) > 0
    assert kinds.index("step") > max(i for i, k in enumerate(kinds) if k == "planned")  # the plan comes first
    ends = [s for s in steps if s["outcome"] != "started"]
    assert sorted((s["vmid"], s["outcome"]) for s in ends) == sorted((s["vmid"], s["state"]) for s in summary["steps"])
    for s in ends:
        assert s["reason"] and s["from"] and s["to"]
    started = [s for s in steps if s["outcome"] == "started"]
    assert started and all(s["upid"].startswith("UPID:") for s in started)
    moved = {vmid for vmid in after if after[vmid] != before[vmid]}
    assert moved == {s["vmid"] for s in ends if s["outcome"] == "done"}
    assert lines[-1] | {"time": None} == {"time": None, "run": lines[0]["run"], "command": "apply", "round": None,
                                          "event": "run_end", "outcome": "ok", "done": summary["done"],
                                          "skipped": summary["skipped"], "failed": 0, "error": None}
    assert password not in audit.read_text()
    # Every step event of apply's JSON output carries the step's reason now.
    events = [json.loads(line) for line in out.stdout.splitlines()[:-1]]
    assert all("reason" in e for e in events if e.get("event") in ("done", "skipped", "failed"))


def test_a_second_apply_is_refused_with_exit_75_and_migrates_nothing(tmp_path, holder):  # noqa: F811
    lock = tmp_path / "proxlb-opt.lock"
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim, lock_file=str(lock),
                              audit_log=str(tmp_path / "audit.jsonl"))
        before = sim.state.placement()
        first = holder(lock)
        out = cli("apply", "--config", config, "--yes")
        assert out.returncode == 75, out.stderr
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")
        assert f"pid {first.pid} (proxlb-opt apply)" in out.stderr
        assert sim.state.placement() == before
        # plan is read-only: it takes no lock.
        assert cli("plan", "--config", config, "--json").returncode == 0
        # A service cannot start beside a running one either.
        other = holder(service_lock_path(lock))
        refused = cli("service", "--config", config, "--once")
        assert refused.returncode == 75 and f"pid {other.pid}" in refused.stderr
        first.kill()
        first.wait(timeout=10)
        # The holder died without releasing: its file does not block the next apply.
        assert cli("apply", "--config", config, "--yes").returncode == 0
        assert sim.state.placement() != before


def test_a_service_round_shows_its_metrics_over_http_and_in_the_textfile(tmp_path):
    port = _free_port()
    textfile = tmp_path / "textfile" / "proxlb_opt.prom"
    textfile.parent.mkdir()
    audit = tmp_path / "audit.jsonl"
    scraped: list[str] = []

    def downstream(event: dict) -> None:
        if event["event"] == "round":  # the metrics have seen the whole round: scrape them as Prometheus would
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                scraped.append(response.read().decode())

    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim, metrics_listen=f"127.0.0.1:{port}",
                              metrics_textfile=str(textfile), audit_log=str(audit),
                              lock_file=str(tmp_path / "proxlb-opt.lock"))
        outcome = run_service(config, True, False, downstream)
    assert outcome.error is None and outcome.done > 0
    for text in (scraped[0], textfile.read_text()):
        samples = _samples(text)
        assert samples[("proxlb_opt_rounds_total", (("result", "ok"),))] == 1
        assert samples[("proxlb_opt_migrations_total", (("outcome", "done"),))] == outcome.done
        assert samples[("proxlb_opt_last_round_migrations_planned", ())] == outcome.migrations
        assert samples[("proxlb_opt_last_round_applied", ())] == 1
        assert samples[("proxlb_opt_last_round_error", ())] == 0
        assert samples[("proxlb_opt_balance_spread_after_ratio", ())] < samples[
            ("proxlb_opt_balance_spread_before_ratio", ())]
        assert samples[("proxlb_opt_last_round_plan_status", (("status", outcome.result.status),))] == 1
        assert samples[("proxlb_opt_last_round_apply_seconds", ())] > 0
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert lines[0]["event"] == "run_start" and lines[0]["command"] == "service" and lines[0]["round"] == 1
    assert lines[-1]["event"] == "run_end" and lines[-1]["done"] == outcome.done and lines[-1]["outcome"] == "ok"
