"""`run_simulator`: the foreground server prints a usable banner and stops on Ctrl-C."""

from __future__ import annotations

import io
import re

import yaml
from proxmoxer import ProxmoxAPI

from proxlb_opt.cluster import save_model
from proxlb_opt.simulator import server as server_module
from proxlb_opt.simulator import run_simulator
from tests.simulator.helpers import small_cluster


def test_run_simulator_prints_banner_serves_and_stops_on_ctrl_c(tmp_path, monkeypatch):
    model = tmp_path / "model.yaml"
    save_model(small_cluster(), model)
    out = io.StringIO()
    seen: dict = {}

    def fake_sleep(_seconds):
        # While "waiting for Ctrl-C": use the printed snippet to log in, then press Ctrl-C.
        snippet = yaml.safe_load(out.getvalue().split("proxlb.yaml:\n", 1)[1].split("\nServing", 1)[0])
        api_conf = snippet["proxmox_api"]
        host, port = api_conf["hosts"][0].rsplit(":", 1)
        api = ProxmoxAPI(host, port=int(port), user=api_conf["user"], password=api_conf["pass"],
                         verify_ssl=api_conf["ssl_verification"], timeout=5)
        seen["nodes"] = [n["node"] for n in api.nodes.get()]
        raise KeyboardInterrupt

    monkeypatch.setattr(server_module.time, "sleep", fake_sleep)
    run_simulator(str(model), host="127.0.0.1", port=0, time_scale=10.0, ca_dir=str(tmp_path / "pki"), stream=out)
    text = out.getvalue()
    assert seen["nodes"] == ["pve1", "pve2", "pve3"]
    assert re.search(r"URL:\s+https://127\.0\.0\.1:\d+/api2/json", text)
    assert str(tmp_path / "pki" / "pve-simulator-ca.pem") in text
    assert "root@pam!proxlb=" in text and "# token_id: \"proxlb\"" in text
    assert "time scale: 10 simulated seconds per real second" in text
