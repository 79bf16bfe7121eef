"""The simulator's HTTPS server, its Python API for tests, and the foreground `run_simulator`.

Owns the transport: TLS with a throwaway CA (trustme), HTTP/1.1 keep-alive, PVE's error envelope
(the message in the reason phrase AND in the body, which proxmoxer relies on), request counting
per path template, and how faults reach the wire: delays, dropped connections, and the request
faults (an HTTP error instead of an answer, a lost answer after the work was done, an emptied
list, an error echoing the request headers, a success answer of the wrong shape). Everything the API answers comes from api.py over
the state in state.py; which request a fault hits is decided there (faults.py, SimState).
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, TextIO

import trustme

from proxlb_opt.cluster import Cluster, load_model
from proxlb_opt.simulator import api
from proxlb_opt.simulator.auth import Authenticator
from proxlb_opt.simulator.faults import RequestFault, echo_message
from proxlb_opt.simulator.state import AUTO, Faults, PveError, SimState

API_PREFIX = "/api2/json"
CA_FILENAME = "pve-simulator-ca.pem"


@dataclass(frozen=True)
class RequestCount:
    """Requests received: in total, per "METHOD /path/{template}", how many got no answer (dropped
    connections and lost responses), and how many a request fault changed."""

    total: int
    by_path: Mapping[str, int]
    dropped: int
    faulted: int = 0


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total, self._dropped, self._faulted, self._by_path = 0, 0, 0, {}

    def add(self, key: str, dropped: bool, faulted: bool = False) -> None:
        with self._lock:
            self._total += 1
            self._dropped += int(dropped)
            self._faulted += int(faulted)
            self._by_path[key] = self._by_path.get(key, 0) + 1

    def snapshot(self) -> RequestCount:
        with self._lock:
            return RequestCount(self._total, MappingProxyType(dict(self._by_path)), self._dropped, self._faulted)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as pveproxy: clients reuse connections
    server_version = "pve-api-daemon/3.0"
    sys_version = ""
    timeout = 30

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the simulator is quiet; tests assert on answers and counters instead

    def _serve(self, method: str) -> None:
        app: SimulatorServer = self.server.app  # type: ignore[attr-defined]
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        body = self._read_body()
        rel = path[len(API_PREFIX):] if path.startswith(API_PREFIX + "/") else None
        template = api.route_template(method, rel) if rel is not None else None
        key = f"{method} {template or (rel if rel is not None else path)}"
        drop = app.state.should_drop()
        fault = app.state.request_fault(method, rel, template) if rel is not None and not drop else None
        app._counter.add(key, drop or (fault is not None and fault.action == "lost"), fault is not None)
        if drop:
            self._drop()
            return
        delay = app.state.faults.delay
        if delay > 0:
            time.sleep(delay)
        if rel is None:
            self._send(404, "Not Found", {"data": None, "message": "Not Found\n"})
            return
        if fault is not None and fault.action in ("error", "echo"):
            # Like a failing proxy in front of the API: nothing behind it runs.
            self._send_error(_fault_error(fault, self.headers.items(), body))
            return
        params = _params(url.query, body, self.headers.get("Content-Type") or "")
        payload = self._process(app, method, rel, params)
        if fault is not None and fault.action == "lost":
            self._drop()  # the work is done (a task may be running), but the client never learns it
            return
        if fault is not None and fault.action == "late":
            # A proxy that gave up waiting (504) after PVE did the work: an error, though the request ran.
            self._send_error(_fault_error(fault, self.headers.items()))
            return
        if fault is not None and fault.action == "empty" and isinstance(payload[2].get("data"), list):
            payload = (200, "OK", {"data": []})
        if fault is not None and fault.action == "garbled" and payload[0] == 200:
            payload = (200, "OK", {"data": _garbled(payload[2].get("data"))})
        self._send(*payload)

    def _process(self, app: SimulatorServer, method: str, rel: str, params: dict[str, str]) -> tuple[int, str, Any]:
        """Run one API call: (status, reason phrase, JSON body)."""
        try:
            return 200, "OK", {"data": app._answer(method, rel, params, self.headers)}
        except PveError as exc:
            return exc.status, exc.message, _error_body(exc)
        except Exception as exc:  # a simulator bug: answer like PVE's `die`, keep the trace on stderr
            traceback.print_exc(file=sys.stderr)
            error = PveError(500, f"internal simulator error: {exc.__class__.__name__}: {exc}")
            return 500, error.message, _error_body(error)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _drop(self) -> None:
        # Close the TCP connection without an answer (and without a TLS close_notify), like a reset.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_error(self, exc: PveError) -> None:
        self._send(exc.status, exc.message, _error_body(exc))

    def _send(self, status: int, reason: str, payload: Any) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        # PVE puts the error text in the reason phrase; it must be one latin-1 line.
        phrase = " ".join(reason.split()).encode("latin-1", "replace").decode("latin-1")
        self.send_response(status, phrase)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=0")
        self.end_headers()
        self.wfile.write(body)


def _error_body(exc: PveError) -> dict[str, Any]:
    """PVE's error envelope: `data` null, the message with its trailing newline, field errors."""
    message = exc.message if exc.message.endswith("\n") else exc.message + "\n"
    payload: dict[str, Any] = {"data": None, "message": message}
    if exc.errors:
        payload["errors"] = exc.errors
    return payload


def _garbled(data: Any) -> Any:
    """The answer's data with every field of the wrong type (lists keep one garbled item and gain junk)."""
    if isinstance(data, dict):
        return {key: (["?"] if isinstance(value, (str, int, float)) else "?") for key, value in data.items()}
    if isinstance(data, list):
        return [_garbled(data[0]) if data else None, "?", None, 7]
    return {"unexpected": [data]}


def _fault_error(fault: RequestFault, headers: Any, body: bytes = b"") -> PveError:
    if fault.action == "echo":
        return PveError(fault.status, echo_message(headers, body))
    return PveError(fault.status, fault.text())


def _params(query: str, body: bytes, content_type: str) -> dict[str, str]:
    """Query string plus form (or JSON) body; the last value of a repeated key wins."""
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    if not body:
        return params
    if content_type.startswith("application/json"):
        data = json.loads(body.decode() or "{}")
        params.update({str(k): _form_value(v) for k, v in data.items()})
    else:
        params.update(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    return params


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, app: SimulatorServer):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.ssl_context = context
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # Skip HTTPServer's getfqdn(): a reverse DNS lookup is slow and useless here.
        import socketserver
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread, never in the accept loop.
        request.settimeout(_Handler.timeout)
        # Headers and body go out in separate writes; without NODELAY, Nagle plus the client's
        # delayed ACK adds ~40 ms to every answer.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
        finally:
            tls.close()


class SimulatorServer:
    """A stateful PVE 9 API over HTTPS on loopback, seeded from a Cluster.

    `start()` binds, writes the CA file and serves in a background thread; `stop()` undoes it.
    Credentials: `user`/`password` for tickets, or the API token `token_id`=`token_secret`.
    """

    def __init__(self, cluster: Cluster, host: str = "127.0.0.1", port: int = 0, time_scale: float = 1.0,
                 faults: Faults | None = None, ca_dir: str | None = None, password: str | None = None,
                 token: str | None = None, *, user: str = "root@pam", token_name: str = "proxlb",
                 bandwidth_mib_s: float = 1024.0, pve_version: str = "9.1.1",
                 crs: str | Mapping[str, object] | None = None, ha_master: str | None = AUTO,
                 ha_failback: bool = False):
        self.cluster = cluster
        self.state = SimState(cluster, time_scale=time_scale, faults=faults, bandwidth_mib_s=bandwidth_mib_s,
                              pve_version=pve_version, crs=crs, ha_master=ha_master, ha_failback=ha_failback)
        self.host = host
        self.user = user
        self.password = password or secrets.token_urlsafe(12)
        self.token_name = token_name
        self.token_secret = token or str(uuid.uuid4())
        self._requested_port = port
        self._ca_dir = ca_dir
        self._auth = Authenticator(user, self.password, token_name, self.token_secret, sim_clock=self.state.now)
        self._counter = _Counter()
        self._httpd: _TlsServer | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: str | None = None
        self.ca_file: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SimulatorServer:
        if self._httpd is not None:
            return self
        context = self._make_tls()
        self._httpd = _TlsServer((self.host, self._requested_port), context, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
                                        name=f"pve-simulator:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd, self._thread = None, None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _make_tls(self) -> ssl.SSLContext:
        ca = trustme.CA(organization_name="proxlb-opt PVE simulator")
        names = ["127.0.0.1", "localhost", "::1"]
        if self.host not in names and self.host not in ("0.0.0.0", "::", ""):
            names.append(self.host)
        leaf = ca.issue_cert(*names)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        if self._ca_dir is not None:
            directory = Path(self._ca_dir)
            directory.mkdir(parents=True, exist_ok=True)
        else:
            self._tmpdir = tempfile.mkdtemp(prefix="pve-simulator-")
            directory = Path(self._tmpdir)
        self.ca_file = str(directory / CA_FILENAME)
        ca.cert_pem.write_to_path(self.ca_file)
        return context

    # ------------------------------------------------------------------ properties

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the simulator is not running")
        return int(self._httpd.server_address[1])

    @property
    def address(self) -> str:
        """`host:port` as proxmoxer and proxlb.yaml `hosts` take it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.address}{API_PREFIX}"

    @property
    def token_id(self) -> str:
        return f"{self.user}!{self.token_name}"

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.state.set_faults(faults)

    @property
    def request_count(self) -> RequestCount:
        return self._counter.snapshot()

    def reset_request_count(self) -> None:
        self._counter.reset()

    def update_faults(self, **changes: Any) -> Faults:
        """Change some fault fields at run time, keeping the others; the new Faults."""
        return self.state.update_faults(**changes)

    def invalidate_tickets(self) -> None:
        """Every login ticket issued so far stops working now (401); new logins work."""
        self._auth.revoke_all()

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self.state.now()

    def advance(self, seconds: float) -> None:
        """Move simulated time forward (tasks end, node events and CRM rounds run, in time order)."""
        self.state.advance(seconds)

    def advance_to(self, when: float) -> None:
        self.state.advance_to(when)

    # ------------------------------------------------------------------ one request

    def _answer(self, method: str, path: str, params: dict[str, str], headers: Mapping[str, str]) -> Any:
        if path.rstrip("/") == api.LOGIN_TEMPLATE:
            if method == "GET":
                return None  # PVE's dummy GET, used by the GUI to probe
            if method == "POST":
                return self._auth.login(params, self.state.snapshot().cluster_name, self.state.faults)
            raise PveError(501, f"Method '{method} {path}' not implemented")
        identity = self._auth.identify(method, headers, self.state.faults)
        return api.call(self.state, method, path, params, identity.userid)


# ---------------------------------------------------------------------- foreground

def banner(server: SimulatorServer, model_path: str) -> str:
    """What `proxlb-opt simulate` prints: address, CA, credentials and a proxlb.yaml snippet.

    This is the only place secrets are printed: they belong to the user's own throwaway simulator.
    """
    c = server.cluster
    q = json.dumps  # JSON strings are valid YAML scalars, whatever the secret contains
    return "\n".join([
        f"PVE 9 API simulator: cluster {c.name!r}, {c.n_nodes} nodes, {c.n_guests} guests (model {model_path})",
        f"  URL:        {server.url}",
        f"  CA file:    {server.ca_file}",
        f"  user:       {server.user}   password: {server.password}",
        f"  API token:  {server.token_id}={server.token_secret}",
        f"  time scale: {server.state.time_scale:g} simulated seconds per real second",
        "",
        "proxlb.yaml:",
        "proxmox_api:",
        f"  hosts: [{q(server.address)}]",
        f"  user: {q(server.user)}",
        f"  pass: {q(server.password)}",
        "  # or, with the API token instead of the password:",
        f"  # token_id: {q(server.token_name)}",
        f"  # token_secret: {q(server.token_secret)}",
        f"  ssl_verification: {q(server.ca_file)}",
        "",
        "Serving until Ctrl-C.",
        "",
    ])


def run_simulator(model_path: str, host: str = "127.0.0.1", port: int = 8006, time_scale: float = 1.0,
                  ca_dir: str | None = None, stream: TextIO | None = None) -> None:
    """Serve the model at `model_path` in the foreground until Ctrl-C (KeyboardInterrupt)."""
    stream = stream or sys.stdout
    server = SimulatorServer(load_model(model_path), host=host, port=port, time_scale=time_scale, ca_dir=ca_dir)
    with server:
        stream.write(banner(server, model_path))
        stream.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
