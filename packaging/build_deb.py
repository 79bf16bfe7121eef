#!/usr/bin/env python3
"""Build the Debian package of proxlb-opt with nothing but python3, pip and dpkg-deb.

Layout of the package (see docs/proxlb-opt.1.md, FILES):

    /opt/proxlb-opt/venv/                       virtualenv on the system python3: proxlb-opt and its
                                                dependencies from PyPI (OR-Tools is not in Debian)
    /usr/bin/proxlb-opt                         -> /opt/proxlb-opt/venv/bin/proxlb-opt
    /usr/lib/systemd/system/proxlb-opt.service  packaging/proxlb-opt.service
    /usr/lib/sysusers.d/proxlb-opt.conf         packaging/proxlb-opt.sysusers
    /usr/share/man/man1/proxlb-opt.1.gz         docs/proxlb-opt.1
    /usr/share/proxlb-opt/proxlb.yaml           examples/proxlb.yaml (postinst copies it to
                                                /etc/proxlb/proxlb.yaml when that file does not exist)
    /usr/share/doc/proxlb-opt/                  copyright, changelog.gz, README.md.gz, examples/

The virtualenv is built in a staging directory and then made to point at /opt/proxlb-opt/venv (script
shebangs, activate scripts, pyvenv.cfg); no file of the package may mention the staging path. The
dependencies are binary wheels for one Python minor version, so the package is architecture-specific
and depends on exactly that python3 (build it on the Proxmox VE version it is for: PVE 8 has Python
3.11, PVE 9 has 3.13).

    python3 packaging/build_deb.py                 # dist/proxlb-opt_<version>_<arch>.deb (needs PyPI)
    python3 packaging/build_deb.py --no-deps       # without dependencies: _all.deb, for tests only

pip runs from the interpreter running this script (`pip --python` installs into the new virtualenv,
which has no pip of its own); `make deb` uses the project's .venv.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "proxlb-opt"
PREFIX = Path("/opt/proxlb-opt")
VENV = PREFIX / "venv"
MAINTAINER = "proxlb-opt developers <dev@proxlb-opt.invalid>"
SUMMARY = "optimization-based rebalancer for Proxmox VE clusters"
DESCRIPTION = """\
 proxlb-opt reads ProxLB's /etc/proxlb/proxlb.yaml and plans the placement of
 the guests with a CP-SAT model (OR-Tools): it minimizes the load spread
 between nodes under a hard budget of migrations, keeps affinity,
 anti-affinity, pinning and maintenance rules, and orders the live
 migrations in waves that are safe at every instant.
 .
 This package bundles proxlb-opt and its Python dependencies in a
 virtualenv under /opt/proxlb-opt, and ships a hardened systemd unit."""


def log(message: str) -> None:
    print(f"build_deb: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def project_version() -> str:
    text = (REPO / "proxlb_opt" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not match:
        raise SystemExit("proxlb_opt/__init__.py: no __version__")
    return match.group(1)


def debian_version(version: str) -> str:
    """PEP 440 pre-releases sort before the release in Debian only with '~' (1.0rc1 → 1.0~rc1)."""
    return re.sub(r"(\d)(a|b|rc|\.dev)(\d+)", r"\1~\2\3", version)


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH, else the time of the last commit, else now: file dates in the package."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True,
                             text=True, check=True).stdout.strip()
        return int(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return int(time.time())


def python_minor(python: str) -> tuple[int, int]:
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def host_architecture() -> str:
    if shutil.which("dpkg"):
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


# ----------------------------------------------------------------------------- steps


def build_wheel(work: Path) -> Path:
    out = work / "wheel"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
         "-w", out, REPO])
    wheels = sorted(out.glob("proxlb_opt-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel in {out}, found {wheels}")
    return wheels[0]


def stage_venv(root: Path, python: str, wheel: Path, with_deps: bool) -> None:
    venv = root / VENV.relative_to("/")
    run([python, "-m", "venv", "--without-pip", venv])
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet",
           "--no-compile", "--no-warn-script-location", "--disable-pip-version-check"]
    run(pip + ([] if with_deps else ["--no-deps"]) + [wheel])
    relocate(venv, VENV)
    # pip records where the wheel came from (a temporary path of this build): not part of the package.
    for direct_url in venv.glob("lib/python*/site-packages/proxlb_opt-*.dist-info/direct_url.json"):
        direct_url.unlink()


def relocate(staged: Path, final: Path) -> None:
    """Rewrite the staging path to the installed path in the virtualenv's scripts and pyvenv.cfg."""
    old, new = str(staged).encode(), str(final).encode()
    candidates = [staged / "pyvenv.cfg"] + sorted(p for p in (staged / "bin").iterdir() if not p.is_symlink())
    for path in candidates:
        data = path.read_bytes()
        if old in data:
            path.write_bytes(data.replace(old, new))


def stage_files(root: Path, version: str, epoch: int) -> None:
    def put(source: Path, target: str, mode: int = 0o644, compress: bool = False) -> None:
        dest = root / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if compress:
            with open(dest, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, filename="",
                                                         mtime=epoch) as gz:
                gz.write(source.read_bytes())
        else:
            shutil.copyfile(source, dest)
        dest.chmod(mode)

    link = root / "usr/bin/proxlb-opt"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(VENV / "bin" / "proxlb-opt")  # absolute: /usr and /opt are different top-level dirs

    put(REPO / "packaging/proxlb-opt.service", "/usr/lib/systemd/system/proxlb-opt.service")
    put(REPO / "packaging/proxlb-opt.sysusers", "/usr/lib/sysusers.d/proxlb-opt.conf")
    put(REPO / "docs/proxlb-opt.1", "/usr/share/man/man1/proxlb-opt.1.gz", compress=True)
    put(REPO / "examples/proxlb.yaml", "/usr/share/proxlb-opt/proxlb.yaml")
    doc = "/usr/share/doc/proxlb-opt"
    put(REPO / "examples/proxlb.yaml", f"{doc}/examples/proxlb.yaml")
    put(REPO / "CHANGELOG.md", f"{doc}/changelog.gz", compress=True)
    put(REPO / "README.md", f"{doc}/README.md.gz", compress=True)
    copyright_file = root / doc.lstrip("/") / "copyright"
    copyright_file.write_text(copyright_text(time.gmtime(epoch).tm_year), encoding="utf-8")


def copyright_text(year: int) -> str:
    return f"""\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: proxlb-opt

Files: *
Copyright: {year} proxlb-opt developers
License: GPL-3.0-or-later

Files: opt/proxlb-opt/venv/lib/*
Copyright: the authors of each bundled Python package
License: various
 The virtualenv bundles third-party Python packages installed from PyPI (OR-Tools,
 NumPy, PyYAML, Typer, Rich, proxmoxer, Requests, prometheus-client and their
 dependencies). Each one keeps its license in its *.dist-info directory next to
 it.

License: GPL-3.0-or-later
 This program is free software: you can redistribute it and/or modify it under
 the terms of the GNU General Public License as published by the Free Software
 Foundation, either version 3 of the License, or (at your option) any later
 version.
 .
 On Debian systems, the complete text of the GNU General Public License
 version 3 can be found in /usr/share/common-licenses/GPL-3.
"""


def normalize_modes(root: Path) -> None:
    """Package contents do not depend on the builder's umask: 0755 for directories and executables."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)


def installed_size_kib(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        if path.relative_to(root).parts[0] == "DEBIAN":
            continue
        total += 1 if path.is_symlink() or path.is_dir() else -(-path.stat().st_size // 1024)
    return total


def write_control(root: Path, version: str, arch: str, python: tuple[int, int], with_deps: bool) -> None:
    debian = root / "DEBIAN"
    debian.mkdir()
    description = DESCRIPTION
    if not with_deps:
        description += "\n .\n This build has no bundled dependencies: for tests of the packaging only."
    major, minor = python
    fields = {
        "Package": PACKAGE,
        "Version": debian_version(version),
        "Architecture": arch,
        "Maintainer": os.environ.get("DEB_MAINTAINER", MAINTAINER),
        "Installed-Size": str(installed_size_kib(root)),
        # The virtualenv links to /usr/bin/python3 and holds wheels built for this minor version.
        "Depends": f"python3 (>= {major}.{minor}), python3 (<< {major}.{minor + 1})",
        "Section": "admin",
        "Priority": "optional",
        "Description": f"{SUMMARY}\n{description}",
    }
    (debian / "control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()), encoding="utf-8")
    for script in ("postinst", "prerm", "postrm"):
        shutil.copyfile(REPO / "packaging/debian" / script, debian / script)
        (debian / script).chmod(0o755)
    sums = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == "DEBIAN" or path.is_symlink() or not path.is_file():
            continue
        sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {rel.as_posix()}\n")
    (debian / "md5sums").write_text("".join(sums), encoding="utf-8")
    (debian / "md5sums").chmod(0o644)


def check_no_staging_paths(root: Path, work: Path) -> None:
    """The staging and build directories must not leak into installed files (bytecode is not shipped)."""
    needle = str(work).encode()
    leaks = [p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]
    if leaks:
        raise SystemExit(f"build paths left in: {', '.join(leaks[:10])}")


def build(out_dir: Path, python: str, wheel: Path | None, with_deps: bool, keep: Path | None,
          compression: str = "xz") -> Path:
    version = project_version()
    epoch = source_date_epoch()
    arch = host_architecture() if with_deps else "all"
    work = Path(tempfile.mkdtemp(prefix="proxlb-opt-deb-"))
    try:
        root = work / "root"
        root.mkdir()
        wheel = wheel or build_wheel(work)
        stage_venv(root, python, wheel, with_deps)
        stage_files(root, version, epoch)
        normalize_modes(root)
        write_control(root, version, arch, python_minor(python), with_deps)
        check_no_staging_paths(root, work)
        out_dir.mkdir(parents=True, exist_ok=True)
        deb = out_dir / f"{PACKAGE}_{debian_version(version)}_{arch}.deb"
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
        run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", root, deb], env=env,
            stdout=subprocess.DEVNULL)
        if keep is not None:
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(root, keep, symlinks=True)
        return deb
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build dist/proxlb-opt_<version>_<arch>.deb.")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output directory (default dist/)")
    parser.add_argument("--python", default="/usr/bin/python3",
                        help="interpreter of the virtualenv, as on the target (default /usr/bin/python3)")
    parser.add_argument("--wheel", type=Path, help="use this proxlb-opt wheel instead of building one")
    parser.add_argument("--no-deps", action="store_true", help="bundle no dependencies (test builds only)")
    parser.add_argument("--keep-root", type=Path, help="also copy the staged package tree here")
    # xz is Debian's default; compressing the ~220 MB virtualenv takes about 2 minutes on 2 cores.
    # zstd takes seconds (package ~40% larger) and needs dpkg >= 1.21.18 (Debian 12 / PVE 8 and later).
    parser.add_argument("--compression", choices=("xz", "zstd", "gzip"), default="xz",
                        help="dpkg-deb compressor (default xz)")
    args = parser.parse_args(argv)
    if not shutil.which("dpkg-deb"):
        raise SystemExit("dpkg-deb not found (apt install dpkg)")
    if not Path(args.python).is_file():
        raise SystemExit(f"{args.python}: not found; give --python")
    deb = build(args.out, args.python, args.wheel.resolve() if args.wheel else None, not args.no_deps,
                args.keep_root, args.compression)
    print(deb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
