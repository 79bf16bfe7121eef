"""Secrets never printed: canary passwords and token secrets, searched in stdout, stderr, log files, JSON
output and snapshots.

The simulator's "echo" fault plays a server (or a proxy in front of it) that repeats the request in its
error text: the Authorization header, the ticket cookie, the CSRF token, a login's password. Three
misplaced secrets (in pass_env, in pass_file, in a host as user:secret@host) are never quoted back.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
import yaml

from proxlb_opt import logs
from proxlb_opt.cluster import cluster_from_dict
from proxlb_opt.config import Secret, load_settings
from proxlb_opt.errors import ConfigError, scrub, scrub_data
from proxlb_opt.limits import dumps
from proxlb_opt.simulator import Faults, RequestFault, SimulatorServer
from tests.fuzz_helpers import run_main
from tests.test_fuzz_inputs import MODEL

PASSWORD = "CANARY-s3cr3t-pw-8d2e41"
TOKEN = "CANARY-s3cr3t-tk-5b7c90"
# A ticket as it travels (PVE:user@realm:HEXTIME::signature), URL-encoded in the cookie.
TICKET_SIGNATURE = re.compile(r"PVE(:|%3A)root(@|%40)pam(:|%3A)[0-9A-F]{8}(::|%3A%3A)[A-Za-z0-9+/%]{8,}")
CSRF = re.compile(r"CSRFPreventionToken: [0-9A-F]{8}:[A-Za-z0-9+/]{8,}")


@pytest.fixture
def sim():
    with SimulatorServer(cluster_from_dict(MODEL), password=PASSWORD, token=TOKEN, time_scale=400) as server:
        yield server


def _config(tmp_path, sim, token: bool = False, **api) -> str:
    section = {"hosts": [sim.address], "user": sim.user, "ssl_verification": sim.ca_file, "timeout": 5,
               "retries": 1, "wait_time": 0}
    if token:
        section.update(token_id=sim.token_name, token_secret=TOKEN)
    else:
        section["pass"] = PASSWORD
    section.update(api)
    path = tmp_path / "proxlb.yaml"
    path.write_text(yaml.safe_dump({"proxmox_api": section, "balancing": {"enable": True},
                                    "optimizer": {"workers": 1, "time_limit": 3}}))
    return str(path)


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and TOKEN not in text, text[-1500:]
        assert not TICKET_SIGNATURE.search(text), text[-1500:]
        assert not CSRF.search(text), text[-1500:]
        assert "Traceback" not in text


@pytest.mark.parametrize("token", [False, True], ids=["password", "token"])
@pytest.mark.parametrize("path", ["/cluster/resources", "/cluster/ha/rules", "*"])
def test_a_server_echoing_the_request_does_not_make_us_print_secrets(sim, tmp_path, token, path):
    sim.faults = Faults(requests=(RequestFault(path, action="echo", status=500),))
    config = _config(tmp_path, sim, token)
    texts = []
    for args in (["plan", "--config", config, "--json", "--verbose"], ["plan", "--config", config, "--verbose"],
                 ["snapshot", "--config", config, "-o", str(tmp_path / "snap.yaml"), "--verbose"],
                 ["service", "--config", config, "--once", "--dry-run", "--json", "--verbose"]):
        code, out, err = run_main(args)
        assert code != 70, err
        texts += [out, err]
    if (tmp_path / "snap.yaml").exists():
        texts.append((tmp_path / "snap.yaml").read_text())
    if path == "/cluster/resources":  # a required answer failed: the error line says so, without the secrets
        assert any("proxy error" in t for t in texts)
    _no_secret(*texts)


def test_an_echoed_login_does_not_print_the_password(sim, tmp_path):
    sim.faults = Faults(requests=(RequestFault("/access/ticket", action="echo", status=500),))
    code, out, err = run_main(["plan", "--config", _config(tmp_path, sim), "--json", "--verbose"])
    assert code not in (0, 70)
    _no_secret(out, err)


def test_a_log_file_never_holds_a_secret(tmp_path):
    secret = Secret("CANARY-s3cr3t-log-1a2b3c")
    path = tmp_path / "proxlb-opt.log"
    with path.open("w") as stream:
        log = logs.setup(logging.DEBUG, stream)
        log.info("connecting with %s", secret.reveal())
        log.warning("server said: Authorization: PVEAPIToken=root@pam!x=%s", "0c1d2e3f-aaaa-bbbb")
        try:
            raise RuntimeError(f"boom {secret.reveal()}")
        except RuntimeError:
            log.exception("failed")
    log.handlers[:] = []
    text = path.read_text()
    assert "CANARY" not in text and "0c1d2e3f" not in text and "***" in text


def test_json_output_is_scrubbed_and_strict():
    Secret("CANARY-s3cr3t-json-9f8e7d")
    data = {"message": "CANARY-s3cr3t-json-9f8e7d in text", "spread": float("nan"), "x": [float("inf")],
            "CANARY-s3cr3t-json-9f8e7d": 1}
    text = dumps(scrub_data(data))
    assert "CANARY" not in text and "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["spread"] is None


def test_secret_values_hide_themselves():
    secret = Secret("CANARY-s3cr3t-repr-000111")
    assert "CANARY" not in f"{secret} {secret!r} {str(secret)} {[secret]} {secret:>30}"
    assert secret.reveal() == "CANARY-s3cr3t-repr-000111"
    assert scrub("x CANARY-s3cr3t-repr-000111 y") == "x *** y"


# ----------------------------------------------------------------------------- misplaced secrets

MISPLACED = "CANARY-s3cr3t-misplaced-42"


@pytest.mark.parametrize("api", [
    {"pass_env": MISPLACED},
    {"pass_env": "PROXLB_SECRET"},  # a variable name, quoted; unset
    {"pass_file": MISPLACED},
    {"pass_file": "/nonexistent/" + MISPLACED},
    {"token_id": "proxlb", "token_secret_env": MISPLACED},
    {"token_id": "proxlb", "token_secret_file": MISPLACED},
    {"pass": "x" * 8, "hosts": [f"root:{MISPLACED}@pve1.example.com"]},
    {"pass": "x" * 8, "hosts": [f"https://root:{MISPLACED}@pve1.example.com:8006"]},
], ids=["pass_env", "pass_env-name", "pass_file", "pass_file-path", "token_env", "token_file", "host", "host-url"])
def test_misplaced_secrets_are_never_quoted(tmp_path, api):
    section = {"hosts": ["pve1.example.com"], "user": "root@pam", **api}
    path = tmp_path / "proxlb.yaml"
    path.write_text(yaml.safe_dump({"proxmox_api": section}))
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert MISPLACED not in str(err.value)
    if api.get("pass_env") == "PROXLB_SECRET":
        assert "PROXLB_SECRET" in str(err.value)  # a name that looks like one is said, to help
    code, out, err_text = run_main(["plan", "--config", path, "--json"])
    assert code == 2 and MISPLACED not in out + err_text and "Traceback" not in err_text


@pytest.mark.parametrize("value, verify", [(True, True), ("on", True), ("yes", True), ("true", True), (1, True),
                                           (False, False), ("off", False), ("no", False), ("false", False),
                                           ("OFF", False), (0, False)])
def test_ssl_verification_words(tmp_path, value, verify):
    path = tmp_path / "proxlb.yaml"
    path.write_text(yaml.safe_dump({"proxmox_api": {"hosts": ["h"], "user": "root@pam", "pass": "secret1",
                                                    "ssl_verification": value}}))
    assert load_settings(path).api.ssl_verification is verify


@pytest.mark.parametrize("value", ["maybe", "enabled", 2, [True], {"a": 1}, "nope.pem"])
def test_ssl_verification_rejects_others_in_one_line(tmp_path, value):
    path = tmp_path / "proxlb.yaml"
    path.write_text(yaml.safe_dump({"proxmox_api": {"hosts": ["h"], "user": "root@pam", "pass": "secret1",
                                                    "ssl_verification": value}}))
    with pytest.raises(ConfigError, match="ssl_verification") as err:
        load_settings(path)
    assert "\n" not in str(err.value)


def test_tls_verification_off_warns_once(tmp_path, sim):
    from proxlb_opt.adapters import proxmox

    proxmox._TLS_WARNED.clear()
    config = _config(tmp_path, sim, ssl_verification=False)
    code, out, err = run_main(["plan", "--config", config, "--json"])
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "verification is off" in line]
    assert len(warnings) == 1 and warnings[0].startswith(("warning:", "<4>warning:"))
    assert "InsecureRequestWarning" not in err and "Unverified HTTPS" not in err


# ----------------------------------------------------------------------------- names are text, not markup

MARKUP_MODEL = {
    "version": 1, "cluster": "[bold]c[/]",
    "nodes": [{"name": "[red]n1[/red]", "cpus": 8, "memory": "32G"}, {"name": "n2[/]", "cpus": 8, "memory": "32G"},
              {"name": "[link=http://x]n3", "cpus": 8, "memory": "32G"}],
    "guests": [{"vmid": 100 + i, "name": f"[/]g{i}[b]", "node": "[red]n1[/red]", "memory": "4G",
                "tags": ["plb_anti_affinity_[x]"], "pool": "[/pool]"} for i in range(6)],
}


@pytest.mark.parametrize("args", [
    ["plan", "--workers", "1", "--time-limit", "3"],
    ["plan", "--workers", "1", "--time-limit", "3", "--verbose", "--explain", "100"],
    ["plan", "--workers", "1", "--time-limit", "3", "--pareto"],
    ["plan", "--workers", "1", "--time-limit", "3", "--maintenance", "[red]n1[/red]"],
    ["best-node", "--cpus", "2", "--memory", "4G", "--tags", "[/x]"],
    ["what-if", "--n-plus", "1", "--time-limit", "3"],
    ["what-if", "--room", "4c16G", "--time-limit", "3"],
    ["what-if", "--remove", "n2[/]", "--time-limit", "3"],
    ["what-if", "--drain", "[red]n1[/red]", "--time-limit", "3"],
    ["what-if", "--rolling", "--time-limit", "3"],
    ["what-if", "--add-node", "[i]n4:8:32G", "--time-limit", "3"],
])
def test_names_with_rich_markup_are_printed_as_written(tmp_path, args):
    path = tmp_path / "markup.yaml"
    path.write_text(yaml.safe_dump(MARKUP_MODEL))
    code, out, err = run_main([args[0], "--model", path, *args[1:]])
    assert code not in (1, 2, 70), err
    assert "Traceback" not in out + err and "MarkupError" not in err
    if "--pareto" not in args:  # the curve names no guest or node
        assert "[/]g" in out or "[red]n1[/red]" in out or "n2[/]" in out
