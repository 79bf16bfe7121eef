"""Suite-wide fixtures: no test writes the service's state to /var/lib (systemd's STATE_DIRECTORY is honoured)."""

import pytest


@pytest.fixture(autouse=True)
def _state_directory(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path_factory.mktemp("state")))
