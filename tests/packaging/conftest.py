"""Packaging fixtures: a copy of the source tree (as a fresh clone would have it) and one wheel built from it.

Building from a copy keeps build/ and *.egg-info out of the working tree and proves that the files git
knows about are enough. The wheel is built once per session and shared by the tests that inspect it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def source_files() -> list[str]:
    """Files a clone (plus not-yet-committed, not-ignored work) holds; without git: the whole tree."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return [p.relative_to(REPO).as_posix() for p in REPO.rglob("*")
                if p.is_file() and not {".venv", ".git", "__pycache__"} & set(p.parts)]
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source") / "proxlb-opt"
    for name in source_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return root


@dataclass(frozen=True)
class BuiltWheel:
    path: Path
    output: str  # everything pip and the build backend printed


@pytest.fixture(scope="session")
def built_wheel(source_tree, tmp_path_factory) -> BuiltWheel:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                           "-w", str(out), str(source_tree)], capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    wheels = sorted(out.glob("proxlb_opt-*.whl"))
    assert len(wheels) == 1, output
    return BuiltWheel(wheels[0], output)


def backend_warnings(output: str) -> list[str]:
    """Lines of pip output that are deprecation notices or warnings of the build backend.

    pip's own "WARNING: Location ... is ignored" lines come from the machine's pip configuration
    (extra index URLs that do not exist), not from this project, and are left out.
    """
    return [line for line in output.splitlines()
            if ("deprecat" in line.lower() or "BuildBackendWarning" in line or "SetuptoolsWarning" in line)]
