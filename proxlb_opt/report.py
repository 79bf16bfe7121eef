"""Plan results → JSON-ready dicts and rich renderables. Pure: nothing here prints or writes.

The JSON object is versioned (`version`) and documented in README.md ("JSON output"); `apply
--plan` reads it back. Field names stay stable within a version. Waves are numbered from 1 in the
JSON and on screen (the core counts them from 0). `proxlb_dict` is the shape ProxLB 2.3.0 prints
with `-j`.

Tables are sized for the width they are printed at: guest names are never cut; on narrow widths the
columns that matter least are left out, and plans of more than COMPACT_ABOVE moves are listed as
plain lines (a rich table costs about a millisecond per row).

Names (guests, nodes, pools, tags, rules) come from files and the API: they reach rich only as `Text`,
never as markup, so `[red]` or `[/x]` in a name is printed as it is written (every table is a
`PlainTable`).
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


def plain(value: Any) -> Any:
    """A string as literal text for rich (its brackets are not markup); other renderables as they are."""
    return Text(value) if isinstance(value, str) else value


class PlainTable(Table):
    """A rich Table whose string title, headers and cells are literal text, never console markup."""

    def __init__(self, *headers: Any, title: Any = None, **kwargs: Any):
        super().__init__(*(plain(h) for h in headers), title=Text(title, style="table.title")
                         if isinstance(title, str) else title, **kwargs)

    def add_column(self, header: Any = "", *args: Any, **kwargs: Any) -> None:
        super().add_column(plain(header), *args, **kwargs)

    def add_row(self, *cells: Any, **kwargs: Any) -> None:
        super().add_row(*(plain(c) for c in cells), **kwargs)


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
    table = PlainTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
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
    table = PlainTable(title="Candidate nodes (best first)", title_justify="left")
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
    table = PlainTable(title="Best spread per migration budget", title_justify="left")
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


# ----------------------------------------------------------------------------- capacity what-if
#
# Every what-if answer becomes one JSON-ready dict (README.md, "Capacity what-if", documents the
# schemas); the terminal rendering reads the same dict, so table and JSON never disagree. Every answer
# says what is exact (proven) and what is a heuristic bound.


def _answer(proven: bool) -> str:
    return "exact" if proven else "heuristic"


def _guest_names(cluster, vmids) -> list[dict[str, Any]]:
    out = []
    for v in vmids:
        g = cluster.guest_index(v)
        out.append({"vmid": int(v), "name": cluster.guest_names[g] if g is not None else ""})
    return out


def failure_dict(f, cluster=None) -> dict[str, Any]:
    return {
        "nodes": list(f.nodes), "fits": f.fits, "proven": f.proven, "answer": _answer(f.proven), "method": f.method,
        "restarted": f.restarted, "unplaced": list(f.unplaced),
        "unplaced_guests": _guest_names(cluster, f.unplaced) if cluster is not None else [],
        "unplaced_lower_bound": f.unplaced_lower_bound, "unplaced_proven_minimal": f.unplaced_proven_minimal,
        "blocking": list(f.blocking), "max_load": f.max_load, "max_load_node": f.max_load_node,
        "max_load_per_resource": f.max_load_per_resource, "max_load_proven": f.max_load_proven,
        "not_restarted": {k: list(v) for k, v in f.not_restarted.items()},
        "restarts": [{"vmid": v, "to": n} for v, n in f.restarts], "seconds": _r(f.seconds, 3), "notes": list(f.notes),
    }


def n_plus_dict(result, cluster) -> dict[str, Any]:
    return {
        "version": 1, "scenario": "n-plus", "cluster": cluster.name, "k": result.k, "ha_only": result.ha_only,
        "restart_memory": "assigned", "holds": result.holds, "proven": result.proven, "complete": result.complete,
        "sets_total": result.sets_total, "sets_checked": result.sets_checked, "seconds": _r(result.seconds, 2),
        "decided_seconds": _r(result.decided_seconds, 2),
        "failures": [failure_dict(f, cluster) for f in result.failures], "notes": list(result.notes),
    }


def room_entry(r) -> dict[str, Any]:
    return {
        "shape": r.shape.text, "cpus": r.shape.cpu_milli / 1000, "memory_mib": r.shape.mem_mib,
        "disk_mib": r.shape.disk_mib, "tags": list(r.tags), "total": r.total, "per_node": r.per_node,
        "exact": r.exact, "answer": _answer(r.exact), "method": r.method, "lower_bound": r.lower_bound,
        "upper_bound": r.upper_bound, "limiting": r.limiting, "keep_n_plus_1": r.keep_n_plus_1,
        "seconds": _r(r.seconds, 2), "notes": list(r.notes),
    }


def room_dict(results, cluster_name: str) -> dict[str, Any]:
    entries = [room_entry(r) for r in results]
    data: dict[str, Any] = {"version": 1, "scenario": "room", "cluster": cluster_name,
                            "keep_n_plus_1": bool(results and results[0].keep_n_plus_1),
                            "tags": list(results[0].tags) if results else [], "shapes": entries}
    if len(entries) == 1:
        # One shape: its figures at the top level too (what automation reads first).
        for key in ("total", "per_node", "exact", "answer", "method", "lower_bound", "upper_bound", "limiting"):
            data[key] = entries[0][key]
    return data


def add_dict(r, cluster_name: str) -> dict[str, Any]:
    return {
        "version": 1, "scenario": "add", "cluster": cluster_name, "fits": r.fits, "proven": r.proven,
        "answer": _answer(r.proven), "method": r.method,
        "requested": [{"shape": s.text, "count": c, "placed": p} for (s, c), p in zip(r.requested, r.placed)],
        "per_node": r.per_node, "spread_before": r.spread_before, "spread_after": r.spread_after,
        "spread_proven": r.spread_proven, "max_load": r.max_load, "max_load_node": r.max_load_node,
        "keep_n_plus_1": r.keep_n_plus_1, "blocking": list(r.blocking), "seconds": _r(r.seconds, 2),
        "notes": list(r.notes),
    }


def change_dict(r, cluster_name: str) -> dict[str, Any]:
    data: dict[str, Any] = {"version": 1, "scenario": r.kind, "cluster": cluster_name, "nodes": list(r.nodes),
                            "fits": r.fits, "reason": r.reason, "spread_before": r.spread_before,
                            "seconds": _r(r.seconds, 2)}
    result = r.plan
    if result is not None:
        column = RESOURCES.index(result.loads.resources[0])
        after = check.node_percent(result.problem, result.placement)
        data.update(
            plan_status=result.status, spread_after=_r(result.spread_after), bound=_r(result.bound),
            guests_moved=result.plan.guests_moved, memory_moved_mib=result.memory_moved_mib,
            predicted_seconds=_r(result.plan.predicted_seconds, 1),
            nodes_after=[{"name": name, "percent_after": _r(after[n, column])}
                         for n, name in enumerate(result.cluster.node_names) if result.rules.eligible[n]],
            migrations=[step_dict(result, s) for s in result.plan.steps])
    if r.n_plus_1 is not None:
        n1 = n_plus_dict(r.n_plus_1, result.cluster if result is not None else None)
        data["n_plus_1"] = {k: v for k, v in n1.items() if k not in ("version", "scenario", "cluster")}
    return data


def growth_dict(r, cluster, scenario: str = "growth") -> dict[str, Any]:
    n1 = None
    if r.n_plus_1 is not None:
        n1 = {k: v for k, v in n_plus_dict(r.n_plus_1, cluster).items() if k not in ("version", "scenario", "cluster")}
    return {
        "version": 1, "scenario": scenario, "cluster": cluster.name, "factors": r.factors, "fits": r.fits,
        "fits_proven": r.fits_proven, "answer": _answer(r.fits_proven), "excess": r.excess,
        "moves_to_fit": r.moves_to_fit, "n_plus_1": n1, "spread": r.spread, "spread_bound": r.spread_bound,
        "spread_status": r.spread_status, "seconds": _r(r.seconds, 2), "notes": list(r.notes),
    }


def curve_dict(curve, cluster_name: str, resources) -> dict[str, Any]:
    return {
        "version": 1, "scenario": "growth-curve", "cluster": cluster_name, "resources": list(resources),
        "precision": curve.precision,
        "thresholds": {t.name: {"holds_at": t.holds_at, "fails_at": t.fails_at, "proven": t.proven,
                                "answer": _answer(t.proven)} for t in curve.thresholds},
        "points": [{"factor": p.factor, "fits": p.fits, "fits_proven": p.fits_proven, "n_plus_1": p.n_plus_1,
                    "n_plus_1_proven": p.n_plus_1_proven,
                    "homeless_after_failure": {",".join(k): v for k, v in p.homeless.items()},
                    "worst_max_load": p.worst_max_load, "spread": p.spread} for p in curve.points],
        "seconds": _r(curve.seconds, 2), "notes": list(curve.notes),
    }


def rolling_dict(r, cluster_name: str) -> dict[str, Any]:
    steps = []
    for i, s in enumerate(r.steps):
        res = s.result
        steps.append({
            "step": i + 1, "node": s.node, "migrations": s.migrations, "predicted_seconds": _r(s.seconds, 1),
            "memory_moved_mib": res.memory_moved_mib if res is not None else 0,
            "waves": res.plan.waves if res is not None else 0, "status": res.status if res is not None else "failed",
            "stays": list(s.stays), "problem": s.problem,
            "plan": [step_dict(res, st) for st in res.plan.steps] if res is not None else [],
        })
    return {
        "version": 1, "scenario": "rolling", "cluster": cluster_name, "order": list(r.nodes),
        "order_method": r.order_method, "orders_searched": r.orders_searched, "complete": r.complete,
        "total_migrations": r.migrations, "lower_bound_migrations": r.lower_bound,
        "migrations_proven_minimal": r.proven_minimal, "simulated_migrations": r.simulated_migrations,
        "predicted_seconds": _r(r.predicted_seconds, 1), "seconds": _r(r.seconds, 2), "steps": steps,
        "notes": list(r.notes),
    }


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def rolling_markdown(d: dict[str, Any]) -> str:
    """The runbook: order, totals (and what is proven), then per step the migrations in waves."""
    method = {"exhaustive": "every order searched (on a fast simulation of the evacuations)",
              "greedy": "greedy order (heuristic: not every order was searched)"}[d["order_method"]]
    proof = ("proven minimal (equal to the lower bound)" if d["migrations_proven_minimal"]
             else f"lower bound {d['lower_bound_migrations']}: not proven minimal")
    lines = [f"# Rolling maintenance runbook: {d['cluster']}", "",
             f"Order: {' → '.join(d['order'])} ({method}).", "",
             f"Total: {d['total_migrations']} migrations ({proof}), predicted {_duration(d['predicted_seconds'])} "
             f"of migrations.", ""]
    for note in d["notes"]:
        lines.append(f"> {note}")
    lines += ["", "| step | node | migrations | predicted | memory moved | waves | stays (pinned here) |",
              "|---:|---|---:|---:|---:|---:|---|"]
    for s in d["steps"]:
        lines.append(f"| {s['step']} | {s['node']} | {s['migrations']} | {_duration(s['predicted_seconds'])} | "
                     f"{format_mib(s['memory_moved_mib'])} | {s['waves']} | "
                     f"{', '.join(map(str, s['stays'])) or '—'} |")
    for s in d["steps"]:
        lines += ["", f"## Step {s['step']}: {s['node']}", ""]
        if s["problem"]:
            lines += [f"**Cannot be drained:** {s['problem']}", ""]
            continue
        lines.append(f"1. Put {s['node']} in maintenance (`ha-manager crm-command node-maintenance enable "
                     f"{s['node']}`, or `proxmox_cluster.maintenance_nodes`).")
        lines.append(f"2. Migrate ({s['migrations']} moves, {s['waves']} waves, predicted "
                     f"{_duration(s['predicted_seconds'])}):")
        if s["plan"]:
            lines += ["", "   | wave | guest | from | to | why | mode | predicted |", "   |---:|---|---|---|---|---|---:|"]
            for m in s["plan"]:
                lines.append(f"   | {m['wave'] + 1} | {m['vmid']} {m['name']} | {m['from']} | {m['to']} | {m['reason']} | "
                             f"{m['mode']} | {_duration(m['seconds'])} |")
            lines.append("")
        if s["stays"]:
            lines.append(f"   Stay on {s['node']} (may run there only; down while it is): "
                         f"{', '.join(map(str, s['stays']))}.")
        lines.append(f"3. Upgrade and reboot {s['node']}; then take it out of maintenance. Its guests stay where they "
                     f"went; it may receive guests in later steps.")
    return "\n".join(lines) + "\n"


def _yes(value) -> str:
    return "yes" if value is True else "no" if value is False else "?"


def n_plus_table(d: dict[str, Any], title: str | None = None) -> Table:
    k = d["k"]
    table = PlainTable(title=title or (f"N+{k}: {'HA-managed' if d['ha_only'] else 'all'} guests of the failed "
                                  f"node{'s' if k > 1 else ''} restarted elsewhere, nothing else moving (worst first)"),
                  title_justify="left")
    for column, justify in (("failed", "left"), ("fits", "left"), ("answer", "left"), ("restart", "right"),
                            ("no home", "right"), ("max load after", "right"), ("not restarted", "left"),
                            ("blocking", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for f in d["failures"]:
        unplaced = str(len(f["unplaced"]))
        if f["unplaced"] and not f["unplaced_proven_minimal"]:
            unplaced += f" (≥ {f['unplaced_lower_bound']})"
        load = "" if f["max_load"] is None else f"{f['max_load']:.1f} % {f['max_load_node']}"
        if f["max_load"] is not None:
            load += " (min)" if f["max_load_proven"] else ""
        skipped = ", ".join(f"{len(v)} {k}" for k, v in f["not_restarted"].items()) or "—"
        blocking = "; ".join(f["blocking"][:2]) + (f" (+{len(f['blocking']) - 2} more)" if len(f["blocking"]) > 2 else "")
        table.add_row(", ".join(f["nodes"]), Text(_yes(f["fits"]), style="green" if f["fits"] else "red"),
                      f"{f['answer']} ({f['method']})", str(f["restarted"]), unplaced, load, skipped, blocking or "—")
    return table


def n_plus_summary(d: dict[str, Any]) -> str:
    holds = {True: "holds", False: "does NOT hold", None: "holds for every set checked (not all were)"}[d["holds"]]
    proof = "every answer exact" if d["proven"] else "some answers are heuristic (time limit)"
    lines = [f"N+{d['k']} {holds}: {d['sets_checked']} of {d['sets_total']} failed sets checked, {proof}, "
             f"decided in {d['decided_seconds']:.1f} s ({d['seconds']:.1f} s with the highest loads minimized). "
             f"Restarted guests count their assigned memory; 'max load' is the highest surviving node's percent "
             f"('(min)': proven the least possible)."]
    lines += [f"note: {n}" for n in d["notes"]]
    return "\n".join(lines)


def room_table(d: dict[str, Any]) -> Table:
    """Nodes as rows, one column per shape; the total and how it is proven last."""
    n1 = " while keeping N+1" if d["keep_n_plus_1"] else ""
    tags = f" with tags {', '.join(d['tags'])}" if d["tags"] else ""
    table = PlainTable(title=f"Room for new guests{tags}{n1} (nothing that runs moves)", title_justify="left")
    nodes = list(d["shapes"][0]["per_node"]) if d["shapes"] else []
    table.add_column("node")
    for e in d["shapes"]:
        table.add_column(e["shape"], justify="right")
    for n in nodes:
        table.add_row(n, *[str(e["per_node"].get(n, 0)) for e in d["shapes"]])
    table.add_section()
    table.add_row("total", *[str(e["total"]) for e in d["shapes"]])
    table.add_row("answer", *[f"exact ({e['method']})" if e["exact"] else
                              f"{e['lower_bound']}–{e['upper_bound']} ({e['method']})" for e in d["shapes"]])
    return table


def room_limits_text(d: dict[str, Any]) -> str:
    lines = []
    for e in d["shapes"]:
        lines.append(f"{e['shape']}: what stops one more, per node:")
        lines += [f"  {n}: {why}" for n, why in e["limiting"].items()]
        lines += [f"  note: {n}" for n in e["notes"]]
    return "\n".join(lines)


def add_text(d: dict[str, Any]) -> Group:
    table = PlainTable(title="New guests: where they go (nothing that runs moves)", title_justify="left")
    shapes = [r["shape"] for r in d["requested"]]
    table.add_column("node")
    for s in shapes:
        table.add_column(s, justify="right")
    for node, row in sorted(d["per_node"].items()):
        table.add_row(node, *[str(row.get(s, 0)) for s in shapes])
    status = "fit" if d["fits"] else "do NOT all fit"
    asked = ", ".join(f"{r['count']}x{r['shape']}" for r in d["requested"])
    placed = ", ".join(f"{r['placed']}/{r['count']}" for r in d["requested"])
    least = "the least possible" if d["spread_proven"] else "not proven the least"
    lines = [f"{asked}: {status} ({d['answer']}, {d['method']}); placed {placed}",
             f"spread {d['spread_before']:.2f} → {d['spread_after']:.2f} pp ({least})"
             + (f", highest load {d['max_load']:.1f} % on {d['max_load_node']}" if d["max_load"] is not None else "")]
    lines += [f"blocking: {b}" for b in d["blocking"]]
    lines += [f"note: {n}" for n in d["notes"]]
    return Group(table, Text("\n".join(x for x in lines if x)))


def change_text(d: dict[str, Any]) -> Group:
    verb = "removing" if d["scenario"] == "remove" else "adding"
    nodes = ", ".join(d["nodes"])
    parts: list[Any] = []
    if not d["fits"]:
        parts.append(Text(f"{verb} {nodes}: does NOT fit: {d['reason']}", style="red"))
        return Group(*parts)
    parts.append(Text(f"{verb} {nodes}: {d['guests_moved']} guests move ({format_mib(d['memory_moved_mib'])}), spread "
                      f"{d['spread_before']:.2f} → {d['spread_after']:.2f} pp ({STATUS_TEXT.get(d['plan_status'], d['plan_status'])}), "
                      f"predicted {_duration(d['predicted_seconds'])}"))
    if d["migrations"]:
        table = PlainTable(title="Migrations", title_justify="left")
        for column in ("wave", "guest", "from", "to", "reason", "time"):
            table.add_column(column)
        for m in d["migrations"]:
            table.add_row(str(m["wave"] + 1), f"{m['vmid']} {m['name']}", m["from"], m["to"], m["reason"],
                          f"{m['start_s']:.0f}–{m['end_s']:.0f} s")
        parts.append(table)
    if "n_plus_1" in d:
        n1 = dict(d["n_plus_1"], k=1)
        parts.append(n_plus_table(n1, title="N+1 after the change (worst first)"))
        parts.append(Text(n_plus_summary(n1)))
    return Group(*parts)


def growth_text(d: dict[str, Any]) -> Group:
    factors = ", ".join(f"{k} ×{v:g}" for k, v in d["factors"].items() if v != 1.0) or "no growth"
    fits = "everything fits" if d["fits"] else "does NOT fit"
    lines = [f"growth {factors}: {fits} ({d['answer']})"
             + (f" after {d['moves_to_fit']} move(s)" if d["fits"] and d["moves_to_fit"] else "")]
    if d["excess"]:
        lines.append("over capacity at best: " + ", ".join(f"{k} {v:g}" for k, v in d["excess"].items()))
    if d["spread"] is not None:
        lines.append(f"reachable spread {d['spread']:.2f} pp ({d['spread_status']}"
                     + (f", bound {d['spread_bound']:.2f} pp" if d["spread_bound"] is not None else "") + ")")
    lines += [f"note: {n}" for n in d["notes"]]
    parts: list[Any] = [Text("\n".join(lines))]
    if d["n_plus_1"] is not None:
        n1 = dict(d["n_plus_1"], k=1)
        parts += [n_plus_table(n1, title="N+1 of the grown cluster (worst first)"), Text(n_plus_summary(n1))]
    return Group(*parts)


def curve_text(d: dict[str, Any]) -> Group:
    table = PlainTable(title=f"Growth of {', '.join(d['resources'])}: where each property first fails", title_justify="left")
    for column in ("property", "holds up to", "fails at", "answer"):
        table.add_column(column)
    names = {"fits": "everything fits", "n_plus_1": "N+1 (no failure worse than today)",
             "balanced": "spread ≤ balanciness reachable"}
    for name, t in d["thresholds"].items():
        table.add_row(names.get(name, name), "—" if t["holds_at"] is None else f"×{t['holds_at']:.3f}",
                      "not below ×4" if t["fails_at"] is None else f"×{t['fails_at']:.3f}", t["answer"])
    points = PlainTable(title="Probes", title_justify="left")
    for column in ("factor", "fits", "N+1", "worst max load after a failure", "spread"):
        points.add_column(column, justify="right")
    for p in d["points"]:
        points.add_row(f"×{p['factor']:.3f}", _yes(p["fits"]), _yes(p["n_plus_1"]),
                       "" if p["worst_max_load"] is None else f"{p['worst_max_load']:.1f} %",
                       "" if p["spread"] is None else f"{p['spread']:.2f} pp")
    return Group(table, points, Text("\n".join(f"note: {n}" for n in d["notes"])))


def n_plus_markdown(d: dict[str, Any]) -> str:
    """The N+k table as Markdown (benchmarks/results/whatif/), worst first."""
    who = "HA-managed" if d["ha_only"] else "all"
    lines = [f"# N+{d['k']}: {d['cluster']}", "",
             f"{who.capitalize()} guests of the failed node(s) restarted on the others, nothing else moving. "
             + n_plus_summary(d).replace("\n", " "), "",
             "| failed | fits | answer | restarted | without a home | max load after | not restarted | blocking |",
             "|---|---|---|---:|---:|---:|---|---|"]
    for f in d["failures"]:
        homeless = ", ".join(f"{g['vmid']} {g['name']}" for g in f["unplaced_guests"]) or "—"
        load = "—" if f["max_load"] is None else f"{f['max_load']:.1f} % {f['max_load_node']}" + (
            " (min)" if f["max_load_proven"] else "")
        skipped = ", ".join(f"{len(v)} {k}" for k, v in f["not_restarted"].items()) or "—"
        blocking = "; ".join(f["blocking"]).replace("|", "/") or "—"
        lines.append(f"| {', '.join(f['nodes'])} | {_yes(f['fits'])} | {f['answer']} ({f['method']}) | "
                     f"{f['restarted']} | {homeless} | {load} | {skipped} | {blocking} |")
    return "\n".join(lines) + "\n"


def room_markdown(d: dict[str, Any]) -> str:
    n1 = ", keeping N+1" if d["keep_n_plus_1"] else ""
    tags = f" with tags {', '.join(d['tags'])}" if d["tags"] else ""
    nodes = list(d["shapes"][0]["per_node"]) if d["shapes"] else []
    lines = [f"# Room for new guests{tags}{n1}: {d['cluster']}", "",
             "Nothing that runs moves; nodes in maintenance take none. 'exact' says how it is proven.", "",
             "| shape | total | answer | " + " | ".join(nodes) + " |",
             "|---|---:|---|" + "---:|" * len(nodes)]
    for e in d["shapes"]:
        answer = f"exact ({e['method']})" if e["exact"] else f"between {e['lower_bound']} and {e['upper_bound']} ({e['method']})"
        lines.append(f"| {e['shape']} | {e['total']} | {answer} | " + " | ".join(str(e["per_node"][n]) for n in nodes) + " |")
    for e in d["shapes"]:
        lines += ["", f"What stops one more {e['shape']}:", ""]
        lines += [f"- {n}: {why}" for n, why in e["limiting"].items()]
        lines += [f"- note: {n}" for n in e["notes"]]
    return "\n".join(lines) + "\n"


def curve_markdown(d: dict[str, Any]) -> str:
    names = {"fits": "everything fits", "n_plus_1": "N+1 (no single-node failure worse than today)",
             "balanced": "a spread ≤ balanciness is reachable"}
    lines = [f"# Growth curve: {d['cluster']} ({', '.join(d['resources'])} grown alike)", "",
             "| property | holds up to | fails at | answer |", "|---|---:|---:|---|"]
    for name, t in d["thresholds"].items():
        holds = "—" if t["holds_at"] is None else format(t["holds_at"], ".3f")
        fails = "not below 4" if t["fails_at"] is None else format(t["fails_at"], ".3f")
        lines.append(f"| {names.get(name, name)} | {holds} | {fails} | {t['answer']} |")
    lines += ["", "| factor | fits | N+1 | worst max load after a failure | reachable spread |", "|---:|---|---|---:|---:|"]
    for p in d["points"]:
        lines.append(f"| {p['factor']:.3f} | {_yes(p['fits'])} | {_yes(p['n_plus_1'])} | "
                     f"{'—' if p['worst_max_load'] is None else format(p['worst_max_load'], '.1f') + ' %'} | "
                     f"{'—' if p['spread'] is None else format(p['spread'], '.2f') + ' pp'} |")
    lines += [""] + [f"- {n}" for n in d["notes"]]
    return "\n".join(lines) + "\n"
