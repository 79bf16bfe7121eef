"""Routing of the simulated PVE API: path templates → handlers, and PVE's node proxying rules.

Owns which endpoints exist, their parameter checks, and what happens before a handler runs:
a path under `/nodes/{node}` is "proxied" to that node, so an unknown node is a 500 hostname
lookup failure and an offline one a 595. Handlers return the `data` value; errors are PveError.
Authentication and HTTP live in server.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from proxlb_opt.limits import is_decimal
from proxlb_opt.simulator import views
from proxlb_opt.simulator.state import GuestRec, PveError, SimState, Snapshot, config_path, param_error

PRIVILEGES = ("Datastore.Audit", "Pool.Audit", "Sys.Audit", "Sys.Modify", "VM.Audit", "VM.Migrate",
              "VM.PowerMgmt", "VM.Config.Options")


@dataclass(frozen=True)
class Call:
    """One authenticated API call: path arguments, query/form parameters, and the caller's userid."""

    state: SimState
    args: Mapping[str, str]
    params: Mapping[str, str]
    user: str

    def snap(self) -> Snapshot:
        return self.state.snapshot()


Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # e.g. "/nodes/{node}/qemu/{vmid}/config", also the request counter's key
    handler: Handler
    pattern: re.Pattern


def _route(method: str, template: str, handler: Handler) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return Route(method, template, handler, re.compile(f"^{regex}/?$"))


# ---------------------------------------------------------------------- helpers

def _enum(params: Mapping[str, str], key: str, allowed: tuple[str, ...]) -> str | None:
    value = params.get(key)
    if value in (None, ""):
        return None
    if value not in allowed:
        raise param_error(**{key: f"value '{value}' does not have a value in the enumeration '{', '.join(allowed)}'"})
    return value


def _vmid(call: Call) -> int:
    text = call.args["vmid"]
    if not is_decimal(text) or not 100 <= int(text) <= 999_999_999:
        raise param_error(vmid=f"type check ('integer') failed - got '{text}'" if not is_decimal(text)
                          else "value must have a minimum value of 100")
    return int(text)


def _guest(call: Call, kind: str) -> tuple[Snapshot, GuestRec]:
    """The guest of a `/nodes/{node}/{kind}/{vmid}/...` path; PVE reads its config from that node's directory."""
    snap, node, vmid = call.snap(), call.args["node"], _vmid(call)
    guest = snap.guests.get(vmid)
    if guest is None or guest.node != node or guest.kind != kind:
        raise PveError(500, f"Configuration file '{config_path(node, vmid, kind)}' does not exist")
    return snap, guest


def _node(call: Call) -> tuple[Snapshot, Any]:
    snap = call.snap()
    return snap, snap.node(call.args["node"])


# ---------------------------------------------------------------------- handlers

def _cluster_resources(call: Call) -> Any:
    return views.cluster_resources(call.snap(), _enum(call.params, "type", ("vm", "storage", "node", "sdn")))


def _nodes(call: Call) -> Any:
    snap = call.snap()
    return [views.node_entry(snap, n) for n in snap.nodes]


def _node_index(call: Call) -> Any:
    return [{"name": n} for n in ("qemu", "lxc", "status", "storage", "tasks", "rrddata", "version")]


def _node_status(call: Call) -> Any:
    return views.node_status(*_node(call))


def _node_storage(call: Call) -> Any:
    snap, node = _node(call)
    rows = views.storages(snap, node)
    wanted = call.params.get("storage")
    return [r for r in rows if wanted in (None, r["storage"])]


def _node_rrd(call: Call) -> Any:
    snap, node = _node(call)
    return views.node_rrd(snap, node, dict(call.params))


def _guest_list(kind: str) -> Handler:
    def handler(call: Call) -> Any:
        snap = call.snap()
        return [views.guest_list_item(snap, g) for g in snap.guests_on(call.args["node"]) if g.kind == kind]
    return handler


def _guest_view(kind: str, view: Callable[[Snapshot, GuestRec], Any]) -> Handler:
    def handler(call: Call) -> Any:
        return view(*_guest(call, kind))
    return handler


def _guest_rrd(kind: str) -> Handler:
    def handler(call: Call) -> Any:
        # The guest RRD is broadcast cluster-wide, so PVE answers on any node as long as the guest exists.
        snap, vmid = call.snap(), _vmid(call)
        guest = snap.guests.get(vmid)
        if guest is None or guest.kind != kind:
            raise PveError(500, f"Configuration file '{config_path(call.args['node'], vmid, kind)}' does not exist")
        return views.guest_rrd(snap, guest, dict(call.params))
    return handler


def _migrate_get(kind: str) -> Handler:
    def handler(call: Call) -> Any:
        snap, guest = _guest(call, kind)
        return views.migrate_precondition(snap, guest, call.params.get("target") or None)
    return handler


def _migrate_post(kind: str) -> Handler:
    def handler(call: Call) -> Any:
        return call.state.migrate(call.args["node"], _vmid(call), kind, call.params, call.user)
    return handler


def _task(call: Call) -> Any:
    upid = call.args["upid"]
    if not re.match(r"^UPID:[a-zA-Z0-9][a-zA-Z0-9\-]*:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8}:"
                    r"[^:\s/]+:[^:\s/]*:[^:\s/]+:$", upid):
        raise param_error(upid="unable to parse worker upid")
    task = call.state.task(upid)
    if task is None or task.node != call.args["node"]:
        raise param_error(upid="no such task")
    return task


def _task_status(call: Call) -> Any:
    return views.task_status(_task(call))


def _task_log(call: Call) -> Any:
    start = views.int_param(call.params, "start", 0)
    limit = views.int_param(call.params, "limit", 50)
    return views.task_log(_task(call), start, limit)


def _node_tasks(call: Call) -> Any:
    return views.node_tasks(call.snap(), call.args["node"], dict(call.params))


def _pools(call: Call) -> Any:
    kind = _enum(call.params, "type", ("qemu", "lxc", "storage"))
    return views.pools(call.snap(), call.params.get("poolid") or None, kind)


def _pool(call: Call) -> Any:
    kind = _enum(call.params, "type", ("qemu", "lxc", "storage"))
    return views.pool(call.snap(), call.args["poolid"], kind)


def _ha_resources(call: Call) -> Any:
    return views.ha_resources(call.snap(), _enum(call.params, "type", ("ct", "vm")))


def _ha_rules(call: Call) -> Any:
    kind = _enum(call.params, "type", ("node-affinity", "resource-affinity"))
    return views.ha_rules(call.snap(), kind, call.params.get("resource") or None)


def _ha_groups(call: Call) -> Any:
    # PVE 9 migrated groups to rules; the endpoint dies while no unmigrated group is left.
    raise PveError(500, "cannot index groups: ha groups have been migrated to rules")


def _permissions(call: Call) -> Any:
    privs = {p: 1 for p in PRIVILEGES}
    paths = ("/", "/vms", "/nodes", "/storage", "/pool", "/access")
    path = call.params.get("path")
    return {path: privs} if path else {p: dict(privs) for p in paths}


ROUTES: tuple[Route, ...] = (
    _route("GET", "/version", lambda c: views.version(c.snap())),
    _route("GET", "/access/permissions", _permissions),
    _route("GET", "/cluster/status", lambda c: views.cluster_status(c.snap())),
    _route("GET", "/cluster/options", lambda c: views.cluster_options(c.snap())),
    _route("GET", "/cluster/resources", _cluster_resources),
    _route("GET", "/cluster/tasks", lambda c: views.cluster_tasks(c.snap())),
    _route("GET", "/cluster/ha/resources", _ha_resources),
    _route("GET", "/cluster/ha/groups", _ha_groups),
    _route("GET", "/cluster/ha/rules", _ha_rules),
    _route("GET", "/cluster/ha/status/current", lambda c: views.ha_status(c.snap())),
    _route("GET", "/pools", _pools),
    _route("GET", "/pools/{poolid}", _pool),
    _route("GET", "/nodes", _nodes),
    _route("GET", "/nodes/{node}", _node_index),
    _route("GET", "/nodes/{node}/status", _node_status),
    _route("GET", "/nodes/{node}/version", lambda c: views.version(c.snap())),
    _route("GET", "/nodes/{node}/storage", _node_storage),
    _route("GET", "/nodes/{node}/rrddata", _node_rrd),
    _route("GET", "/nodes/{node}/tasks", _node_tasks),
    _route("GET", "/nodes/{node}/tasks/{upid}/status", _task_status),
    _route("GET", "/nodes/{node}/tasks/{upid}/log", _task_log),
    _route("GET", "/nodes/{node}/qemu", _guest_list("qemu")),
    _route("GET", "/nodes/{node}/lxc", _guest_list("lxc")),
    _route("GET", "/nodes/{node}/qemu/{vmid}/config", _guest_view("qemu", views.guest_config)),
    _route("GET", "/nodes/{node}/lxc/{vmid}/config", _guest_view("lxc", views.guest_config)),
    _route("GET", "/nodes/{node}/qemu/{vmid}/status/current", _guest_view("qemu", views.guest_status)),
    _route("GET", "/nodes/{node}/lxc/{vmid}/status/current", _guest_view("lxc", views.guest_status)),
    _route("GET", "/nodes/{node}/qemu/{vmid}/rrddata", _guest_rrd("qemu")),
    _route("GET", "/nodes/{node}/lxc/{vmid}/rrddata", _guest_rrd("lxc")),
    _route("GET", "/nodes/{node}/qemu/{vmid}/migrate", _migrate_get("qemu")),
    _route("GET", "/nodes/{node}/lxc/{vmid}/migrate", _migrate_get("lxc")),
    _route("POST", "/nodes/{node}/qemu/{vmid}/migrate", _migrate_post("qemu")),
    _route("POST", "/nodes/{node}/lxc/{vmid}/migrate", _migrate_post("lxc")),
)

LOGIN_TEMPLATE = "/access/ticket"


def match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for a path relative to /api2/json; 501 like PVE when nothing matches."""
    for route in ROUTES:
        found = route.pattern.match(path)
        if found and route.method == method:
            return route, found.groupdict()
    raise PveError(501, f"Method '{method} {path}' not implemented")


def route_template(method: str, path: str) -> str | None:
    """The path template a request falls under ("/nodes/{node}/qemu"); None when no route has it."""
    if path.rstrip("/") == LOGIN_TEMPLATE:
        return LOGIN_TEMPLATE
    for route in ROUTES:
        if route.method == method and route.pattern.match(path):
            return route.template
    return None



def call(state: SimState, method: str, path: str, params: Mapping[str, str], user: str) -> Any:
    """Route and run one authenticated call; raises PveError."""
    route, args = match(method, path)
    if "node" in args:
        _proxy_check(state.snapshot(), args["node"])
    return route.handler(Call(state, args, params, user))


def _proxy_check(snap: Snapshot, node: str) -> None:
    """pveproxy forwards `/nodes/{node}/...` to that node: unknown names fail DNS, offline ones time out."""
    if snap.node(node) is None:
        raise PveError(500, f"hostname lookup '{node}' failed - failed to get address info for: {node}: "
                            "Name or service not known")
    if not snap.is_online(node):
        raise PveError(595, "No route to host")
