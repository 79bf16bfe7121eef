"""Login, API tokens, ticket renewal, CSRF enforcement and TLS verification, through real HTTPS."""

from __future__ import annotations

import pytest
import requests
from proxmoxer import AuthenticationError, ProxmoxAPI, ResourceException

from proxlb_opt.simulator import Faults
from proxlb_opt.simulator.auth import Authenticator
from proxlb_opt.simulator.state import PveError
from tests.simulator.helpers import client, token_client


def _login(sim, password: str, username: str | None = None) -> requests.Response:
    # verify= per call: this machine sets REQUESTS_CA_BUNDLE, which would override Session.verify.
    return requests.post(f"{sim.url}/access/ticket", data={"username": username or sim.user, "password": password},
                         verify=sim.ca_file, timeout=5)


def test_password_login_returns_ticket_and_csrf(sim):
    response = _login(sim, sim.password)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["username"] == "root@pam"
    assert data["ticket"].startswith("PVE:root@pam:")
    assert data["clustername"] == "simtest"
    assert ":" in data["CSRFPreventionToken"]
    api = client(sim)
    assert api.version.get()["release"] == "9.1"


def test_wrong_password_is_401_and_proxmoxer_refuses(sim):
    response = _login(sim, "not-the-password")
    assert response.status_code == 401
    assert response.reason == "authentication failure"
    with pytest.raises(AuthenticationError):
        ProxmoxAPI("127.0.0.1", port=sim.port, user=sim.user, password="nope", verify_ssl=sim.ca_file)


def test_realm_parameter_completes_the_user(sim):
    response = requests.post(f"{sim.url}/access/ticket", data={"username": "root", "realm": "pam",
                                                              "password": sim.password},
                             verify=sim.ca_file, timeout=5)
    assert response.json()["data"]["username"] == "root@pam"


def test_api_token_login_and_bad_secret(sim):
    api = token_client(sim)
    assert [n["node"] for n in api.nodes.get()] == ["pve1", "pve2", "pve3"]
    bad = token_client(sim, secret="00000000-0000-0000-0000-000000000000")
    with pytest.raises(ResourceException) as err:
        bad.nodes.get()
    assert err.value.status_code == 401
    assert err.value.content == "invalid token value!"


def test_ticket_renewal_with_the_ticket_as_password(sim):
    ticket = _login(sim, sim.password).json()["data"]["ticket"]
    renewed = _login(sim, ticket)
    assert renewed.status_code == 200
    assert renewed.json()["data"]["ticket"].startswith("PVE:root@pam:")
    tampered = ticket[:-2] + ("AA" if not ticket.endswith("AA") else "BB")
    assert _login(sim, tampered).status_code == 401
    assert _login(sim, ticket, username="other@pve").status_code == 401


def test_proxmoxer_renews_an_old_ticket(sim):
    api = client(sim)
    auth = api._store["session"].auth  # proxmoxer renews once its ticket is older than renew_age
    auth.birth_time -= auth.renew_age + 1
    assert api.cluster.status.get()[0]["name"] == "simtest"
    assert sim.request_count.by_path["POST /access/ticket"] == 2


def test_expired_ticket_is_rejected():
    now = [1_800_000_000.0]
    auth = Authenticator("root@pam", "pw", "proxlb", "secret", clock=lambda: now[0])
    ticket = auth.login({"username": "root@pam", "password": "pw"}, "c")["ticket"]
    assert auth.ticket_user(ticket) == "root@pam"
    now[0] += 7201
    assert auth.ticket_user(ticket) is None
    with pytest.raises(PveError) as err:
        auth.login({"username": "root@pam", "password": ticket}, "c")
    assert err.value.status == 401


def test_csrf_token_required_for_writes_with_a_ticket(sim):
    data = _login(sim, sim.password).json()["data"]
    cookies = {"PVEAuthCookie": data["ticket"]}
    url = f"{sim.url}/nodes/pve1/qemu/100/migrate"
    read = requests.get(f"{sim.url}/nodes", cookies=cookies, verify=sim.ca_file, timeout=5)
    assert read.status_code == 200  # reads need no CSRF token
    write = requests.post(url, data={"target": "pve2", "online": 1}, cookies=cookies, verify=sim.ca_file, timeout=5)
    assert write.status_code == 401
    assert write.reason == "Permission denied - invalid csrf token"
    assert sim.state.lock_of(100) is None
    forged = requests.post(url, data={"target": "pve2", "online": 1}, cookies=cookies, verify=sim.ca_file,
                           headers={"CSRFPreventionToken": "6A000000:forged"}, timeout=5)
    assert forged.status_code == 401
    ok = requests.post(url, data={"target": "pve2", "online": 1}, cookies=cookies, verify=sim.ca_file,
                       headers={"CSRFPreventionToken": data["CSRFPreventionToken"]}, timeout=5)
    assert ok.status_code == 200
    assert ok.json()["data"].startswith("UPID:pve1:")


def test_tokens_need_no_csrf(sim):
    headers = {"Authorization": f"PVEAPIToken={sim.token_id}={sim.token_secret}"}
    response = requests.post(f"{sim.url}/nodes/pve1/qemu/100/migrate", data={"target": "pve2", "online": 1},
                             headers=headers, verify=sim.ca_file, timeout=5)
    assert response.status_code == 200
    assert response.json()["data"].endswith(":qmigrate:100:root@pam!proxlb:")


def test_no_credentials_is_401(sim):
    response = requests.get(f"{sim.url}/nodes", verify=sim.ca_file, timeout=5)
    assert response.status_code == 401
    assert response.reason == "No ticket"
    assert response.json() == {"data": None, "message": "No ticket\n"}


def test_tls_is_verified_against_the_simulator_ca(sim):
    with pytest.raises(requests.exceptions.SSLError):
        ProxmoxAPI("127.0.0.1", port=sim.port, user=sim.user, password=sim.password, verify_ssl=True, timeout=5)
    by_name = ProxmoxAPI("localhost", port=sim.port, user=sim.user, password=sim.password, verify_ssl=sim.ca_file)
    assert by_name.version.get()["repoid"]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_ssl_verification_false_still_works(sim):
    # proxlb.yaml offers `ssl_verification: false`; it must reach the same API.
    unverified = ProxmoxAPI("127.0.0.1", port=sim.port, user=sim.user, password=sim.password, verify_ssl=False)
    assert unverified.version.get()["version"].startswith("9.")


# ---------------------------------------------------------------------- ticket faults (simulated clock)

def _denied(call) -> ResourceException:
    with pytest.raises(ResourceException) as err:
        call()
    assert (err.value.status_code, err.value.content) == (401, "permission denied - invalid PVE ticket")
    return err.value


def test_tickets_expire_after_a_lifetime_in_simulated_seconds(frozen):
    frozen.faults = Faults(ticket_lifetime_s=600)
    api = client(frozen)
    frozen.advance(599)
    assert api.nodes.get()
    frozen.advance(2)
    _denied(lambda: api.nodes.get())
    ticket = api._store["session"].auth.pve_auth_ticket
    assert _login(frozen, ticket).status_code == 401  # an expired ticket cannot be renewed either
    fresh = client(frozen)  # a new password login works
    assert fresh.nodes.get()
    frozen.faults = Faults()  # without the fault, the real two-hour lifetime applies again
    assert api.nodes.get()


def test_token_auth_ignores_ticket_faults(frozen):
    frozen.faults = Faults(ticket_lifetime_s=1)
    frozen.advance(3600)
    assert token_client(frozen).nodes.get()


def test_all_tickets_revoked_at_a_moment(frozen):
    before = client(frozen)
    frozen.faults = Faults(tickets_revoked_at=frozen.now() + 30)
    frozen.advance(10)
    during = client(frozen)  # issued before the moment: revoked too
    assert before.nodes.get() and during.nodes.get()
    frozen.advance(20)
    _denied(lambda: before.nodes.get())
    _denied(lambda: during.nodes.get())
    assert client(frozen).nodes.get()  # logins after the moment are fine


def test_invalidate_tickets_now(sim):
    api = client(sim)
    assert api.nodes.get()
    sim.invalidate_tickets()
    _denied(lambda: api.nodes.get())
    _denied(lambda: api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1))
    assert sim.state.tasks() == ()
    assert client(sim).nodes.get()
