"""ProxLB keys that depend on the live cluster, run against the simulator over HTTPS: maintenance windows
on its virtual clock, enable_ha with its HA master, mode psi with its pressure figures, and live: false."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from proxlb_opt.adapters.proxmox import collect_live
from proxlb_opt.config import settings_from_dict
from proxlb_opt.service import one_round
from proxlb_opt.simulator import SimulatorServer
from tests.integration.conftest import FAST, api_section, rebalance_cluster


def config(sim: SimulatorServer, **sections) -> dict:
    balancing = {"enable": True, "parallel": True, "parallel_jobs": 3, "balanciness": 2, "max_job_validation": 60,
                 "balance_types": ["vm", "ct"], **sections.pop("balancing", {})}
    return {"proxmox_api": api_section(sim, token=True), "balancing": balancing,
            "optimizer": {"poll_interval": 0.02, "workers": 1, "time_limit": 5}, **sections}


def settings(sim: SimulatorServer, **sections):
    return settings_from_dict(config(sim, **sections))


def local(sim: SimulatorServer) -> datetime:
    return datetime.fromtimestamp(sim.now())


def next_monday(after: datetime, hour: int, minute: int) -> datetime:
    day = (after + timedelta(days=(7 - after.weekday()) % 7 or 7)).replace(hour=hour, minute=minute, second=0,
                                                                         microsecond=0)
    return day


def test_maintenance_window_drains_the_node_inside_and_frees_it_after():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        start = next_monday(local(sim), 8, 5)
        sim.advance_to(start.timestamp())
        cfg = settings(sim, proxmox_cluster={"maintenance_nodes_schedule": {
            "duration": 2, "pre-migration": 15, "schedules": {"pve2": ["Monday, 8:00"], "pve9": ["Monday, 8:00"]}}})
        events = []
        inside = one_round(cfg, False, events.append, now=local(sim))
        assert inside.error is None and inside.failed == 0
        maintenance = [(inside.result.cluster.node_names[m.node], m.source) for m in inside.result.rules.maintenance]
        assert maintenance == [("pve2", "config proxmox_cluster.maintenance_nodes_schedule (Monday, 8:00)")]
        assert any("'pve9'" in w for w in inside.result.warnings)
        placement = sim.state.placement()
        assert "pve2" not in placement.values()  # 108 left, nothing came in

        sim.advance_to(next_monday(local(sim) - timedelta(days=7), 10, 30).timestamp())  # the window has closed
        after = one_round(cfg, False, events.append, now=local(sim))
        assert after.error is None and not after.result.rules.maintenance
        assert "pve2" in sim.state.placement().values()  # balancing uses the node again


def test_enable_ha_only_the_master_node_migrates():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, ha_master="pve2") as sim:
        cfg = settings(sim, service={"enable_ha": True})
        before = sim.state.placement()
        other = one_round(cfg, False, lambda e: None, hostname="pve1")
        assert other.error is None and other.migrations > 0  # it plans
        assert other.gate == "service.enable_ha: this node (pve1) is not the HA manager master (pve2): planning " \
                             "only, pve2 migrates"
        assert sim.state.placement() == before and other.done == 0

        sim.state.set_ha_master(None)
        nobody = one_round(cfg, False, lambda e: None, hostname="pve2")
        assert "no HA manager master" in nobody.gate and sim.state.placement() == before

        sim.state.set_ha_master("pve2")
        master = one_round(cfg, False, lambda e: None, hostname="pve2.example.com")
        assert master.gate is None and master.done == master.migrations > 0
        assert sim.state.placement() != before


def test_mode_psi_reads_pressure_and_moves_it_off_the_hot_node():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        sim.state.set_pressure("pve1", pressurememorysome=45.0, pressurememoryfull=25.0)
        for other in ("pve2", "pve3"):
            sim.state.set_pressure(other, pressurememorysome=2.0, pressurememoryfull=0.5)
        for vmid in (101, 102, 103, 104, 105, 107):
            sim.state.set_pressure(vmid, pressurememorysome=20.0, pressurememoryfull=5.0)
        sim.advance(3600)  # a whole hour of rrddata with these values
        psi = {"memory": {"pressure_full": 10, "pressure_some": 20, "pressure_spikes": 80}}
        cfg = settings(sim, balancing={"mode": "psi", "psi": {"nodes": psi, "guests": {}}})

        cluster = collect_live(cfg)
        memory = 0
        assert cluster.node_psi_known.all()
        assert cluster.node_psi[0, memory].tolist() == [4500, 2500, 2500]  # some, full, spikes (hundredths of %)
        assert cluster.guest_psi[cluster.guest_index(101), memory, 0] == 2000
        assert cluster.guest_psi[cluster.guest_index(106), memory].tolist() == [0, 0, 0]  # stopped

        outcome = one_round(cfg, False, lambda e: None)
        result = outcome.result
        assert outcome.error is None and outcome.done == outcome.migrations > 0
        assert any("pve1 is hot by memory pressure" in note for note in result.notes)
        assert result.spread_before == pytest.approx(43.0, abs=0.01) and result.spread_after < 25
        assert all(result.cluster.node_names[s.source] == "pve1" for s in result.plan.steps)

        calm = settings(sim, balancing={"mode": "psi", "psi": {"nodes": {"memory": {
            "pressure_full": 50, "pressure_some": 50, "pressure_spikes": 80}}, "guests": {}}})
        assert one_round(calm, True, lambda e: None).result.status == "balanced"  # nothing hot: nothing to do


def test_live_false_keeps_running_vms_and_moves_the_rest():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        before = sim.state.placement()
        outcome = one_round(settings(sim, balancing={"live": False, "balanciness": 1}), False, lambda e: None)
        assert outcome.error is None and outcome.failed == 0
        after = sim.state.placement()
        moved = {vmid for vmid in before if before[vmid] != after[vmid]}
        running_vms = {101, 102, 103, 104, 107, 108}
        assert moved and not moved & running_vms  # only the container and the stopped VM may move
        assert any("balancing.live is false" in w for w in outcome.result.warnings)


def test_apply_and_service_without_enable_plan_only_and_say_so(tmp_path):
    import subprocess
    import sys

    import yaml

    with SimulatorServer(rebalance_cluster(), time_scale=FAST) as sim:
        data = config(sim)
        del data["balancing"]["enable"]  # ProxLB's default: false
        path = tmp_path / "proxlb.yaml"
        path.write_text(yaml.safe_dump(data))
        before = sim.state.placement()
        for args in (["apply", "--yes"], ["service", "--once"]):
            proc = subprocess.run([sys.executable, "-m", "proxlb_opt", *args, "--config", str(path)],
                                  capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
            lines = [line for line in proc.stderr.splitlines() if "balancing.enable is not true" in line]
            assert len(lines) == 1 and "planning only, nothing is migrated" in lines[0], proc.stderr
            assert sim.state.placement() == before
        assert "migrations" in proc.stderr  # the service round still logged its plan
