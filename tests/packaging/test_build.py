"""The wheel and the editable install: no setuptools deprecation banner, license files and demo model inside."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser

import pytest

from tests.packaging.conftest import REPO, backend_warnings


def _metadata(wheel) -> dict:
    with zipfile.ZipFile(wheel.path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode())


@pytest.mark.slow
def test_wheel_builds_without_deprecation_warnings(built_wheel):
    assert backend_warnings(built_wheel.output) == []


@pytest.mark.slow
def test_wheel_holds_the_demo_model(built_wheel):
    with zipfile.ZipFile(built_wheel.path) as archive:
        assert "proxlb_opt/data/demo.yaml" in archive.namelist()
        assert archive.read("proxlb_opt/data/demo.yaml") == (REPO / "models" / "demo.yaml").read_bytes()


@pytest.mark.slow
def test_wheel_holds_the_license_and_spdx_metadata(built_wheel):
    with zipfile.ZipFile(built_wheel.path) as archive:
        licenses = [n for n in archive.namelist() if ".dist-info/licenses/" in n]
        assert [n.rsplit("/", 1)[1] for n in licenses] == ["LICENSE"]
        assert archive.read(licenses[0]) == (REPO / "LICENSE").read_bytes()
    meta = _metadata(built_wheel)
    assert meta["License-Expression"] == "GPL-3.0-or-later"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert {"plot", "bench", "dev"} <= set(meta.get_all("Provides-Extra"))
    requires = meta.get_all("Requires-Dist")
    assert any(r.startswith("matplotlib") and 'extra == "plot"' in r for r in requires)
    assert any(r.startswith("proxlb-opt[plot]") and 'extra == "bench"' in r for r in requires)


@pytest.mark.slow
def test_editable_install_prints_no_setuptools_banner(source_tree, tmp_path):
    """What `make demo` runs, into a throwaway virtualenv (no dependencies): no deprecation, no folder warning."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                           "--no-deps", "--disable-pip-version-check", "-e", f"{source_tree}[dev,bench]"],
                          capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert backend_warnings(output) == [], output
    assert "same name as your package" not in output
    # The install points at the source tree: the package data resolves there.
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "from proxlb_opt.data import demo_model_path; print(demo_model_path())"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    assert where == str(source_tree / "proxlb_opt" / "data" / "demo.yaml")
