"""The competitors' own virtual environment: ProxLB 2.3.0 and proxlb-solver 0.1.1, never in proxlb-opt's.

`ensure_competitor_venv()` creates `benchmarks/.proxlb-venv` when it is missing and pip-installs the
pinned versions there; a second call with everything in place only checks the versions (no network).
The other benchmark modules call it and run the competitors with the python it returns, as black boxes
in their own processes: their code is GPL and is never imported into proxlb-opt's interpreter.

    python -m benchmarks.setup_competitors [--venv DIR] [--force]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import venv
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_VENV = BENCH_DIR / ".proxlb-venv"
PINNED = {"proxlb": "2.3.0", "proxlb-solver": "0.1.1"}

_VERSION_PROBE = """
import json
from importlib.metadata import version, PackageNotFoundError
out = {}
for name in NAMES:
    try:
        out[name] = version(name)
    except PackageNotFoundError:
        out[name] = None
import proxlb, proxlb_solver  # both must import, not only be listed
print(json.dumps(out))
"""


class CompetitorSetupError(RuntimeError):
    """The competitor venv could not be created or filled; the message says why and what to do."""


def venv_python(venv_dir: Path = DEFAULT_VENV) -> Path:
    return Path(venv_dir) / "bin" / "python"


def installed_versions(venv_dir: Path = DEFAULT_VENV) -> dict[str, str | None] | None:
    """The pinned packages' versions inside the venv, or None when the venv's python is missing or broken."""
    python = venv_python(venv_dir)
    if not python.exists():
        return None
    probe = _VERSION_PROBE.replace("NAMES", repr(sorted(PINNED)))
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return None
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def is_ready(venv_dir: Path = DEFAULT_VENV) -> bool:
    return installed_versions(venv_dir) == PINNED


def ensure_competitor_venv(venv_dir: Path = DEFAULT_VENV, force: bool = False, quiet: bool = False) -> Path:
    """The competitor venv's python, after creating and filling the venv if needed (idempotent)."""
    venv_dir = Path(venv_dir)
    say = (lambda *_: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if not force and is_ready(venv_dir):
        return venv_python(venv_dir)
    if force or not venv_python(venv_dir).exists():
        say(f"creating {venv_dir} ...")
        venv.EnvBuilder(with_pip=True, clear=force).create(str(venv_dir))
    requirements = [f"{name}=={ver}" for name, ver in sorted(PINNED.items())]
    say(f"installing {' '.join(requirements)} into {venv_dir} ...")
    done = subprocess.run([str(venv_python(venv_dir)), "-m", "pip", "install", "--quiet", *requirements],
                          capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        unreachable = any(hint in tail.lower() for hint in (
            "no matching distribution", "could not find a version", "connection", "network is unreachable",
            "temporary failure in name resolution", "max retries exceeded", "timed out"))
        reason = ("the package registry is unreachable or does not have these versions" if unreachable
                  else "pip failed")
        raise CompetitorSetupError(
            f"could not install {' '.join(requirements)} into {venv_dir}: {reason}.\n"
            f"Run `python -m benchmarks.setup_competitors` again with network access to the registry, or run the "
            f"benchmark with --skip-proxlb --skip-solver.\npip said:\n{tail}")
    found = installed_versions(venv_dir)
    if found != PINNED:
        raise CompetitorSetupError(f"{venv_dir} holds {found}, expected {PINNED}; try --force")
    say(f"ready: {venv_dir} ({', '.join(f'{k} {v}' for k, v in sorted(found.items()))})")
    return venv_python(venv_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.setup_competitors", description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--force", action="store_true", help="recreate the venv from scratch")
    args = parser.parse_args(argv)
    try:
        python = ensure_competitor_venv(args.venv, force=args.force)
    except CompetitorSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(python)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
