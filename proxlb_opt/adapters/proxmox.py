"""The only module that talks to Proxmox VE (and the only proxmoxer import).

Owns: connecting (password or API token, several hosts with failover, also mid-run), reading the
live cluster into the same model mapping the planner reads from files, starting migrations and
polling their tasks. Requests are few and do not grow with the guest count where the API allows:
`/cluster/resources` carries nodes, guests, usage, tags, pools, locks and storages in one answer;
HA resources, rules and status are one request each. Only local-disk detection needs each
guest's config (disk volume ids); those requests run concurrently and can be switched off.
Pressure (PSI, for `balancing.mode: psi`) costs four requests per node and none per guest: the
node's hour of rrddata twice (AVERAGE and MAX) and its two guest lists, which carry the guests'
live values. ProxLB reads each guest's rrddata instead (two requests per guest).

Least privilege: Sys.Audit (nodes, HA status), VM.Audit (guests, configs), Datastore.Audit
(storages), VM.Migrate (apply only). Secrets never appear in messages. A host that cannot be reached
is reported in one phrase with its cause and the fix (`describe_connection_error`): an untrusted
certificate, a refused connection, a timeout, a name that does not resolve.

Failover is safe for what it repeats. A request that surely never reached the API (connection refused,
a name that does not resolve, TLS or connect failures) is tried on the next host, whatever its method.
A request whose answer was lost (a dropped connection, a read timeout) may have been carried out: a GET
is simply repeated, but a POST is never sent again here (`AnswerLost`): the caller looks for what it
did first (apply.py finds the migration task). GETs answered by a proxy that could not reach PVE (502,
503, 504, 595, 596) are tried on the next host too. Logins: a 401 on a ticket session (the ticket
expired or was revoked) or a failed ticket renewal by proxmoxer gets one fresh login and the request
again (a 401 is given before PVE processes anything, so this is safe for a POST too); with an API
token a 401 is a real authentication failure (`AuthError`, one line).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import requests
import urllib3
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException

from proxlb_opt.cluster import PSI_RESOURCES, Cluster, cluster_from_dict
from proxlb_opt.config import ApiSettings, Settings
from proxlb_opt.errors import CollectionError, ModelError
from proxlb_opt.limits import is_decimal

log = logging.getLogger("proxlb_opt.adapters.proxmox")

CONNECTION_ERRORS = (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                     requests.exceptions.SSLError, requests.exceptions.ChunkedEncodingError, OSError)
DISK_KEY = re.compile(r"^(scsi|sata|ide|virtio|efidisk|tpmstate|rootfs|mp)\d*$")
MIB = 1024 * 1024


_TLS_WARNED = threading.Event()
TLS_OFF_WARNING = ("TLS certificate verification is off (proxmox_api.ssl_verification: false): anyone on the path "
                   "to the API can read the credentials; set it to the cluster's CA file instead")


def warn_tls_off() -> None:
    """The one warning (once per process, one line) that the API's certificate is not checked."""
    if not _TLS_WARNED.is_set():
        _TLS_WARNED.set()
        log.warning(TLS_OFF_WARNING)


#: Answers of pveproxy (or a proxy in front of it) that could not reach the PVE daemon behind it: the request
#: may or may not have been carried out, and another host may do better.
PROXY_STATUSES = frozenset({502, 503, 504, 595, 596, 599})


class ApiCallError(Exception):
    """An API answer with an HTTP error status; `status` and `message` as PVE sent them."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message

    @property
    def from_proxy(self) -> bool:
        """Whether the answer came from a proxy that could not reach PVE (the request's fate is open)."""
        return self.status in PROXY_STATUSES


class AnswerLost(CollectionError):
    """A write (POST) was sent but its answer never came: it may have been carried out. Never repeated here."""


class AnswerUnreadable(AnswerLost):
    """A write was answered with success but not with what it returns (a migrate without a UPID): it may
    well have been carried out, so it is treated as a lost answer."""


class AuthError(CollectionError):
    """The API refused the credentials (a token, or a fresh login's ticket): one line, no retry."""


@dataclass
class ProxmoxClient:
    """proxmoxer sessions over several hosts; fails over to the next host on connection errors."""

    settings: ApiSettings
    requests_made: int = 0
    _sessions: dict[str, Any] = field(default_factory=dict)
    _current: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _session(self, host: str):
        if host not in self._sessions:
            self._sessions[host] = self._connect(host)
        return self._sessions[host]

    def _connect(self, host: str):
        s = self.settings
        verify: bool | str = s.ca_file if s.ca_file else s.ssl_verification
        if verify is False:
            warnings.filterwarnings("ignore", message="Unverified HTTPS request")  # urllib3's, once per request
            warn_tls_off()
        kwargs: dict[str, Any] = {"user": s.user, "verify_ssl": verify, "timeout": s.timeout}
        if s.token_id:
            token_name = s.token_id.split("!", 1)[-1]
            kwargs.update(token_name=token_name, token_value=s.token_secret.reveal())
        else:
            kwargs["password"] = s.password.reveal()
        try:
            self.requests_made += 0 if s.token_id else 1  # the ticket request
            return ProxmoxAPI(host, **kwargs)
        except AuthenticationError:
            raise CollectionError(f"{host}: authentication failed for {s.user} (check user, password or token)") from None

    def call(self, method: str, path: str, **params: Any) -> Any:
        """GET/POST `path` (e.g. "cluster/resources") on the current host, failing over where that is safe.

        Connection errors: a request that never left (refused, DNS, TLS, connect timeout) goes to the next
        host; a lost answer does too for a GET, and raises AnswerLost for anything else. A GET answered by a
        proxy status (PROXY_STATUSES) goes to the next host while there is one. A 401 gets one fresh login.
        """
        hosts = self.settings.hosts
        rounds = len(hosts) * max(1, self.settings.retries)
        errors = []
        relogged = False
        attempt = 0
        while attempt < rounds:
            index = (self._current + attempt) % len(hosts)
            host = hosts[index]
            try:
                session = self._session(host)
            except CONNECTION_ERRORS as exc:  # the login failed to connect: our request was never sent
                self._fail_over(host, exc, errors, last=attempt + 1 >= rounds)
                attempt += 1
                continue
            try:
                with self._lock:
                    self.requests_made += 1
                result = getattr(session(path), method)(**params)
                self._current = index
                return result
            except AuthenticationError:
                # proxmoxer renews a ticket with the ticket itself; an expired or revoked one fails: log in afresh.
                self._sessions.pop(host, None)
                if relogged:
                    raise AuthError(f"{host}: the ticket could not be renewed and a fresh login failed for "
                                    f"{self.settings.user}") from None
                relogged = True
                log.info("API host %s: login ticket could not be renewed; logging in again", host)
                continue
            except CONNECTION_ERRORS as exc:
                if method != "get" and not request_not_sent(exc):
                    self._sessions.pop(host, None)
                    raise AnswerLost(f"{method.upper()} /{path}: the answer from {host} was lost "
                                     f"({describe_connection_error(exc, self.settings.timeout)}); the request "
                                     f"may have been carried out") from None
                self._fail_over(host, exc, errors, last=attempt + 1 >= rounds)
            except ResourceException as exc:
                error = ApiCallError(exc.status_code, str(exc.content or exc.status_message).strip())
                if exc.status_code == 401:
                    self._sessions.pop(host, None)
                    if self.settings.token_id:
                        raise AuthError(f"{host}: the API token {self.settings.user}!"
                                        f"{self.settings.token_id.split('!', 1)[-1]} was refused ({error.message}); "
                                        f"check token_id, token_secret and the token's privileges") from None
                    if relogged:
                        raise AuthError(f"{host}: {error.message}, also right after a fresh login as "
                                        f"{self.settings.user}") from None
                    # The ticket expired or was revoked; PVE refuses before processing, so repeating is safe.
                    relogged = True
                    log.info("API host %s: %s; logging in again", host, error.message)
                    continue
                if method == "get" and error.from_proxy and attempt + 1 < rounds:
                    log.warning("API host %s: %s; trying the next one", host, error)
                    attempt += 1
                    continue
                raise error from None
            attempt += 1
        raise CollectionError("no Proxmox API host answered: " + "; ".join(_unique(errors)))

    def _fail_over(self, host: str, exc: BaseException, errors: list[str], last: bool) -> None:
        """Forget the host's session and note why; unless it was the last try, say so and wait `wait_time`."""
        self._sessions.pop(host, None)
        cause = describe_connection_error(exc, self.settings.timeout)
        errors.append(f"{host}: {cause}")
        if not last:
            log.warning("API host %s: %s; trying the next one", host, cause)
            if self.settings.wait_time:
                time.sleep(min(self.settings.wait_time, 5))

    def get(self, path: str, **params: Any) -> Any:
        return self.call("get", path, **params)

    def post(self, path: str, **params: Any) -> Any:
        return self.call("post", path, **params)


def request_not_sent(exc: BaseException) -> bool:
    """Whether a connection error proves the request never reached the API: the connection or its TLS
    handshake failed (refused, unresolvable name, connect timeout, certificate). A dropped connection or
    a read timeout after sending proves nothing: the request may have been carried out."""
    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    for cause in _chain(exc):
        if isinstance(cause, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
                              urllib3.exceptions.SSLError, ConnectionRefusedError, socket.gaierror)):
            return True
    return False


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return text[:160]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


_VERIFY_DETAIL = re.compile(r"certificate verify failed: ([^(]+?)\s*(?:\(_ssl|\)|$)", re.IGNORECASE)
TLS_FIX = ("set proxmox_api.ssl_verification: /path/to/ca.pem (the cluster's CA, /etc/pve/pve-root-ca.pem on any "
           "node) or false")


def describe_connection_error(exc: BaseException, timeout: float | None = None) -> str:
    """Why a host could not be reached, in one phrase with the fix; requests' nested wrappers unwrapped."""
    text = " ".join(str(e) for e in _chain(exc))
    lower = text.lower()
    if "certificate verify failed" in lower:
        match = _VERIFY_DETAIL.search(text)
        detail = match.group(1).strip().rstrip(".") if match else "untrusted certificate"
        return f"TLS certificate verify failed ({detail}); {TLS_FIX}"
    if isinstance(exc, requests.exceptions.SSLError) or "wrong version number" in lower:
        return f"TLS handshake failed ({_short(exc)[:80]}); is this the API's HTTPS port (8006)?"
    if isinstance(exc, requests.exceptions.Timeout) or "timed out" in lower:
        after = f" after {timeout:g} s" if timeout else ""
        return f"timed out{after}; is the host up and its API port (8006) reachable from here (raise proxmox_api.timeout " \
               f"for slow links)?"
    if "connection refused" in lower:
        return "connection refused; nothing listens on that port (pveproxy serves the API on 8006)"
    if any(phrase in lower for phrase in ("name or service not known", "failed to resolve", "nodename nor servname",
                                          "temporary failure in name resolution", "no address associated")):
        return "name or service not known; the host name does not resolve (check proxmox_api.hosts and DNS)"
    if "no route to host" in lower or "network is unreachable" in lower:
        return "no route to host; check the address in proxmox_api.hosts and the network"
    if "connection reset" in lower or "remotedisconnected" in lower or "connection aborted" in lower:
        return "the connection was closed by the other side"
    return _short(exc)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and the reasons urllib3 keeps (MaxRetryError.reason), without cycles."""
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is seen for seen in out):
            continue
        out.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None) if isinstance(getattr(e, "reason", None),
                                                                                     BaseException) else None]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return out


# ----------------------------------------------------------------------------- collection


@dataclass(frozen=True)
class CollectionStats:
    requests: int
    seconds: float
    guests: int


def collect_model(client: ProxmoxClient, read_configs: bool = True,
                  local_disk_hint: Callable[[int], bool | None] | None = None, pressure: bool = False) -> dict:
    """The live cluster as a model-file mapping (format v1); with `pressure`, PSI figures too. Each stage's
    time is logged at debug level. An answer without the fields PVE always sends, or with values of the
    wrong kind, is a CollectionError naming what was wrong, never a crash."""
    try:
        return _collect_model(client, read_configs, local_disk_hint, pressure)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError) as exc:
        raise CollectionError(f"the Proxmox API answered something proxlb-opt cannot read ({_malformed(exc)})") from None


def _malformed(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"a field is missing: {str(exc)[:60]}"
    return f"{exc.__class__.__name__}: {_short(exc)[:100]}"


def _collect_model(client: ProxmoxClient, read_configs: bool, local_disk_hint: Callable[[int], bool | None] | None,
                   pressure: bool) -> dict:
    clock = time.perf_counter()
    resources = _get_list(client, "cluster/resources")
    nodes = [r for r in resources if r.get("type") == "node"]
    guests = [r for r in resources if r.get("type") in ("qemu", "lxc")]
    storages = [r for r in resources if r.get("type") == "storage"]
    log.debug("GET /cluster/resources: %d nodes, %d guests, %d storages in %.2f s", len(nodes), len(guests),
              len(storages), time.perf_counter() - clock)
    if not nodes:
        raise CollectionError("the API listed no nodes (does the user have Sys.Audit on /nodes?)")
    clock = time.perf_counter()
    ha_vmids = _ha_resources(client)
    maintenance = _maintenance_nodes(client)
    log.debug("HA resources and status: %d HA guests, %d nodes in maintenance in %.2f s", len(ha_vmids),
              len(maintenance), time.perf_counter() - clock)
    shared = {(s.get("node"), s.get("storage")): bool(s.get("shared")) for s in storages}
    clock, before = time.perf_counter(), client.requests_made
    local_disk = _local_disks(client, guests, shared, read_configs, local_disk_hint)
    log.debug("local disks: %d guest configs read (%d with local disks) in %.2f s", client.requests_made - before,
              sum(local_disk.values()), time.perf_counter() - clock)
    model = {
        "version": 1,
        "cluster": _cluster_name(client),
        "nodes": [_node_entry(n, storages, maintenance) for n in sorted(nodes, key=lambda n: n["node"])],
        "guests": [_guest_entry(g, ha_vmids, local_disk.get(int(g["vmid"]), False))
                   for g in sorted(guests, key=lambda g: int(g["vmid"]))],
        "ha_rules": _ha_rules(client),
    }
    crs = _crs(client)
    if crs:
        model["crs"] = crs
    if pressure:
        _add_pressure(client, model)
    return model


def cluster_identity(client: ProxmoxClient) -> tuple[str, tuple[str, ...]]:
    """The cluster's name and its node names (sorted), as `collect_model` reads them: two requests."""
    nodes = sorted(str(r["node"]) for r in _get_list(client, "cluster/resources", type="node") if r.get("node"))
    return _cluster_name(client), tuple(nodes)


def collect_cluster(settings: ApiSettings, read_configs: bool = True, pressure: bool = False,
                    client: ProxmoxClient | None = None) -> Cluster:
    client = client or ProxmoxClient(settings)
    model, stats = collect_with_stats(client, read_configs, pressure)
    log.info("collected %d guests with %d API requests in %.2f s", stats.guests, stats.requests, stats.seconds)
    try:
        return cluster_from_dict(model, source=f"proxmox-api:{client.settings.hosts[client._current]}")
    except ModelError as exc:  # a value out of range or of the wrong kind in the API's answer
        raise CollectionError(f"the Proxmox API answered a value proxlb-opt cannot use: {exc}") from None


def collect_live(settings: Settings, client: ProxmoxClient | None = None) -> Cluster:
    """The live cluster of a config: its API, its `read_guest_configs`, and PSI figures when `mode: psi`."""
    if settings.api is None:
        raise CollectionError(f"{settings.source}: no proxmox_api section to read the live cluster from")
    return collect_cluster(settings.api, settings.read_guest_configs, pressure=settings.mode == "psi", client=client)


def collect_with_stats(client: ProxmoxClient, read_configs: bool = True,
                       pressure: bool = False) -> tuple[dict, CollectionStats]:
    start = time.perf_counter()
    before = client.requests_made
    model = collect_model(client, read_configs, pressure=pressure)
    return model, CollectionStats(client.requests_made - before, time.perf_counter() - start, len(model["guests"]))


def _get_list(client: ProxmoxClient, path: str, **params: Any) -> list[dict]:
    try:
        answer = client.get(path, **params)
    except ApiCallError as exc:
        raise CollectionError(f"GET /{path} failed: {exc.status} {exc.message}") from None
    return _list_of_objects(answer, path)


def _list_of_objects(answer: Any, path: str) -> list[dict]:
    """`answer` if it is a list of objects, as every list endpoint we read returns; else a collection error."""
    if not isinstance(answer, list):
        raise CollectionError(f"GET /{path}: expected a list of objects, got {type(answer).__name__}")
    odd = next((item for item in answer if not isinstance(item, dict)), answer)
    if odd is not answer:
        raise CollectionError(f"GET /{path}: expected a list of objects, got a list holding "
                              f"{'null' if odd is None else type(odd).__name__}")
    return answer


def _optional_list(client: ProxmoxClient, path: str) -> list[dict]:
    """Endpoints that older PVE versions lack or that die on fresh clusters (HA groups/rules): an error is
    an empty list, but an answer that is not a list of objects is refused like any other (dropping its odd
    items would plan as if the HA rules it lists did not exist)."""
    try:
        answer = client.get(path)
    except ApiCallError as exc:
        log.debug("GET /%s unavailable (%s); treated as empty", path, exc)
        return []
    return _list_of_objects(answer, path)


def _cluster_name(client: ProxmoxClient) -> str:
    for item in _optional_list(client, "cluster/status"):
        if item.get("type") == "cluster" and item.get("name"):
            return str(item["name"])
    return "proxmox"


def _ha_resources(client: ProxmoxClient) -> dict[int, bool]:
    """vmid → its `auto-rebalance` flag (PVE 9.2; true when not reported), for every HA-managed guest."""
    vmids = {}
    for item in _optional_list(client, "cluster/ha/resources"):
        sid = str(item.get("sid", ""))
        number = sid.rpartition(":")[2]
        if is_decimal(number) and item.get("state") != "ignored":
            vmids[int(number)] = str(item.get("auto-rebalance", 1)).lower() not in ("0", "false")
    return vmids


def _crs(client: ProxmoxClient) -> dict[str, Any]:
    """The datacenter `crs` option (PVE returns it parsed, as an object; older versions as a string)."""
    try:
        options = client.get("cluster/options")
    except ApiCallError as exc:
        log.debug("GET /cluster/options unavailable (%s); no crs option", exc)
        return {}
    crs = options.get("crs") if isinstance(options, dict) else None
    if isinstance(crs, str):
        return {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in crs.split(",") if p.strip())}
    return dict(crs) if isinstance(crs, dict) else {}


def _maintenance_nodes(client: ProxmoxClient) -> set[str]:
    nodes = set()
    for item in _optional_list(client, "cluster/ha/status/current"):
        if item.get("type") == "lrm" and "maintenance mode" in str(item.get("status", "")):
            nodes.add(str(item.get("node") or str(item.get("id", "")).rpartition("/")[2]))
    return nodes


def ha_master(client: ProxmoxClient) -> str | None:
    """The node the PVE HA manager (CRM) runs on: the `master` entry of /cluster/ha/status/current (the
    same manager status ProxLB reads as `master_node`); None when there is none or it cannot be read."""
    for item in _optional_list(client, "cluster/ha/status/current"):
        if item.get("type") != "master":
            continue
        if item.get("node"):
            return str(item["node"])
        status = str(item.get("status", "")).strip()  # "pve1 (active, Mon Nov 30 08:00:00 2026)"
        return status.split(" ", 1)[0] or None
    return None


def _ha_rules(client: ProxmoxClient) -> list[dict]:
    rules = []
    for item in _optional_list(client, "cluster/ha/rules"):
        if item.get("type") not in ("node-affinity", "resource-affinity") or not item.get("resources"):
            continue
        rule = {"rule": str(item.get("rule")), "type": item["type"], "resources": item["resources"],
                "strict": bool(int(item.get("strict", 0) or 0)), "disable": bool(int(item.get("disable", 0) or 0))}
        if item["type"] == "node-affinity":
            if not item.get("nodes"):
                continue
            rule["nodes"] = item["nodes"]
            rule["affinity"] = item.get("affinity", "positive")  # negative: PVE 9.2.6, never those nodes
        else:
            rule["affinity"] = item.get("affinity", "positive")
            rule["strict"] = True
        rules.append(rule)
    return rules


def _node_entry(item: dict, storages: list[dict], maintenance: set[str]) -> dict:
    name = str(item["node"])
    online = item.get("status") == "online"
    local = [s for s in storages if s.get("node") == name and not s.get("shared") and _holds_guest_disks(s)]
    entry: dict[str, Any] = {
        "name": name,
        "cpus": int(item.get("maxcpu") or 1),
        "memory": int(item.get("maxmem") or MIB),
        "disk": int(sum(int(s.get("maxdisk") or 0) for s in local)),
        "disk_used": int(sum(int(s.get("disk") or 0) for s in local)),
        "status": "online" if online else "offline",
    }
    if online:
        entry["memory_used"] = int(item.get("mem") or 0)
        entry["cpu_usage"] = round(float(item.get("cpu") or 0.0) * float(item.get("maxcpu") or 0), 3)
    if name in maintenance or item.get("hastate") == "maintenance":
        entry["maintenance"] = True
    return entry


def _holds_guest_disks(storage: dict) -> bool:
    content = str(storage.get("content", "images,rootdir"))
    return "images" in content or "rootdir" in content


def _guest_entry(item: dict, ha_vmids: dict[int, bool], local_disk: bool) -> dict:
    vmid = int(item["vmid"])
    maxcpu = float(item.get("maxcpu") or 1)
    running = item.get("status") == "running"
    entry: dict[str, Any] = {
        "vmid": vmid,
        "name": str(item.get("name") or f"guest{vmid}"),
        "type": "ct" if item.get("type") == "lxc" else "vm",
        "node": str(item["node"]),
        "status": "running" if running else "stopped",
        "cpus": maxcpu,
        "cpu_usage": round(float(item.get("cpu") or 0.0) * maxcpu, 3),
        "memory": int(item.get("maxmem") or 0),
        "memory_used": int(item.get("memhost") or item.get("mem") or 0) if running else 0,
        "disk": int(item.get("maxdisk") or 0),
        "disk_used": int(item.get("disk") or item.get("maxdisk") or 0),
        "local_disk": local_disk,
        "ha": vmid in ha_vmids,
    }
    if not ha_vmids.get(vmid, True):
        entry["auto_rebalance"] = False
    if item.get("tags"):
        entry["tags"] = str(item["tags"])
    if item.get("pool"):
        entry["pool"] = str(item["pool"])
    if item.get("lock"):
        entry["lock"] = str(item["lock"])
    if int(item.get("template") or 0):
        entry["template"] = True
    return entry


# ----------------------------------------------------------------------------- pressure (PSI)

# PVE's field names per resource (PSI_RESOURCES order) and figure. Nodes have no full CPU pressure.
_PSI_FIELDS = {"memory": ("pressurememorysome", "pressurememoryfull"), "cpu": ("pressurecpusome", "pressurecpufull"),
               "io": ("pressureiosome", "pressureiofull")}
#: rrddata points (one a minute in the hour frame) whose MAX gives the node's spike figure, as ProxLB.
SPIKE_POINTS = 6


def _add_pressure(client: ProxmoxClient, model: dict) -> None:
    """Node figures from an hour of rrddata, guest figures from the guest lists' live values."""
    online = [n["name"] for n in model["nodes"] if n.get("status") == "online"]
    by_vmid = {g["vmid"]: g for g in model["guests"]}

    def read(node: str) -> tuple[str, dict | None, list[dict]]:
        average = _rrd(client, node, "AVERAGE")
        peaks = _rrd(client, node, "MAX")
        listed = []
        for kind in ("qemu", "lxc"):
            try:
                answer = client.get(f"nodes/{node}/{kind}")
            except (ApiCallError, CollectionError) as exc:
                log.warning("cannot read the %s guests of %s for pressure (%s); counted as 0", kind, node, exc)
                continue
            listed += answer if isinstance(answer, list) else []
        return node, _node_pressure(average, peaks), listed

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(read, online))
    nodes = {n["name"]: n for n in model["nodes"]}
    for node, figures, listed in results:
        if figures is not None:
            nodes[node]["pressure"] = figures
        for item in listed:
            guest = by_vmid.get(int(item.get("vmid", 0) or 0))
            if guest is not None and guest["node"] == node and guest["status"] == "running":
                figures = _guest_pressure(item)
                if figures:
                    guest["pressure"] = figures


def _rrd(client: ProxmoxClient, node: str, cf: str) -> list[dict]:
    try:
        answer = client.get(f"nodes/{node}/rrddata", timeframe="hour", cf=cf)
    except (ApiCallError, CollectionError) as exc:
        log.warning("cannot read the rrddata (%s) of %s (%s); its pressure counts as 0", cf, node, exc)
        return []
    return answer if isinstance(answer, list) else []


def _number(value: Any) -> float | None:
    try:
        return float(value)  # LXC sends PSI values as strings
    except (TypeError, ValueError):
        return None


def _node_pressure(average: list[dict], peaks: list[dict]) -> dict | None:
    """{resource: {some, full, spikes}} in percent: the hour's mean of `some` and `full` (AVERAGE series),
    and the highest `full` of the last SPIKE_POINTS points of the MAX series; None without any PSI field
    (PVE before 9)."""
    figures: dict[str, dict[str, float]] = {}
    for resource in PSI_RESOURCES:
        some_key, full_key = _PSI_FIELDS[resource]
        row = {}
        for figure, key in (("some", some_key), ("full", full_key)):
            values = [v for v in (_number(p.get(key)) for p in average) if v is not None]
            if values:
                row[figure] = round(sum(values) / len(values), 2)
        recent = [v for v in (_number(p.get(full_key)) for p in peaks) if v is not None][-SPIKE_POINTS:]
        if recent:
            row["spikes"] = round(max(recent), 2)
        if row:
            row.setdefault("full", 0.0)
            row.setdefault("spikes", 0.0)
            figures[resource] = {k: min(100.0, max(0.0, v)) for k, v in row.items()}
    return figures or None


def _guest_pressure(item: dict) -> dict:
    """{resource: {some, full}} in percent from a guest list item (live avg10); spikes default to full."""
    figures = {}
    for resource in PSI_RESOURCES:
        some, full = (_number(item.get(key)) for key in _PSI_FIELDS[resource])
        if some is not None or full is not None:
            figures[resource] = {"some": min(100.0, max(0.0, some or 0.0)), "full": min(100.0, max(0.0, full or 0.0))}
    return figures


# ----------------------------------------------------------------------------- local disks


def _local_disks(client: ProxmoxClient, guests: list[dict], shared: dict, read_configs: bool,
                 hint: Callable[[int], bool | None] | None) -> dict[int, bool]:
    """vmid → has a disk on node-local storage. Reads each guest's config concurrently."""
    out: dict[int, bool] = {}
    todo = []
    for g in guests:
        known = hint(int(g["vmid"])) if hint else None
        if known is not None:
            out[int(g["vmid"])] = known
        elif read_configs and g.get("status") != "unknown" and not int(g.get("template") or 0):
            todo.append(g)

    def read(g: dict) -> tuple[int, bool]:
        path = f"nodes/{g['node']}/{g['type']}/{g['vmid']}/config"
        try:
            config = client.get(path)
        except (ApiCallError, CollectionError) as exc:
            log.warning("cannot read config of %s %s (%s); assuming shared storage", g["type"], g["vmid"], exc)
            return int(g["vmid"]), False
        return int(g["vmid"]), _config_has_local_disk(config, str(g["node"]), shared)

    with ThreadPoolExecutor(max_workers=8) as pool:
        out.update(dict(pool.map(read, todo)))
    return out


def _config_has_local_disk(config: dict, node: str, shared: dict) -> bool:
    for key, value in config.items():
        if not DISK_KEY.match(str(key)) or not isinstance(value, str):
            continue
        if "media=cdrom" in value or value.startswith("none"):
            continue
        storage = value.split(":", 1)[0] if ":" in value.split(",", 1)[0] else None
        if storage and not shared.get((node, storage), False):
            return True
    return False


# ----------------------------------------------------------------------------- migrations


def start_migration(client: ProxmoxClient, vmid: int, guest_type: str, source: str, target: str, *,
                    running: bool, local_disk: bool, with_conntrack_state: bool = False,
                    restart_timeout: int = 180) -> str:
    """POST the migrate call; returns the UPID (of the task on the source node)."""
    kind = "lxc" if guest_type == "ct" else "qemu"
    params: dict[str, Any] = {"target": target}
    if kind == "qemu":
        if running:
            params["online"] = 1
            if with_conntrack_state:
                params["with-conntrack-state"] = 1
        if local_disk:
            params["with-local-disks"] = 1
    elif running:
        params.update(restart=1, timeout=int(restart_timeout))
    upid = client.post(f"nodes/{source}/{kind}/{vmid}/migrate", **params)
    if not isinstance(upid, str) or not upid.startswith("UPID:"):
        raise AnswerUnreadable(f"POST /nodes/{source}/{kind}/{vmid}/migrate: unexpected answer {str(upid)[:200]!r}")
    return upid


def task_status(client: ProxmoxClient, upid: str) -> dict:
    node = upid.split(":")[1]
    return client.get(f"nodes/{node}/tasks/{upid}/status")


def guest_tasks(client: ProxmoxClient, node: str, vmid: int, since: int, source: str = "all",
                strict: bool = False) -> list[dict]:
    """Recent tasks of one guest on a node, newest first (to follow hamigrate → qmigrate, to find the task of
    a migrate call whose answer was lost). `source`: all, active (running) or archive (ended). Not `strict`:
    an error answer counts as no tasks; `strict`: errors are raised."""
    params: dict[str, Any] = {"vmid": vmid, "source": source, "limit": 50}
    if since > 0:
        params["since"] = since
    try:
        answer = client.get(f"nodes/{node}/tasks", **params)
    except ApiCallError:
        if strict:
            raise
        return []
    if not isinstance(answer, list):
        if strict:
            raise CollectionError(f"GET /nodes/{node}/tasks: expected a list, got {type(answer).__name__}")
        return []
    return answer


def task_log(client: ProxmoxClient, upid: str, limit: int = 50) -> list[str]:
    """The first `limit` lines of a task's log (e.g. "starting migration of VM 100 to node 'pve2' (10.0.0.2)")."""
    node = upid.split(":")[1]
    answer = client.get(f"nodes/{node}/tasks/{upid}/log", start=0, limit=limit)
    return [str(line.get("t", "")) for line in answer] if isinstance(answer, list) else []


def guest_resource(client: ProxmoxClient, vmid: int) -> dict | None:
    """The guest's `/cluster/resources` item (node, status, lock, hastate): one request, for where a guest is
    while migrating; None when the cluster lists no such guest. A list without any guest is an error (an
    answer that lost its items must not read as "the guest is gone")."""
    items = _get_list(client, "cluster/resources", type="vm")
    guests = [i for i in items if i.get("type") in ("qemu", "lxc")]
    if not guests:
        raise CollectionError("GET /cluster/resources listed no guests")
    return next((i for i in guests if int(i.get("vmid", -1)) == int(vmid)), None)


def pve_version(client: ProxmoxClient) -> str:
    try:
        return str(client.get("version").get("version", ""))
    except (ApiCallError, AttributeError):
        return ""
