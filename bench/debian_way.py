#!/usr/bin/env python3
"""The floor: bare lab machines to a healthy 3-member cluster by Debian's way, by hand, through Salt.

createconfig on every machine, then systemctl enable --now patroni@<version>-main, until one leader has two
replicas streaming on its timeline. Each run resets the machines to their image first. The orchestrated
rollout (salt-run state.orchestrate) will be measured against this number, in the same run.

Usage (root, after `make test` has built .venv and the images):
    .venv/bin/python bench/debian_way.py [RUNS] [--release bookworm|trixie]   (default: this host's release)
"""

import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
import machines  # noqa: E402

AUTHENTICATION = {"replication": {"password": "bench-replication"}}
DEFAULT_TIMING = {}  # Patroni's defaults as createconfig writes them (ttl 30, loop_wait 10)


def main(runs, release):
    seconds = []
    with machines.MachineLab(machines=3, release=release) as lab:
        for run in range(runs):
            if run:
                for machine in lab.nodes:
                    machine.reset()
                lab.clear_dcs()
            lab.wait_minions()
            lab.provision()
            started = time.monotonic()
            machines.debian_way(lab, lab.dcs(), AUTHENTICATION, DEFAULT_TIMING)
            seconds.append(time.monotonic() - started)
            print(f"run {run + 1}: {seconds[-1]:.1f} s to healthy", file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "debian_way_floor",
                "release": lab.release,
                "runs": runs,
                "seconds": [round(s, 2) for s in seconds],
                "median_seconds": round(statistics.median(seconds), 2),
            }
        )
    )


if __name__ == "__main__":
    chosen, rest = machines.release_option(sys.argv[1:])
    main(int(rest[0]) if rest else 1, chosen)
