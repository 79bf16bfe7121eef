"""apply writes its report on every way out, before the first migration too; errors stay one line."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from proxlb_opt.apply import BrokenRule, PlannedStep
from proxlb_opt.cli import _RulesBroken, _report_before_start
from proxlb_opt.simulator import SimulatorServer
from tests.integration.conftest import FAST, rebalance_cluster, write_config


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "proxlb_opt", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _plan(path, cluster_name="test"):
    path.write_text(json.dumps({
        "version": 2, "cluster": cluster_name, "nodes": [{"name": n} for n in ("pve1", "pve2", "pve3")],
        "migrations": [{"vmid": 104, "name": "app01", "type": "vm", "from": "pve1", "to": "pve3", "wave": 1}]}))
    return path


def _summary(stdout: str) -> dict:
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert events[-1]["event"] == "summary"
    return events[-1]


def test_a_refused_plan_still_gets_a_json_report(tmp_path):
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim)
        out = _cli("apply", "--config", config, "--plan", _plan(tmp_path / "plan.json", "other"), "--yes", "--json")
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert out.stderr.strip().splitlines()[-1].startswith("error: ")
        summary = _summary(out.stdout)
        assert summary["exit_code"] == 2 and "made for cluster 'other'" in summary["error"]
        assert summary["done"] == 0 and sim.state.placement()[104] == "pve1"


def test_the_migration_gate_reports_every_step_not_started(tmp_path):
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim)
        data = yaml.safe_load(config.read_text())
        data["balancing"]["enable"] = False
        config.write_text(yaml.safe_dump(data))
        out = _cli("apply", "--config", config, "--plan", _plan(tmp_path / "plan.json"), "--yes", "--json")
        assert out.returncode == 0, out.stderr
        summary = _summary(out.stdout)
        assert [s["state"] for s in summary["steps"]] == ["skipped"]
        assert "balancing.enable" in summary["steps"][0]["message"]
        assert not [t for t in sim.state.tasks() if t.vmid == 104]


def test_an_unreachable_cluster_gets_a_report_and_one_error_line(tmp_path):
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        config = write_config(tmp_path / "proxlb.yaml", sim)
    # The simulator is gone: the API cannot be reached (and its CA file with it).
    data = yaml.safe_load(config.read_text())
    data["proxmox_api"].update(ssl_verification=False, timeout=2)
    config.write_text(yaml.safe_dump(data))
    out = _cli("apply", "--config", config, "--plan", _plan(tmp_path / "plan.json"), "--yes", "--json")
    assert out.returncode == 3 and "Traceback" not in out.stderr
    assert len([line for line in out.stderr.splitlines() if "error:" in line]) == 1
    assert _summary(out.stdout)["exit_code"] == 3


def test_rules_broken_up_front_are_reported_with_the_moves_that_repair_them():
    broken = [BrokenRule("anti-affinity", "plb_anti_affinity_web on pve1", False)]
    repair = [{"vmid": 102, "name": "web02", "from": "pve1", "to": "pve2"}]
    error = _RulesBroken("the plan breaks rules (greedy algorithm); refusing to apply it", broken, repair)
    step = PlannedStep(101, "web01", "vm", "pve1", "pve3", wave=1)
    summary = _report_before_start([step], str(error), error).summary()
    assert summary["broken_rules"] == [b.as_dict() for b in broken] and summary["repair"] == repair
    assert summary["exit_code"] == 2 and summary["steps"][0]["state"] == "skipped"
    assert summary["steps"][0]["message"].startswith("not started: the plan breaks rules")
