#!/usr/bin/env python3
"""How long a cluster the rollout made is without a writable leader, and without its VIP, when the leader's machine
loses power; and how long a switchover takes. For the timing profiles of pillar ``timing``: debian (ttl 30,
loop_wait 10) and fast (ttl 20, loop_wait 5).

Each profile gets fresh machines and one rollout of cluster <version>-main with a VIP (bookworm: DCS etcd, read by
vip-manager 1.0.2; trixie: etcd3, read by vip-manager2). Then, per run, every replica streaming on the leader's
timeline first:
  failover: the leader's machine powered off (its network link down too: a dead host answers no ARP for the VIP)
    → a surviving member accepts a write (INSERT through its socket), and → the VIP accepts a connection on the
    new leader's PostgreSQL port; then the machine boots again and rejoins. Held against ttl + loop_wait: the
    leader key expires within ttl of the leader's last update, and a replica notices within one loop.
  switchover: ``salt <leader> patroni_debian.switchover`` → its ``seconds`` (until the new leader runs and every
    member streams again).

Prints a line per run on stderr and one JSON line per profile on stdout: medians, every run, and the bound.

Usage (root, after `make test` has built .venv and the images):
    .venv/bin/python bench/failover.py [RUNS] [--release bookworm|trixie]   (default 3 runs, this host's release)
"""

import json
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
import machines  # noqa: E402
import netlab  # noqa: E402

API_PORT = 8008
PROFILES = ("debian", "fast")
TIMING = {"debian": (30, 10), "fast": (20, 5)}  # (ttl, loop_wait) of patroni_debian.TIMING_PROFILES


def pillar(lab, profile):
    dcs = lab.dcs("etcd3" if lab.release == "trixie" else "etcd")
    cluster = {
        "timing": profile,
        "vip": lab.slot.vip,
        "authentication": {"replication": {"password": "bench-replication"}},
    }
    return {"patroni": {"dcs": dcs, "clusters": {f"{lab.version}-main": cluster}}}


def rollout(lab, profile):
    lab.reset_all()
    lab.set_pillar(pillar(lab, profile))
    code, output = lab.salt_run("state.orchestrate", "orch.patroni")
    if code:
        raise SystemExit(f"the rollout failed:\n{output[-4000:]}")
    streaming(lab)
    lab.nodes[0].run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-c", "CREATE TABLE bench (n int)"])


def streaming(lab):
    return netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, API_PORT), 180, 0.2)


def writes(node):
    argv = ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-c", "INSERT INTO bench VALUES (1)"]
    try:
        return node.run(argv, check=False, timeout=5).returncode == 0
    except Exception:  # noqa: BLE001 - a machine that does not answer does not write
        return False


def vip_answers(lab, port):
    """Whether the VIP accepts a TCP connection on PostgreSQL's port, from the switch (where clients are)."""
    probe = f"import socket; socket.create_connection(('{lab.slot.vip}', {port}), timeout=0.5).close()"
    argv = ["ip", "netns", "exec", lab.switch, sys.executable, "-c", probe]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def link(machine, state):
    """``machine``'s network link down, as a dead host's, or up again with its default route (which a link
    taken down loses)."""
    subprocess.run(["ip", "-n", machine.netns, "link", "set", "eth0", state], check=True)
    if state == "up":
        route = ["route", "replace", "default", "via", machine.lab.slot.gateway, "dev", "eth0"]
        subprocess.run(["ip", "-n", machine.netns, *route], check=True)


def failover_once(lab):
    leader, _ = streaming(lab)
    old = next(node for node in lab.nodes if node.name == leader)
    others = [node for node in lab.nodes if node is not old]
    cut = time.monotonic()
    old.power_cut()
    link(old, "down")
    to_writes = to_vip = None
    while to_writes is None or to_vip is None:
        now = time.monotonic() - cut
        if now > 180:
            raise SystemExit(f"no writable leader or no VIP 180 s after the power cut of {leader}")
        if to_writes is None and any(writes(node) for node in others):
            to_writes = time.monotonic() - cut
        if to_vip is None and vip_answers(lab, 5432):
            to_vip = time.monotonic() - cut
        time.sleep(0.1)
    link(old, "up")
    old.boot()
    lab.wait_minions()
    streaming(lab)
    return to_writes, to_vip


def switchover_once(lab):
    leader, _ = streaming(lab)
    result = lab.salt(leader, "patroni_debian.switchover", lab.version, "main")[leader]
    if not isinstance(result, dict):
        raise SystemExit(f"the switchover failed: {result}")
    return result["seconds"]


def main(runs, release):
    with machines.MachineLab(machines=3, release=release) as lab:
        for profile in PROFILES:
            rollout(lab, profile)
            writes_runs, vip_runs, switchover_runs = [], [], []
            for run in range(runs):
                to_writes, to_vip = failover_once(lab)
                writes_runs.append(to_writes)
                vip_runs.append(to_vip)
                switchover_runs.append(switchover_once(lab))
                print(
                    f"{profile} run {run + 1}: writes {to_writes:.1f} s, VIP {to_vip:.1f} s, "
                    f"switchover {switchover_runs[-1]:.1f} s",
                    file=sys.stderr,
                )
            ttl, loop_wait = TIMING[profile]
            print(
                json.dumps(
                    {
                        "benchmark": "failover",
                        "release": lab.release,
                        "profile": profile,
                        "runs": runs,
                        "killed_leader_to_writes_seconds": round(statistics.median(writes_runs), 2),
                        "killed_leader_to_vip_seconds": round(statistics.median(vip_runs), 2),
                        "bound_seconds": ttl + loop_wait,
                        "switchover_seconds": round(statistics.median(switchover_runs), 2),
                        "writes_runs": [round(s, 2) for s in writes_runs],
                        "vip_runs": [round(s, 2) for s in vip_runs],
                        "switchover_runs": [round(s, 2) for s in switchover_runs],
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    chosen, rest = machines.release_option(sys.argv[1:])
    main(int(rest[0]) if rest else 3, chosen)
