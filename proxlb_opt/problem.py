"""The Problem: one frozen value with everything a planner needs, built once per planning run.

A Problem holds the cluster (after `ignore_nodes`), the settings, the derived rules, the integer load
model, the migration budget and the result of the repair stage, plus precomputed indexes that every
search shares instead of rebuilding them: the hard-limit matrices, the balance columns, the affinity
units (guests that move as one) and the anti-affinity groups of each guest. Planners, the checker,
the feasibility module, the CP-SAT model and sequencing all take a Problem rather than loose
(cluster, rules, loads) triples.

The migration budget. `budget` is the number of optional (balancing) moves the user allows;
`repair_moves` is how many moves the repair stage needed to make every rule hold (maintenance
evacuation, pins, split affinity groups, crowded anti-affinity groups, nodes over a hard limit). A
plan may move at most `allowance = repair_moves + budget` movable guests in total: mandatory moves
never count against the budget and are never blocked by it, and which guests do the repair is left
to the optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from proxlb_opt.cluster import Cluster, without_nodes
from proxlb_opt.config import Settings
from proxlb_opt.loads import LoadModel, load_model
from proxlb_opt.rules import RuleSet, derive_rules, unknown_config_names


@dataclass(frozen=True, eq=False)
class HardMatrices:
    """All hard limits side by side: axis k is the limit (used memory, local disk, assigned memory, vCPUs)."""

    names: tuple[str, ...]
    units: tuple[str, ...]
    demand: np.ndarray  # int64[g, k]
    base: np.ndarray  # int64[n, k]
    capacity: np.ndarray  # int64[n, k]: what the configuration allows
    limit: np.ndarray  # int64[n, k]: what a plan must keep
    relieve: np.ndarray  # bool[k]: the repair brings nodes over this capacity down (physical limits)

    @property
    def goal(self) -> np.ndarray:
        """int64[n, k]: the level the repair aims for: the capacity of relieved limits, the limit of the others."""
        return np.where(self.relieve[None, :], self.capacity, self.limit)

    def load(self, placement: np.ndarray) -> np.ndarray:
        """int64[n, k] under `placement`."""
        out = self.base.copy()
        np.add.at(out, np.asarray(placement, dtype=np.int64), self.demand)
        return out


@dataclass(frozen=True, eq=False)
class Balance:
    """The balanced resources as float matrices for fast evaluation: percent = 100 · load / cap."""

    columns: tuple[int, ...]  # indices into RESOURCES
    weights: np.ndarray  # float[r], summing to 1
    demand: np.ndarray  # float[g, r]
    base: np.ndarray  # float[n, r]
    cap: np.ndarray  # float[n, r]


@dataclass(frozen=True, eq=False)
class Problem:
    cluster: Cluster
    settings: Settings
    rules: RuleSet
    loads: LoadModel
    budget: int | None  # optional balancing moves; None: unlimited
    repair_moves: int = 0  # moves the repair needed; outside the budget

    @property
    def allowance(self) -> int | None:
        """Most movable guests a plan may move: the repair's moves plus the budget (None: unlimited)."""
        return None if self.budget is None else self.repair_moves + self.budget

    @property
    def current(self) -> np.ndarray:
        return np.asarray(self.cluster.guest_node, dtype=np.int64)

    def with_budget(self, budget: int | None) -> "Problem":
        return replace(self, budget=budget)

    def with_repair(self, moves: int, limits: np.ndarray | None = None) -> "Problem":
        """The problem after the repair stage: its move count, and hard limits tightened to what it reached."""
        loads = self.loads if limits is None else self.loads.with_limits(limits)
        return replace(self, repair_moves=int(moves), loads=loads)

    def restricted(self, mask: np.ndarray) -> "Problem":
        """The same problem with every movable guest's allowed nodes narrowed to mask[g] (bool[g, n]); a guest
        whose narrowed set would be empty keeps its own (a preference for a scenario, never a new conflict)."""
        allowed = self.rules.allowed & np.asarray(mask, dtype=bool)
        empty = ~allowed.any(axis=1)
        allowed[empty] = self.rules.allowed[empty]
        allowed.setflags(write=False)
        mandatory = self.rules.movable & ~allowed[np.arange(self.cluster.n_guests), self.current]
        mandatory.setflags(write=False)
        return replace(self, rules=replace(self.rules, allowed=allowed, mandatory=mandatory))

    def keep_in_place(self, guests) -> "Problem":
        """The same problem with `guests` allowed only on their current node (a retry after no safe order)."""
        allowed = self.rules.allowed.copy()
        for g in guests:
            allowed[g] = False
            allowed[g, self.cluster.guest_node[g]] = True
        allowed.setflags(write=False)
        return replace(self, rules=replace(self.rules, allowed=allowed))

    # ------------------------------------------------------------------------- indexes

    @cached_property
    def eligible_nodes(self) -> np.ndarray:
        return np.flatnonzero(self.rules.eligible)

    @cached_property
    def hard(self) -> HardMatrices:
        limits = self.loads.hard_limits
        n, g = self.cluster.n_nodes, self.cluster.n_guests
        if not limits:
            empty_n, empty_g = np.zeros((n, 0), dtype=np.int64), np.zeros((g, 0), dtype=np.int64)
            return HardMatrices((), (), empty_g, empty_n, empty_n, empty_n, np.zeros(0, dtype=bool))
        return HardMatrices(
            names=tuple(lim.name for lim in limits), units=tuple(lim.unit for lim in limits),
            demand=_ro(np.stack([lim.demand for lim in limits], axis=1)),
            base=_ro(np.stack([lim.base for lim in limits], axis=1)),
            capacity=_ro(np.stack([lim.capacity for lim in limits], axis=1)),
            limit=_ro(np.stack([lim.limit for lim in limits], axis=1)),
            relieve=_ro(np.array([lim.relieve for lim in limits], dtype=bool)))

    @cached_property
    def balance(self) -> Balance:
        cols = self.loads.columns
        weights = np.array(self.loads.weights, dtype=float)
        return Balance(columns=tuple(cols), weights=_ro(weights / weights.sum()),
                       demand=_ro(self.loads.demand[:, cols].astype(float)),
                       base=_ro(self.loads.base[:, cols].astype(float)),
                       cap=_ro(self.loads.capacity[:, cols].astype(float)))

    @cached_property
    def anti_of(self) -> tuple[tuple[int, ...], ...]:
        """Per guest, the indices of its anti-affinity groups."""
        out: list[list[int]] = [[] for _ in range(self.cluster.n_guests)]
        for i, group in enumerate(self.rules.anti_affinities):
            for g in group.members:
                out[g].append(i)
        return tuple(tuple(x) for x in out)

    @cached_property
    def affinity_of(self) -> tuple[tuple[int, ...], ...]:
        """Per guest, the indices of its affinity groups."""
        out: list[list[int]] = [[] for _ in range(self.cluster.n_guests)]
        for i, group in enumerate(self.rules.affinities):
            for g in group.members:
                out[g].append(i)
        return tuple(tuple(x) for x in out)

    @cached_property
    def anti_caps(self) -> np.ndarray:
        return _ro(np.array([a.per_node_cap for a in self.rules.anti_affinities], dtype=np.int64))

    @cached_property
    def anti_members(self) -> tuple[np.ndarray, ...]:
        return tuple(np.array(a.members, dtype=np.int64) for a in self.rules.anti_affinities)

    @cached_property
    def units(self) -> tuple[np.ndarray, ...]:
        """Guests that move as one: the movable members of affinity groups joined by shared members
        (union-find), and every other movable guest alone. Sorted by first member."""
        movable = np.flatnonzero(self.rules.movable)
        parent = {int(g): int(g) for g in movable}

        def root(g: int) -> int:
            while parent[g] != g:
                parent[g] = parent[parent[g]]
                g = parent[g]
            return g

        for group in self.rules.affinities:
            members = [g for g in group.members if self.rules.movable[g]]
            for g in members[1:]:
                a, b = root(members[0]), root(g)
                if a != b:
                    parent[max(a, b)] = min(a, b)
        groups: dict[int, list[int]] = {}
        for g in movable:
            groups.setdefault(root(int(g)), []).append(int(g))
        return tuple(np.array(sorted(m), dtype=np.int64) for _, m in sorted(groups.items()))

    @cached_property
    def unit_of(self) -> np.ndarray:
        """int[g]: the unit index of each guest, −1 for guests that cannot move."""
        out = np.full(self.cluster.n_guests, -1, dtype=np.int64)
        for u, members in enumerate(self.units):
            out[members] = u
        return _ro(out)

    @cached_property
    def unit_hard(self) -> np.ndarray:
        """int64[u, k]: each unit's demand under each hard limit."""
        out = np.zeros((len(self.units), self.hard.demand.shape[1]), dtype=np.int64)
        for u, members in enumerate(self.units):
            out[u] = self.hard.demand[members].sum(axis=0)
        return _ro(out)

    @cached_property
    def unit_balance(self) -> np.ndarray:
        """float[u, r]: each unit's balance demand."""
        out = np.zeros((len(self.units), self.balance.demand.shape[1]))
        for u, members in enumerate(self.units):
            out[u] = self.balance.demand[members].sum(axis=0)
        return _ro(out)

    @cached_property
    def unit_anti(self) -> tuple[dict[int, int], ...]:
        """Per unit: anti-affinity group → how many of the unit's members are in it."""
        out = []
        for members in self.units:
            counts: dict[int, int] = {}
            for g in members:
                for i in self.anti_of[int(g)]:
                    counts[i] = counts.get(i, 0) + 1
            out.append(counts)
        return tuple(out)

    @cached_property
    def unit_first(self) -> np.ndarray:
        """int[u]: each unit's first member."""
        return _ro(np.array([m[0] for m in self.units], dtype=np.int64))

    @cached_property
    def group_units(self) -> np.ndarray:
        """int[…]: the units with more than one member (affinity groups)."""
        return _ro(np.array([u for u, m in enumerate(self.units) if m.size > 1], dtype=np.int64))

    @cached_property
    def unit_home(self) -> np.ndarray:
        """int[u]: the node all of a unit's members sit on before the plan, −1 when they are split."""
        out = np.full(len(self.units), -1, dtype=np.int64)
        current = self.current
        for u, members in enumerate(self.units):
            nodes = current[members]
            if (nodes == nodes[0]).all():
                out[u] = nodes[0]
        return _ro(out)

    @cached_property
    def unit_anti_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(unit, group, count) arrays: every unit's members in every anti-affinity group, for vectorized checks."""
        rows = [(u, group, count) for u, counts in enumerate(self.unit_anti) for group, count in counts.items()]
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        unit, group, count = (np.array(x, dtype=np.int64) for x in zip(*rows))
        return _ro(unit), _ro(group), _ro(count)

    @cached_property
    def split_units(self) -> tuple[tuple[int, int], ...]:
        """(unit, fewest members that must move) for every affinity unit split over nodes with no mandatory
        member: it ends on one allowed node, so all but the most members on one of those move."""
        out = []
        current = self.current
        for u, members in enumerate(self.units):
            if members.size < 2 or self.rules.mandatory[members].any():
                continue
            counts = np.bincount(current[members], minlength=self.cluster.n_nodes)
            if (counts > 0).sum() > 1:
                out.append((u, int(members.size - counts[self.unit_allowed[u]].max(initial=0))))
        return tuple(out)

    @cached_property
    def unit_allowed(self) -> np.ndarray:
        """bool[u, n]: nodes where every member of the unit may run."""
        out = np.ones((len(self.units), self.cluster.n_nodes), dtype=bool)
        for u, members in enumerate(self.units):
            out[u] = self.rules.allowed[members].all(axis=0)
        return _ro(out)


def build_problem(cluster: Cluster, settings: Settings, check_domains: bool = True) -> Problem:
    """Drop `ignore_nodes`, derive the rules and the load model; the budget is the settings' max_migrations.

    The rules' warnings start with the config names that match nothing in the (whole) cluster.
    `check_domains=False`: a guest with no node it may run on is left with an empty allowed set (what-if)."""
    unknown = unknown_config_names(cluster, settings)
    cluster = without_nodes(cluster, settings.ignore_nodes)
    rules = derive_rules(cluster, settings, check_domains=check_domains)
    if unknown:
        rules = replace(rules, warnings=tuple(unknown) + rules.warnings)
    loads = load_model(cluster, settings)
    budget = settings.max_migrations if isinstance(settings.max_migrations, int) else None  # auto: chosen later
    return Problem(cluster=cluster, settings=settings, rules=rules, loads=loads, budget=budget)


def _ro(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array
