"""Parsing of sizes and CPU amounts into the integer units used everywhere in the core.

Memory and disk become MiB (int), CPU becomes milli-cores (int). Scaling happens once, when a
Cluster is built, because CP-SAT works on integers only.
"""

from __future__ import annotations

import math
import re

from proxlb_opt.limits import MAX_CORES, MAX_SIZE_MIB

MIB = 1024 * 1024

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_FACTOR = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_size_mib(value: object, field: str) -> int:
    """A size as MiB: an integer or float is bytes; a string takes binary units (512M, 8G, 1.5T, 8GiB).

    Raises ValueError with a message naming `field` for anything else, including negatives.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{field}: expected a size such as 8G or a number of bytes, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            size_bytes = float(value)
        except OverflowError:  # an integer beyond any float
            size_bytes = math.inf
    elif isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"{field}: cannot read size {value!r} (use bytes or 512M, 8G, 1.5T, 8GiB)")
        number, unit, _suffix = match.groups()
        size_bytes = float(number) * _FACTOR[unit.lower()]
    else:
        raise ValueError(f"{field}: expected a size such as 8G, got {type(value).__name__}")
    if not math.isfinite(size_bytes) or size_bytes < 0:
        raise ValueError(f"{field}: size must be a non-negative number, got {_cut(value)}")
    if size_bytes / MIB > MAX_SIZE_MIB:
        raise ValueError(f"{field}: size must be at most {MAX_SIZE_MIB // 1024**2} PiB, got {_cut(value)}")
    return int(round(size_bytes / MIB))


def parse_cores_milli(value: object, field: str) -> int:
    """CPU cores (float allowed) as milli-cores."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{field}: expected a number of cores, got {value!r}")
    try:
        cores = float(value)
    except ValueError:
        raise ValueError(f"{field}: expected a number of cores, got {_cut(value)}") from None
    except OverflowError:  # an integer beyond any float
        cores = math.inf
    if math.isnan(cores) or cores < 0:
        raise ValueError(f"{field}: must be a non-negative number of cores, got {_cut(value)}")
    if cores > MAX_CORES:
        raise ValueError(f"{field}: must be at most {MAX_CORES} cores, got {_cut(value)}")
    return int(round(cores * 1000))


def _cut(value: object) -> str:
    """A bad value as a message quotes it: its repr, cut short (it may be huge)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"a {value.bit_length()}-bit integer"
    return text if len(text) <= 60 else text[:57] + "..."


def format_mib(mib: int | float) -> str:
    """Human-readable binary size from MiB."""
    value = float(mib)
    for unit in ("MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "MiB" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def format_duration(seconds: float) -> str:
    """Seconds as people read them: 45 s, 4 min 32 s, 1 h 05 min."""
    total = int(round(float(seconds)))
    if total < 120:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"
