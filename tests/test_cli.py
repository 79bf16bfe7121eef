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


# ----------------------------------------------------------------------------- readable at 80 columns

from pathlib import Path  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"
ANSI = __import__("re").compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_env(*args, env: dict, stdin: str | None = None):
    import os

    full = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([sys.executable, "-m", "proxlb_opt", *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=180, env={**full, **env})


def run_on_terminal(*args, columns: int = 80) -> str:
    """stdout on a pseudo-terminal `columns` wide, as a person sees it (escape sequences removed)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([sys.executable, "-m", "proxlb_opt", *map(str, args)], stdout=slave,
                            stderr=subprocess.DEVNULL, env={**env, "TERM": "xterm"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=180)
    os.close(master)
    return ANSI.sub("", b"".join(chunks).decode("utf-8", "replace")).replace("\r\n", "\n")


def _assert_readable(text: str, migrations: list[dict], width: int = 80) -> None:
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width, max(lines, key=len)
    for m in migrations:
        assert any(f"{m['vmid']} {m['name']}" in line for line in lines), f"{m['vmid']} {m['name']} cut or missing"
    assert "…" not in text


@pytest.mark.parametrize("name", ["demo.yaml", "enterprise-16.yaml"])
def test_plan_table_fits_80_columns_without_cutting_names(tmp_path, name):
    plan = tmp_path / "plan.json"
    args = ("plan", "--model", MODELS / name, "--workers", "2", "--time-limit", "3", "-o", plan)
    piped = run_env(*args, env={"COLUMNS": "80"})
    assert piped.returncode == 0, piped.stderr
    migrations = json.loads(plan.read_text())["migrations"]
    assert migrations and "Migrations" in piped.stdout
    _assert_readable(piped.stdout, migrations)
    assert "warning: large-neighbourhood" not in piped.stderr  # search notes are information
    default = run_env(*args, env={})  # piped, no COLUMNS: the fixed layout is 80 wide as well
    _assert_readable(default.stdout, json.loads(plan.read_text())["migrations"])
    terminal = run_on_terminal(*args, columns=80)
    _assert_readable(terminal, json.loads(plan.read_text())["migrations"])


def test_columns_widens_piped_output(tmp_path):
    out = run_env("plan", "--model", MODELS / "demo.yaml", "--workers", "2", "--time-limit", "3",
                  env={"COLUMNS": "132"})
    assert out.returncode == 0
    header = next(line for line in out.stdout.splitlines() if line.lstrip().startswith("wave"))
    assert "type" in header and "mode" in header  # the columns left out at 80 come back


def test_dash_output_means_stdout(model):
    out = run("plan", "--model", model, "-o", "-", "--workers", "1")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [m["wave"] for m in data["migrations"]][0] == 1  # waves count from 1


def test_verbose_shows_search_and_sequencing_detail(model):
    out = run("plan", "--model", model, "--workers", "1", "-v")
    assert out.returncode == 0
    for text in ("debug: read ", "debug: repair: spread", "debug: CP-SAT: spread", "debug: sequencing: "):
        assert text in out.stderr, text


# ----------------------------------------------------------------------------- the command line itself

COMMANDS = ["plan", "best-node", "what-if", "snapshot", "apply", "service", "simulate", "version"]


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
def test_help_is_plain_text_without_type_placeholders(command):
    out = run(*command, "--help")
    assert out.returncode == 0 and out.stdout.startswith("Usage: proxlb-opt")
    for bad in ("<bool>", "<str>", "<path>", "<int>", "<float>", "<list", "{", "╭", "│"):
        assert bad not in out.stdout, (command, bad)
    assert max(len(line) for line in out.stdout.splitlines()) <= 80


def test_bare_command_prints_help_and_never_runs():
    out = run()
    assert out.returncode == 0 and "Usage: proxlb-opt" in out.stdout and "-c, --config FILE" in out.stdout


@pytest.mark.parametrize("args, text", [
    (["plan", "--mdel", "x"], "No such option: --mdel"),
    (["plan", "--workers", "many"], "--workers"),
    (["simulate"], "Missing argument 'MODEL'"),
    (["no-such-command"], "No such command"),
    (["plan", "--json", "-c"], "requires an argument"),
])
def test_usage_errors_are_one_line(args, text):
    out = run(*args)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: ") and text in out.stderr and len(out.stderr.splitlines()) == 1


@pytest.mark.skipif(Path("/etc/proxlb/proxlb.yaml").exists(), reason="this machine has a ProxLB config")
@pytest.mark.parametrize("command", [["plan"], ["snapshot", "-o", "x.yaml"], ["apply"], ["service"], ["-d"]])
def test_default_config_missing_is_one_line(command):
    out = run(*command)
    assert out.returncode == 2 and "/etc/proxlb/proxlb.yaml: config file not found" in out.stderr
    assert len(out.stderr.splitlines()) == 1


# ----------------------------------------------------------------------------- best-node sizes and exit codes


def test_best_node_memory_is_mib_as_in_qm(model):
    def ranking(*size):
        out = run("best-node", "--model", model, "--cpus", "2", *size, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    assert ranking("--memory", "8192") == ranking("--memory", "8G")
    assert ranking("--memory", "8192", "--disk", "32") == ranking("--memory", "8G", "--disk", "32G")
    too_big = run("best-node", "--model", model, "--cpus", "2", "--memory", "300000")  # 293 GiB
    assert too_big.returncode == 4 and "no node can take" in too_big.stdout


def test_best_node_terraform_nothing_fits_exits_4(model):
    out = run("best-node", "--terraform", stdin=json.dumps({"cpus": "2", "memory": "300000", "model": str(model)}))
    assert out.returncode == 4 and out.stdout == "" and out.stderr.startswith("error: no node")


def test_plan_json_version_2_gives_each_balancing_move_its_gain(model):
    out = run("plan", "--model", model, "--json", "--workers", "1", "--time-limit", "5")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["version"] == 2 and data["budget_choice"]["budget"] == data["budget"]
    assert data["migrations"]
    for move in data["migrations"]:
        assert {"detail", "spread_without", "gain_pp", "relieves"} <= set(move)
        # A balancing move's gain is what the plan would lose without it: never negative.
        assert move["gain_pp"] is None or move["gain_pp"] >= -1e-6
    assert any(m["gain_pp"] is not None and m["gain_pp"] > 0 for m in data["migrations"])


def test_plan_explain_says_why_a_guest_moves_or_stays(model):
    plan = json.loads(run("plan", "--model", model, "--json", "--workers", "1", "--time-limit", "5").stdout)
    mover = plan["migrations"][0]["vmid"]
    out = run("plan", "--model", model, "--workers", "1", "--time-limit", "5", "--explain", mover, "--explain", 200,
              "--json")
    assert out.returncode == 0, out.stderr
    answers = json.loads(out.stdout)["explain"]
    assert set(answers) == {str(mover), "200"}
    assert all(isinstance(line, str) and line for lines in answers.values() for line in lines)
    assert "plb_pin_pve2" in " ".join(answers["200"]) or "pin" in " ".join(answers["200"]).lower()
    text = run("plan", "--model", model, "--workers", "1", "--time-limit", "5", "--explain", 200)
    assert text.returncode == 0 and "pin" in text.stdout.lower()
    missing = run("plan", "--model", model, "--workers", "1", "--time-limit", "5", "--explain", 999)
    assert missing.returncode == 2 and "no guest 999" in missing.stderr and "Traceback" not in missing.stderr


def test_columns_that_are_not_ascii_digits_are_ignored():
    # rich reads COLUMNS and LINES with str.isdigit, which takes "²", then int() fails: exit 70 before.
    out = run_env("plan", "--model", MODELS / "demo.yaml", "--workers", "1", "--time-limit", "2",
                  env={"COLUMNS": "²", "LINES": "³"})
    assert out.returncode == 0, out.stderr
    assert max(len(line) for line in out.stdout.splitlines()) <= 80
