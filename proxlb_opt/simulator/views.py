"""JSON shapes of the simulated PVE 9 API, built from a state Snapshot.

Owns the translation from the model's units to the API's: bytes for memory and disk, CPU as a
fraction of the object's own CPUs, booleans as 0/1, tags as a `;` string, PSI as numbers for
QEMU and as strings for LXC (as PVE 9 sends them; the values are psi.py's), and which fields a
PVE version has (9.2: HA `auto-rebalance`, node `host-arch`; 9.2.6: node-affinity `affinity`).
Pure functions: no locks, no HTTP.

Storage layout (fixed, so that local vs shared disks are visible): every node has `local`
(dir, the root file system, sized by the model's node disk; local guest disks live here) and the
shared `ceph-vm` (rbd). Node `disk`/`maxdisk` therefore carry the model's node disk numbers.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any, Iterable, Mapping

from proxlb_opt.limits import is_decimal
from proxlb_opt.simulator import ha, psi
from proxlb_opt.simulator.state import (LOCAL_STORAGE, MIB, SHARED_STORAGE, GuestRec, NodeRec, PveError, Snapshot,
                                        TaskRec, param_error, volume_id)

PVE_REPOID = "42ab1e2b"
MAC_PREFIX = "BC:24:11"  # Proxmox's OUI, the datacenter default
KERNEL = "6.14.11-4-pve"

# PVE 9 RRD resolutions: timeframe → (step seconds, points) (FACTS 4.7).
RRD_FRAMES = {
    "hour": (60, 60), "day": (60, 1440), "week": (1800, 336),
    "month": (1800, 1440), "year": (21600, 1440), "decade": (604800, 570),
}


def _b(flag: bool) -> int:
    return 1 if flag else 0


def _num(value: float) -> int | float:
    """Integral values as int (vCPU counts), others rounded."""
    return int(value) if float(value).is_integer() else round(float(value), 3)


def tags_text(tags: Iterable[str]) -> str:
    return ";".join(sorted(set(tags)))


def at_least(snap: Snapshot, wanted: str) -> bool:
    """Whether the simulated PVE version is `wanted` or newer ("9.2", "9.2.6")."""
    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split(".") if is_decimal(p))
    have, need = parts(snap.pve_version), parts(wanted)
    return have + (0,) * (len(need) - len(have)) >= need


# ---------------------------------------------------------------------- nodes

def node_fractions(snap: Snapshot, node: NodeRec) -> tuple[float, float]:
    """(cpu, mem) load of a node as fractions of its capacity."""
    use = snap.usage[node.name]
    cpu = min(1.0, use.cpu_used_milli / node.cpu_milli) if node.cpu_milli else 0.0
    mem = use.mem_used_mib / node.mem_mib if node.mem_mib else 0.0
    return cpu, mem


def cpu_demand(snap: Snapshot, node: NodeRec) -> float:
    """CPU used over physical cores, not capped at 1: what drives CPU pressure."""
    return snap.usage[node.name].cpu_used_milli / node.cpu_milli if node.cpu_milli else 0.0


def node_maxcpu(node: NodeRec) -> int:
    return max(1, int(round(node.cpu_milli / 1000)))


def node_entry(snap: Snapshot, node: NodeRec, with_id: bool = True) -> dict[str, Any]:
    """A node as in `/nodes` and `/cluster/resources` (type node); offline nodes carry no stats."""
    entry: dict[str, Any] = {"node": node.name, "status": "online" if snap.is_online(node.name) else "offline",
                             "level": ""}
    if with_id:
        entry.update(id=f"node/{node.name}", type="node")
    if not snap.is_online(node.name):
        return entry
    use = snap.usage[node.name]
    cpu, _ = node_fractions(snap, node)
    entry.update(
        cpu=round(cpu, 6), maxcpu=node_maxcpu(node), mem=use.mem_used_mib * MIB, maxmem=node.mem_mib * MIB,
        disk=use.disk_used_mib * MIB, maxdisk=node.disk_mib * MIB, uptime=int(snap.now - node.boot_time),
        ssl_fingerprint=_fingerprint(node.name),
    )
    return entry


def _fingerprint(name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def node_ha_state(snap: Snapshot, node: NodeRec) -> str:
    if not snap.is_online(node.name):
        return "unknown"
    return "maintenance" if node.maintenance else "online"


def node_status(snap: Snapshot, node: NodeRec) -> dict[str, Any]:
    """`/nodes/{node}/status`."""
    use = snap.usage[node.name]
    cpu, _ = node_fractions(snap, node)
    maxcpu = node_maxcpu(node)
    total, used = node.mem_mib * MIB, min(use.mem_used_mib, node.mem_mib) * MIB
    disk_total, disk_used = node.disk_mib * MIB, min(use.disk_used_mib, node.disk_mib) * MIB
    load = cpu * maxcpu
    return {
        "cpu": round(cpu, 6), "wait": 0.001, "idle": 0,
        "loadavg": [f"{load:.2f}", f"{load * 0.95:.2f}", f"{load * 0.9:.2f}"],
        "memory": {"total": total, "used": used, "free": total - used, "available": total - used},
        "swap": {"total": 8192 * MIB, "used": 0, "free": 8192 * MIB},
        "rootfs": {"total": disk_total, "used": disk_used, "free": disk_total - disk_used,
                   "avail": disk_total - disk_used},
        "ksm": {"shared": 0},
        "cpuinfo": {"cpus": maxcpu, "cores": maxcpu, "sockets": 1, "model": "Simulated CPU @ 2.40GHz",
                    "mhz": "2400.000", "hvm": "1", "user_hz": 100, "flags": "fpu vme de pse tsc msr"},
        "uptime": int(snap.now - node.boot_time),
        "pveversion": f"pve-manager/{snap.pve_version}/{PVE_REPOID}",
        "kversion": f"Linux {KERNEL} #1 SMP PREEMPT_DYNAMIC PMX",
        "current-kernel": {"sysname": "Linux", "release": KERNEL, "machine": "x86_64",
                           "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.14.11-4 (2025-10-10T08:04Z)"},
        "boot-info": {"mode": "efi", "secureboot": 0},
    }


def version(snap: Snapshot) -> dict[str, str]:
    release = ".".join(snap.pve_version.split(".")[:2])
    return {"version": snap.pve_version, "release": release, "repoid": PVE_REPOID}


# ---------------------------------------------------------------------- storage

def _shared_totals(snap: Snapshot) -> tuple[int, int]:
    """(total, used) MiB of the shared pool: twice the shared guests' disks, at least 1 TiB."""
    shared = [g for g in snap.guests.values() if not g.local_disk]
    total = max(1024 * 1024, 2 * sum(g.disk_mib for g in shared))
    return total, sum(g.disk_used_mib for g in shared)


def storages(snap: Snapshot, node: NodeRec, shared: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """`/nodes/{node}/storage` items (bytes); `shared` is the pool's (total, used) MiB when already known."""
    use = snap.usage[node.name]
    shared_total, shared_used = shared or _shared_totals(snap)
    rows = [
        (LOCAL_STORAGE, "dir", "backup,images,iso,rootdir,vztmpl", 0, node.disk_mib, use.disk_used_mib),
        (SHARED_STORAGE, "rbd", "images,rootdir", 1, shared_total, shared_used),
    ]
    out = []
    for sid, kind, content, shared, total_mib, used_mib in rows:
        total, used = total_mib * MIB, min(used_mib, total_mib) * MIB
        out.append({"storage": sid, "type": kind, "content": content, "active": 1, "enabled": 1,
                    "shared": shared, "total": total, "used": used, "avail": total - used,
                    "used_fraction": round(used / total, 6) if total else 0.0})
    return out


def storage_resources(snap: Snapshot, node: NodeRec, shared: tuple[int, int]) -> list[dict[str, Any]]:
    online = snap.is_online(node.name)
    out = []
    for row in storages(snap, node, shared):
        entry = {"id": f"storage/{node.name}/{row['storage']}", "type": "storage", "storage": row["storage"],
                 "node": node.name, "status": "available" if online else "unknown", "content": row["content"],
                 "plugintype": row["type"], "shared": row["shared"]}
        if online:
            entry.update(disk=row["used"], maxdisk=row["total"])
        out.append(entry)
    return out


def _size_text(mib: int) -> str:
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


# ---------------------------------------------------------------------- guests

def guest_cpus(guest: GuestRec) -> int | float:
    return _num(guest.cpu_milli / 1000) if guest.cpu_milli else 1


def _guest_live(snap: Snapshot, guest: GuestRec) -> bool:
    return guest.running and snap.is_online(guest.node)


def _guest_numbers(snap: Snapshot, guest: GuestRec) -> dict[str, Any]:
    """The metrics shared by lists, resources and status/current."""
    live = _guest_live(snap, guest)
    uptime = max(0, int(snap.now - guest.started_at)) if live else 0
    cpu = min(1.0, guest.cpu_used_milli / guest.cpu_milli) if live and guest.cpu_milli else 0.0
    rate = guest.vmid % 7 + 1  # a per-guest traffic rate so that counters differ between guests
    numbers: dict[str, Any] = {
        "cpu": round(cpu, 6), "maxmem": guest.mem_mib * MIB, "mem": guest.mem_used_mib * MIB if live else 0,
        "maxdisk": guest.disk_mib * MIB, "uptime": uptime,
        # QEMU does not know the guest's file system usage: PVE reports 0 without the agent.
        "disk": guest.disk_used_mib * MIB if guest.kind == "lxc" else 0,
        "netin": uptime * rate * 12_000, "netout": uptime * rate * 8_000,
        "diskread": uptime * rate * 30_000, "diskwrite": uptime * rate * 20_000,
    }
    if guest.kind == "qemu":
        numbers["memhost"] = numbers["mem"]
    return numbers


def _optional(snap: Snapshot, guest: GuestRec, entry: dict[str, Any]) -> dict[str, Any]:
    lock = snap.lock_of(guest)
    if lock:
        entry["lock"] = lock
    if guest.tags:
        entry["tags"] = tags_text(guest.tags)
    return entry


def guest_resource(snap: Snapshot, guest: GuestRec) -> dict[str, Any]:
    """A `/cluster/resources` item of type qemu or lxc."""
    entry: dict[str, Any] = {"id": f"{guest.kind}/{guest.vmid}", "type": guest.kind, "vmid": guest.vmid,
                             "name": guest.name, "node": guest.node, "template": _b(guest.template)}
    if snap.is_online(guest.node):
        entry["status"] = "running" if guest.running else "stopped"
        entry["maxcpu"] = guest_cpus(guest)
        entry.update(_guest_numbers(snap, guest))
    else:
        entry["status"] = "unknown"
    if guest.pool:
        entry["pool"] = guest.pool
    if guest.ha and guest.hastate:
        entry["hastate"] = guest.hastate
    return _optional(snap, guest, entry)


def _guest_pressure_default(snap: Snapshot, guest: GuestRec) -> dict[str, float]:
    node = snap.node(guest.node)
    assert node is not None
    _, host_mem = node_fractions(snap, node)
    own_mem = guest.mem_used_mib / guest.mem_mib if guest.mem_mib else 0.0
    return psi.guest_default(_guest_live(snap, guest), cpu_demand(snap, node), host_mem, own_mem)


def _guest_pressure(snap: Snapshot, guest: GuestRec) -> dict[str, float]:
    """Live PSI of a guest: set values over the defaults; 0 when not running."""
    values = _guest_pressure_default(snap, guest)
    if _guest_live(snap, guest):
        values.update(snap.pressure_set(("guest", guest.vmid)))
    return values


def guest_list_item(snap: Snapshot, guest: GuestRec) -> dict[str, Any]:
    """An item of `/nodes/{node}/qemu` or `/nodes/{node}/lxc` (live PSI: numbers for QEMU, strings for LXC)."""
    live = _guest_live(snap, guest)
    entry: dict[str, Any] = {"vmid": guest.vmid, "name": guest.name, "status": "running" if live else "stopped",
                             "cpus": guest_cpus(guest), **_guest_numbers(snap, guest)}
    if guest.template:
        entry["template"] = 1
    pressure = _guest_pressure(snap, guest)
    if guest.kind == "qemu":
        entry.update(pressure, qmpstatus=entry["status"])
        if live:
            entry.update({"pid": 10_000 + guest.vmid, "running-machine": "pc-i440fx-10.0+pve1",
                          "running-qemu": "10.0.2"})
    else:
        entry.update({k: f"{v:.2f}" for k, v in pressure.items()})
        entry.update(type="lxc", swap=0, maxswap=512 * MIB)
        if live:
            entry["pid"] = 20_000 + guest.vmid
    return _optional(snap, guest, entry)


def guest_status(snap: Snapshot, guest: GuestRec) -> dict[str, Any]:
    """`.../{qemu|lxc}/{vmid}/status/current`: the list item plus `ha`."""
    entry = guest_list_item(snap, guest)
    ha: dict[str, Any] = {"managed": _b(guest.ha)}
    if guest.ha:
        ha["state"] = guest.hastate or "started"
    entry["ha"] = ha
    if guest.kind == "qemu":
        entry["agent"] = 0
    return entry


def guest_config(snap: Snapshot, guest: GuestRec) -> dict[str, Any]:
    """`.../config`: QEMU `memory` is a string in PVE 9; disks name their storage (local vs shared)."""
    cores = max(1, math.ceil(guest.cpu_milli / 1000))
    disk = f"{volume_id(guest)},size={_size_text(max(guest.disk_mib, 1))}"
    mac = f"BC:24:11:{guest.vmid >> 16 & 255:02X}:{guest.vmid >> 8 & 255:02X}:{guest.vmid & 255:02X}"
    if guest.kind == "qemu":
        conf: dict[str, Any] = {
            "name": guest.name, "memory": str(guest.mem_mib), "cores": cores, "sockets": 1, "cpu": "x86-64-v2-AES",
            "ostype": "l26", "scsihw": "virtio-scsi-single", "boot": "order=scsi0;net0", "numa": 0,
            "net0": f"virtio={mac},bridge=vmbr0,firewall=1",
            "smbios1": f"uuid=00000000-0000-4000-8000-{guest.vmid:012d}",
            "meta": "creation-qemu=10.0.2,ctime=1750000000",
        }
        if guest.disk_mib:
            conf["scsi0"] = disk + ",iothread=1"
    else:
        conf = {"hostname": guest.name, "memory": guest.mem_mib, "swap": 512, "cores": cores, "arch": "amd64",
                "ostype": "debian", "unprivileged": 1, "rootfs": disk,
                "net0": f"name=eth0,bridge=vmbr0,hwaddr={mac},ip=dhcp,type=veth"}
    if guest.cpu_milli % 1000:
        conf["cpulimit"] = _num(guest.cpu_milli / 1000)
    if guest.template:
        conf["template"] = 1
    _optional(snap, guest, conf)
    conf["digest"] = hashlib.sha1(repr(sorted(conf.items())).encode()).hexdigest()
    return conf


# ---------------------------------------------------------------------- cluster-wide

def cluster_resources(snap: Snapshot, kind: str | None) -> list[dict[str, Any]]:
    """`/cluster/resources[?type=vm|storage|node|sdn]`, one mixed array."""
    out: list[dict[str, Any]] = []
    with_ha = any(g.ha for g in snap.guests.values()) or any(n.maintenance for n in snap.nodes)
    if kind in (None, "node"):
        for node in snap.nodes:
            entry = node_entry(snap, node)
            if snap.is_online(node.name):
                entry["cgroup-mode"] = 2
                if at_least(snap, "9.2"):
                    entry["host-arch"] = "x86_64"
            if with_ha:
                entry["hastate"] = node_ha_state(snap, node)
            out.append(entry)
    if kind in (None, "vm"):
        out.extend(guest_resource(snap, g) for g in snap.guests.values())
    if kind in (None, "storage"):
        shared = _shared_totals(snap)  # once, not per node: it walks every guest
        for node in snap.nodes:
            out.extend(storage_resources(snap, node, shared))
    if kind is None:
        out.extend({"id": f"/pool/{p}", "type": "pool", "pool": p} for p in pool_ids(snap))
    if kind in (None, "sdn"):
        out.extend({"id": f"sdn/{n.name}/localnetwork", "type": "sdn", "sdn": "localnetwork", "node": n.name,
                    "status": "ok" if snap.is_online(n.name) else "unknown"} for n in snap.nodes)
    return out


def cluster_status(snap: Snapshot) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"id": "cluster", "type": "cluster", "name": snap.cluster_name,
                                  "nodes": len(snap.nodes), "quorate": _b(snap.quorate),
                                  "version": len(snap.nodes) + 2}]
    for node in snap.nodes:
        out.append({"id": f"node/{node.name}", "type": "node", "name": node.name, "nodeid": node.nodeid,
                    "ip": node.ip, "online": _b(snap.is_online(node.name)), "local": _b(node.name == snap.local_node),
                    "level": ""})
    return out


def pool_ids(snap: Snapshot) -> list[str]:
    return sorted({g.pool for g in snap.guests.values() if g.pool})


def pool_members(snap: Snapshot, poolid: str, kind: str | None = None) -> list[dict[str, Any]]:
    members = [guest_resource(snap, g) for g in snap.guests.values() if g.pool == poolid]
    return [m for m in members if kind in (None, m["type"])]


def pools(snap: Snapshot, poolid: str | None, kind: str | None) -> list[dict[str, Any]]:
    """`/pools[?poolid=&type=]`: members only when one pool is asked for."""
    if poolid is None:
        return [{"poolid": p} for p in pool_ids(snap)]
    if poolid not in pool_ids(snap):
        raise PveError(500, f"pool '{poolid}' does not exist")
    return [{"poolid": poolid, "members": pool_members(snap, poolid, kind)}]


def pool(snap: Snapshot, poolid: str, kind: str | None) -> dict[str, Any]:
    """The deprecated `/pools/{poolid}` shape: `{members}`."""
    return {"members": pools(snap, poolid, kind)[0]["members"]}


# ---------------------------------------------------------------------- HA

def _digest(*parts: Any) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def _ha_options(snap: Snapshot, g: GuestRec) -> dict[str, Any]:
    """The resource options PVE fills with defaults; `auto-rebalance` exists from PVE 9.2 on."""
    out: dict[str, Any] = {"max_restart": 1, "max_relocate": 1, "failback": _b(g.failback)}
    if at_least(snap, "9.2"):
        out["auto-rebalance"] = _b(g.auto_rebalance)
    return out


def ha_resources(snap: Snapshot, kind: str | None) -> list[dict[str, Any]]:
    out = []
    for g in snap.guests.values():
        if not g.ha or kind not in (None, "ct" if g.kind == "lxc" else "vm"):
            continue
        out.append({"sid": snap.sid(g), "type": "ct" if g.kind == "lxc" else "vm",
                    "state": "started" if g.running else "stopped", **_ha_options(snap, g),
                    "digest": _digest("ha", g.vmid)})
    return out


def _resource_sid(snap: Snapshot, vmid: int) -> str:
    guest = snap.guests.get(vmid)
    return f"ct:{vmid}" if guest is not None and guest.kind == "lxc" else f"vm:{vmid}"


def ha_rules(snap: Snapshot, kind: str | None, resource: str | None) -> list[dict[str, Any]]:
    """`/cluster/ha/rules`. Node-affinity rules carry `affinity` from PVE 9.2.6 on, where PVE fills
    the default `positive`; a negative one (nodes to avoid, no priorities) is shown whatever the version."""
    out = []
    for order, rule in enumerate(snap.ha_rules, start=1):
        sids = [_resource_sid(snap, v) for v in rule.vmids]
        if kind not in (None, rule.type) or resource not in (None, *sids):
            continue
        entry: dict[str, Any] = {"rule": rule.name, "type": rule.type, "resources": ",".join(sids), "order": order}
        if rule.type == "node-affinity":
            entry["nodes"] = ",".join(f"{n}:{p}" if p else n for n, p in rule.node_priorities)
            entry["strict"] = _b(rule.strict)
            if rule.affinity == "negative" or at_least(snap, "9.2.6"):
                entry["affinity"] = rule.affinity
        else:
            entry["affinity"] = rule.affinity
        if rule.disabled:
            entry["disable"] = 1
        entry["digest"] = _digest("rules", len(snap.ha_rules))
        out.append(entry)
    return out


def _ctime(t: float) -> str:
    """Perl's scalar localtime(), as pve-ha-manager prints it: "Sun Sep  7 12:00:00 2026"."""
    tm = time.localtime(t)
    return f"{time.strftime('%a %b', tm)} {tm.tm_mday:2d} {time.strftime('%H:%M:%S %Y', tm)}"


def ha_status(snap: Snapshot) -> list[dict[str, Any]]:
    """`/cluster/ha/status/current` in PVE's order: quorum (of the answering node), master (the CRM,
    with " - <mode> load CRS" unless basic), fencing, one lrm per node, then the services."""
    stamp = int(snap.now)
    local = snap.local_node
    quorum = "OK" if snap.quorate else f"No quorum on node '{local}'!"
    out: list[dict[str, Any]] = [
        {"id": "quorum", "type": "quorum", "node": local, "status": quorum, "quorate": _b(snap.quorate)},
    ]
    master = snap.master
    if master is not None:
        mode = snap.crs.get("ha") or "basic"
        extra = f" - {mode} load CRS" if mode != "basic" else ""
        out.append({"id": "master", "type": "master", "node": master,
                    "status": f"{master} (active, {_ctime(stamp)}){extra}", "timestamp": stamp})
    armed = "armed" if master is not None else "standby"
    out.append({"id": "fencing", "type": "fencing", "node": master or local,
                "status": f"{armed} (CRM watchdog {'active' if master else 'standby'})", "armed-state": armed})
    for node in snap.nodes:
        out.append(_lrm_entry(snap, node, stamp))
    for g in snap.guests.values():
        if g.ha:
            out.append(_ha_service(snap, g))
    return out


def _lrm_entry(snap: Snapshot, node: NodeRec, stamp: int) -> dict[str, Any]:
    """An LRM line: "<node> (<mode>, watchdog <state>, <time>)"; a dead node's timestamp is old."""
    if not snap.is_online(node.name):
        stamp -= 60  # its last update is older than the 30 s after which PVE calls an LRM dead
        mode = "maintenance mode" if node.maintenance else "old timestamp - dead?"
        watchdog = "standby"
    elif node.maintenance:
        mode, watchdog = "maintenance mode", "active"
    elif any(g.ha for g in snap.guests_on(node.name)):
        mode, watchdog = "active", "active"
    else:
        mode, watchdog = "idle", "standby"
    return {"id": f"lrm:{node.name}", "type": "lrm", "node": node.name,
            "status": f"{node.name} ({mode}, watchdog {watchdog}, {_ctime(stamp)})", "timestamp": stamp}


def _ha_service(snap: Snapshot, g: GuestRec) -> dict[str, Any]:
    state = g.hastate or "started"
    requested = "started" if g.running else "stopped"
    return {"id": f"service:{snap.sid(g)}", "type": "service", "sid": snap.sid(g), "node": g.node,
            "crm_state": state, "state": state, "request_state": requested, **_ha_options(snap, g),
            "status": f"{snap.sid(g)} ({g.node}, {state})"}


def cluster_options(snap: Snapshot) -> dict[str, Any]:
    """`GET /cluster/options` (with Sys.Audit): datacenter.cfg as PVE parses it. Property strings
    such as `crs` come back as objects (booleans 0/1; numbers as the strings the file holds).
    `allowed-tags`: root may use every tag that exists."""
    tags = sorted({t for g in snap.guests.values() for t in g.tags})
    out: dict[str, Any] = {"description": "", "mac_prefix": MAC_PREFIX, "allowed-tags": tags}
    if snap.crs:
        out["crs"] = {k: int(v) if k in ("ha-rebalance-on-start", "ha-auto-rebalance") else v
                      for k, v in snap.crs.items()}
    return out


# ---------------------------------------------------------------------- migrate precondition

def _ha_placement_blocks(snap: Snapshot, guest: GuestRec) -> tuple[dict[str, list[dict[str, str]]], list[str]]:
    """HA resource-affinity (get_resource_motion_info): per node in the CRM's online set, the
    negative partners blocking it; and the positive partners that would follow."""
    if not guest.ha:
        return {}, []
    blocked = {}
    for node in sorted(ha.active_nodes(snap)):
        found = ha.blocking(snap, guest.vmid, node)
        if found:
            blocked[node] = [{"sid": snap.sid(snap.guests[v]), "cause": "resource-affinity"} for v in found]
    together, _ = ha.partners(snap, guest.vmid)
    return blocked, sorted(snap.sid(snap.guests[v]) for v in together)


def migrate_precondition(snap: Snapshot, guest: GuestRec, target: str | None) -> dict[str, Any]:
    """GET .../migrate: QEMU uses underscores (`allowed_nodes`), LXC hyphens (`allowed-nodes`)."""
    if target is not None and snap.node(target) is None:
        raise PveError(500, f"no such cluster node '{target}'")
    if guest.kind == "qemu" and snap.lock_of(guest):
        raise PveError(500, f"VM is locked ({snap.lock_of(guest)})")
    blocked, dependent = _ha_placement_blocks(snap, guest)
    others = [n.name for n in snap.nodes if n.name != guest.node]
    # PVE does not look at node liveness here: an offline node stays "allowed" (storage is defined for it).
    allowed = [n for n in others if n not in blocked]
    not_allowed = {n: {"blocking-ha-resources": blocked[n]} for n in others if n in blocked}
    sep = "_" if guest.kind == "qemu" else "-"
    out: dict[str, Any] = {"running": _b(guest.running), f"allowed{sep}nodes": allowed,
                           f"not{sep}allowed{sep}nodes": not_allowed}
    if guest.ha:
        out["dependent-ha-resources"] = dependent  # PVE sends it, maybe empty, for every HA guest
    if guest.kind == "qemu":
        disks = []
        if guest.local_disk and guest.disk_mib:
            disks.append({"volid": volume_id(guest), "size": guest.disk_mib * MIB, "cdrom": 0, "is_unused": 0,
                          "is_attached": 1, "drivename": "scsi0", "replicate": 1})
        out.update({"local_disks": disks, "local_resources": [], "mapped-resources": [], "mapped-resource-info": {},
                    "has-dbus-vmstate": 1})
    return out


# ---------------------------------------------------------------------- tasks

def _split_user(task: TaskRec) -> dict[str, str]:
    user, _, token = task.user.partition("!")
    return {"user": user, "tokenid": token} if token else {"user": user}


def task_status(task: TaskRec) -> dict[str, Any]:
    out: dict[str, Any] = {"upid": task.upid, "node": task.node, "pid": task.pid, "pstart": task.pstart,
                           "starttime": task.starttime, "type": task.type, "id": task.id, **_split_user(task),
                           "status": task.status}
    if task.status == "stopped":
        out["exitstatus"] = task.exitstatus
    return out


def task_item(task: TaskRec) -> dict[str, Any]:
    """A task list item: here `status` holds the exit status text, and only once the task ended."""
    out: dict[str, Any] = {"upid": task.upid, "node": task.node, "pid": task.pid, "pstart": task.pstart,
                           "starttime": task.starttime, "type": task.type, "id": task.id, **_split_user(task)}
    if task.status == "stopped":
        out.update(endtime=task.endtime, status=task.exitstatus)
    return out


def task_log(task: TaskRec, start: int, limit: int) -> list[dict[str, Any]]:
    lines = task.log[start:start + limit] if limit > 0 else task.log[start:]
    return [{"n": start + i + 1, "t": text} for i, text in enumerate(lines)]


def _task_class(task: TaskRec) -> str:
    if task.status != "stopped":
        return "running"
    if task.exitstatus == "OK":
        return "ok"
    return "warning" if (task.exitstatus or "").startswith("WARNINGS") else "error"


def node_tasks(snap: Snapshot, node: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """`/nodes/{node}/tasks`: newest first; `source` archive (ended, the default), active (running) or all."""
    source = params.get("source", "archive")
    if source not in ("archive", "active", "all"):
        raise param_error(source="value '%s' does not have a value in the enumeration 'archive, active, all'" % source)
    wanted = {"archive": {"stopped"}, "active": {"running"}, "all": {"stopped", "running"}}[source]
    rows = [t for t in snap.tasks if t.node == node and t.status in wanted and _task_matches(t, params)]
    rows.sort(key=lambda t: (t.starttime, t.pid), reverse=True)
    start, limit = int_param(params, "start", 0), int_param(params, "limit", 50)
    return [task_item(t) for t in rows[start:start + limit]]


def _task_matches(task: TaskRec, params: dict[str, str]) -> bool:
    checks = [
        "vmid" not in params or task.id == str(params["vmid"]),
        "typefilter" not in params or task.type == params["typefilter"],
        "userfilter" not in params or params["userfilter"] in task.user,
        "since" not in params or task.starttime >= int_param(params, "since", 0),
        "until" not in params or task.starttime <= int_param(params, "until", 0),
        params.get("errors") not in ("1", "true") or _task_class(task) == "error",
        "statusfilter" not in params or _task_class(task) in params["statusfilter"].split(","),
    ]
    return all(checks)


def int_param(params: Mapping[str, str], key: str, default: int) -> int:
    """An integer parameter; 400 like PVE's schema check when it is not one."""
    value = params.get(key)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise param_error(**{key: f"type check ('integer') failed - got '{value}'"}) from None


def cluster_tasks(snap: Snapshot) -> list[dict[str, Any]]:
    """`/cluster/tasks`: the recent cluster-wide list, newest first."""
    rows = sorted(snap.tasks, key=lambda t: (t.starttime, t.pid), reverse=True)[:1000]
    return [task_item(t) for t in rows]


# ---------------------------------------------------------------------- rrddata

def _frame(params: dict[str, str], node_level: bool) -> tuple[int, int, bool]:
    timeframe = params.get("timeframe")
    frames = list(RRD_FRAMES) if node_level else [f for f in RRD_FRAMES if f != "decade"]
    if not timeframe:
        raise param_error(timeframe="property is missing and it is not optional")
    if timeframe not in frames:
        allowed = ", ".join(frames)
        raise param_error(timeframe=f"value '{timeframe}' does not have a value in the enumeration '{allowed}'")
    cf = params.get("cf", "AVERAGE")
    if cf not in ("AVERAGE", "MAX"):
        raise param_error(cf=f"value '{cf}' does not have a value in the enumeration 'AVERAGE, MAX'")
    step, points = RRD_FRAMES[timeframe]
    return step, points, cf == "MAX"


def _times(snap: Snapshot, step: int, points: int) -> list[int]:
    last = int(snap.now) // step * step
    return [last - (points - 1 - i) * step for i in range(points)]


def _wiggle(t: int, phase: int, peak: bool) -> float:
    """Deterministic ±5 % variation around the current value, so series are not flat."""
    return 1.0 + 0.05 * math.sin(t / 1800.0 + phase) + (0.05 if peak else 0.0)


def _set_at(snap: Snapshot, key: tuple[str, object], t: int, step: int) -> Mapping[str, float]:
    """Set PSI values as a point shows them: those in force at the end of its step (now, for the last)."""
    return snap.pressure_set(key, min(t + step, snap.now))


def node_rrd(snap: Snapshot, node: NodeRec, params: dict[str, str]) -> list[dict[str, Any]]:
    """`/nodes/{node}/rrddata`: the only place node PSI appears (and never `pressurecpufull`)."""
    step, points, peak = _frame(params, node_level=True)
    use = snap.usage[node.name]
    cpu, _ = node_fractions(snap, node)
    demand = cpu_demand(snap, node)
    maxcpu = node_maxcpu(node)
    total, used = node.mem_mib * MIB, use.mem_used_mib * MIB
    out = []
    for t in _times(snap, step, points):
        f = _wiggle(t, node.nodeid, peak)
        c, m = min(1.0, cpu * f), min(total, used * f)
        row = {"time": t, "loadavg": round(c * maxcpu, 2), "maxcpu": maxcpu, "cpu": round(c, 6),
               "iowait": 0.001, "memtotal": total, "memused": round(m), "memavailable": round(total - m),
               "swaptotal": 8192 * MIB, "swapused": 0, "roottotal": node.disk_mib * MIB,
               "rootused": use.disk_used_mib * MIB, "netin": round(50_000 * f), "netout": round(40_000 * f),
               "arcsize": 0, **psi.node_default(demand * f, m / total if total else 0.0)}
        row.update(_set_at(snap, ("node", node.name), t, step))
        out.append(row)
    return out


def guest_rrd(snap: Snapshot, guest: GuestRec, params: dict[str, str]) -> list[dict[str, Any]]:
    step, points, peak = _frame(params, node_level=False)
    live = _guest_live(snap, guest)
    numbers = _guest_numbers(snap, guest)
    pressure = _guest_pressure_default(snap, guest)
    out = []
    for t in _times(snap, step, points):
        f = _wiggle(t, guest.vmid, peak)
        row: dict[str, Any] = {"time": t, "maxcpu": guest_cpus(guest), "cpu": round(min(1.0, numbers["cpu"] * f), 6),
                               "maxmem": numbers["maxmem"], "mem": round(min(numbers["maxmem"], numbers["mem"] * f)),
                               "maxdisk": numbers["maxdisk"], "disk": numbers["disk"]}
        if live:
            rate = guest.vmid % 7 + 1
            row.update(netin=round(12_000 * rate * f), netout=round(8_000 * rate * f),
                       diskread=round(30_000 * rate * f), diskwrite=round(20_000 * rate * f),
                       **{k: round(min(100.0, v * f), 2) for k, v in pressure.items()})
            row.update(_set_at(snap, ("guest", guest.vmid), t, step))
            if guest.kind == "qemu":
                row["memhost"] = row["mem"]
        out.append(row)
    return out
