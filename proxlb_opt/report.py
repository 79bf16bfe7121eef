"""Plan results → JSON-ready dicts and rich renderables. Pure: nothing here prints or writes.

The JSON object is versioned (`version`) and documented in README.md ("JSON output"); `apply
--plan` reads it back. Field names stay stable within a version.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from proxlb_opt import __version__, check
from proxlb_opt.config import RESOURCES
from proxlb_opt.plan import PLAN_FORMAT_VERSION, Step
from proxlb_opt.planner import PlanResult
from proxlb_opt.units import format_mib

STATUS_TEXT = {
    "optimal": "optimal (proven)",
    "feasible": "feasible (not proven optimal)",
    "balanced": "balanced, nothing to do",
    "greedy": "greedy (ProxLB-style baseline)",
}


def status_text(d: dict[str, Any]) -> str:
    """The status line of a plan dict; "optimal" always says what was proven and to which tolerance."""
    if d["status"] != "optimal":
        return STATUS_TEXT.get(d["status"], d["status"])
    cost = "migration cost proven minimal" if d["cost_proven"] else "migration cost not proven minimal"
    return f"optimal (spread proven within {d['optimality_tolerance']:g} pp of the best possible; {cost})"


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def step_dict(result: PlanResult, step: Step) -> dict[str, Any]:
    from proxlb_opt.planner import time_model

    c = result.cluster
    g = step.guest
    return {
        "vmid": int(c.guest_vmid[g]),
        "name": c.guest_names[g],
        "type": c.guest_type(g),
        "from": c.node_names[step.source],
        "to": c.node_names[step.target],
        "reason": step.reason,
        "mode": _migration_mode(result, g),
        "wave": step.wave,
        "start_s": _r(step.start_s, 1),
        "end_s": _r(step.end_s, 1),
        "seconds": _r(step.seconds, 1),
        "downtime_s": _r(time_model(result.settings).downtime(c, g), 1),
        "via": c.node_names[step.via] if step.via is not None else None,
        "hop": step.hop,
        "memory_mib": int(c.guest_mem_used_mib[g]) if c.guest_running[g] else 0,
        "local_disk_mib": int(c.guest_disk_used_mib[g]) if c.guest_local_disk[g] else 0,
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


def plan_dict(result: PlanResult) -> dict[str, Any]:
    s = result.settings
    plan = result.plan
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
        "migrations": [step_dict(result, step) for step in plan.steps],
        "nodes": node_dicts(result),
        "violations": [{"rule": v.rule, "message": v.message} for v in result.violations],
        "warnings": list(result.warnings),
        "notes": list(result.notes),
    }


# ----------------------------------------------------------------------------- terminal


def _pct_cell(value: float, eligible: bool) -> Text:
    style = "red" if value > 90 else "yellow" if value > 75 else ""
    text = Text(f"{value:5.1f} %", style=style)
    if not eligible:
        text.stylize("dim")
    return text


def nodes_table(result: PlanResult) -> Table:
    resources = result.loads.resources
    table = Table(title=f"Nodes ({result.settings.mode} {', '.join(resources)})", title_justify="left")
    table.add_column("node")
    table.add_column("state")
    table.add_column("guests", justify="right")
    for resource in resources:
        table.add_column(f"{resource} before", justify="right")
        table.add_column(f"{resource} after", justify="right")
    for entry in node_dicts(result):
        state = "maintenance" if entry["maintenance"] else entry["status"]
        cells: list[Any] = [entry["name"], state, f"{entry['guests_before']} → {entry['guests_after']}"]
        for resource in resources:
            cells.append(_pct_cell(entry["percent_before"][resource], entry["eligible"]))
            cells.append(_pct_cell(entry["percent_after"][resource], entry["eligible"]))
        table.add_row(*cells)
    return table


def migrations_table(result: PlanResult) -> Table:
    table = Table(title="Migrations (waves run one after another; the moves of a wave run together)",
                  title_justify="left")
    for column, justify in (("wave", "right"), ("guest", "left"), ("type", "left"), ("move", "left"),
                            ("reason", "left"), ("mode", "left"), ("memory", "right"), ("time", "right")):
        table.add_column(column, justify=justify, no_wrap=column in ("move", "time", "memory"))
    last_wave = None
    for step in result.plan.steps:
        d = step_dict(result, step)
        if last_wave is not None and step.wave != last_wave:
            table.add_section()
        last_wave = step.wave
        move = f"{d['from']} → {d['to']}" + (" (park)" if step.hop == 1 else "")
        table.add_row(str(d["wave"] + 1), f"{d['vmid']} {d['name']}", d["type"], move, d["reason"], d["mode"],
                      format_mib(d["memory_mib"]), f"{d['start_s']:.0f}–{d['end_s']:.0f} s")
    return table


def summary_text(result: PlanResult) -> Text:
    d = plan_dict(result)
    lines = [
        f"cluster {d['cluster']}: {status_text(d)} ({d['algorithm']})",
        f"spread {d['spread_before']:.2f} → {d['spread_after']:.2f} pp (balanciness {d['balanciness']:g} pp)",
    ]
    if d["bound"] is not None and d["status"] != "balanced":
        lines.append(f"lower bound {d['bound']:.2f} pp, gap {d['gap']:.2f} pp")
    if d["greedy_spread"] is not None:
        lines.append(f"greedy (ProxLB-style) at the same budget would reach {d['greedy_spread']:.2f} pp")
    if d["status"] != "balanced":
        lines.append(
            f"{d['guests_moved']} guests move ({d['mandatory_migrations']} mandatory), "
            f"{format_mib(d['memory_moved_mib'])} of memory, {d['waves']} waves, "
            f"predicted {d['predicted_seconds']:.0f} s"
            + (f", {d['parking_hops']} parking hops" if d["parking_hops"] else ""))
    lines.append(f"solved in {d['solve_seconds']:.2f} s, sequenced in {d['sequence_seconds']:.3f} s")
    return Text("\n".join(lines))


def violations_text(result: PlanResult) -> Text | None:
    if not result.violations:
        return None
    lines = [f"this plan breaks {len(result.violations)} rule(s):"] + [f"  {v.rule}: {v.message}" for v in result.violations]
    return Text("\n".join(lines), style="red")


def plan_renderable(result: PlanResult) -> Group:
    parts: list[Any] = [nodes_table(result)]
    if result.plan.steps:
        parts.append(migrations_table(result))
    parts.append(summary_text(result))
    violations = violations_text(result)
    if violations is not None:
        parts.append(violations)
    return Group(*parts)


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
