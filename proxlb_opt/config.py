"""proxlb.yaml → frozen Settings.

Owns the config file: ProxLB 2.3.0's keys (proxmox_api, proxmox_cluster, balancing, service,
solver) are accepted as they are, plus an `optimizer:` section for proxlb-opt's own knobs.
Keys are strict: an unknown key is an error that suggests the closest known one. Secrets
(password, token secret) may come inline, from an environment variable or from a file, and are
never part of any message or repr.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from proxlb_opt.errors import ConfigError

RESOURCES = ("memory", "cpu", "disk")
METHODS = RESOURCES + ("multi",)
MODES = ("used", "assigned")
ALGORITHMS = ("cpsat", "greedy")

DEFAULT_MAX_MIGRATIONS = 25
DEFAULT_TIME_LIMIT = 10.0
#: Percentage points: a spread proven within this of the best possible is reported as optimal, as a MIP
#: solver reports a solution within its gap tolerance. Far below how much sampled memory use moves.
DEFAULT_OPTIMALITY_TOLERANCE = 0.05


def closest_key(key: str, known: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


class Secret(str):
    """A string that never shows itself in repr/str formatting of containers or logs."""

    def __repr__(self) -> str:
        return "Secret('********')"

    def reveal(self) -> str:
        return str.__str__(self)


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
class Settings:
    """Everything the core and the CLI need from a config file, with ProxLB's defaults."""

    # proxmox_cluster
    maintenance_nodes: tuple[str, ...] = ()
    ignore_nodes: tuple[str, ...] = ()
    overprovisioning: bool = False
    # balancing
    enable: bool = True
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
    # service
    daemon: bool = False
    schedule_seconds: int = 12 * 3600
    log_level: str = "INFO"
    # optimizer (proxlb-opt's own)
    algorithm: str = "cpsat"
    max_migrations: int | None = DEFAULT_MAX_MIGRATIONS
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
    read_guest_configs: bool = True
    # proxmox_api
    api: ApiSettings | None = None
    source: str = "<defaults>"

    @property
    def parallel_limit(self) -> int:
        """Global limit on concurrent migrations: ProxLB runs one at a time unless `parallel` is on."""
        return max(1, self.parallel_jobs) if self.parallel else 1

    def with_overrides(self, **changes: Any) -> "Settings":
        clean = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **clean) if clean else self


# ----------------------------------------------------------------------------- schema


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
        return value.lower() in ("true", "yes", "on")
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _number(minimum: float | None = 0, integer: bool = False) -> Callable[[Any, str], Any]:
    def read(value: Any, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value) if not integer else int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if integer and float(value) != int(value):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{where}: must be at least {minimum}, got {value!r}")
        return int(value) if integer else float(value)

    return read


def _string(value: Any, where: str) -> str:
    if value is None or isinstance(value, (dict, list)):
        raise ConfigError(f"{where}: expected a text value, got {value!r}")
    return str(value)


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    return tuple(str(v) for v in value)


def _choice(options: tuple[str, ...]) -> Callable[[Any, str], str]:
    def read(value: Any, where: str) -> str:
        text = str(value).lower()
        if text not in options:
            hint = closest_key(text, options)
            suffix = f" (did you mean {hint!r}?)" if hint else ""
            raise ConfigError(f"{where}: must be one of {', '.join(options)}, got {value!r}{suffix}")
        return text

    return read


def _anything(value: Any, where: str) -> Any:
    return value


def _mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


# key → reader. Keys read but not used by proxlb-opt are listed so a ProxLB file works as is.
API_KEYS: dict[str, Callable] = {
    "hosts": _string_list, "user": _string, "pass": _anything, "pass_env": _string, "pass_file": _string,
    "token_id": _string, "token_secret": _anything, "token_secret_env": _string, "token_secret_file": _string,
    "ssl_verification": _anything, "timeout": _number(0), "retries": _number(0, True), "wait_time": _number(0),
}
CLUSTER_KEYS: dict[str, Callable] = {
    "maintenance_nodes": _string_list, "ignore_nodes": _string_list, "overprovisioning": _bool,
    "maintenance_nodes_schedule": _anything,
}
BALANCING_KEYS: dict[str, Callable] = {
    "enable": _bool, "enforce_affinity": _bool, "enforce_pinning": _bool, "parallel": _bool,
    "parallel_jobs": _number(1, True), "live": _bool, "with_local_disks": _bool, "with_conntrack_state": _bool,
    "cpu_overcommit": _number(0.01), "max_node_inflow": _anything, "balance_types": _string_list,
    "max_job_validation": _number(1, True), "memory_threshold": _anything, "cpu_threshold": _anything,
    "disk_threshold": _anything, "balanciness": _number(0), "method": _choice(METHODS), "mode": _anything,
    "balance_larger_guests_first": _bool, "ignore_guests": _string_list, "node_resource_reserve": _mapping,
    "psi": _anything, "pools": _mapping,
}
SERVICE_KEYS: dict[str, Callable] = {
    "daemon": _bool, "enable_ha": _bool, "schedule": _mapping, "delay": _anything, "log_level": _string,
}
OPTIMIZER_KEYS: dict[str, Callable] = {
    "algorithm": _choice(ALGORITHMS), "max_migrations": _anything, "time_limit": _number(0.1),
    "weights": _mapping, "workers": _number(0, True), "seed": _number(0, True),
    "optimality_tolerance": _number(0), "migration_bandwidth": _anything, "dirty_rate_factor": _number(1.0),
    "max_incoming_per_node": _number(1, True), "max_outgoing_per_node": _number(1, True), "poll_interval": _number(0.01), "read_guest_configs": _bool,
}
SECTIONS: dict[str, dict[str, Callable] | None] = {
    "proxmox_api": API_KEYS, "proxmox_cluster": CLUSTER_KEYS, "balancing": BALANCING_KEYS,
    "service": SERVICE_KEYS, "optimizer": OPTIMIZER_KEYS, "solver": None,  # ProxLB's add-on: accepted, unused
}


def _read_section(data: Mapping, name: str, keys: dict[str, Callable] | None, source: str) -> dict[str, Any]:
    section = data.get(name)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{source}: {name}: expected a mapping, got {type(section).__name__}")
    if keys is None:
        return dict(section)
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


def load_settings(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read a proxlb.yaml; `None` gives the defaults. `env` is the environment for *_env secrets."""
    if path is None:
        return Settings()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections (proxmox_api, balancing, ...)")
    return settings_from_dict(data, source=str(path), env=os.environ if env is None else env)


def settings_from_dict(data: Mapping, source: str = "<config>", env: Mapping[str, str] | None = None) -> Settings:
    for key in data:
        if str(key) not in SECTIONS:
            hint = closest_key(str(key), SECTIONS)
            suffix = f" (did you mean {hint}?)" if hint else ""
            raise ConfigError(f"{source}: {key}: unknown section{suffix}")
    sections = {name: _read_section(data, name, keys, source) for name, keys in SECTIONS.items()}
    values: dict[str, Any] = {"source": source}
    values.update(_cluster_values(sections["proxmox_cluster"]))
    values.update(_balancing_values(sections["balancing"], source))
    values.update(_service_values(sections["service"], source))
    values.update(_optimizer_values(sections["optimizer"], source))
    if sections["proxmox_api"]:
        values["api"] = _api_values(sections["proxmox_api"], source, env or {})
    return Settings(**values)


def _cluster_values(section: Mapping) -> dict[str, Any]:
    keys = ("maintenance_nodes", "ignore_nodes", "overprovisioning")
    return {k: section[k] for k in keys if section.get(k) is not None}


def _balancing_values(section: Mapping, source: str) -> dict[str, Any]:
    passthrough = (
        "enable", "enforce_affinity", "enforce_pinning", "parallel", "parallel_jobs", "live", "with_local_disks",
        "with_conntrack_state", "cpu_overcommit", "max_job_validation", "balanciness", "method",
        "balance_larger_guests_first", "ignore_guests",
    )
    out = {k: section[k] for k in passthrough if section.get(k) is not None}
    if section.get("mode") is not None:
        mode = str(section["mode"]).lower()
        if mode == "psi":
            raise ConfigError(f"{source}: balancing.mode: 'psi' is not supported by proxlb-opt; use 'used' or 'assigned'")
        out["mode"] = _choice(MODES)(mode, f"{source}: balancing.mode")
    if section.get("balance_types") is not None:
        types = tuple(_choice(("vm", "ct"))(t, f"{source}: balancing.balance_types") for t in section["balance_types"])
        out["balance_types"] = types or ("vm", "ct")  # ProxLB: an empty list means both
    if section.get("node_resource_reserve") is not None:
        out["node_resource_reserve"] = _reserve(section["node_resource_reserve"], source)
    if section.get("pools") is not None:
        out["pools"] = _pools(section["pools"], source)
    return out


def _reserve(value: Mapping, source: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for node, resources in value.items():
        where = f"{source}: balancing.node_resource_reserve.{node}"
        resources = _mapping(resources, where)
        out[str(node)] = {}
        for resource, amount in resources.items():
            _choice(RESOURCES)(resource, f"{where}.{resource}")
            out[str(node)][str(resource)] = _number(0)(amount, f"{where}.{resource}")
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


def _service_values(section: Mapping, source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if section.get("daemon") is not None:
        out["daemon"] = section["daemon"]
    if section.get("log_level") is not None:
        out["log_level"] = _choice(("debug", "info", "warning", "error", "critical"))(
            section["log_level"], f"{source}: service.log_level").upper()
    schedule = section.get("schedule")
    if schedule:
        interval = _number(1)(schedule.get("interval", 12), f"{source}: service.schedule.interval")
        unit = _choice(("hours", "minutes", "seconds"))(schedule.get("format", "hours"), f"{source}: service.schedule.format")
        out["schedule_seconds"] = int(interval * {"hours": 3600, "minutes": 60, "seconds": 1}[unit])
    return out


def _optimizer_values(section: Mapping, source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("algorithm", "time_limit", "workers", "seed", "optimality_tolerance", "dirty_rate_factor",
                "max_incoming_per_node", "max_outgoing_per_node", "poll_interval", "read_guest_configs"):
        if section.get(key) is not None:
            out[key] = section[key]
    if "max_migrations" in section:
        out["max_migrations"] = parse_max_migrations(section["max_migrations"], f"{source}: optimizer.max_migrations")
    if section.get("weights") is not None:
        weights = {}
        for resource, weight in section["weights"].items():
            _choice(RESOURCES)(resource, f"{source}: optimizer.weights")
            weights[str(resource)] = _number(0, True)(weight, f"{source}: optimizer.weights.{resource}")
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


def parse_max_migrations(value: Any, where: str) -> int | None:
    """A migration budget: a non-negative integer, or none/unlimited for no budget."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "unlimited", "")):
        return None
    return _number(0, True)(value, where)


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
    if token_id and not token_secret:
        raise ConfigError(f"{where}.token_secret: is required with token_id")
    if not token_id and not password:
        raise ConfigError(f"{where}: give either pass (or pass_env / pass_file) or token_id with token_secret")
    verify = section.get("ssl_verification", True)
    ca_file = None
    if isinstance(verify, str) and verify.lower() not in ("true", "false", "yes", "no"):
        ca_file = verify
        if not Path(ca_file).is_file():
            raise ConfigError(f"{where}.ssl_verification: CA file {ca_file!r} not found")
        verify = True
    else:
        verify = _bool(verify, f"{where}.ssl_verification")
    return ApiSettings(
        hosts=tuple(hosts), user=str(user), password=password, token_id=token_id, token_secret=token_secret,
        ssl_verification=verify, ca_file=ca_file, timeout=float(section.get("timeout") or 10),
        retries=int(section.get("retries") or 1), wait_time=float(section.get("wait_time") or 1),
    )


def _secret(section: Mapping, key: str, where: str, env: Mapping[str, str]) -> Secret | None:
    if section.get(key) not in (None, ""):
        return Secret(str(section[key]))
    env_name = section.get(f"{key}_env")
    if env_name:
        if env_name not in env or not env[env_name]:
            raise ConfigError(f"{where}.{key}_env: environment variable {env_name} is not set")
        return Secret(env[env_name])
    file_name = section.get(f"{key}_file")
    if file_name:
        try:
            return Secret(Path(file_name).read_text(encoding="utf-8").strip())
        except OSError:
            raise ConfigError(f"{where}.{key}_file: cannot read {file_name}") from None
    return None
