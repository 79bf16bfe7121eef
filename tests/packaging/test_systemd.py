"""packaging/proxlb-opt.service and the sysusers.d snippet: required settings, and systemd's own checks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.conftest import REPO

UNIT = REPO / "packaging" / "proxlb-opt.service"
SYSUSERS = REPO / "packaging" / "proxlb-opt.sysusers"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: [Section], Key=Value, repeated keys accumulate, '#'/';' comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"line {number}: no continuation lines, please"
        if line.startswith("["):
            assert line.endswith("]"), f"line {number}: {line}"
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"line {number}: {line}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(section: dict[str, list[str]], key: str) -> str:
    assert key in section, f"{key} missing"
    return section[key][-1]


def test_unit_has_the_required_settings():
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    assert set(unit) == {"Unit", "Service", "Install"}
    u, s = unit["Unit"], unit["Service"]
    assert one(u, "After").split() == ["network-online.target", "pve-cluster.service", "pveproxy.service"]
    assert one(u, "Wants") == "network-online.target"
    assert "proxlb.service" in one(u, "Conflicts").split()
    assert one(s, "User") == "proxlb-opt"
    assert one(s, "ExecStart") == "/usr/bin/proxlb-opt service --config /etc/proxlb/proxlb.yaml"
    assert one(s, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(s, "Restart") == "on-failure"
    assert one(s, "StateDirectory") == "proxlb-opt"
    assert one(s, "RuntimeDirectory") == "proxlb-opt"
    # The lock files live there: a directory removed at stop would split one lock into two files.
    assert one(s, "RuntimeDirectoryPreserve") == "yes"
    assert one(s, "WorkingDirectory") == "/var/lib/proxlb-opt"
    assert one(unit["Install"], "WantedBy") == "multi-user.target"


def test_unit_is_hardened():
    s = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "RestrictNamespaces",
                "LockPersonality", "MemoryDenyWriteExecute", "RestrictSUIDSGID", "RestrictRealtime"):
        assert one(s, key) == "yes", key
    assert one(s, "ProtectSystem") == "strict"
    assert set(one(s, "RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert one(s, "SystemCallFilter") == "@system-service"
    assert one(s, "CapabilityBoundingSet") == ""
    # ProtectSystem=strict leaves only the State/RuntimeDirectory writable; no path may open more.
    assert "ReadWritePaths" not in s


def test_exec_start_runs_a_command_of_the_cli():
    from typer.main import get_command

    from proxlb_opt.cli import app

    s = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]
    argv = one(s, "ExecStart").split()
    command = get_command(app).commands[argv[1]]
    options = {opt for param in command.params for opt in param.opts}
    assert {a for a in argv[2:] if a.startswith("-")} <= options


def test_sysusers_snippet_creates_the_unit_user():
    entries = [line for line in SYSUSERS.read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    assert len(entries) == 1
    match = re.fullmatch(r'u (\S+) - "([^"]+)" (\S+)', entries[0])
    assert match, entries[0]
    assert match.group(1) == "proxlb-opt" and match.group(3) == "/var/lib/proxlb-opt"


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_systemd_sysusers_accepts_the_snippet(tmp_path):
    (tmp_path / "etc").mkdir()
    proc = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", "--dry-run", str(SYSUSERS)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Creating user 'proxlb-opt'" in proc.stdout + proc.stderr


def _unit_for_verify(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's proxlb-opt: verify checks it is executable."""
    installed = Path(sys.executable).parent / "proxlb-opt"
    if not installed.exists():
        pytest.skip(f"{installed} not found (the package is not installed in this environment)")
    unit = tmp_path / "proxlb-opt.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/usr/bin/proxlb-opt", str(installed)),
                    encoding="utf-8")
    return unit


@needs_systemd_analyze
def test_systemd_analyze_verify(tmp_path):
    unit = _unit_for_verify(tmp_path)
    # --man=no: the man page is not installed on a build machine (the .deb installs it).
    proc = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


@needs_systemd_analyze
def test_systemd_analyze_security_exposure_is_low(tmp_path):
    unit = _unit_for_verify(tmp_path)
    proc = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    if proc.returncode != 0 and "offline" in proc.stderr.lower():
        pytest.skip(f"this systemd-analyze cannot check unit files offline: {proc.stderr.strip()}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    # systemd's scale: < 2 "OK", 10 "UNSAFE". It was 1.6 when written (network access is the rest).
    assert float(match.group(1)) <= 2.0, proc.stdout
