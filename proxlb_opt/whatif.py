"""Capacity what-if (pure): node failures (N+1 / N+k), room for new guests, decommission and expansion,
growth, and the older drain and headroom questions. No I/O: the CLI prints what these return.

Every scenario is a pure transform of the cluster (cluster.py: `with_failed`, `with_added_guests`,
`with_added_node`, `with_growth`, `with_placement`, `without_nodes`) turned into a Problem by the same
`build_problem`, with `rules.freeze` saying which guests may move (the rest stay where they are, and
what only they break is tolerated, never made worse). Each scenario is then answered by the same
core a plan uses: the feasibility module (Occupancy) for every "may this go there" question of the
fast heuristics, CP-SAT (cpsat/build.py, with optional guests) for proofs, explain.py to name the
rules that block, and check.violations on every placement shown. models/FORMULATION.md ("Capacity
what-if") states the choices: restarted guests count their assigned memory, anti-affinity stays
strict, guests with local disks are not restarted, and what is exact versus a heuristic bound.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from proxlb_opt import check
from proxlb_opt.bestnode import NEW_VMID
from proxlb_opt.cluster import (Cluster, with_added_guests, with_added_node, with_failed, with_growth, with_guest,
                                with_placement, without_guests, without_nodes)
from proxlb_opt.config import RESOURCES, Settings
from proxlb_opt.cpsat.build import build
from proxlb_opt.cpsat.context import BuildOptions
from proxlb_opt.cpsat.explain import conflicting_rules
from proxlb_opt.cpsat.robust import FailureCopy, build_robust, order_identical
from proxlb_opt.cpsat.solve import SolverSettings, solve_lexicographic, solve_stages
from proxlb_opt.deadline import Deadline
from proxlb_opt.errors import InfeasibleError, InputError, InternalError
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.limits import MAX_NEW_GUESTS
from proxlb_opt.optimizer import find_repair
from proxlb_opt.planner import PlanResult, make_plan, plan_problem
from proxlb_opt.problem import Problem, build_problem
from proxlb_opt.rules import freeze
from proxlb_opt.units import parse_cores_milli, parse_size_mib

#: How a restarted guest counts under the used-memory limit: its assigned size (see cluster.with_failed).
RESTART_MEMORY = "assigned"
#: Above this many placement variables a failed set is not given to CP-SAT (the heuristics answer alone).
MAX_EXACT_VARIABLES = 40_000
#: Failed sets with more placement variables than this keep the heuristic highest load (no CP-SAT minimum).
PEAK_MAX_VARIABLES = 6000
#: Seconds the explanation of one failed set may take at most.
EXPLAIN_SECONDS = 5.0

EXACT = "exact"
HEURISTIC = "heuristic"


def solver_of(settings: Settings) -> SolverSettings:
    return SolverSettings(workers=settings.workers, seed=settings.seed)


def scenario_settings(settings: Settings) -> Settings:
    """Settings for a scenario problem: `ignore_nodes` were dropped already; balancer-only exclusions
    (ignore_guests, balance_types) do not stop a restart or a new guest (every other guest is frozen
    by `rules.freeze` anyway); no migration budget."""
    return replace(settings, ignore_nodes=(), ignore_guests=(), balance_types=("vm", "ct"), max_migrations=None)


# ============================================================================= node failures (N+1, N+k)


@dataclass(frozen=True)
class FailureScenario:
    """One failed set: the frozen scenario problem and who restarts."""

    failed: tuple[int, ...]  # node indices (also valid in the scenario cluster: no node is dropped)
    problem: Problem  # guests that restart may move, everything else stays
    movers: np.ndarray  # int[]: guests (scenario indices) that restart
    not_restarted: dict[str, tuple[int, ...]]  # reason → vmids
    ha_only: bool = False


@dataclass(frozen=True)
class FailureResult:
    """The answer for one failed set. `fits` is True only with a placement of every restarted guest that
    the checker accepted; False with `proven` is a proof that none exists; False without it means that
    neither was found in time."""

    nodes: tuple[str, ...]
    fits: bool
    proven: bool
    method: str  # greedy (a placement) | counting proof | cp-sat | time limit (not decided) 
    restarted: int  # guests that need a home
    unplaced: tuple[int, ...]  # vmids left without a home in the best placement found
    unplaced_lower_bound: int  # proven: at least this many are left without a home
    blocking: tuple[str, ...]  # the rules or limits that block (empty when it fits)
    max_load: float | None  # weighted highest percent of a surviving node after the restarts
    max_load_node: str | None
    max_load_per_resource: dict[str, float]
    max_load_proven: bool  # the highest load is the least possible (CP-SAT), not just one placement's
    restarts: tuple[tuple[int, str], ...]  # (vmid, node) of every restarted guest placed
    not_restarted: dict[str, tuple[int, ...]]
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def unplaced_proven_minimal(self) -> bool:
        return len(self.unplaced) <= self.unplaced_lower_bound


@dataclass(frozen=True)
class NPlusK:
    k: int
    ha_only: bool
    failures: tuple[FailureResult, ...]  # worst first
    sets_total: int
    sets_checked: int
    seconds: float
    decided_seconds: float = 0.0  # when every checked set's fits answer was in (before the highest loads were minimized)
    notes: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.sets_checked == self.sets_total

    @property
    def holds(self) -> bool | None:
        """True: every set was checked and fits; False: some set does not fit (or was not shown to); None:
        every checked set fits but not every set was checked."""
        if any(not f.fits for f in self.failures):
            return False
        return True if self.complete else None

    @property
    def proven(self) -> bool:
        """Every checked set's fits answer is exact (a placement, or a proof that there is none)."""
        return all(f.proven for f in self.failures)


def restart_policy(cluster: Cluster, failed: tuple[int, ...], ha_only: bool) -> tuple[np.ndarray, dict[str, tuple[int, ...]]]:
    """bool[g]: the guests on the failed nodes that restart elsewhere, and the others by reason.

    Not restarted: templates (nothing runs), guests with a local disk (it is on the failed node), and
    with `ha_only` guests that PVE HA does not manage (PVE restarts only those)."""
    on_failed = np.isin(cluster.guest_node, failed)
    reasons: dict[str, list[int]] = {"template": [], "not HA-managed": [], "local disk": []}
    restart = on_failed.copy()
    for g in np.flatnonzero(on_failed):
        if cluster.guest_template[g]:
            why = "template"
        elif ha_only and not cluster.guest_ha[g]:
            why = "not HA-managed"
        elif cluster.guest_local_disk[g]:
            why = "local disk"
        else:
            continue
        restart[g] = False
        reasons[why].append(int(cluster.guest_vmid[g]))
    return restart, {k: tuple(v) for k, v in reasons.items() if v}


def failure_scenario(base: Problem, failed: tuple[int, ...], ha_only: bool = False,
                     also_keep_out: frozenset[int] = frozenset()) -> FailureScenario:
    """The cluster right after `failed` (node indices of base.cluster) went down: the restarted guests may
    go to any surviving node their rules allow; nothing else moves. `also_keep_out`: vmids that do not
    restart either (the check of a placement that leaves them without a home)."""
    c = base.cluster
    restart, not_restarted = restart_policy(c, failed, ha_only)
    if also_keep_out:
        restart &= ~np.isin(c.guest_vmid, list(also_keep_out))
    scenario = with_failed(c, [c.node_names[n] for n in failed], restart, RESTART_MEMORY)
    problem = build_problem(scenario, scenario_settings(base.settings), check_domains=False)
    movers = np.isin(scenario.guest_node, failed)
    problem = replace(problem, rules=freeze(scenario, problem.rules, movers, caps_from=base.rules))
    return FailureScenario(failed=tuple(failed), problem=problem, movers=np.flatnonzero(movers),
                           not_restarted=not_restarted, ha_only=ha_only)


def place_groups(occ: Occupancy, groups: list[np.ndarray], mode: str = "spread") -> list[np.ndarray]:
    """Place `groups` (guests that go together: an affinity unit, or what of it can go anywhere) one by one,
    the most constrained (fewest allowed nodes) and then the largest first, each on a node the feasibility
    module allows; returns the groups that found none.
    mode "spread": the node with the lowest load after it (worst fit, for a low highest load); "pack": the
    node whose tightest hard limit is fullest after it (best fit, to fit more)."""
    p = occ.problem
    if not groups:
        return []
    hard, bal = p.hard, p.balance
    eligible = p.eligible_nodes
    scale = np.maximum(1.0, hard.limit[eligible].mean(axis=0)) if hard.names and eligible.size else None
    demand = [hard.demand[m].sum(axis=0) for m in groups]
    size = [float((d / scale).max()) if scale is not None else 0.0 for d in demand]
    choices = [int((p.rules.allowed[m].all(axis=0) & p.rules.eligible).sum()) for m in groups]
    order = sorted(range(len(groups)), key=lambda i: (choices[i], -size[i], int(groups[i][0])))
    left = []
    for i in order:
        members = groups[i]
        ok = occ.targets(members)
        if not ok.any():
            left.append(members)
            continue
        nodes = np.flatnonzero(ok)
        if mode == "pack" and hard.names:
            after = (occ.hard[nodes] + demand[i]) / np.maximum(1, hard.limit[nodes])
            score = -after.max(axis=1)
        else:
            weight = bal.demand[members].sum(axis=0)
            score = (100.0 * (occ.balance[nodes] + weight) / bal.cap[nodes]) @ bal.weights
        occ.move(members, int(nodes[int(np.argmin(score))]))
    return left


def max_load(problem: Problem, placement: np.ndarray) -> tuple[float | None, str | None, dict[str, float]]:
    """The weighted highest percent over the eligible nodes (Σ_r w_r · max_n percent; the highest percent
    itself for one balanced resource), the node with the highest weighted percent, and per resource."""
    eligible = problem.eligible_nodes
    if eligible.size == 0:
        return None, None, {}
    percent = check.node_percent(problem, placement)[eligible]
    loads = problem.loads
    columns = [RESOURCES.index(r) for r in loads.resources]
    weights = np.array(loads.weights, dtype=float) / sum(loads.weights)
    per = {r: round(float(percent[:, col].max()), 2) for r, col in zip(loads.resources, columns)}
    weighted = float(sum(w * percent[:, col].max() for w, col in zip(weights, columns)))
    node = int(eligible[int(np.argmax(percent[:, columns] @ weights))])
    return round(weighted, 2), problem.cluster.node_names[node], per


def _aggregate_shortfall(problem: Problem, occ: Occupancy, movers: np.ndarray,
                         stuck: list[int]) -> tuple[list[str], int]:
    """A counting proof: the `stuck` guests (no surviving node can take them even alone, now) stay without a
    home whatever happens; for the others, when some hard limit's demand exceeds all the room the surviving
    nodes they may use have left, at least the fewest of the largest ones that close the gap stay too.
    Returns the limits short (named) and that lower bound on how many guests find no home."""
    p, c = problem, problem.cluster
    rest = np.array([g for g in movers if int(g) not in set(stuck)], dtype=np.int64)
    usable = (p.rules.allowed[rest].any(axis=0) if rest.size else np.zeros(c.n_nodes, dtype=bool)) & p.rules.eligible
    room = occ.room()[usable].sum(axis=0) if usable.any() else np.zeros(len(p.hard.names), dtype=np.int64)
    demand = p.hard.demand[rest] if rest.size else np.zeros((0, len(p.hard.names)), dtype=np.int64)
    short, extra = [], 0
    for k, name in enumerate(p.hard.names):
        need = int(demand[:, k].sum())
        if need <= room[k]:
            continue
        unit = p.hard.units[k]
        short.append(f"{name}: the guests to restart need {_amount(need, unit)}, the surviving nodes have "
                     f"{_amount(int(room[k]), unit)} left")
        largest = np.sort(demand[:, k])[::-1]
        extra = max(extra, int(np.searchsorted(np.cumsum(largest), need - int(room[k]))) + 1)
    return short, len(stuck) + extra


def _stuck(problem: Problem, occ: Occupancy, movers: np.ndarray) -> list[int]:
    """Restarted guests that no surviving node can take even alone, before anything else restarted (pins
    to failed nodes only, or their nodes are full for them already): loads and group counts only grow as
    others restart, so they find no home in any placement."""
    return [int(g) for g in movers if not occ.targets([int(g)]).any()]


def _stuck_rules(scenario: FailureScenario, occ: Occupancy, stuck: list[int]) -> tuple[str, ...]:
    """Why each stuck guest has no node: the rule that keeps it off every surviving node, or each allowed
    node's full limit or group, named."""
    p, c = scenario.problem, scenario.problem.cluster
    out = []
    for g in stuck:
        nodes = np.flatnonzero(p.rules.allowed[g] & p.rules.eligible)
        if not nodes.size:
            sources = p.rules.pin_sources(g) or ["its affinity group's anchor"]
            out.append(f"{'; '.join(sources)}: {c.guest_label(g)} may run on failed nodes only")
            continue
        why = [occ.why_not([g], int(n), keep_groups=False) or "" for n in nodes[:2]]
        more = f" (and {nodes.size - 2} more nodes)" if nodes.size > 2 else ""
        out.append(f"{c.guest_label(g)}: " + "; ".join(w for w in why if w) + more)
    return tuple(out)


def _amount(value: int, unit: str) -> str:
    if unit == "MiB":
        return f"{value / 1024:.1f} GiB"
    if unit == "milli-cores":
        return f"{value / 1000:g} vCPUs"
    return f"{value} {unit}"


def _explain(scenario: FailureScenario, seconds: float) -> tuple[str, ...]:
    """The rules in conflict when every restarted guest must find a home (explain mode, the failed nodes
    themselves not being a rule: they are simply not there)."""
    p = scenario.problem
    restrict = np.ones((p.cluster.n_guests, p.cluster.n_nodes), dtype=bool)
    restrict[np.ix_(scenario.movers, np.array(scenario.failed, dtype=np.int64))] = False
    try:
        return conflicting_rules(p, max(0.2, seconds), restrict_to=restrict)
    except InfeasibleError as exc:  # pragma: no cover - explain never raises; kept for safety
        return exc.conflicts


def _refusals(scenario: FailureScenario, occ: Occupancy, unplaced: list[int]) -> tuple[str, ...]:
    """Why the first guests left without a home were refused, on the surviving node with the most room."""
    p, c = scenario.problem, scenario.problem.cluster
    out: list[str] = []
    nodes = np.flatnonzero(p.rules.eligible)
    if p.hard.names and nodes.size:
        free = (occ.room()[nodes] / np.maximum(1, p.hard.limit[nodes])).min(axis=1)
        nodes = nodes[np.argsort(-free, kind="stable")]
    for g in unplaced[:3]:
        reasons = [r for r in (occ.why_not([g], int(n), keep_groups=False) for n in nodes) if r]
        out.append(f"{c.guest_label(g)}: {reasons[0] if reasons else 'no surviving node is allowed'}")
    return tuple(out)


def _placement_check(base: Problem, scenario: FailureScenario, placement: np.ndarray, unplaced: list[int]) -> None:
    """Every placement shown passes the checker: with every guest placed, against the scenario itself;
    with some left without a home, against the same scenario without them."""
    if not unplaced:
        found = check.violations(scenario.problem, placement)
    else:
        smaller, keep = _without(base, scenario, unplaced)
        found = check.violations(smaller.problem, placement[keep])
    if found:
        raise InternalError(f"the checker rejected a what-if placement: {found[0].message}")


def _without(base: Problem, scenario: FailureScenario, guests: list[int]) -> tuple[FailureScenario, np.ndarray]:
    """The same failed set with `guests` not restarting, and bool[g] of the guests it keeps."""
    c = scenario.problem.cluster
    gone = frozenset(int(c.guest_vmid[g]) for g in guests)
    smaller = failure_scenario(base, scenario.failed, scenario.ha_only, also_keep_out=gone)
    return smaller, ~np.isin(c.guest_vmid, list(gone))


def check_failed_set(base: Problem, failed: tuple[int, ...], ha_only: bool, deadline: Deadline,
                     exact: bool = True, explain: bool = True, minimize_peak: bool = False) -> FailureResult:
    """Can the guests of the failed set restart on the surviving nodes, all of them, nothing else moving?

    A guest that no surviving node can take even alone (pinned to failed nodes only, or its nodes are full
    for it already) is left without a home whatever happens: it is named with its rule or limit, no
    solver needed. The greedy (Occupancy, worst fit, then best fit) proves
    "fits" when it places all the others. Otherwise a counting argument may prove how many are left at
    least; CP-SAT (restarted guests optional, maximize how many are placed, then minimize the highest
    load) decides it exactly; explain.py names the rules that block the rest. With `exact=False` only
    the fast part runs (a first pass over many sets)."""
    started = time.perf_counter()
    scenario = failure_scenario(base, failed, ha_only)
    p = scenario.problem
    movers = scenario.movers
    start = Occupancy(p)
    homeless = _stuck(p, start, movers)
    groups = _restart_groups(p, movers, set(homeless))
    notes: list[str] = []
    best_occ, best_left = None, None
    for mode in ("spread", "pack"):
        occ = Occupancy(p)
        left = place_groups(occ, groups, mode)
        if best_left is None or _count(left) < _count(best_left):
            best_occ, best_left = occ, left
        if not left:
            break
    assert best_occ is not None and best_left is not None
    placement = best_occ.placement.copy()
    unplaced = sorted(set(homeless) | {int(g) for m in best_left for g in m})
    short, lower = _aggregate_shortfall(p, start, movers, homeless)
    method, peak_proven = "greedy", False
    run_solver = exact and (len(unplaced) > lower or minimize_peak)
    if run_solver and deadline.remaining() > 0.1 and _variables(p, movers) <= MAX_EXACT_VARIABLES:
        optional = np.zeros(p.cluster.n_guests, dtype=bool)
        optional[movers] = True
        stages = ("unplaced", "peak") if unplaced else ("peak",)
        options = BuildOptions(optional=optional if unplaced else None, hint=placement)
        result = solve_lexicographic(p, solver_of(base.settings), options, deadline.remaining(), stages=stages)
        if result.infeasible:
            raise InternalError("a failure scenario without any restart is infeasible; please report")
        if result.found:
            found = result.placement
            new_unplaced = sorted(int(g) for g in movers if found[g] < 0)
            if len(new_unplaced) <= len(unplaced):
                placement, unplaced = np.where(found >= 0, found, p.current), new_unplaced
                peak_proven = bool(result.proven.get("peak", False))
                if "unplaced" in result.values:
                    method = "cp-sat"
        lower = max(lower, int(result.bounds.get("unplaced", 0)))
        if not result.found and unplaced:
            notes.append("CP-SAT found nothing better in time")
    proven = len(unplaced) <= lower
    if unplaced and method == "greedy":
        # The greedy left as many without a home as a counting argument proves must be: no solver needed.
        method = "counting proof" if proven else ("time limit" if exact else "greedy")
    _placement_check(base, scenario, placement, unplaced)
    blocking: tuple[str, ...] = ()
    if unplaced:
        blocking = _stuck_rules(scenario, start, [g for g in unplaced if g in set(homeless)])
        rest = [g for g in unplaced if g not in set(homeless)]
        if rest:
            named: tuple[str, ...] = ()
            if explain and deadline.remaining() > 0.2:
                target = scenario if not homeless else _without(base, scenario, homeless)[0]
                named = _explain(target, min(EXPLAIN_SECONDS, deadline.remaining()))
            blocking += named or tuple(short) or _refusals(scenario, Occupancy(p, placement), rest)
    c = p.cluster
    peak, peak_node, per_resource = max_load(p, placement)
    placed = [int(g) for g in movers if int(g) not in set(unplaced)]
    return FailureResult(
        nodes=tuple(c.node_names[n] for n in failed), fits=not unplaced, proven=proven, method=method,
        restarted=len(movers), unplaced=tuple(int(c.guest_vmid[g]) for g in unplaced),
        unplaced_lower_bound=min(lower, len(unplaced)), blocking=blocking,
        max_load=peak, max_load_node=peak_node, max_load_per_resource=per_resource, max_load_proven=peak_proven,
        restarts=tuple((int(c.guest_vmid[g]), c.node_names[int(placement[g])]) for g in placed),
        not_restarted=scenario.not_restarted, seconds=time.perf_counter() - started, notes=tuple(notes))


def _count(groups: list[np.ndarray]) -> int:
    return sum(len(m) for m in groups)


def _restart_groups(problem: Problem, movers: np.ndarray, homeless: set[int]) -> list[np.ndarray]:
    """The restarted guests as groups that go together: each affinity unit without its members that have
    no node at all (they stay without a home; the others still restart together)."""
    out = []
    for u in (np.unique(problem.unit_of[movers]) if len(movers) else []):
        if u < 0:
            continue
        members = np.array([g for g in problem.units[int(u)] if int(g) not in homeless], dtype=np.int64)
        if members.size:
            out.append(members)
    return out


def _variables(problem: Problem, movers: np.ndarray) -> int:
    return int(problem.rules.allowed[movers].sum()) if len(movers) else 0


def failure_sets(base: Problem, k: int, ha_only: bool) -> list[tuple[int, ...]]:
    """Every set of k eligible nodes, the heaviest first (the most restart demand, relative to the cluster):
    with a time limit the likely worst cases are checked first."""
    eligible = [int(n) for n in base.eligible_nodes]
    if k < 1:
        raise InputError("--n-plus: k must be at least 1")
    if k >= len(eligible):
        raise InputError(f"--n-plus {k}: the cluster has only {len(eligible)} eligible node(s)")
    c = base.cluster
    hard = base.hard
    weight = np.zeros(c.n_nodes)
    if hard.names:
        total = np.maximum(1.0, hard.limit[base.eligible_nodes].sum(axis=0))
        restart, _ = restart_policy(c, tuple(eligible), ha_only)
        demand = (hard.demand[restart] / total).sum(axis=1)
        np.add.at(weight, c.guest_node[restart], demand)
    sets = list(itertools.combinations(eligible, k))
    return sorted(sets, key=lambda s: (-float(weight[list(s)].sum()), s))


def n_plus_k(cluster: Cluster, settings: Settings, k: int = 1, ha_only: bool = False,
             deadline: Deadline | None = None, max_sets: int | None = None) -> NPlusK:
    """N+k: for every set of k eligible nodes (the heaviest first, until the deadline), can the guests on
    them restart on the surviving nodes, nothing else moving? Worst case first in the answer.

    Two passes on one deadline: first the fast heuristics on every set (a greedy placement proves
    "fits"; a counting argument may prove "does not fit"), then CP-SAT and the explanation for the sets
    still open, the worst first."""
    started = time.perf_counter()
    deadline = deadline or Deadline(settings.time_limit)
    base = build_problem(cluster, settings)
    sets = failure_sets(base, k, ha_only)
    if max_sets is not None:
        sets = sets[:max_sets]
    quick: list[tuple[tuple[int, ...], FailureResult]] = []
    notes: list[str] = []
    first_pass = deadline.sub(deadline.remaining() * 0.6)
    for failed in sets:
        if first_pass.expired() and quick:
            break
        quick.append((failed, check_failed_set(base, failed, ha_only, first_pass, exact=False, explain=False)))
    results = dict(quick)
    open_sets = sorted((f for f, r in quick if not r.proven), key=lambda f: _severity(results[f]))
    for i, failed in enumerate(open_sets):
        if deadline.remaining() < 0.2:
            notes.append(f"{len(open_sets) - i} set(s) not decided by the heuristics were not given to CP-SAT in time")
            break
        share = deadline.sub(deadline.remaining() / (len(open_sets) - i))
        results[failed] = check_failed_set(base, failed, ha_only, share, exact=True, explain=True)
    decided = time.perf_counter() - started
    # Third pass, with what is left: the least possible highest load, exactly, where the model is small.
    for failed in sorted(results, key=lambda f: _severity(results[f])):
        r = results[failed]
        if deadline.remaining() < 0.5 or r.max_load_proven or r.max_load is None or len(base.eligible_nodes) - k < 2:
            continue
        if r.restarted * (len(base.eligible_nodes) - k) > PEAK_MAX_VARIABLES:
            continue
        share = deadline.sub(min(deadline.remaining() * 0.5, max(0.5, deadline.remaining() / len(results))))
        better = check_failed_set(base, failed, ha_only, share, exact=True, explain=False, minimize_peak=True)
        if better.fits == r.fits and len(better.unplaced) <= len(r.unplaced):
            # Keep how the fits answer was decided (the method) when it already was exact.
            results[failed] = replace(better, blocking=r.blocking if better.unplaced else (),
                                      method=r.method if r.proven else better.method)
    if len(quick) < len(sets):
        notes.append(f"only {len(quick)} of {len(sets)} sets of {k} node(s) were checked within the time limit "
                     f"(the heaviest first); the others are not covered by this answer")
    ordered = sorted(results.values(), key=_severity)
    return NPlusK(k=k, ha_only=ha_only, failures=tuple(ordered), sets_total=len(sets), sets_checked=len(quick),
                  seconds=time.perf_counter() - started, decided_seconds=decided, notes=tuple(notes))


def _severity(result: FailureResult) -> tuple:
    """Worst first: not fitting, then the most left without a home, then the highest load."""
    return (result.fits, -len(result.unplaced), -(result.max_load or 0.0), result.nodes)


# ============================================================================= drain and headroom (older questions)


@dataclass(frozen=True)
class DrainOutcome:
    nodes: tuple[str, ...]
    fits: bool
    result: PlanResult | None
    reason: str = ""


def drain(cluster: Cluster, settings: Settings, nodes: tuple[str, ...], deadline: Deadline | None = None) -> DrainOutcome:
    """Plan the cluster as if the named nodes were in maintenance, with no migration budget: do all guests
    fit on the rest, which moves would it take, how balanced would it end up?"""
    unknown = [n for n in nodes if n not in cluster.node_names]
    if unknown:
        raise InputError(f"--drain: unknown node {unknown[0]!r} (nodes: {', '.join(cluster.node_names)})")
    scenario = replace(settings, maintenance_nodes=tuple(settings.maintenance_nodes) + tuple(nodes),
                       max_migrations=None, balanciness=0.0)
    try:
        return DrainOutcome(nodes, True, make_plan(cluster, scenario, "cpsat", deadline=deadline))
    except InfeasibleError as exc:
        return DrainOutcome(nodes, False, None, str(exc))


@dataclass(frozen=True)
class Headroom:
    per_node: dict[str, int]  # eligible node → how many more fit
    limiting: dict[str, str]  # node → the hard limit that binds first

    @property
    def total(self) -> int:
        return sum(self.per_node.values())


def headroom(cluster: Cluster, settings: Settings, guest: Mapping[str, Any]) -> Headroom:
    """Per eligible node, how many more guests of one shape fit every hard limit (rules not considered;
    `room` answers the rule-aware question)."""
    base = build_problem(cluster, settings)
    eligible = base.eligible_nodes
    if eligible.size == 0:
        return Headroom({}, {})
    probe = build_problem(with_guest(base.cluster, {"vmid": NEW_VMID, "name": "probe", "status": "running", **guest,
                                                     "node": base.cluster.node_names[int(eligible[0])]}), settings)
    need = probe.hard.demand[-1]
    room = Occupancy(base).room()
    per_node, limiting = {}, {}
    for n in eligible:
        best, why = None, ""
        for k, name in enumerate(base.hard.names):
            if need[k] <= 0:
                continue
            fit = int(room[n, k]) // int(need[k])
            if best is None or fit < best:
                best, why = fit, name
        node = base.cluster.node_names[int(n)]
        per_node[node] = int(best if best is not None else 0)
        limiting[node] = why
    return Headroom(per_node, limiting)


# ============================================================================= new guests: room and additions

#: vmids of what-if guests (PVE's vmids stop below 1,000,000,000).
NEW_VMID_BASE = 900_000_000
#: Most copies of a shape a room question considers (a shape that needs nothing under every hard limit).
MAX_COPIES = 20_000

_SIZE = r"[0-9]*\.?[0-9]+\s*[kmgtp]?i?b?"
_SHAPE = re.compile(rf"^\s*([0-9]*\.?[0-9]+)\s*c\s*({_SIZE})\s*(?::\s*({_SIZE}))?\s*$", re.IGNORECASE)
_COUNTED = re.compile(r"^\s*(\d+)\s*[x×*]\s*(.+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Shape:
    """A new guest's size: vCPUs, memory, and local disk (0: its disks are on shared storage)."""

    cpu_milli: int
    mem_mib: int
    disk_mib: int = 0

    @property
    def text(self) -> str:
        cores = self.cpu_milli / 1000
        out = f"{cores:g}c{_size_text(self.mem_mib)}"
        return out + (f":{_size_text(self.disk_mib)}" if self.disk_mib else "")

    def entry(self, vmid: int, node: str, name: str, tags: tuple[str, ...]) -> dict[str, Any]:
        """The model-file guest entry of one new guest: running, using all of its memory and vCPUs (a new
        guest's future use is unknown: the safe figure), HA-managed (so it restarts after a failure)."""
        entry: dict[str, Any] = {
            "vmid": vmid, "name": name, "type": "vm", "node": node, "status": "running",
            "cpus": self.cpu_milli / 1000, "cpu_usage": self.cpu_milli / 1000,
            "memory": f"{self.mem_mib}M", "memory_used": f"{self.mem_mib}M", "ha": True,
            "tags": list(tags),
        }
        if self.disk_mib:
            entry.update(disk=f"{self.disk_mib}M", disk_used=f"{self.disk_mib}M", local_disk=True)
        return entry


def _size_text(mib: int) -> str:
    if mib % (1024 * 1024) == 0:
        return f"{mib // (1024 * 1024)}T"
    if mib % 1024 == 0:
        return f"{mib // 1024}G"
    return f"{mib}M"


def parse_shape(text: str, flag: str = "--room") -> Shape:
    """"4c16G" (4 vCPUs, 16 GiB), "0.5c512M", "8c32G:100G" (with a 100 GiB local disk)."""
    match = _SHAPE.match(str(text))
    if not match:
        raise InputError(f"{flag}: cannot read shape {text!r} (use CORESc MEMORY[:DISK], e.g. 4c16G or 8c32G:100G)")
    cores, memory, disk = match.groups()
    try:
        shape = Shape(cpu_milli=parse_cores_milli(cores, flag), mem_mib=parse_size_mib(memory, flag),
                      disk_mib=parse_size_mib(disk, flag) if disk else 0)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if shape.cpu_milli <= 0 or shape.mem_mib <= 0:
        raise InputError(f"{flag}: a shape needs more than 0 cores and 0 memory, got {text!r}")
    return shape


def parse_counted_shape(text: str, flag: str = "--add") -> tuple[int, Shape]:
    """"10x4c16G": ten guests of 4 vCPUs and 16 GiB; a shape alone means one."""
    match = _COUNTED.match(str(text))
    count, rest = (int(match.group(1)), match.group(2)) if match else (1, str(text))
    if count < 1:
        raise InputError(f"{flag}: a count must be at least 1, got {text!r}")
    if count > MAX_NEW_GUESTS:
        raise InputError(f"{flag}: at most {MAX_NEW_GUESTS:,} new guests at once, got {count:,}")
    return count, parse_shape(rest, flag)


def parse_tags(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(sorted({t.strip().lower() for t in re.split(r"[;,\s]+", str(text)) if t.strip()}))


@dataclass(frozen=True)
class NewGuests:
    """A scenario with new guests: they may go to any eligible node their rules allow, nothing else moves;
    the hard limits are today's (the new guests' first node does not raise its limit)."""

    problem: Problem
    new: np.ndarray  # int[]: the new guests' indices
    kind: np.ndarray  # int[]: which shape (index into `shapes`) each new guest has
    shapes: tuple[Shape, ...]


def new_guest_scenario(base: Problem, shapes: list[tuple[Shape, int]], tags: tuple[str, ...] = (),
                       nodes: list[str] | None = None) -> NewGuests:
    """`count` new guests of every (shape, count), carrying `tags` (their rules), first on `nodes` (default:
    the first eligible node; where they start matters only to a placement check)."""
    c = base.cluster
    if base.eligible_nodes.size == 0:
        raise InputError("no online node outside maintenance can take a new guest")
    first = c.node_names[int(base.eligible_nodes[0])]
    if sum(count for _, count in shapes) > MAX_NEW_GUESTS:
        raise InputError(f"more than {MAX_NEW_GUESTS:,} new guests to place (--add, or what fits of a --room shape); "
                         f"ask with fewer or larger guests")
    entries, kind = [], []
    for s, (shape, count) in enumerate(shapes):
        for _ in range(count):
            i = len(entries)
            node = nodes[i] if nodes is not None else first
            entries.append(shape.entry(NEW_VMID_BASE + i, node, f"new-{i + 1}", tags))
            kind.append(s)
    grown = with_added_guests(c, entries)
    problem = build_problem(grown, scenario_settings(base.settings))
    problem = replace(problem, loads=problem.loads.with_limits(base.hard.limit))
    movers = np.zeros(grown.n_guests, dtype=bool)
    movers[c.n_guests:] = True
    problem = replace(problem, rules=freeze(grown, problem.rules, movers, caps_from=base.rules, new_group_cap=1))
    return NewGuests(problem=problem, new=np.arange(c.n_guests, grown.n_guests, dtype=np.int64),
                     kind=np.array(kind, dtype=np.int64), shapes=tuple(s for s, _ in shapes))


@dataclass(frozen=True)
class RoomResult:
    """How many more guests of one shape fit, honouring the rules they carry."""

    shape: Shape
    tags: tuple[str, ...]
    total: int
    per_node: dict[str, int]  # the placement that reaches `total`
    exact: bool
    method: str  # per-node argument | cp-sat | greedy (lower bound)
    lower_bound: int  # what the greedy placed (a valid placement: proven reachable)
    upper_bound: int  # proven: no more than this fit
    limiting: dict[str, str]  # node → what stops one more there, in that placement
    keep_n_plus_1: bool
    seconds: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class AddResult:
    """Whether guests of several shapes fit together, where, and how balanced the cluster ends."""

    requested: tuple[tuple[Shape, int], ...]
    placed: tuple[int, ...]  # per requested shape
    fits: bool
    proven: bool  # fits True is always proven (a placement); fits False is proven when this is True
    method: str
    per_node: dict[str, dict[str, int]]  # node → shape text → count
    spread_before: float
    spread_after: float
    spread_proven: bool  # the spread is the least possible with these guests added (nothing else moving)
    max_load: float | None
    max_load_node: str | None
    keep_n_plus_1: bool
    blocking: tuple[str, ...]
    seconds: float
    notes: tuple[str, ...] = ()


def _demand_of(base: Problem, shape: Shape, tags: tuple[str, ...]) -> np.ndarray:
    """int64[k]: what one guest of `shape` adds under each hard limit (a one-guest scenario asks load_model)."""
    probe = new_guest_scenario(base, [(shape, 1)], tags)
    return probe.problem.hard.demand[int(probe.new[0])]


def _room_bound(base: Problem, need: np.ndarray) -> int:
    """Σ over eligible nodes of how many copies fit each node's hard limits alone (no rules): an upper bound."""
    room = Occupancy(base).room()[base.eligible_nodes]
    positive = need > 0
    if not positive.any():
        return MAX_COPIES
    per_node = (room[:, positive] // need[positive]).min(axis=1)
    return int(min(MAX_COPIES, per_node.sum()))


def _fill_nodes(problem: Problem, new: np.ndarray, nodes: np.ndarray) -> tuple[Occupancy, dict[int, int], dict[int, str]]:
    """Put new guests (in order) on each of `nodes` in turn until the node refuses the next one; the refusal
    is that node's limiting reason. Nodes are independent for identical guests without an affinity group,
    so the total is the maximum then (see `room`)."""
    occ = Occupancy(problem)
    for g in new:
        occ.lift(int(g))
    queue = [int(g) for g in new]
    counts: dict[int, int] = {}
    limiting: dict[int, str] = {}
    for n in nodes:
        n = int(n)
        counts[n] = 0
        while queue:
            why = occ.why_not([queue[0]], n, keep_groups=False)
            if why is not None:
                limiting[n] = why
                break
            occ.move([queue.pop(0)], n)
            counts[n] += 1
        else:
            limiting[n] = "not reached (every candidate placed)"
    return occ, counts, limiting


def _next_refusal(occ: Occupancy, probe: int, nodes: np.ndarray) -> dict[int, str]:
    """What stops one more guest like `probe` (an unplaced copy) on each node, in the state of `occ`."""
    out = {}
    for n in nodes:
        why = occ.why_not([probe], int(n), keep_groups=False) if probe >= 0 else None
        out[int(n)] = why or "one more would fit"
    return out


def room(cluster: Cluster, settings: Settings, shape: Shape, tags: tuple[str, ...] = (),
         keep_n_plus_1: bool = False, ha_only: bool = False, deadline: Deadline | None = None) -> RoomResult:
    """How many more guests of `shape` (carrying `tags`: their pins, groups) fit, cluster-wide and per node,
    nothing that runs moving; nodes in maintenance take none.

    Exact, by one of: the per-node argument (identical guests in no affinity group: every node takes what
    it takes whatever the others do, so filling each node until it refuses the next one is the maximum);
    the one-node argument (an affinity group: all on one node, so the best node's fill); CP-SAT maximizing
    the count (`keep_n_plus_1`: every single-node failure that has an exact answer today must stay as
    good, with the new guests restarting too; the greedy count, a valid placement, is the lower bound and
    the count without N+1 an upper bound)."""
    started = time.perf_counter()
    deadline = deadline or Deadline(settings.time_limit)
    base = build_problem(cluster, settings)
    need = _demand_of(base, shape, tags)
    upper = _room_bound(base, need)
    # One candidate more than can fit: the one left over tells what stops one more on each node.
    scenario = new_guest_scenario(base, [(shape, upper + 1)], tags)
    p, new = scenario.problem, scenario.new
    eligible = p.eligible_nodes
    c = p.cluster
    notes: list[str] = []
    grouped = any(p.affinity_of[int(g)] for g in new[:1])
    if not grouped:
        occ, counts, _ = _fill_nodes(p, new, eligible)
        method = "per-node argument"
    else:
        # An affinity group puts every new guest on one node (with the group's members that stay, if any):
        # the best single node's fill is the maximum.
        fills = [_fill_nodes(p, new, np.array([n])) for n in eligible]
        occ, counts, _ = max(fills, key=lambda fill: sum(fill[1].values()))
        method = "one-node argument"
    placement = occ.placement.copy()
    lower = upper = sum(counts.values())
    exact = True
    total = lower
    if keep_n_plus_1:
        # The count without N+1 bounds the count with it: the joint model gets that many candidates (one more
        # for the refusals), which keeps it small.
        bound = upper
        scenario = new_guest_scenario(base, [(shape, bound + 1)], tags)
        p, new = scenario.problem, scenario.new
        robust = _robust_count(base, scenario, ha_only, deadline, notes)
        placement, total, exact, method, lower, upper = robust
        upper = min(upper, bound)
        exact = total >= upper
        method = "cp-sat (with N+1)" if exact else method
    placed = [int(g) for g in new if placement[g] >= 0]
    _check_new_placement(base, scenario, placement, tags)
    probe = [int(g) for g in new if placement[g] < 0]
    refusal = _next_refusal(_with_unplaced(p, placement, new), probe[0] if probe else -1, eligible)
    per_node = {c.node_names[int(n)]: int((placement[placed] == n).sum()) for n in eligible}
    return RoomResult(shape=shape, tags=tags, total=len(placed), per_node=per_node, exact=exact, method=method,
                      lower_bound=lower, upper_bound=len(placed) if exact else max(upper, len(placed)),
                      limiting={c.node_names[n]: refusal[n] for n in refusal}, keep_n_plus_1=keep_n_plus_1,
                      seconds=time.perf_counter() - started, notes=tuple(notes))


def _with_unplaced(problem: Problem, placement: np.ndarray, new: np.ndarray) -> Occupancy:
    """The occupancy of `placement` where new guests at −1 are on no node."""
    start = np.where(placement >= 0, placement, problem.current)
    occ = Occupancy(problem, start)
    for g in new:
        if placement[g] < 0:
            occ.lift(int(g))
    return occ


def _check_new_placement(base: Problem, scenario: NewGuests, placement: np.ndarray, tags: tuple[str, ...]) -> NewGuests:
    """The cluster with the placed new guests where the answer puts them passes the checker (today's limits,
    the groups' caps, every rule); returns that scenario."""
    new = scenario.new
    placed = [int(g) for g in new if placement[g] >= 0]
    counts: dict[int, int] = {}
    for g in placed:
        counts[int(scenario.kind[g - new[0]])] = counts.get(int(scenario.kind[g - new[0]]), 0) + 1
    order = sorted(placed, key=lambda g: (int(scenario.kind[g - new[0]]), g))
    nodes = [scenario.problem.cluster.node_names[int(placement[g])] for g in order]
    shapes = [(scenario.shapes[k], counts[k]) for k in sorted(counts)]
    result = new_guest_scenario(base, shapes, tags, nodes=nodes) if shapes else new_guest_scenario(base, [], tags)
    found = check.violations(result.problem, result.problem.current)
    if found:
        raise InternalError(f"the checker rejected a what-if placement of new guests: {found[0].message}")
    return result


# ----------------------------------------------------------------------------- keeping N+1 while adding


def _failure_copy(base: Problem, scenario: NewGuests, failed: int, ha_only: bool, allowed_unplaced: int):
    """Scenario `failed` of the cluster with every new guest: the new guests stay movers (their node is a
    stage-0 decision), the guests that restart from `failed` must find a home but for `allowed_unplaced`."""
    p0 = scenario.problem
    cl = p0.cluster
    restart, _ = restart_policy(cl, (failed,), ha_only)
    is_new = np.zeros(cl.n_guests, dtype=bool)
    is_new[scenario.new] = True
    after = with_failed(cl, [cl.node_names[failed]], restart | is_new, RESTART_MEMORY)
    problem = build_problem(after, scenario_settings(base.settings), check_domains=False)
    problem = replace(problem, loads=problem.loads.with_limits(base.hard.limit))
    new_here = np.isin(after.guest_vmid, cl.guest_vmid[scenario.new])
    movers = np.isin(after.guest_node, [failed]) | new_here
    problem = replace(problem, rules=freeze(after, problem.rules, movers, caps_from=p0.rules))
    index = {int(v): i for i, v in enumerate(after.guest_vmid)}
    new_guests = np.array([index[int(cl.guest_vmid[g])] for g in scenario.new], dtype=np.int64)
    new_restart = ~np.asarray(cl.guest_local_disk[scenario.new], dtype=bool)
    displaced = np.flatnonzero(movers & ~new_here)
    return FailureCopy(name=cl.node_names[failed], problem=problem, failed=(failed,), new_guests=new_guests,
                       new_restart=new_restart, displaced=displaced, allowed_unplaced=int(allowed_unplaced))


def _copy_keeps(copy, nodes0: np.ndarray) -> bool:
    """Greedy: with the new guests where stage 0 put them (nodes0[i], −1: nowhere), do the guests that restart
    from the failed node (the new ones there included) find homes, all new ones and all but the allowance
    of the others? True is a proof (a placement); False may be the greedy's weakness."""
    pf = copy.problem
    failed = copy.failed[0]
    placement = pf.current.copy()
    for i, gf in enumerate(copy.new_guests):
        if nodes0[i] >= 0:
            placement[gf] = nodes0[i]
    occ = Occupancy(pf, placement)
    gone = [int(gf) for i, gf in enumerate(copy.new_guests)
            if nodes0[i] < 0 or (nodes0[i] == failed and not copy.new_restart[i])]
    for gf in gone:
        occ.lift(gf)
    arriving = [int(gf) for i, gf in enumerate(copy.new_guests) if nodes0[i] == failed and copy.new_restart[i]]
    movers = np.array(list(copy.displaced) + arriving, dtype=np.int64)
    stuck = set(_stuck(pf, occ, movers))
    if len(stuck & set(arriving)) or len(stuck) > copy.allowed_unplaced:
        return False
    groups = _restart_groups(pf, movers, stuck)
    for mode in ("spread", "pack"):
        trial = occ.copy()
        left = place_groups(trial, groups, mode)
        lost = {int(g) for m in left for g in m}
        if not (lost & set(arriving)) and len(lost) + len(stuck) <= copy.allowed_unplaced:
            return True
    return False


def _kept_failures(base: Problem, ha_only: bool, deadline: Deadline, notes: list[str]) -> list[tuple[int, int]]:
    """(node, today's proven fewest guests without a home) of every single-node failure with an exact answer."""
    kept = []
    for n in base.eligible_nodes:
        r = check_failed_set(base, (int(n),), ha_only, deadline.sub(deadline.remaining() / 4), explain=False)
        if r.proven:
            kept.append((int(n), len(r.unplaced)))
        else:
            notes.append(f"failure of {r.nodes[0]}: no exact answer today, not kept")
    broken = [(base.cluster.node_names[n], u) for n, u in kept if u]
    if broken:
        notes.append("N+1 does not hold today for " + ", ".join(f"{n} ({u} without a home)" for n, u in broken)
                     + "; those failures are kept from getting worse")
    return kept


def _robust_greedy(p0: Problem, new: np.ndarray, copies: list, deadline: Deadline) -> np.ndarray:
    """New guests one by one, each on the least loaded node where it fits and every kept failure still
    passes the greedy check; stops at the first guest with no such node (they are identical)."""
    occ = Occupancy(p0)
    for g in new:
        occ.lift(int(g))
    nodes0 = np.full(len(new), -1, dtype=np.int64)
    bal = p0.balance
    for i, g in enumerate(new):
        if deadline.expired():
            break
        ok = np.flatnonzero(occ.targets([int(g)]) & p0.rules.eligible)
        if not ok.size:
            break
        load = (100.0 * (occ.balance[ok] + bal.demand[g]) / bal.cap[ok]) @ bal.weights
        placed = False
        for n in ok[np.argsort(load, kind="stable")]:
            nodes0[i] = n
            if all(_copy_keeps(copy, nodes0) for copy in copies):
                occ.move([int(g)], int(n))
                placed = True
                break
            nodes0[i] = -1
        if not placed:
            break
    return occ.placement.copy()


def _robust_solve(base: Problem, scenario: NewGuests, ha_only: bool, deadline: Deadline, notes: list[str],
                  stages: tuple[str, ...] = ("unplaced",), identical: list[list[int]] | None = None):
    """Greedy, then the joint CP-SAT model: (placement, count, proven upper bound on the count, copies)."""
    p0, new = scenario.problem, scenario.new
    kept = _kept_failures(base, ha_only, deadline.sub(deadline.remaining() * 0.2), notes)
    copies = [_failure_copy(base, scenario, n, ha_only, u) for n, u in kept]
    greedy = _robust_greedy(p0, new, copies, deadline.sub(deadline.remaining() * 0.3))
    placement, upper = greedy, len(new)
    solved = False
    optional = np.zeros(p0.cluster.n_guests, dtype=bool)
    optional[new] = True
    variables = _variables(p0, new) + sum(_variables(c.problem, np.concatenate([c.displaced, c.new_guests]))
                                          for c in copies)
    if deadline.remaining() > 0.2 and variables <= MAX_EXACT_VARIABLES * 2:
        built0, built = build_robust(p0, new, BuildOptions(optional=optional, hint=greedy), copies)
        for same in (identical if identical is not None else [[int(g) for g in new]]):
            order_identical(built0, same)
        result = solve_stages(built0, solver_of(base.settings), deadline.remaining(), stages, decode_also=built)
        solved = True
        if result.found:
            count = int((result.placement[new] >= 0).sum())
            if count >= int((greedy[new] >= 0).sum()):
                placement = result.placement
                _check_copies(base, scenario, placement, result.extra, copies)
            upper = len(new) - int(result.bounds.get("unplaced", 0))
        elif result.infeasible:
            raise InternalError("the N+1-keeping model is infeasible although adding nothing is a solution")
    else:
        notes.append(f"the joint model would have {variables} variables: greedy count only")
    return placement, int((placement[new] >= 0).sum()), upper, int((greedy[new] >= 0).sum()), solved


def _check_copies(base: Problem, scenario: NewGuests, placement: np.ndarray, extra: dict, copies: list) -> None:
    """Every failure scenario of the answer passes the checker: the new guests that stage 0 did not place
    removed, each restarted guest where the joint model put it, the ones it left without a home removed."""
    for copy in copies:
        found = extra.get(copy.name)
        if found is None:
            continue
        pf = copy.problem
        drop = np.zeros(pf.cluster.n_guests, dtype=bool)
        for i, gf in enumerate(copy.new_guests):
            if placement[scenario.new[i]] < 0 or found[gf] < 0:
                drop[gf] = True
        drop[copy.displaced[found[copy.displaced] < 0]] = True
        if int((found[copy.displaced] < 0).sum()) > copy.allowed_unplaced:
            raise InternalError(f"the joint model left too many guests without a home when {copy.name} fails")
        smaller = without_guests(pf.cluster, drop)
        problem = build_problem(smaller, scenario_settings(base.settings), check_domains=False)
        problem = replace(problem, loads=problem.loads.with_limits(base.hard.limit))
        movers = np.isin(smaller.guest_vmid, pf.cluster.guest_vmid[~drop & pf.rules.movable])
        problem = replace(problem, rules=freeze(smaller, problem.rules, movers, caps_from=scenario.problem.rules))
        violations = check.violations(problem, found[~drop])
        if violations:
            raise InternalError(f"the checker rejected the placement after {copy.name} fails: {violations[0].message}")


def _robust_count(base: Problem, scenario: NewGuests, ha_only: bool, deadline: Deadline, notes: list[str]):
    placement, total, upper, greedy_total, solved = _robust_solve(base, scenario, ha_only, deadline, notes)
    exact = total >= upper
    method = "cp-sat (with N+1)" if exact else ("cp-sat, not proven (with N+1)" if solved
                                                else "greedy (lower bound, with N+1)")
    return placement, total, exact, method, greedy_total, max(upper, total)


def _identical(scenario: NewGuests) -> list[list[int]]:
    """The new guests grouped by shape (identical guests, for symmetry breaking)."""
    return [[int(g) for g, k in zip(scenario.new, scenario.kind) if k == s] for s in range(len(scenario.shapes))]


def add_guests(cluster: Cluster, settings: Settings, requests: list[tuple[int, Shape]], tags: tuple[str, ...] = (),
               keep_n_plus_1: bool = False, ha_only: bool = False, deadline: Deadline | None = None) -> AddResult:
    """Do these new guests (count × shape, all carrying `tags`) fit together, nothing that runs moving; where;
    and how balanced is the cluster then? A greedy placement (largest first, least loaded node) proves
    "fits"; CP-SAT maximizes how many are placed and then minimizes the spread (exact when proven); with
    `keep_n_plus_1` the joint model keeps every single-node failure with an exact answer as good as today."""
    started = time.perf_counter()
    deadline = deadline or Deadline(settings.time_limit)
    base = build_problem(cluster, settings)
    scenario = new_guest_scenario(base, [(shape, count) for count, shape in requests], tags)
    p, new = scenario.problem, scenario.new
    notes: list[str] = []
    groups = _restart_groups(p, new, set())
    best = None
    for mode in ("spread", "pack"):
        occ = Occupancy(p)
        for g in new:
            occ.lift(int(g))
        left = place_groups(occ, groups, mode)
        if best is None or _count(left) < _count(best[1]):
            best = (occ, left)
        if not left:
            break
    assert best is not None
    placement = best[0].placement.copy()
    method, proven, spread_proven = "greedy", not best[1], False
    if keep_n_plus_1:
        placement, _, upper, _, _ = _robust_solve(base, scenario, ha_only, deadline, notes,
                                               stages=("unplaced", "spread"), identical=_identical(scenario))
        placed = int((placement[new] >= 0).sum())
        method, proven = "cp-sat (with N+1)", placed >= upper or placed == len(new)
    elif deadline.remaining() > 0.1 and _variables(p, new) <= MAX_EXACT_VARIABLES:
        optional = np.zeros(p.cluster.n_guests, dtype=bool)
        optional[new] = True
        built = build(p, BuildOptions(optional=optional, hint=placement))
        for same in _identical(scenario):
            order_identical(built, same)
        result = solve_stages(built, solver_of(settings), deadline.remaining(), ("unplaced", "spread"))
        if result.found and (result.placement[new] >= 0).sum() >= (placement[new] >= 0).sum():
            placement = result.placement
            method = "cp-sat"
            spread_proven = bool(result.proven.get("spread", False)) and bool(result.proven.get("unplaced", False))
        if result.proven.get("unplaced") or (result.found and (result.placement[new] >= 0).all()):
            proven = True
    checked = _check_new_placement(base, scenario, placement, tags)
    fits = bool((placement[new] >= 0).all())
    blocking: tuple[str, ...] = ()
    if not fits and deadline.remaining() > 0.2:
        blocking = conflicting_rules(p, min(EXPLAIN_SECONDS, deadline.remaining()))
    if not fits and not blocking and keep_n_plus_1:
        blocking = ("keeping N+1: with more of them some node failure would leave guests without a home",)
    c = p.cluster
    per_node: dict[str, dict[str, int]] = {}
    for g, k in zip(new, scenario.kind):
        if placement[g] >= 0:
            row = per_node.setdefault(c.node_names[int(placement[g])], {})
            row[scenario.shapes[k].text] = row.get(scenario.shapes[k].text, 0) + 1
    placed_per_shape = tuple(int(((placement[new] >= 0) & (scenario.kind == s)).sum())
                             for s in range(len(scenario.shapes)))
    after = checked.problem
    peak, peak_node, _ = max_load(after, after.current)
    return AddResult(requested=tuple((shape, count) for count, shape in requests), placed=placed_per_shape,
                     fits=fits, proven=fits or proven, method=method, per_node=per_node,
                     spread_before=round(check.spread(base, base.current), 2),
                     spread_after=round(check.spread(after, after.current), 2), spread_proven=spread_proven,
                     max_load=peak, max_load_node=peak_node, keep_n_plus_1=keep_n_plus_1, blocking=blocking,
                     seconds=time.perf_counter() - started, notes=tuple(notes))



# ============================================================================= decommission, expansion


@dataclass(frozen=True)
class ChangeResult:
    """A cluster change planned by the core (drain a node to remove it, or use an added node), then N+1."""

    kind: str  # remove | add-node
    nodes: tuple[str, ...]
    fits: bool
    plan: PlanResult | None
    reason: str
    n_plus_1: NPlusK | None  # of the cluster after the change (None when it does not fit)
    spread_before: float
    seconds: float


def remove_nodes(cluster: Cluster, settings: Settings, nodes: tuple[str, ...], ha_only: bool = False,
                 deadline: Deadline | None = None) -> ChangeResult:
    """Decommission: the plan that drains `nodes` (as `drain`: no migration budget, balancing the rest), then
    whether the cluster without them is still N+1."""
    started = time.perf_counter()
    deadline = deadline or Deadline(settings.time_limit)
    base = build_problem(cluster, settings)
    for name in nodes:
        if base.cluster.node_index(name) is None:
            raise InputError(f"--remove: unknown node {name!r} (nodes: {', '.join(base.cluster.node_names)})")
    before = check.spread(base, base.current)
    outcome = drain(cluster, settings, nodes, deadline.sub(deadline.remaining() * 0.6))
    if not outcome.fits or outcome.result is None:
        return ChangeResult("remove", nodes, False, None, outcome.reason, None, round(before, 2),
                            time.perf_counter() - started)
    result = outcome.result
    after = without_nodes(with_placement(result.problem.cluster, result.placement), nodes)
    n1 = n_plus_k(after, replace(settings, ignore_nodes=()), 1, ha_only, deadline) if len(after.node_names) > 1 else None
    return ChangeResult("remove", nodes, True, result, "", n1, round(before, 2), time.perf_counter() - started)


_NODE_SPEC = re.compile(r"^([^:\s]+):([0-9]*\.?[0-9]+):([^:]+)(?::([^:]+))?$")


def parse_node_spec(text: str, flag: str = "--add-node") -> dict[str, Any]:
    """"pve6:32:256G[:2T]": name, cores, memory and optionally local disk, as a model-file node entry."""
    match = _NODE_SPEC.match(str(text).strip())
    if not match:
        raise InputError(f"{flag}: cannot read {text!r} (use NAME:CORES:MEMORY[:DISK], e.g. pve6:32:256G:2T)")
    name, cores, memory, disk = match.groups()
    try:
        parse_cores_milli(cores, flag)
        parse_size_mib(memory, flag)
        if disk:
            parse_size_mib(disk, flag)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    entry: dict[str, Any] = {"name": name, "cpus": float(cores), "memory": memory, "memory_used": "0M",
                             "cpu_usage": 0, "disk_used": "0M"}
    if disk:
        entry["disk"] = disk
    return entry


def add_nodes(cluster: Cluster, settings: Settings, entries: list[dict[str, Any]], ha_only: bool = False,
              deadline: Deadline | None = None) -> ChangeResult:
    """Expansion: the cluster with new empty nodes, the plan that uses them (the settings' budget, balancing
    down to zero spread if it can), the spread after, and whether it is N+1 then."""
    started = time.perf_counter()
    deadline = deadline or Deadline(settings.time_limit)
    base = build_problem(cluster, settings)
    grown = base.cluster
    for entry in entries:
        try:
            grown = with_added_node(grown, entry)
        except InputError as exc:
            raise InputError(f"--add-node: {str(exc).split(': ', 2)[-1]}") from None
    before = check.spread(base, base.current)
    scenario = replace(settings, ignore_nodes=(), balanciness=0.0)
    try:
        result = make_plan(grown, scenario, "cpsat", deadline=deadline.sub(deadline.remaining() * 0.6))
    except InfeasibleError as exc:
        return ChangeResult("add-node", tuple(e["name"] for e in entries), False, None, str(exc), None,
                            round(before, 2), time.perf_counter() - started)
    after = with_placement(result.problem.cluster, result.placement)
    n1 = n_plus_k(after, scenario, 1, ha_only, deadline)
    return ChangeResult("add-node", tuple(e["name"] for e in entries), True, result, "", n1, round(before, 2),
                        time.perf_counter() - started)


# ============================================================================= growth


GROWTH_KEYS = ("memory", "cpu", "disk")
#: Largest growth factor --growth takes (100×: far past any capacity plan, well inside 64-bit arithmetic).
MAX_GROWTH = 100.0


def parse_growth(text: str) -> dict[str, float]:
    """"1.2" (memory and CPU), or per resource: "memory=1.3,cpu=1.1" (also disk=)."""
    text = str(text).strip()
    out = {"memory": 1.0, "cpu": 1.0, "disk": 1.0}
    try:
        if "=" not in text:
            factor = float(text)
            out["memory"] = out["cpu"] = factor
        else:
            for part in text.split(","):
                key, _, value = part.partition("=")
                key = key.strip().lower()
                if key not in GROWTH_KEYS:
                    raise InputError(f"--growth: unknown resource {key!r} (use {', '.join(GROWTH_KEYS)})")
                out[key] = float(value)
    except ValueError:
        raise InputError(f"--growth: cannot read {text!r} (use 1.2 or memory=1.3,cpu=1.1)") from None
    if any(not math.isfinite(v) or v <= 0 for v in out.values()):
        raise InputError(f"--growth: factors must be positive numbers, got {text!r}")
    if any(v > MAX_GROWTH for v in out.values()):
        # Beyond this the grown sizes stop being a capacity question and overflow the solver's integers.
        raise InputError(f"--growth: factors must be at most {MAX_GROWTH:g}, got {text!r}")
    return out


@dataclass(frozen=True)
class GrowthResult:
    """The cluster with grown usage: does everything fit, is it still N+1, what spread is reachable."""

    factors: dict[str, float]
    fits: bool
    fits_proven: bool  # fits True: a placement within every limit (proven); False: proven when this is True
    excess: dict[str, float]  # hard limit → how far over capacity the best repair stays (GiB / vCPUs)
    moves_to_fit: int  # moves of the repair that makes it fit (0: it fits where it is)
    n_plus_1: NPlusK | None  # of the placement that fits (None when nothing fits)
    spread: float | None  # reachable (a plan with no migration budget), heuristic unless `spread_status` optimal
    spread_bound: float | None
    spread_status: str | None
    seconds: float
    notes: tuple[str, ...] = ()


def growth(cluster: Cluster, settings: Settings, factors: Mapping[str, float], ha_only: bool = False,
           deadline: Deadline | None = None, plan_spread: bool = True) -> GrowthResult:
    """Used memory, CPU and local disk grown by `factors` (cluster.with_growth). "Fits" is the repair's
    question (the same stage a plan starts with): is there a placement with every node within every hard
    limit's capacity (assigned limits as today: they do not grow)? Then N+1 of that placement, and the
    spread a plan without a migration budget reaches."""
    started = time.perf_counter()
    deadline = deadline or Deadline(settings.time_limit)
    base = build_problem(cluster, settings)
    grown = with_growth(base.cluster, **{k: float(factors.get(k, 1.0)) for k in GROWTH_KEYS})
    scenario = replace(settings, ignore_nodes=(), max_migrations=None)
    problem = build_problem(grown, scenario)
    notes: list[str] = []
    try:
        repaired = find_repair(problem, deadline.sub(deadline.remaining() * 0.3), notes)
    except InfeasibleError as exc:
        return GrowthResult(dict(factors), False, True, {}, 0, None, None, None, None,
                            time.perf_counter() - started, (str(exc),))
    found = check.violations(problem, repaired.placement)
    if found:
        raise InternalError(f"the checker rejected the grown cluster's repair: {found[0].message}")
    excess = {problem.hard.names[k]: round(float(repaired.excess[:, k].sum()) / (1024 if problem.hard.units[k] == "MiB"
                                                                                 else 1000), 2)
              for k in range(len(problem.hard.names)) if repaired.excess[:, k].any()}
    fits = not excess
    proven = fits or repaired.excess_proven or _over_in_total(problem)
    n1 = None
    spread = bound = status = None
    if fits:
        after = with_placement(grown, repaired.placement)
        n1 = n_plus_k(after, scenario, 1, ha_only, deadline.sub(deadline.remaining() * 0.5))
        if plan_spread and deadline.remaining() > 0.3:
            planned = plan_problem(replace(problem.with_budget(None), settings=replace(scenario, balanciness=0.0)),
                                   "cpsat", deadline.sub(deadline.remaining()), repaired=repaired)
            spread, bound, status = round(planned.spread_after, 2), planned.bound, planned.status
    return GrowthResult(factors=dict(factors), fits=fits, fits_proven=proven, excess=excess,
                        moves_to_fit=int(repaired.moves), n_plus_1=n1, spread=spread,
                        spread_bound=None if bound is None else round(bound, 2), spread_status=status,
                        seconds=time.perf_counter() - started, notes=tuple(notes))


def _over_in_total(problem: Problem) -> bool:
    """A counting proof that no placement fits: under some relieved (physical) limit the whole cluster's load,
    which no move changes, exceeds the sum of the nodes' capacities."""
    hard = problem.hard
    if not hard.names:
        return False
    total = hard.base.sum(axis=0) + hard.demand.sum(axis=0)
    return bool((hard.relieve & (total > hard.goal.sum(axis=0))).any())


@dataclass(frozen=True)
class Threshold:
    """The growth factor at which a property first fails, bracketed: it holds at `holds_at` and fails at
    `fails_at` (None: not found below the largest factor tried)."""

    name: str
    holds_at: float | None  # None: it fails already today
    fails_at: float | None
    proven: bool  # both ends rest on exact answers (otherwise a heuristic answer decided a probe)


@dataclass(frozen=True)
class CurvePoint:
    factor: float
    fits: bool
    fits_proven: bool
    n_plus_1: bool | None  # strictly: every single-node failure fits
    n_plus_1_proven: bool
    homeless: dict[tuple[str, ...], int]  # failed set → guests left without a home
    worst_max_load: float | None  # the highest load after any single-node failure
    spread: float | None


@dataclass(frozen=True)
class GrowthCurve:
    thresholds: tuple[Threshold, ...]
    points: tuple[CurvePoint, ...]  # every probe, by factor
    precision: float
    seconds: float
    notes: tuple[str, ...] = ()


#: Largest growth factor the curve looks at, and how fine the bisection goes.
CURVE_MAX = 4.0
CURVE_PRECISION = 0.01


def growth_curve(cluster: Cluster, settings: Settings, ha_only: bool = False, deadline: Deadline | None = None,
                 resources: tuple[str, ...] = ("memory", "cpu"), precision: float = CURVE_PRECISION) -> GrowthCurve:
    """The growth factor (applied to `resources` alike) at which "everything fits", "N+1 holds (no single-node
    failure worse than today)" and "the balanciness can be reached" first fail, by bisection on one deadline: each property is assumed to
    hold below its threshold and fail above it (more load only makes a fixed placement worse; a new
    placement could in principle do better, so a threshold is where the answers change, not a proof
    that no other factor behaves differently)."""
    started = time.perf_counter()
    deadline = deadline or Deadline(settings.time_limit)
    points: dict[float, CurvePoint] = {}
    notes: list[str] = []

    def probe(f: float) -> CurvePoint:
        f = round(f, 4)
        if f not in points:
            share = deadline.sub(max(0.5, deadline.remaining() / 12))
            r = growth(cluster, settings, {k: f for k in resources}, ha_only, share, plan_spread=True)
            failures = r.n_plus_1.failures if r.n_plus_1 else ()
            loads = [x.max_load for x in failures if x.max_load is not None]
            points[f] = CurvePoint(factor=f, fits=r.fits, fits_proven=r.fits_proven,
                                   n_plus_1=None if r.n_plus_1 is None else r.n_plus_1.holds,
                                   n_plus_1_proven=bool(r.n_plus_1 and r.n_plus_1.proven and r.n_plus_1.complete),
                                   homeless={x.nodes: len(x.unplaced) for x in failures},
                                   worst_max_load=max(loads) if loads else None, spread=r.spread)
        return points[f]

    balanciness = settings.balanciness
    today = probe(1.0)

    def as_today(pt: CurvePoint) -> bool:
        """N+1 as good as today: no single-node failure leaves more guests without a home than at 1.0 (the
        same as N+1 when it holds today)."""
        return pt.fits and pt.n_plus_1 is not None and all(
            count <= today.homeless.get(nodes, 0) for nodes, count in pt.homeless.items())

    tests = {
        "fits": (lambda pt: pt.fits, lambda pt: pt.fits_proven),
        "n_plus_1": (as_today, lambda pt: (pt.n_plus_1_proven and today.n_plus_1_proven) or not pt.fits),
        "balanced": (lambda pt: pt.spread is not None and pt.spread <= balanciness, lambda pt: False),
    }
    thresholds = []
    for name, (ok, exact) in tests.items():
        if deadline.remaining() < 0.5:
            notes.append(f"{name}: not searched (time limit)")
            continue
        lo_pt = probe(1.0)
        if not ok(lo_pt):
            thresholds.append(Threshold(name, None, 1.0, exact(lo_pt)))
            continue
        lo, hi = 1.0, None
        step = 1.25
        while hi is None and lo < CURVE_MAX and deadline.remaining() > 0.5:
            f = min(CURVE_MAX, lo * step)
            if ok(probe(f)):
                lo = f
            else:
                hi = f
        while hi is not None and hi - lo > precision and deadline.remaining() > 0.5:
            mid = (lo + hi) / 2
            if ok(probe(mid)):
                lo = mid
            else:
                hi = mid
        proven = all(exact(points[round(x, 4)]) for x in (lo, hi) if x is not None and round(x, 4) in points)
        thresholds.append(Threshold(name, round(lo, 4), None if hi is None else round(hi, 4), proven))
        if hi is not None and hi - lo > precision:
            notes.append(f"{name}: bracket wider than {precision} (time limit)")
    notes.append("balanced: heuristic (a plan's spread at the probe's share of the time, not a proven optimum)")
    return GrowthCurve(thresholds=tuple(thresholds), points=tuple(points[f] for f in sorted(points)),
                       precision=precision, seconds=time.perf_counter() - started, notes=tuple(notes))
