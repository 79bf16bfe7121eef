"""When a run balances: ProxLB 2.3.0's conditions, as reasons a plan can show.

Mandatory moves (maintenance, pins, broken groups, nodes over a physical limit) are always planned;
this module decides whether the optional balancing moves are wanted too, the way ProxLB does:

* modes `used` and `assigned`: the spread exceeds `balanciness`, **or** the most loaded node has
  reached the threshold of a balanced resource (`memory_threshold`, `cpu_threshold`,
  `disk_threshold`; 0 or unset means none). ProxLB sets its flag from the threshold first and then
  sets it again when the spread exceeds balanciness, so a threshold adds a reason to balance and
  never takes one away;
* mode `psi`: a node, or a movable running guest, is hot for a balanced resource by ProxLB's rule
  (`balancing.psi`: full ≥ pressure_full and some ≥ pressure_some, or spikes ≥ pressure_spikes);
  balanciness and the thresholds play no part, as in ProxLB;
* any mode: `enforce_pinning: true`, with which ProxLB runs its balancing pass every time.

No reason: the plan holds only the mandatory moves (the budget is 0).
"""

from __future__ import annotations

import numpy as np

from proxlb_opt import check
from proxlb_opt.cluster import PSI_FIGURES, PSI_RESOURCES, PSI_SCALE
from proxlb_opt.config import RESOURCES, PsiThreshold
from proxlb_opt.problem import Problem


def balance_reasons(problem: Problem, placement: np.ndarray | None = None) -> tuple[str, ...]:
    """Why the placement (default: the current one) should be balanced; empty: it should not."""
    placement = problem.current if placement is None else placement
    reasons = list(static_reasons(problem))
    if problem.settings.mode != "psi":
        spread = check.spread(problem, placement)
        if spread > problem.settings.balanciness:
            reasons.append(f"spread {spread:.2f} pp > balanciness {problem.settings.balanciness:g} pp")
        percent = check.node_percent(problem, placement)[:, problem.loads.columns]
        reasons += threshold_reasons(problem, percent)
    return tuple(reasons)


def static_reasons(problem: Problem) -> tuple[str, ...]:
    """Reasons that do not depend on where guests are: enforce_pinning, and hot pressure (measured)."""
    reasons = []
    if problem.settings.enforce_pinning:
        reasons.append("balancing.enforce_pinning is true: ProxLB balances every run")
    if problem.settings.mode == "psi":
        reasons += hot_reasons(problem)
    return tuple(reasons)


def threshold_reasons(problem: Problem, percent: np.ndarray) -> list[str]:
    """`percent` float[n, r] over the balanced resources (problem.loads.resources order)."""
    out = []
    eligible = problem.eligible_nodes
    if eligible.size == 0:
        return out
    for column, resource in enumerate(problem.loads.resources):
        threshold = problem.settings.thresholds.get(resource)
        if not threshold:
            continue
        values = percent[eligible, column]
        top = int(eligible[int(np.argmax(values))])
        if values.max() >= threshold:
            out.append(f"node {problem.cluster.node_names[top]} is at {values.max():.1f} % {resource}, at or above "
                       f"balancing.{resource}_threshold {threshold:g} %")
    return out


def is_hot(figures: np.ndarray, threshold: PsiThreshold) -> bool:
    """ProxLB's rule on (some, full, spikes) in hundredths of a percent."""
    some, full, spikes = (float(figures[PSI_FIGURES.index(f)]) / PSI_SCALE for f in ("some", "full", "spikes"))
    return (full >= threshold.full and some >= threshold.some) or spikes >= threshold.spikes


def hot_reasons(problem: Problem) -> list[str]:
    """Hot nodes (eligible ones: ProxLB skips maintenance nodes) and hot movable running guests, per
    balanced resource."""
    c, s = problem.cluster, problem.settings
    out = []
    for resource in problem.loads.resources:
        r = RESOURCES.index(resource)
        label = PSI_RESOURCES[r]
        node_threshold = (s.psi_nodes or {}).get(resource)
        if node_threshold is not None:
            hot = [int(n) for n in problem.eligible_nodes if is_hot(c.node_psi[n, r], node_threshold)]
            if hot:
                out.append(f"{_names(c.node_names[n] for n in hot)} hot by {label} pressure "
                           f"(balancing.psi.nodes.{resource})")
        guest_threshold = (s.psi_guests or {}).get(resource)
        if guest_threshold is not None:
            hot = [int(g) for g in np.flatnonzero(problem.rules.movable & c.guest_running)
                   if is_hot(c.guest_psi[g, r], guest_threshold)]
            if hot:
                out.append(f"{_names(c.guest_label(g) for g in hot)} hot by {label} pressure "
                           f"(balancing.psi.guests.{resource})")
    return out


def _names(items, limit: int = 3) -> str:
    items = list(items)
    text = ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")
    return f"{text} {'is' if len(items) == 1 else 'are'}"


def pressure_warnings(problem: Problem) -> tuple[str, ...]:
    """Mode psi on nodes that report no pressure (PVE before 9): their figure is 0."""
    if problem.settings.mode != "psi":
        return ()
    c = problem.cluster
    silent = [c.node_names[n] for n in range(c.n_nodes) if c.node_online[n] and not c.node_psi_known[n]]
    if not silent:
        return ()
    return (f"balancing.mode psi: {', '.join(silent)} report(s) no pressure figures (PSI needs PVE 9); they count "
            f"as 0 % pressure",)
