"""The state without HTTP: seeding, the virtual clock, usage accounting, UPIDs and thread safety."""

from __future__ import annotations

import re
import threading
import time

import pytest

from proxlb_opt.simulator.state import PveError, SimState, VirtualClock
from tests.simulator.helpers import small_cluster

UPID = re.compile(r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
                  r"([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$")


def test_seed_keeps_host_overhead_and_moves_only_guests():
    state = SimState(small_cluster(), time_scale=0)
    # pve1 reports 24 GiB used; its running guests use 4 + 12 + 2 GiB, so 6 GiB is the host's own.
    assert state.node_usage("pve1").mem_used_mib == 24 * 1024
    upid = state.migrate("pve1", 100, "qemu", {"target": "pve2", "online": "1"}, "root@pam")
    state.advance(60)
    assert state.task(upid).exitstatus == "OK"
    assert state.node_usage("pve1").mem_used_mib == 20 * 1024
    assert state.node_usage("pve1").cpu_used_milli == 3500  # 4 cores reported minus web1's 0.5
    moved = state.to_cluster()
    assert moved.node_mem_used_mib.tolist()[:2] == [20 * 1024, state.node_usage("pve2").mem_used_mib]


def test_virtual_clock_scales_and_advances():
    clock = VirtualClock(time_scale=0, start=1000.0)
    assert clock.now() == 1000.0
    clock.advance(5)
    assert clock.now() == 1005.0
    with pytest.raises(ValueError):
        clock.advance(-1)
    fast = VirtualClock(time_scale=1000.0, start=0.0)
    before = fast.now()
    time.sleep(0.02)
    assert fast.now() - before >= 20.0 - 1e-6  # at least 0.02 real s × 1000


def test_upids_decode_with_pve_regex_and_name_the_source_node():
    state = SimState(small_cluster(), time_scale=0)
    upid = state.migrate("pve2", 102, "qemu", {"target": "pve1"}, "root@pam!proxlb")
    match = UPID.match(upid)
    assert match and match.group(1) == "pve2" and match.group(6) == "qmigrate" and match.group(8) == "root@pam!proxlb"
    second = state.migrate("pve1", 100, "qemu", {"target": "pve3", "online": "yes"}, "root@pam")
    assert int(second.split(":")[2], 16) > int(upid.split(":")[2], 16)  # fresh pids


def test_bad_boolean_is_a_parameter_error():
    state = SimState(small_cluster(), time_scale=0)
    with pytest.raises(PveError) as err:
        state.migrate("pve1", 100, "qemu", {"target": "pve2", "online": "maybe"}, "root@pam")
    assert err.value.status == 400 and "online" in err.value.errors


def test_concurrent_migrations_and_reads_stay_consistent():
    state = SimState(small_cluster(), time_scale=1e5)
    errors: list[Exception] = []

    def reader():
        try:
            for _ in range(300):
                snap = state.snapshot()
                total = sum(u.mem_used_mib for u in snap.usage.values())
                assert total >= 24 * 1024  # never negative drift, whatever moves
        except Exception as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    upids = [state.migrate("pve1", 100, "qemu", {"target": "pve2", "online": "1"}, "root@pam"),
             state.migrate("pve2", 102, "qemu", {"target": "pve3"}, "root@pam")]
    for t in threads:
        t.join()
    state.advance(3600)
    assert errors == []
    assert [state.task(u).exitstatus for u in upids] == ["OK", "OK"]
    assert state.placement()[100] == "pve2" and state.placement()[102] == "pve3"
