"""CP-SAT model that assigns migration steps to waves so the predicted plan duration is smallest.

Waves are barriers: a wave lasts as long as its longest step. Variables z[s, w] = "step s has
started by wave w" (monotone in w), so step s runs in wave w when z[s, w] − z[s, w−1] = 1. Node
loads before wave w are linear in z[·, w−1], which keeps the capacity constraints small:
    load[n, k] before w + Σ demand of steps entering n in w ≤ limit[n, k]
(a running step holds its guest on source and target). Anti-affinity partners are counted on
every node they occupy during the wave. Concurrency limits are per wave. Only direct steps are
modelled (a plan with parking hops keeps the heuristic order); the heuristic order is the hint
and the fallback, so this can only shorten a plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from proxlb_opt.problem import Problem

#: Above this many steps (or step × wave pairs) the model grows too large for the time budget.
MAX_EXACT_STEPS = 250
MAX_EXACT_PAIRS = 6000


@dataclass(frozen=True)
class WaveProblem:
    sources: np.ndarray  # int[s]
    targets: np.ndarray  # int[s]
    durations: np.ndarray  # int[s] seconds, ≥ 1
    demand: np.ndarray  # int64[s, k] per hard limit
    initial_load: np.ndarray  # int64[n, k]
    limit: np.ndarray  # int64[n, k]
    parallel: int
    incoming: int
    outgoing: int
    anti_groups: list[tuple[int, list[int], dict[int, int]]]  # (cap, member steps, fixed member count per node)
    n_nodes: int

    @staticmethod
    def of(problem: Problem, steps: list[tuple[int, int, int, float]], parallel: int, incoming: int,
           outgoing: int) -> "WaveProblem":
        """The wave model's data for direct steps (guest, source, target, seconds) of a Problem."""
        cluster = problem.cluster
        index = {guest: i for i, (guest, _, _, _) in enumerate(steps)}
        anti_groups = []
        for group in problem.rules.anti_affinities:
            member_steps = [index[g] for g in group.members if g in index]
            if member_steps:
                fixed = np.bincount([cluster.guest_node[g] for g in group.members if g not in index],
                                    minlength=cluster.n_nodes)
                anti_groups.append((group.per_node_cap, member_steps,
                                    {int(n): int(c) for n, c in enumerate(fixed) if c}))
        hard = problem.hard
        return WaveProblem(
            sources=np.array([s for _, s, _, _ in steps]), targets=np.array([t for _, _, t, _ in steps]),
            durations=np.array([seconds(d) for _, _, _, d in steps]), demand=hard.demand[[g for g, _, _, _ in steps]],
            initial_load=hard.load(problem.current), limit=hard.limit, parallel=parallel, incoming=incoming,
            outgoing=outgoing, anti_groups=anti_groups, n_nodes=cluster.n_nodes)


def solve_waves(problem: WaveProblem, hint_waves: np.ndarray, time_limit: float, seed: int = 7) -> np.ndarray | None:
    """A wave index per step minimizing Σ wave lengths, or None when nothing better was proven feasible."""
    n_steps = len(problem.sources)
    n_waves = int(hint_waves.max()) + 1 if n_steps else 0
    if n_steps == 0 or n_steps > MAX_EXACT_STEPS or n_steps * n_waves > MAX_EXACT_PAIRS:
        return None
    model = cp_model.CpModel()
    z = [[model.NewBoolVar(f"z[{s},{w}]") for w in range(n_waves)] for s in range(n_steps)]
    run = _run_literals(model, z, n_steps, n_waves)
    _concurrency(model, problem, run, n_waves)
    _capacity(model, problem, z, run, n_waves)
    _anti_affinity(model, problem, z, run, n_waves)
    length = _wave_lengths(model, problem, run, n_waves)
    model.Minimize(sum(length))
    for s in range(n_steps):
        for w in range(n_waves):
            model.AddHint(z[s][w], int(hint_waves[s] <= w))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.05, time_limit)
    solver.parameters.num_workers = 1  # small model; one worker keeps the order deterministic
    solver.parameters.random_seed = seed
    if solver.Solve(model) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    waves = np.array([next(w for w in range(n_waves) if solver.BooleanValue(z[s][w])) for s in range(n_steps)])
    return _compact(waves)


def _run_literals(model, z, n_steps: int, n_waves: int):
    run = []
    for s in range(n_steps):
        model.Add(z[s][n_waves - 1] == 1)
        row = [z[s][0]]
        for w in range(1, n_waves):
            model.AddImplication(z[s][w - 1], z[s][w])
            row.append(z[s][w] - z[s][w - 1])
        run.append(row)
    return run


def _concurrency(model, problem: WaveProblem, run, n_waves: int) -> None:
    n_steps = len(run)
    for w in range(n_waves):
        model.Add(sum(run[s][w] for s in range(n_steps)) <= problem.parallel)
        for n in range(problem.n_nodes):
            ins = [run[s][w] for s in range(n_steps) if problem.targets[s] == n]
            outs = [run[s][w] for s in range(n_steps) if problem.sources[s] == n]
            if len(ins) > problem.incoming:
                model.Add(sum(ins) <= problem.incoming)
            if len(outs) > problem.outgoing:
                model.Add(sum(outs) <= problem.outgoing)


def _capacity(model, problem: WaveProblem, z, run, n_waves: int) -> None:
    n_steps = len(run)
    touching = [[s for s in range(n_steps) if n in (problem.sources[s], problem.targets[s])]
                for n in range(problem.n_nodes)]
    for n in range(problem.n_nodes):
        entering = [s for s in touching[n] if problem.targets[s] == n]
        for k in range(problem.limit.shape[1]):
            room = int(problem.limit[n, k] - problem.initial_load[n, k])
            for w in range(n_waves):
                done = []  # load change from steps finished before wave w
                for s in touching[n]:
                    d = int(problem.demand[s, k])
                    if d == 0 or w == 0:
                        continue
                    sign = 1 if problem.targets[s] == n else -1
                    done.append(sign * d * z[s][w - 1])
                arriving = [int(problem.demand[s, k]) * run[s][w] for s in entering if problem.demand[s, k]]
                if arriving:
                    model.Add(sum(done) + sum(arriving) <= room)


def _anti_affinity(model, problem: WaveProblem, z, run, n_waves: int) -> None:
    for cap, steps, fixed in problem.anti_groups:
        nodes = {int(problem.sources[s]) for s in steps} | {int(problem.targets[s]) for s in steps}
        for n in nodes:
            for w in range(n_waves):
                present = []
                for s in steps:
                    if problem.sources[s] == n:  # still there until its wave has ended
                        present.append(1 - z[s][w - 1] if w else 1)
                    if problem.targets[s] == n:  # there from the start of its wave
                        present.append(z[s][w])
                model.Add(sum(present) <= _allowed_on(problem, cap, steps, fixed, n))


def _allowed_on(problem: WaveProblem, cap: int, steps: list[int], fixed: dict[int, int], n: int) -> int:
    """Members with steps that may be on n at once: the cap, or today's count while a violation is repaired."""
    today = fixed.get(n, 0) + sum(1 for s in steps if problem.sources[s] == n)
    return max(cap, today) - fixed.get(n, 0)


def _wave_lengths(model, problem: WaveProblem, run, n_waves: int):
    longest = int(problem.durations.max())
    lengths = []
    for w in range(n_waves):
        length = model.NewIntVar(0, longest, f"len[{w}]")
        for s in range(len(run)):
            model.Add(length >= int(problem.durations[s]) * run[s][w])
        lengths.append(length)
    return lengths


def _compact(waves: np.ndarray) -> np.ndarray:
    """Renumber waves 0..k−1 without gaps (empty waves cost nothing in the model)."""
    used = sorted(set(waves.tolist()))
    index = {w: i for i, w in enumerate(used)}
    return np.array([index[w] for w in waves.tolist()], dtype=np.int64)


def seconds(value: float) -> int:
    return max(1, int(math.ceil(value)))
