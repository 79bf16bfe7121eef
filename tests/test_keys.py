"""The key table (proxlb_opt/keys.py): complete, in step with config.py and the README, and one behaviour
test per ProxLB 2.3.0 key: what the key changes, or the warning that names it.

BEHAVIOUR maps every ProxLB key of the table to a check; a test fails when a key has none, so a key
added to the table without a behaviour test is noticed. Checks run on small clusters in memory; the
live paths (enable_ha, maintenance windows, psi, migrate options) are also run against the simulator in
tests/integration/test_proxlb_keys.py.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import requests

from proxlb_opt import config, keys, service
from proxlb_opt.adapters import proxmox as adapter
from proxlb_opt.apply import UNKNOWN, Executor, PlannedStep, StepResult
from proxlb_opt.config import Settings, settings_from_dict
from proxlb_opt.errors import CollectionError, ConfigError
from proxlb_opt.greedy import proxlb_greedy
from proxlb_opt.planner import limits, make_plan
from proxlb_opt.problem import build_problem
from proxlb_opt.service import Round, migration_gate, run_service
from tests.builders import cluster, fast, guest, node

README = Path(__file__).resolve().parents[1] / "README.md"

# Every key of ProxLB 2.3.0's configuration model (its config parser), as paths of the key table.
PROXLB_230_KEYS = {
    "proxmox_api": {"hosts", "user", "pass", "token_id", "token_secret", "ssl_verification", "timeout", "retries",
                    "wait_time"},
    "proxmox_cluster": {"maintenance_nodes", "ignore_nodes", "overprovisioning",
                        "maintenance_nodes_schedule.schedules", "maintenance_nodes_schedule.duration",
                        "maintenance_nodes_schedule.pre-migration"},
    "balancing": {"enable", "enforce_affinity", "enforce_pinning", "parallel", "parallel_jobs", "live",
                  "with_local_disks", "with_conntrack_state", "cpu_overcommit", "max_node_inflow", "balance_types",
                  "max_job_validation", "memory_threshold", "cpu_threshold", "disk_threshold", "balanciness",
                  "method", "mode", "balance_larger_guests_first", "ignore_guests", "node_resource_reserve",
                  "pools.<pool>.type", "pools.<pool>.pin", "pools.<pool>.strict", "psi.nodes", "psi.guests"},
    "service": {"daemon", "enable_ha", "schedule.interval", "schedule.format", "delay.enable", "delay.time",
                "delay.format", "log_level"},
    "solver": {"enable", "mode", "log_dir", "timeout_seconds", "use_reservations", "active_step_retries",
               "fallback_to_greedy"},
}


# ============================================================================ the table itself


def test_table_lists_every_proxlb_key_and_nothing_else_as_proxlb():
    listed = {k.path for k in keys.proxlb_keys()}
    expected = {f"{section}.{name}" for section, names in PROXLB_230_KEYS.items() for name in names}
    assert listed == expected


def test_table_and_config_readers_accept_the_same_keys():
    for section, readers in config.SECTIONS.items():
        assert {k.top for k in keys.KEYS if k.section == section} == set(readers), section


def test_table_entries_are_well_formed():
    for k in keys.KEYS:
        assert k.status in keys.STATUSES, k.path
        assert k.meaning and "\n" not in k.meaning, k.path
        if k.status == keys.OWN:
            assert k.proxlb == "—", k.path  # not a ProxLB key
    assert len({k.path for k in keys.KEYS}) == len(keys.KEYS)


def test_readme_tables_are_generated_from_the_table():
    text = README.read_text(encoding="utf-8")
    assert keys.replace_block(text, keys.markdown()) == text, "run: python -m proxlb_opt.keys --update README.md"


def test_keys_module_prints_and_updates(tmp_path, capsys):
    assert keys.main(["--markdown"]) == 0
    assert capsys.readouterr().out == keys.markdown()
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{keys.BEGIN}\nstale\n{keys.END}\noutro\n")
    keys.main(["--update", str(doc)])
    assert doc.read_text() == f"intro\n{keys.BEGIN}\n{keys.markdown()}{keys.END}\noutro\n"


# ============================================================================ helpers


def load(**sections) -> Settings:
    return settings_from_dict(sections, env={})


def api(**extra) -> dict:
    section = {"hosts": ["pve1.test"], "user": "root@pam", "pass": "pw"}
    section.update(extra)
    if "token_secret" in extra:
        section.pop("pass")
    return section


def skewed(**guest_extra):
    """Three nodes; pve1 holds four guests (spread far above 10 pp)."""
    return cluster([node("pve1"), node("pve2"), node("pve3")],
                   [guest(101, "pve1", "12G", **guest_extra), guest(102, "pve1", "12G"),
                    guest(103, "pve1", "8G", name="ct103", type="ct"), guest(104, "pve1", "8G")])


def mild():
    """Spread about 6 pp (below the default balanciness 10); pve1 at about 62 %."""
    return cluster([node("pve1", "64G"), node("pve2", "64G")],
                   [guest(101, "pve1", "20G"), guest(102, "pve1", "20G"), guest(103, "pve2", "18G"),
                    guest(104, "pve2", "18G"), guest(105, "pve1", "0.2G"), guest(106, "pve2", "0.2G")])


def plan(c, settings: Settings):
    return make_plan(c, settings.with_overrides(workers=1, time_limit=5.0))


def moved(result) -> set[int]:
    c = result.cluster
    return {int(c.guest_vmid[s.guest]) for s in result.plan.steps}


class Recorder:
    """Stands in for proxmoxer.ProxmoxAPI: records the keyword arguments of each connection."""

    calls: list[dict] = []

    def __init__(self, host, **kwargs):
        Recorder.calls.append({"host": host, **kwargs})


def connect_kwargs(monkeypatch, settings: Settings) -> dict:
    Recorder.calls = []
    monkeypatch.setattr(adapter, "ProxmoxAPI", Recorder)
    adapter.ProxmoxClient(settings.api)._connect(settings.api.hosts[0])
    return Recorder.calls[-1]


class FlakySession:
    """A proxmoxer session whose requests fail with a connection error, or answer `answer`."""

    def __init__(self, answer=None):
        self.answer = answer

    def __call__(self, path):
        return self

    def get(self, **params):
        if self.answer is None:
            raise requests.exceptions.ConnectionError("connection refused")
        return self.answer


def client_over(monkeypatch, settings: Settings, sessions: dict) -> adapter.ProxmoxClient:
    sleeps: list[float] = []
    monkeypatch.setattr(adapter.time, "sleep", sleeps.append)
    client = adapter.ProxmoxClient(settings.api)
    client._connect = lambda host: sessions[host]  # type: ignore[method-assign]
    client.sleeps = sleeps  # type: ignore[attr-defined]
    return client


class FakeEvent:
    """threading.Event for run_service: waits return at once and are recorded; `set` ends the loop."""

    waits: list[float] = []

    def __init__(self):
        self.flag = False

    def set(self):
        self.flag = True

    def clear(self):
        self.flag = False

    def is_set(self):
        return self.flag

    def wait(self, seconds=None):
        FakeEvent.waits.append(seconds)
        return self.flag


class Enough(Exception):
    pass


def service_run(monkeypatch, tmp_path, service_section: dict, rounds: int = 1, once: bool = False):
    """run_service on a config with `service_section`; returns (waits, events) where events interleave
    ("wait", seconds) and ("round",)."""
    path = tmp_path / "proxlb.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"proxmox_api": api(), "service": service_section}))
    events: list[tuple] = []
    FakeEvent.waits = []

    class Recording(FakeEvent):
        def wait(self, seconds=None):
            events.append(("wait", seconds))
            return super().wait(seconds)

    monkeypatch.setattr(service.threading, "Event", Recording)
    monkeypatch.setattr(service.signal, "signal", lambda *a: None)

    def fake_round(settings, dry_run, emit, **_):
        events.append(("round",))
        if sum(1 for e in events if e == ("round",)) >= rounds and not once:
            raise Enough
        return Round()

    try:
        run_service(path, once, True, lambda e: None, round_fn=fake_round)
    except Enough:
        pass
    return events


def monday(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 30, hour, minute)  # a Monday


def scheduled(schedule: dict, when: datetime):
    settings = load(proxmox_cluster={"maintenance_nodes_schedule": schedule}).at(when)
    problem = build_problem(skewed(), settings)
    return {problem.cluster.node_names[m.node] for m in problem.rules.maintenance}, settings


# ============================================================================ proxmox_api


def k_hosts(monkeypatch, tmp_path):
    settings = load(proxmox_api=api(hosts=["a.test", "b.test"]))
    client = client_over(monkeypatch, settings, {"a.test": FlakySession(), "b.test": FlakySession(["ok"])})
    assert client.get("version") == ["ok"] and client._current == 1  # the next host, and it stays current


def k_user(monkeypatch, tmp_path):
    assert connect_kwargs(monkeypatch, load(proxmox_api=api(user="proxlb@pve")))["user"] == "proxlb@pve"


def k_pass(monkeypatch, tmp_path):
    assert connect_kwargs(monkeypatch, load(proxmox_api=api(**{"pass": "s3cret"})))["password"] == "s3cret"
    with pytest.raises(ConfigError, match="pass and token_secret are both set"):
        load(proxmox_api={**api(), "token_id": "t", "token_secret": "x"})


def k_token_id(monkeypatch, tmp_path):
    kwargs = connect_kwargs(monkeypatch, load(proxmox_api=api(token_id="proxlb", token_secret="x")))
    assert kwargs["token_name"] == "proxlb" and "password" not in kwargs
    kwargs = connect_kwargs(monkeypatch, load(proxmox_api=api(token_id="root@pam!proxlb", token_secret="x")))
    assert kwargs["token_name"] == "proxlb"


def k_token_secret(monkeypatch, tmp_path):
    assert connect_kwargs(monkeypatch, load(proxmox_api=api(token_id="t", token_secret="uuid")))["token_value"] == "uuid"


def k_ssl_verification(monkeypatch, tmp_path):
    assert connect_kwargs(monkeypatch, load(proxmox_api=api()))["verify_ssl"] is True
    assert connect_kwargs(monkeypatch, load(proxmox_api=api(ssl_verification=False)))["verify_ssl"] is False
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert connect_kwargs(monkeypatch, load(proxmox_api=api(ssl_verification=str(ca))))["verify_ssl"] == str(ca)


def k_timeout(monkeypatch, tmp_path):
    assert connect_kwargs(monkeypatch, load(proxmox_api=api()))["timeout"] == 10.0  # ProxLB: 1
    assert connect_kwargs(monkeypatch, load(proxmox_api=api(timeout=3)))["timeout"] == 3.0


def k_retries(monkeypatch, tmp_path):
    settings = load(proxmox_api=api(hosts=["a.test", "b.test"], retries=3, wait_time=0))
    session = FlakySession()
    calls = []
    original = session.get
    session.get = lambda **p: calls.append(1) or original(**p)  # type: ignore[method-assign]
    client = client_over(monkeypatch, settings, {"a.test": session, "b.test": session})
    with pytest.raises(CollectionError, match="no Proxmox API host answered"):
        client.get("version")
    assert len(calls) == 6  # three rounds over two hosts


def k_wait_time(monkeypatch, tmp_path):
    settings = load(proxmox_api=api(hosts=["a.test", "b.test"], wait_time=2))
    client = client_over(monkeypatch, settings, {"a.test": FlakySession(), "b.test": FlakySession(["ok"])})
    client.get("version")
    assert client.sleeps == [2.0]


# ============================================================================ proxmox_cluster


def k_maintenance_nodes(monkeypatch, tmp_path):
    result = plan(skewed(), load(proxmox_cluster={"maintenance_nodes": ["pve1", "pve9"]},
                                 balancing={"balance_types": ["vm", "ct"]}))
    assert not (result.placement == 0).any()  # pve1 drained
    assert any("'pve9' is not in the cluster" in w for w in result.warnings)


def k_ignore_nodes(monkeypatch, tmp_path):
    settings = load(proxmox_cluster={"ignore_nodes": ["pve3", "pve7"]})
    problem = build_problem(skewed(), settings)
    assert problem.cluster.node_names == ("pve1", "pve2")
    assert any("ignore_nodes names 'pve7'" in w for w in problem.rules.warnings)


def k_overprovisioning(monkeypatch, tmp_path):
    strict = build_problem(skewed(), load(proxmox_cluster={"overprovisioning": False}))
    loose = build_problem(skewed(), load(proxmox_cluster={"overprovisioning": True}))
    assert {"assigned memory", "assigned vCPUs"} <= set(strict.hard.names)
    assert not {"assigned memory", "assigned vCPUs"} & set(loose.hard.names)


def k_schedule_schedules(monkeypatch, tmp_path):
    schedule = {"duration": 2, "schedules": {"pve1": ["Monday, 8:00"], "pve8": ["Friday, 1:00"]}}
    inside, settings = scheduled(schedule, monday(9, 30))
    assert inside == {"pve1"} and settings.scheduled_maintenance == (("pve1", "Monday, 8:00"),)
    assert scheduled(schedule, monday(10, 0))[0] == set()
    assert scheduled(schedule, monday(7, 59))[0] == set()
    problem = build_problem(skewed(), settings)
    assert any("names node 'pve8'" in w for w in problem.rules.warnings)
    # a window that starts late on Sunday runs into Monday (last week's occurrence)
    assert scheduled({"duration": 3, "schedules": {"pve2": ["Sunday, 23:00"]}}, monday(1, 0))[0] == {"pve2"}


def k_schedule_duration(monkeypatch, tmp_path):
    assert scheduled({"duration": 1, "schedules": {"pve1": ["Monday, 8:00"]}}, monday(8, 59))[0] == {"pve1"}
    assert scheduled({"duration": 1, "schedules": {"pve1": ["Monday, 8:00"]}}, monday(9, 0))[0] == set()
    inside, settings = scheduled({"schedules": {"pve1": ["Monday, 8:00"]}}, monday(8, 0))
    assert inside == set() and any("windows have no length" in w for w in settings.warnings)


def k_schedule_pre_migration(monkeypatch, tmp_path):
    schedule = {"duration": 1, "pre-migration": 10, "schedules": {"pve1": ["Monday, 8:00"]}}
    assert scheduled(schedule, monday(7, 50))[0] == {"pve1"}
    assert scheduled(schedule, monday(7, 49))[0] == set()


# ============================================================================ balancing


def k_enable(monkeypatch, tmp_path):
    line = migration_gate(load(proxmox_api=api()))
    assert line is not None and "balancing.enable is not true" in line and "\n" not in line
    assert migration_gate(load(proxmox_api=api(), balancing={"enable": True})) is None


def k_enforce_affinity(monkeypatch, tmp_path):
    broken = cluster([node("pve1"), node("pve2")],
                     [guest(101, "pve1", "8G", tags=["plb_affinity_web"]), guest(102, "pve2", "8G", tags=["plb_affinity_web"]),
                      guest(103, "pve1", "8G"), guest(104, "pve2", "8G")])
    for value in (False, True):  # no effect either way: the split group is repaired
        result = plan(broken, load(balancing={"enforce_affinity": value, "balance_types": ["vm", "ct"]}))
        assert result.placement[0] == result.placement[1] and result.plan.guests_moved >= 1


def k_enforce_pinning(monkeypatch, tmp_path):
    off = plan(mild(), load(balancing={"balance_types": ["vm", "ct"]}))
    on = plan(mild(), load(balancing={"enforce_pinning": True, "balance_types": ["vm", "ct"]}))
    assert off.status == "balanced" and not off.plan.steps
    assert on.plan.steps and on.spread_after < on.spread_before
    assert any("enforce_pinning" in n for n in on.notes)


def _two_pairs():
    """pve1 and pve2 hold everything, pve3 and pve4 are empty: moves can run in parallel per node pair."""
    return cluster([node(f"pve{i}") for i in range(1, 5)],
                   [guest(100 + i, "pve1" if i % 2 else "pve2", "8G") for i in range(1, 9)])


def _widest_wave(result) -> int:
    waves: dict[int, int] = {}
    for s in result.plan.steps:
        waves[s.wave] = waves.get(s.wave, 0) + 1
    return max(waves.values())


def k_parallel(monkeypatch, tmp_path):
    assert _widest_wave(plan(_two_pairs(), load(balancing={"parallel": False}))) == 1
    assert _widest_wave(plan(_two_pairs(), load(balancing={"parallel": True}))) == 2


def k_parallel_jobs(monkeypatch, tmp_path):
    settings = load(balancing={"parallel": True, "parallel_jobs": 1})
    assert limits(settings).parallel == 1 and _widest_wave(plan(_two_pairs(), settings)) == 1
    assert limits(load(balancing={"parallel": True, "parallel_jobs": 7})).parallel == 7


def k_live(monkeypatch, tmp_path):
    c = cluster([node("pve1"), node("pve2")],
                [guest(101, "pve1", "8G"), guest(102, "pve1", "8G", status="stopped"),
                 guest(103, "pve1", "8G", type="ct"), guest(104, "pve1", "8G")])
    problem = build_problem(c, load(balancing={"live": False, "balance_types": ["vm", "ct"]}))
    assert problem.rules.movable.tolist() == [False, True, True, False]
    assert any("balancing.live is false: 2 running VM(s) stay" in w for w in problem.rules.warnings)


def k_with_local_disks(monkeypatch, tmp_path):
    c = cluster([node("pve1"), node("pve2")],
                [guest(101, "pve1", "8G", local_disk=True, disk="10G"), guest(102, "pve1", "8G"),
                 guest(103, "pve1", "8G", local_disk=True, disk="10G", status="stopped")])
    problem = build_problem(c, load(balancing={"with_local_disks": False, "balance_types": ["vm", "ct"]}))
    assert problem.rules.movable.tolist() == [False, True, True]
    assert any("balancing.with_local_disks is false: 1 running VM(s)" in w for w in problem.rules.warnings)
    posted = migrate_params(running=True, local_disk=True)
    assert posted["with-local-disks"] == 1 and posted["online"] == 1


def migrate_params(**kwargs) -> dict:
    posted = {}

    class Poster:
        def post(self, path, **params):
            posted.update(path=path, **params)
            return "UPID:pve1:00000001:00000001:00000001:qmigrate:101:root@pam:"

    adapter.start_migration(Poster(), 101, "vm", "pve1", "pve2", **kwargs)
    return posted


def k_with_conntrack_state(monkeypatch, tmp_path):
    assert migrate_params(running=True, local_disk=False, with_conntrack_state=True)["with-conntrack-state"] == 1
    assert "with-conntrack-state" not in migrate_params(running=True, local_disk=False, with_conntrack_state=False)
    assert load(balancing={"with_conntrack_state": False}).with_conntrack_state is False


def k_cpu_overcommit(monkeypatch, tmp_path):
    problem = build_problem(skewed(), load(balancing={"cpu_overcommit": 1.5}))
    k = problem.hard.names.index("assigned vCPUs")
    assert problem.hard.capacity[0, k] == 16 * 1000 * 1.5


def k_max_node_inflow(monkeypatch, tmp_path):
    # pve1..pve3 hold three 8 GiB guests each, pve4 none: the plan brings one guest each from two nodes to pve4.
    fan_in = cluster([node(f"pve{i}") for i in range(1, 5)],
                     [guest(100 + 10 * i + j, f"pve{i}", "8G") for i in range(1, 4) for j in range(3)])
    one = load(balancing={"parallel": True, "max_node_inflow": 1})
    two = load(balancing={"parallel": True, "max_node_inflow": 2})
    assert (one.max_incoming_per_node, two.max_incoming_per_node) == (1, 2)
    assert load(balancing={"max_node_inflow": 2}, optimizer={"max_incoming_per_node": 3}).max_incoming_per_node == 3

    def widest_inflow(result) -> int:
        count: dict[tuple[int, int], int] = {}
        for s in result.plan.steps:
            count[(s.wave, s.target)] = count.get((s.wave, s.target), 0) + 1
        return max(count.values())

    assert widest_inflow(plan(fan_in, one)) == 1
    assert widest_inflow(plan(fan_in, two)) == 2


def k_balance_types(monkeypatch, tmp_path):
    only_vm = build_problem(skewed(), load(balancing={"balance_types": ["vm"]}))
    assert not only_vm.rules.movable[2] and only_vm.rules.movable[0]  # 103 is a container
    unset = load(balancing={})
    assert unset.balance_types == ("vm", "ct")
    assert any("balance_types is not set" in w and "ProxLB 2.3.0 would move neither" in w for w in unset.warnings)
    assert load(balancing={"balance_types": []}).balance_types == ("vm", "ct")
    assert not load(balancing={"balance_types": ["vm", "ct"]}).warnings


def k_max_job_validation(monkeypatch, tmp_path):
    class Running:
        def get(self, path, **params):
            return {"status": "running"}

    clock = [0.0]
    settings = load(balancing={"max_job_validation": 30}, optimizer={"poll_interval": 5})
    executor = Executor(Running(), settings, sleep=lambda s: clock.__setitem__(0, clock[0] + s), clock=lambda: clock[0])
    step = PlannedStep(vmid=101, name="g", type="vm", source="pve1", target="pve2", wave=0)
    result = StepResult(step, state="running", upid="UPID:pve1:00000001:00000001:00000001:qmigrate:101:root@pam:")
    executor._wait([result])
    # Not failed: the task may still end well; the report says it still runs in PVE.
    assert result.state == UNKNOWN and "max_job_validation" in result.message and "still running" in result.message
    assert 30 <= clock[0] <= 40


def _threshold_case(resource: str):
    """Within balanciness (78 % and 70 %: 8 pp) with a move that levels both nodes (a 4 % guest)."""
    sizes = {"pve1": (40, 30, 4, 4), "pve2": (40, 30)}
    guests, vmid = [], 100
    for name, parts in sizes.items():
        for part in parts:
            vmid += 1
            if resource == "disk":
                guests.append(guest(vmid, name, "1G", local_disk=True, disk=f"{part}G"))
            elif resource == "cpu":
                guests.append(guest(vmid, name, "1G", cpus=4, cpu_usage=part / 10))
            else:
                guests.append(guest(vmid, name, f"{part}G"))
    return cluster([node("pve1", "100G", cpus=10, disk="100G"), node("pve2", "100G", cpus=10, disk="100G")], guests)


def _threshold(resource: str):
    def check(monkeypatch, tmp_path):
        c = _threshold_case(resource)
        base = {"method": resource, "balance_types": ["vm", "ct"]}
        below = plan(c, load(balancing={**base, f"{resource}_threshold": 90}))
        above = plan(c, load(balancing={**base, f"{resource}_threshold": 75}))
        assert below.status == "balanced" and not below.plan.steps
        assert above.plan.steps and any(f"{resource}_threshold" in n for n in above.notes)
        assert plan(c, load(balancing={**base, f"{resource}_threshold": 0})).status == "balanced"  # 0: unset
    return check


def k_balanciness(monkeypatch, tmp_path):
    assert plan(mild(), load(balancing={"balanciness": 10})).status == "balanced"
    result = plan(mild(), load(balancing={"balanciness": 2}))
    assert result.plan.steps and result.spread_after < 2


def k_method(monkeypatch, tmp_path):
    assert build_problem(skewed(), load(balancing={"method": "cpu"})).loads.resources == ("cpu",)
    assert build_problem(skewed(), load(balancing={"method": "memory"})).loads.resources == ("memory",)


def k_mode(monkeypatch, tmp_path):
    c = cluster([node("pve1", pressure={"memory": {"some": 40}}), node("pve2", pressure={"memory": {"some": 0}})],
                [guest(101, "pve1", "8G", memory_used="2G", pressure={"memory": {"some": 30}}),
                 guest(102, "pve1", "8G", memory_used="2G", pressure={"memory": {"some": 10}})])
    used = build_problem(c, load(balancing={"mode": "used"})).loads
    assigned = build_problem(c, load(balancing={"mode": "assigned"})).loads
    psi = build_problem(c, load(balancing={"mode": "psi"})).loads
    assert used.demand[0, 0] == 2048 and assigned.demand[0, 0] == 8192
    assert psi.demand[:, 0].tolist() == [3000, 1000] and psi.capacity[0, 0] == 10_000  # 30 % and 10 % of 40 %


def k_balance_larger_guests_first(monkeypatch, tmp_path):
    c = cluster([node("pve1"), node("pve2")],
                [guest(101, "pve1", "4G"), guest(102, "pve1", "16G"), guest(103, "pve1", "8G")])
    for larger, first in ((False, 101), (True, 102)):
        problem = build_problem(c, fast(balance_larger_guests_first=larger))
        placement = proxlb_greedy(problem, max_migrations=1).placement
        assert [int(c.guest_vmid[g]) for g in np.flatnonzero(placement != c.guest_node)] == [first]


def k_ignore_guests(monkeypatch, tmp_path):
    problem = build_problem(skewed(), load(balancing={"ignore_guests": ["g101", "104", "nosuchguest"]}))
    assert problem.rules.movable.tolist() == [False, True, True, False]
    assert any("ignore_guests names 'nosuchguest'" in w for w in problem.rules.warnings)


def k_node_resource_reserve(monkeypatch, tmp_path):
    problem = build_problem(skewed(), load(balancing={"node_resource_reserve": {"defaults": {"memory": 4},
                                                                                "pve2": {"memory": 8, "cpu": 2}}}))
    assert problem.loads.capacity[:, 0].tolist() == [60 * 1024, 56 * 1024, 60 * 1024]
    assert problem.loads.capacity[1, 1] == 14_000


def _pooled():
    return cluster([node("pve1"), node("pve2"), node("pve3")],
                   [guest(101, "pve1", "8G", pool="db"), guest(102, "pve1", "8G", pool="db"), guest(103, "pve2", "8G")])


def k_pool_type(monkeypatch, tmp_path):
    problem = build_problem(_pooled(), load(balancing={"pools": {"db": {"type": "anti-affinity"}, "gone": {"type": "affinity"}}}))
    assert [a.members for a in problem.rules.anti_affinities] == [(0, 1)]
    assert any("balancing.pools.gone" in w for w in problem.rules.warnings)


def k_pool_pin(monkeypatch, tmp_path):
    problem = build_problem(_pooled(), load(balancing={"pools": {"db": {"pin": ["pve3"]}}}))
    assert problem.rules.allowed[0].tolist() == [False, False, True] and problem.rules.mandatory[0]


def k_pool_strict(monkeypatch, tmp_path):
    problem = build_problem(_pooled(), load(balancing={"pools": {"db": {"pin": ["pve3"], "strict": False}}}))
    assert not problem.rules.pins and len(problem.rules.preferences) == 2
    assert problem.rules.allowed[0].all()


def _pressured(node_some: float, guest_some: float):
    return cluster([node("pve1", pressure={"memory": {"some": node_some, "full": node_some / 2}}),
                    node("pve2", pressure={"memory": {"some": 1, "full": 0}})],
                   [guest(101, "pve1", "8G", pressure={"memory": {"some": guest_some, "full": guest_some / 2}}),
                    guest(102, "pve1", "8G", pressure={"memory": {"some": 1, "full": 0}}),
                    guest(103, "pve2", "8G", pressure={"memory": {"some": 1, "full": 0}})])


PSI = {"memory": {"pressure_full": 10, "pressure_some": 20, "pressure_spikes": 50}}


def k_psi_nodes(monkeypatch, tmp_path):
    settings = load(balancing={"mode": "psi", "psi": {"nodes": PSI, "guests": {}}, "balance_types": ["vm"]})
    calm = plan(_pressured(10, 5), settings)
    hot = plan(_pressured(40, 5), settings)
    assert calm.status == "balanced"
    assert hot.plan.steps and any("pve1 is hot by memory pressure" in n for n in hot.notes)
    assert hot.spread_after < hot.spread_before


def k_psi_guests(monkeypatch, tmp_path):
    settings = load(balancing={"mode": "psi", "psi": {"nodes": {}, "guests": PSI}, "balance_types": ["vm"]})
    assert plan(_pressured(15, 15), settings).status == "balanced"
    hot = plan(_pressured(15, 30), settings)
    assert any("vm:101 (g101) is hot by memory pressure" in n for n in hot.notes) and hot.plan.steps


# ============================================================================ service


def k_daemon(monkeypatch, tmp_path):
    events = service_run(monkeypatch, tmp_path, {"daemon": False}, rounds=3)
    assert events == [("round",)]
    events = service_run(monkeypatch, tmp_path, {}, rounds=3)  # default true: a round every 12 h
    assert events == [("round",), ("wait", 43200), ("round",), ("wait", 43200), ("round",)]


def k_enable_ha(monkeypatch, tmp_path):
    class Status:
        def get(self, path, **params):
            assert path == "cluster/ha/status/current"
            return [{"id": "quorum", "type": "quorum", "status": "OK"},
                    {"id": "master", "type": "master", "node": "pve2", "status": "pve2 (active, Mon Nov 30 08:00:00 2026)"}]

    settings = load(proxmox_api=api(), balancing={"enable": True}, service={"enable_ha": True})
    line = migration_gate(settings, Status(), hostname="pve1.example.com")
    assert line is not None and "not the HA manager master (pve2)" in line
    assert migration_gate(settings, Status(), hostname="pve2.example.com") is None
    assert migration_gate(settings.with_overrides(enable_ha=False), Status(), hostname="pve1") is None


def k_schedule_interval(monkeypatch, tmp_path):
    events = service_run(monkeypatch, tmp_path, {"schedule": {"interval": 3}}, rounds=2)
    assert ("wait", 3 * 3600) in events


def k_schedule_format(monkeypatch, tmp_path):
    events = service_run(monkeypatch, tmp_path, {"schedule": {"interval": 30, "format": "minutes"}}, rounds=2)
    assert ("wait", 1800) in events


def k_delay_enable(monkeypatch, tmp_path):
    assert service_run(monkeypatch, tmp_path, {"delay": {"enable": False}}, once=True) == [("round",)]
    assert service_run(monkeypatch, tmp_path, {"delay": {"enable": True}}, once=True) == [("wait", 3600), ("round",)]


def k_delay_time(monkeypatch, tmp_path):
    events = service_run(monkeypatch, tmp_path, {"delay": {"enable": True, "time": 2}}, once=True)
    assert events == [("wait", 7200), ("round",)]


def k_delay_format(monkeypatch, tmp_path):
    events = service_run(monkeypatch, tmp_path, {"delay": {"enable": True, "time": 5, "format": "minutes"}}, once=True)
    assert events == [("wait", 300), ("round",)]


def k_log_level(monkeypatch, tmp_path):
    logger = logging.getLogger("proxlb_opt")
    before = logger.level
    try:
        logger.setLevel(logging.INFO)
        service_run(monkeypatch, tmp_path, {"log_level": "WARNING"}, once=True)
        assert logger.level == logging.WARNING
        logger.setLevel(logging.DEBUG)  # -v
        service_run(monkeypatch, tmp_path, {"log_level": "ERROR"}, once=True)
        assert logger.level == logging.DEBUG
    finally:
        logger.setLevel(before)


# ============================================================================ solver


def _solver(key: str, value) -> Callable:
    def check(monkeypatch, tmp_path):
        settings = load(solver={key: value})
        assert any(w.startswith("solver:") and f"solver.{key}" in w for w in settings.warnings)
        result = plan(skewed(), settings)  # and nothing else changes: the plan is proxlb-opt's own
        assert any(f"solver.{key}" in w for w in result.warnings)
    return check


BEHAVIOUR: dict[str, Callable] = {
    "proxmox_api.hosts": k_hosts, "proxmox_api.user": k_user, "proxmox_api.pass": k_pass,
    "proxmox_api.token_id": k_token_id, "proxmox_api.token_secret": k_token_secret,
    "proxmox_api.ssl_verification": k_ssl_verification, "proxmox_api.timeout": k_timeout,
    "proxmox_api.retries": k_retries, "proxmox_api.wait_time": k_wait_time,
    "proxmox_cluster.maintenance_nodes": k_maintenance_nodes, "proxmox_cluster.ignore_nodes": k_ignore_nodes,
    "proxmox_cluster.overprovisioning": k_overprovisioning,
    "proxmox_cluster.maintenance_nodes_schedule.schedules": k_schedule_schedules,
    "proxmox_cluster.maintenance_nodes_schedule.duration": k_schedule_duration,
    "proxmox_cluster.maintenance_nodes_schedule.pre-migration": k_schedule_pre_migration,
    "balancing.enable": k_enable, "balancing.enforce_affinity": k_enforce_affinity,
    "balancing.enforce_pinning": k_enforce_pinning, "balancing.parallel": k_parallel,
    "balancing.parallel_jobs": k_parallel_jobs, "balancing.live": k_live,
    "balancing.with_local_disks": k_with_local_disks, "balancing.with_conntrack_state": k_with_conntrack_state,
    "balancing.cpu_overcommit": k_cpu_overcommit, "balancing.max_node_inflow": k_max_node_inflow,
    "balancing.balance_types": k_balance_types, "balancing.max_job_validation": k_max_job_validation,
    "balancing.memory_threshold": _threshold("memory"), "balancing.cpu_threshold": _threshold("cpu"),
    "balancing.disk_threshold": _threshold("disk"), "balancing.balanciness": k_balanciness,
    "balancing.method": k_method, "balancing.mode": k_mode,
    "balancing.balance_larger_guests_first": k_balance_larger_guests_first,
    "balancing.ignore_guests": k_ignore_guests, "balancing.node_resource_reserve": k_node_resource_reserve,
    "balancing.pools.<pool>.type": k_pool_type, "balancing.pools.<pool>.pin": k_pool_pin,
    "balancing.pools.<pool>.strict": k_pool_strict, "balancing.psi.nodes": k_psi_nodes,
    "balancing.psi.guests": k_psi_guests,
    "service.daemon": k_daemon, "service.enable_ha": k_enable_ha, "service.schedule.interval": k_schedule_interval,
    "service.schedule.format": k_schedule_format, "service.delay.enable": k_delay_enable,
    "service.delay.time": k_delay_time, "service.delay.format": k_delay_format, "service.log_level": k_log_level,
    **{f"solver.{key}": _solver(key, value) for key, value in (
        ("enable", True), ("mode", "active"), ("log_dir", "/tmp/x"), ("timeout_seconds", 5),
        ("use_reservations", False), ("active_step_retries", 1), ("fallback_to_greedy", False))},
}


def test_every_proxlb_key_has_a_behaviour_test():
    assert set(BEHAVIOUR) == {k.path for k in keys.proxlb_keys()}


@pytest.mark.parametrize("path", sorted(BEHAVIOUR))
def test_key_behaviour(path, monkeypatch, tmp_path):
    BEHAVIOUR[path](monkeypatch, tmp_path)


def test_warned_keys_are_exactly_the_solver_section():
    assert {k.path for k in keys.KEYS if k.status == keys.WARNED} == {f"solver.{k}" for k in config.SOLVER_KEYS}


def test_config_error_is_one_line_without_traceback(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "proxlb.yaml"
    bad.write_text("proxmox_cluster:\n  maintenance_nodes_schedule:\n    schedules: {pve1: ['Mondai, 8:00']}\n")
    proc = subprocess.run([sys.executable, "-m", "proxlb_opt", "plan", "--config", str(bad), "--model",
                           str(Path(__file__).resolve().parents[1] / "models" / "homelab.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert re.fullmatch(r"error: .*schedules\.pve1: cannot read 'Mondai, 8:00'.*\n", proc.stderr)
