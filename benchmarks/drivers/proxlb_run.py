"""Run ProxLB 2.3.0 unchanged, as `python -m proxlb ARGS`, inside the competitor venv.

    .proxlb-venv/bin/python benchmarks/drivers/proxlb_run.py [--no-throttle] -- -c proxlb.yaml -d -j

ProxLB pauses 0.1 s before each per-guest API request (tags, RRD data): about 0.3 s per running
guest, 45 minutes on a 10,000-guest cluster, spent waiting, not deciding. With --no-throttle those
pauses of at most 0.1 s are skipped; nothing else changes: every request is still made and every
line of ProxLB's balancing code runs as shipped. How many pauses were skipped is written to stderr
as one JSON line, `{"proxlb_run": {"throttle_sleeps_skipped": N, "throttle_seconds_skipped": S}}`.
This file belongs to proxlb-opt's benchmark; it runs ProxLB as a black box and contains none of its code.
"""

import atexit
import json
import runpy
import sys
import time

THROTTLE_MAX_S = 0.1


def main() -> None:
    args = sys.argv[1:]
    no_throttle = "--no-throttle" in args
    if "--" in args:
        args = args[args.index("--") + 1:]
    skipped = {"throttle_sleeps_skipped": 0, "throttle_seconds_skipped": 0.0}
    if no_throttle:
        real_sleep = time.sleep

        def sleep(seconds: float) -> None:
            if 0 < seconds <= THROTTLE_MAX_S:
                skipped["throttle_sleeps_skipped"] += 1
                skipped["throttle_seconds_skipped"] += seconds
                return
            real_sleep(seconds)

        time.sleep = sleep
    atexit.register(lambda: print(json.dumps({"proxlb_run": skipped}), file=sys.stderr, flush=True))
    sys.argv = ["proxlb", *args]
    runpy.run_module("proxlb", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
