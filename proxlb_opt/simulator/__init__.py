"""A stateful, faithful Proxmox VE 9 API simulator over real HTTPS, for tests, benchmarks and rehearsals.

This package owns everything about pretending to be a PVE cluster: the cluster state seeded from a
`Cluster` with a virtual clock and PVE's migrate/task/HA semantics (state.py), the HA manager's
rule decisions (ha.py), pressure stall information (psi.py), the fault vocabulary (faults.py),
the JSON shapes in PVE's units (views.py), routing and node proxying rules (api.py),
tickets/CSRF/API tokens (auth.py), and the TLS server that puts faults on the wire (server.py).

Nothing in the planning core imports it; the CLI's `simulate` command and the tests do.

Python-level API for tests (all thread-safe; everything can change while clients are connected):

    SimulatorServer(cluster, time_scale=1.0, faults=None, …,
                    pve_version="9.1.1",   # "9.2…": HA `auto-rebalance`, node `host-arch`;
                                           # "9.2.6…": node-affinity rules show `affinity`
                    crs=None,              # datacenter `crs`: "ha=dynamic,ha-auto-rebalance=1" or a dict
                    ha_master=AUTO,        # HA manager master node; AUTO: first online node; None: none
                    ha_failback=False)     # HA resources' `failback` (PVE's default is on; see below)
      .faults = Faults(...)                replace all faults; .update_faults(**fields) changes some
      .invalidate_tickets()                every ticket issued so far gets 401 from now on
      .now() / .advance(s) / .advance_to(t)   simulated epoch seconds; move time on explicitly
      .request_count                       RequestCount(total, by_path, dropped, faulted)
      .state                               the SimState below

    SimState (server.state):
      .set_time_scale(x)                   speed of simulated time (0 freezes; advance() still works)
      .set_maintenance(node, on=True)      HA maintenance: the CRM moves running HA guests away and back
      .set_node_online(node, online)       a node goes offline (595 when routed to) or comes back
      .set_ha_master(node | AUTO | None)   which node /cluster/ha/status/current names as master
      .set_crs(text | dict | None)         GET /cluster/options `crs`
      .set_ha_resource(vmid, failback=, auto_rebalance=)   HA resource options
      .set_usage(vmid, memory_used_mib=, cpu_used_milli=)    a guest's live usage (drifting load)
      .set_ha_rules(rules)                 replace the HA rules (cluster.HaRule values)
      .set_pressure(node | vmid, **psi) / .clear_pressure(...)   PSI values from now on (psi.py)
      .ha_log()                            what the simulated CRM did and refused, with times
      .placement(), .guest(vmid), .tasks(), .task(upid), .node_usage(node), .snapshot(), .to_cluster()
      .record_history() / .history()       every state passed through (HistoryPoint: nodes, guests with
                                           their migration `target`), to check a property at every instant

    Faults(...): locked, offline_nodes, task_error, task_hang, task_warnings, storage_error,
      no_quorum, delay, drop_first, drop_probability, seed,
      requests=(RequestFault(path, method, action="error"|"lost"|"late"|"empty"|"echo", status, message,
                             regex, first, every, since), ...),
      node_events=(NodeEvent(node, "maintenance"|"active"|"offline"|"online",
                             after_migrations=N | at=epoch), ...),
      ticket_lifetime_s, tickets_revoked_at

The simulated HA manager follows PVE (details in ha.py): a migration blocked by negative resource
affinity fails its `hamigrate` task; positive partners move along; a guest moved off the nodes a
strict node-affinity rule allows is moved back by the CRM one round later (with `failback`, also
for non-strict rules). Only maintenance switched on while running makes the CRM act; a model's
maintenance flag is reported (LRM "maintenance mode") but the CRM leaves such a node alone.
"""

from proxlb_opt.simulator.faults import Faults, NodeEvent, RequestFault
from proxlb_opt.simulator.server import RequestCount, SimulatorServer, banner, run_simulator
from proxlb_opt.simulator.state import AUTO, HistoryPoint, PveError, SimState

__all__ = ["AUTO", "Faults", "HistoryPoint", "NodeEvent", "PveError", "RequestCount", "RequestFault", "SimState",
           "SimulatorServer", "banner", "run_simulator"]
