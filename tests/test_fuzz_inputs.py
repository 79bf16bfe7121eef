"""No crash on any input: five kinds of input, fuzzed, must never end in an internal error (exit 70) or a
traceback, and never print the config's secret.

The kinds: cluster model files, proxlb.yaml configs, plan files (`apply --plan`, against the simulator),
command lines, and Proxmox API answers (recorded from the simulator, then mutated, read by the adapter).
The normal suite runs a few examples of each; `pytest -m slow tests/test_fuzz_inputs.py` runs 250 of
each (1,250 inputs).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxlb_opt.adapters.proxmox import ApiCallError, ProxmoxClient, collect_cluster
from proxlb_opt.cluster import Cluster
from proxlb_opt.config import settings_from_dict
from proxlb_opt.errors import CollectionError
from proxlb_opt.simulator import SimulatorServer
from tests.fuzz_helpers import CANARY, HOSTILE_SCALARS, VALUES, assert_no_crash, documents, mutated, run_main

FEW = settings(max_examples=12, deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))
# CI (CI=true) replays one fixed set of 1,250 inputs, so a landing does not hang on a new draw; anywhere
# else every run draws new ones, which is where new crashes are found (then kept as a regression example).
MANY = settings(max_examples=250, deadline=None, database=None, derandomize=bool(os.environ.get("CI")),
                suppress_health_check=list(HealthCheck))

WORK = Path(tempfile.mkdtemp(prefix="proxlb-opt-fuzz-"))

MODEL = {
    "version": 1, "cluster": "fuzz",
    "nodes": [
        {"name": "pve1", "cpus": 8, "memory": "32G", "disk": "500G", "memory_used": "12G", "cpu_usage": 2.5},
        {"name": "pve2", "cpus": 8, "memory": "32G", "disk": "500G",
         "pressure": {"memory": {"some": 1.5, "full": 0.5, "spikes": 2}, "cpu": {"some": 3}}},
        {"name": "pve3", "cpus": 4, "memory": "16G", "status": "online", "maintenance": False},
    ],
    "guests": [
        {"vmid": 100, "name": "web01", "node": "pve1", "memory": "4G", "cpus": 2, "tags": ["plb_anti_affinity_web"]},
        {"vmid": 101, "name": "web02", "node": "pve1", "memory": "4G", "cpus": 2, "tags": "plb_anti_affinity_web"},
        {"vmid": 102, "name": "db01", "node": "pve1", "memory": "8G", "memory_used": "6G", "ha": True,
         "local_disk": True, "disk": "32G"},
        {"vmid": 103, "name": "ct01", "node": "pve2", "memory": "2G", "type": "ct", "status": "stopped",
         "pool": "apps", "lock": "backup"},
        {"vmid": 104, "name": "pin", "node": "pve2", "memory": "1G", "tags": ["plb_pin_pve2"]},
    ],
    "ha_rules": [
        {"rule": "keep-apart", "type": "resource-affinity", "resources": "vm:100,vm:101", "affinity": "negative"},
        {"rule": "prefer", "type": "node-affinity", "resources": ["vm:102"], "nodes": "pve1:2,pve2:1"},
    ],
    "crs": "ha=static,ha-rebalance-on-start=1",
}

CONFIG = {
    "proxmox_api": {"hosts": ["192.0.2.1"], "user": "root@pam", "pass": CANARY, "ssl_verification": True,
                    "timeout": 1, "retries": 1, "wait_time": 0},
    "proxmox_cluster": {"maintenance_nodes": ["pve3"], "ignore_nodes": [], "overprovisioning": False},
    "balancing": {"enable": True, "balanciness": 5, "method": "memory", "mode": "used", "parallel": True,
                  "parallel_jobs": 2, "balance_types": ["vm", "ct"], "memory_threshold": 80,
                  "node_resource_reserve": {"defaults": {"memory": 2}}, "pools": {"apps": {"type": "affinity"}},
                  "psi": {"nodes": {"memory": {"pressure_full": 1, "pressure_some": 5, "pressure_spikes": 10}}}},
    "service": {"daemon": False, "schedule": {"interval": 12, "format": "hours"}, "delay": {"enable": False}},
    "optimizer": {"time_limit": 2, "workers": 1, "seed": 7, "max_migrations": "auto", "weights": {"memory": 2},
                  "migration_bandwidth": "1G", "target_spread": 5, "cooldown": "1h"},
}


def _write(name: str, text: str) -> Path:
    path = WORK / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def _model_file() -> Path:
    return _write("model.yaml", yaml.safe_dump(MODEL))


# ----------------------------------------------------------------------------- 1. cluster model files


def check_model(text: str, algorithm: str) -> None:
    path = _write("fuzz-model.json" if text.lstrip().startswith("{") else "fuzz-model.yaml", text)
    code, out, err = run_main(["plan", "--model", path, "--json", "--workers", "1", "--time-limit", "2",
                               "--algorithm", algorithm])
    assert_no_crash(code, out, err, text)
    if code == 0:
        json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))


@FEW
@given(documents(MODEL), st.sampled_from(["cpsat", "greedy"]))
def test_model_files(text, algorithm):
    check_model(text, algorithm)


@pytest.mark.slow
@MANY
@given(documents(MODEL), st.sampled_from(["cpsat", "greedy"]))
def test_model_files_many(text, algorithm):
    check_model(text, algorithm)


def test_model_file_with_a_superscript_version():
    # Found by test_model_files_many: "²" passed str.isdigit() and then int() raised (exit 70).
    check_model(yaml.safe_dump({**MODEL, "version": "²"}, allow_unicode=True), "cpsat")


# ----------------------------------------------------------------------------- 2. proxlb.yaml configs


def check_config(text: str) -> None:
    path = _write("fuzz-config.yaml", text)
    code, out, err = run_main(["plan", "--model", _model_file(), "--config", path, "--json", "--workers", "1",
                               "--time-limit", "2"])
    assert_no_crash(code, out, err, text)


def _config_documents():
    # The canary also lands in the wrong key now and then: pass_env, pass_file, the host, the user.
    misplaced = st.sampled_from(["pass_env", "pass_file", "token_secret_env", "token_secret_file", "user",
                                 "hosts", "ssl_verification", "token_id"])
    moved = misplaced.map(lambda key: {**CONFIG, "proxmox_api": {**CONFIG["proxmox_api"], key: CANARY}})
    return st.one_of(documents(CONFIG), moved.flatmap(lambda base: documents(base)))


@FEW
@given(_config_documents())
def test_config_files(text):
    check_config(text)


@pytest.mark.slow
@MANY
@given(_config_documents())
def test_config_files_many(text):
    check_config(text)


# ----------------------------------------------------------------------------- 3. command lines

WORDS = ["plan", "best-node", "what-if", "version", "--help", "--json", "-j", "-d", "--dry-run", "--version", "-v"]
HOSTILE_ARGS = st.one_of(st.sampled_from([str(v) for v in HOSTILE_SCALARS]), st.text(max_size=10))
NUMBERS = st.sampled_from(["0", "1", "2", "3", "0.5", "64", "1e9", "2147483648", "-1"])
SIZES = st.sampled_from(["1G", "4G", "512", "8G", "64G", "0", "1e18", "2P", "3T"])
SHAPES = st.sampled_from(["4c16G", "1c1G", "8c32G:100G", "2x4c8G", "1000000x1c1G", "0x1c1G", "4c0G", "c16G"])
NODES = st.sampled_from(["pve1", "pve2", "pve3", "pve9", "[red]pve1"])
# option → (takes a value, its usual values); a third of the values are hostile instead.
OPTIONS: dict[str, dict[str, Any]] = {
    "plan": {"--method": st.sampled_from(["memory", "cpu", "disk", "multi", "x"]),
             "--mode": st.sampled_from(["used", "assigned", "psi"]), "--max-migrations": NUMBERS | st.just("auto"),
             "--rules-only": None, "--explain": st.sampled_from(["100", "104", "999", "0", "99999999999999999999"]),
             "--algorithm": st.sampled_from(["cpsat", "greedy"]), "--maintenance": NODES, "--workers": NUMBERS,
             "--pareto": None, "--verbose": None, "--time-limit": NUMBERS},
    "best-node": {"--cpus": NUMBERS, "--memory": SIZES, "--disk": SIZES, "--tags": st.sampled_from(
                  ["plb_anti_affinity_web", "plb_pin_pve3;x", "plb_affinity_a,plb_ignore_me"]),
                  "--type": st.sampled_from(["vm", "ct", "lxc"]), "--terraform": None},
    "what-if": {"--n-plus": NUMBERS, "--ha-only": None, "--room": SHAPES, "--add": SHAPES,
                "--tags": st.just("plb_anti_affinity_web"), "--keep-n-plus-1": None, "--remove": NODES,
                "--add-node": st.sampled_from(["pve4:8:32G", "pve4:8:32G:1T", "pve1:1:1G", "x:0:0", "y:1e9:1P"]),
                "--growth": st.sampled_from(["1.2", "memory=1.3,cpu=1.1", "0", "1e9", "disk=2"]),
                "--growth-curve": None, "--rolling": None, "--drain": NODES, "--cpus": NUMBERS, "--memory": SIZES,
                "--disk": SIZES, "--workers": NUMBERS, "--time-limit": NUMBERS},
}
GENERAL = ["--json"]


@st.composite
def command_lines(draw) -> tuple[list[str], str]:
    command = draw(st.sampled_from(list(OPTIONS) * 3 + ["other"]))
    if command == "other":
        return draw(st.lists(st.one_of(st.sampled_from(WORDS), HOSTILE_ARGS), max_size=4)), ""
    args = [command, "--model", str(_model_file())]
    for option in draw(st.lists(st.sampled_from(sorted(OPTIONS[command]) + GENERAL), max_size=3)):
        args.append(option)
        values = OPTIONS[command].get(option)
        if values is not None:
            args.append(draw(HOSTILE_ARGS) if draw(st.integers(0, 2)) == 0 else draw(values))
    if command != "best-node":  # a fuzzed limit never lets a run take long
        args += ["--time-limit", "2"]
    stdin = ""
    if "--terraform" in args:
        query = draw(st.dictionaries(st.sampled_from(["cpus", "memory", "disk", "tags", "type", "model"]),
                                     NUMBERS | SIZES | HOSTILE_ARGS, max_size=4))
        stdin = draw(st.one_of(st.just(json.dumps(query)), st.sampled_from(
            ['{"cpus": NaN}', '{"cpus": "1e400"}', "[" * 3000, '{"memory": "\\ud800"}', "", "null", "[]"])))
    return args, stdin


def check_command_line(args: list[str], stdin: str) -> None:
    code, out, err = run_main(args, stdin)
    assert_no_crash(code, out, err, args)


@FEW
@given(command_lines())
def test_command_lines(case):
    check_command_line(*case)


@pytest.mark.slow
@MANY
@given(command_lines())
def test_command_lines_many(case):
    check_command_line(*case)


# ----------------------------------------------------------------------------- 4. API answers


class ReplayClient(ProxmoxClient):
    """Answers from a recording (path → answer), as a hostile or broken API might change them."""

    def __init__(self, api_settings, answers: dict[str, Any]):
        super().__init__(api_settings)
        self.answers = answers

    def call(self, method: str, path: str, **params: Any) -> Any:
        self.requests_made += 1
        answer = self.answers.get(path, ApiCallError(501, f"Method '{path}' not implemented"))
        if isinstance(answer, Exception):
            raise answer
        return copy.deepcopy(answer)


class RecordingClient(ProxmoxClient):
    def __init__(self, api_settings):
        super().__init__(api_settings)
        self.answers: dict[str, Any] = {}

    def call(self, method: str, path: str, **params: Any) -> Any:
        try:
            answer = super().call(method, path, **params)
        except ApiCallError as exc:
            answer = exc
        self.answers[path] = answer
        if isinstance(answer, Exception):
            raise answer
        return answer


def _recorded() -> tuple[Any, dict[str, Any]]:
    from proxlb_opt.cluster import cluster_from_dict

    with SimulatorServer(cluster_from_dict(MODEL)) as sim:
        api = settings_from_dict({"proxmox_api": {"hosts": [sim.address], "user": sim.user, "pass": sim.password,
                                                  "ssl_verification": sim.ca_file}}).api
        recorder = RecordingClient(api)
        collect_cluster(api, read_configs=True, pressure=True, client=recorder)
    return api, {k: v for k, v in recorder.answers.items() if not isinstance(v, Exception)}


_RECORDING: list = []


def recording() -> tuple[Any, dict[str, Any]]:
    if not _RECORDING:
        _RECORDING.append(_recorded())
    return _RECORDING[0]


@st.composite
def api_answers(draw) -> dict[str, Any]:
    _, answers = recording()
    answers = dict(answers)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(sorted(answers)))
        how = draw(st.integers(0, 5))
        if how == 0:
            answers[path] = draw(VALUES)
        elif how == 1:
            answers[path] = ApiCallError(draw(st.sampled_from([401, 403, 500, 595])), draw(st.text(max_size=20)))
        else:
            answers[path] = draw(mutated(answers[path]))
    return answers


def check_api(answers: dict[str, Any], pressure: bool) -> None:
    api, _ = recording()
    try:
        cluster = collect_cluster(api, read_configs=True, pressure=pressure, client=ReplayClient(api, answers))
    except CollectionError as exc:
        assert "\n" not in str(exc).strip()
    else:
        assert isinstance(cluster, Cluster)


@FEW
@given(api_answers(), st.booleans())
def test_api_answers(answers, pressure):
    check_api(answers, pressure)


@pytest.mark.slow
@MANY
@given(api_answers(), st.booleans())
def test_api_answers_many(answers, pressure):
    check_api(answers, pressure)


# ----------------------------------------------------------------------------- 5. plan files


class _PlanTarget:
    """A simulator, a config that reaches it and a real plan for its cluster, shared by the examples."""

    def __init__(self):
        from proxlb_opt.cluster import cluster_from_dict

        self.sim = SimulatorServer(cluster_from_dict(MODEL)).start()
        config = {"proxmox_api": {"hosts": [self.sim.address], "user": self.sim.user, "pass": self.sim.password,
                                  "ssl_verification": self.sim.ca_file, "timeout": 5},
                  "balancing": {"enable": True}, "optimizer": {"workers": 1, "time_limit": 2}}
        self.config = _write("plan-config.yaml", yaml.safe_dump(config))
        code, out, err = run_main(["plan", "--config", self.config, "--json", "--max-migrations", "3"])
        assert code == 0, err
        self.plan = json.loads(out)
        if not self.plan["migrations"]:  # a plan with moves makes the mutations reach the step reader
            self.plan["migrations"] = [{"vmid": 100, "name": "web01", "type": "vm", "from": "pve1", "to": "pve2",
                                        "wave": 1, "hop": 0, "reason": "balance", "seconds": 3.5}]


_TARGET: list[_PlanTarget] = []


def plan_target() -> _PlanTarget:
    if not _TARGET:
        _TARGET.append(_PlanTarget())
    return _TARGET[0]


@pytest.fixture(scope="module", autouse=True)
def _stop_plan_target():
    yield
    while _TARGET:
        _TARGET.pop().sim.stop()


def check_plan_file(text: str) -> None:
    target = plan_target()
    path = _write("fuzz-plan.json", text)
    # Without --yes and without a terminal the run stops before migrating: nothing moves while fuzzing.
    code, out, err = run_main(["apply", "--config", target.config, "--plan", path, "--json"])
    assert_no_crash(code, out, err, text)
    assert code != 0 or "nothing to do" in (out + err).lower() or not out.strip() or "event" in out


@st.composite
def plan_documents(draw) -> str:
    return draw(documents(plan_target().plan, form="json"))


@FEW
@given(plan_documents())
def test_plan_files(text):
    check_plan_file(text)


@pytest.mark.parametrize("field, value", [("spread_before", "1" + "0" * 400), ("spread_after", "1e400"),
                                          ("budget", "-" + "9" * 40)])
def test_plan_files_with_numbers_beyond_64_bits(field, value):
    """Found by test_plan_files_many in CI: a 10**400 in a plan file reached float() and ended in exit 70."""
    text = json.dumps({**plan_target().plan, field: 0}).replace(f'"{field}": 0', f'"{field}": {value}', 1)
    check_plan_file(text)
    code, out, err = run_main(["apply", "--config", plan_target().config, "--plan", _write("big.json", text)])
    assert code == 2 and "not valid JSON" in err


@pytest.mark.slow
@MANY
@given(plan_documents())
def test_plan_files_many(text):
    check_plan_file(text)
