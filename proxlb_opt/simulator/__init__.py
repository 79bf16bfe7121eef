"""A stateful, faithful Proxmox VE 9 API simulator over real HTTPS, for tests, benchmarks and rehearsals.

This package owns everything about pretending to be a PVE cluster: the cluster state seeded from a
`Cluster` with a virtual clock and PVE's migrate/task/HA semantics (state.py), the JSON shapes in
PVE's units (views.py), routing and node proxying rules (api.py), tickets/CSRF/API tokens
(auth.py), and the TLS server with fault injection and request counting (server.py).

Nothing in the planning core imports it; the CLI's `simulate` command and the tests do.
"""

from proxlb_opt.simulator.server import RequestCount, SimulatorServer, banner, run_simulator
from proxlb_opt.simulator.state import Faults, PveError, SimState

__all__ = ["Faults", "PveError", "RequestCount", "SimState", "SimulatorServer", "banner", "run_simulator"]
