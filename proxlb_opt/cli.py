"""The typer CLI. Each command is short: parse → core → report → exit code.

Data goes to stdout (tables, or JSON alone with --json); logs and warnings go to stderr. Every
ProxlbOptError becomes one line `error: ...` on stderr and its exit code (config/input 2,
collection 3, infeasible 4, timeout 5, apply 6, internal 70) in `main`, the console entry point.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from proxlb_opt import __version__

#: When the command started: `--time-limit` counts from here. The first command of a process counts from
#: the import of this module (its imports included); `main` restarts the clock for any later one.
_STARTED = [time.monotonic(), False]
from proxlb_opt.config import ALGORITHMS, METHODS, MODES, Settings, load_settings, parse_max_migrations
from proxlb_opt.deadline import Deadline
from proxlb_opt.errors import InputError, InternalError, ProxlbOptError

app = typer.Typer(
    name="proxlb-opt",
    help="Optimization-based rebalancer for Proxmox VE clusters (a CP-SAT drop-in for ProxLB).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
log = logging.getLogger("proxlb_opt")

MODEL_HELP = "Cluster model file (YAML or JSON, see models/README.md)."
CONFIG_HELP = "proxlb.yaml (ProxLB keys plus an optimizer: section)."


def _stdout() -> Console:
    # Piped output (cron mails, CI logs) gets a fixed, wide layout instead of rich's 80 columns.
    width = None if sys.stdout.isatty() else 132
    return Console(highlight=False, soft_wrap=False, width=width)


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def _settings(config: Optional[Path], **overrides: Any) -> Settings:
    settings = load_settings(config)
    return settings.with_overrides(**overrides)


def _choice(value: Optional[str], options: tuple[str, ...], flag: str) -> Optional[str]:
    if value is None:
        return None
    if value.lower() not in options:
        raise InputError(f"{flag}: must be one of {', '.join(options)}, got {value!r}")
    return value.lower()


def _load_cluster(model: Optional[Path], settings: Settings):
    from proxlb_opt.cluster import load_model

    if model is not None:
        return load_model(model)
    if settings.api is None:
        raise InputError("give --model FILE, or --config FILE with a proxmox_api section to read the live cluster")
    from proxlb_opt.adapters.proxmox import collect_cluster

    return collect_cluster(settings.api)


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _json_line(event: dict) -> None:
    """One JSON object per line, flushed at once (apply and service events for automation)."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _live_settings(config: Path, command: str) -> Settings:
    settings = _settings(config)
    if settings.api is None:
        raise InputError(f"{config}: {command} needs a proxmox_api section")
    return settings


def _warn(lines) -> None:
    for line in lines:
        log.warning(line)


# ----------------------------------------------------------------------------- plan


@app.command()
def plan(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    method: Optional[str] = typer.Option(None, help=f"Balance by: {', '.join(METHODS)}."),
    mode: Optional[str] = typer.Option(None, help=f"Load figure: {', '.join(MODES)}."),
    max_migrations: Optional[str] = typer.Option(None, "--max-migrations", help="Budget of balancing moves ('none': unlimited)."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Seconds for the whole command, reading the model file included (default 10)."),
    algorithm: Optional[str] = typer.Option(None, help=f"Planner: {', '.join(ALGORITHMS)}."),
    maintenance: list[str] = typer.Option([], "--maintenance", help="Node to drain (repeatable; adds to the config)."),
    workers: Optional[int] = typer.Option(None, help="CP-SAT worker threads (default: 8, more on big machines)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON only."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the JSON plan to this file."),
    pareto: bool = typer.Option(False, "--pareto", help="Best spread for budgets 0, 1, 2, 4, 8, … instead of one plan."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="With --pareto: also draw the curve into this PNG."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Plan a rebalancing: print the target placement and the ordered, capacity-safe migrations."""
    from proxlb_opt.planner import make_plan
    from proxlb_opt.report import plan_dict, plan_renderable

    started = _STARTED[0]  # the time limit covers the whole command, reading the model included
    _setup_logging(verbose)
    if time_limit is not None and not 0 < time_limit < float("inf"):
        raise InputError("--time-limit: must be a positive number of seconds")
    budget = parse_max_migrations(max_migrations, "--max-migrations") if max_migrations is not None else None
    settings = _settings(
        config, method=_choice(method, METHODS, "--method"), mode=_choice(mode, MODES, "--mode"),
        time_limit=time_limit, algorithm=_choice(algorithm, ALGORITHMS, "--algorithm"), workers=workers,
    )
    if max_migrations is not None:
        settings = settings.with_overrides(max_migrations=budget) if budget is not None else _unlimited(settings)
    if maintenance:
        settings = settings.with_overrides(maintenance_nodes=tuple(settings.maintenance_nodes) + tuple(maintenance))
    deadline = Deadline(settings.time_limit, start=started)
    cluster = _load_cluster(model, settings)
    if model is None:
        # Reading a live cluster is reported separately and not charged to the time limit.
        log.info("read the live cluster in %.1f s", deadline.elapsed())
        deadline = Deadline(settings.time_limit)
    if pareto or plot:
        _pareto(cluster, settings, as_json, plot, deadline)
        return
    result = make_plan(cluster, settings, deadline=deadline)
    _warn(result.warnings)
    _warn(result.notes)
    data = plan_dict(result)
    if output is not None:
        output.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if as_json:
        _emit_json(data)
    else:
        _stdout().print(plan_renderable(result))


def _pareto(cluster, settings: Settings, as_json: bool, plot: Optional[Path], deadline: Deadline) -> None:
    from proxlb_opt.report import pareto_dict, pareto_table
    from proxlb_opt.tradeoff import pareto_curve

    points = pareto_curve(cluster, settings, deadline)
    data = pareto_dict(cluster.name, points)
    if plot is not None:
        _plot_curve(points, plot, cluster.name)
    if as_json:
        _emit_json(data)
    else:
        _stdout().print(pareto_table(points))


def _plot_curve(points, path: Path, name: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'proxlb-opt[bench]'") from None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    budgets = [p.budget for p in points]
    ax.plot(budgets, [p.spread for p in points], marker="o", label="spread after (pp)")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("migration budget (balancing moves)")
    ax.set_ylabel("spread (percentage points)")
    ax.set_title(f"{name}: spread vs migration budget")
    ax2 = ax.twinx()
    ax2.bar(budgets, [p.memory_moved_mib / 1024 for p in points], alpha=0.25, color="tab:orange",
            width=[max(0.4, b * 0.3) for b in budgets], label="memory moved (GiB)")
    ax2.set_ylabel("memory moved (GiB)")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="center right")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        plt.close(fig)


def _unlimited(settings: Settings) -> Settings:
    from dataclasses import replace

    return replace(settings, max_migrations=None)


# ----------------------------------------------------------------------------- best-node


@app.command("best-node")
def best_node(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    cpus: Optional[float] = typer.Option(None, help="vCPUs of the new guest."),
    memory: Optional[str] = typer.Option(None, help="Memory of the new guest (e.g. 8G)."),
    disk: Optional[str] = typer.Option(None, help="Local disk of the new guest (e.g. 32G); shared storage if omitted."),
    tags: Optional[str] = typer.Option(None, help="Tags, ';'- or ','-separated (plb_* rules apply)."),
    guest_type: str = typer.Option("vm", "--type", help="vm or ct."),
    terraform: bool = typer.Option(False, "--terraform", help="Read a Terraform external data query (JSON) on stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """The node where a new guest of this shape fits, honouring rules and keeping the cluster balanced."""
    from proxlb_opt.bestnode import rank_nodes
    from proxlb_opt.report import best_node_dict, best_node_table

    _setup_logging(verbose)
    query: dict[str, Any] = {}
    if terraform:
        query = _terraform_query()
        model = model or (Path(query["model"]) if query.get("model") else None)
        config = config or (Path(query["config"]) if query.get("config") else None)
    settings = _settings(config)
    cluster = _load_cluster(model, settings)
    guest = _guest_shape(cpus=query.get("cpus", cpus), memory=query.get("memory", memory),
                         disk=query.get("disk", disk), tags=query.get("tags", tags),
                         guest_type=query.get("type", guest_type))
    ranking = rank_nodes(cluster, settings, guest)
    data = best_node_dict(ranking)
    if terraform:
        if data["node"] is None:
            raise InputError("no node can take a guest of this shape")
        _emit_json({"node": data["node"]})
    elif as_json:
        _emit_json(data)
    else:
        console = _stdout()
        console.print(best_node_table(ranking))
        console.print(f"best node: {data['node']}" if data["node"] else "no node can take this guest")
    if data["node"] is None:
        raise typer.Exit(4)


def _terraform_query() -> dict[str, str]:
    raw = sys.stdin.read()
    try:
        query = json.loads(raw or "{}")
    except json.JSONDecodeError:
        raise InputError("--terraform: stdin is not a JSON object (Terraform's external data source query)") from None
    if not isinstance(query, dict) or not all(isinstance(v, str) for v in query.values()):
        raise InputError("--terraform: the query must be a JSON object of strings")
    known = {"cpus", "memory", "disk", "tags", "type", "model", "config"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise InputError(f"--terraform: unknown query key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return query


def _guest_shape(cpus: Any, memory: Any, disk: Any, tags: Any, guest_type: Any) -> dict[str, Any]:
    from proxlb_opt.units import parse_cores_milli, parse_size_mib

    if memory is None or cpus is None:
        raise InputError("best-node needs --cpus and --memory (and optionally --disk, --tags)")
    try:
        parse_cores_milli(cpus, "--cpus")
        parse_size_mib(memory, "--memory")
        if disk is not None:
            parse_size_mib(disk, "--disk")
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if float(cpus) <= 0:
        raise InputError("--cpus: must be positive")
    if str(guest_type).lower() not in ("vm", "ct"):
        raise InputError(f"--type: must be vm or ct, got {guest_type!r}")
    guest: dict[str, Any] = {"cpus": float(cpus), "memory": memory, "type": str(guest_type).lower()}
    if disk is not None:
        guest.update(disk=disk, local_disk=True)
    if tags:
        guest["tags"] = str(tags)
    return guest


# ----------------------------------------------------------------------------- what-if


@app.command("what-if")
def what_if(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    n_plus: Optional[int] = typer.Option(None, "--n-plus", help="N+k: can the guests of every set of K failed nodes restart on the others?"),
    ha_only: bool = typer.Option(False, "--ha-only", help="Restart only HA-managed guests (what PVE HA does)."),
    room: list[str] = typer.Option([], "--room", help="How many more guests of a shape fit (repeatable), e.g. 4c16G or 8c32G:100G."),
    add: list[str] = typer.Option([], "--add", help="Do these fit together (repeatable), e.g. 10x4c16G."),
    tags: Optional[str] = typer.Option(None, "--tags", help="Tags the new guests carry (their rules), ';'- or ','-separated."),
    keep_n_plus_1: bool = typer.Option(False, "--keep-n-plus-1", help="With --room/--add: no single-node failure may get worse."),
    remove: list[str] = typer.Option([], "--remove", help="Decommission a node (repeatable): the drain plan, then N+1."),
    add_node: list[str] = typer.Option([], "--add-node", help="Add a node NAME:CORES:MEMORY[:DISK] (repeatable): the plan, then N+1."),
    growth: Optional[str] = typer.Option(None, "--growth", help="Grow used memory and CPU: 1.2, or memory=1.3,cpu=1.1[,disk=…]."),
    growth_curve: bool = typer.Option(False, "--growth-curve", help="The growth factor at which fits / N+1 / balance first fail."),
    rolling: bool = typer.Option(False, "--rolling", help="Rolling maintenance of NODES (default: all): order, plans, runbook."),
    nodes: Optional[list[str]] = typer.Argument(None, help="With --rolling: the nodes to drain one by one."),
    drain: list[str] = typer.Option([], "--drain", help="Node to take out (repeatable): do its guests fit elsewhere?"),
    cpus: Optional[float] = typer.Option(None, help="With --memory: how many more guests of this shape fit (hard limits only)?"),
    memory: Optional[str] = typer.Option(None, help="Memory of the guest shape (e.g. 8G)."),
    disk: Optional[str] = typer.Option(None, help="Local disk of the guest shape (e.g. 32G)."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Seconds for the whole command (default: optimizer.time_limit)."),
    workers: Optional[int] = typer.Option(None, help="CP-SAT worker threads."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the JSON to this file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the answer into this PNG (--n-plus, --room, --growth-curve)."),
    runbook: Optional[Path] = typer.Option(None, "--runbook", help="With --rolling: also write the Markdown runbook here."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Capacity what-if: node failures (N+k), room for new guests, decommission, expansion, growth, rolling maintenance."""
    from proxlb_opt import whatif

    started = _STARTED[0]
    _setup_logging(verbose)
    if time_limit is not None and not 0 < time_limit < float("inf"):
        raise InputError("--time-limit: must be a positive number of seconds")
    scenarios = [name for name, given in (
        ("--n-plus", n_plus is not None), ("--room", bool(room)), ("--add", bool(add)), ("--remove", bool(remove)),
        ("--add-node", bool(add_node)), ("--growth", growth is not None and not growth_curve),
        ("--growth-curve", growth_curve), ("--rolling", rolling)) if given]
    legacy = bool(drain) or memory is not None or cpus is not None
    if len(scenarios) > 1 or (scenarios and legacy):
        raise InputError(f"what-if answers one question at a time; got {', '.join(scenarios + (['--drain/--memory'] if legacy else []))}")
    if not scenarios and not legacy:
        raise InputError("what-if needs a question: --n-plus K, --room SHAPE, --add NxSHAPE, --remove NODE, "
                         "--add-node SPEC, --growth F, --growth-curve, --rolling [NODES], or --drain / --cpus --memory")
    if nodes and not rolling:
        raise InputError(f"unexpected argument {nodes[0]!r} (node names are for --rolling)")
    if (keep_n_plus_1 or tags) and not (room or add):
        raise InputError("--tags and --keep-n-plus-1 go with --room or --add")
    if plot is not None and not (n_plus is not None or room or growth_curve):
        raise InputError("--plot draws --n-plus, --room and --growth-curve answers")
    settings = _settings(config, time_limit=time_limit, workers=workers)
    deadline = Deadline(settings.time_limit, start=started)
    cluster = _load_cluster(model, settings)
    if model is None:
        log.info("read the live cluster in %.1f s", deadline.elapsed())
        deadline = Deadline(settings.time_limit)
    if legacy:
        data, failed = _what_if_legacy(cluster, settings, drain, cpus, memory, disk, deadline)
    else:
        data, failed = _what_if_answer(whatif, cluster, settings, deadline, n_plus=n_plus, ha_only=ha_only, room=room,
                                       add=add, tags=tags, keep=keep_n_plus_1, remove=remove, add_node=add_node,
                                       growth=growth, growth_curve=growth_curve, rolling=rolling, nodes=nodes or [])
    if output is not None:
        _write_text(output, json.dumps(data, indent=2) + "\n")
    if runbook is not None:
        if data.get("scenario") != "rolling":
            raise InputError("--runbook goes with --rolling")
        from proxlb_opt.report import rolling_markdown

        _write_text(runbook, rolling_markdown(data))
    if plot is not None:
        _what_if_plot(data, plot)
    if as_json:
        _emit_json(data)
    else:
        _stdout().print(_what_if_text(data))
    if failed:
        raise typer.Exit(4)


def _what_if_legacy(cluster, settings: Settings, drain: list[str], cpus, memory, disk, deadline: Deadline):
    """--drain and --cpus/--memory (hard limits only), as before: {"drain": …, "headroom": …}."""
    from proxlb_opt import whatif
    from proxlb_opt.report import drain_dict, headroom_dict

    if drain and memory is None and cpus is not None:
        raise InputError("--cpus needs --memory")
    data: dict[str, Any] = {"version": 1, "cluster": cluster.name}
    if drain:
        data["drain"] = drain_dict(whatif.drain(cluster, settings, tuple(drain), deadline))
    if memory is not None or cpus is not None:
        shape = _guest_shape(cpus=cpus, memory=memory, disk=disk, tags=None, guest_type="vm")
        data["headroom"] = headroom_dict(whatif.headroom(cluster, settings, shape), shape)
    return data, "drain" in data and not data["drain"]["fits"]


def _what_if_answer(whatif, cluster, settings: Settings, deadline: Deadline, **q):
    """Run the one question asked; (JSON dict, whether the answer is a definite "no" → exit 4)."""
    from proxlb_opt import report
    from proxlb_opt.problem import build_problem

    ha_only = q["ha_only"]
    if q["n_plus"] is not None:
        result = whatif.n_plus_k(cluster, settings, q["n_plus"], ha_only, deadline)
        data = report.n_plus_dict(result, build_problem(cluster, settings).cluster)
        return data, data["holds"] is False
    tags = whatif.parse_tags(q["tags"])
    if q["room"]:
        shapes = [whatif.parse_shape(text, "--room") for text in q["room"]]
        results = []
        for i, shape in enumerate(shapes):
            share = deadline.sub(deadline.remaining() / (len(shapes) - i))
            results.append(whatif.room(cluster, settings, shape, tags, q["keep"], ha_only, share))
        return report.room_dict(results, cluster.name), False
    if q["add"]:
        requests = [whatif.parse_counted_shape(text, "--add") for text in q["add"]]
        data = report.add_dict(whatif.add_guests(cluster, settings, requests, tags, q["keep"], ha_only, deadline),
                               cluster.name)
        return data, not data["fits"]
    if q["remove"]:
        data = report.change_dict(whatif.remove_nodes(cluster, settings, tuple(q["remove"]), ha_only, deadline),
                                  cluster.name)
        return data, not data["fits"]
    if q["add_node"]:
        entries = [whatif.parse_node_spec(text) for text in q["add_node"]]
        data = report.change_dict(whatif.add_nodes(cluster, settings, entries, ha_only, deadline), cluster.name)
        return data, not data["fits"]
    if q["growth_curve"]:
        resources = ("memory", "cpu")
        if q["growth"] is not None:
            factors = whatif.parse_growth(q["growth"])
            resources = tuple(k for k, v in factors.items() if v != 1.0) or resources
        curve = whatif.growth_curve(cluster, settings, ha_only, deadline, resources)
        return report.curve_dict(curve, cluster.name, resources), False
    if q["growth"] is not None:
        result = whatif.growth(cluster, settings, whatif.parse_growth(q["growth"]), ha_only, deadline)
        data = report.growth_dict(result, build_problem(cluster, settings).cluster)
        return data, not data["fits"]
    from proxlb_opt.rolling import rolling

    data = report.rolling_dict(rolling(cluster, settings, tuple(q["nodes"]), deadline), cluster.name)
    return data, not data["complete"]


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None


def _what_if_plot(data: dict, path: Path) -> None:
    """A PNG of the answer: max load per failed set (N+k), new guests per node (room), or the growth curve."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'proxlb-opt[plot]'") from None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    scenario = data.get("scenario")
    if scenario == "n-plus":
        failures = sorted(data["failures"], key=lambda f: f["nodes"])
        labels = [",".join(f["nodes"]) for f in failures]
        loads = [f["max_load"] or 0 for f in failures]
        colors = ["tab:green" if f["fits"] else "tab:red" for f in failures]
        ax.bar(labels, loads, color=colors)
        ax.set_ylabel("highest load of a surviving node (%)")
        ax.set_xlabel("failed node(s) (red: some guests find no home)")
        ax.set_title(f"{data['cluster']}: N+{data['k']}")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    elif scenario == "room":
        nodes = list(data["shapes"][0]["per_node"])
        width = 0.8 / max(1, len(data["shapes"]))
        for i, e in enumerate(data["shapes"]):
            ax.bar([x + i * width for x in range(len(nodes))], [e["per_node"][n] for n in nodes], width=width,
                   label=f"{e['shape']}: {e['total']} ({e['answer']})")
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(nodes))], nodes, rotation=60, fontsize=7)
        ax.set_ylabel("new guests that fit")
        ax.set_title(f"{data['cluster']}: room for new guests" + (" (keeping N+1)" if data["keep_n_plus_1"] else ""))
        ax.legend()
    else:
        points = data["points"]
        factors = [p["factor"] for p in points]
        ax.plot(factors, [p["worst_max_load"] if p["worst_max_load"] is not None else float("nan") for p in points],
                marker="o", label="highest load after the worst single-node failure (%)")
        ax.plot(factors, [p["spread"] if p["spread"] is not None else float("nan") for p in points], marker="s",
                label="reachable spread (pp)")
        names = {"fits": "fits", "n_plus_1": "N+1 as today", "balanced": "balanced"}
        for (name, t), color in zip(data["thresholds"].items(), ("tab:red", "tab:purple", "tab:gray")):
            if t["fails_at"] is not None:
                ax.axvline(t["fails_at"], color=color, linestyle="--",
                           label=f"{names.get(name, name)} fails at ×{t['fails_at']:.2f} ({t['answer']})")
        ax.set_xlabel(f"growth factor ({', '.join(data['resources'])})")
        ax.set_ylabel("percent / percentage points")
        ax.set_title(f"{data['cluster']}: growth curve")
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        plt.close(fig)


def _what_if_text(data: dict):
    """The terminal rendering of a what-if answer, from its JSON dict (so both always agree)."""
    from rich.console import Group
    from rich.text import Text

    from proxlb_opt import report

    scenario = data.get("scenario")
    if scenario == "n-plus":
        return Group(report.n_plus_table(data), Text(report.n_plus_summary(data)))
    if scenario == "room":
        return Group(report.room_table(data), Text(report.room_limits_text(data)))
    if scenario == "add":
        return report.add_text(data)
    if scenario in ("remove", "add-node"):
        return report.change_text(data)
    if scenario == "growth":
        return report.growth_text(data)
    if scenario == "growth-curve":
        return report.curve_text(data)
    if scenario == "rolling":
        return Text(report.rolling_markdown(data))
    lines = []
    if "drain" in data:
        d = data["drain"]
        nodes = ", ".join(d["nodes"])
        if d["fits"]:
            lines.append(f"draining {nodes}: everything fits; {d['guests_moved']} guests move "
                         f"({d['memory_moved_gib']:.1f} GiB), spread after {d['spread_after']:.2f} pp, "
                         f"predicted {d['predicted_seconds']:.0f} s")
            lines += [f"  {n['name']}: {n['percent_after']:.1f} % after" for n in d["nodes_after"]]
        else:
            lines.append(f"draining {nodes}: does NOT fit: {d['reason']}")
    if "headroom" in data:
        h = data["headroom"]
        lines.append(f"room for {h['total']} more guests of {h['shape']} (hard limits only; --room honours rules):")
        lines += [f"  {node}: {count} (limited by {h['limiting'][node]})" for node, count in h["per_node"].items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- snapshot


@app.command()
def snapshot(
    config: Path = typer.Option(..., "--config", "-c", help=CONFIG_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="Model file to write (.yaml or .json)."),
    anonymize: bool = typer.Option(False, "--anonymize", help="Replace node, guest, pool and tag names."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Save the live cluster as a model file, to plan offline or attach to a bug report."""
    from proxlb_opt.cluster import anonymized, save_model

    _setup_logging(verbose)
    settings = _live_settings(config, "snapshot")
    cluster = _load_cluster(None, settings)
    if anonymize:
        cluster = anonymized(cluster)
    try:
        save_model(cluster, output)
    except OSError as exc:
        raise InputError(f"{output}: cannot write ({exc.strerror})") from None
    log.info("wrote %s: %d nodes, %d guests", output, cluster.n_nodes, cluster.n_guests)


# ----------------------------------------------------------------------------- apply


@app.command()
def apply(
    config: Path = typer.Option(..., "--config", "-c", help=CONFIG_HELP),
    plan_file: Optional[Path] = typer.Option(None, "--plan", help="A plan written by `plan --json` (default: plan now)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines on stdout: one event per step, then a summary."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Execute a plan with live migrations, wave by wave, re-checking the live state before every step."""
    from proxlb_opt.adapters.proxmox import ProxmoxClient
    from proxlb_opt.apply import Executor, steps_from_plan
    from proxlb_opt.errors import ApplyError

    _setup_logging(verbose)
    settings = _live_settings(config, "apply")
    plan_data = _read_plan(plan_file) if plan_file else _plan_live(settings, as_json)
    steps = steps_from_plan(plan_data, str(plan_file or "plan"))
    if not steps:
        _report_nothing(as_json)
        return
    if not yes:
        _confirm(len(steps))
    client = ProxmoxClient(settings.api)
    executor = Executor(client, settings, emit=_event_printer(as_json, len(steps)))
    report = executor.run(steps)
    summary = report.summary()
    if as_json:
        _json_line({"event": "summary", **summary})
    else:
        _stdout().print(f"done {summary['done']}, skipped {summary['skipped']}, failed {summary['failed']}")
    if not report.ok:
        raise ApplyError(f"{summary['failed']} migration(s) failed; see the report above")


def _read_plan(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: plan file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON plan ({exc.__class__.__name__})") from None


def _plan_live(settings: Settings, as_json: bool) -> dict:
    from proxlb_opt.planner import make_plan
    from proxlb_opt.report import plan_dict, plan_renderable

    result = make_plan(_load_cluster(None, settings), settings)
    _warn(result.warnings)
    if not as_json:
        _stdout().print(plan_renderable(result))
    if result.violations:
        raise InputError("the plan breaks rules (greedy algorithm); refusing to apply it")
    return plan_dict(result)


def _report_nothing(as_json: bool) -> None:
    if as_json:
        _json_line({"event": "summary", "done": 0, "skipped": 0, "failed": 0, "steps": []})
    else:
        _stdout().print("nothing to do")


def _confirm(count: int) -> None:
    if not sys.stdin.isatty():
        raise InputError("refusing to migrate without --yes when no terminal can confirm")
    if not typer.confirm(f"Run {count} migration(s) now?", default=False):
        raise typer.Exit(1)


def _event_printer(as_json: bool, total: int):
    """Where apply events go: JSON lines, a progress bar on a terminal, or plain lines (logs, cron)."""
    if as_json:
        return _json_line
    console = Console(stderr=True, highlight=False)
    progress = None
    if console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("migrations"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=False)
        task = progress.add_task("apply", total=total)
        progress.start()
    styles = {"done": "green", "skipped": "yellow", "failed": "red"}

    def show(event: dict) -> None:
        where = f"{event['vmid']} {event['name']}: {event['from']} → {event['to']}"
        if event["event"] == "start":
            console.print(f"[wave {event['wave'] + 1}] {where} started")
            return
        style = styles.get(event["event"], "")
        console.print(f"[wave {event['wave'] + 1}] {where} [{style}]{event['event']}[/{style}] {event['message']}")
        if progress is not None:
            progress.advance(task)
            if progress.finished:
                progress.stop()

    return show


# ----------------------------------------------------------------------------- service


@app.command()
def service(
    config: Path = typer.Option(Path("/etc/proxlb/proxlb.yaml"), "--config", "-c", help=CONFIG_HELP),
    once: bool = typer.Option(False, "--once", help="One round, then exit (also when service.daemon is false)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan and log, never migrate."),
    as_json: bool = typer.Option(False, "--json", help="Apply events as JSON lines on stdout."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run as a service: plan and apply every service.schedule interval (SIGHUP reloads the config)."""
    from proxlb_opt.service import run_service

    _setup_logging(verbose)
    emit = _json_line if as_json else (lambda event: log.info("%s %s %s → %s %s", event["event"], event["vmid"],
                                                             event["from"], event["to"], event.get("message", "")))
    outcome = run_service(config, once, dry_run, emit)
    if outcome.error is not None:
        raise outcome.error


# ----------------------------------------------------------------------------- simulate


@app.command()
def simulate(
    model: Path = typer.Argument(..., help=MODEL_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8006, help="TCP port (0: any free port)."),
    time_scale: float = typer.Option(1.0, "--time-scale", help="Simulated seconds per real second."),
    ca_dir: Optional[Path] = typer.Option(None, "--ca-dir", help="Where to write the CA certificate."),
) -> None:
    """Serve a simulated Proxmox VE API over HTTPS, seeded from a model file (for rehearsals and tests)."""
    from proxlb_opt.simulator.server import run_simulator

    if time_scale <= 0:
        raise InputError("--time-scale: must be positive")
    try:
        run_simulator(str(model), host=host, port=port, time_scale=time_scale,
                      ca_dir=str(ca_dir) if ca_dir else None, stream=sys.stdout)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); try --port 0 for any free port") from None


@app.command()
def version() -> None:
    """Print the version."""
    sys.stdout.write(f"proxlb-opt {__version__}\n")


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the app and turns errors into one line and an exit code.

    typer/click handle usage errors themselves (exit 2) and raise SystemExit at the end.
    """
    if _STARTED[1]:
        _STARTED[0] = time.monotonic()
    _STARTED[1] = True
    try:
        app(args=argv, prog_name="proxlb-opt")
    except ProxlbOptError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: our bug, said plainly
        if os.environ.get("PROXLB_OPT_DEBUG"):
            raise
        _fail(f"internal error (please report; PROXLB_OPT_DEBUG=1 shows the traceback): "
              f"{exc.__class__.__name__}: {exc}", InternalError.exit_code)


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(code)
