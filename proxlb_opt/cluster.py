"""The Cluster: one immutable snapshot of nodes and guests, and its model files.

Owns the cluster model file format (models/README.md, version 1): load, validate, save, and
the pure what-if transforms that return a new Cluster. Arrays are integers with units in their
names (`mem_mib`, `cpu_milli`, `disk_mib`), axis `g` for guests and `n` for nodes, read-only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import yaml

from proxlb_opt.config import closest_key, read_yaml
from proxlb_opt.errors import ModelError
from proxlb_opt.limits import MAX_VMID, dumps, is_decimal, loads_json
from proxlb_opt.units import parse_cores_milli, parse_size_mib

MODEL_VERSION = 1
NODE_KEYS = {
    "name", "cpus", "memory", "disk", "memory_used", "cpu_usage", "disk_used", "status", "maintenance", "pressure",
}
GUEST_KEYS = {
    "vmid", "name", "type", "node", "status", "cpus", "cpu_usage", "memory", "memory_used", "disk",
    "disk_used", "local_disk", "tags", "pool", "ha", "lock", "template", "pressure", "auto_rebalance",
}
#: Pressure stall information (PVE 9): resources in the order of config.RESOURCES (io is the disk
#: resource) and the figures kept per resource. Stored in hundredths of a percent of stalled time.
PSI_RESOURCES = ("memory", "cpu", "io")
PSI_FIGURES = ("some", "full", "spikes")
PSI_SCALE = 100
HA_RULE_KEYS = {"rule", "type", "resources", "nodes", "affinity", "strict", "disable", "comment"}
TOP_KEYS = {"version", "cluster", "nodes", "guests", "ha_rules", "source", "crs"}


@dataclass(frozen=True)
class HaRule:
    """A PVE 9 HA rule (`/cluster/ha/rules`): node-affinity or resource-affinity."""

    name: str
    type: str  # "node-affinity" | "resource-affinity"
    vmids: tuple[int, ...]
    affinity: str = "positive"  # "positive" | "negative" (node-affinity: negative from PVE 9.2.6, never those nodes)
    strict: bool = False
    node_priorities: tuple[tuple[str, int], ...] = ()  # node-affinity only
    disabled: bool = False


def _readonly(values: Iterable[Any], dtype: Any) -> np.ndarray:
    # An array is copied as it is: np.array(list(array)) would box every element (slow on 10,000 guests).
    array = np.array(values, dtype=dtype) if isinstance(values, np.ndarray) else np.array(list(values), dtype=dtype)
    array.setflags(write=False)
    return array


def _readonly_array(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Cluster:
    """Nodes (axis n) and guests (axis g) as read-only integer arrays plus name tables."""

    name: str
    node_names: tuple[str, ...]
    node_online: np.ndarray  # bool[n]
    node_maintenance: np.ndarray  # bool[n]: maintenance reported by the cluster (HA) or model
    node_cpu_milli: np.ndarray  # int64[n] physical cores × 1000
    node_mem_mib: np.ndarray
    node_disk_mib: np.ndarray  # local storage size
    node_cpu_used_milli: np.ndarray  # as reported (host view)
    node_mem_used_mib: np.ndarray
    node_disk_used_mib: np.ndarray
    guest_vmid: np.ndarray  # int64[g]
    guest_names: tuple[str, ...]
    guest_is_ct: np.ndarray  # bool[g]
    guest_node: np.ndarray  # int64[g] index into node_names
    guest_running: np.ndarray  # bool[g]
    guest_cpu_milli: np.ndarray  # assigned vCPUs × 1000
    guest_cpu_used_milli: np.ndarray
    guest_mem_mib: np.ndarray
    guest_mem_used_mib: np.ndarray
    guest_disk_mib: np.ndarray
    guest_disk_used_mib: np.ndarray
    guest_local_disk: np.ndarray  # bool[g]: disks live on the node's local storage
    guest_tags: tuple[tuple[str, ...], ...]
    guest_pool: tuple[str | None, ...]
    guest_ha: np.ndarray  # bool[g]
    guest_lock: tuple[str | None, ...]
    guest_template: np.ndarray  # bool[g]
    ha_rules: tuple[HaRule, ...] = ()
    source: str = ""
    # PSI, int64[·, resource, figure] in hundredths of a percent (PSI_RESOURCES × PSI_FIGURES); zeros when
    # not reported. Nodes: hour means of PVE's rrddata (spikes: the highest `full` of the last minutes);
    # guests: PVE's live avg10 values. Only `balancing.mode: psi` reads them.
    node_psi: np.ndarray | None = field(default=None, repr=False)
    node_psi_known: np.ndarray | None = field(default=None, repr=False)  # bool[n]: the node reported PSI
    guest_psi: np.ndarray | None = field(default=None, repr=False)
    # PVE 9.2's automatic HA rebalancing: the datacenter `crs` option (key → value, as PVE reports it) and
    # each HA resource's `auto-rebalance` flag (bool[g]; true unless the resource opts out).
    crs: tuple[tuple[str, str], ...] = ()
    guest_auto_rebalance: np.ndarray | None = field(default=None, repr=False)
    _node_index: dict[str, int] = field(default_factory=dict, repr=False)
    _vmid_index: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_node_index", {name: i for i, name in enumerate(self.node_names)})
        object.__setattr__(self, "_vmid_index", {int(v): i for i, v in enumerate(self.guest_vmid)})
        shape = (len(PSI_RESOURCES), len(PSI_FIGURES))
        for name, rows, dtype in (("node_psi", len(self.node_names), np.int64),
                                  ("guest_psi", len(self.guest_names), np.int64)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, _readonly_array(np.zeros((rows, *shape), dtype=dtype)))
        if self.node_psi_known is None:
            object.__setattr__(self, "node_psi_known", _readonly_array(np.zeros(len(self.node_names), dtype=bool)))
        if self.guest_auto_rebalance is None:
            object.__setattr__(self, "guest_auto_rebalance",
                               _readonly_array(np.ones(len(self.guest_names), dtype=bool)))

    @property
    def pve_rebalances(self) -> bool:
        """PVE 9.2 rebalances HA resources itself (`crs: ha-auto-rebalance=1`)."""
        return str(dict(self.crs).get("ha-auto-rebalance", "0")).lower() in ("1", "true", "yes", "on")

    @property
    def n_nodes(self) -> int:
        return len(self.node_names)

    @property
    def n_guests(self) -> int:
        return len(self.guest_names)

    def node_index(self, name: str) -> int | None:
        return self._node_index.get(name)

    def guest_index(self, vmid: int) -> int | None:
        return self._vmid_index.get(int(vmid))

    def guest_type(self, g: int) -> str:
        return "ct" if self.guest_is_ct[g] else "vm"

    def guest_label(self, g: int) -> str:
        return f"{self.guest_type(g)}:{int(self.guest_vmid[g])} ({self.guest_names[g]})"


# ----------------------------------------------------------------------------- loading


class _Reader:
    """Field readers that turn any bad value into a ModelError naming file and field."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, message: str) -> ModelError:
        return ModelError(f"{self.source}: {where}: {message}")

    def size(self, entry: Mapping, key: str, where: str, default: Any = None) -> int:
        if key not in entry or entry[key] is None:
            if default is None:
                raise self.fail(f"{where}.{key}", "is required")
            return default
        try:
            return parse_size_mib(entry[key], key)
        except ValueError as exc:
            raise self.fail(f"{where}.{key}", str(exc).split(": ", 1)[-1]) from None

    def cores(self, entry: Mapping, key: str, where: str, default: Any = None) -> int:
        if key not in entry or entry[key] is None:
            if default is None:
                raise self.fail(f"{where}.{key}", "is required")
            return default
        try:
            return parse_cores_milli(entry[key], key)
        except ValueError as exc:
            raise self.fail(f"{where}.{key}", str(exc).split(": ", 1)[-1]) from None

    def boolean(self, entry: Mapping, key: str, where: str, default: bool) -> bool:
        value = entry.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise self.fail(f"{where}.{key}", f"expected true or false, got {value!r}")

    def choice(self, entry: Mapping, key: str, where: str, allowed: tuple[str, ...], default: str) -> str:
        value = entry.get(key, default)
        if value is None:
            return default
        value = str(value).lower()
        if value not in allowed:
            raise self.fail(f"{where}.{key}", f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def pressure(self, entry: Mapping, where: str) -> np.ndarray | None:
        """`pressure: {memory: {some, full, spikes}, cpu: {...}, io: {...}}` in percent → int64[3, 3] in
        hundredths of a percent; None when the entry has no `pressure`. `spikes` defaults to `full`."""
        value = entry.get("pressure")
        if value is None:
            return None
        self.keys(value, set(PSI_RESOURCES), f"{where}.pressure")
        out = np.zeros((len(PSI_RESOURCES), len(PSI_FIGURES)), dtype=np.int64)
        for r, resource in enumerate(PSI_RESOURCES):
            figures = value.get(resource)
            if figures is None:
                continue
            at = f"{where}.pressure.{resource}"
            self.keys(figures, set(PSI_FIGURES), at)
            for f, figure in enumerate(PSI_FIGURES):
                raw = figures.get(figure)
                if raw is None:
                    out[r, f] = out[r, 1] if figure == "spikes" else 0
                    continue
                if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
                    raise self.fail(f"{at}.{figure}", f"expected a percentage, got {raw!r}")
                try:
                    percent = float(raw)
                except ValueError:
                    raise self.fail(f"{at}.{figure}", f"expected a percentage, got {raw!r}") from None
                if not 0.0 <= percent <= 100.0:
                    raise self.fail(f"{at}.{figure}", f"must lie between 0 and 100, got {raw!r}")
                out[r, f] = int(round(percent * PSI_SCALE))
        return out

    def keys(self, entry: Any, allowed: set[str], where: str) -> Mapping:
        if not isinstance(entry, Mapping):
            raise self.fail(where, f"expected a mapping, got {type(entry).__name__}")
        unknown = sorted(set(map(str, entry)) - allowed)
        if unknown:
            hint = closest_key(unknown[0], allowed)
            suffix = f" (did you mean {hint!r}?)" if hint else ""
            raise self.fail(f"{where}.{unknown[0]}", f"unknown field{suffix}")
        return entry


def parse_tags(value: Any) -> tuple[str, ...]:
    """Tags as PVE gives them (`a;b`, also `,` or spaces) or as a list; lower-cased, sorted, unique."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        parts = value.replace(",", ";").replace(" ", ";").split(";")
    elif isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        raise ValueError(f"expected a list or a ';'-separated string, got {value!r}")
    return tuple(sorted({p.strip().lower() for p in parts if p.strip()}))


def read_model_file(path: str | Path) -> dict:
    """Read a YAML or JSON model file into a mapping; ModelError on any I/O or syntax problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read model file ({exc.__class__.__name__})") from None
    if path.suffix.lower() == ".json":
        data = loads_json(text, str(path), ModelError)
    else:
        data = read_yaml(text, str(path), ModelError, "YAML/JSON")
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a mapping with 'version', 'nodes' and 'guests'")
    return data


def load_model(path: str | Path) -> Cluster:
    """Load and validate a cluster model file (YAML, or JSON by extension)."""
    return cluster_from_dict(read_model_file(path), source=str(path))


def cluster_from_dict(data: Mapping, source: str = "<model>") -> Cluster:
    """Validate a model mapping (format v1) and build the Cluster."""
    r = _Reader(source)
    r.keys(data, TOP_KEYS, "top level")
    version = data.get("version", MODEL_VERSION)
    if isinstance(version, str) and is_decimal(version.strip()):
        version = int(version)
    if version != MODEL_VERSION:
        raise r.fail("version", f"unsupported model version {version!r} (this proxlb-opt reads version {MODEL_VERSION})")
    nodes_in = data.get("nodes")
    if not isinstance(nodes_in, list) or not nodes_in:
        raise r.fail("nodes", "must be a non-empty list")
    guests_in = data.get("guests") or []
    if not isinstance(guests_in, list):
        raise r.fail("guests", "must be a list")

    nodes = [_read_node(r, entry, i) for i, entry in enumerate(nodes_in)]
    node_index: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node["name"] in node_index:
            raise r.fail(f"nodes[{i}].name", f"duplicate node name {node['name']!r}")
        node_index[node["name"]] = i

    guests = [_read_guest(r, entry, i, node_index) for i, entry in enumerate(guests_in)]
    seen: dict[int, int] = {}
    for i, guest in enumerate(guests):
        if guest["vmid"] in seen:
            raise r.fail(f"guests[{i}].vmid", f"duplicate vmid {guest['vmid']} (also guests[{seen[guest['vmid']]}])")
        seen[guest["vmid"]] = i

    ha_in = data.get("ha_rules") or []
    if not isinstance(ha_in, list):
        raise r.fail("ha_rules", "must be a list")
    ha_rules = tuple(_read_ha_rule(r, entry, i, node_index) for i, entry in enumerate(ha_in))

    _fill_node_usage_defaults(nodes, guests, node_index)
    name = str(data.get("cluster") or Path(source).stem or "cluster")
    return _build(name, nodes, guests, ha_rules, source=source, crs=_read_crs(r, data.get("crs")))


def _read_crs(r: _Reader, value: Any) -> tuple[tuple[str, str], ...]:
    """The datacenter `crs` option: a mapping (as PVE's API returns it) or PVE's `key=value,…` string."""
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        pairs = [part.partition("=") for part in value.split(",") if part.strip()]
        value = {k.strip(): v.strip() for k, _, v in pairs}
    if not isinstance(value, Mapping):
        raise r.fail("crs", f"expected a mapping or 'key=value,…', got {value!r}")
    return tuple(sorted((str(k), str(int(v)) if isinstance(v, bool) else str(v)) for k, v in value.items()))


def _read_node(r: _Reader, entry: Any, i: int) -> dict:
    where = f"nodes[{i}]"
    r.keys(entry, NODE_KEYS, where)
    if not entry.get("name"):
        raise r.fail(f"{where}.name", "is required")
    where = f"nodes[{i}] ({entry['name']})"
    node = {
        "name": str(entry["name"]),
        "cpu_milli": r.cores(entry, "cpus", where),
        "mem_mib": r.size(entry, "memory", where),
        "disk_mib": r.size(entry, "disk", where, default=0),
        "mem_used_mib": r.size(entry, "memory_used", where, default=-1),
        "cpu_used_milli": r.cores(entry, "cpu_usage", where, default=-1),
        "disk_used_mib": r.size(entry, "disk_used", where, default=-1),
        "online": r.choice(entry, "status", where, ("online", "offline", "unknown"), "online") == "online",
        "maintenance": r.boolean(entry, "maintenance", where, False),
        "psi": r.pressure(entry, where),
    }
    if node["cpu_milli"] <= 0:
        raise r.fail(f"{where}.cpus", "must be positive")
    if node["mem_mib"] <= 0:
        raise r.fail(f"{where}.memory", "must be positive")
    return node


def _read_guest(r: _Reader, entry: Any, i: int, node_index: Mapping[str, int]) -> dict:
    where = f"guests[{i}]"
    r.keys(entry, GUEST_KEYS, where)
    vmid = entry.get("vmid")
    if isinstance(vmid, str) and vmid.isascii() and vmid.isdigit() and len(vmid) < 12:
        vmid = int(vmid)
    if isinstance(vmid, bool) or not isinstance(vmid, int) or not 0 < vmid <= MAX_VMID:
        shown = repr(vmid) if len(repr(vmid)) <= 60 else repr(vmid)[:57] + "..."
        raise r.fail(f"{where}.vmid", f"must be an integer from 1 to {MAX_VMID}, got {shown}")
    where = f"guests[{i}] (vmid {vmid})"
    node_name = entry.get("node")
    if node_name is None:
        raise r.fail(f"{where}.node", "is required")
    if str(node_name) not in node_index:
        raise r.fail(f"{where}.node", f"unknown node {node_name!r} (nodes: {', '.join(node_index)})")
    running = r.choice(entry, "status", where, ("running", "stopped", "paused", "suspended"), "running") != "stopped"
    mem = r.size(entry, "memory", where)
    cpus = r.cores(entry, "cpus", where, default=1000)
    disk = r.size(entry, "disk", where, default=0)
    try:
        tags = parse_tags(entry.get("tags"))
    except ValueError as exc:
        raise r.fail(f"{where}.tags", str(exc)) from None
    lock = entry.get("lock")
    is_ct = r.choice(entry, "type", where, ("vm", "ct", "qemu", "lxc"), "vm") in ("ct", "lxc")
    guest = {
        "vmid": vmid,
        "name": str(entry.get("name") or f"{'ct' if is_ct else 'vm'}{vmid}"),
        "is_ct": is_ct,
        "node": node_index[str(node_name)],
        "running": running,
        "cpu_milli": cpus,
        "cpu_used_milli": r.cores(entry, "cpu_usage", where, default=cpus),
        "mem_mib": mem,
        "mem_used_mib": r.size(entry, "memory_used", where, default=mem),
        "disk_mib": disk,
        "disk_used_mib": r.size(entry, "disk_used", where, default=disk),
        "local_disk": r.boolean(entry, "local_disk", where, False),
        "tags": tags,
        "pool": str(entry["pool"]) if entry.get("pool") not in (None, "") else None,
        "ha": r.boolean(entry, "ha", where, False),
        "lock": str(lock) if lock not in (None, "", False) else None,
        "template": r.boolean(entry, "template", where, False),
        "psi": r.pressure(entry, where),
        "auto_rebalance": r.boolean(entry, "auto_rebalance", where, True),
    }
    if guest["mem_used_mib"] > mem and mem > 0:
        # Ballooning and host overhead can push RSS slightly above the assigned size; cap to keep sums sane.
        guest["mem_used_mib"] = mem
    return guest


def _read_ha_rule(r: _Reader, entry: Any, i: int, node_index: Mapping[str, int]) -> HaRule:
    where = f"ha_rules[{i}]"
    r.keys(entry, HA_RULE_KEYS, where)
    name = str(entry.get("rule") or f"rule{i}")
    where = f"ha_rules[{i}] ({name})"
    rule_type = r.choice(entry, "type", where, ("node-affinity", "resource-affinity"), "resource-affinity")
    vmids = _parse_ha_resources(r, entry.get("resources"), f"{where}.resources")
    priorities: list[tuple[str, int]] = []
    if rule_type == "node-affinity":
        nodes_value = entry.get("nodes")
        if not nodes_value:
            raise r.fail(f"{where}.nodes", "is required for a node-affinity rule")
        items = _items(nodes_value)
        if items is None:
            raise r.fail(f"{where}.nodes", "expected a list or \"node:priority,…\"")
        for item in items:
            node_name, _, prio = str(item).strip().partition(":")
            prio = prio.strip()
            if prio and not (prio.isascii() and prio.lstrip("-").isdigit() and len(prio) < 10):
                raise r.fail(f"{where}.nodes", f"bad priority in {str(item)[:60]!r} (expected node:number)")
            priorities.append((node_name, int(prio) if prio else 0))
    return HaRule(
        name=name,
        type=rule_type,
        vmids=vmids,
        affinity=r.choice(entry, "affinity", where, ("positive", "negative"), "positive"),
        strict=r.boolean(entry, "strict", where, rule_type == "resource-affinity"),
        node_priorities=tuple(priorities),
        disabled=r.boolean(entry, "disable", where, False),
    )


def _items(value: Any) -> list | None:
    """A comma-separated string or a list as a list of items; None for anything else."""
    if isinstance(value, str):
        return value.split(",")
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


def _parse_ha_resources(r: _Reader, value: Any, where: str) -> tuple[int, ...]:
    if not value:
        raise r.fail(where, "is required (e.g. \"vm:101,ct:102\")")
    items = _items(value)
    if items is None:
        raise r.fail(where, "expected a list or \"vm:101,ct:102\"")
    vmids = []
    for item in items:
        text = str(item).strip()
        _, _, number = text.rpartition(":")
        if not (number.isascii() and number.isdigit() and 0 < len(number) < 12 and 0 < int(number) <= MAX_VMID):
            raise r.fail(where, f"cannot read resource {text[:60]!r} (expected vm:ID or ct:ID)")
        vmids.append(int(number))
    return tuple(vmids)


def _fill_node_usage_defaults(nodes: list[dict], guests: list[dict], node_index: Mapping[str, int]) -> None:
    """A node's reported usage defaults to the sum over the guests on it (no host overhead)."""
    for n, node in enumerate(nodes):
        on_node = [g for g in guests if g["node"] == n]
        running = [g for g in on_node if g["running"]]
        if node["mem_used_mib"] < 0:
            node["mem_used_mib"] = sum(g["mem_used_mib"] for g in running)
        if node["cpu_used_milli"] < 0:
            node["cpu_used_milli"] = sum(g["cpu_used_milli"] for g in running)
        if node["disk_used_mib"] < 0:
            node["disk_used_mib"] = sum(g["disk_used_mib"] for g in on_node if g["local_disk"])


def _psi_stack(entries: list[dict]) -> np.ndarray:
    blank = np.zeros((len(PSI_RESOURCES), len(PSI_FIGURES)), dtype=np.int64)
    rows = [e["psi"] if e.get("psi") is not None else blank for e in entries]
    return _readonly_array(np.stack(rows) if rows else np.zeros((0, *blank.shape), dtype=np.int64))


def _build(name: str, nodes: list[dict], guests: list[dict], ha_rules: tuple[HaRule, ...], source: str,
           crs: tuple[tuple[str, str], ...] = ()) -> Cluster:
    i64 = np.int64
    return Cluster(
        name=name,
        node_names=tuple(n["name"] for n in nodes),
        node_online=_readonly((n["online"] for n in nodes), bool),
        node_maintenance=_readonly((n["maintenance"] for n in nodes), bool),
        node_cpu_milli=_readonly((n["cpu_milli"] for n in nodes), i64),
        node_mem_mib=_readonly((n["mem_mib"] for n in nodes), i64),
        node_disk_mib=_readonly((n["disk_mib"] for n in nodes), i64),
        node_cpu_used_milli=_readonly((n["cpu_used_milli"] for n in nodes), i64),
        node_mem_used_mib=_readonly((n["mem_used_mib"] for n in nodes), i64),
        node_disk_used_mib=_readonly((n["disk_used_mib"] for n in nodes), i64),
        guest_vmid=_readonly((g["vmid"] for g in guests), i64),
        guest_names=tuple(g["name"] for g in guests),
        guest_is_ct=_readonly((g["is_ct"] for g in guests), bool),
        guest_node=_readonly((g["node"] for g in guests), i64),
        guest_running=_readonly((g["running"] for g in guests), bool),
        guest_cpu_milli=_readonly((g["cpu_milli"] for g in guests), i64),
        guest_cpu_used_milli=_readonly((g["cpu_used_milli"] for g in guests), i64),
        guest_mem_mib=_readonly((g["mem_mib"] for g in guests), i64),
        guest_mem_used_mib=_readonly((g["mem_used_mib"] for g in guests), i64),
        guest_disk_mib=_readonly((g["disk_mib"] for g in guests), i64),
        guest_disk_used_mib=_readonly((g["disk_used_mib"] for g in guests), i64),
        guest_local_disk=_readonly((g["local_disk"] for g in guests), bool),
        guest_tags=tuple(g["tags"] for g in guests),
        guest_pool=tuple(g["pool"] for g in guests),
        guest_ha=_readonly((g["ha"] for g in guests), bool),
        guest_lock=tuple(g["lock"] for g in guests),
        guest_template=_readonly((g["template"] for g in guests), bool),
        ha_rules=ha_rules,
        source=source,
        node_psi=_psi_stack(nodes),
        node_psi_known=_readonly((n.get("psi") is not None for n in nodes), bool),
        guest_psi=_psi_stack(guests),
        crs=crs,
        guest_auto_rebalance=_readonly((g["auto_rebalance"] for g in guests), bool),
    )


# ----------------------------------------------------------------------------- saving


def _mib_text(mib: int) -> str:
    if mib % (1024 * 1024) == 0 and mib:
        return f"{mib // (1024 * 1024)}T"
    if mib % 1024 == 0 and mib:
        return f"{mib // 1024}G"
    return f"{mib}M"


def _cores(milli: int) -> float | int:
    return milli // 1000 if milli % 1000 == 0 else round(milli / 1000, 3)


def _pressure_dict(values: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for r, resource in enumerate(PSI_RESOURCES):
        figures = {f: round(int(values[r, i]) / PSI_SCALE, 2) for i, f in enumerate(PSI_FIGURES)}
        if figures["spikes"] == figures["full"]:
            del figures["spikes"]  # the default
        out[resource] = figures
    return out


def cluster_to_dict(cluster: Cluster) -> dict:
    """The model-file mapping (format v1) of a Cluster; `cluster_from_dict` reads it back identically."""
    c = cluster
    nodes = []
    for n, name in enumerate(c.node_names):
        entry = {
            "name": name,
            "cpus": _cores(int(c.node_cpu_milli[n])),
            "memory": _mib_text(int(c.node_mem_mib[n])),
            "disk": _mib_text(int(c.node_disk_mib[n])),
            "memory_used": _mib_text(int(c.node_mem_used_mib[n])),
            "cpu_usage": _cores(int(c.node_cpu_used_milli[n])),
            "disk_used": _mib_text(int(c.node_disk_used_mib[n])),
            "status": "online" if c.node_online[n] else "offline",
        }
        if c.node_maintenance[n]:
            entry["maintenance"] = True
        if c.node_psi_known[n]:
            entry["pressure"] = _pressure_dict(c.node_psi[n])
        nodes.append(entry)
    guests = []
    for g in range(c.n_guests):
        entry: dict[str, Any] = {
            "vmid": int(c.guest_vmid[g]),
            "name": c.guest_names[g],
            "type": c.guest_type(g),
            "node": c.node_names[int(c.guest_node[g])],
            "status": "running" if c.guest_running[g] else "stopped",
            "cpus": _cores(int(c.guest_cpu_milli[g])),
            "cpu_usage": _cores(int(c.guest_cpu_used_milli[g])),
            "memory": _mib_text(int(c.guest_mem_mib[g])),
            "memory_used": _mib_text(int(c.guest_mem_used_mib[g])),
            "disk": _mib_text(int(c.guest_disk_mib[g])),
            "disk_used": _mib_text(int(c.guest_disk_used_mib[g])),
            "local_disk": bool(c.guest_local_disk[g]),
        }
        if c.guest_tags[g]:
            entry["tags"] = list(c.guest_tags[g])
        if c.guest_pool[g]:
            entry["pool"] = c.guest_pool[g]
        if c.guest_ha[g]:
            entry["ha"] = True
        if c.guest_lock[g]:
            entry["lock"] = c.guest_lock[g]
        if c.guest_template[g]:
            entry["template"] = True
        if c.guest_psi[g].any():
            entry["pressure"] = _pressure_dict(c.guest_psi[g])
        if not c.guest_auto_rebalance[g]:
            entry["auto_rebalance"] = False
        guests.append(entry)
    data: dict[str, Any] = {"version": MODEL_VERSION, "cluster": c.name, "nodes": nodes, "guests": guests}
    if c.crs:
        data["crs"] = dict(c.crs)
    if c.ha_rules:
        data["ha_rules"] = [_ha_rule_to_dict(rule, c) for rule in c.ha_rules]
    return data


def _ha_rule_to_dict(rule: HaRule, cluster: Cluster) -> dict:
    def resource(vmid: int) -> str:
        g = cluster.guest_index(vmid)
        kind = "ct" if g is not None and cluster.guest_is_ct[g] else "vm"
        return f"{kind}:{vmid}"

    entry: dict[str, Any] = {
        "rule": rule.name,
        "type": rule.type,
        "resources": ",".join(resource(v) for v in rule.vmids),
        "strict": rule.strict,
    }
    if rule.type == "resource-affinity" or rule.affinity == "negative":
        entry["affinity"] = rule.affinity
    if rule.type == "node-affinity":
        entry["nodes"] = ",".join(f"{n}:{p}" if p else n for n, p in rule.node_priorities)
    if rule.disabled:
        entry["disable"] = True
    return entry


def model_text(cluster: Cluster, as_json: bool = False) -> str:
    """The text of a model file: YAML, or JSON."""
    data = cluster_to_dict(cluster)
    if as_json:
        return dumps(data, indent=2) + "\n"  # strict: never NaN or Infinity
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)


def save_model(cluster: Cluster, path: str | Path) -> None:
    """Write a model file (YAML, or JSON by extension)."""
    path = Path(path)
    path.write_text(model_text(cluster, as_json=path.suffix.lower() == ".json"), encoding="utf-8")


# ----------------------------------------------------------------------------- what-if transforms


def with_placement(cluster: Cluster, placement: np.ndarray) -> Cluster:
    """The same cluster with guests on the nodes of `placement` (int[g]); node usage follows the guests."""
    placement = np.asarray(placement, dtype=np.int64)
    moved_from = cluster.guest_node
    n_nodes = cluster.n_nodes
    running = cluster.guest_running
    local = cluster.guest_local_disk

    def shift(node_used: np.ndarray, guest_used: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = np.bincount(placement[mask], weights=guest_used[mask], minlength=n_nodes)
        back = np.bincount(moved_from[mask], weights=guest_used[mask], minlength=n_nodes)
        return _readonly(node_used + out.astype(np.int64) - back.astype(np.int64), np.int64)

    return dataclasses.replace(
        cluster,
        guest_node=_readonly(placement, np.int64),
        node_mem_used_mib=shift(cluster.node_mem_used_mib, cluster.guest_mem_used_mib, running),
        node_cpu_used_milli=shift(cluster.node_cpu_used_milli, cluster.guest_cpu_used_milli, running),
        node_disk_used_mib=shift(cluster.node_disk_used_mib, cluster.guest_disk_used_mib, local),
    )


def without_nodes(cluster: Cluster, names: Iterable[str]) -> Cluster:
    """Drop the named nodes and every guest on them (ProxLB's `ignore_nodes`)."""
    drop = {cluster.node_index(n) for n in names} - {None}
    if not drop:
        return cluster
    keep_nodes = [n for n in range(cluster.n_nodes) if n not in drop]
    remap = {old: new for new, old in enumerate(keep_nodes)}
    keep_guests = np.array([int(n) not in drop for n in cluster.guest_node], dtype=bool)
    return _subset(cluster, keep_nodes, keep_guests, remap)


def _subset(cluster: Cluster, keep_nodes: list[int], keep_guests: np.ndarray, remap: Mapping[int, int]) -> Cluster:
    gi = np.flatnonzero(keep_guests)
    ni = np.array(keep_nodes, dtype=np.int64)

    def nodes_arr(a: np.ndarray) -> np.ndarray:
        return _readonly(a[ni], a.dtype)

    def guests_arr(a: np.ndarray) -> np.ndarray:
        return _readonly(a[gi], a.dtype)

    def guests_tuple(t: tuple) -> tuple:
        return tuple(t[i] for i in gi)

    kept_vmids = {int(v) for v in cluster.guest_vmid[gi]}
    return dataclasses.replace(
        cluster,
        node_names=tuple(cluster.node_names[i] for i in keep_nodes),
        node_online=nodes_arr(cluster.node_online),
        node_maintenance=nodes_arr(cluster.node_maintenance),
        node_cpu_milli=nodes_arr(cluster.node_cpu_milli),
        node_mem_mib=nodes_arr(cluster.node_mem_mib),
        node_disk_mib=nodes_arr(cluster.node_disk_mib),
        node_cpu_used_milli=nodes_arr(cluster.node_cpu_used_milli),
        node_mem_used_mib=nodes_arr(cluster.node_mem_used_mib),
        node_disk_used_mib=nodes_arr(cluster.node_disk_used_mib),
        node_psi=nodes_arr(cluster.node_psi),
        node_psi_known=nodes_arr(cluster.node_psi_known),
        guest_psi=guests_arr(cluster.guest_psi),
        guest_auto_rebalance=guests_arr(cluster.guest_auto_rebalance),
        guest_vmid=guests_arr(cluster.guest_vmid),
        guest_names=guests_tuple(cluster.guest_names),
        guest_is_ct=guests_arr(cluster.guest_is_ct),
        guest_node=_readonly(np.array([remap.get(n, -1) for n in range(cluster.n_nodes)], dtype=np.int64)[
            cluster.guest_node[gi]], np.int64),
        guest_running=guests_arr(cluster.guest_running),
        guest_cpu_milli=guests_arr(cluster.guest_cpu_milli),
        guest_cpu_used_milli=guests_arr(cluster.guest_cpu_used_milli),
        guest_mem_mib=guests_arr(cluster.guest_mem_mib),
        guest_mem_used_mib=guests_arr(cluster.guest_mem_used_mib),
        guest_disk_mib=guests_arr(cluster.guest_disk_mib),
        guest_disk_used_mib=guests_arr(cluster.guest_disk_used_mib),
        guest_local_disk=guests_arr(cluster.guest_local_disk),
        guest_tags=guests_tuple(cluster.guest_tags),
        guest_pool=guests_tuple(cluster.guest_pool),
        guest_ha=guests_arr(cluster.guest_ha),
        guest_lock=guests_tuple(cluster.guest_lock),
        guest_template=guests_arr(cluster.guest_template),
        ha_rules=tuple(
            dataclasses.replace(rule, vmids=tuple(v for v in rule.vmids if v in kept_vmids))
            for rule in cluster.ha_rules
        ),
    )


def with_guest(cluster: Cluster, guest: Mapping[str, Any]) -> Cluster:
    """The cluster plus one guest (a model-file guest entry, last index); its node's usage includes it."""
    data = cluster_to_dict(cluster)
    data["guests"] = list(data["guests"]) + [dict(guest)]
    grown = cluster_from_dict(data, source=cluster.source or "<what-if>")
    g, n = grown.n_guests - 1, int(grown.guest_node[-1])

    def bump(node_used: np.ndarray, amount: int) -> np.ndarray:
        out = node_used.copy()
        out[n] += amount
        return _readonly(out, np.int64)

    running = bool(grown.guest_running[g])
    return dataclasses.replace(
        grown,
        node_mem_used_mib=bump(grown.node_mem_used_mib, int(grown.guest_mem_used_mib[g]) if running else 0),
        node_cpu_used_milli=bump(grown.node_cpu_used_milli, int(grown.guest_cpu_used_milli[g]) if running else 0),
        node_disk_used_mib=bump(grown.node_disk_used_mib,
                                int(grown.guest_disk_used_mib[g]) if grown.guest_local_disk[g] else 0),
    )


def anonymized(cluster: Cluster) -> Cluster:
    """The same cluster with node, guest, pool, tag-group and HA rule names replaced (for bug reports).

    Rule semantics survive: plb_* tags keep their prefix with a neutral group name, pins follow the
    renamed nodes, HA rules keep their resources and node priorities.
    """
    data = cluster_to_dict(cluster)
    node_map = {name: f"node{i + 1}" for i, name in enumerate(cluster.node_names)}
    lower_map = {k.lower(): v for k, v in node_map.items()}
    pools: dict[str, str] = {}
    groups: dict[str, str] = {}

    def tag(t: str) -> str:
        for prefix in ("plb_anti_affinity_", "plb_affinity_", "plb_ignore_"):
            if t.startswith(prefix):
                return prefix + groups.setdefault(t, f"g{len(groups) + 1}")
        if t.startswith("plb_pin_"):
            return "plb_pin_" + lower_map.get(t[len("plb_pin_"):], "unknown")
        if t == "plb_ignore":
            return t
        return groups.setdefault(t, f"tag{len(groups) + 1}")

    for entry in data["nodes"]:
        entry["name"] = node_map[entry["name"]]
    for entry in data["guests"]:
        entry["node"] = node_map[entry["node"]]
        entry["name"] = f"{entry['type']}{entry['vmid']}"
        if "tags" in entry:
            entry["tags"] = sorted(tag(t) for t in entry["tags"])
        if "pool" in entry:
            entry["pool"] = pools.setdefault(entry["pool"], f"pool{len(pools) + 1}")
    for i, rule in enumerate(data.get("ha_rules", [])):
        rule["rule"] = f"rule{i + 1}"
        if "nodes" in rule:
            parts = [p.partition(":") for p in rule["nodes"].split(",") if p]
            rule["nodes"] = ",".join(node_map.get(n, n) + (sep + prio) for n, sep, prio in parts)
    data["cluster"] = "anonymized"
    return cluster_from_dict(data, source="<anonymized>")


# ----------------------------------------------------------------------------- capacity what-if transforms
#
# Each returns a new Cluster and leaves its argument as it was; proxlb_opt/whatif.py builds every
# capacity scenario from them and plans it with the same core and checker as a real plan.

#: Tags that only keep the balancer's hands off a guest (plb_ignore, plb_ignore_<x>): PVE HA ignores them.
_BALANCER_ONLY_PREFIX = "plb_ignore"


def without_guests(cluster: Cluster, drop: np.ndarray) -> Cluster:
    """The cluster without the guests where drop[g] is true; node usage loses what they used."""
    drop = np.asarray(drop, dtype=bool)
    if not drop.any():
        return cluster
    running, local, node = cluster.guest_running, cluster.guest_local_disk, cluster.guest_node

    def less(node_used: np.ndarray, guest_used: np.ndarray, mask: np.ndarray) -> np.ndarray:
        gone = np.bincount(node[mask & drop], weights=guest_used[mask & drop], minlength=cluster.n_nodes)
        return _readonly(np.maximum(0, node_used - gone.astype(np.int64)), np.int64)

    lighter = dataclasses.replace(
        cluster,
        node_mem_used_mib=less(cluster.node_mem_used_mib, cluster.guest_mem_used_mib, running),
        node_cpu_used_milli=less(cluster.node_cpu_used_milli, cluster.guest_cpu_used_milli, running),
        node_disk_used_mib=less(cluster.node_disk_used_mib, cluster.guest_disk_used_mib, local),
    )
    keep_nodes = list(range(cluster.n_nodes))
    return _subset(lighter, keep_nodes, ~drop, {n: n for n in keep_nodes})


def with_failed(cluster: Cluster, nodes: Iterable[str], restart: np.ndarray | None = None,
                restart_memory: str = "assigned") -> Cluster:
    """The cluster right after `nodes` failed, before anything restarted.

    The failed nodes are marked in maintenance: they receive nothing and every guest that restarts must
    leave them (not "offline": in a model an offline node's guests cannot move at all). Guests on a
    failed node with restart[g] false (default: every guest there restarts) are gone from the cluster:
    they wait for their node. Restarting guests lose what only keeps a balancer's hands off them (a
    lock, plb_ignore tags): HA recovery restarts them regardless. With `restart_memory="assigned"` a
    running restarted guest counts max(assigned, used) memory as used: a guest that boots again may
    touch all of its memory, and PVE's static scheduler counts the assigned size too. "used" keeps
    the figure measured before the failure.
    """
    if restart_memory not in ("assigned", "used"):
        raise ValueError(f"restart_memory must be 'assigned' or 'used', got {restart_memory!r}")
    failed = sorted({cluster.node_index(n) for n in nodes} - {None})
    on_failed = np.isin(cluster.guest_node, failed)
    restart = on_failed.copy() if restart is None else np.asarray(restart, dtype=bool) & on_failed
    maintenance = np.array(cluster.node_maintenance, dtype=bool)
    maintenance[failed] = True
    mem_used = np.array(cluster.guest_mem_used_mib, dtype=np.int64)
    node_mem_used = np.array(cluster.node_mem_used_mib, dtype=np.int64)
    if restart_memory == "assigned":
        grows = restart & cluster.guest_running
        bigger = np.maximum(mem_used, cluster.guest_mem_mib)
        np.add.at(node_mem_used, cluster.guest_node[grows], (bigger - mem_used)[grows])
        mem_used = np.where(grows, bigger, mem_used)
    tags, locks = list(cluster.guest_tags), list(cluster.guest_lock)
    for g in np.flatnonzero(restart):
        tags[g] = tuple(t for t in tags[g] if not t.startswith(_BALANCER_ONLY_PREFIX))
        locks[g] = None
    failed_cluster = dataclasses.replace(
        cluster, node_maintenance=_readonly(maintenance, bool), guest_mem_used_mib=_readonly(mem_used, np.int64),
        node_mem_used_mib=_readonly(node_mem_used, np.int64), guest_tags=tuple(tags), guest_lock=tuple(locks))
    return without_guests(failed_cluster, on_failed & ~restart)


def with_added_guests(cluster: Cluster, guests: Iterable[Mapping[str, Any]]) -> Cluster:
    """The cluster plus new guests (model-file guest entries, appended in order); their nodes' usage
    includes them. Array based: fast on large clusters (with_guest re-reads the whole model)."""
    entries = list(guests)
    if not entries:
        return cluster
    reader = _Reader(cluster.source or "<what-if>")
    node_index = {name: i for i, name in enumerate(cluster.node_names)}
    new = [_read_guest(reader, entry, cluster.n_guests + i, node_index) for i, entry in enumerate(entries)]
    taken = {int(v) for v in cluster.guest_vmid}
    for i, g in enumerate(new):
        if g["vmid"] in taken:
            raise reader.fail(f"new guest {i}", f"vmid {g['vmid']} is already in the cluster")
        taken.add(g["vmid"])

    def col(existing: np.ndarray, key: str) -> np.ndarray:
        return _readonly(np.concatenate([np.asarray(existing), np.array([g[key] for g in new], dtype=existing.dtype)]),
                         existing.dtype)

    def bump(node_used: np.ndarray, key: str, mask_key: str) -> np.ndarray:
        out = np.array(node_used, dtype=np.int64)
        for g in new:
            if g[mask_key]:
                out[g["node"]] += g[key]
        return _readonly(out, np.int64)

    return dataclasses.replace(
        cluster,
        node_mem_used_mib=bump(cluster.node_mem_used_mib, "mem_used_mib", "running"),
        node_cpu_used_milli=bump(cluster.node_cpu_used_milli, "cpu_used_milli", "running"),
        node_disk_used_mib=bump(cluster.node_disk_used_mib, "disk_used_mib", "local_disk"),
        guest_vmid=col(cluster.guest_vmid, "vmid"),
        guest_names=cluster.guest_names + tuple(g["name"] for g in new),
        guest_is_ct=col(cluster.guest_is_ct, "is_ct"),
        guest_node=col(cluster.guest_node, "node"),
        guest_running=col(cluster.guest_running, "running"),
        guest_cpu_milli=col(cluster.guest_cpu_milli, "cpu_milli"),
        guest_cpu_used_milli=col(cluster.guest_cpu_used_milli, "cpu_used_milli"),
        guest_mem_mib=col(cluster.guest_mem_mib, "mem_mib"),
        guest_mem_used_mib=col(cluster.guest_mem_used_mib, "mem_used_mib"),
        guest_disk_mib=col(cluster.guest_disk_mib, "disk_mib"),
        guest_disk_used_mib=col(cluster.guest_disk_used_mib, "disk_used_mib"),
        guest_local_disk=col(cluster.guest_local_disk, "local_disk"),
        guest_tags=cluster.guest_tags + tuple(g["tags"] for g in new),
        guest_pool=cluster.guest_pool + tuple(g["pool"] for g in new),
        guest_ha=col(cluster.guest_ha, "ha"),
        guest_lock=cluster.guest_lock + tuple(g["lock"] for g in new),
        guest_template=col(cluster.guest_template, "template"),
        guest_psi=_pad_rows(cluster.guest_psi, len(new)),  # no pressure figures for guests that do not exist yet
        guest_auto_rebalance=col(cluster.guest_auto_rebalance, "auto_rebalance"),
    )


def _pad_rows(array: np.ndarray, count: int, value: Any = 0) -> np.ndarray:
    """`array` with `count` more rows of `value` (per-guest or per-node figures of added guests or nodes)."""
    extra = np.full((count, *array.shape[1:]), value, dtype=array.dtype)
    return _readonly(np.concatenate([np.asarray(array), extra]), array.dtype)


def with_added_node(cluster: Cluster, node: Mapping[str, Any]) -> Cluster:
    """The cluster plus one empty, online node (a model-file node entry), appended last."""
    reader = _Reader(cluster.source or "<what-if>")
    entry = _read_node(reader, {k: v for k, v in node.items()}, cluster.n_nodes)
    if entry["name"] in cluster.node_names:
        raise reader.fail("new node", f"a node named {entry['name']!r} is already in the cluster")
    for key in ("mem_used_mib", "cpu_used_milli", "disk_used_mib"):
        entry[key] = max(0, entry[key])

    def col(existing: np.ndarray, value: Any) -> np.ndarray:
        return _readonly(np.concatenate([np.asarray(existing), np.array([value], dtype=existing.dtype)]), existing.dtype)

    return dataclasses.replace(
        cluster,
        node_names=cluster.node_names + (entry["name"],),
        node_online=col(cluster.node_online, entry["online"]),
        node_maintenance=col(cluster.node_maintenance, entry["maintenance"]),
        node_cpu_milli=col(cluster.node_cpu_milli, entry["cpu_milli"]),
        node_mem_mib=col(cluster.node_mem_mib, entry["mem_mib"]),
        node_disk_mib=col(cluster.node_disk_mib, entry["disk_mib"]),
        node_cpu_used_milli=col(cluster.node_cpu_used_milli, entry["cpu_used_milli"]),
        node_mem_used_mib=col(cluster.node_mem_used_mib, entry["mem_used_mib"]),
        node_disk_used_mib=col(cluster.node_disk_used_mib, entry["disk_used_mib"]),
        node_psi=_pad_rows(cluster.node_psi, 1),
        node_psi_known=_pad_rows(cluster.node_psi_known, 1, False),
    )


def with_growth(cluster: Cluster, memory: float = 1.0, cpu: float = 1.0, disk: float = 1.0) -> Cluster:
    """Every guest's used memory, CPU and local disk scaled by the factors (rounded to whole units);
    node usage follows, host overhead stays. Assigned sizes do not change: a guest whose grown use
    passes its assigned size counts the grown figure (it would need resizing)."""
    for name, factor in (("memory", memory), ("cpu", cpu), ("disk", disk)):
        if not np.isfinite(factor) or factor < 0:
            raise ValueError(f"growth factor for {name} must be a non-negative number, got {factor!r}")

    def grow(guest_used: np.ndarray, node_used: np.ndarray, factor: float, mask: np.ndarray):
        grown = np.rint(np.asarray(guest_used, dtype=float) * factor).astype(np.int64)
        delta = np.bincount(cluster.guest_node[mask], weights=(grown - guest_used)[mask], minlength=cluster.n_nodes)
        return _readonly(grown, np.int64), _readonly(np.maximum(0, node_used + delta.astype(np.int64)), np.int64)

    mem, node_mem = grow(cluster.guest_mem_used_mib, cluster.node_mem_used_mib, memory, cluster.guest_running)
    cpus, node_cpu = grow(cluster.guest_cpu_used_milli, cluster.node_cpu_used_milli, cpu, cluster.guest_running)
    disks, node_disk = grow(cluster.guest_disk_used_mib, cluster.node_disk_used_mib, disk, cluster.guest_local_disk)
    return dataclasses.replace(cluster, guest_mem_used_mib=mem, node_mem_used_mib=node_mem, guest_cpu_used_milli=cpus,
                               node_cpu_used_milli=node_cpu, guest_disk_used_mib=disks, node_disk_used_mib=node_disk)
