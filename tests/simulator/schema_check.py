"""A small checker of API answers against the PVE schema extract (tests/fixtures/pve-apidata-subset.json).

Checks what the schema declares: types (booleans must be JSON 0/1 integers, as PVE sends them),
enums, required (non-optional) properties, array items, nested objects, and `name[n]` pattern
properties. Undeclared extra fields are allowed: real PVE returns more than many entries declare.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "pve-apidata-subset.json"


@lru_cache(maxsize=1)
def schema_paths() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))["paths"]


def returns_of(path: str, method: str = "GET") -> dict[str, Any]:
    return schema_paths()[path][method]["returns"]


def _type_ok(expected: str, value: Any) -> bool:
    checks = {
        "null": lambda v: v is None,
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        # PVE's JSON has no true/false for schema booleans: they are the integers 0 and 1.
        "boolean": lambda v: isinstance(v, int) and not isinstance(v, bool) and v in (0, 1),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    return checks[expected](value)


def _pattern(name: str) -> re.Pattern | None:
    if name.endswith("[n]"):
        return re.compile(re.escape(name[:-3]) + r"\d+$")
    return None


def violations(schema: dict[str, Any], value: Any, where: str = "$", *, keyed_by_name: Iterable[str] = (),
               string_numbers: Iterable[str] = ()) -> list[str]:
    """Every way `value` breaks `schema`; empty when it conforms.

    keyed_by_name: property names whose value is a map of name → the declared object (PVE's
    `not_allowed_nodes`, declared flat). string_numbers: number properties sent as strings (LXC PSI).
    """
    opts = {"keyed_by_name": tuple(keyed_by_name), "string_numbers": tuple(string_numbers)}
    return list(_check(schema, value, where, opts))


def _check(schema: dict[str, Any], value: Any, where: str, opts: dict) -> Iterable[str]:
    expected = schema.get("type")
    name = where.rsplit(".", 1)[-1]
    if expected == "number" and name in opts["string_numbers"] and isinstance(value, str):
        try:
            float(value)
        except ValueError:
            yield f"{where}: {value!r} is not a numeric string"
        return
    if isinstance(expected, str) and not _type_ok(expected, value):
        yield f"{where}: expected {expected}, got {type(value).__name__} {value!r:.60}"
        return
    if "enum" in schema and isinstance(value, str) and value not in schema["enum"]:
        yield f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from _check(schema["items"], item, f"{where}[{i}]", opts)
    if isinstance(value, dict) and "properties" in schema:
        if name in opts["keyed_by_name"]:
            for key, item in value.items():
                yield from _check({"type": "object", "properties": schema["properties"]}, item, f"{where}.{key}", opts)
            return
        yield from _check_object(schema["properties"], value, where, opts)


def _check_object(properties: dict[str, Any], value: dict[str, Any], where: str, opts: dict) -> Iterable[str]:
    for prop, sub in properties.items():
        pattern = _pattern(prop)
        if pattern is not None:
            for key in (k for k in value if pattern.match(k)):
                yield from _check(sub, value[key], f"{where}.{key}", opts)
            continue
        if prop not in value:
            if not sub.get("optional"):
                yield f"{where}: required property {prop!r} is missing"
            continue
        yield from _check(sub, value[prop], f"{where}.{prop}", opts)
