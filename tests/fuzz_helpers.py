"""Shared pieces of the input fuzz tests: an in-process CLI runner and strategies for hostile values.

The runner calls `proxlb_opt.cli.main` with stdin, stdout and stderr replaced, so that a fuzz example
costs milliseconds instead of an interpreter start. What it checks is what a user would see: the exit
code (never 70, our "internal error") and the text (never a Python traceback).
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from typing import Any

import yaml
from hypothesis import strategies as st

from proxlb_opt import cli

#: The secret every fuzz config and canary test carries; it must never be printed.
CANARY = "CANARY-s3cr3t-7f3a9c"

# Values that broke parsers elsewhere: numbers beyond int32/int64/float, non-finite floats, words
# that look like booleans or sizes, rich markup, digits that are not ASCII, control characters.
HOSTILE_SCALARS = [
    2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400, -1, 0, 1,
    1e308, -1e308, 1e-320, float("nan"), float("inf"), float("-inf"), 0.1,
    "", " ", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "1e309", "-0", "0x10", "1_000", "on", "off",
    "yes", "no", "true", "1", "8G", "1e300G", "99999999999P", "-8G", "4c16G", "10x4c16G", "²", "٣", "½",
    "[red]x[/red]", "[/]", "[bold", "[link=http://x]y[/link]", "\x00", "\x1b[31m", "a\nb", "é", "名前",
    "vm:100", "vm:²", "vm:99999999999999", "pve1:²", "pve1:1e9", "none", "auto", "unlimited",
]
SCALARS = st.one_of(
    st.sampled_from(HOSTILE_SCALARS), st.none(), st.booleans(), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(["name", "vmid", "node"])),
                                        inner, max_size=3), max_leaves=6)

# Raw texts no serializer writes: deep nesting, alias bombs, broken syntax, lone surrogates in JSON.
RAW_TEXTS = [
    "[" * 5000 + "]" * 5000, "{a: " * 3000 + "1" + "}" * 3000, "- " * 2000 + "x",
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n",
    "a: &a [*a]\n", '{"version": 1, "x": "\\ud800"}', '{"version": NaN}', '{"version": Infinity}', "\ufeff{}",
    "version: 1\nnodes: !!python/object:os.system {}\n", "%YAML 9.9\n---\n", "\t\x00", "key: 2001-13-45 99:99:99",
    "key: 2001-12-14t21:59:43.10-05:00", "! ! !", "?", "[1, 2", "{", "- ]", ": :", "'", '"\\xZZ"',
]


def paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into nested dicts and lists (the empty path is the whole value)."""
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths(v, prefix + (i,))
    return out


def replace_at(data: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        copy = dict(data)
        copy[head] = replace_at(data[head], rest, value)
        return copy
    copy = list(data)
    copy[head] = replace_at(data[head], rest, value)
    return copy


def delete_at(data: Any, path: tuple) -> Any:
    if len(path) == 1:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k != path[0]}
        return [v for i, v in enumerate(data) if i != path[0]]
    if not path:
        return data
    head = path[0]
    copy = dict(data) if isinstance(data, dict) else list(data)
    copy[head] = delete_at(data[head], path[1:])
    return copy


@st.composite
def mutated(draw, base: Any, max_changes: int = 2) -> Any:
    """`base` with up to `max_changes` values replaced by hostile ones, deleted, or keys added."""
    data = base
    for _ in range(draw(st.integers(1, max_changes))):
        options = paths(data)
        path = options[draw(st.integers(0, len(options) - 1))]
        action = draw(st.sampled_from(["replace"] * 6 + ["delete", "add"]))
        if action == "delete" and path:
            data = delete_at(data, path)
        elif action == "add":
            target = data
            for step in path:
                target = target[step]
            if isinstance(target, dict):
                data = replace_at(data, path, {**target, draw(st.text(max_size=10)): draw(VALUES)})
            elif isinstance(target, list):
                data = replace_at(data, path, [*target, draw(VALUES)])
        else:
            data = replace_at(data, path, draw(st.one_of(SCALARS, VALUES)))
    return data


def to_yaml(data: Any) -> str:
    try:
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    except Exception:  # noqa: BLE001 - keys PyYAML cannot write: JSON is YAML too
        return to_json(data)


def to_json(data: Any) -> str:
    try:
        return json.dumps(data)  # NaN and Infinity included: the readers must refuse them
    except (TypeError, ValueError):
        return json.dumps(str(data))


@st.composite
def documents(draw, base: Any, form: str = "yaml") -> str:
    """A text to read: mostly `base` mutated, sometimes a raw hostile text or random characters."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from(RAW_TEXTS))
    if kind == 1:
        return draw(st.text(max_size=200))
    data = draw(mutated(base))
    return to_json(data) if form == "json" else to_yaml(data)


def run_main(args: list[Any], stdin: str = "") -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `proxlb-opt ARGS`, in this process."""
    old = sys.stdin, sys.stdout, sys.stderr
    debug = os.environ.pop("PROXLB_OPT_DEBUG", None)
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), io.StringIO(), io.StringIO()
    out, err = sys.stdout, sys.stderr
    code = 0
    try:
        cli.main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdin, sys.stdout, sys.stderr = old
        logging.getLogger("proxlb_opt").handlers[:] = []
        if debug is not None:
            os.environ["PROXLB_OPT_DEBUG"] = debug
    return code, out.getvalue(), err.getvalue()


def assert_no_crash(code: int, out: str, err: str, context: Any = None) -> None:
    """Not an internal error, no traceback, and the canary secret nowhere."""
    shown = repr(context)[:300]
    assert code != 70, f"internal error for {shown}: {err[-2000:]}"
    assert "Traceback" not in out + err, f"traceback for {shown}: {(out + err)[-3000:]}"
    assert CANARY not in out + err, f"the canary secret was printed for {shown}"
