"""Suite-wide fixtures: no test writes the service's state to /var/lib (systemd's STATE_DIRECTORY is honoured)
or takes the host's run lock in /run/proxlb-opt (RUNTIME_DIRECTORY: each test has a lock of its own)."""

import pytest


@pytest.fixture(autouse=True)
def _state_directory(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path_factory.mktemp("state")))
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path_factory.mktemp("run")))
