"""examples/proxlb.yaml: loads, shows every key, and its commented defaults are proxlb-opt's defaults."""

from __future__ import annotations

import dataclasses
import re

import yaml

from proxlb_opt import config
from proxlb_opt.config import Settings, load_settings
from tests.packaging.conftest import REPO

EXAMPLE = REPO / "examples" / "proxlb.yaml"
ENV = {"PROXLB_TOKEN_SECRET": "not-a-real-secret"}

# Keys of ProxLB 2.3.0 that proxlb-opt accepts as a whole section or value without reading inside.
PROXLB_SOLVER_KEYS = {"enable", "mode", "log_dir", "timeout_seconds", "use_reservations", "active_step_retries",
                      "fallback_to_greedy"}
PROXLB_NESTED = {
    ("proxmox_cluster", "maintenance_nodes_schedule"): {"duration", "pre-migration", "schedules"},
    ("service", "schedule"): {"interval", "format"},
    ("service", "delay"): {"enable", "time", "format"},
    ("balancing", "psi"): {"nodes", "guests"},
}
# Where the example deliberately differs from the default (the comment next to the key says why).
NOT_DEFAULT = {"enable", "daemon", "api", "source"}


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


def test_example_with_everything_uncommented_still_loads(tmp_path):
    full = tmp_path / "proxlb.yaml"
    full.write_text(uncommented(EXAMPLE.read_text(encoding="utf-8")), encoding="utf-8")
    settings = load_settings(full, env=ENV)
    assert settings.pools and settings.node_resource_reserve  # the commented examples are valid rules


def test_example_shows_every_key():
    data = yaml.safe_load(uncommented(EXAMPLE.read_text(encoding="utf-8")))
    tables = {"proxmox_api": config.API_KEYS, "proxmox_cluster": config.CLUSTER_KEYS,
              "balancing": config.BALANCING_KEYS, "service": config.SERVICE_KEYS,
              "optimizer": config.OPTIMIZER_KEYS}
    assert set(data) == set(config.SECTIONS)
    for section, keys in tables.items():
        missing = set(keys) - set(data[section])
        assert not missing, f"examples/proxlb.yaml lacks {section}: {sorted(missing)}"
    assert set(data["solver"]) == PROXLB_SOLVER_KEYS
    for (section, key), subkeys in PROXLB_NESTED.items():
        assert set(data[section][key]) == subkeys, f"{section}.{key}"


def test_every_active_key_has_a_comment():
    """Each key line has a comment block right above it (what it does, its default)."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^  [a-z_]+:", line) and not lines[number - 1].lstrip().startswith("#"):
            # keys sharing one comment block are listed right below each other
            assert re.match(r"^  [a-z_]+:", lines[number - 1]), f"line {number + 1}: {line.strip()} has no comment"
