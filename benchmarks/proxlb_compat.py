"""Compatibility check with a real client: ProxLB 2.3.0 plans against proxlb-opt's PVE API simulator.

Starts the simulator (proxlb_opt.simulator) on a cluster model, writes a ProxLB 2.3.0 proxlb.yaml
that points at it, runs ProxLB unchanged in its own venv (benchmarks/.proxlb-venv) as a dry run with
JSON output (`python -m proxlb -c proxlb.yaml -d -j`, `service.daemon: false`), and prints the
migrations ProxLB plans (guest, from, to). A run that gets that far shows the simulator answers every
request ProxLB makes the way ProxLB expects. ProxLB's `ssl_verification` is a boolean (no CA path), so
verification stays on and the simulator's CA reaches ProxLB's requests through REQUESTS_CA_BUNDLE.

    python -m benchmarks.proxlb_compat [MODEL] [--token] [--no-throttle] [--keep DIR] [--json]

Exit codes: 0 ProxLB planned (even "nothing to do"); 1 ProxLB failed or its answer could not be read
(the failing requests and ProxLB's own messages are printed); 2 bad arguments or the model file;
3 the competitor venv could not be set up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.competitors import DRIVERS, parse_proxlb_json, proxlb_config, proxlb_moves, run_child
from benchmarks.setup_competitors import CompetitorSetupError, ensure_competitor_venv
from proxlb_opt.cluster import load_model
from proxlb_opt.config import Settings
from proxlb_opt.errors import ProxlbOptError

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_DIR / "models" / "demo.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxlb_compat", description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL), help="cluster model (default models/demo.yaml)")
    parser.add_argument("--token", action="store_true", help="authenticate with the API token instead of a password")
    parser.add_argument("--no-throttle", action="store_true",
                        help="skip ProxLB's 0.1 s pause before each per-guest request (large models)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before ProxLB is stopped")
    parser.add_argument("--keep", help="directory to keep proxlb.yaml and ProxLB's output in")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (stdout only JSON)")
    args = parser.parse_args(argv)

    from proxlb_opt.simulator import SimulatorServer

    try:
        cluster = load_model(args.model)
    except (ProxlbOptError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        python = ensure_competitor_venv()
    except CompetitorSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="proxlb-compat-"))
    workdir.mkdir(parents=True, exist_ok=True)
    server = SimulatorServer(cluster, port=0, ca_dir=str(workdir / "ca")).start()
    try:
        config = workdir / "proxlb.yaml"
        config.write_text(proxlb_config(server, cluster, Settings(), use_token=args.token), encoding="utf-8")
        env = dict(os.environ, REQUESTS_CA_BUNDLE=str(server.ca_file), NO_PROXY="127.0.0.1,localhost,::1",
                   no_proxy="127.0.0.1,localhost,::1", PYTHONUNBUFFERED="1")
        cmd = [os.path.abspath(python), str(DRIVERS / "proxlb_run.py"), *(["--no-throttle"] if args.no_throttle else []),
               "--", "-c", str(config), "-d", "-j"]
        print(f"simulator: {cluster.name!r}, {cluster.n_nodes} nodes, {cluster.n_guests} guests at "
              f"https://{server.address} (CA {server.ca_file}); running ProxLB 2.3.0 dry run ...", file=sys.stderr)
        child = run_child(cmd, args.timeout, env=env, cwd=workdir)
        counts = server.request_count
    finally:
        server.stop()
    (workdir / "proxlb.stdout").write_text(child.stdout, encoding="utf-8")
    (workdir / "proxlb.stderr").write_text(child.stderr, encoding="utf-8")

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        print(f"requests ProxLB made ({counts.total}, {counts.dropped} dropped):", file=sys.stderr)
        for path, n in sorted(counts.by_path.items()):
            print(f"  {n:6d}  {path}", file=sys.stderr)
        lines = [line for line in (child.stdout + "\n" + child.stderr).splitlines() if line.strip()]
        print("ProxLB's last lines:", file=sys.stderr)
        for line in lines[-25:]:
            print(f"  {line}", file=sys.stderr)
        print(f"config and output kept in {workdir}", file=sys.stderr)
        return 1

    if child.timed_out:
        return fail(f"ProxLB did not finish within {args.timeout:.0f} s")
    if child.returncode != 0:
        return fail(f"ProxLB exited with code {child.returncode}")
    try:
        data = parse_proxlb_json(child.stdout)
    except ValueError as exc:
        return fail(f"ProxLB's JSON output could not be read: {exc}")
    placement, order, problems = proxlb_moves(cluster, data)
    if problems:
        return fail("ProxLB's view of the cluster differs from the model: " + "; ".join(problems[:5]))
    moves = [{"vmid": int(cluster.guest_vmid[g]), "name": cluster.guest_names[g], "from": cluster.node_names[s],
              "to": cluster.node_names[t]} for g, s, t in order]
    shown = Path(args.model).resolve()
    shown = shown.relative_to(REPO_DIR) if shown.is_relative_to(REPO_DIR) else shown
    result = {"model": str(shown), "proxlb": "2.3.0", "auth": "token" if args.token else "password",
              "exit_code": child.returncode, "seconds": round(child.wall_s, 2), "requests": counts.total,
              "requests_by_path": dict(sorted(counts.by_path.items())), "guests_seen": len(data.get("guests", {})),
              "nodes_seen": sorted(data.get("nodes", {})), "migrations": moves}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"ProxLB 2.3.0 ran against the simulator in {child.wall_s:.1f} s: exit code 0, {counts.total} API requests "
          f"over {len(counts.by_path)} endpoints, {len(data.get('guests', {}))} guests and "
          f"{len(data.get('nodes', {}))} nodes read.")
    if not moves:
        print("ProxLB plans no migration (balanced within its balanciness).")
    else:
        print(f"ProxLB plans {len(moves)} migration(s), in its order:")
        width = max(len(m["name"]) for m in moves)
        for m in moves:
            print(f"  {m['vmid']:>6}  {m['name']:<{width}}  {m['from']} -> {m['to']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
