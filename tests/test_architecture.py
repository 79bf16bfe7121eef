"""The functional core stays pure: imports are checked by parsing the package (DESIGN.md, principle 1)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "proxlb_opt"
EDGES = {"cli.py", "apply.py", "service.py"}  # and everything in adapters/
IO_MODULES = {"proxmoxer", "requests", "typer", "socket", "subprocess", "http", "ssl", "urllib3", "signal", "threading"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), path


def test_proxmoxer_only_in_the_adapter():
    users = {rel for rel, path in _modules() if "proxmoxer" in _imports(path)}
    assert users == {"adapters/proxmox.py"}


def test_typer_only_in_the_cli():
    assert {rel for rel, path in _modules() if "typer" in _imports(path)} == {"cli.py"}


def test_core_does_no_network_or_process_io():
    for rel, path in _modules():
        if rel in EDGES or rel.startswith(("simulator/", "adapters/")):
            continue
        assert not (_imports(path) & IO_MODULES), f"{rel} imports {_imports(path) & IO_MODULES}"


def test_rich_only_in_cli_and_report():
    users = {rel for rel, path in _modules() if "rich" in _imports(path)}
    assert users <= {"cli.py", "report.py"}


def test_every_module_has_a_docstring():
    for rel, path in _modules():
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{rel} has no module docstring"


def test_core_does_not_import_the_simulator():
    for rel, path in _modules():
        if rel.startswith("simulator/") or rel == "cli.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "proxlb_opt.simulator" not in text, rel


def _internal_imports(path: Path) -> set[str]:
    """proxlb_opt modules a module imports anywhere in its body (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = {rel[:-3].replace("/", ".").removesuffix(".__init__") for rel, _ in _modules()}
    typing_only = {id(inner) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
                   for stmt in block.body for inner in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # annotations only: not imported at run time
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import sub` imports the submodule; `from mod import name` the module itself.
            subs = [f"{node.module}.{alias.name}" for alias in node.names]
            subs = [name for name in subs if name.removeprefix("proxlb_opt.") in modules]
            names = subs if len(subs) == len(node.names) else [node.module] + subs
        for name in names:
            if name.startswith("proxlb_opt."):
                local = name.removeprefix("proxlb_opt.")
                if local in modules:
                    found.add(local)
    return found


def test_no_import_cycles():
    graph = {rel[:-3].replace("/", ".").removesuffix(".__init__"): _internal_imports(path) for rel, path in _modules()}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph.get(module, ())):
            if other == module:
                continue
            if state.get(other) == 1:
                raise AssertionError("import cycle: " + " → ".join(trail[trail.index(other):] + [other]))
            if other not in state:
                visit(other, trail + [other])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_one_feasibility_module():
    """The rules are taught once: only the checker (the spec), the CP-SAT encoders and feasibility.py read
    the rule declarations' members to decide where a guest may go; every heuristic asks feasibility.py."""
    heuristics = ["greedy.py", "repair.py", "local_search.py", "band.py", "bestnode.py", "plan.py", "apply.py",
                  "whatif.py", "rolling.py"]
    for rel in heuristics:
        text = (PACKAGE / rel).read_text(encoding="utf-8")
        assert "per_node_cap" not in text and ".limit[" not in text.replace("hard.limit[", ""), rel
        assert "feasibility" in text, f"{rel} does not use the feasibility module"
