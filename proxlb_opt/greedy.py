"""The ProxLB 2.3.0 balancing pass as it behaves, as a baseline, a hint and a fallback.

Re-implemented from its observable behaviour (not its code):
1. guests on maintenance nodes go, one by one, to the node with the lowest percent, with no
   capacity check;
2. while the gap between the highest and lowest node percent exceeds `balanciness`, affinity
   groups (a guest without an affinity tag is a group of one) are taken smallest first, ties by
   used memory (ascending, or descending with `balance_larger_guests_first`);
3. a group goes to the node with the lowest percent; a member is moved only while its node is the
   most loaded one and it fits the target's free memory; anti-affinity members take the next node
   not yet used by their group (in node order), pinned guests the least loaded of their pins;
4. one pass, stopping after `max_migrations` balancing moves.
The result may break rules; the checker reports that, it is not hidden here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from proxlb_opt.check import LoadModel, node_loads
from proxlb_opt.cluster import Cluster
from proxlb_opt.config import Settings
from proxlb_opt.rules import AFFINITY_PREFIX, RuleSet


@dataclass(frozen=True)
class GreedyResult:
    placement: np.ndarray  # int64[g]
    balancing_moves: int
    maintenance_moves: int


class _State:
    """Running node loads while guests are moved one at a time."""

    def __init__(self, cluster: Cluster, loads: LoadModel, rules: RuleSet):
        self.cluster, self.loads, self.rules = cluster, loads, rules
        self.placement = np.array(cluster.guest_node, dtype=np.int64)
        self.load = node_loads(cluster, loads, self.placement).astype(np.float64)
        self.columns = [loads.resource_index(r) for r in loads.resources]
        self.weights = np.array(loads.weights, dtype=np.float64)
        running = cluster.guest_running
        self.mem_used = np.where(running, cluster.guest_mem_used_mib, 0).astype(np.float64)
        self.node_mem_used = np.bincount(self.placement, self.mem_used, cluster.n_nodes) + self._mem_base()

    def _mem_base(self) -> np.ndarray:
        used_memory = next(limit for limit in self.loads.hard_limits if limit.name == "used memory")
        return used_memory.base.astype(np.float64)

    def percent(self) -> np.ndarray:
        pct = 100.0 * self.load[:, self.columns] / self.loads.capacity[:, self.columns]
        return pct @ self.weights / self.weights.sum()

    def eligible_nodes(self) -> np.ndarray:
        return np.flatnonzero(self.rules.eligible)

    def gap(self) -> float:
        pct = self.percent()[self.eligible_nodes()]
        return float(pct.max() - pct.min()) if pct.size > 1 else 0.0

    def lowest(self, among: np.ndarray | None = None) -> int | None:
        nodes = self.eligible_nodes() if among is None else np.intersect1d(among, self.eligible_nodes())
        if nodes.size == 0:
            return None
        pct = self.percent()
        return int(nodes[np.argmin(pct[nodes])])

    def highest(self) -> int:
        nodes = self.eligible_nodes()
        return int(nodes[np.argmax(self.percent()[nodes])])

    def fits_memory(self, g: int, n: int) -> bool:
        free = self.loads.capacity[n, 0] - self.node_mem_used[n]
        return self.mem_used[g] < free

    def move(self, g: int, n: int) -> None:
        src = self.placement[g]
        self.load[src] -= self.loads.demand[g]
        self.load[n] += self.loads.demand[g]
        self.node_mem_used[src] -= self.mem_used[g]
        self.node_mem_used[n] += self.mem_used[g]
        self.placement[g] = n


def greedy_placement(cluster: Cluster, rules: RuleSet, loads: LoadModel, settings: Settings,
                     max_migrations: int | None = None) -> GreedyResult:
    state = _State(cluster, loads, rules)
    maintenance_moves = _drain_maintenance(state)
    if not rules.eligible.any():
        return GreedyResult(state.placement, 0, maintenance_moves)
    moves = 0
    anti_used: dict[str, list[int]] = defaultdict(list)
    for group in _groups(cluster, rules, settings):
        if state.gap() <= settings.balanciness:
            break
        target = state.lowest()
        for g in group:
            if max_migrations is not None and moves >= max_migrations:
                return GreedyResult(state.placement, moves, maintenance_moves)
            if state.placement[g] != state.highest():
                break
            if target is None or not state.fits_memory(g, target):
                continue
            node = _anti_affinity_target(state, g, anti_used, target)
            node = _pin_target(state, g, node)
            if node is not None and node != state.placement[g]:
                state.move(g, node)
                moves += 1
    return GreedyResult(state.placement, moves, maintenance_moves)


def _drain_maintenance(state: _State) -> int:
    moved = 0
    maintenance_nodes = [m.node for m in state.rules.maintenance]
    for g in np.flatnonzero(np.isin(state.placement, maintenance_nodes) & state.rules.movable):
        target = state.lowest()
        if target is not None:
            state.move(int(g), target)
            moved += 1
    return moved


def _groups(cluster: Cluster, rules: RuleSet, settings: Settings) -> list[list[int]]:
    """Affinity groups by tag (the last tag wins, as in ProxLB), singletons otherwise, smallest first."""
    by_tag: dict[str, list[int]] = defaultdict(list)
    singles: list[list[int]] = []
    for g in np.flatnonzero(rules.movable):
        tags = [t for t in cluster.guest_tags[g] if t.startswith(AFFINITY_PREFIX)]
        if tags:
            by_tag[tags[-1]].append(int(g))
        else:
            singles.append([int(g)])
    groups = list(by_tag.values()) + singles
    used = np.where(cluster.guest_running, cluster.guest_mem_used_mib, 0)
    sign = -1 if settings.balance_larger_guests_first else 1
    return sorted(groups, key=lambda members: (len(members), sign * int(used[members].sum()), members[0]))


def _anti_affinity_target(state: _State, g: int, used: dict[str, list[int]], target: int) -> int:
    for group in state.rules.anti_affinities:
        if g not in group.members:
            continue
        for n in state.eligible_nodes():
            if int(n) not in used[group.name]:
                used[group.name].append(int(n))
                return int(n)
    return target


def _pin_target(state: _State, g: int, target: int | None) -> int | None:
    pinned = [p for p in state.rules.pins if p.guest == g]
    if not pinned:
        return target
    allowed = np.array(sorted(set.intersection(*(set(p.nodes) for p in pinned))), dtype=np.int64)
    return state.lowest(allowed) if allowed.size else target
