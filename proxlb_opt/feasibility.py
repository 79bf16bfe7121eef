"""The one place that answers "may these guests go to that node now?" and "what does this placement break?".

An `Occupancy` is a placement being changed move by move, with its hard-limit loads, balance loads
and anti-affinity counts kept up to date. Every heuristic asks it before it moves anything: the
greedy baselines, the repair, the local search, best-node, sequencing and replay (where a running
live migration holds its guest on both nodes: `start`, then `finish`), and apply's live re-check.
A new rule kind is taught here once (and to the checker and the CP-SAT encoders, see
models/FORMULATION.md, "Rule families").

The rules, as questions about a move of `guests` (one unit: they travel together) to node t:
* domain: t is online, not in maintenance, inside every guest's pins (rules.allowed; an anchored
  affinity group's members may only go to their anchor);
* hard limits: for every limit k, load[t, k] + the arriving guests' demand ≤ limit[t, k];
* anti-affinity: for every group, its members on t plus the arriving ones ≤ the group's cap;
* affinity is kept by moving units, not single guests (`Problem.units`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from proxlb_opt.problem import Problem


class Occupancy:
    """A mutable placement with incremental loads; the single source of truth for every heuristic."""

    def __init__(self, problem: Problem, placement: np.ndarray | None = None):
        self.problem = problem
        self.placement = np.array(problem.current if placement is None else placement, dtype=np.int64)
        self.hard = problem.hard.load(self.placement)  # int64[n, k]
        bal = problem.balance
        self.balance = bal.base.copy()  # float[n, r]
        np.add.at(self.balance, self.placement, bal.demand)
        groups = problem.rules.anti_affinities
        self.anti = np.zeros((len(groups), problem.cluster.n_nodes), dtype=np.int64)
        for i, members in enumerate(problem.anti_members):
            np.add.at(self.anti[i], self.placement[members], 1)
        self.running: dict[int, int] = {}  # guest → target of a live migration under way (start … finish)
        self.unit_node = self._unit_nodes()  # int[u]: the node a unit's members share, −1 while split

    def copy(self) -> "Occupancy":
        other = object.__new__(Occupancy)
        other.problem = self.problem
        other.placement = self.placement.copy()
        other.hard, other.balance, other.anti = self.hard.copy(), self.balance.copy(), self.anti.copy()
        other.running = dict(self.running)
        other.unit_node = self.unit_node.copy()
        return other

    # ------------------------------------------------------------------------- questions

    def why_not(self, guests: Sequence[int], target: int, keep_groups: bool = True) -> str | None:
        """Why `guests` may not all be on `target` now (those not there yet arrive together); None: they may.

        With `keep_groups`, the move may not split an affinity group: members of the guests' groups that
        are not moving must be on `target` already. One step of a plan moves one guest of a group at a
        time (sequencing, replay, apply): they pass keep_groups=False, the plan as a whole gathers it.
        """
        p, c = self.problem, self.problem.cluster
        if not c.node_online[target]:
            return f"{c.node_names[target]} is offline"
        if not p.rules.eligible[target]:
            return f"{c.node_names[target]} is in maintenance"
        for g in guests:
            if not p.rules.allowed[g, target]:
                if not p.rules.movable[g]:
                    return f"{c.guest_label(g)} cannot be moved"
                sources = p.rules.pin_sources(g) or ["its affinity group's anchor"]
                return f"{c.guest_label(g)} may not run on {c.node_names[target]} ({'; '.join(sources)})"
        if keep_groups:
            moving = set(int(g) for g in guests)
            for g in moving:
                for i in p.affinity_of[g]:
                    group = p.rules.affinities[i]
                    if any(m not in moving and self.placement[m] != target for m in group.members):
                        return f"{group.source}: the rest of the group runs elsewhere"
        arriving = [g for g in guests if self.placement[g] != target]
        if not arriving:
            return None
        extra = p.hard.demand[arriving].sum(axis=0)
        over = np.flatnonzero(self.hard[target] + extra > p.hard.limit[target])
        if over.size:
            k = int(over[0])
            return (f"{p.hard.names[k]} of {c.node_names[target]} would reach "
                    f"{int(self.hard[target, k] + extra[k])} {p.hard.units[k]} (limit {int(p.hard.limit[target, k])})")
        for i, count in _anti_counts(p, arriving).items():
            group = p.rules.anti_affinities[i]
            if self.anti[i, target] + count > group.per_node_cap:
                return f"{group.source}: at most {group.per_node_cap} member(s) on {c.node_names[target]}"
        return None

    def may_move(self, guests: Sequence[int], target: int, keep_groups: bool = True) -> bool:
        return self.why_not(guests, target, keep_groups) is None

    def targets(self, guests: Sequence[int]) -> np.ndarray:
        """bool[n]: every node `guests` may go to together now (vectorized `may_move` over nodes)."""
        p = self.problem
        guests = np.asarray(guests, dtype=np.int64)
        ok = p.rules.eligible & np.asarray(p.cluster.node_online, dtype=bool) & p.rules.allowed[guests].all(axis=0)
        resident = self.placement[guests]
        placed = resident >= 0  # a lifted guest (best-node, what-if) is on no node yet
        demand = p.hard.demand[guests]  # [m, k]
        # Arriving demand at t: everything except the members already on t.
        already = np.zeros_like(self.hard)
        np.add.at(already, resident[placed], demand[placed])
        arriving = demand.sum(axis=0)[None, :] - already
        ok &= (self.hard + arriving <= p.hard.limit).all(axis=1)
        for i, count in _anti_counts(p, guests.tolist()).items():
            members_here = [j for j, g in enumerate(guests) if i in p.anti_of[g] and placed[j]]
            on = np.bincount(resident[members_here], minlength=p.cluster.n_nodes)
            ok &= self.anti[i] + count - on <= p.rules.anti_affinities[i].per_node_cap
        return ok

    def unit_targets(self, units: np.ndarray, nodes: np.ndarray | None = None) -> np.ndarray:
        """bool[U, N]: where each of `units` may go now (`targets` for many gathered units at once), over
        `nodes` (default: all). A unit's own node counts as allowed; callers that want a move mask it."""
        p = self.problem
        units = np.asarray(units, dtype=np.int64)
        cols = np.arange(p.cluster.n_nodes) if nodes is None else np.asarray(nodes, dtype=np.int64)
        ok = p.unit_allowed[np.ix_(units, cols)] & (p.rules.eligible & np.asarray(p.cluster.node_online))[cols][None, :]
        if p.hard.names:
            room = p.hard.limit[cols] - self.hard[cols]  # [N, k]
            ok &= (p.unit_hard[units][:, None, :] <= room[None, :, :]).all(axis=2)
        pair_unit, pair_group, pair_count = p.unit_anti_pairs
        if pair_unit.size:
            position = np.full(len(p.units), -1, dtype=np.int64)
            position[units] = np.arange(units.size)
            rows = np.flatnonzero(position[pair_unit] >= 0)
            if rows.size:
                groups = pair_group[rows]
                fits = self.anti[np.ix_(groups, cols)] + pair_count[rows, None] <= p.anti_caps[groups, None]
                np.logical_and.at(ok, position[pair_unit[rows]], fits)
        return ok

    def units_on(self, node: int) -> np.ndarray:
        """int[U]: the units wholly on `node` (units split over nodes are left out: the repair joins them)."""
        return np.flatnonzero(self.unit_node == node)

    def move_delta(self, units: np.ndarray, source: int, nodes: np.ndarray | None = None) -> np.ndarray:
        """int[U, N]: how the number of moved guests changes when each unit goes from `source` to each of
        `nodes` (default: all; a guest brought back to its original node counts one move less)."""
        p = self.problem
        units = np.asarray(units, dtype=np.int64)
        n = p.cluster.n_nodes
        home = np.zeros((units.size, n), dtype=np.int64)
        home_node = p.unit_home[units]
        whole = np.flatnonzero(home_node >= 0)
        home[whole, home_node[whole]] = [len(p.units[u]) for u in units[whole]]
        for i in np.flatnonzero(home_node < 0):  # members came from several nodes (a group the repair joined)
            np.add.at(home[i], p.current[p.units[units[i]]], 1)
        delta = home[:, [source]] - home
        return delta if nodes is None else delta[:, nodes]

    def spreads_after(self, units: np.ndarray, source: int,
                      nodes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """float[U, N] each: the spread, and the change of Σ w·percent², if each unit went from `source` to
        each of `nodes` (default: all) now; nothing changes. Each resource's max and min over the nodes other
        than the source and the target come from its three highest and three lowest nodes: O(U·N)."""
        p = self.problem
        bal = p.balance
        pct = self.percent()
        cols = np.arange(p.cluster.n_nodes) if nodes is None else np.asarray(nodes, dtype=np.int64)
        demand = p.unit_balance[np.asarray(units, dtype=np.int64)]
        new_s = pct[source][None, :] - 100.0 * demand / bal.cap[source][None, :]  # [U, r]
        new_t = pct[cols][None, :, :] + 100.0 * demand[:, None, :] / bal.cap[cols][None, :, :]  # [U, N, r]
        hi_rest, lo_rest = _extremes_without(pct, p.eligible_nodes, source)
        hi = np.maximum(np.maximum(hi_rest[cols][None], new_s[:, None, :]), new_t)
        lo = np.minimum(np.minimum(lo_rest[cols][None], new_s[:, None, :]), new_t)
        spread = (hi - lo) @ bal.weights
        squares = ((new_s ** 2 - pct[source] ** 2)[:, None, :] + new_t ** 2 - pct[cols][None] ** 2) @ bal.weights
        return spread, squares

    def swaps_within_limits(self, units_s: np.ndarray, s: int, units_t: np.ndarray, t: int) -> np.ndarray:
        """bool[A, B]: swapping unit a (on s) with unit b (on t) keeps both nodes' hard limits and domains."""
        p = self.problem
        ok = p.unit_allowed[units_s, t][:, None] & p.unit_allowed[units_t, s][None, :]
        if p.hard.names:
            net = p.unit_hard[units_s][:, None, :] - p.unit_hard[units_t][None, :, :]
            ok &= (self.hard[t] + net <= p.hard.limit[t]).all(axis=2)
            ok &= (self.hard[s] - net <= p.hard.limit[s]).all(axis=2)
        return ok

    def swap_keeps_anti_affinity(self, u: int, s: int, v: int, t: int) -> bool:
        """Unit u goes from s to t while unit v goes from t to s: no anti-affinity group over its cap."""
        p = self.problem
        for mine, theirs, node in ((p.unit_anti[u], p.unit_anti[v], t), (p.unit_anti[v], p.unit_anti[u], s)):
            for group, count in mine.items():
                if self.anti[group, node] - theirs.get(group, 0) + count > p.anti_caps[group]:
                    return False
        return True

    def shortfall(self, guests: Sequence[int], target: int) -> tuple[np.ndarray, set[int]]:
        """What keeps `guests` off `target`: int64[k] demand to free per hard limit (≤ 0: none), and the
        anti-affinity groups already at their cap there."""
        p = self.problem
        arriving = [g for g in guests if self.placement[g] != target]
        need = self.hard[target] + p.hard.demand[arriving].sum(axis=0) - p.hard.limit[target]
        groups = {i for i, count in _anti_counts(p, arriving).items() if self.anti[i, target] + count > p.anti_caps[i]}
        return need, groups

    def room(self) -> np.ndarray:
        """int64[n, k]: what each node can still take under each hard limit now (0 when full or over)."""
        return np.maximum(0, self.problem.hard.limit - self.hard)

    def crowded(self) -> list[tuple[int, int, int]]:
        """(group, node, members over the cap) for every anti-affinity group over its cap on a node."""
        over = self.anti - self.problem.anti_caps[:, None]
        return [(int(i), int(n), int(over[i, n])) for i, n in zip(*np.nonzero(over > 0))]

    # ------------------------------------------------------------------------- changes

    def move(self, guests: Sequence[int], target: int) -> None:
        """Move `guests` to `target` at once (no in-between state)."""
        for g in guests:
            source = int(self.placement[g])
            if source != target:
                self.start(g, target)
                self.finish(g)

    def lift(self, g: int) -> None:
        """Take g off its node: it is on no node until moved (best-node places a new guest this way)."""
        p, n = self.problem, int(self.placement[g])
        self.hard[n] -= p.hard.demand[g]
        self.balance[n] -= p.balance.demand[g]
        for i in p.anti_of[g]:
            self.anti[i, n] -= 1
        self.placement[g] = -1
        self._update_unit_node(g)

    def start(self, g: int, target: int) -> None:
        """A live migration of g to `target` begins: g's load is held on the target too."""
        p = self.problem
        self.hard[target] += p.hard.demand[g]
        self.balance[target] += p.balance.demand[g]
        for i in p.anti_of[g]:
            self.anti[i, target] += 1
        self.running[g] = target

    def finish(self, g: int) -> None:
        """g's migration ended: its source lets go of it."""
        p = self.problem
        source = int(self.placement[g])
        if source >= 0:
            self.hard[source] -= p.hard.demand[g]
            self.balance[source] -= p.balance.demand[g]
            for i in p.anti_of[g]:
                self.anti[i, source] -= 1
        self.placement[g] = self.running.pop(g)
        self._update_unit_node(g)

    def _unit_nodes(self) -> np.ndarray:
        p = self.problem
        out = self.placement[p.unit_first] if len(p.units) else np.zeros(0, dtype=np.int64)
        for u in p.group_units:
            nodes = self.placement[p.units[u]]
            if not (nodes == nodes[0]).all():
                out[u] = -1
        return out

    def _update_unit_node(self, g: int) -> None:
        u = int(self.problem.unit_of[g])
        if u >= 0:
            nodes = self.placement[self.problem.units[u]]
            self.unit_node[u] = nodes[0] if (nodes == nodes[0]).all() else -1

    # ------------------------------------------------------------------------- state

    def percent(self) -> np.ndarray:
        """float[n, r]: balance percent of the balanced resources."""
        return 100.0 * self.balance / self.problem.balance.cap

    def spread(self) -> float:
        eligible = self.problem.eligible_nodes
        if eligible.size < 2:
            return 0.0
        pct = self.percent()[eligible]
        return float(((pct.max(axis=0) - pct.min(axis=0)) * self.problem.balance.weights).sum())

    def spread_if(self, guests: Sequence[int], target: int) -> float:
        """The spread if `guests` were moved to `target` now (nothing changes)."""
        p = self.problem
        balance = self.balance.copy()
        for g in guests:
            if self.placement[g] >= 0:
                balance[self.placement[g]] -= p.balance.demand[g]
            balance[target] += p.balance.demand[g]
        eligible = p.eligible_nodes
        if eligible.size < 2:
            return 0.0
        pct = 100.0 * balance[eligible] / p.balance.cap[eligible]
        return float(((pct.max(axis=0) - pct.min(axis=0)) * p.balance.weights).sum())

    def moves(self) -> int:
        return int((self.placement != self.problem.current).sum())

    def broken_rules(self) -> list[tuple[str, str]]:
        """(family, what) of every rule the current placement breaks: domain (the checker's ignore, maintenance,
        offline and pin), capacity, affinity, anti-affinity, budget."""
        p, c = self.problem, self.problem.cluster
        out = []
        for g in np.flatnonzero(~p.rules.allowed[np.arange(c.n_guests), self.placement]):
            out.append(("domain", f"{c.guest_label(int(g))} on {c.node_names[self.placement[g]]}"))
        for n, k in zip(*np.nonzero(self.hard > p.hard.limit)):
            out.append(("capacity", f"{c.node_names[n]}: {p.hard.names[k]}"))
        for group in p.rules.affinities:
            if len(set(self.placement[list(group.members)].tolist())) > 1:
                out.append(("affinity", group.source))
        for i, n in zip(*np.nonzero(self.anti > p.anti_caps[:, None])):
            out.append(("anti-affinity", f"{p.rules.anti_affinities[i].source} on {c.node_names[n]}"))
        if p.allowance is not None and self.moves() > p.allowance:
            out.append(("budget", f"{self.moves()} moves > {p.allowance}"))
        return out


def _extremes_without(pct: np.ndarray, eligible: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    """float[n, r]: max and min percent over the eligible nodes except s and each column's own node t."""
    n_nodes, n_res = pct.shape
    hi = np.full((n_nodes, n_res), -np.inf)
    lo = np.full((n_nodes, n_res), np.inf)
    order = np.argsort(pct[eligible], axis=0, kind="stable")
    t_nodes = np.arange(n_nodes)
    for r in range(n_res):
        top = [int(eligible[i]) for i in order[::-1][:3, r]]
        bottom = [int(eligible[i]) for i in order[:3, r]]
        hi[:, r] = _first_not(top, pct[:, r], s, t_nodes, -np.inf)
        lo[:, r] = _first_not(bottom, pct[:, r], s, t_nodes, np.inf)
    return hi, lo


def _first_not(candidates: list[int], values: np.ndarray, s: int, t_nodes: np.ndarray, empty: float) -> np.ndarray:
    """For every node t: the value of the first candidate that is neither s nor t (`empty` if none is left)."""
    out = np.full(t_nodes.size, empty)
    settled = np.zeros(t_nodes.size, dtype=bool)
    for c in candidates:
        if c == s:
            continue
        take = ~settled & (t_nodes != c)
        out[take] = values[c]
        settled |= take
    return out


def _anti_counts(problem: Problem, guests: Sequence[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for g in guests:
        for i in problem.anti_of[g]:
            counts[i] = counts.get(i, 0) + 1
    return counts
