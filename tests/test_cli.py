"""CLI behaviour as a user sees it: the real console script in a subprocess (stdout, stderr, exit codes)."""

import json
import subprocess
import sys

import pytest

from proxlb_opt.cluster import cluster_to_dict
from tests.builders import cluster, guest, node


def run(*args, stdin: str | None = None):
    return subprocess.run([sys.executable, "-m", "proxlb_opt", *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=120)


@pytest.fixture
def model(tmp_path):
    c = cluster([node("pve1", "64G"), node("pve2", "64G"), node("pve3", "64G")],
                [guest(100 + i, "pve1", "6G", name=f"web{i:02d}") for i in range(8)]
                + [guest(200, "pve2", "4G", tags=["plb_pin_pve2"])])
    path = tmp_path / "cluster.yaml"
    import yaml
    path.write_text(yaml.safe_dump(cluster_to_dict(c)))
    return path


def test_plan_json_is_json_only(model):
    out = run("plan", "--model", model, "--json", "--workers", "1")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key in ("version", "status", "spread_before", "spread_after", "bound", "migrations", "nodes", "solve_seconds",
                "waves", "predicted_seconds"):
        assert key in data
    assert data["spread_after"] < data["spread_before"]
    assert all({"vmid", "name", "type", "from", "to", "reason", "wave", "start_s", "end_s", "via"} <= set(m)
               for m in data["migrations"])
    assert all(m["vmid"] != 200 for m in data["migrations"])


def test_plan_table(model):
    out = run("plan", "--model", model, "--workers", "1")
    assert out.returncode == 0 and "Migrations" in out.stdout and "spread" in out.stdout


def test_plan_writes_output_file(model, tmp_path):
    target = tmp_path / "plan.json"
    out = run("plan", "--model", model, "--json", "-o", target, "--algorithm", "greedy")
    assert out.returncode == 0 and json.loads(target.read_text())["algorithm"] == "greedy"


@pytest.mark.parametrize("args, code, text", [
    (["plan", "--model", "/nonexistent.yaml"], 2, "model file not found"),
    (["plan", "--model", "{model}", "--method", "ram"], 2, "--method"),
    (["plan", "--model", "{model}", "--max-migrations", "-1"], 2, "max-migrations"),
    (["plan", "--model", "{model}", "--config", "/nonexistent/proxlb.yaml"], 2, "config file not found"),
    (["plan"], 2, "--model"),
    (["plan", "--model", "{model}", "--maintenance", "pve1", "--maintenance", "pve2", "--maintenance", "pve3"], 4,
     "no node it may run on"),
])
def test_errors_are_one_line_with_exit_code(model, args, code, text):
    out = run(*[a.replace("{model}", str(model)) for a in args])
    assert out.returncode == code, out.stderr
    assert text in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content, text", [
    ("version: 1\nnodes: [{name: a, cpus: 4, memory: -8G}]\n", "nodes[0] (a).memory"),
    ("version: 1\nnodes: [{name: a, cpus: 4, memory: 8G}]\nguests: [{vmid: 1, node: b, memory: 1G}]\n", "unknown node 'b'"),
    ("version: 1\nnodes: [{name: a, cpus: 4, memory: 8G}]\nguests: [{vmid: 1, node: a, memory: 1G}, {vmid: 1, node: a, memory: 1G}]\n", "duplicate vmid"),
    ("version: 1\nnodes: [{name: a, cpus: 4, memory: 8G\n", "not valid YAML/JSON"),
    ("", "expected a mapping"),
])
def test_malformed_models(tmp_path, content, text):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    out = run("plan", "--model", path)
    assert out.returncode == 2 and text in out.stderr and "Traceback" not in out.stderr


def test_bad_config_suggests_key(model, tmp_path):
    config = tmp_path / "proxlb.yaml"
    config.write_text("balancing:\n  balancines: 3\n")
    out = run("plan", "--model", model, "--config", config)
    assert out.returncode == 2 and "did you mean balancing.balanciness" in out.stderr


def test_maintenance_only_config(model, tmp_path):
    config = tmp_path / "proxlb.yaml"
    config.write_text("proxmox_cluster:\n  maintenance_nodes: [pve1]\n")
    out = run("plan", "--model", model, "--config", config, "--json", "--workers", "1")
    data = json.loads(out.stdout)
    assert out.returncode == 0 and all(m["to"] != "pve1" for m in data["migrations"])
    assert data["mandatory_migrations"] == 8


def test_best_node_and_terraform(model):
    out = run("best-node", "--model", model, "--cpus", "2", "--memory", "8G", "--json")
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["node"] in ("pve2", "pve3")
    tf = run("best-node", "--terraform", stdin=json.dumps({"cpus": "2", "memory": "8G", "model": str(model),
                                                           "tags": "plb_pin_pve1"}))
    assert tf.returncode == 0 and json.loads(tf.stdout) == {"node": "pve1"}
    bad = run("best-node", "--terraform", stdin="[1,2]")
    assert bad.returncode == 2 and "JSON object of strings" in bad.stderr


def test_best_node_nothing_fits(model):
    out = run("best-node", "--model", model, "--cpus", "2", "--memory", "200G")
    assert out.returncode == 4 and "no node can take" in out.stdout


def test_pareto_json_and_plot(model, tmp_path):
    png = tmp_path / "curve.png"
    out = run("plan", "--model", model, "--pareto", "--json", "--plot", png, "--workers", "1", "--time-limit", "2")
    assert out.returncode == 0, out.stderr
    points = json.loads(out.stdout)["points"]
    assert [p["budget"] for p in points][:3] == [0, 1, 2]
    spreads = [p["spread"] for p in points]
    assert spreads == sorted(spreads, reverse=True) and spreads[-1] < spreads[0]
    assert all(p["migrations"] - p["mandatory_migrations"] <= p["budget"] for p in points)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_what_if_drain_and_headroom(model):
    out = run("what-if", "--model", model, "--drain", "pve1", "--cpus", "2", "--memory", "8G", "--json",
              "--time-limit", "3")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["drain"]["fits"] and all(m["from"] == "pve1" for m in data["drain"]["migrations"])
    assert all(n["name"] != "pve1" for n in data["drain"]["nodes_after"])
    # pve1 holds 8 × 6G, pve2 4G: with 64G nodes and 8G guests, assigned memory binds.
    assert data["headroom"]["per_node"] == {"pve1": 2, "pve2": 7, "pve3": 8}
    blocked = run("what-if", "--model", model, "--drain", "pve2")
    assert blocked.returncode == 4 and "does NOT fit" in blocked.stdout and "plb_pin_pve2" in blocked.stdout
