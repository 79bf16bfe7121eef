"""Integration fixtures: our simulator over real HTTPS, and configs pointing the real client at it."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import yaml

from proxlb_opt.cluster import Cluster
from proxlb_opt.config import Settings, settings_from_dict
from proxlb_opt.simulator import SimulatorServer
from tests.builders import cluster, guest, node

FAST = 400.0  # simulated seconds per real second: a few-GiB migration ends in tens of milliseconds


def rebalance_cluster() -> Cluster:
    """Skewed 3-node cluster with rules, an HA guest, a stopped guest, a container and a local disk."""
    return cluster(
        [node("pve1", "64G"), node("pve2", "64G"), node("pve3", "64G")],
        [guest(101, "pve1", "12G", name="web01", tags=["plb_anti_affinity_web"]),
         guest(102, "pve1", "12G", name="web02", tags=["plb_anti_affinity_web"]),
         guest(103, "pve1", "8G", name="db01", ha=True),
         guest(104, "pve1", "6G", name="app01", pool="apps"),
         guest(105, "pve1", "4G", name="ct01", type="ct"),
         guest(106, "pve1", "4G", name="old01", status="stopped", local_disk=True, disk="8G"),
         guest(107, "pve1", "6G", name="pinned", tags=["plb_pin_pve1"]),
         guest(108, "pve2", "4G", name="misc01")],
    )


def api_section(sim: SimulatorServer, token: bool = False, **extra) -> dict:
    section = {"hosts": [sim.address], "user": sim.user, "ssl_verification": sim.ca_file, "timeout": 5}
    if token:
        section.update(token_id=sim.token_name, token_secret=sim.token_secret)
    else:
        section["pass"] = sim.password
    section.update(extra)
    return section


def settings_for(sim: SimulatorServer, token: bool = False, api: dict | None = None, **optimizer) -> Settings:
    data = {"proxmox_api": api or api_section(sim, token),
            "balancing": {"enable": True, "parallel": True, "parallel_jobs": 3, "balanciness": 2,
                          "balance_types": ["vm", "ct"]},
            "optimizer": {"poll_interval": 0.02, "workers": 1, "time_limit": 5, **optimizer}}
    return settings_from_dict(data)


def write_config(path: Path, sim: SimulatorServer, **optimizer) -> Path:
    data = {"proxmox_api": api_section(sim),
            "balancing": {"enable": True, "parallel": True, "parallel_jobs": 3, "balanciness": 2,
                          "max_job_validation": 30, "balance_types": ["vm", "ct"]},
            "optimizer": {"poll_interval": 0.02, "workers": 1, "time_limit": 5, **optimizer}}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as server:
        yield server
