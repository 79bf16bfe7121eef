"""The unit's MemoryDenyWriteExecute=yes is safe: proxlb-opt runs with writable+executable memory refused.

systemd implements the setting with a seccomp filter; Linux >= 6.3 offers the same rule per process as
prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN), which needs no privileges. A child process sets it, checks
that a W+X mapping is really refused, then runs proxlb-opt: a plan (OR-Tools, NumPy), the Pareto plot
(matplotlib) and one service round over HTTPS against the simulator (ssl, requests, the migrations).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from proxlb_opt.simulator import SimulatorServer
from tests.integration.conftest import rebalance_cluster
from tests.packaging.conftest import REPO

CHILD = textwrap.dedent("""
    import ctypes, mmap, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        sys.exit("prctl(PR_SET_MDWE) failed")
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        pass
    else:
        sys.exit("a writable and executable mapping was allowed: MDWE is not in force")
    from proxlb_opt.cli import main
    main(sys.argv[1:])
""")


@pytest.fixture(scope="module", autouse=True)
def mdwe_supported() -> None:
    """Ask in a throwaway process: the flag cannot be cleared once set."""
    if not sys.platform.startswith("linux"):
        pytest.skip("prctl is Linux-only")
    probe = "import ctypes, sys; sys.exit(ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0)"
    if subprocess.run([sys.executable, "-c", probe], timeout=30).returncode != 0:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def test_plan_and_plot_run_without_writable_executable_memory(tmp_path):
    png = tmp_path / "curve.png"
    # homelab: the smallest model, so the Pareto points (one solve per budget) stay quick.
    proc = _run("plan", "--model", str(REPO / "models" / "homelab.yaml"), "--pareto", "--plot", str(png),
                "--time-limit", "0.5", "--workers", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert png.stat().st_size > 0


def test_service_round_over_https_runs_without_writable_executable_memory(tmp_path):
    with SimulatorServer(rebalance_cluster(), time_scale=400.0) as sim:
        cfg = tmp_path / "proxlb.yaml"
        cfg.write_text(yaml.safe_dump({
            "proxmox_api": {"hosts": [sim.address], "user": sim.user, "pass": sim.password,
                            "ssl_verification": sim.ca_file, "timeout": 5},
            "balancing": {"enable": True, "balanciness": 2, "max_job_validation": 30, "balance_types": ["vm", "ct"]},
            "optimizer": {"poll_interval": 0.02, "workers": 1, "time_limit": 5},
        }))
        proc = _run("service", "--config", str(cfg), "--once", "--json")
    assert proc.returncode == 0, proc.stderr
    events = [line for line in proc.stdout.splitlines() if '"event": "done"' in line]
    assert events, proc.stdout + proc.stderr
