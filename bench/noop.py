#!/usr/bin/env python3
"""No-op: a converged highstate re-run on each of 3 members, one member at a time: seconds per member and the
number of changes (which must be 0), beside a bare Salt job, Salt's module sync and the formula alone; then the
same highstates with the minions' ``autoload_dynamic_modules: False`` (the minion setting that removes Salt's
own module sync from every highstate: the modules are synced by orch.patroni, or by ``saltutil.sync_all``).

Brings up lab C, gives the members a pillar for 15-main, converges them with one highstate, then re-runs
highstate RUNS times on every member, with Salt's default and then without the sync. Prints one JSON line last.

Usage (root, after `make test` has built .venv and the image): .venv/bin/python bench/noop.py [RUNS]
"""

import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
import machines  # noqa: E402
import netlab  # noqa: E402


def pillar(lab):
    cluster = {"authentication": {"replication": {"password": "bench-replication"}}}
    return {"patroni": {"dcs": lab.dcs(), "clusters": {f"{lab.version}-main": cluster}}}


def changes(returns):
    return sum(1 for states in returns.values() for state in states.values() if state["changes"])


def failures(returns):
    return [state["comment"] for states in returns.values() for state in states.values() if state["result"] is False]


def converged_highstate(lab, machine, label):
    """One highstate on ``machine``, which must not fail: its seconds and number of changes."""
    started = time.monotonic()
    returns = lab.salt(machine.name, "state.highstate", timeout=400)
    seconds = time.monotonic() - started
    if failures(returns):
        raise SystemExit(f"a converged highstate failed ({label}): {failures(returns)}")
    return seconds, changes(returns)


def converged_highstates(lab, runs, label):
    """``runs`` highstates on each member, one member at a time: their seconds and changes."""
    seconds, changed = [], 0
    for run in range(runs):
        for machine in lab.nodes:
            spent, more = converged_highstate(lab, machine, label)
            seconds.append(spent)
            changed += more
        print(f"{label} run {run + 1}: {', '.join(f'{s:.2f} s' for s in seconds[-3:])}", file=sys.stderr)
    return seconds, changed


def main(runs):
    seconds, changed = [], 0
    with machines.MachineLab(machines=3) as lab:
        lab.wait_minions()
        lab.set_pillar(pillar(lab))
        first = lab.salt("*", "state.highstate", timeout=400)
        if failures(first):
            raise SystemExit(f"the first highstate failed: {failures(first)}")
        netlab.wait_until("15-main healthy", lambda: netlab.health(lab.nodes, 8008), 180)
        # where the seconds go, measured beside it: a bare Salt job, Salt's module sync (highstate runs one
        # first), and the formula alone (state.apply patroni, no sync)
        parts = {"test.ping": [], "saltutil.sync_all": [], "state.apply patroni": []}
        for run in range(runs):
            for machine in lab.nodes:
                took, more = converged_highstate(lab, machine, "Salt's default")
                seconds.append(took)
                changed += more
                for call, spent in parts.items():
                    started = time.monotonic()
                    returns = lab.salt(machine.name, *call.split(), timeout=400)
                    spent.append(time.monotonic() - started)
                    if call == "state.apply patroni":
                        changed += changes(returns)
            print(f"run {run + 1}: {', '.join(f'{s:.2f} s' for s in seconds[-3:])}", file=sys.stderr)
        lab.without_highstate_sync()
        unsynced, more = converged_highstates(lab, runs, "autoload_dynamic_modules: False")
        changed += more
    median = statistics.median(seconds)
    print(
        json.dumps(
            {
                "benchmark": "noop_highstate",
                "members": 3,
                "runs": runs,
                "seconds_per_member": [round(s, 2) for s in seconds],
                "median_seconds_per_member": round(median, 2),
                "changes": changed,
                "median_seconds": {call: round(statistics.median(spent), 2) for call, spent in parts.items()},
                "ratio_to_bare_salt_job": round(median / statistics.median(parts["test.ping"]), 2),
                "without_highstate_sync": {
                    "seconds_per_member": [round(s, 2) for s in unsynced],
                    "median_seconds_per_member": round(statistics.median(unsynced), 2),
                },
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
