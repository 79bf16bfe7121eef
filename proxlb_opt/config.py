"""proxlb.yaml → frozen Settings.

Owns the config file: ProxLB 2.3.0's keys (proxmox_api, proxmox_cluster, balancing, service,
solver) with ProxLB's defaults and meaning, plus an `optimizer:` section for proxlb-opt's own
knobs. What each key does, its default and ProxLB's is listed once, in proxlb_opt/keys.py (the
README's configuration tables are generated from it). Keys are strict: an unknown key is an error
that suggests the closest known one. Where proxlb-opt does not follow ProxLB, or ignores a key,
loading says so in `Settings.warnings`, which every plan carries in its `warnings[]`. Secrets
(password, token secret) may come inline, from an environment variable or from a file, and are
never part of any message or repr.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import reprlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from proxlb_opt.errors import ConfigError, register_secret
from proxlb_opt.limits import MAX_CORES, MAX_INT32, MAX_SECONDS, MAX_SIZE_MIB, MAX_WORKERS, check_tree, is_decimal
from proxlb_opt.schedule import MaintenanceSchedule, parse_schedule

RESOURCES = ("memory", "cpu", "disk")
METHODS = RESOURCES + ("multi",)
MODES = ("used", "assigned", "psi")
TIME_UNITS = {"hours": 3600, "minutes": 60, "seconds": 1}
#: ProxLB's add-on section for proxlb-solver: accepted, never used (proxlb-opt is the solver).
SOLVER_KEYS = ("enable", "mode", "log_dir", "timeout_seconds", "use_reservations", "active_step_retries",
               "fallback_to_greedy")
ALGORITHMS = ("cpsat", "greedy")

#: `optimizer.max_migrations: auto`: the budget that pays for itself (tradeoff.choose_budget).
AUTO = "auto"
DEFAULT_MAX_MIGRATIONS = AUTO
#: pp of spread one more optional migration must gain for `auto` to make it (measured: README, "Moves that pay").
DEFAULT_MIN_GAIN_PER_MOVE = 1.0
DEFAULT_COOLDOWN_SECONDS = 24 * 3600.0
DEFAULT_STATE_FILE = "/var/lib/proxlb-opt/state.json"


def default_state_file() -> str:
    """state.json in systemd's STATE_DIRECTORY (set by the unit's StateDirectory=), else DEFAULT_STATE_FILE."""
    directory = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return str(Path(directory) / "state.json") if directory else DEFAULT_STATE_FILE
DEFAULT_TIME_LIMIT = 10.0
#: Percentage points: a spread proven within this of the best possible is reported as optimal, as a MIP
#: solver reports a solution within its gap tolerance. Far below how much sampled memory use moves.
DEFAULT_OPTIMALITY_TOLERANCE = 0.05


def closest_key(key: str, known: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


class Secret(str):
    """A string that never shows itself: repr, str() and f-strings give stars; `reveal()` gives the value.

    Creating one registers it with errors.scrub, which removes it from every error line, log record and
    JSON output, whatever text it got into.
    """

    def __new__(cls, value: str) -> "Secret":
        secret = super().__new__(cls, value)
        register_secret(secret)
        return secret

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"

    def __format__(self, spec: str) -> str:
        return "********"

    def reveal(self) -> str:
        return str.__str__(self)


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlong, _REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 60, 60, 40, 2, 4, 4


def shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short (a bad value may be huge)."""
    return _REPR.repr(value)


@dataclass(frozen=True)
class ApiSettings:
    hosts: tuple[str, ...]
    user: str
    password: Secret | None = field(default=None, repr=False)
    token_id: str | None = None
    token_secret: Secret | None = field(default=None, repr=False)
    ssl_verification: bool = True
    ca_file: str | None = None
    timeout: float = 10.0
    retries: int = 1
    wait_time: float = 1.0


@dataclass(frozen=True)
class PsiThreshold:
    """ProxLB's `balancing.psi` entry for one resource: percentages (0–100) of stalled time.

    Hot when (full ≥ `full` and some ≥ `some`) or spikes ≥ `spikes`, as ProxLB 2.3.0 decides it.
    """

    full: float
    some: float
    spikes: float


@dataclass(frozen=True)
class Settings:
    """Everything the core and the CLI need from a config file, with ProxLB 2.3.0's defaults.

    `Settings()` (no config file) plans and balances: `enable` only decides whether `apply` and
    `service` may migrate, and planning never migrates.
    """

    # proxmox_cluster
    maintenance_nodes: tuple[str, ...] = ()  # as configured (static)
    ignore_nodes: tuple[str, ...] = ()
    overprovisioning: bool = False
    maintenance_schedule: MaintenanceSchedule | None = None
    scheduled_maintenance: tuple[tuple[str, str], ...] = ()  # (node, window) open at the time of `at()`
    # balancing
    enable: bool = False
    enforce_affinity: bool = False
    enforce_pinning: bool = False
    parallel: bool = False
    parallel_jobs: int = 5
    live: bool = True
    with_local_disks: bool = True
    with_conntrack_state: bool = True
    cpu_overcommit: float = 2.0
    balance_types: tuple[str, ...] = ("vm", "ct")
    max_job_validation: int = 1800
    balanciness: float = 10.0
    method: str = "memory"
    mode: str = "used"
    balance_larger_guests_first: bool = False
    ignore_guests: tuple[str, ...] = ()
    node_resource_reserve: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # GiB per resource
    pools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)  # resource → percent; ProxLB's *_threshold
    psi_nodes: Mapping[str, PsiThreshold] | None = None  # resource → thresholds; None: no `psi` section
    psi_guests: Mapping[str, PsiThreshold] | None = None
    # service
    daemon: bool = True
    enable_ha: bool = False
    schedule_seconds: int = 12 * 3600
    delay_seconds: int = 0  # service.delay; 0 when not enabled
    log_level: str = "INFO"
    # optimizer (proxlb-opt's own)
    algorithm: str = "cpsat"
    max_migrations: int | None | str = DEFAULT_MAX_MIGRATIONS  # a number, None (unlimited) or AUTO
    min_gain_per_move: float = DEFAULT_MIN_GAIN_PER_MOVE  # pp per extra optional migration, for AUTO
    target_spread: float | None = None  # pp to aim at when balancing; None: half the balanciness
    cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS  # service: no second balancing move of a guest within
    state_file: str = field(default_factory=default_state_file)  # service: what it remembers between rounds
    # runs that may migrate (adapters/lock.py, adapters/audit.py) and what the service shows (adapters/metrics.py)
    lock_file: str | None = None  # None: the default path, chosen when a run takes the lock
    audit_log: str | None = None  # None: the default path (a warning when unusable); "": off
    metrics_listen: tuple[str, int] | None = None  # service: serve /metrics on (host, port); None: off
    metrics_textfile: str | None = None  # service: node_exporter textfile written after each round; None: off
    pve_rebalancer: str = "leave"  # PVE 9.2's own HA rebalancing on: "leave" its guests to it, or "refuse" to run
    time_limit: float = DEFAULT_TIME_LIMIT
    weights: Mapping[str, int] = field(default_factory=lambda: {"memory": 1, "cpu": 1, "disk": 1})
    workers: int = 0  # 0: as many as the machine has cores, at least 2
    seed: int = 7
    optimality_tolerance: float = DEFAULT_OPTIMALITY_TOLERANCE  # pp: a spread proven this close counts as optimal
    migration_bandwidth_mib_s: float = 1024.0
    dirty_rate_factor: float = 1.2
    max_incoming_per_node: int = 1
    max_outgoing_per_node: int = 1
    poll_interval: float = 2.0
    interrupt_wait: float = 300.0  # apply/service after SIGINT/SIGTERM: seconds to wait for running migrations
    read_guest_configs: bool = True
    # proxmox_api
    api: ApiSettings | None = None
    source: str = "<defaults>"
    #: Where loading this config departs from ProxLB or ignores something; part of every plan's warnings.
    warnings: tuple[str, ...] = ()

    @property
    def parallel_limit(self) -> int:
        """Global limit on concurrent migrations: ProxLB runs one at a time unless `parallel` is on."""
        return max(1, self.parallel_jobs) if self.parallel else 1

    def at(self, now: datetime) -> "Settings":
        """These settings at the naive local time `now`: the nodes whose maintenance window is open.

        As ProxLB, the configured list stays the source and scheduled nodes are added per run, so a node
        leaves maintenance by itself when its window closes.
        """
        if self.maintenance_schedule is None:
            return self
        active = tuple((node, window.text) for node, window in self.maintenance_schedule.active(now))
        return replace(self, scheduled_maintenance=active)

    def with_overrides(self, **changes: Any) -> "Settings":
        clean = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **clean) if clean else self


# ----------------------------------------------------------------------------- schema


#: How the config writes true and false, everywhere (YAML's own booleans, and these words and digits).
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def as_bool(value: Any) -> bool | None:
    """True or False for the config's ways of writing a boolean; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    return None


def _bool(value: Any, where: str) -> bool:
    result = as_bool(value)
    if result is None:
        raise ConfigError(f"{where}: expected true or false, got {shown(value)}")
    return result


#: The largest value of a config number unless its key says otherwise.
MAX_FLOAT = 1e9
#: Percentages (thresholds, pressure) and percentage points (balanciness, spreads, gains).
MAX_PERCENT = 100.0
MAX_PP = 1000.0
#: Counts of jobs, migrations per node, weights, retries.
MAX_COUNT = 1000
#: service.schedule and service.delay: a year and a day.
MAX_INTERVAL_SECONDS = 366 * 24 * 3600


def _number(minimum: float | None = 0, integer: bool = False,
            maximum: float | None = None) -> Callable[[Any, str], Any]:
    """A reader of a finite number in [minimum, maximum] (default maximum: int32 for whole numbers)."""
    top = maximum if maximum is not None else (MAX_INT32 if integer else MAX_FLOAT)

    def read(value: Any, where: str) -> Any:
        given = value
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected a number, got {shown(given)}")
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {shown(given)}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {shown(given)}")
        if integer and value != int(value):
            raise ConfigError(f"{where}: expected a whole number, got {shown(given)}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{where}: must be at least {minimum:g}, got {shown(given)}")
        if value > top:
            raise ConfigError(f"{where}: must be at most {top:g}, got {shown(given)}")
        return int(value) if integer else float(value)

    return read


def _string(value: Any, where: str) -> str:
    if value is None or isinstance(value, (dict, list)):
        raise ConfigError(f"{where}: expected a text value, got {shown(value)}")
    return str(value)


def _secret_source(value: Any, where: str) -> str:
    """pass_env, pass_file and their token twins: a name or a path, quoted in no message (a secret typed
    into the wrong key would be printed)."""
    if value is None or isinstance(value, (dict, list, bool)):
        raise ConfigError(f"{where}: expected a text value (not shown: this key names where a secret is)")
    return str(value)


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {shown(value)}")
    return tuple(str(v) for v in value)


def _choice(options: tuple[str, ...]) -> Callable[[Any, str], str]:
    def read(value: Any, where: str) -> str:
        text = str(value).lower()
        if text not in options:
            hint = closest_key(text, options)
            suffix = f" (did you mean {hint!r}?)" if hint else ""
            raise ConfigError(f"{where}: must be one of {', '.join(options)}, got {shown(value)}{suffix}")
        return text

    return read


def _anything(value: Any, where: str) -> Any:
    return value


def _mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {shown(value)}")
    return value


# key → reader. Every key of ProxLB 2.3.0 is here, so a ProxLB file loads as it is; what each one does
# (or that it is ignored) is in proxlb_opt/keys.py, and tests keep the two in step.
API_KEYS: dict[str, Callable] = {
    "hosts": _string_list, "user": _string, "pass": _anything, "pass_env": _secret_source,
    "pass_file": _secret_source, "token_id": _string, "token_secret": _anything, "token_secret_env": _secret_source,
    "token_secret_file": _secret_source, "ssl_verification": _anything, "timeout": _number(0, maximum=MAX_SECONDS),
    "retries": _number(0, True, MAX_COUNT), "wait_time": _number(0, maximum=MAX_SECONDS),
}
CLUSTER_KEYS: dict[str, Callable] = {
    "maintenance_nodes": _string_list, "ignore_nodes": _string_list, "overprovisioning": _bool,
    "maintenance_nodes_schedule": _mapping,
}
BALANCING_KEYS: dict[str, Callable] = {
    "enable": _bool, "enforce_affinity": _bool, "enforce_pinning": _bool, "parallel": _bool,
    "parallel_jobs": _number(1, True, MAX_COUNT), "live": _bool, "with_local_disks": _bool,
    "with_conntrack_state": _bool, "cpu_overcommit": _number(0.01, maximum=MAX_COUNT),
    "max_node_inflow": _number(1, True, MAX_COUNT), "balance_types": _string_list,
    "max_job_validation": _number(1, True, MAX_SECONDS), "memory_threshold": _number(0, maximum=MAX_PERCENT),
    "cpu_threshold": _number(0, maximum=MAX_PERCENT), "disk_threshold": _number(0, maximum=MAX_PERCENT),
    "balanciness": _number(0, maximum=MAX_PP), "method": _choice(METHODS), "mode": _choice(MODES),
    "balance_larger_guests_first": _bool, "ignore_guests": _string_list, "node_resource_reserve": _mapping,
    "psi": _mapping, "pools": _mapping,
}
SERVICE_KEYS: dict[str, Callable] = {
    "daemon": _bool, "enable_ha": _bool, "schedule": _mapping, "delay": _mapping, "log_level": _string,
}
OPTIMIZER_KEYS: dict[str, Callable] = {
    "algorithm": _choice(ALGORITHMS), "max_migrations": _anything, "time_limit": _number(0.1, maximum=MAX_SECONDS),
    "weights": _mapping, "workers": _number(0, True, MAX_WORKERS), "seed": _number(0, True, MAX_INT32),
    "optimality_tolerance": _number(0, maximum=MAX_PP), "migration_bandwidth": _anything,
    "dirty_rate_factor": _number(1.0, maximum=MAX_COUNT), "max_incoming_per_node": _number(1, True, MAX_COUNT),
    "max_outgoing_per_node": _number(1, True, MAX_COUNT), "poll_interval": _number(0.01, maximum=3600),
    "read_guest_configs": _bool, "min_gain_per_move": _number(0, maximum=MAX_PP),
    "target_spread": _anything, "cooldown": _anything, "state_file": _string,
    "lock_file": _string, "audit_log": _string, "metrics_listen": _anything, "metrics_textfile": _string,
    "pve_rebalancer": _choice(("leave", "refuse")), "interrupt_wait": _anything,
}
SOLVER_SECTION: dict[str, Callable] = {key: _anything for key in SOLVER_KEYS}
SECTIONS: dict[str, dict[str, Callable]] = {
    "proxmox_api": API_KEYS, "proxmox_cluster": CLUSTER_KEYS, "balancing": BALANCING_KEYS,
    "service": SERVICE_KEYS, "optimizer": OPTIMIZER_KEYS, "solver": SOLVER_SECTION,
}


def _read_section(data: Mapping, name: str, keys: dict[str, Callable], source: str) -> dict[str, Any]:
    section = data.get(name)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{source}: {name}: expected a mapping, got {type(section).__name__}")
    out = {}
    for key, value in section.items():
        key = str(key)
        if key not in keys:
            hint = closest_key(key, keys)
            suffix = f" (did you mean {name}.{hint}?)" if hint else ""
            raise ConfigError(f"{source}: {name}.{key}: unknown key{suffix}")
        out[key] = keys[key](value, f"{source}: {name}.{key}") if value is not None else None
    return out


# ----------------------------------------------------------------------------- loading


def load_settings(path: str | Path | None, env: Mapping[str, str] | None = None,
                  now: datetime | None = None) -> Settings:
    """Read a proxlb.yaml; `None` gives the defaults. `env` is the environment for *_env secrets.

    Maintenance windows are evaluated at `now` (naive local time, default: the current time); the
    service evaluates them again every round with `Settings.at`.
    """
    if path is None:
        return Settings()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.__class__.__name__})") from None
    data = read_yaml(text, str(path), ConfigError)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections (proxmox_api, balancing, ...)")
    settings = settings_from_dict(data, source=str(path), env=os.environ if env is None else env)
    return settings.at(now or datetime.now())


#: libyaml's C loader when PyYAML was built with it: 2–3× faster on large model files than the pure-Python
#: one, and its nesting limit is an error, not a crash.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: str, where: str, error: type[Exception], kind: str = "YAML") -> Any:
    """Parse YAML safely into plain data; any syntax problem, nesting beyond limits.MAX_DEPTH, an alias
    bomb or a lone surrogate raises `error` with one line naming `where`."""
    try:
        data = yaml.load(text, Loader=YAML_LOADER)
    except RecursionError:
        raise error(f"{where}: not valid {kind}: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        if any(phrase in problem for phrase in ("increasing flow level", "increasing block level", "nesting depth")):
            problem = "nested too deeply"
        raise error(f"{where}: not valid {kind}{at}: {problem}") from None
    except ValueError as exc:  # the pure-Python loader on out-of-range timestamps and the like
        raise error(f"{where}: not valid {kind}: {exc.__class__.__name__}") from None
    return check_tree(data, where, error)


def settings_from_dict(data: Mapping, source: str = "<config>", env: Mapping[str, str] | None = None) -> Settings:
    for key in data:
        if str(key) not in SECTIONS:
            hint = closest_key(str(key), SECTIONS)
            suffix = f" (did you mean {hint}?)" if hint else ""
            raise ConfigError(f"{source}: {key}: unknown section{suffix}")
    sections = {name: _read_section(data, name, keys, source) for name, keys in SECTIONS.items()}
    warnings: list[str] = []
    values: dict[str, Any] = {"source": source}
    values.update(_cluster_values(sections["proxmox_cluster"], source, warnings))
    values.update(_balancing_values(sections["balancing"], source, warnings))
    values.update(_service_values(sections["service"], source))
    values.update(_optimizer_values(sections["optimizer"], source))
    if "max_node_inflow" in values and "max_incoming_per_node" not in values:
        values["max_incoming_per_node"] = values["max_node_inflow"]
    values.pop("max_node_inflow", None)
    if sections["proxmox_api"]:
        values["api"] = _api_values(sections["proxmox_api"], source, env or {})
    if "solver" in data:
        warnings.append(_solver_warning(sections["solver"]))
    values["warnings"] = tuple(warnings)
    return Settings(**values)


def _solver_warning(section: Mapping) -> str:
    named = ", ".join(f"solver.{key}" for key in section) if section else "the whole section"
    return (f"solver: proxlb-opt is itself a CP-SAT solver and does not run ProxLB's proxlb-solver add-on; "
            f"ignored: {named}")


def _cluster_values(section: Mapping, source: str, warnings: list[str]) -> dict[str, Any]:
    keys = ("maintenance_nodes", "ignore_nodes", "overprovisioning")
    out = {k: section[k] for k in keys if section.get(k) is not None}
    if section.get("maintenance_nodes_schedule") is not None:
        where = f"{source}: proxmox_cluster.maintenance_nodes_schedule"
        try:
            schedule = parse_schedule(section["maintenance_nodes_schedule"], where)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if schedule.windows and schedule.empty_windows:
            warnings.append("proxmox_cluster.maintenance_nodes_schedule: duration and pre-migration are both 0 "
                            "(ProxLB's defaults), so the windows have no length and never put a node in "
                            "maintenance; set duration (hours)")
        out["maintenance_schedule"] = schedule
    return out


def _balancing_values(section: Mapping, source: str, warnings: list[str]) -> dict[str, Any]:
    passthrough = (
        "enable", "enforce_affinity", "enforce_pinning", "parallel", "parallel_jobs", "live", "with_local_disks",
        "with_conntrack_state", "cpu_overcommit", "max_job_validation", "balanciness", "method", "mode",
        "balance_larger_guests_first", "ignore_guests", "max_node_inflow",
    )
    out = {k: section[k] for k in passthrough if section.get(k) is not None}
    read_type = _choice(("vm", "ct"))
    types = tuple(read_type(t, f"{source}: balancing.balance_types") for t in section.get("balance_types") or ())
    if types:
        out["balance_types"] = tuple(dict.fromkeys(types))
    else:
        # ProxLB 2.3.0 migrates only the types listed, and lists none by default: enabled without this key it
        # plans moves but never starts one. proxlb-opt keeps both types and says so.
        warnings.append("balancing.balance_types is not set (or empty): proxlb-opt moves VMs and containers, "
                        "while ProxLB 2.3.0 would move neither; set balance_types: ['vm', 'ct'] to make this explicit")
    thresholds = {r: float(section[f"{r}_threshold"]) for r in RESOURCES if section.get(f"{r}_threshold")}
    if thresholds:
        out["thresholds"] = thresholds  # 0 counts as unset, as in ProxLB
    if section.get("node_resource_reserve") is not None:
        out["node_resource_reserve"] = _reserve(section["node_resource_reserve"], source)
    if section.get("pools") is not None:
        out["pools"] = _pools(section["pools"], source)
    if section.get("psi") is not None:
        out["psi_nodes"], out["psi_guests"] = _psi(section["psi"], source)
    if out.get("mode") == "psi" and section.get("psi") is None:
        warnings.append("balancing.mode is psi but balancing.psi sets no thresholds: no node or guest can be hot, "
                        "so only mandatory moves are planned (as in ProxLB)")
    elif out.get("mode") == "psi":
        method = out.get("method", "memory")
        for resource in RESOURCES if method == "multi" else (method,):
            if resource not in out["psi_nodes"] and resource not in out["psi_guests"]:
                warnings.append(f"balancing.psi sets no thresholds for {resource}: {resource} pressure never "
                                f"triggers balancing (as in ProxLB)")
    return out


def _psi(value: Mapping, source: str) -> tuple[dict[str, PsiThreshold], dict[str, PsiThreshold]]:
    """ProxLB's `psi: {nodes: {resource: {pressure_full, pressure_some, pressure_spikes}}, guests: {...}}`."""
    where = f"{source}: balancing.psi"
    for key in value:
        if key not in ("nodes", "guests"):
            raise ConfigError(f"{where}.{key}: unknown key (known: nodes, guests)")
    out = []
    for part in ("nodes", "guests"):
        if part not in value:
            raise ConfigError(f"{where}.{part}: is required (ProxLB needs both nodes and guests; {{}} for none)")
        entries = _mapping(value[part] or {}, f"{where}.{part}")
        table: dict[str, PsiThreshold] = {}
        for resource, spec in entries.items():
            at = f"{where}.{part}.{resource}"
            resource = _choice(RESOURCES)(resource, at)
            spec = _mapping(spec, at)
            names = ("pressure_full", "pressure_some", "pressure_spikes")
            for key in spec:
                if key not in names:
                    hint = closest_key(str(key), names)
                    raise ConfigError(f"{at}.{key}: unknown key" + (f" (did you mean {hint}?)" if hint else ""))
            missing = [k for k in names if spec.get(k) is None]
            if missing:
                raise ConfigError(f"{at}.{missing[0]}: is required (pressure_full, pressure_some and "
                                  f"pressure_spikes, in percent)")
            full, some, spikes = (_number(0, maximum=MAX_PERCENT)(spec[k], f"{at}.{k}") for k in names)
            table[resource] = PsiThreshold(full=full, some=some, spikes=spikes)
        out.append(table)
    return out[0], out[1]


def _reserve(value: Mapping, source: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for node, resources in value.items():
        where = f"{source}: balancing.node_resource_reserve.{node}"
        resources = _mapping(resources, where)
        out[str(node)] = {}
        for resource, amount in resources.items():
            _choice(RESOURCES)(resource, f"{where}.{resource}")
            most = MAX_CORES if resource == "cpu" else MAX_SIZE_MIB // 1024  # cores, or GiB
            out[str(node)][str(resource)] = _number(0, maximum=most)(amount, f"{where}.{resource}")
    return out


def _pools(value: Mapping, source: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for pool, spec in value.items():
        where = f"{source}: balancing.pools.{pool}"
        spec = _mapping(spec or {}, where)
        for key in spec:
            if key not in ("type", "pin", "strict"):
                hint = closest_key(str(key), ("type", "pin", "strict"))
                suffix = f" (did you mean {hint}?)" if hint else ""
                raise ConfigError(f"{where}.{key}: unknown key{suffix}")
        entry: dict[str, Any] = {"strict": _bool(spec.get("strict", True), f"{where}.strict")}
        if spec.get("type") is not None:
            entry["type"] = _choice(("affinity", "anti-affinity"))(spec["type"], f"{where}.type")
        if spec.get("pin") is not None:
            entry["pin"] = _string_list(spec["pin"], f"{where}.pin")
        out[str(pool)] = entry
    return out


def _interval(value: Mapping, source: str, where: str, amount_key: str, default: int) -> int:
    """Seconds of ProxLB's `{<amount_key>: N, format: hours|minutes}` (proxlb-opt also takes seconds)."""
    for key in value:
        if key not in (amount_key, "format", "enable"):
            raise ConfigError(f"{source}: {where}.{key}: unknown key (known: {amount_key}, format)")
    least = 0 if amount_key == "time" else 1  # a delay may be 0, a schedule interval may not
    unit = _choice(tuple(TIME_UNITS))(value.get("format", "hours"), f"{source}: {where}.format")
    most = MAX_INTERVAL_SECONDS / TIME_UNITS[unit]
    amount = _number(least, maximum=most)(value.get(amount_key, default), f"{source}: {where}.{amount_key}")
    return int(amount * TIME_UNITS[unit])


def _service_values(section: Mapping, source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("daemon", "enable_ha"):
        if section.get(key) is not None:
            out[key] = section[key]
    if section.get("log_level") is not None:
        out["log_level"] = _choice(("debug", "info", "warning", "error", "critical"))(
            section["log_level"], f"{source}: service.log_level").upper()
    schedule = section.get("schedule")
    if schedule:
        if "enable" in schedule:
            raise ConfigError(f"{source}: service.schedule.enable: unknown key (known: interval, format)")
        out["schedule_seconds"] = _interval(schedule, source, "service.schedule", "interval", 12)
    delay = section.get("delay")
    if delay:
        enabled = _bool(delay.get("enable", False), f"{source}: service.delay.enable")
        seconds = _interval(delay, source, "service.delay", "time", 1)
        out["delay_seconds"] = seconds if enabled else 0
    return out


def _optimizer_values(section: Mapping, source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("algorithm", "time_limit", "workers", "seed", "optimality_tolerance", "dirty_rate_factor",
                "max_incoming_per_node", "max_outgoing_per_node", "poll_interval", "read_guest_configs",
                "min_gain_per_move", "state_file", "pve_rebalancer"):
        if section.get(key) is not None:
            out[key] = section[key]
    if section.get("target_spread") is not None and str(section["target_spread"]).lower() not in ("none", "auto"):
        out["target_spread"] = _number(0, maximum=MAX_PP)(section["target_spread"], f"{source}: optimizer.target_spread")
    if section.get("cooldown") is not None:
        out["cooldown_seconds"] = parse_duration(section["cooldown"], f"{source}: optimizer.cooldown")
    if section.get("interrupt_wait") is not None:
        out["interrupt_wait"] = parse_duration(section["interrupt_wait"], f"{source}: optimizer.interrupt_wait")
    if "max_migrations" in section:
        out["max_migrations"] = parse_max_migrations(section["max_migrations"], f"{source}: optimizer.max_migrations")
    out.update(_operations_values(section, source))
    if section.get("weights") is not None:
        weights = {}
        for resource, weight in section["weights"].items():
            _choice(RESOURCES)(resource, f"{source}: optimizer.weights")
            weights[str(resource)] = _number(0, True, MAX_COUNT)(weight, f"{source}: optimizer.weights.{resource}")
        if not any(weights.values()):
            raise ConfigError(f"{source}: optimizer.weights: at least one weight must be positive")
        out["weights"] = weights
    if section.get("migration_bandwidth") is not None:
        from proxlb_opt.units import parse_size_mib

        try:
            out["migration_bandwidth_mib_s"] = float(parse_size_mib(section["migration_bandwidth"], "bandwidth"))
        except ValueError:
            raise ConfigError(f"{source}: optimizer.migration_bandwidth: expected a size per second such as 1G") from None
        if out["migration_bandwidth_mib_s"] <= 0:
            raise ConfigError(f"{source}: optimizer.migration_bandwidth: must be positive")
    return out


def _operations_values(section: Mapping, source: str) -> dict[str, Any]:
    """The lock file, the audit log (`none` or `off`: no log) and the service's metrics outputs."""
    out: dict[str, Any] = {}
    for key in ("lock_file", "metrics_textfile"):
        if section.get(key) not in (None, ""):
            out[key] = section[key]
    if section.get("audit_log") is not None:
        text = str(section["audit_log"])
        out["audit_log"] = "" if text.lower() in ("none", "off", "") else text
    if section.get("metrics_listen") is not None:
        out["metrics_listen"] = parse_listen(section["metrics_listen"], f"{source}: optimizer.metrics_listen")
    return out


def parse_listen(value: Any, where: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT`, or a port alone (loopback: 127.0.0.1) → (host, port)."""
    text = str(value).strip()
    if is_decimal(text):
        host, port = "127.0.0.1", text
    elif text.startswith("[") and "]:" in text:
        host, port = text[1:].split("]:", 1)
    elif text.count(":") == 1:
        host, port = text.split(":", 1)
    else:
        raise ConfigError(f"{where}: expected HOST:PORT, [IPv6]:PORT or a port, got {value!r}")
    if not is_decimal(port) or not 0 <= int(port) <= 65535 or not host:
        raise ConfigError(f"{where}: expected HOST:PORT with a port from 0 to 65535, got {value!r}")
    return host, int(port)


def parse_max_migrations(value: Any, where: str) -> int | None | str:
    """A migration budget: a non-negative integer, none/unlimited for no budget, or auto."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "unlimited", "")):
        return None
    if isinstance(value, str) and value.lower() == AUTO:
        return AUTO
    return _number(0, True, MAX_INT32)(value, where)


def parse_duration(value: Any, where: str) -> float:
    """Seconds, or a number with s, m, h or d (`12h`, `30m`, `2d`)."""
    text = str(value).strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(text[-1:], None)
    number = text[:-1] if scale else text
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise ConfigError(f"{where}: expected a duration such as 3600, 30m, 12h or 2d, got {shown(value)}") from None
    if not 0 <= seconds < float("inf"):
        raise ConfigError(f"{where}: must be a finite, non-negative duration, got {shown(value)}")
    return seconds


def _api_values(section: Mapping, source: str, env: Mapping[str, str]) -> ApiSettings:
    where = f"{source}: proxmox_api"
    hosts = section.get("hosts") or ()
    if not hosts:
        raise ConfigError(f"{where}.hosts: at least one host is required")
    user = section.get("user")
    if not user:
        raise ConfigError(f"{where}.user: is required (e.g. root@pam or proxlb@pve)")
    password = _secret(section, "pass", where, env)
    token_secret = _secret(section, "token_secret", where, env)
    token_id = section.get("token_id")
    if password and token_secret:
        # ProxLB 2.3.0 refuses the same: the two ways to log in exclude each other.
        raise ConfigError(f"{where}: pass and token_secret are both set; give one (a password or an API token)")
    if token_id and not token_secret:
        raise ConfigError(f"{where}.token_secret: is required with token_id")
    if not token_id and not password:
        raise ConfigError(f"{where}: give either pass (or pass_env / pass_file) or token_id with token_secret")
    verify = section.get("ssl_verification", True)
    ca_file = None
    if verify is None:
        verify = True
    elif as_bool(verify) is not None:
        verify = as_bool(verify)
    elif isinstance(verify, str) and ("/" in verify or "." in verify):
        ca_file = verify  # the path of a CA bundle (PEM) that signed the API's certificate
        if not os.path.isfile(ca_file):  # never raises (a name too long, a NUL byte: False)
            raise ConfigError(f"{where}.ssl_verification: CA file {shown(ca_file)} not found")
        verify = True
    else:
        raise ConfigError(f"{where}.ssl_verification: expected true/false (also on/off, yes/no) or the path of a "
                          f"CA file, got {shown(verify)}")
    return ApiSettings(
        hosts=_hosts(hosts, where), user=str(user), password=password, token_id=token_id, token_secret=token_secret,
        ssl_verification=verify, ca_file=ca_file, timeout=float(section.get("timeout") or 10),
        retries=int(section.get("retries") or 1), wait_time=float(section.get("wait_time") or 1),
    )


def _secret(section: Mapping, key: str, where: str, env: Mapping[str, str]) -> Secret | None:
    if section.get(key) not in (None, ""):
        return Secret(str(section[key]))
    # The names below are not quoted in messages: a secret typed into the wrong key would be printed.
    env_name = section.get(f"{key}_env")
    if env_name:
        if not ENV_NAME.fullmatch(env_name):
            raise ConfigError(f"{where}.{key}_env: not an environment variable name (it should name the variable "
                              f"that holds the secret, not be the secret; the value is not shown)")
        if env_name not in env or not env[env_name]:
            # Named only when it looks like the usual upper-case name: a secret rarely does.
            named = f" {env_name}" if USUAL_ENV_NAME.fullmatch(env_name) else " it names (not shown)"
            raise ConfigError(f"{where}.{key}_env: environment variable{named} is not set")
        return Secret(env[env_name])
    file_name = section.get(f"{key}_file")
    if file_name:
        try:
            text = Path(file_name).read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError(f"{where}.{key}_file: the file it names is not UTF-8 text") from None
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
            reason = "no such file" if isinstance(exc, FileNotFoundError) else exc.__class__.__name__
            raise ConfigError(f"{where}.{key}_file: cannot read the file it names ({reason}; the name is not "
                              f"shown in case it is the secret itself)") from None
        if not text:
            raise ConfigError(f"{where}.{key}_file: the file it names is empty")
        return Secret(text)
    return None


#: What an environment variable name looks like (POSIX: letters, digits, underscores; not a digit first).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
USUAL_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
#: A host written with credentials: user:secret@host or user@host (URL userinfo).
_USERINFO = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?([^/@\s]+)@", re.IGNORECASE)


def _hosts(hosts: Any, where: str) -> tuple[str, ...]:
    """API hosts as written (name, name:port, [v6]:port); a host carrying credentials is refused unquoted."""
    out = []
    for host in hosts:
        match = _USERINFO.match(host)
        if match:
            register_secret(match.group(1).partition(":")[2])  # in case it reaches a message elsewhere
            raise ConfigError(f"{where}.hosts: a host carries credentials (user:secret@host); give the host alone "
                              f"and the credentials in user and pass (the value is not shown)")
        out.append(host)
    return tuple(out)
