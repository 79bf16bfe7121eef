"""Fixtures for the simulator tests: simulators over real HTTPS and proxmoxer clients.

`sim` runs its clock 1000x faster than real time, so a migration of a few GiB ends within
milliseconds; `frozen` stops the clock (time_scale 0) so a test can look at a migration halfway
and move time on with `advance()`.
"""

from __future__ import annotations

from typing import Iterator

import pytest
from proxmoxer import ProxmoxAPI

from proxlb_opt.cluster import Cluster
from proxlb_opt.simulator import SimulatorServer
from tests.simulator.helpers import FAST, client, small_cluster


@pytest.fixture
def model() -> Cluster:
    return small_cluster()


@pytest.fixture
def sim(model: Cluster) -> Iterator[SimulatorServer]:
    with SimulatorServer(model, time_scale=FAST) as server:
        yield server


@pytest.fixture
def frozen(model: Cluster) -> Iterator[SimulatorServer]:
    with SimulatorServer(model, time_scale=0.0) as server:
        yield server


@pytest.fixture
def api(sim: SimulatorServer) -> ProxmoxAPI:
    return client(sim)


@pytest.fixture
def frozen_api(frozen: SimulatorServer) -> ProxmoxAPI:
    return client(frozen)
