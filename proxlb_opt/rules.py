"""Rule declarations and where they come from: ProxLB's plb_* tags, pools, PVE 9 HA rules, config.

`derive_rules(cluster, settings)` turns a Cluster and Settings into a RuleSet: the declared rules
(Affinity, AntiAffinity, Pin, NodePreference, Ignore, Maintenance) plus what follows from them for
every guest: may it move, where may it go, must it move. The CP-SAT encoders, the feasibility module
and the independent checker all read the same RuleSet; none re-derives it. Rules that only unmovable
guests break (a locked VM split from its affinity partner) cannot be repaired by any plan: they are
relaxed here, with a warning, so the rest of the cluster can still be planned. An affinity group
with one unmovable member is anchored: its other members may only run on that member's node.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from proxlb_opt.cluster import Cluster
from proxlb_opt.config import Settings
from proxlb_opt.errors import InfeasibleError, InputError, ModelError

AFFINITY_PREFIX = "plb_affinity_"
ANTI_AFFINITY_PREFIX = "plb_anti_affinity_"
IGNORE_PREFIX = "plb_ignore"
PIN_PREFIX = "plb_pin_"


@dataclass(frozen=True)
class Affinity:
    """All members on one node."""

    name: str
    members: tuple[int, ...]  # guest indices
    source: str


@dataclass(frozen=True)
class AntiAffinity:
    """Members on pairwise different nodes; with more members than eligible nodes, ≤ per_node_cap on each."""

    name: str
    members: tuple[int, ...]
    source: str
    per_node_cap: int = 1


@dataclass(frozen=True)
class Pin:
    """The guest may only run on `nodes`."""

    guest: int
    nodes: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class NodePreference:
    """Soft: the guest prefers nodes with higher priority, nodes not listed least; or, with `avoid`
    (a non-strict negative node-affinity rule), it prefers any node but the listed ones."""

    guest: int
    priorities: tuple[tuple[int, int], ...]  # (node index, priority)
    source: str
    avoid: bool = False

    def penalty(self, node: int) -> int:
        """0 on a best node, +1 per priority step below it, +1 more off the list (avoid: 1 on a listed node)."""
        prios = dict(self.priorities)
        if self.avoid:
            return int(node in prios)
        top = max(prios.values(), default=0)
        return (top - prios[node]) if node in prios else (top - min(prios.values(), default=0) + 1)

    @property
    def worst(self) -> int:
        """The largest penalty any node can give."""
        if self.avoid:
            return 1
        prios = [p for _, p in self.priorities] or [0]
        return max(prios) - min(prios) + 1


@dataclass(frozen=True)
class Ignore:
    """The guest never moves (still counts as load)."""

    guest: int
    source: str


@dataclass(frozen=True)
class Maintenance:
    """The node never receives a guest; every movable guest must leave it."""

    node: int
    source: str


@dataclass(frozen=True, eq=False)
class RuleSet:
    affinities: tuple[Affinity, ...]
    anti_affinities: tuple[AntiAffinity, ...]
    pins: tuple[Pin, ...]
    preferences: tuple[NodePreference, ...]
    ignores: tuple[Ignore, ...]
    maintenance: tuple[Maintenance, ...]
    eligible: np.ndarray  # bool[n]: may receive guests and counts in the spread
    movable: np.ndarray  # bool[g]
    allowed: np.ndarray  # bool[g, n]: where the guest may be after the plan (only its node when unmovable)
    mandatory: np.ndarray  # bool[g]: its current node is not allowed, it must move
    warnings: tuple[str, ...] = field(default=())

    def pin_sources(self, g: int) -> list[str]:
        return [p.source for p in self.pins if p.guest == g]


# ----------------------------------------------------------------------------- derivation


def derive_rules(cluster: Cluster, settings: Settings, check_domains: bool = True) -> RuleSet:
    """All rules of the cluster and config, validated; ModelError/InfeasibleError for unusable ones.

    With `check_domains=False` a movable guest with no node it may run on is not an error: its row of
    `allowed` is empty (a capacity what-if counts such a guest as one that finds no home).
    """
    c = cluster
    warnings: list[str] = []
    lower_names = {name.lower(): n for n, name in enumerate(c.node_names)}

    maintenance = _maintenance(c, settings, lower_names, warnings)
    maintenance_mask = np.zeros(c.n_nodes, dtype=bool)
    for m in maintenance:
        maintenance_mask[m.node] = True
    eligible = np.asarray(c.node_online, dtype=bool) & ~maintenance_mask

    ignores = _ignores(c, settings)
    already = {i.guest for i in ignores}
    ignores += [i for i in _left_to_pve(c, settings, warnings) if i.guest not in already]
    _kept_by_migrate_options(ignores, warnings)
    movable = np.ones(c.n_guests, dtype=bool)
    for ig in ignores:
        movable[ig.guest] = False

    pins = _tag_pins(c, lower_names) + _ha_pins(c, lower_names, warnings) + _pool_pins(c, settings, lower_names, warnings)
    preferences = _ha_preferences(c, lower_names, warnings) + _pool_preferences(c, settings, lower_names, warnings)
    affinities = _affinities(c, settings)
    anti = _anti_affinities(c, settings)

    for rule in c.ha_rules:
        missing = [v for v in rule.vmids if c.guest_index(v) is None]
        if missing and not rule.disabled:
            warnings.append(f"HA rule {rule.name} names guest(s) {', '.join(map(str, missing))} not in the cluster; "
                            f"the rule applies to the others")
    allowed = _allowed(c, eligible, movable, pins)
    affinities = _relax_affinities(c, affinities, movable, warnings)
    anchors = _anchor_affinities(c, affinities, movable, allowed)
    anti = _cap_anti_affinities(c, anti, movable, eligible, warnings)

    current = np.asarray(c.guest_node)
    mandatory = movable & ~allowed[np.arange(c.n_guests), current] if c.n_guests else np.zeros(0, dtype=bool)
    if check_domains:
        _check_domains(c, allowed, movable, pins + anchors, maintenance_mask)
    for g in np.flatnonzero(~movable & np.isin(current, np.flatnonzero(maintenance_mask))):
        warnings.append(f"{c.guest_label(g)} stays on maintenance node {c.node_names[current[g]]}: it cannot be moved "
                        f"({_ignore_reason(ignores, g)})")
    for a in (allowed, movable, mandatory, eligible):
        a.setflags(write=False)
    return RuleSet(
        affinities=tuple(affinities), anti_affinities=tuple(anti), pins=tuple(pins), preferences=tuple(preferences),
        ignores=tuple(ignores), maintenance=tuple(maintenance), eligible=eligible, movable=movable,
        allowed=allowed, mandatory=mandatory, warnings=tuple(warnings),
    )


def _maintenance(c: Cluster, settings: Settings, lower_names: dict[str, int], warnings: list[str]) -> list[Maintenance]:
    found: dict[int, str] = {}
    for n in np.flatnonzero(c.node_maintenance):
        found[int(n)] = "node maintenance mode (HA)"
    for name in settings.maintenance_nodes:
        n = lower_names.get(name.lower())
        if n is None:
            warnings.append(f"maintenance node {name!r} is not in the cluster (or ignored); nothing to drain there")
            continue
        found.setdefault(n, "config proxmox_cluster.maintenance_nodes")
    if settings.maintenance_schedule is not None:
        for name in settings.maintenance_schedule.nodes:
            if name.lower() not in lower_names:
                warnings.append(f"proxmox_cluster.maintenance_nodes_schedule names node {name!r}, which is not in "
                                f"the cluster (or ignored); its windows have no effect")
    for name, window in settings.scheduled_maintenance:
        n = lower_names.get(name.lower())
        if n is not None:
            found.setdefault(n, f"config proxmox_cluster.maintenance_nodes_schedule ({window})")
    return [Maintenance(node=n, source=src) for n, src in sorted(found.items())]


def _ignores(c: Cluster, settings: Settings) -> list[Ignore]:
    by_name = {name.lower() for name in settings.ignore_guests}
    reasons: list[Ignore] = []
    for g in range(c.n_guests):
        reason = None
        if not c.node_online[c.guest_node[g]]:
            reason = f"its node {c.node_names[c.guest_node[g]]} is offline"
        elif c.guest_template[g]:
            reason = "template"
        elif c.guest_lock[g]:
            reason = f"locked ({c.guest_lock[g]})"
        elif any(t.startswith(IGNORE_PREFIX) for t in c.guest_tags[g]):
            tag = next(t for t in c.guest_tags[g] if t.startswith(IGNORE_PREFIX))
            reason = f"tag {tag}"
        elif c.guest_names[g].lower() in by_name or str(int(c.guest_vmid[g])) in by_name:
            reason = "config balancing.ignore_guests"
        elif c.guest_type(g) not in settings.balance_types:
            reason = f"type {c.guest_type(g)} not in balancing.balance_types"
        elif c.guest_running[g] and not c.guest_is_ct[g] and not settings.live:
            reason = "balancing.live is false and PVE moves a running VM only online"
        elif c.guest_running[g] and not c.guest_is_ct[g] and c.guest_local_disk[g] and not settings.with_local_disks:
            reason = "balancing.with_local_disks is false and PVE moves a running VM's local disks only with it"
        if reason:
            reasons.append(Ignore(guest=g, source=reason))
    return reasons


def _kept_by_migrate_options(ignores: list[Ignore], warnings: list[str]) -> None:
    """One line per migrate option that keeps running VMs in place (ProxLB would send the migrations and
    have PVE refuse them)."""
    for key in ("balancing.live", "balancing.with_local_disks"):
        count = sum(1 for i in ignores if i.source.startswith(key))
        if count:
            warnings.append(f"{key} is false: {count} running VM(s) stay where they are (PVE would refuse to "
                            f"migrate them with these options)")


def unknown_config_names(cluster: Cluster, settings: Settings) -> list[str]:
    """Warnings for names in the config that match nothing in the cluster: ignore_nodes, ignore_guests, pools.

    `cluster` is the whole cluster, before `ignore_nodes` are removed. (Maintenance nodes and schedules are
    checked in `derive_rules`, against the nodes that remain.)
    """
    out = []
    for name in settings.ignore_nodes:  # matched exactly, as ProxLB and `without_nodes` do
        if cluster.node_index(name) is None:
            out.append(f"proxmox_cluster.ignore_nodes names {name!r}, which is not a node of the cluster")
    guests = {name.lower() for name in cluster.guest_names} | {str(int(v)) for v in cluster.guest_vmid}
    for name in settings.ignore_guests:
        if name.lower() not in guests:
            out.append(f"balancing.ignore_guests names {name!r}, which matches no guest of the cluster")
    pools = {p for p in cluster.guest_pool if p}
    for pool in sorted(settings.pools):
        if pool not in pools:
            out.append(f"balancing.pools.{pool}: no guest of the cluster is in pool {pool!r}; the entry has no effect")
    return out


def _left_to_pve(c: Cluster, settings: Settings, warnings: list[str]) -> list[Ignore]:
    """PVE 9.2 rebalances HA resources itself (`crs: ha-auto-rebalance`): two balancers moving the same guests
    would move them back and forth. `optimizer.pve_rebalancer: leave` leaves those guests to PVE (fixed load
    here); `refuse` stops with a one-line error."""
    if not c.pve_rebalances:
        return []
    managed = [g for g in range(c.n_guests) if c.guest_ha[g] and c.guest_auto_rebalance[g]]
    if settings.pve_rebalancer == "refuse":
        raise InputError("PVE's automatic HA rebalancing is on (crs ha-auto-rebalance) and optimizer.pve_rebalancer "
                         "is refuse: two balancers would move the same guests back and forth; turn one off, or set "
                         "optimizer.pve_rebalancer: leave")
    if managed:
        warnings.append(f"PVE's automatic HA rebalancing is on (crs ha-auto-rebalance): {len(managed)} HA guest(s) "
                        f"are left to it and count as fixed load (optimizer.pve_rebalancer: leave)")
    return [Ignore(guest=g, source="left to PVE's automatic HA rebalancing (crs ha-auto-rebalance)") for g in managed]


def _ignore_reason(ignores: list[Ignore], g: int) -> str:
    return next((i.source for i in ignores if i.guest == g), "not movable")


def _tag_pins(c: Cluster, lower_names: dict[str, int]) -> list[Pin]:
    pins = []
    for g in range(c.n_guests):
        pin_tags = [t for t in c.guest_tags[g] if t.startswith(PIN_PREFIX)]
        if not pin_tags:
            continue
        nodes = []
        for tag in pin_tags:
            node_name = tag[len(PIN_PREFIX):]
            if node_name not in lower_names:
                raise ModelError(
                    f"{c.source}: guest {c.guest_label(g)}: tag {tag} names unknown node {node_name!r} "
                    f"(nodes: {', '.join(c.node_names)})")
            nodes.append(lower_names[node_name])
        pins.append(Pin(guest=g, nodes=tuple(sorted(set(nodes))), source=f"tags {', '.join(pin_tags)}"))
    return pins


def _guests_of_vmids(c: Cluster, vmids: tuple[int, ...]) -> list[int]:
    return [g for g in (c.guest_index(v) for v in vmids) if g is not None]


def _ha_node_set(c: Cluster, rule, lower_names: dict[str, int], warnings: list[str]) -> list[tuple[int, int]]:
    out = []
    for name, prio in rule.node_priorities:
        n = lower_names.get(name.lower())
        if n is None:
            warnings.append(f"HA rule {rule.name}: node {name!r} is not in the cluster; ignored")
            continue
        out.append((n, prio))
    return out


def _ha_pins(c: Cluster, lower_names: dict[str, int], warnings: list[str]) -> list[Pin]:
    """Strict node-affinity: positive → only the listed nodes; negative (PVE 9.2.6) → never the listed nodes."""
    pins = []
    for rule in c.ha_rules:
        if rule.disabled or rule.type != "node-affinity" or not rule.strict:
            continue
        listed = {n for n, _ in _ha_node_set(c, rule, lower_names, warnings)}
        negative = rule.affinity == "negative"
        nodes = tuple(sorted(set(range(c.n_nodes)) - listed if negative else listed))
        kind = "node-affinity, negative, strict" if negative else "node-affinity, strict"
        for g in _guests_of_vmids(c, rule.vmids):
            pins.append(Pin(guest=g, nodes=nodes, source=f"HA rule {rule.name} ({kind})"))
    return pins


def _ha_preferences(c: Cluster, lower_names: dict[str, int], warnings: list[str]) -> list[NodePreference]:
    """Non-strict node-affinity: a soft preference for the listed nodes, or (negative) against them."""
    prefs = []
    for rule in c.ha_rules:
        if rule.disabled or rule.type != "node-affinity" or rule.strict:
            continue
        priorities = tuple(_ha_node_set(c, rule, lower_names, warnings))
        negative = rule.affinity == "negative"
        source = f"HA rule {rule.name} (node-affinity{', negative' if negative else ''})"
        for g in _guests_of_vmids(c, rule.vmids):
            prefs.append(NodePreference(guest=g, priorities=priorities, source=source, avoid=negative))
    return prefs


def _pool_members(c: Cluster, pool: str) -> list[int]:
    return [g for g in range(c.n_guests) if c.guest_pool[g] == pool]


def _pool_nodes(pool: str, spec, lower_names: dict[str, int], warnings: list[str]) -> tuple[int, ...]:
    nodes = []
    for name in spec.get("pin", ()):
        n = lower_names.get(name.lower())
        if n is None:
            raise ModelError(f"config balancing.pools.{pool}.pin: unknown node {name!r}")
        nodes.append(n)
    return tuple(sorted(set(nodes)))


def _pool_pins(c: Cluster, settings: Settings, lower_names: dict[str, int], warnings: list[str]) -> list[Pin]:
    pins = []
    for pool, spec in sorted(settings.pools.items()):
        if not spec.get("pin") or not spec.get("strict", True):
            continue
        nodes = _pool_nodes(pool, spec, lower_names, warnings)
        pins.extend(Pin(guest=g, nodes=nodes, source=f"pool {pool} pin") for g in _pool_members(c, pool))
    return pins


def _pool_preferences(c: Cluster, settings: Settings, lower_names: dict[str, int], warnings: list[str]) -> list[NodePreference]:
    prefs = []
    for pool, spec in sorted(settings.pools.items()):
        if not spec.get("pin") or spec.get("strict", True):
            continue
        priorities = tuple((n, 1) for n in _pool_nodes(pool, spec, lower_names, warnings))
        prefs.extend(NodePreference(guest=g, priorities=priorities, source=f"pool {pool} pin (not strict)")
                     for g in _pool_members(c, pool))
    return prefs


def _groups(c: Cluster, settings: Settings, prefix: str, ha_affinity: str, pool_type: str) -> list[tuple]:
    """(name, source, sorted members) of every group with 2+ members: from tags, HA rules, then pools."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for g in range(c.n_guests):
        for tag in c.guest_tags[g]:
            if tag.startswith(prefix):
                groups[(tag, f"tag {tag}")].append(g)
    for rule in c.ha_rules:
        if not rule.disabled and rule.type == "resource-affinity" and rule.affinity == ha_affinity:
            groups[(rule.name, f"HA rule {rule.name} (resource-affinity, {ha_affinity})")] = _guests_of_vmids(c, rule.vmids)
    for pool, spec in sorted(settings.pools.items()):
        if spec.get("type") == pool_type:
            groups[(f"pool:{pool}", f"pool {pool} ({pool_type})")] = _pool_members(c, pool)
    return [(name, src, tuple(sorted(set(m)))) for (name, src), m in sorted(groups.items()) if len(set(m)) > 1]


def _affinities(c: Cluster, settings: Settings) -> list[Affinity]:
    return [Affinity(name=name, members=members, source=src)
            for name, src, members in _groups(c, settings, AFFINITY_PREFIX, "positive", "affinity")]


def _anti_affinities(c: Cluster, settings: Settings) -> list[AntiAffinity]:
    return [AntiAffinity(name=name, members=members, source=src)
            for name, src, members in _groups(c, settings, ANTI_AFFINITY_PREFIX, "negative", "anti-affinity")]


def _allowed(c: Cluster, eligible: np.ndarray, movable: np.ndarray, pins: list[Pin]) -> np.ndarray:
    allowed = np.tile(eligible, (c.n_guests, 1)) if c.n_guests else np.zeros((0, c.n_nodes), dtype=bool)
    for pin in pins:
        mask = np.zeros(c.n_nodes, dtype=bool)
        mask[list(pin.nodes)] = True
        allowed[pin.guest] &= mask
    for g in np.flatnonzero(~movable):
        allowed[g] = False
        allowed[g, c.guest_node[g]] = True
    return allowed


def _check_domains(c: Cluster, allowed: np.ndarray, movable: np.ndarray, pins: list[Pin],
                   maintenance_mask: np.ndarray) -> None:
    """A movable guest with nowhere to go is infeasible whatever the rest does: name its rules now."""
    for g in np.flatnonzero(movable & ~allowed.any(axis=1)):
        reasons = [p.source for p in pins if p.guest == g]
        pinned = sorted({n for p in pins if p.guest == g for n in p.nodes})
        blocked = [f"{c.node_names[n]} is {'in maintenance' if maintenance_mask[n] else 'offline'}"
                   for n in pinned if maintenance_mask[n] or not c.node_online[n]]
        detail = "; ".join(reasons + blocked) or "no online node outside maintenance"
        raise InfeasibleError(f"guest {c.guest_label(g)} has no node it may run on: {detail}",
                              conflicts=tuple(reasons + blocked))


def _relax_affinities(c: Cluster, groups: list[Affinity], movable: np.ndarray, warnings: list[str]) -> list[Affinity]:
    kept = []
    for group in groups:
        anchors = {int(c.guest_node[g]) for g in group.members if not movable[g]}
        if len(anchors) > 1:
            names = ", ".join(sorted(c.node_names[n] for n in anchors))
            warnings.append(f"{group.source}: members that cannot move sit on {names}; the group cannot be "
                            f"joined and is not enforced this run")
            continue
        kept.append(group)
    return kept


def _anchor_affinities(c: Cluster, groups: list[Affinity], movable: np.ndarray, allowed: np.ndarray) -> list[Pin]:
    """A group with an unmovable member gathers on that member's node: the others' allowed set shrinks to it.

    Returns the implied pins (for naming a guest that then has nowhere to go); `allowed` is narrowed in place.
    """
    implied = []
    for group in groups:
        anchors = {int(c.guest_node[g]) for g in group.members if not movable[g]}
        if not anchors:
            continue
        anchor = anchors.pop()
        for g in group.members:
            if movable[g]:
                keep = allowed[g, anchor]
                allowed[g] = False
                allowed[g, anchor] = keep
                implied.append(Pin(guest=g, nodes=(anchor,), source=f"{group.source}, anchored on "
                                                                  f"{c.node_names[anchor]} by a member that cannot move"))
    return implied


def _cap_anti_affinities(c: Cluster, groups: list[AntiAffinity], movable: np.ndarray, eligible: np.ndarray,
                         warnings: list[str]) -> list[AntiAffinity]:
    n_eligible = max(1, int(eligible.sum()))
    out = []
    for group in groups:
        cap = max(1, math.ceil(len(group.members) / n_eligible))
        fixed_per_node = np.bincount([c.guest_node[g] for g in group.members if not movable[g]], minlength=c.n_nodes)
        if fixed_per_node.size and fixed_per_node.max() > cap:
            warnings.append(f"{group.source}: {int(fixed_per_node.max())} members that cannot move share a node; "
                            f"allowing that many per node this run")
            cap = int(fixed_per_node.max())
        if cap > 1:
            warnings.append(f"{group.source}: {len(group.members)} members for {n_eligible} eligible nodes; "
                            f"at most {cap} per node")
        out.append(AntiAffinity(name=group.name, members=group.members, source=group.source, per_node_cap=cap))
    return out


# ----------------------------------------------------------------------------- scenarios


def freeze(cluster: Cluster, rules: RuleSet, movers: np.ndarray, caps_from: RuleSet | None = None,
           new_group_cap: int | None = None) -> RuleSet:
    """The rules of a scenario in which only `movers` (bool[g]) may move; every other guest stays put.

    What only the staying guests break cannot be repaired by the movers, so it is allowed to persist
    and must not get worse (with a note in `warnings`), just as the hard limits are never below
    today's load:
    * an affinity group whose staying members are split over nodes is not enforced; one whose staying
      members share a node anchors its movers there;
    * an anti-affinity group with more staying members on a node than its cap keeps only `cap` of them
      as members there, so no mover may join them and the others still count elsewhere.
    With `caps_from` (the rules before the scenario) a group keeps the per-node cap it had there instead
    of the one derived from the scenario's eligible nodes, which grows when nodes fail (anti-affinity is
    strict); a group that is new in the scenario gets `new_group_cap` (default: its derived cap). Guests
    that stay are not movable (explain mode then fixes them too) and may only be where they are.
    """
    caps = None
    if caps_from is not None:
        caps = {group.name: group.per_node_cap for group in caps_from.anti_affinities}
        if new_group_cap is not None:
            for group in rules.anti_affinities:
                caps.setdefault(group.name, new_group_cap)
    c = cluster
    movers = np.asarray(movers, dtype=bool)
    stays = ~movers
    current = np.asarray(c.guest_node, dtype=np.int64)
    warnings = list(rules.warnings)
    allowed = rules.allowed.copy()
    movable = rules.movable & movers
    allowed[stays] = False
    allowed[np.flatnonzero(stays), current[stays]] = True
    affinities = []
    for group in rules.affinities:
        anchors = {int(current[g]) for g in group.members if stays[g]}
        if len(anchors) > 1:
            warnings.append(f"{group.source}: members that stay are split over "
                            f"{', '.join(sorted(c.node_names[n] for n in anchors))}; not enforced in this scenario")
            continue
        if anchors:
            anchor = anchors.pop()
            for g in group.members:
                if movers[g]:
                    keep = allowed[g, anchor]
                    allowed[g] = False
                    allowed[g, anchor] = keep
        affinities.append(group)
    anti = []
    for group in rules.anti_affinities:
        cap = (caps or {}).get(group.name, group.per_node_cap) if caps is not None else group.per_node_cap
        members, kept_here = [], {}
        for g in group.members:
            n = int(current[g])
            if stays[g]:
                kept_here[n] = kept_here.get(n, 0) + 1
                if kept_here[n] > cap:
                    continue  # already over the cap today and staying: tolerated, not counted again
            members.append(g)
        crowded = sorted(c.node_names[n] for n, k in kept_here.items() if k > cap)
        if crowded:
            warnings.append(f"{group.source}: members that stay already exceed {cap} per node on "
                            f"{', '.join(crowded)}; tolerated there, no member may join them")
        if len(members) > 1:
            anti.append(AntiAffinity(name=group.name, members=tuple(members), source=group.source, per_node_cap=cap))
    mandatory = movable & ~allowed[np.arange(c.n_guests), current] if c.n_guests else np.zeros(0, dtype=bool)
    for a in (allowed, movable, mandatory):
        a.setflags(write=False)
    return RuleSet(affinities=tuple(affinities), anti_affinities=tuple(anti), pins=rules.pins,
                   preferences=rules.preferences, ignores=rules.ignores, maintenance=rules.maintenance,
                   eligible=rules.eligible, movable=movable, allowed=allowed, mandatory=mandatory,
                   warnings=tuple(warnings))
