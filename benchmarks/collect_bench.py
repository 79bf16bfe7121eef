"""Collection cost: API requests and seconds to read a 1,000-guest cluster from the simulator.

    python -m benchmarks.collect_bench [--nodes 16] [--guests 1000] [--repeat 3]

Reports the median of `--repeat` runs, with and without reading each guest's config (the only
per-guest requests, needed to tell local from shared disks).
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks.generate import generate_cluster
from proxlb_opt.adapters.proxmox import ProxmoxClient, collect_with_stats
from proxlb_opt.cluster import cluster_from_dict
from proxlb_opt.config import settings_from_dict
from proxlb_opt.simulator import SimulatorServer


def measure(n_nodes: int, n_guests: int, repeat: int) -> list[dict]:
    cluster = cluster_from_dict(generate_cluster(n_nodes, n_guests, seed=1), source="bench")
    rows = []
    with SimulatorServer(cluster, time_scale=1.0) as sim:
        settings = settings_from_dict({"proxmox_api": {"hosts": [sim.address], "user": sim.user,
                                                       "token_id": sim.token_name, "token_secret": sim.token_secret,
                                                       "ssl_verification": sim.ca_file}})
        for read_configs in (False, True):
            runs = []
            for _ in range(repeat):
                client = ProxmoxClient(settings.api)
                model, stats = collect_with_stats(client, read_configs=read_configs)
                assert len(model["guests"]) == n_guests
                runs.append(stats)
            rows.append({"read_configs": read_configs, "guests": n_guests, "nodes": n_nodes,
                         "requests": runs[0].requests,
                         "median_seconds": round(statistics.median(r.seconds for r in runs), 3),
                         "runs": [round(r.seconds, 3) for r in runs]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--guests", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| guest configs read | guests | API requests | median seconds | runs |")
    print("|---|---|---|---|---|")
    for row in measure(args.nodes, args.guests, args.repeat):
        print(f"| {'yes' if row['read_configs'] else 'no'} | {row['guests']} | {row['requests']} | "
              f"{row['median_seconds']} | {row['runs']} |")


if __name__ == "__main__":
    main()
