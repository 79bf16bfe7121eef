"""ProxLB's command line against the simulator: `proxlb-opt -c FILE [-d] [-j] [-b] [-v]` as `proxlb` is run.

Each test runs the real console entry point in a subprocess and checks the exit code, that stdout holds
only what was asked for (JSON alone with -j, a node name alone with -b) and what moved in the simulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from proxlb_opt import __version__
from proxlb_opt.config import Settings
from proxlb_opt.simulator import SimulatorServer
from tests.integration.conftest import FAST, api_section, rebalance_cluster

OPTIMIZER = {"workers": 1, "time_limit": 3, "poll_interval": 0.02}


def cli(*args, env: dict | None = None):
    import os

    return subprocess.run([sys.executable, "-m", "proxlb_opt", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def config_file(path: Path, sim: SimulatorServer, **sections) -> Path:
    data = {"proxmox_api": api_section(sim), **sections}
    path.write_text(yaml.safe_dump(data))
    return path


def one_line_error(out, code: int, text: str) -> None:
    assert out.returncode == code, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and text in lines[-1], out.stderr
    assert "Traceback" not in out.stderr and "╭" not in out.stderr


@pytest.fixture
def sim():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as server:
        yield server


def test_dry_run_json_is_proxlb_shaped_and_alone_on_stdout(sim, tmp_path):
    config = config_file(tmp_path / "proxlb.yaml", sim, balancing={"balanciness": 2, "enable": True},
                         optimizer=OPTIMIZER)
    before = sim.state.placement()
    out = cli("-c", config, "-d", "-j")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # the whole of stdout is one JSON document
    assert {"groups", "guests", "ha_rules", "nodes", "pools"} <= set(data)
    assert set(data["nodes"]) == {"pve1", "pve2", "pve3"}
    web01 = data["guests"]["web01"]
    assert web01["id"] == 101 and web01["node_current"] == "pve1" and web01["type"] == "vm"
    moved = {g["id"]: g["node_target"] for g in data["guests"].values() if g["node_target"] != g["node_current"]}
    assert moved and moved == {m["vmid"]: m["to"] for m in data["proxlb_opt"]["migrations"]}
    assert {"used_percent", "assigned_percent", "free"} <= set(data["nodes"]["pve1"]["memory"])
    assert sim.state.placement() == before  # -d: nothing migrates, whatever balancing.enable says


def test_dry_run_prints_the_plan_table(sim, tmp_path):
    config = config_file(tmp_path / "proxlb.yaml", sim, balancing={"balanciness": 2}, optimizer=OPTIMIZER)
    before = sim.state.placement()
    out = cli("-c", config, "-d")
    assert out.returncode == 0, out.stderr
    assert "Migrations" in out.stdout and "101 web01" in out.stdout
    assert sim.state.placement() == before


def test_best_node_prints_only_the_name(sim, tmp_path):
    config = config_file(tmp_path / "proxlb.yaml", sim, optimizer=OPTIMIZER)
    out = cli("-c", config, "-b")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "pve3\n"  # the empty node, as ProxLB's least-used node


def test_best_node_when_nothing_fits(sim, tmp_path):
    config = config_file(tmp_path / "proxlb.yaml", sim, optimizer=OPTIMIZER,
                         proxmox_cluster={"maintenance_nodes": ["pve1", "pve2", "pve3"]})
    one_line_error(cli("-c", config, "-b"), 4, "no node")


@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_version_needs_no_config(flag):
    out = cli(flag)
    assert out.returncode == 0 and out.stdout == f"proxlb-opt {__version__}\n" and out.stderr == ""


@pytest.mark.parametrize("command", ["plan", "best-node", "what-if", "snapshot", "apply", "service", "simulate",
                                     "version"])
def test_version_on_every_command(command):
    out = cli(command, "--version")
    assert out.returncode == 0 and out.stdout == f"proxlb-opt {__version__}\n", out.stderr


def test_balancing_disabled_migrates_nothing(sim, tmp_path):
    config = config_file(tmp_path / "proxlb.yaml", sim, balancing={"enable": False, "balanciness": 2},
                         optimizer=OPTIMIZER, service={"daemon": False})
    before = sim.state.placement()
    out = cli("-c", config)
    assert out.returncode == 0, out.stderr
    assert sim.state.placement() == before
    assert "web01" in out.stderr and "none started: balancing.enable is false" in out.stderr
    assert out.stdout == ""  # a run without -j or -d prints nothing on stdout, as a service


def test_config_with_only_proxmox_api_migrates_nothing(sim, tmp_path):
    # ProxLB's defaults: balancing.enable false; service.daemon true would loop, so one round is asked for.
    config = config_file(tmp_path / "proxlb.yaml", sim)
    before = sim.state.placement()
    out = cli("service", "-c", config, "--once")
    assert out.returncode == 0, out.stderr
    assert sim.state.placement() == before


def test_balancing_enabled_runs_one_round_and_migrates(sim, tmp_path):
    config = config_file(tmp_path / "proxlb.yaml", sim, optimizer=OPTIMIZER,
                         balancing={"enable": True, "balanciness": 2, "parallel": True, "max_job_validation": 30},
                         service={"daemon": False})
    before = sim.state.placement()
    out = cli("-c", config, "-j")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # -j without -d: the round's plan, JSON alone on stdout
    after = sim.state.placement()
    planned = {g["id"]: g["node_target"] for g in data["guests"].values()}
    assert after != before and after == planned
    assert "round 1: " in out.stderr and "0 failed" in out.stderr


def test_missing_config_is_one_line(tmp_path):
    one_line_error(cli("-c", tmp_path / "nope.yaml", "-d"), 2, "config file not found")


def test_config_without_api_section(tmp_path):
    config = tmp_path / "proxlb.yaml"
    config.write_text("balancing: {enable: false}\n")
    one_line_error(cli("-c", config, "-d"), 2, "proxmox_api")


def test_proxlb_options_with_a_command_are_a_usage_error(tmp_path):
    one_line_error(cli("-c", tmp_path / "proxlb.yaml", "plan"), 2, "after the command")


# ----------------------------------------------------------------------------- apply: the target cluster


def test_a_plan_for_another_cluster_is_refused(sim, tmp_path):
    demo = Path(__file__).resolve().parents[2] / "models" / "demo.yaml"
    plan = tmp_path / "plan.json"
    made = cli("plan", "--model", demo, "--workers", "1", "--time-limit", "3", "-o", plan)
    assert made.returncode == 0, made.stderr
    config = config_file(tmp_path / "proxlb.yaml", sim, optimizer=OPTIMIZER)
    before = sim.state.placement()
    out = cli("apply", "--config", config, "--plan", plan, "--yes")
    one_line_error(out, 2, "made for cluster 'demo'")
    assert sim.state.placement() == before


def test_a_plan_for_other_nodes_is_refused(sim, tmp_path):
    from proxlb_opt.cluster import cluster_to_dict

    model = cluster_to_dict(rebalance_cluster())  # same cluster name, one node renamed
    model["nodes"][2]["name"] = "pve9"
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(model))
    plan = tmp_path / "plan.json"
    made = cli("plan", "--model", tmp_path / "other.yaml", "--workers", "1", "--time-limit", "3", "--json", "-o", plan)
    assert made.returncode == 0, made.stderr
    config = config_file(tmp_path / "proxlb.yaml", sim, optimizer=OPTIMIZER)
    out = cli("apply", "--config", config, "--plan", plan, "--yes")
    one_line_error(out, 2, "not in the plan: pve3; not in the cluster: pve9")


def test_apply_shows_plan_and_target_before_migrating(sim, tmp_path):
    config = config_file(tmp_path / "proxlb.yaml", sim, optimizer=OPTIMIZER,
                         balancing={"enable": True, "balanciness": 2, "parallel": True, "max_job_validation": 30})
    plan = tmp_path / "plan.json"
    assert cli("plan", "--config", config, "--json", "-o", plan).returncode == 0
    data = json.loads(plan.read_text())
    assert min(m["wave"] for m in data["migrations"]) == 1  # waves count from 1 in the file too
    out = cli("apply", "--config", config, "--plan", plan, "--yes")
    assert out.returncode == 0, out.stderr
    assert f"target: cluster {data['cluster']}, 3 nodes (pve1, pve2, pve3)" in out.stderr
    assert f"moves: {len(data['migrations'])} migration(s)" in out.stderr and "predicted" in out.stderr
    assert "[wave 1] " in out.stderr and "[wave 0]" not in out.stderr


# ----------------------------------------------------------------------------- connection errors


def test_untrusted_certificate_names_cause_and_fix(sim, tmp_path):
    config = config_file(tmp_path / "proxlb.yaml", sim)
    data = yaml.safe_load(config.read_text())
    data["proxmox_api"]["ssl_verification"] = True  # the simulator's CA is not in the system store
    config.write_text(yaml.safe_dump(data))
    out = cli("plan", "--config", config)
    one_line_error(out, 3, "certificate verify failed")
    assert "ssl_verification: /path/to/ca.pem" in out.stderr and "or false" in out.stderr


def test_logs_carry_syslog_priorities_when_not_on_a_terminal(sim, tmp_path):
    config = config_file(tmp_path / "proxlb.yaml", sim, balancing={"balanciness": 2}, optimizer=OPTIMIZER)
    out = cli("-c", config, "-d", "-j")
    assert out.returncode == 0
    assert all(line.startswith("<") for line in out.stderr.splitlines()), out.stderr
    assert "<6>info: collected 8 guests" in out.stderr
    journal = cli("-c", tmp_path / "nope.yaml", "-d", env={"JOURNAL_STREAM": "8:1234"})
    assert journal.stderr.startswith("<3>error: ")  # journalctl -p err finds the failure
