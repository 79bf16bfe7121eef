"""The functional core stays pure: imports are checked by parsing the package (DESIGN.md, principle 1)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "proxlb_opt"
EDGES = {"cli.py", "apply.py", "service.py", "adapters/proxmox.py"}
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
        if rel in EDGES or rel.startswith("simulator/"):
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
