"""examples/proxlb.yaml: loads, shows every key of the key table, and its active values are the defaults."""

from __future__ import annotations

import dataclasses
import re

import yaml

from proxlb_opt import config, keys
from proxlb_opt.config import Settings, load_settings
from tests.packaging.conftest import REPO

EXAMPLE = REPO / "examples" / "proxlb.yaml"
ENV = {"PROXLB_TOKEN_SECRET": "not-a-real-secret"}

# The example's active values are Settings() defaults, but for what a file always has: an API section and
# its own path. (enable: false and daemon: true are the defaults now, as in ProxLB.)
NOT_DEFAULT = {"api", "source"}


def uncommented(text: str) -> str:
    """The example with every commented-out key switched on.

    Prose comments are '# ' followed by text; commented-out YAML is '#' directly followed by the key, or by
    two or more spaces (nested lines).
    """
    lines = []
    for line in text.splitlines():
        match = re.match(r"^(\s*)#(?! \S|$)(.*)$", line)
        lines.append(match.group(1) + match.group(2) if match else line)
    return "\n".join(lines) + "\n"


def test_example_loads():
    settings = load_settings(EXAMPLE, env=ENV)
    assert settings.api is not None and settings.api.token_secret.reveal() == ENV["PROXLB_TOKEN_SECRET"]
    assert settings.daemon is True  # the systemd unit needs the loop


def test_example_values_are_the_defaults_it_states():
    loaded, defaults = load_settings(EXAMPLE, env=ENV), Settings()
    for field in dataclasses.fields(Settings):
        if field.name not in NOT_DEFAULT:
            assert getattr(loaded, field.name) == getattr(defaults, field.name), field.name
    assert loaded.api.timeout == 10 and loaded.api.retries == 1 and loaded.api.wait_time == 1
    assert loaded.api.ssl_verification is True
    assert loaded.warnings == ()  # balance_types is explicit, nothing ignored is active


def _without_password(text: str) -> dict:
    """The uncommented example minus the password lines: the example shows both ways to log in, and a
    password with a token secret is an error."""
    data = yaml.safe_load(uncommented(text))
    for key in ("pass", "pass_env", "pass_file"):
        data["proxmox_api"].pop(key)
    return data


def test_example_with_everything_uncommented_still_loads(tmp_path):
    full = tmp_path / "proxlb.yaml"
    full.write_text(yaml.safe_dump(_without_password(EXAMPLE.read_text(encoding="utf-8"))), encoding="utf-8")
    settings = load_settings(full, env=ENV)
    assert settings.pools and settings.node_resource_reserve  # the commented examples are valid rules
    assert settings.maintenance_schedule is not None and settings.psi_nodes and settings.thresholds
    assert any(w.startswith("solver:") for w in settings.warnings)  # the ignored add-on says so


def _paths(data: dict, section: str, prefix: str = "") -> set[str]:
    """Dotted key paths of a section as the key table names them (pool names become <pool>)."""
    out = set()
    for key, value in data.items():
        name = "<pool>" if prefix == "pools." else key
        path = f"{prefix}{name}"
        nested = {"maintenance_nodes_schedule", "schedule", "delay", "pools", "psi"}
        if (prefix == "" and key in nested) or prefix == "pools.":
            out |= _paths(value, section, path + ".") if isinstance(value, dict) else {path}
        else:
            out.add(path)
    return out


def test_example_shows_every_key_of_the_table():
    data = yaml.safe_load(uncommented(EXAMPLE.read_text(encoding="utf-8")))
    assert set(data) == set(config.SECTIONS)
    shown = {f"{section}.{path}" for section in data for path in _paths(data[section], section)}
    table = {k.path for k in keys.KEYS}
    assert table - shown == set(), "examples/proxlb.yaml lacks keys of proxlb_opt/keys.py"
    assert shown - table == set(), "examples/proxlb.yaml shows keys that proxlb_opt/keys.py does not list"


def test_every_active_key_has_a_comment():
    """Each key line has a comment block right above it (what it does, its default)."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^  [a-z_]+:", line) and not lines[number - 1].lstrip().startswith("#"):
            # keys sharing one comment block are listed right below each other
            assert re.match(r"^  [a-z_]+:", lines[number - 1]), f"line {number + 1}: {line.strip()} has no comment"
