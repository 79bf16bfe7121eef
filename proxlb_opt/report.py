"""Plan results → JSON-ready dicts and rich renderables. Pure: nothing here prints or writes.

The JSON object is versioned (`version`) and documented in README.md ("JSON output"); `apply
--plan` reads it back. Field names stay stable within a version. Waves are numbered from 1 in the
JSON and on screen (the core counts them from 0). `proxlb_dict` is the shape ProxLB 2.3.0 prints
with `-j`.

Tables are sized for the width they are printed at: guest names are never cut; on narrow widths the
columns that matter least are left out, and plans of more than COMPACT_ABOVE moves are listed as
plain lines (a rich table costs about a millisecond per row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich import box
from rich.cells import cell_len
from rich.console import Group
from rich.table import Table
from rich.text import Text

from proxlb_opt import __version__, check
from proxlb_opt.cluster import with_placement
from proxlb_opt.config import RESOURCES
from proxlb_opt.config import AUTO
from proxlb_opt.plan import PLAN_FORMAT_VERSION, Step
from proxlb_opt.planner import time_model
from proxlb_opt.reasons import MoveReason, move_reasons
from proxlb_opt.planner import PlanResult
from proxlb_opt.units import format_duration, format_mib

STATUS_TEXT = {
    "optimal": "optimal (proven)",
    "feasible": "feasible (not proven optimal)",
    "balanced": "balanced, nothing to do",
    "greedy": "greedy (ProxLB-style baseline)",
}


def status_text(d: dict[str, Any]) -> str:
    """The status of a plan dict; "optimal" always says what was proven and to which tolerance."""
    if d["status"] != "optimal":
        return STATUS_TEXT.get(d["status"], d["status"])
    return f"optimal ({_proven(d)})"


def _proven(d: dict[str, Any]) -> str:
    cost = "cost proven minimal" if d["cost_proven"] else "cost not proven minimal"
    return f"spread proven within {d['optimality_tolerance']:g} pp of the best possible; {cost}"


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def step_dict(result: PlanResult, step: Step, why: MoveReason | None = None) -> dict[str, Any]:
    c = result.cluster
    g = step.guest
    explained = why.as_dict(result.spread_after) if why is not None else {
        "reason": step.reason, "detail": step.reason, "spread_without": None, "gain_pp": None, "relieves": None}
    return {
        "vmid": int(c.guest_vmid[g]),
        "name": c.guest_names[g],
        "type": c.guest_type(g),
        "from": c.node_names[step.source],
        "to": c.node_names[step.target],
        "reason": step.reason,
        "mode": _migration_mode(result, g),
        "wave": step.wave + 1,
        "start_s": _r(step.start_s, 1),
        "end_s": _r(step.end_s, 1),
        "seconds": _r(step.seconds, 1),
        "downtime_s": _r(time_model(result.settings).downtime(c, g), 1),
        "via": c.node_names[step.via] if step.via is not None else None,
        "hop": step.hop,
        "memory_mib": int(c.guest_mem_used_mib[g]) if c.guest_running[g] else 0,
        "local_disk_mib": int(c.guest_disk_used_mib[g]) if c.guest_local_disk[g] else 0,
        "detail": explained["detail"],
        "spread_without": explained["spread_without"],
        "gain_pp": explained["gain_pp"],
        "relieves": explained["relieves"],
    }


def _migration_mode(result: PlanResult, g: int) -> str:
    c = result.cluster
    if not c.guest_running[g]:
        return "offline"
    return "restart" if c.guest_is_ct[g] else "live"


def node_dicts(result: PlanResult) -> list[dict[str, Any]]:
    c = result.cluster
    before = check.node_percent(result.problem, c.guest_node)
    after = check.node_percent(result.problem, result.placement)
    maintenance = {m.node for m in result.rules.maintenance}
    out = []
    for n, name in enumerate(c.node_names):
        out.append({
            "name": name,
            "status": "online" if c.node_online[n] else "offline",
            "maintenance": n in maintenance,
            "eligible": bool(result.rules.eligible[n]),
            "guests_before": int((c.guest_node == n).sum()),
            "guests_after": int((result.placement == n).sum()),
            "percent_before": {r: _r(before[n, i]) for i, r in enumerate(RESOURCES)},
            "percent_after": {r: _r(after[n, i]) for i, r in enumerate(RESOURCES)},
        })
    return out


def _target(result: PlanResult) -> float | None:
    s = result.settings
    if s.max_migrations != AUTO:
        return s.target_spread
    return s.target_spread if s.target_spread is not None else s.balanciness / 2


def _choice_dict(result: PlanResult) -> dict[str, Any] | None:
    choice = result.budget_choice
    if choice is None:
        return None
    return {"budget": choice.budget, "why": choice.why, "fewest_proven": choice.fewest_proven,
            "sampled": [{"budget": b, "spread": _r(spread), "migrations": moves} for b, spread, moves in choice.sampled]}


def plan_dict(result: PlanResult) -> dict[str, Any]:
    s = result.settings
    plan = result.plan
    why = move_reasons(result.problem, result.placement) if plan.steps else {}
    return {
        "version": PLAN_FORMAT_VERSION,
        "tool": f"proxlb-opt {__version__}",
        "cluster": result.cluster.name,
        "algorithm": result.algorithm,
        "status": result.status,
        "method": s.method,
        "mode": s.mode,
        "resources": list(result.loads.resources),
        "balanciness": s.balanciness,
        "max_migrations": s.max_migrations,
        "budget": result.budget,
        "target_spread": _target(result),
        "budget_choice": _choice_dict(result),
        "spread_before": _r(result.spread_before),
        "spread_after": _r(result.spread_after),
        "spread_per_resource_before": {k: _r(v) for k, v in result.spread_per_resource_before.items()},
        "spread_per_resource_after": {k: _r(v) for k, v in result.spread_per_resource_after.items()},
        "bound": _r(result.bound),
        "gap": _r(result.gap),
        "optimality_tolerance": s.optimality_tolerance,
        "cost_proven": result.cost_proven,
        "greedy_spread": _r(result.greedy_spread),
        "unit_greedy_spread": _r(result.unit_greedy_spread),
        "guests_moved": plan.guests_moved,
        "mandatory_migrations": result.mandatory_moves,
        "mandatory_proven_minimal": bool(result.repair.proven_minimal) if result.repair is not None else None,
        "memory_moved_mib": result.memory_moved_mib,
        "parking_hops": plan.parking_hops,
        "waves": plan.waves,
        "predicted_seconds": _r(plan.predicted_seconds, 1),
        "solve_seconds": _r(result.solve_seconds, 3),
        "sequence_seconds": _r(result.sequence_seconds, 3),
        "migrations": [step_dict(result, step, why.get(step.guest)) for step in plan.steps],
        "held": [{"vmid": vmid, "reason": reason} for vmid, reason in sorted(result.held.items())],
        "nodes": node_dicts(result),
        "violations": [{"rule": v.rule, "message": v.message} for v in result.violations],
        "warnings": list(result.warnings),
        "notes": list(result.notes),
    }


# ----------------------------------------------------------------------------- ProxLB's -j shape

_MIB = 1024 * 1024


def proxlb_dict(result: PlanResult) -> dict[str, Any]:
    """The plan in the shape ProxLB 2.3.0 prints with `-j`: groups, guests, ha_rules, nodes, pools by name.

    Scripts written for ProxLB read `guests[name].node_current` / `node_target` and the nodes' metrics
    (bytes for memory and disk, cores for CPU, node figures as after the plan). What proxlb-opt does not
    measure is zero (pressure, PSI) and `pve_version` is empty; our own plan follows under `proxlb_opt`.
    """
    c = result.cluster
    after = with_placement(c, result.placement)
    names = _unique_names(c)
    nodes = {name: _proxlb_node(after, n, result) for n, name in enumerate(c.node_names)}
    return {
        "groups": _proxlb_groups(result, names),
        "guests": {names[g]: _proxlb_guest(result, g) for g in range(c.n_guests)},
        "ha_rules": {r.name: {"rule": r.name, "type": _proxlb_rule_type(r), "nodes": [n for n, _ in r.node_priorities],
                              "members": list(r.vmids)} for r in c.ha_rules},
        "nodes": nodes,
        "pools": _proxlb_pools(c, names),
        "proxlb_opt": plan_dict(result),
    }


def _unique_names(c) -> list[str]:
    """ProxLB keys guests by name; a name used twice gets its vmid so that no guest is lost."""
    seen: dict[str, int] = {}
    for name in c.guest_names:
        seen[name] = seen.get(name, 0) + 1
    return [name if seen[name] == 1 else f"{name} ({int(c.guest_vmid[g])})" for g, name in enumerate(c.guest_names)]


def _pressure() -> dict[str, Any]:
    return {"pressure_some_percent": 0.0, "pressure_full_percent": 0.0, "pressure_some_spikes_percent": 0.0,
            "pressure_full_spikes_percent": 0.0, "pressure_hot": False}


def _proxlb_guest(result: PlanResult, g: int) -> dict[str, Any]:
    c, rules = result.cluster, result.rules
    cpus = float(c.guest_cpu_milli[g]) / 1000
    groups = {"affinity": [a.name for a in rules.affinities if g in a.members],
              "anti": [a.name for a in rules.anti_affinities if g in a.members]}
    pins = sorted({c.node_names[n] for p in rules.pins if p.guest == g for n in p.nodes})
    return {
        "cpu": {"total": int(round(cpus)), "used": round(float(c.guest_cpu_used_milli[g]) / max(1.0, cpus * 1000), 4),
                **_pressure()},
        "disk": {"total": int(c.guest_disk_mib[g]) * _MIB, "used": float(int(c.guest_disk_used_mib[g]) * _MIB),
                 **_pressure()},
        "memory": {"total": int(c.guest_mem_mib[g]) * _MIB, "used": float(int(c.guest_mem_used_mib[g]) * _MIB),
                   **_pressure()},
        "name": c.guest_names[g],
        "id": int(c.guest_vmid[g]),
        "node_current": c.node_names[int(c.guest_node[g])],
        "node_target": c.node_names[int(result.placement[g])],
        "processed": bool(result.placement[g] != c.guest_node[g]),
        "pressure_hot": False,
        "tags": list(c.guest_tags[g]),
        "pools": [c.guest_pool[g]] if c.guest_pool[g] else [],
        "ha_rules": [r.name for r in c.ha_rules if int(c.guest_vmid[g]) in r.vmids],
        "affinity_groups": groups["affinity"],
        "anti_affinity_groups": groups["anti"],
        "ignore": not bool(rules.movable[g]),
        "node_relationships": pins,
        "node_relationships_strict": bool(pins),
        "type": c.guest_type(g),
    }


def _proxlb_node(after, n: int, result: PlanResult) -> dict[str, Any]:
    """A node's metrics with the plan applied (ProxLB prints them after its own moves)."""
    on_node = np.asarray(result.placement) == n

    def metric(total: float, used: float, assigned: float) -> dict[str, Any]:
        total = max(float(total), 1e-9)
        free = total - used
        return {"total": total, "assigned": assigned, "used": used, "free": free,
                "assigned_percent": round(100 * assigned / total, 2), "free_percent": round(100 * free / total, 2),
                "used_percent": round(100 * used / total, 2), **_pressure()}

    c = after
    cpu = metric(float(c.node_cpu_milli[n]) / 1000, float(c.node_cpu_used_milli[n]) / 1000,
                 float(c.guest_cpu_milli[on_node].sum()) / 1000)
    memory = metric(float(c.node_mem_mib[n]) * _MIB, float(c.node_mem_used_mib[n]) * _MIB,
                    float(c.guest_mem_mib[on_node].sum()) * _MIB)
    disk = metric(float(c.node_disk_mib[n]) * _MIB, float(c.node_disk_used_mib[n]) * _MIB,
                  float(c.guest_disk_mib[on_node & c.guest_local_disk].sum()) * _MIB)
    for entry in (cpu, memory, disk):
        entry["total"] = int(entry["total"])
        entry["assigned"] = int(entry["assigned"])
    return {"name": c.node_names[n], "pve_version": "", "pressure_hot": False,
            "maintenance": any(m.node == n for m in result.rules.maintenance),
            "cpu": cpu, "disk": disk, "memory": memory}


def _proxlb_groups(result: PlanResult, names: list[str]) -> dict[str, Any]:
    rules, placement, c = result.rules, result.placement, result.cluster
    return {
        "affinity": {a.name: {"guests": [names[g] for g in a.members], "counter": len(a.members)}
                     for a in rules.affinities},
        "anti_affinity": {a.name: {"guests": [names[g] for g in a.members], "counter": len(a.members),
                                   "used_nodes": sorted({c.node_names[int(placement[g])] for g in a.members})}
                          for a in rules.anti_affinities},
        "maintenance": [c.node_names[m.node] for m in rules.maintenance],
    }


def _proxlb_rule_type(rule) -> str:
    if rule.type == "resource-affinity":
        return "anti-affinity" if rule.affinity == "negative" else "affinity"
    return "affinity"


def _proxlb_pools(c, names: list[str]) -> dict[str, Any]:
    pools: dict[str, list[str]] = {}
    for g, pool in enumerate(c.guest_pool):
        if pool:
            pools.setdefault(pool, []).append(names[g])
    return {pool: {"name": pool, "members": members} for pool, members in sorted(pools.items())}


# ----------------------------------------------------------------------------- terminal

#: Width of piped output (no terminal to ask) unless COLUMNS says otherwise: fits a mail or a log viewer.
DEFAULT_WIDTH = 80
#: Above this many moves the migrations are plain aligned lines, not a table: readable and quick at any size.
COMPACT_ABOVE = 200
#: Printed under a plan that is not already balanced.
HOW_TO_READ = "pp = percentage points; bound = best spread possible; gap = spread − bound"
_GAP = 3  # a column separator with its padding (box.SIMPLE_HEAD without edges)


@dataclass
class _Column:
    """One table column with its cells; `keep` ranks it: on narrow widths the lowest goes first."""

    header: str
    keep: int
    justify: str = "left"
    cells: list[Any] = field(default_factory=list)

    @property
    def width(self) -> int:
        return max([cell_len(self.header)] + [cell_len(c.plain if isinstance(c, Text) else c) for c in self.cells])


def _fit(columns: list[_Column], width: int, required: int) -> list[_Column] | None:
    """The columns that fit `width`, dropping the least important first; None when the top `required` do not."""
    shown = list(columns)
    while sum(c.width for c in shown) + _GAP * (len(shown) - 1) > width:
        if len(shown) <= required:
            return None
        shown.remove(min(shown, key=lambda c: c.keep))
    return shown


def _table(columns: list[_Column]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for c in columns:
        # Nothing in these tables wraps: a cell cut over two lines hides the name it belongs to.
        table.add_column(c.header, justify=c.justify, no_wrap=True)
    for row in zip(*(c.cells for c in columns)):
        table.add_row(*row)
    return table


def _pct(value: float, eligible: bool) -> Text:
    text = Text(f"{value:.1f}", style="red" if value > 90 else "yellow" if value > 75 else "")
    if not eligible:
        text.stylize("dim")
    return text


def _before_after(before: float, after: float, eligible: bool) -> Text:
    return Text.assemble(_pct(before, eligible), " → ", _pct(after, eligible))


def nodes_table(result: PlanResult, width: int = DEFAULT_WIDTH) -> Group:
    resources = result.loads.resources
    entries = node_dicts(result)
    columns = [
        _Column("node", 100, cells=[e["name"] for e in entries]),
        _Column("state", 10, cells=["maintenance" if e["maintenance"] else e["status"] for e in entries]),
        _Column("guests", 20, "right", [f"{e['guests_before']} → {e['guests_after']}" for e in entries]),
    ] + [_Column(f"{r} %", 90, "right", [_before_after(e["percent_before"][r], e["percent_after"][r], e["eligible"])
                                         for e in entries]) for r in resources]
    shown = _fit(columns, width, 1 + len(resources)) or [columns[0]] + columns[3:]
    title = Text(f"Nodes: {result.settings.mode} {', '.join(resources)} in % of each node, before → after",
                 style="bold")
    return Group(title, _table(shown))


def _step_cells(d: dict[str, Any], hop: int) -> dict[str, str]:
    gain = "" if d["gain_pp"] is None else f"{d['gain_pp']:.2f}"
    return {"guest": f"{d['vmid']} {d['name']}", "type": d["type"],
            "move": f"{d['from']} → {d['to']}" + (" (park)" if hop == 1 else ""), "reason": d["reason"],
            "mode": d["mode"], "memory": format_mib(d["memory_mib"]), "time": f"{d['start_s']:.0f}–{d['end_s']:.0f} s",
            "gain pp": gain}


def _migration_columns(result: PlanResult, verbose: bool = False) -> list[_Column]:
    columns = [_Column("wave", 95, "right"), _Column("guest", 100), _Column("type", 10), _Column("move", 98),
               _Column("reason", 60), _Column("mode", 20), _Column("memory", 40, "right"),
               _Column("time", 30, "right")]
    if verbose:  # each balancing move's own contribution: the plan's spread without it, less the plan's
        columns.append(_Column("gain pp", 70, "right"))
    by_header = {c.header: c for c in columns}
    last_wave = None
    why = move_reasons(result.problem, result.placement) if verbose else {}
    for step in result.plan.steps:
        d = step_dict(result, step, why.get(step.guest))
        # The wave number on the first move of each wave only: the blank rows below belong to it.
        by_header["wave"].cells.append(str(d["wave"]) if d["wave"] != last_wave else "")
        last_wave = d["wave"]
        for header, text in _step_cells(d, step.hop).items():
            if header in by_header:
                by_header[header].cells.append(text)
    return columns


def migrations_table(result: PlanResult, width: int = DEFAULT_WIDTH, verbose: bool = False) -> Group:
    n = len(result.plan.steps)
    if n > COMPACT_ABOVE:
        return migrations_lines(result, width, verbose)
    columns = _migration_columns(result, verbose)
    shown = _fit(columns, width, 3)
    if shown is None:  # even wave, guest and move are wider than the screen: lines never cut a name
        return migrations_lines(result, width, verbose)
    title = Text(f"Migrations: {n} in {result.plan.waves} waves (a wave's moves run together)", style="bold")
    return Group(title, _table(shown))


def migrations_lines(result: PlanResult, width: int = DEFAULT_WIDTH, verbose: bool = False) -> Group:
    """The compact listing: the table's columns that fit `width` as aligned plain lines, without rich's table.

    When not even wave, guest and move fit side by side (names of 50 characters and more), each move takes
    two lines: the guest, then where it goes. Print with `crop=False`: a name wider than the screen runs on.
    """
    columns = _migration_columns(result, verbose)
    shown = _fit(columns, width, 3)
    title = Text(f"Migrations: {len(result.plan.steps)} in {result.plan.waves} waves (a wave's moves run "
                 f"together; listed compactly)", style="bold")
    if shown is None:
        return Group(title, Text(_two_line_moves(columns, width), no_wrap=True, overflow="ignore"))
    widths = [c.width for c in shown]

    def line(cells: list[str]) -> str:
        return (" " * _GAP).join(cell.rjust(w) if c.justify == "right" else cell.ljust(w)
                                 for cell, w, c in zip(cells, widths, shown)).rstrip()

    lines = [line([c.header for c in shown]), "─" * (sum(widths) + _GAP * (len(shown) - 1))]
    lines += [line([c.cells[i] for c in shown]) for i in range(len(result.plan.steps))]
    return Group(title, Text("\n".join(lines), no_wrap=True, overflow="ignore"))


def _two_line_moves(columns: list[_Column], width: int) -> str:
    by_header = {c.header: c for c in columns}
    wave_width = by_header["wave"].width
    details = [c for c in columns if c.header in ("move", "reason", "memory")]
    lines = []
    for i, guest in enumerate(by_header["guest"].cells):
        lines.append(f"{by_header['wave'].cells[i]:>{wave_width}}   {guest}")
        lines.append(" " * (wave_width + _GAP) + ", ".join(c.cells[i] for c in details))
    return "\n".join(lines)


def summary_text(result: PlanResult) -> Text:
    """The figures under the tables, one short line each so that 80 columns rarely wrap them."""
    d = plan_dict(result)
    status = STATUS_TEXT.get(d["status"], d["status"]) if d["status"] != "optimal" else "optimal"
    lines = [f"cluster {d['cluster']}: {status} ({d['algorithm']})"]
    if d["status"] == "optimal":
        lines.append(f"  {_proven(d)}")
    lines.append(f"spread (busiest − idlest node) {d['spread_before']:.2f} → {d['spread_after']:.2f} pp, "
                 f"balanciness {d['balanciness']:g} pp")
    if d["bound"] is not None and d["status"] != "balanced":
        lines.append(f"lower bound {d['bound']:.2f} pp, gap {d['gap']:.2f} pp")
    if d["greedy_spread"] is not None:
        lines.append(f"greedy (ProxLB-style) at the same budget would reach {d['greedy_spread']:.2f} pp")
    if d["budget_choice"] is not None:
        lines.append(f"budget auto: {d['budget_choice']['why']}")
    if d["held"]:
        lines.append(f"{len(d['held'])} guest(s) kept where they are (cooldown or moved by hand)")
    if d["status"] != "balanced":
        lines.append(f"{d['guests_moved']} guests move ({d['mandatory_migrations']} mandatory), "
                     f"{format_mib(d['memory_moved_mib'])} of memory")
        lines.append(f"{d['waves']} waves, predicted {format_duration(d['predicted_seconds'])}"
                     + (f", {d['parking_hops']} parking hops" if d["parking_hops"] else ""))
    lines.append(f"solved in {d['solve_seconds']:.2f} s, sequenced in {d['sequence_seconds']:.3f} s")
    text = Text("\n".join(lines))
    if d["status"] != "balanced":
        text.append("\n" + HOW_TO_READ, style="dim")
    return text


def violations_text(result: PlanResult) -> Text | None:
    if not result.violations:
        return None
    lines = [f"this plan breaks {len(result.violations)} rule(s):"] + [f"  {v.rule}: {v.message}" for v in result.violations]
    return Text("\n".join(lines), style="red")


def plan_renderable(result: PlanResult, width: int = DEFAULT_WIDTH, verbose: bool = False) -> Group:
    """Nodes, migrations, summary: for a screen or a pipe `width` columns wide; `verbose` adds each
    balancing move's gain."""
    parts: list[Any] = [nodes_table(result, width)]
    if result.plan.steps:
        parts.append(migrations_table(result, width, verbose))
    parts.append(summary_text(result))
    violations = violations_text(result)
    if violations is not None:
        parts.append(violations)
    return Group(*parts)


def move_lines(result: PlanResult) -> list[str]:
    """One line per move, for logs (service rounds): wave, guest with its name, where to, why."""
    out = []
    for step in result.plan.steps:
        d = step_dict(result, step)
        out.append(f"wave {d['wave']}: {d['vmid']} {d['name']} ({d['type']}) {d['from']} → {d['to']}, "
                   f"{d['reason']}, {format_mib(d['memory_mib'])}")
    return out


def best_node_dict(ranking: list[dict[str, Any]]) -> dict[str, Any]:
    fitting = [r for r in ranking if r["fits"]]
    return {"version": 1, "node": fitting[0]["node"] if fitting else None, "candidates": ranking}


def best_node_table(ranking: list[dict[str, Any]]) -> Table:
    table = Table(title="Candidate nodes (best first)", title_justify="left")
    for column in ("node", "fits", "spread after", "node % after", "why not"):
        table.add_column(column)
    for r in ranking:
        table.add_row(r["node"], "yes" if r["fits"] else "no",
                      "" if r["spread_after"] is None else f"{r['spread_after']:.2f} pp",
                      "" if r["percent_after"] is None else f"{r['percent_after']:.1f} %", r["reason"] or "")
    return table


def pareto_dict(cluster_name: str, points) -> dict[str, Any]:
    return {"version": 1, "cluster": cluster_name, "points": [
        {"budget": p.budget, "spread": p.spread, "bound": p.bound, "migrations": p.migrations,
         "mandatory_migrations": p.mandatory, "memory_moved_mib": p.memory_moved_mib, "status": p.status,
         "seconds": p.seconds} for p in points]}


def pareto_table(points) -> Table:
    table = Table(title="Best spread per migration budget", title_justify="left")
    for column in ("budget", "spread", "bound", "migrations", "memory moved", "status", "seconds"):
        table.add_column(column, justify="right")
    for p in points:
        table.add_row(str(p.budget), f"{p.spread:.2f} pp", "" if p.bound is None else f"{p.bound:.2f} pp",
                      f"{p.migrations} ({p.mandatory} mandatory)", format_mib(p.memory_moved_mib), p.status,
                      f"{p.seconds:.1f}")
    return table


def drain_dict(outcome) -> dict[str, Any]:
    data: dict[str, Any] = {"nodes": list(outcome.nodes), "fits": outcome.fits, "reason": outcome.reason}
    result = outcome.result
    if result is not None:
        column = RESOURCES.index(result.loads.resources[0])
        after = check.node_percent(result.problem, result.placement)
        data.update(
            guests_moved=result.plan.guests_moved, memory_moved_gib=round(result.memory_moved_mib / 1024, 2),
            spread_after=_r(result.spread_after), predicted_seconds=_r(result.plan.predicted_seconds, 1),
            nodes_after=[{"name": name, "percent_after": _r(after[n, column])}
                         for n, name in enumerate(result.cluster.node_names) if result.rules.eligible[n]],
            migrations=[step_dict(result, s) for s in result.plan.steps])
    return data


def headroom_dict(room, shape: dict[str, Any]) -> dict[str, Any]:
    text = f"{shape['cpus']:g} vCPU / {shape['memory']}" + (f" / {shape['disk']} local disk" if "disk" in shape else "")
    return {"shape": text, "total": room.total, "per_node": room.per_node, "limiting": room.limiting}
