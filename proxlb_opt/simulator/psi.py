"""Pressure stall information (PSI) of the simulated cluster, as PVE 9 reports it.

Owns the PSI numbers: the defaults derived from load, and how values set by a test
(`SimState.set_pressure`) are looked up at a moment, so that rrddata shows when they changed.
PVE's values are the kernel's `avg10` stall percentages (0–100). Nodes have no
`pressurecpufull`, and node PSI exists only in `/nodes/{node}/rrddata`; guests report all six
live in their lists and status/current (FACTS 4.7). Formatting (numbers for QEMU, strings for
LXC) is views.py's.

Default formula (used for every field nothing was set for):

    knee(x) = clamp(200 * (x - 0.75), 0, 100)   # no stall below 75 % load, 50 at 100 %, 100 at 125 %

    node:   pressurecpusome    = knee(CPU demand / physical cores)   (demand may exceed the cores)
            pressurememorysome = knee(used memory / memory size)
            pressurememoryfull = pressurememorysome / 2
            pressureiosome = 0.1, pressureiofull = 0.05              (a quiet, non-zero baseline)
    guest:  pressurecpusome    = knee(its node's CPU demand / cores)  (vCPUs wait for host CPUs)
            pressurememorysome = knee(max(node used / size, guest used / assigned memory))
            pressurecpufull, pressurememoryfull = half of the "some" value
            pressureiosome = pressureiofull = 0
            a stopped guest, or one on an offline node, reports 0 everywhere.
"""

from __future__ import annotations

import bisect
from typing import Mapping

NODE_KEYS = ("pressurecpusome", "pressureiosome", "pressureiofull", "pressurememorysome", "pressurememoryfull")
GUEST_KEYS = ("pressurecpusome", "pressurecpufull", "pressureiosome", "pressureiofull", "pressurememorysome",
              "pressurememoryfull")

# One change of a target's set values: (simulated time, the values in force from then on).
History = tuple[tuple[float, Mapping[str, float]], ...]


def knee(load: float) -> float:
    """Stall percentage for a resource at `load` (a fraction of its capacity)."""
    return round(min(100.0, max(0.0, (load - 0.75) * 200.0)), 2)


def node_default(cpu_demand: float, mem_fraction: float) -> dict[str, float]:
    mem = knee(mem_fraction)
    return {"pressurecpusome": knee(cpu_demand), "pressureiosome": 0.1, "pressureiofull": 0.05,
            "pressurememorysome": mem, "pressurememoryfull": round(mem / 2, 2)}


def guest_default(live: bool, host_cpu_demand: float, host_mem: float, own_mem: float) -> dict[str, float]:
    if not live:
        return dict.fromkeys(GUEST_KEYS, 0.0)
    cpu, mem = knee(host_cpu_demand), knee(max(host_mem, own_mem))
    return {"pressurecpusome": cpu, "pressurecpufull": round(cpu / 2, 2), "pressureiosome": 0.0,
            "pressureiofull": 0.0, "pressurememorysome": mem, "pressurememoryfull": round(mem / 2, 2)}


def check_values(values: Mapping[str, float], node_level: bool) -> dict[str, float]:
    """Validated set values: known fields only (no `pressurecpufull` for nodes), 0–100."""
    allowed = NODE_KEYS if node_level else GUEST_KEYS
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown PSI field(s) {unknown} for a {'node' if node_level else 'guest'}; "
                         f"allowed: {allowed}")
    out = {k: float(v) for k, v in values.items()}
    if any(not 0.0 <= v <= 100.0 for v in out.values()):
        raise ValueError("PSI values are percentages between 0 and 100")
    return out


def at(history: History, t: float) -> Mapping[str, float]:
    """The values set at or before simulated time `t` (empty: none)."""
    times = [when for when, _ in history]
    i = bisect.bisect_right(times, t)
    return history[i - 1][1] if i else {}
