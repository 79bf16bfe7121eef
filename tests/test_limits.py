"""Input limits (proxlb_opt/limits.py and the readers that use them): each bad value is a one-line input
error naming the field, never a crash."""

from __future__ import annotations

import json

import pytest
import yaml

from proxlb_opt.cluster import cluster_from_dict, load_model
from proxlb_opt.config import read_yaml, settings_from_dict
from proxlb_opt.errors import ConfigError, InputError, ModelError
from proxlb_opt.limits import MAX_DEPTH, check_tree, dumps, loads_json
from proxlb_opt.units import parse_cores_milli, parse_size_mib
from tests.fuzz_helpers import run_main


def _fail(message: str) -> InputError:
    return InputError(message)


@pytest.mark.parametrize("text, message", [
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested more than"),
    ("[" * 100000, "nested"),
    ('{"a": NaN}', "not valid JSON"),
    ('{"a": -Infinity}', "not valid JSON"),
    ('{"a": "\\ud800"}', "not valid Unicode"),
    ('{"a": 1', "not valid JSON at line 1"),
])
def test_strict_json(text, message):
    with pytest.raises(InputError, match=message) as err:
        loads_json(text, "x.json", _fail)
    assert "\n" not in str(err.value)


def test_json_numbers_beyond_floats_are_refused_not_infinite():
    # The reader refuses them itself: a plan file's 10**400 once reached float() in apply and ended in exit 70.
    assert loads_json('{"a": 9223372036854775807, "b": 1e300}', "x", _fail) == {"a": 2**63 - 1, "b": 1e300}
    for number in ("10000000000000000000000000", "1e400"):
        with pytest.raises(InputError):
            loads_json('{"a": %s}' % number, "x", _fail)


@pytest.mark.parametrize("text, message", [
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
     "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n", "values"),
    ("a: &a [*a]\n", "YAML"),
    ("[" * 10000 + "]" * 10000, "nested"),
    ("- " * 200 + "x", "nested more than"),
])
def test_yaml_bombs_and_depth(text, message):
    with pytest.raises(ConfigError, match=message):
        read_yaml(text, "proxlb.yaml", ConfigError)


def test_shared_subtrees_are_counted_once_per_depth():
    shared = list(range(10))
    data = {"a": [shared] * 10, "b": shared}
    assert check_tree(data, "x", _fail) is data


def test_dumps_never_writes_nan_or_infinity():
    text = dumps({"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": float("-inf")}})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": {"d": None}}


@pytest.mark.parametrize("value", [10**400, 2**63, float("inf"), "1e400", "99999999999P", -1, float("nan")])
def test_sizes_and_cores_out_of_range(value):
    with pytest.raises(ValueError):
        parse_size_mib(value, "memory")
    with pytest.raises(ValueError):
        parse_cores_milli(value if value != "99999999999P" else 10**7, "cpus")


def _model(**guest):
    return {"version": 1, "nodes": [{"name": "a", "cpus": 4, "memory": "8G"}],
            "guests": [{"vmid": 100, "node": "a", "memory": "1G", **guest}]}


@pytest.mark.parametrize("guest, field", [
    ({"vmid": 10**12}, "vmid"), ({"vmid": "²"}, "vmid"), ({"vmid": 2**63}, "vmid"), ({"vmid": True}, "vmid"),
    ({"memory": 2**80}, "memory"), ({"cpus": 10**30}, "cpus"), ({"memory": "nan"}, "memory"),
])
def test_model_values_out_of_range(guest, field):
    with pytest.raises(ModelError, match=field):
        cluster_from_dict(_model(**guest))


@pytest.mark.parametrize("rule", [
    {"type": "resource-affinity", "resources": "vm:²"},
    {"type": "resource-affinity", "resources": 5},
    {"type": "resource-affinity", "resources": "vm:99999999999999999"},
    {"type": "node-affinity", "resources": "vm:100", "nodes": 7},
    {"type": "node-affinity", "resources": "vm:100", "nodes": "a:²"},
    {"type": "node-affinity", "resources": "vm:100", "nodes": "a:99999999999999999999"},
])
def test_ha_rules_with_garbage(rule):
    with pytest.raises(ModelError, match="ha_rules"):
        cluster_from_dict({**_model(), "ha_rules": [rule]})


@pytest.mark.parametrize("section, key, value", [
    ("optimizer", "seed", 2**31), ("optimizer", "workers", 10**6), ("optimizer", "time_limit", 1e12),
    ("optimizer", "time_limit", ".inf"), ("optimizer", "max_migrations", 2**63), ("balancing", "balanciness", "nan"),
    ("balancing", "parallel_jobs", 10**20), ("service", "schedule", {"interval": 1e300, "format": "hours"}),
    ("optimizer", "weights", {"memory": 2**40}), ("proxmox_api", "timeout", 1e300),
])
def test_config_numbers_out_of_range(section, key, value):
    data = {section: {key: value}}
    if section == "proxmox_api":
        data[section].update(hosts=["h"], user="root@pam", **{"pass": "secret1"})
    if value == ".inf":
        data = yaml.safe_load(f"{section}:\n  {key}: .inf\n")
    with pytest.raises(ConfigError, match=key) as err:
        settings_from_dict(data)
    assert "\n" not in str(err.value)


def test_a_model_json_file_with_nan(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"version": 1, "nodes": [{"name": "a", "cpus": NaN, "memory": "8G"}], "guests": []}')
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(path)


@pytest.mark.parametrize("args, message", [
    (["plan", "--time-limit", "1e300"], "--time-limit"),
    (["plan", "--workers", "100000000000000000000"], "--workers"),
    (["plan", "--workers", "-1"], "--workers"),
    (["what-if", "--add", "100001x1c1G"], "at most 10,000"),
    (["what-if", "--room", "0.001c1M", "--time-limit", "5"], "more than 10,000"),
    (["simulate", "models/demo.yaml", "--port", "70000"], "--port"),
])
def test_command_line_values_out_of_range(args, message):
    if args[0] in ("plan", "what-if"):
        args = [args[0], "--model", "models/demo.yaml", *args[1:]]
    code, out, err = run_main(args)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_growth_factors_are_bounded():
    from proxlb_opt.whatif import MAX_GROWTH, parse_growth

    assert parse_growth(str(MAX_GROWTH))["memory"] == MAX_GROWTH
    for text in ("1e9", "memory=101", "disk=1e300"):
        with pytest.raises(InputError, match="at most"):
            parse_growth(text)


def test_a_model_that_overflows_the_solver_is_an_input_error():
    from types import SimpleNamespace

    from ortools.sat.python import cp_model

    from proxlb_opt.cpsat.solve import _invalid_model

    model = cp_model.CpModel()
    x = model.new_int_var(0, 2**61, "x")
    y = model.new_int_var(0, 2**61, "y")
    model.add(3 * x + 3 * y + 3 * x <= 10)
    assert "overflow" in model.validate().lower()
    error = _invalid_model(SimpleNamespace(model=model))
    assert isinstance(error, InputError) and error.exit_code == 2


@pytest.mark.parametrize("number", ["1" + "0" * 400, "-" + "9" * 30, "1e400", "-1e999"])
def test_json_numbers_out_of_range_are_refused_in_one_line(number):
    with pytest.raises(InputError, match="plan.json: not valid JSON") as caught:
        loads_json('{"spread_before": %s}' % number, "plan.json", InputError)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200



def test_digits_beyond_ascii_are_not_numbers():
    # "²" and "٣" are digits to str.isdigit but int() refuses them: found by the model-file fuzz
    # (`version: ²` ended in exit 70).
    from proxlb_opt.limits import is_decimal

    assert is_decimal("42") and not is_decimal("²") and not is_decimal("٣") and not is_decimal("")
