"""Why each guest moves, what each balancing move contributes, and why a guest stays (pure).

Every migration carries its reason (maintenance, pin, affinity, anti-affinity, capacity, balance;
plan.reasons) and a sentence. A balancing move also carries its own contribution: the spread the plan
would end with if this one move (its whole unit) were left out, next to the plan's spread, and how much
it relieves its source node. `explain` answers "why does this guest move, or why does it stay?" for
one guest: cannot move (ignored, locked, template, offline node, type), pinned and already where its
pins allow, kept in place (cooldown, moved by hand), no node can take it (the first rule or limit
that refuses, per node), or moving it would not lower the spread enough to be worth a migration.
The questions about nodes are asked of the feasibility module, like every other "may it go there".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxlb_opt import check
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.plan import reasons
from proxlb_opt.problem import Problem

EPS = 1e-6


@dataclass(frozen=True)
class MoveReason:
    reason: str  # maintenance | pin | affinity | anti-affinity | capacity | balance
    detail: str  # one sentence
    spread_without: float | None = None  # balance moves: the plan's spread with this move left out
    relieves: str | None = None  # balance moves: "pve1 91.0 → 84.2 %"

    def as_dict(self, spread_after: float) -> dict:
        gain = None if self.spread_without is None else round(self.spread_without - spread_after, 2)
        return {"reason": self.reason, "detail": self.detail,
                "spread_without": None if self.spread_without is None else round(self.spread_without, 2),
                "gain_pp": gain, "relieves": self.relieves}


def move_reasons(problem: Problem, placement: np.ndarray) -> dict[int, MoveReason]:
    """guest index → why it moves, for every guest `placement` moves."""
    why = reasons(problem)
    final = Occupancy(problem, placement)
    before = 100.0 * check.node_loads(problem, problem.current)[:, problem.loads.columns] / \
        problem.loads.capacity[:, problem.loads.columns] @ problem.balance.weights
    after = final.percent() @ problem.balance.weights
    out = {}
    for g in np.flatnonzero(check.moved_mask(problem, placement)):
        g = int(g)
        reason = why[g]
        if reason == "balance":
            out[g] = _balance_reason(problem, final, g, before, after)
        else:
            out[g] = MoveReason(reason, _mandatory_detail(problem, g, reason))
    return out


def _balance_reason(problem: Problem, final: Occupancy, g: int, before: np.ndarray, after: np.ndarray) -> MoveReason:
    c = problem.cluster
    unit = problem.unit_of[g]
    members = problem.units[unit] if unit >= 0 else np.array([g])
    home = int(c.guest_node[g])
    source = c.node_names[home]
    without = final.spread_if(members, home)  # this unit back on its node, everything else as planned
    relieves = f"{source} {before[home]:.1f} → {after[home]:.1f} %"
    detail = (f"balance: relieves {source} ({before[home]:.1f} → {after[home]:.1f} %); without this move the plan "
              f"would end at {without:.2f} pp")
    return MoveReason("balance", detail, spread_without=without, relieves=relieves)


def _mandatory_detail(problem: Problem, g: int, reason: str) -> str:
    c, rules = problem.cluster, problem.rules
    node = c.node_names[int(c.guest_node[g])]
    if reason == "maintenance":
        source = next((m.source for m in rules.maintenance if m.node == c.guest_node[g]), "maintenance")
        return f"maintenance: leaves {node} ({source})"
    if reason == "pin":
        sources = rules.pin_sources(g) or ["its affinity group's anchor"]
        return f"pin: {node} is outside {'; '.join(sources)}"
    if reason == "affinity":
        group = next((a.source for a in rules.affinities if g in a.members), "its affinity group")
        return f"affinity: joins the rest of {group}"
    if reason == "anti-affinity":
        group = next((a.source for a in rules.anti_affinities if g in a.members), "its anti-affinity group")
        return f"anti-affinity: too many members of {group} on {node}"
    if reason == "capacity":
        return f"capacity: {node} is over a physical limit (used memory or local disk)"
    return reason


def explain(problem: Problem, placement: np.ndarray, g: int, kept: dict[int, str] | None = None) -> list[str]:
    """Sentences saying why guest `g` moves under `placement`, or why it stays.

    `kept` names guests held in place for a reason outside the problem (cooldown, moved by hand)."""
    c, rules = problem.cluster, problem.rules
    label = c.guest_label(g)
    if placement[g] != c.guest_node[g]:
        reason = move_reasons(problem, placement)[g]
        moved_to = c.node_names[int(placement[g])]
        return [f"{label} moves {c.node_names[int(c.guest_node[g])]} → {moved_to}: {reason.detail}"]
    here = c.node_names[int(c.guest_node[g])]
    if not rules.movable[g]:
        source = next((i.source for i in rules.ignores if i.guest == g), "it may not be moved")
        return [f"{label} stays on {here}: it cannot be moved ({source})"]
    if kept and g in kept:
        return [f"{label} stays on {here}: {kept[g]}"]
    lines = [f"{label} stays on {here}."]
    pins = rules.pin_sources(g)
    if pins:
        lines.append(f"It is pinned ({'; '.join(pins)}) and {here} is allowed.")
    unit = int(problem.unit_of[g])
    members = problem.units[unit]
    if members.size > 1:
        lines.append(f"It moves only with its affinity group ({members.size} guests).")
    final = Occupancy(problem, placement)
    spread = final.spread()
    refusals, options = [], []
    for n in range(c.n_nodes):
        if n == placement[g]:
            continue
        why_not = final.why_not(members, n)
        if why_not:
            refusals.append(f"{c.node_names[n]}: {why_not}")
        else:
            options.append((final.spread_if(members, n), c.node_names[n]))
    if not options:
        lines.append("No other node may take it now: " + "; ".join(refusals[:6]) + (" …" if len(refusals) > 6 else ""))
        return lines
    best_spread, best_node = min(options)
    if best_spread >= spread - EPS:
        lines.append(f"Moving it would not lower the spread: the best node, {best_node}, would give "
                     f"{best_spread:.2f} pp against the plan's {spread:.2f} pp.")
    else:
        lines.append(f"Moving it to {best_node} would lower the spread to {best_spread:.2f} pp (plan: {spread:.2f} pp), "
                     f"but the migration budget went to moves that gain more, or the plan stops where one more "
                     f"move gains less than it costs.")
    return lines
