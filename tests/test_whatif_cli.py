"""`proxlb-opt what-if` as a user and automation see it: JSON schemas, tables, exit codes, plot and runbook."""

import json

import pytest
import yaml

from proxlb_opt.cluster import cluster_to_dict
from tests.builders import cluster, guest, node
from tests.test_cli import run


@pytest.fixture
def model(tmp_path):
    c = cluster([node("pve1", "64G"), node("pve2", "64G"), node("pve3", "64G")],
                [guest(100 + i, "pve1", "6G", name=f"web{i:02d}", ha=i % 2 == 0) for i in range(6)]
                + [guest(200, "pve2", "4G", tags=["plb_pin_pve2"]), guest(300, "pve3", "8G")])
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cluster_to_dict(c)))
    return path


def test_n_plus_json_schema_and_exit_code(model):
    out = run("what-if", "--model", model, "--n-plus", "1", "--json", "--workers", "1")
    assert out.returncode == 4, out.stderr  # pve2's pinned guest has no other node: N+1 does not hold
    data = json.loads(out.stdout)
    assert data["scenario"] == "n-plus" and data["k"] == 1 and data["holds"] is False and data["complete"]
    worst = data["failures"][0]
    assert worst["nodes"] == ["pve2"] and worst["fits"] is False and worst["unplaced"] == [200]
    assert worst["proven"] and worst["answer"] == "exact" and "plb_pin_pve2" in worst["blocking"][0]
    for f in data["failures"]:
        assert {"nodes", "fits", "unplaced", "blocking", "max_load", "max_load_proven", "restarts",
                "not_restarted", "unplaced_lower_bound"} <= set(f)
    ha = json.loads(run("what-if", "--model", model, "--n-plus", "1", "--ha-only", "--json").stdout)
    pve1 = next(f for f in ha["failures"] if f["nodes"] == ["pve1"])
    assert pve1["restarted"] == 3 and len(pve1["not_restarted"]["not HA-managed"]) == 3


def test_n_plus_table_says_what_is_exact(model):
    out = run("what-if", "--model", model, "--n-plus", "1")
    assert out.returncode == 4 and "exact" in out.stdout and "does NOT hold" in out.stdout


def test_room_json_for_two_shapes_and_one(model):
    out = run("what-if", "--model", model, "--room", "2c8G", "--room", "4c16G", "--tags", "plb_anti_affinity_web",
              "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [e["shape"] for e in data["shapes"]] == ["2c8G", "4c16G"]
    assert all(e["per_node"] == {"pve1": 1, "pve2": 1, "pve3": 1} and e["total"] == 3 and e["exact"]
               for e in data["shapes"])
    one = json.loads(run("what-if", "--model", model, "--room", "2c8G", "--json").stdout)
    assert one["total"] == sum(one["per_node"].values()) and one["exact"] and one["method"] == "per-node argument"


def test_add_remove_add_node_growth(model):
    add = json.loads(run("what-if", "--model", model, "--add", "2x2c8G", "--add", "1x4c16G", "--json").stdout)
    assert add["fits"] and [r["placed"] for r in add["requested"]] == [2, 1]
    removed = run("what-if", "--model", model, "--remove", "pve3", "--json", "--time-limit", "5")
    data = json.loads(removed.stdout)
    assert data["scenario"] == "remove" and data["fits"] and "n_plus_1" in data
    assert all(m["from"] == "pve3" for m in data["migrations"] if m["vmid"] == 300)
    grown = json.loads(run("what-if", "--model", model, "--add-node", "pve4:16:64G", "--json", "--time-limit", "5").stdout)
    assert grown["scenario"] == "add-node" and any(m["to"] == "pve4" for m in grown["migrations"])
    growth = json.loads(run("what-if", "--model", model, "--growth", "memory=1.1", "--json", "--time-limit", "5").stdout)
    assert growth["fits"] and growth["answer"] == "exact" and growth["n_plus_1"]["failures"]


@pytest.mark.slow
def test_growth_curve_plot_and_rolling_runbook(model, tmp_path):
    png = tmp_path / "curve.png"
    out = run("what-if", "--model", model, "--growth-curve", "--plot", png, "--json", "--time-limit", "20")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data["thresholds"]) == {"fits", "n_plus_1", "balanced"} and data["points"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    book = tmp_path / "runbook.md"
    rolled = run("what-if", "--model", model, "--rolling", "pve1", "pve3", "--runbook", book, "--json",
                 "--time-limit", "10")
    assert rolled.returncode == 0, rolled.stderr
    data = json.loads(rolled.stdout)
    assert sorted(data["order"]) == ["pve1", "pve3"] and data["complete"]
    assert [s["step"] for s in data["steps"]] == [1, 2]
    assert all({"node", "migrations", "predicted_seconds", "plan"} <= set(s) for s in data["steps"])
    text = book.read_text()
    assert text.startswith("# Rolling maintenance runbook") and "## Step 1" in text


@pytest.mark.parametrize("args, text", [
    (["--n-plus", "1", "--room", "4c16G"], "one question at a time"),
    (["--room", "16G"], "cannot read shape"),
    (["--add", "0x4c16G"], "at least 1"),
    (["--growth", "ram=2"], "unknown resource"),
    (["--add-node", "pve9"], "NAME:CORES:MEMORY"),
    (["--n-plus", "3"], "eligible node"),
    (["--rolling", "nope"], "unknown node"),
    (["--remove", "nope"], "unknown node"),
    (["--keep-n-plus-1", "--n-plus", "1"], "go with --room or --add"),
    (["--growth", "1.2", "--plot", "x.png"], "--plot draws"),
    ([], "needs a question"),
])
def test_what_if_input_errors(model, args, text):
    out = run("what-if", "--model", model, *args)
    assert out.returncode == 2 and text in out.stderr and "Traceback" not in out.stderr, out.stderr
