"""The typer CLI. Each command is short: parse → core → report → exit code.

Two ways in. The commands (`plan`, `apply`, `service`, ...) are proxlb-opt's own. Without a command,
ProxLB 2.3.0's options work as `proxlb` reads them: `-c FILE` (default /etc/proxlb/proxlb.yaml), `-d`
dry run, `-j` JSON, `-b` best node, `-v`/`--version`.

Data goes to stdout (tables, or JSON alone with --json); logs and warnings go to stderr (logs.py:
with syslog priorities for journald). Every ProxlbOptError becomes one line `error: ...` on stderr and
its exit code (config/input 2, collection 3, infeasible 4, timeout 5, apply 6, internal 70, another run
holds the lock 75) in `main`, the console entry point, which also turns typer's usage errors into one
such line (exit 2). `apply` and `service` print their report first and add: 7 for a migration of
unknown outcome, 130/143 when SIGINT/SIGTERM stopped them (the handlers are installed here, around the
migrations; apply.Interrupt).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.text import Text
from rich.markup import escape
from typer.core import TyperGroup

from proxlb_opt import __version__

#: When the command started: `--time-limit` counts from here. The first command of a process counts from
#: the import of this module (its imports included); `main` restarts the clock for any later one.
_STARTED = [time.monotonic(), False]
from proxlb_opt import logs
from proxlb_opt.config import ALGORITHMS, METHODS, MODES, Settings, load_settings, parse_max_migrations
from proxlb_opt.deadline import Deadline
from proxlb_opt.errors import (ConfigError, InfeasibleError, InputError, InternalError, ProxlbOptError,
                               StoppedBySignal, scrub, scrub_data)
from proxlb_opt.limits import MAX_SECONDS, MAX_WORKERS, dumps as json_dumps, is_decimal, loads_json

try:  # typer ≥ 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click.exceptions import ClickException, UsageError

#: Where ProxLB keeps its config; every command reads it unless told otherwise.
DEFAULT_CONFIG = Path("/etc/proxlb/proxlb.yaml")
#: The guest ProxLB-style `-b` places: ProxLB asks for no shape, so a small VM stands for "the next guest".
BEST_NODE_SHAPE = {"cpus": 1.0, "memory": "1G", "type": "vm"}

MODEL_HELP = "Cluster model file (YAML or JSON, see models/README.md), read instead of the live cluster."
CONFIG_HELP = "proxlb.yaml: ProxLB's keys plus an optimizer: section (default /etc/proxlb/proxlb.yaml)."
VERBOSE_HELP = "Debug detail on stderr: collection and search timings, each search stage's result."

#: Placeholders shown in help and usage, by parameter name: typer would print the Python type instead.
_METAVARS = {
    "model": "FILE", "config": "FILE", "output": "FILE", "plan_file": "FILE", "plot": "FILE.png",
    "method": "METHOD", "mode": "MODE", "max_migrations": "N", "time_limit": "SECONDS", "algorithm": "NAME",
    "maintenance": "NODE", "drain": "NODE", "workers": "N", "cpus": "N", "memory": "SIZE", "disk": "SIZE",
    "tags": "TAGS", "guest_type": "TYPE", "host": "ADDRESS", "port": "PORT", "time_scale": "FACTOR",
    "ca_dir": "DIR",
}


#: The command list of `proxlb-opt --help`, one line each (click would cut the docstrings mid-sentence).
_SHORT_HELP = {
    "plan": "Plan a rebalancing: nodes before and after, the migrations in waves.",
    "best-node": "The node a new guest of a given shape should go to.",
    "what-if": "Capacity analysis: drain nodes (N+1), room for more guests.",
    "snapshot": "Save the live cluster as a model file.",
    "apply": "Run a plan's migrations, re-checking the live cluster first.",
    "service": "Plan and apply on ProxLB's service.schedule (systemd).",
    "simulate": "Serve a simulated Proxmox VE API for rehearsals and tests.",
    "version": "Print the version.",
}


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"proxlb-opt {__version__}\n")
        raise typer.Exit()


def _version_option():
    """A `--version` option object as typer builds it (declared on a throw-away command, then reused)."""
    probe = typer.Typer(add_completion=False)

    @probe.command()
    def _probe(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                            callback=_print_version, is_eager=True, expose_value=False)) -> None:
        pass  # pragma: no cover - never run

    return typer.main.get_command(probe).params[0]


class _Commands(TyperGroup):
    """The app's command group. Sets up, once for every command: `--version`, and readable placeholders."""

    def __init__(self, **attrs: Any):
        super().__init__(**attrs)
        version = _version_option()
        for name, command in self.commands.items():
            command.short_help = command.short_help or _SHORT_HELP.get(name)
            for param in command.params:
                _readable(param)
            command.params.append(version)
        for param in self.params:
            _readable(param)


def _readable(param) -> None:
    if param.param_type_name == "argument":
        param.metavar = param.metavar or param.name.upper()
        # typer writes a required argument as {NAME} in the usage line and adds its Python type to the
        # help line; man pages (and we) say NAME.
        param.get_usage_pieces = lambda ctx, p=param: [p.metavar if p.required else f"[{p.metavar}]"]
        param.display_type_rich = lambda ctx: None
    elif not getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = _METAVARS.get(param.name, param.name.upper())
    if param.name == "verbose" and not param.help:
        param.help = VERBOSE_HELP


app = typer.Typer(
    name="proxlb-opt",
    cls=_Commands,
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no boxes, no type columns, readable at 80 columns and in man pages
    context_settings={"help_option_names": ["-h", "--help"]},
)
log = logging.getLogger("proxlb_opt")


def _stdout_width() -> int:
    """Columns for stdout: the terminal's (or COLUMNS); piped output gets COLUMNS or a fixed 80."""
    from proxlb_opt.report import DEFAULT_WIDTH

    if sys.stdout.isatty():
        return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if is_decimal(columns) and int(columns) >= 40 else DEFAULT_WIDTH


def _stdout() -> Console:
    return Console(highlight=False, soft_wrap=False, width=_stdout_width(), height=_terminal_size(sys.stdout).lines)


def _terminal_size(stream) -> os.terminal_size:
    """The stream's terminal size, or 80 × 24. Given to rich explicitly: rich reads COLUMNS and LINES itself
    with str.isdigit and crashes on a value such as "²"."""
    try:
        return os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return os.terminal_size((80, 24))


def _setup_logging(verbose: bool, level: str | int | None = None) -> None:
    logs.setup(logging.DEBUG if verbose else (level or logging.INFO))


def _config_file(config: Optional[Path]) -> Optional[Path]:
    """The config to read: the one given, else /etc/proxlb/proxlb.yaml if it exists, else none (defaults)."""
    if config is not None:
        return config
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def _settings(config: Optional[Path], **overrides: Any) -> Settings:
    _check_option_ranges(overrides.get("time_limit"), overrides.get("workers"))
    settings = load_settings(_config_file(config))
    return settings.with_overrides(**overrides)


def _check_option_ranges(time_limit: Optional[float], workers: Optional[int]) -> None:
    """--time-limit and --workers within what the solver takes (the config's keys have the same limits)."""
    if time_limit is not None and not 0 < time_limit <= MAX_SECONDS:
        raise InputError(f"--time-limit: must be a positive number of seconds, at most {MAX_SECONDS:g} (a week)")
    if workers is not None and not 0 <= workers <= MAX_WORKERS:
        raise InputError(f"--workers: must be from 0 (automatic) to {MAX_WORKERS}")


def _choice(value: Optional[str], options: tuple[str, ...], flag: str) -> Optional[str]:
    if value is None:
        return None
    if value.lower() not in options:
        raise InputError(f"{flag}: must be one of {', '.join(options)}, got {value!r}")
    return value.lower()


def _load_cluster(model: Optional[Path], settings: Settings):
    from proxlb_opt.cluster import load_model

    if model is not None:
        started = time.perf_counter()
        cluster = load_model(model)
        log.debug("read %s: %d nodes, %d guests in %.2f s", model, cluster.n_nodes, cluster.n_guests,
                  time.perf_counter() - started)
        return cluster
    if settings.api is None:
        if settings.source == Settings().source:  # no config file was read at all
            raise ConfigError(f"{DEFAULT_CONFIG}: config file not found; give --config FILE or --model FILE")
        raise InputError(f"{settings.source}: no proxmox_api section to read the live cluster from; "
                         f"add one or give --model FILE")
    from proxlb_opt.adapters.proxmox import collect_live

    return collect_live(settings)


def _json_text(data: Any, indent: int | None = 2) -> str:
    """Strict JSON (never NaN or Infinity) without secrets: what stdout and --output files get."""
    return json_dumps(scrub_data(data), indent=indent)


def _emit_json(data: Any, indent: int = 2) -> None:
    sys.stdout.write(_json_text(data, indent) + "\n")
    sys.stdout.flush()


def _json_line(event: dict) -> None:
    """One JSON object per line, flushed at once (apply and service events for automation)."""
    sys.stdout.write(_json_text(event, None) + "\n")
    sys.stdout.flush()


def _live_settings(config: Optional[Path], command: str) -> Settings:
    path = config or DEFAULT_CONFIG
    if config is None and not path.is_file():
        raise ConfigError(f"{path}: config file not found; give --config FILE")
    settings = load_settings(path)
    if settings.api is None:
        raise InputError(f"{path}: {command} needs a proxmox_api section")
    return settings


def _warn(lines) -> None:
    for line in lines:
        log.warning(line)


def _report_plan_messages(result) -> None:
    """Warnings are warnings; the search's notes (what it did, how far it got) are information."""
    _warn(result.warnings)
    for note in result.notes:
        log.info(note)


def _is_stdout(path: Optional[Path]) -> bool:
    return path is not None and str(path) == "-"


# ----------------------------------------------------------------------------- ProxLB's command line


@app.callback()
def proxlb_compatible(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", "-d", help="Plan and print the plan; never migrate."),
    as_json: bool = typer.Option(False, "--json", "-j",
                                 help="Print the plan as JSON in ProxLB's shape (stdout holds only JSON)."),
    best_node: bool = typer.Option(False, "--best-node", "-b",
                                   help="Print the name of the node a new guest should go to, and exit."),
    version: bool = typer.Option(False, "--version", "-v", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Optimization-based rebalancer for Proxmox VE clusters: a CP-SAT drop-in for ProxLB.

    Give a COMMAND, or ProxLB's own options: `proxlb-opt -c FILE` runs like `proxlb -c FILE` (one round,
    or the service when service.daemon is true), `-d` plans without migrating, `-j` prints the plan as
    JSON, `-b` names the best node for a new guest. `proxlb-opt COMMAND --help` describes each command.
    """
    if ctx.invoked_subcommand is not None:
        if config is not None or dry_run or as_json or best_node:
            raise UsageError(f"-c, -d, -j and -b are ProxLB's options for a run without a command; "
                             f"give options after the command: proxlb-opt {ctx.invoked_subcommand} --config FILE",
                             ctx=ctx)
        return
    _proxlb_run(config or DEFAULT_CONFIG, dry_run, as_json, best_node)


def _proxlb_run(config: Path, dry_run: bool, as_json: bool, best_node: bool) -> None:
    """What `proxlb` does with these options, with proxlb-opt's planner."""
    _setup_logging(False)
    if not config.is_file():
        raise ConfigError(f"{config}: config file not found; give -c FILE")
    settings = load_settings(config)
    _setup_logging(False, settings.log_level)
    if settings.api is None:
        raise ConfigError(f"{config}: no proxmox_api section; proxlb-opt without a command reads the live "
                          f"cluster (offline: proxlb-opt plan --model FILE)")
    if best_node:
        sys.stdout.write(_best_node_name(settings) + "\n")
    elif dry_run:
        _proxlb_dry_run(settings, as_json)
    else:
        from proxlb_opt.service import run_service

        outcome = run_service(config, False, False, _service_events(as_json=False, proxlb_json=as_json))
        if outcome.error is not None:
            raise outcome.error


def _best_node_name(settings: Settings) -> str:
    from proxlb_opt.bestnode import rank_nodes

    ranking = rank_nodes(_load_cluster(None, settings), settings, BEST_NODE_SHAPE)
    fitting = [r["node"] for r in ranking if r["fits"]]
    if not fitting:
        raise InfeasibleError("no node can take a new guest (-b asks for 1 vCPU and 1 GiB of memory)")
    return fitting[0]


def _proxlb_dry_run(settings: Settings, as_json: bool) -> None:
    from proxlb_opt.planner import make_plan
    from proxlb_opt.report import plan_renderable, proxlb_dict

    read = time.monotonic()
    cluster = _load_cluster(None, settings)
    log.info("read the live cluster in %.1f s", time.monotonic() - read)
    result = make_plan(cluster, settings)
    _report_plan_messages(result)
    if as_json:
        _emit_json(proxlb_dict(result), indent=4)  # as ProxLB prints it
    else:
        _stdout().print(plan_renderable(result, _stdout_width()), crop=False)


# ----------------------------------------------------------------------------- plan


@app.command()
def plan(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    method: Optional[str] = typer.Option(None, help=f"Balance by: {', '.join(METHODS)} (balancing.method)."),
    mode: Optional[str] = typer.Option(None, help=f"Load figure: {', '.join(MODES)} (balancing.mode)."),
    max_migrations: Optional[str] = typer.Option(None, "--max-migrations",
                                                 help="Budget of balancing moves: 'auto' (the budget that pays for "
                                                      "itself, the default), a number, or 'none' for no limit."),
    rules_only: bool = typer.Option(False, "--rules-only",
                                    help="Only what must change: repair rules and drain maintenance nodes with the "
                                         "fewest moves, no balancing (the same as --max-migrations 0)."),
    explain: list[int] = typer.Option([], "--explain", metavar="VMID",
                                      help="Say why this guest moves or why it stays (repeatable), instead of the "
                                           "plan."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit",
                                               help="Seconds for the whole command, reading a model file included "
                                                    "(default 10)."),
    algorithm: Optional[str] = typer.Option(None, help=f"Planner: {', '.join(ALGORITHMS)} (default cpsat)."),
    maintenance: list[str] = typer.Option([], "--maintenance", help="Node to drain (repeatable; adds to the config)."),
    workers: Optional[int] = typer.Option(None, help="CP-SAT worker threads (default 8, more on big machines)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON, and nothing else."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Also write the JSON plan to this file ('-': stdout, instead of "
                                               "the table)."),
    pareto: bool = typer.Option(False, "--pareto", help="Best spread for budgets 0, 1, 2, 4, 8, ... instead of one plan."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="With --pareto: also draw the curve into this PNG."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
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
    if rules_only:
        settings = settings.with_overrides(max_migrations=0)
    if maintenance:
        settings = settings.with_overrides(maintenance_nodes=tuple(settings.maintenance_nodes) + tuple(maintenance))
    deadline = Deadline(settings.time_limit, start=started)
    cluster = _load_cluster(model, settings)
    if model is None:
        # Reading a live cluster is reported separately and not charged to the time limit.
        log.info("read the live cluster in %.1f s", deadline.elapsed())
        deadline = Deadline(settings.time_limit)
    if pareto or plot:
        _pareto(cluster, settings, as_json or _is_stdout(output), plot, deadline)
        return
    result = make_plan(cluster, settings, deadline=deadline)
    _report_plan_messages(result)
    if explain:
        _explain(result, explain, as_json)
        return
    data = plan_dict(result)
    if output is not None and not _is_stdout(output):
        _write_text(output, _json_text(data) + "\n")
    if as_json or _is_stdout(output):
        _emit_json(data)
    else:
        _stdout().print(plan_renderable(result, _stdout_width(), verbose=verbose), crop=False)


def _explain(result, vmids: list[int], as_json: bool) -> None:
    """Why each guest moves or stays, as sentences (or JSON: vmid → sentences)."""
    from proxlb_opt.reasons import explain

    c = result.cluster
    unknown = [v for v in vmids if c.guest_index(v) is None]
    if unknown:
        raise InputError(f"--explain: no guest {unknown[0]} in the cluster (ignored nodes' guests are left out)")
    held = {c.guest_index(v): why for v, why in result.held.items() if c.guest_index(v) is not None}
    answers = {v: explain(result.problem, result.placement, c.guest_index(v), held) for v in vmids}
    if as_json:
        _emit_json({"version": 1, "cluster": c.name, "explain": {str(v): lines for v, lines in answers.items()}})
    else:
        console = _stdout()
        for lines in answers.values():
            console.print(escape(" ".join(lines)), soft_wrap=True)


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None


def _pareto(cluster, settings: Settings, as_json: bool, plot: Optional[Path], deadline: Deadline) -> None:
    from proxlb_opt.report import pareto_dict, pareto_table
    from proxlb_opt.planner import pareto_curve

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
    _save_figure(plt, fig, path)


def _save_figure(plt, fig, path: Path) -> None:
    """Write a chart (PNG/SVG/PDF by the suffix); an unwritable path is one line, and the figure is freed."""
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
    memory: Optional[str] = typer.Option(None, help="Memory of the new guest: MiB as a plain number (as qm "
                                                    "create --memory), or with a unit: 8G, 512M."),
    disk: Optional[str] = typer.Option(None, help="Local disk of the new guest: GiB as a plain number (as qm's "
                                                  "storage:SIZE), or with a unit; shared storage if omitted."),
    tags: Optional[str] = typer.Option(None, help="Tags, ';'- or ','-separated (plb_* rules apply)."),
    guest_type: str = typer.Option("vm", "--type", help="vm or ct."),
    terraform: bool = typer.Option(False, "--terraform", help="Read a Terraform external data query (JSON) on stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
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
            raise InfeasibleError("no node can take a guest of this shape")
        _emit_json({"node": data["node"]})
    elif as_json:
        _emit_json(data)
    else:
        console = _stdout()
        console.print(best_node_table(ranking))
        console.print(Text(f"best node: {data['node']}" if data["node"] else "no node can take this guest"))
    if data["node"] is None:
        raise typer.Exit(InfeasibleError.exit_code)


def _terraform_query() -> dict[str, str]:
    raw = sys.stdin.read()
    try:
        query = loads_json(raw or "{}", "--terraform", InputError)
    except InputError:
        raise InputError("--terraform: stdin is not a JSON object (Terraform's external data source query)") from None
    if not isinstance(query, dict) or not all(isinstance(v, str) for v in query.values()):
        raise InputError("--terraform: the query must be a JSON object of strings")
    known = {"cpus", "memory", "disk", "tags", "type", "model", "config"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise InputError(f"--terraform: unknown query key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return query


_PLAIN_NUMBER = re.compile(r"^\s*[0-9]*\.?[0-9]+\s*$")


def _qm_size(value: Any, unit: str) -> Any:
    """A size as qm takes it: a plain number is in `unit` (memory MiB, disk GiB); with a unit, as written."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and _PLAIN_NUMBER.match(value):
        return value.strip() + unit
    return value


def _guest_shape(cpus: Any, memory: Any, disk: Any, tags: Any, guest_type: Any) -> dict[str, Any]:
    from proxlb_opt.units import parse_cores_milli, parse_size_mib

    if memory is None or cpus is None:
        raise InputError("best-node needs --cpus and --memory (and optionally --disk, --tags)")
    memory, disk = _qm_size(memory, "M"), _qm_size(disk, "G") if disk is not None else None
    try:
        parse_cores_milli(cpus, "--cpus")
        if parse_size_mib(memory, "--memory") <= 0:
            raise ValueError("--memory: must be positive (a plain number is MiB, as in qm create)")
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
        _write_text(output, _json_text(data) + "\n")
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
    _save_figure(plt, fig, path)


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
    return Text("\n".join(lines))


# ----------------------------------------------------------------------------- snapshot


@app.command()
def snapshot(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="Model file to write (.yaml or .json; '-': YAML on stdout)."),
    anonymize: bool = typer.Option(False, "--anonymize", help="Replace node, guest, pool and tag names."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Save the live cluster as a model file, to plan offline or attach to a bug report."""
    from proxlb_opt.cluster import anonymized, model_text

    _setup_logging(verbose)
    settings = _live_settings(config, "snapshot")
    cluster = _load_cluster(None, settings)
    if anonymize:
        cluster = anonymized(cluster)
    if _is_stdout(output):
        sys.stdout.write(model_text(cluster, as_json=False))
        return
    _write_text(output, model_text(cluster, as_json=output.suffix.lower() == ".json"))
    log.info("wrote %s: %d nodes, %d guests", output, cluster.n_nodes, cluster.n_guests)


# ----------------------------------------------------------------------------- apply


@app.command()
def apply(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    plan_file: Optional[Path] = typer.Option(None, "--plan", help="A plan written by `plan --json` (default: plan now)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines on stdout: one event per step, then a summary."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Execute a plan with live migrations, wave by wave, re-checking the live state before every step."""
    from proxlb_opt.adapters.proxmox import ProxmoxClient, cluster_identity
    from proxlb_opt.apply import Executor, Interrupt, PlannedStep, check_plan_target, steps_from_plan
    from proxlb_opt.service import migration_gate

    from proxlb_opt.adapters.audit import AuditLog, secrets_of
    from proxlb_opt.adapters.operations import apply_lock

    _setup_logging(verbose)
    steps: list[PlannedStep] = []
    # Every way out writes a report: before the first migration too (a bad plan, an unreadable cluster, rules
    # the plan would break, with the moves that repair them, a signal), then the steps, none of them started.
    try:
        with _signals_raise():  # nothing runs yet: a signal may end this part at once
            settings = _live_settings(config, "apply")
            # One run at a time (exit 75 when another holds the lock), taken before the cluster is read for
            # the plan; the command's context releases it on every way out.
            ctx.with_resource(apply_lock(settings))
            client = ProxmoxClient(settings.api)
            if plan_file:
                plan_data, where = _read_plan(plan_file), str(plan_file)
            else:
                plan_data, where = _plan_live(settings, as_json), "the plan"
            name, nodes = cluster_identity(client)
            check_plan_target(plan_data, name, nodes, settings.ignore_nodes, where)  # a foreign plan: refused first
            steps = steps_from_plan(plan_data, where)
            if not steps:
                _report_nothing(as_json)
                return
            _announce(plan_data, steps, name, nodes, settings, as_json)
            gate = migration_gate(settings, client)  # balancing.enable off, or not the HA master: plan only
            if gate is not None:
                log.warning(gate)
                _print_report(_report_before_start(steps, gate), as_json)
                return
            # Opened before the question: a run that would refuse says so first.
            audit = AuditLog.open(settings.audit_log, "apply", secrets_of(settings))
            if not yes:
                _confirm(len(steps))
    except _EarlySignal as early_signal:
        from proxlb_opt.apply import signal_name

        stopped = StoppedBySignal(early_signal.signum, f"stopped by {signal_name(early_signal.signum)} before any "
                                                       f"migration started")
        _print_report(_report_before_start(steps, str(stopped), stopped), as_json)
        raise stopped from None
    except ProxlbOptError as exc:
        early = _report_before_start(steps, str(exc), exc)
        if as_json or early.results or early.broken:  # in text, the one error line alone says it all
            _print_report(early, as_json)
        raise
    except typer.Exit:
        _print_report(_report_before_start(steps, "not confirmed"), as_json)
        raise
    interrupt = Interrupt()
    executor = Executor(client, settings, emit=audit.tee(_event_printer(as_json, steps)), interrupt=interrupt)
    with _signals_to(interrupt):  # kept while the report is written: a late signal must not cut it short
        with audit.running(steps):  # run_start, the planned moves, ..., run_end
            report = executor.run(steps)
        _print_report(report, as_json)
    error = report.as_error()
    if error is not None:
        raise error


def _report_before_start(steps, why: str, error: ProxlbOptError | None = None):
    """The report of an apply that started no migration: every step skipped with `why`; the rules broken and
    the repair moves when the plan was refused for breaking rules (`_RulesBroken`)."""
    from proxlb_opt.apply import SKIPPED, ApplyReport, StepResult

    report = ApplyReport(results=[StepResult(step, state=SKIPPED, message=f"not started: {why}") for step in steps],
                         stopped=why, error=error)
    if isinstance(error, _RulesBroken):
        report.broken, report.repair = list(error.broken), list(error.repair)
    return report


class _EarlySignal(BaseException):
    """SIGINT/SIGTERM before apply started anything: raised in the main thread to end that part at once
    (a BaseException, so that no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise():
    """SIGINT and SIGTERM raise _EarlySignal while nothing migrates yet (reading, planning, asking)."""
    def handler(signum, frame):
        raise _EarlySignal(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _signals_to(interrupt):
    """SIGINT and SIGTERM go to `interrupt` while migrations run (start nothing new, wait, report); before and
    after, they act as usual."""
    previous = {sig: signal.signal(sig, interrupt.from_handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_report(report, as_json: bool) -> None:
    """apply's end: the counts, what may still run in PVE, the rules left broken and how to repair them."""
    summary = report.summary()
    if as_json:
        _json_line({"event": "summary", **summary})
        return
    out = _stdout()
    line = f"done {summary['done']}, skipped {summary['skipped']}, failed {summary['failed']}"
    out.print(line + (f", unknown {summary['unknown']}" if summary["unknown"] else ""))
    if report.stopped:
        out.print(f"stopped: {report.stopped}")
    for item in summary["still_running"]:
        upid = f" (UPID {item['upid']})" if item["upid"] else ""
        out.print(f"still running in PVE or unknown: {item['vmid']} {item['name']}{upid}")
    if report.broken:
        out.print("rules broken now:")
        for rule in report.broken[:20]:
            out.print(f"  {rule.rule}: {rule.what}" + ("" if rule.new else " (already before this run)"))
        if len(report.broken) > 20:
            out.print(f"  … and {len(report.broken) - 20} more (--json lists them all)")
        if report.repair:
            out.print("moves that repair them:")
            for move in report.repair:
                out.print(f"  {move['vmid']} {move['name']}: {move['from']} → {move['to']}")
        out.print("a new plan repairs them first: `proxlb-opt plan --rules-only` shows the fewest moves, "
                  "`proxlb-opt apply` plans and runs them")
    if report.rules_note:
        out.print(report.rules_note)


def _read_plan(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: plan file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON plan ({exc.__class__.__name__})") from None
    return loads_json(text, f"{path}: not a JSON plan", InputError)


def _plan_live(settings: Settings, as_json: bool) -> dict:
    from proxlb_opt.planner import make_plan
    from proxlb_opt.report import plan_dict, plan_renderable

    cluster = _load_cluster(None, settings)
    result = make_plan(cluster, settings)
    _report_plan_messages(result)
    if not as_json:
        _stdout().print(plan_renderable(result, _stdout_width()), crop=False)
    if result.violations:
        from proxlb_opt.apply import broken_rules, repair_moves

        broken = broken_rules(cluster, settings)
        raise _RulesBroken("the plan breaks rules (greedy algorithm); refusing to apply it (the report lists the "
                           "rules and the moves that repair them)", broken, repair_moves(cluster, settings))
    return plan_dict(result)


class _RulesBroken(InputError):
    """apply's own plan breaks rules: refused, with the rules the cluster breaks and the moves that repair them."""

    def __init__(self, message: str, broken: list, repair: list):
        super().__init__(message)
        self.broken, self.repair = broken, repair


def _report_nothing(as_json: bool) -> None:
    if as_json:
        _json_line({"event": "summary", "done": 0, "skipped": 0, "failed": 0, "unknown": 0, "steps": [],
                    "still_running": [], "broken_rules": [], "repair": [], "exit_code": 0})
    else:
        _stdout().print("nothing to do")


def _announce(plan_data: dict, steps, name: str, nodes: tuple[str, ...], settings: Settings, as_json: bool) -> None:
    """What is about to happen and where, before the question: the plan's figures and the live cluster."""
    from proxlb_opt.units import format_duration, format_mib

    def number(key: str) -> float | None:
        value = plan_data.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    waves = len({s.wave for s in steps})
    plan_line = f"plan: {plan_data.get('status', 'unknown status')}"
    if number("spread_before") is not None and number("spread_after") is not None:
        plan_line += f", spread {number('spread_before'):.2f} → {number('spread_after'):.2f} pp"
    moves = f"moves: {len(steps)} migration(s) in {waves} wave(s)"
    if number("memory_moved_mib") is not None:
        moves += f", {format_mib(number('memory_moved_mib'))} of memory"
    if number("predicted_seconds") is not None:
        moves += f", predicted {format_duration(number('predicted_seconds'))}"
    live = [n for n in nodes if n not in settings.ignore_nodes]
    lines = [plan_line, moves,
             f"target: cluster {name}, {len(live)} nodes ({', '.join(live)}), API {', '.join(settings.api.hosts)}"]
    if as_json:
        for line in lines:
            log.info(line)
    else:
        sys.stderr.write("\n".join(lines) + "\n")


def _confirm(count: int) -> None:
    if not sys.stdin.isatty():
        raise InputError("refusing to migrate without --yes when no terminal can confirm")
    if not typer.confirm(f"Run {count} migration(s) now?", default=False, err=True):
        raise typer.Exit(1)


class _WaveClock:
    """The ETA of an apply run from the plan's predicted durations: the rest of this wave plus the waves after it."""

    def __init__(self, steps, clock: Callable[[], float] = time.monotonic):
        self.lengths: dict[int, float] = {}
        for s in steps:
            self.lengths[s.wave] = max(self.lengths.get(s.wave, 0.0), s.predicted_s)
        self.clock = clock
        self.wave: int | None = None
        self.wave_started = clock()

    def start(self, wave: int) -> None:
        if wave != self.wave:
            self.wave, self.wave_started = wave, self.clock()

    def eta(self) -> float:
        if self.wave is None:
            return sum(self.lengths.values())
        left = max(0.0, self.lengths.get(self.wave, 0.0) - (self.clock() - self.wave_started))
        return left + sum(length for wave, length in self.lengths.items() if wave > self.wave)

    def label(self) -> str:
        from proxlb_opt.units import format_duration

        waves = sorted(self.lengths)
        where = f"wave {waves.index(self.wave) + 1}/{len(waves)}" if self.wave in self.lengths else "starting"
        return f"{where}, ETA {format_duration(self.eta())}"


def _event_printer(as_json: bool, steps):
    """Where apply events go: JSON lines, a progress bar on a terminal, or plain lines (logs, cron)."""
    if as_json:
        return _json_line
    size = _terminal_size(sys.stderr)
    console = Console(stderr=True, highlight=False, soft_wrap=True, width=size.columns, height=size.lines)
    clock = _WaveClock(steps)
    progress = None
    if console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=False)
        task = progress.add_task(clock.label(), total=len(steps))
        progress.start()
    styles = {"done": "green", "skipped": "yellow", "failed": "red", "unknown": "magenta"}

    def show(event: dict) -> None:
        if event["event"] == "interrupt":
            running = f"waiting up to {event['wait']:g} s for the {event['running']} running" if event["running"] \
                else "none is running"
            console.print(f"{event['signal']}: no further migration starts; {running} (a second signal stops "
                          f"waiting)")
            return
        clock.start(event["wave"])
        line = Text(f"[wave {event['wave']}] {event['vmid']} {event['name']}: {event['from']} → {event['to']} ")
        if event["event"] == "start":
            line.append("started")
        else:
            line.append(event["event"], style=styles.get(event["event"], ""))
            line.append(f" {event['message']}")
        console.print(line)
        if progress is not None:
            progress.update(task, description=clock.label(), advance=0 if event["event"] == "start" else 1)
            if progress.finished:
                progress.stop()

    return show


# ----------------------------------------------------------------------------- service


@app.command()
def service(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    once: bool = typer.Option(False, "--once", help="One round, then exit (also when service.daemon is false)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan and log the moves, never migrate."),
    as_json: bool = typer.Option(False, "--json", help="Plans, apply events and round summaries as JSON lines on stdout."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Run as a service: plan and apply every service.schedule interval (SIGHUP reloads the config)."""
    from proxlb_opt.service import run_service

    path = config or DEFAULT_CONFIG
    _setup_logging(verbose, _live_settings(config, "service").log_level)
    outcome = run_service(path, once, dry_run, _service_events(as_json=as_json, dry_run=dry_run))
    if outcome.error is not None:
        raise outcome.error


def _service_events(as_json: bool, proxlb_json: bool = False, dry_run: bool = False) -> Callable[[dict], None]:
    """The printer of service events: each round's plan (moves by guest name), apply steps, a round summary.

    With `as_json` every event is a JSON line on stdout; with `proxlb_json` (ProxLB's -j) stdout gets the
    round's plan in ProxLB's shape when the round ends; otherwise everything is logged on stderr.
    """
    from proxlb_opt.report import move_lines, plan_dict, proxlb_dict
    from proxlb_opt.units import format_duration

    state: dict[str, Any] = {"round": 0, "result": None, "apply": False, "planned_at": 0.0}

    def emit(event: dict) -> None:
        kind = event["event"]
        if kind == "plan":
            state["round"] += 1
            state["result"], state["apply"], state["planned_at"] = event["result"], event["apply"], time.monotonic()
            if as_json:
                _json_line({"event": "plan", "round": state["round"], "apply": event["apply"],
                            **plan_dict(event["result"])})
            else:
                for line in move_lines(event["result"]):
                    log.info("  %s", line)
        elif kind == "round":
            _round_end(event)
        elif as_json:
            _json_line(event)
        elif kind == "interrupt":
            log.warning("%s: no further migration starts; waiting up to %g s for the %d running (a second signal "
                        "stops waiting)", event["signal"], event["wait"], event["running"])
        else:
            log.info("%s: %s %s %s → %s%s", event["event"], event["vmid"], event["name"], event["from"], event["to"],
                     f" ({event['message']})" if event.get("message") else "")

    def _round_end(event: dict) -> None:
        result = state["result"]
        if as_json:
            _json_line({**event, "round": state["round"]})
        elif proxlb_json and result is not None:
            _emit_json(proxlb_dict(result), indent=4)  # as ProxLB prints it
        if as_json or result is None:
            return
        steps, predicted = len(result.plan.steps), format_duration(result.plan.predicted_seconds)
        if not steps:
            what = "nothing to move"
        elif dry_run:
            what = f"dry run, {steps} migration(s) planned (predicted {predicted}), none started"
        elif not state["apply"]:
            what = f"{steps} migration(s) planned (predicted {predicted}), none started: balancing.enable is false"
        else:
            unknown = f", {event['unknown']} of unknown outcome" if event.get("unknown") else ""
            what = (f"{event['done']} of {steps} migration(s) done, {event['failed']} failed{unknown}, in "
                    f"{format_duration(time.monotonic() - state['planned_at'])} (predicted {predicted})")
        log.info("round %d: %s", state["round"], what)
        if event.get("stopped"):
            log.warning("round %d stopped: %s", state["round"], event["stopped"])
        for item in event.get("still_running", ()):
            log.warning("still running in PVE or unknown: %s %s%s", item["vmid"], item["name"],
                        f" (UPID {item['upid']})" if item["upid"] else "")
        for move in event.get("repair", ()):
            log.warning("a move that repairs a broken rule: %s %s %s → %s", move["vmid"], move["name"], move["from"],
                        move["to"])
        state["result"] = None

    return emit


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

    if not 0 < time_scale <= 1e6:
        raise InputError("--time-scale: must be positive (at most 1000000)")
    if not 0 <= port <= 65535:
        raise InputError(f"--port: must be from 0 to 65535, got {port}")
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
    """Console entry point: runs the app and turns every error into one line and an exit code.

    typer runs in non-standalone mode so that its usage errors reach us instead of its boxed rendering.
    """
    if _STARTED[1]:
        _STARTED[0] = time.monotonic()
    _STARTED[1] = True
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # A bare `proxlb-opt` explains itself; it never starts a ProxLB-style run (which may migrate).
        code = app(args=args or ["--help"], prog_name="proxlb-opt", standalone_mode=False)
    except UsageError as exc:
        _fail(_usage_message(exc), 2)
    except ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except ProxlbOptError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: our bug, said plainly
        if os.environ.get("PROXLB_OPT_DEBUG"):
            raise
        _fail(f"internal error (please report; PROXLB_OPT_DEBUG=1 shows the traceback): "
              f"{exc.__class__.__name__}: {exc}", InternalError.exit_code)
    if code == 130:
        _fail("interrupted", 130)
    if code:
        sys.exit(code)


def _usage_message(exc: UsageError) -> str:
    message = " ".join(exc.format_message().split()).rstrip(".")
    where = exc.ctx.command_path if exc.ctx is not None else "proxlb-opt"
    return f"{message}; see {where} --help"


#: The error line is cut here: a value quoted from a bad input may be megabytes long.
MAX_ERROR_CHARS = 1000


def _fail(message: str, code: int) -> None:
    line = scrub(" ".join(message.splitlines()))  # before cutting: a secret cut in two is still a secret
    if len(line) > MAX_ERROR_CHARS:
        line = line[:MAX_ERROR_CHARS] + f"… ({len(line) - MAX_ERROR_CHARS} more characters)"
    sys.stderr.write(logs.error_line(line) + "\n")
    sys.exit(code)
