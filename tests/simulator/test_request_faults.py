"""Request faults through proxmoxer: HTTP errors on any endpoint, lost responses, emptied lists, header echo."""

from __future__ import annotations

import threading

import pytest
import requests
from proxmoxer import ResourceException

from proxlb_opt.simulator import Faults, RequestFault
from tests.simulator.helpers import client, token_client, wait_task


def _status(call) -> int | str:
    """The HTTP status a call ends with (200 for an answer), or "lost" when the connection died."""
    try:
        call()
        return 200
    except ResourceException as err:
        return err.status_code
    except requests.exceptions.ConnectionError:
        return "lost"


def test_error_on_a_template_for_the_first_n_requests(sim, api):
    sim.faults = Faults(requests=(RequestFault("/nodes/{node}/qemu", status=503, first=2),))
    with pytest.raises(ResourceException) as err:
        api.nodes("pve1").qemu.get()
    assert (err.value.status_code, err.value.content) == (503, "Service Unavailable")
    assert _status(lambda: api.nodes("pve2").qemu.get()) == 503  # any node: the template matches
    assert _status(lambda: api.nodes("pve1").qemu.get()) == 200
    assert _status(lambda: api.nodes("pve1").lxc.get()) == 200  # other endpoints never matched
    assert sim.request_count.faulted == 2


def test_every_kth_request_and_pve_texts(sim, api):
    sim.faults = Faults(requests=(RequestFault("/cluster/resources", status=595, every=3),))
    outcomes = [_status(lambda: api.cluster.resources.get()) for _ in range(7)]
    assert outcomes == [200, 200, 595, 200, 200, 595, 200]
    sim.faults = Faults(requests=(RequestFault("/version", status=500, message="got timeout"),))
    with pytest.raises(ResourceException) as err:
        api.version.get()
    assert (err.value.status_code, err.value.content) == (500, "got timeout")


def test_concrete_path_regex_and_method(sim, api):
    sim.faults = Faults(requests=(
        RequestFault("/nodes/pve2/status", status=500),
        RequestFault(r"/nodes/pve[13]/qemu/\d+/migrate", regex=True, method="POST", status=403),
    ))
    assert _status(lambda: api.nodes("pve2").status.get()) == 500
    assert _status(lambda: api.nodes("pve1").status.get()) == 200
    assert _status(lambda: api.nodes("pve1").qemu(100).migrate.get()) == 200  # GET is not POST
    with pytest.raises(ResourceException) as err:
        api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert (err.value.status_code, err.value.content) == (403, "Permission check failed")
    assert sim.state.tasks() == ()  # an error fault processes nothing


def test_errors_from_a_simulated_moment_on(frozen, frozen_api):
    start = frozen.now()
    frozen.faults = Faults(requests=(RequestFault("*", status=401, since=start + 60),))
    assert _status(lambda: frozen_api.nodes.get()) == 200
    frozen.advance(60)
    with pytest.raises(ResourceException) as err:
        frozen_api.nodes.get()
    assert (err.value.status_code, err.value.content) == (401, "permission denied - invalid PVE ticket")


def test_lost_response_after_the_migration_started(sim, api):
    sim.faults = Faults(requests=(RequestFault("/nodes/{node}/qemu/{vmid}/migrate", method="POST", action="lost",
                                               first=1),))
    with pytest.raises(requests.exceptions.ConnectionError):
        api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    [task] = sim.state.tasks()  # the action happened although the client saw a connection error
    assert task.type == "qmigrate" and task.vmid == 100
    assert wait_task(api, task.upid)["exitstatus"] == "OK"
    assert sim.state.placement()[100] == "pve2"
    count = sim.request_count
    assert count.dropped == 1 and count.faulted == 1


def test_late_error_after_the_migration_started(sim, api):
    sim.faults = Faults(requests=(RequestFault("/nodes/{node}/qemu/{vmid}/migrate", method="POST", action="late",
                                               status=504, first=1),))
    assert _status(lambda: api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)) == 504
    [task] = sim.state.tasks()  # a proxy's 504, yet PVE carried it out
    assert task.type == "qmigrate" and wait_task(api, task.upid)["exitstatus"] == "OK"
    assert sim.state.placement()[100] == "pve2"
    count = sim.request_count
    assert count.dropped == 0 and count.faulted == 1


def test_list_endpoints_answer_empty_once(sim, api):
    lists = ("/cluster/resources", "/cluster/ha/status/current", "/cluster/tasks", "/nodes/{node}/tasks")
    wait_task(api, api.nodes("pve2").qemu(102).migrate.post(target="pve1"))
    sim.faults = Faults(requests=tuple(RequestFault(p, action="empty", first=1) for p in lists))
    calls = (lambda: api.cluster.resources.get(), lambda: api.cluster.ha.status.current.get(),
             lambda: api.cluster.tasks.get(), lambda: api.nodes("pve2").tasks.get())
    assert [call() for call in calls] == [[], [], [], []]
    assert all(call() for call in calls)  # only once
    sim.faults = Faults(requests=(RequestFault("/version", action="empty"),))
    assert api.version.get()["release"] == "9.1"  # not a list: answered as usual


def test_header_echo_shows_the_secrets_a_client_must_not_print(sim):
    sim.faults = Faults(requests=(RequestFault("/cluster/status", action="echo", status=500),))
    ticket_api = client(sim)
    ticket = ticket_api._store["session"].auth.pve_auth_ticket
    with pytest.raises(ResourceException) as err:
        ticket_api.cluster.status.get()
    assert err.value.status_code == 500 and "Cookie: PVEAuthCookie=" in err.value.content
    assert ticket.split("::")[1] in requests.utils.unquote(err.value.content)
    with pytest.raises(ResourceException) as err:
        token_client(sim).cluster.status.get()
    assert f"Authorization: PVEAPIToken={sim.token_id}={sim.token_secret}" in err.value.content
    sim.faults = Faults(requests=(RequestFault("/nodes/{node}/qemu/{vmid}/migrate", action="echo"),))
    with pytest.raises(ResourceException) as err:
        ticket_api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    csrf = ticket_api._store["session"].auth.csrf_prevention_token
    assert f"CSRFPreventionToken: {csrf}" in err.value.content


def test_fault_counting_is_exact_under_concurrency(sim):
    sim.faults = Faults(requests=(RequestFault("/nodes", status=500, first=10),))
    results: list[int | str] = []
    lock = threading.Lock()

    def worker():
        api = client(sim)
        for _ in range(6):
            outcome = _status(lambda: api.nodes.get())
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=str) == [200] * 14 + [500] * 10


def test_request_fault_values_are_checked():
    with pytest.raises(ValueError):
        RequestFault(action="explode")
    with pytest.raises(ValueError):
        RequestFault("[unclosed", regex=True)
    fault = RequestFault("/nodes/{node}/tasks", method="get", first=2, every=2)
    assert fault.method == "GET" and [fault.fires(n) for n in (1, 2, 3, 4)] == [False, True, False, False]


def test_faults_flipped_while_requests_run(sim):
    """Replacing faults from another thread never breaks an answer: each request sees one set or the other."""
    flips = [Faults(), Faults(requests=(RequestFault("/nodes", status=503),)),
             Faults(requests=(RequestFault("/nodes", action="empty"),))]
    stop = threading.Event()
    outcomes: list[object] = []

    def flipper():
        i = 0
        while not stop.is_set():
            sim.faults = flips[i % len(flips)]
            i += 1

    def worker():
        api = client(sim)
        for _ in range(25):
            try:
                outcomes.append(len(api.nodes.get()))
            except ResourceException as err:
                outcomes.append(err.status_code)

    flip = threading.Thread(target=flipper)
    flip.start()
    workers = [threading.Thread(target=worker) for _ in range(3)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    flip.join()
    assert len(outcomes) == 75 and set(outcomes) <= {3, 0, 503}
