"""Input limits: the ranges, sizes and nesting every value read from outside must keep, and strict JSON.

Values enter from model files, config files, plan files, the command line, Terraform's query on stdin
and the Proxmox API. Each reader checks them where they enter, with the limits defined here, so that
nothing downstream meets an integer beyond 64 bits (NumPy and CP-SAT would overflow), a float that is
infinite or not a number, a structure nested deeper than any real file, or a string that cannot be
written as UTF-8. A value outside these limits is an input error naming the field, never a crash.

The ranges are far beyond real clusters and small enough that sums over many guests, scaled to the
solver's hundredths of a percentage point, stay well inside 64-bit integers.

JSON written by proxlb-opt is strict (RFC 8259): `dumps` never writes NaN or Infinity; a non-finite
float that got through anyway becomes null.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

#: Nesting of mappings and lists in any file we read; real files stay below 8.
MAX_DEPTH = 64
#: Values (scalars, mappings, lists) in one file after YAML aliases are expanded: ten times the largest
#: benchmark model. Guards readers that turn a value into text (a "billion laughs" alias bomb).
MAX_VALUES = 10_000_000
#: PVE's own vmid range ends here (qm: 100 to 999999999).
MAX_VMID = 999_999_999
#: One size (memory, disk) in MiB: 2 PiB.
MAX_SIZE_MIB = 2**31
#: CPU cores of one node or guest (fractions allowed): about a million.
MAX_CORES = 2**20
#: CP-SAT's int32 parameters (random_seed) and any count that reaches the solver as a bound.
MAX_INT32 = 2**31 - 1
#: CP-SAT worker threads: more than any machine has cores.
MAX_WORKERS = 256
#: Seconds of any time limit, timeout, interval or wait: a week.
MAX_SECONDS = 7 * 24 * 3600.0
#: Waves and hops in a plan file, migrations in a budget: far above any real plan.
MAX_WAVE = 1_000_000
#: Guests a what-if may add at once (`--add 10x4c16G`): more than any one order of new machines.
MAX_NEW_GUESTS = 10_000


def is_decimal(text: str) -> bool:
    """ASCII digits only: `str.isdigit` also accepts "²" or "٣", which `int()` refuses."""
    return text.isascii() and text.isdigit()


def check_tree(data: Any, where: str, fail: Callable[[str], Exception]) -> Any:
    """`data` (parsed JSON/YAML) if it nests at most MAX_DEPTH deep, holds at most MAX_VALUES values once
    aliases are expanded and has no string that is not valid Unicode (lone surrogates from \\u escapes);
    otherwise raises `fail(message)`. Shared sub-trees (YAML aliases) are visited once."""
    sizes: dict[int, int] = {}  # id → expanded size of a finished container
    depth_seen: dict[int, int] = {}  # id → the shallowest depth at which it was expanded
    stack: list[tuple[Any, int, bool]] = [(data, 1, False)]
    keep: list[Any] = []  # ids stay valid while the objects live
    open_: set[int] = set()  # the containers being expanded: the ancestors of the current value
    while stack:
        value, depth, done = stack.pop()
        if isinstance(value, str):
            _check_text(value, where, fail)
            continue
        if not isinstance(value, (dict, list)):
            continue
        key = id(value)
        if done:
            children = value.values() if isinstance(value, dict) else value
            total = 1 + sum(sizes.get(id(c), 1) for c in children)
            if total > MAX_VALUES:
                raise fail(f"{where}: more than {MAX_VALUES:,} values (after expanding YAML aliases)")
            sizes[key] = total
            open_.discard(key)
            continue
        if key in open_:
            raise fail(f"{where}: a value contains itself (a recursive YAML alias)")
        if depth > MAX_DEPTH:
            raise fail(f"{where}: nested more than {MAX_DEPTH} levels deep")
        if key in depth_seen and depth_seen[key] <= depth:
            continue
        depth_seen[key] = depth
        keep.append(value)
        open_.add(key)
        stack.append((value, depth, True))
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str):
                    _check_text(k, where, fail)
                stack.append((v, depth + 1, False))
        else:
            stack.extend((v, depth + 1, False) for v in value)
    return data


def _check_text(text: str, where: str, fail: Callable[[str], Exception]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise fail(f"{where}: a text value is not valid Unicode (a lone surrogate such as \\ud800)") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _int64(text: str) -> int:
    value = int(text)
    if not -2**63 <= value < 2**63:
        raise ValueError(f"{text[:20]}{'…' if len(text) > 20 else ''} is outside the 64-bit integer range")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]}{'…' if len(text) > 20 else ''} is too large a number")
    return value


def loads_json(text: str, where: str, fail: Callable[[str], Exception]) -> Any:
    """Strict JSON: NaN and Infinity are refused, and so are integers outside 64 bits and numbers that
    overflow a float (1e400); nesting and size limited (`check_tree`). Syntax errors raise `fail` with
    json's own one-line reason."""
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_int=_int64, parse_float=_finite_float)
    except RecursionError:
        raise fail(f"{where}: nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise fail(f"{where}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # parse_constant
        raise fail(f"{where}: not valid JSON: {exc}") from None
    return check_tree(data, where, fail)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def strict(data: Any) -> Any:
    """`data` with every non-finite float replaced by None (JSON's null); containers copied, others as they are."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict(v) for v in data]
    return data


def dumps(data: Any, **kwargs: Any) -> str:
    """json.dumps that never writes NaN or Infinity (RFC 8259): such a float becomes null."""
    try:
        return json.dumps(data, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(strict(data), allow_nan=False, **kwargs)
