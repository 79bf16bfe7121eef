"""packaging/build_deb.py: the Debian package's layout, control data and maintainer scripts.

The suite builds the variant without dependencies (`--no-deps`, about a second): the same staging,
relocation and dpkg-deb steps as `make deb`, which also downloads the dependencies from PyPI and
compresses a ~220 MB virtualenv (about 2 minutes on 2 cores), too slow for every test run.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.conftest import REPO

DPKG_DEB = shutil.which("dpkg-deb")
SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(DPKG_DEB is None, reason="dpkg-deb is not installed"),
    pytest.mark.skipif(not Path(SYSTEM_PYTHON).is_file(), reason=f"{SYSTEM_PYTHON} (the target's python) is missing"),
]

EXPECTED_FILES = {
    "./usr/bin/proxlb-opt",
    "./usr/lib/systemd/system/proxlb-opt.service",
    "./usr/lib/sysusers.d/proxlb-opt.conf",
    "./usr/share/man/man1/proxlb-opt.1.gz",
    "./usr/share/proxlb-opt/proxlb.yaml",
    "./usr/share/doc/proxlb-opt/copyright",
    "./usr/share/doc/proxlb-opt/changelog.gz",
    "./usr/share/doc/proxlb-opt/examples/proxlb.yaml",
    "./opt/proxlb-opt/venv/pyvenv.cfg",
    "./opt/proxlb-opt/venv/bin/proxlb-opt",
}


@pytest.fixture(scope="module")
def deb(built_wheel, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    proc = subprocess.run([sys.executable, str(REPO / "packaging" / "build_deb.py"), "--no-deps",
                           "--python", SYSTEM_PYTHON, "--wheel", str(built_wheel.path), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.parent == out and path.is_file()
    return path


@pytest.fixture(scope="module")
def extracted(deb, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("root")
    subprocess.run([DPKG_DEB, "-R", str(deb), str(root)], check=True, timeout=120)
    return root


def _contents(deb: Path) -> dict[str, str]:
    """path → 'mode owner/group' (and '-> target' for links) from `dpkg-deb --contents`."""
    listing = subprocess.run([DPKG_DEB, "--contents", str(deb)], capture_output=True, text=True, check=True).stdout
    out = {}
    for line in listing.splitlines():
        fields = line.split()
        name = fields[5]
        out[name.rstrip("/") if name != "./" else name] = " ".join([fields[0], fields[1]] + fields[6:])
    return out


def _field(deb: Path, name: str) -> str:
    return subprocess.run([DPKG_DEB, "--field", str(deb), name], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_file_name_and_control_fields(deb):
    from proxlb_opt import __version__ as version

    assert deb.name == f"proxlb-opt_{version}_all.deb"
    assert _field(deb, "Package") == "proxlb-opt"
    assert _field(deb, "Version") == version
    assert _field(deb, "Architecture") == "all"
    major_minor = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    assert _field(deb, "Depends").startswith(f"python3 (>= {major_minor}), python3 (<< ")
    assert int(_field(deb, "Installed-Size")) > 100
    info = subprocess.run([DPKG_DEB, "--info", str(deb)], capture_output=True, text=True, check=True).stdout
    for script in ("postinst", "prerm", "postrm", "md5sums"):
        assert script in info


def test_layout(deb):
    contents = _contents(deb)
    assert EXPECTED_FILES <= set(contents), sorted(EXPECTED_FILES - set(contents))
    assert contents["./usr/bin/proxlb-opt"].endswith("-> /opt/proxlb-opt/venv/bin/proxlb-opt")
    assert contents["./opt/proxlb-opt/venv/bin/python3"].endswith("-> /usr/bin/python3")
    assert all(" root/root" in entry for entry in contents.values())
    # The configuration is not a conffile of this package: postinst writes it only when it is absent.
    assert not any(path.startswith("./etc/") for path in contents)
    # No byte-code (postinst compiles it on the target) and no pip in the virtualenv.
    assert not any("__pycache__" in path or path.endswith(".pyc") for path in contents)
    assert not any("/site-packages/pip/" in path for path in contents)


def test_shipped_files_are_the_repository_files(extracted):
    assert (extracted / "usr/lib/systemd/system/proxlb-opt.service").read_bytes() == \
        (REPO / "packaging/proxlb-opt.service").read_bytes()
    assert (extracted / "usr/lib/sysusers.d/proxlb-opt.conf").read_bytes() == \
        (REPO / "packaging/proxlb-opt.sysusers").read_bytes()
    assert gzip.decompress((extracted / "usr/share/man/man1/proxlb-opt.1.gz").read_bytes()) == \
        (REPO / "docs/proxlb-opt.1").read_bytes()
    assert (extracted / "usr/share/proxlb-opt/proxlb.yaml").read_bytes() == \
        (REPO / "examples/proxlb.yaml").read_bytes()


def test_virtualenv_points_at_the_install_path(extracted):
    venv = extracted / "opt/proxlb-opt/venv"
    assert (venv / "bin/proxlb-opt").read_text().splitlines()[0] == "#!/opt/proxlb-opt/venv/bin/python"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg and str(extracted) not in cfg and "/tmp" not in cfg
    assert "VIRTUAL_ENV=/opt/proxlb-opt/venv" in (venv / "bin/activate").read_text()


def test_virtualenv_runs_and_finds_the_demo_model(extracted):
    """The staged virtualenv works where it lies (a venv is found through its pyvenv.cfg)."""
    python = extracted / "opt/proxlb-opt/venv/bin/python"
    out = subprocess.run([str(python), "-I", "-B", "-c",
                          "import proxlb_opt, proxlb_opt.data as d; print(proxlb_opt.__version__, d.demo_model_path())"],
                         capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert Path(out[1]).read_bytes() == (REPO / "models/demo.yaml").read_bytes()
    assert out[1].startswith(str(extracted / "opt/proxlb-opt/venv/lib/"))


def test_md5sums_cover_every_file(extracted):
    listed = {}
    for line in (extracted / "DEBIAN/md5sums").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    files = {p.relative_to(extracted).as_posix(): p for p in extracted.rglob("*")
             if p.is_file() and not p.is_symlink() and p.relative_to(extracted).parts[0] != "DEBIAN"}
    assert set(listed) == set(files)
    assert all(hashlib.md5(files[n].read_bytes()).hexdigest() == d for n, d in listed.items())


@pytest.mark.parametrize("script", ["postinst", "prerm", "postrm"])
def test_maintainer_scripts_are_valid_sh(extracted, script):
    path = extracted / "DEBIAN" / script
    assert path.stat().st_mode & 0o111
    assert path.read_text().startswith("#!/bin/sh\n")
    subprocess.run(["sh", "-n", str(path)], check=True, timeout=30)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-s", "sh", str(path)], check=True, timeout=60)


def test_postinst_never_starts_the_service_on_a_fresh_install():
    text = (REPO / "packaging/debian/postinst").read_text()
    assert "enable --now" not in text.replace('echo "proxlb-opt: start the service with: systemctl enable --now', "")
    assert "systemctl start" not in text
