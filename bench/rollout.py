#!/usr/bin/env python3
"""The orchestrated rollout against the floor, in the same run, on the same machines.

Floor: the Debian way by hand through Salt (createconfig on every member, then systemctl enable --now
patroni@<version>-main on all at once, Patroni's default timing), as bench/debian_way.py measures it. Rollout:
``salt-run state.orchestrate orch.patroni`` from the same image state (packages installed; no modules, config
or cluster), to the same end: one leader, every other member streaming on its timeline, checked through the
REST API. Each run resets the machines to their image first. Runs alternate floor and rollout; medians.

Then how it grows: the rollout for 1 to 4 replicas, and for 1, 3 and 6 clusters in one run on 3 machines.

With --etcd, the DCS too (issue 22): pillar etcd on the three machines instead of the lab's etcd. Floor: the same
/etc/default/etcd files written through Salt, every member started at once (systemctl restart --no-block), etcd
healthy on all three, then the Debian way as above on it. Rollout: orch.patroni, whose first phase deploys etcd.

After each rollout, the same orchestration again on the converged cluster (issue 24: what a re-run that changes
nothing costs), with its steps.

Prints a line per run on stderr and, last, one JSON line on stdout: floor_seconds, rollout_seconds, ratio (against
the floor's median) and ratio_to_fastest_floor, where the rollout's seconds go (median per step), the converged
re-run's seconds and steps, and the growth figures. Beside each figure of seconds, the CPU seconds this host spent
meanwhile, by part (*_cpu_seconds_*: the machines, their Salt minions, Patroni with PostgreSQL and what it runs, the
Salt master, salt-run, the rest): on two cores the rollout's growth is bounded by CPU, not by waits.

Usage (root, after `make test` has built .venv and the images):
    .venv/bin/python bench/rollout.py [RUNS] [--release bookworm|trixie] [--no-growth] [--etcd]
(default: 3 runs, this host's release; --no-growth: only floor against rollout; --etcd: with the DCS, no growth)
"""

import base64
import json
import pathlib
import resource
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "_modules")]
import machines  # noqa: E402
import netlab  # noqa: E402
import patroni_debian_etcd  # noqa: E402 - the very /etc/default/etcd the formula writes, for the floor
import patroni_debian_render  # noqa: E402

AUTHENTICATION = {"replication": {"password": "bench-replication"}}
ORCHESTRATE = ("state.orchestrate", "orch.patroni", "--out=json")


def pillar(lab, clusters, etcd=False):
    """Clusters ``<version>-main``, ``<version>-c2``, … with Patroni's default timing, each on its own port; on the
    lab's etcd, or with ``etcd`` on pillar etcd's (the three machines)."""
    scopes = [f"{lab.version}-main"] + [f"{lab.version}-c{index}" for index in range(2, clusters + 1)]
    wanted = {
        "patroni": {
            "dcs": lab.dcs(),
            "clusters": {
                scope: {"port": 5432 + index, "authentication": AUTHENTICATION} for index, scope in enumerate(scopes)
            },
        }
    }
    if etcd:
        del wanted["patroni"]["dcs"]
        wanted["etcd"] = etcd_pillar(lab)
    return wanted


def etcd_pillar(lab):
    return {"cluster": "bench", "members": {node.name: node.address for node in lab.nodes}}


def fresh(lab, clusters=1, etcd=False):
    """Every machine back to its image (packages installed, nothing else), etcd empty, the pillar given."""
    lab.reset_all()
    lab.set_pillar(pillar(lab, clusters, etcd))


def etcd_by_hand(lab):
    """The floor's etcd: each member's /etc/default/etcd as the formula writes it, sent through Salt, then every
    member started at once, until etcd's /health says true on all three. Returns its DCS section."""
    checked = patroni_debian_render._check_etcd(etcd_pillar(lab))
    for node in lab.nodes:
        env = patroni_debian_etcd._environment(node.name, checked, "new", checked["members"])
        text = patroni_debian_render._env_file_text(patroni_debian_etcd.ENV_HEADER, env)
        encoded = base64.b64encode(text.encode()).decode()
        lab.salt(node.name, "cmd.run", f"echo {encoded} | base64 -d > /etc/default/etcd")
    lab.salt("*", "cmd.run", "systemctl enable etcd && systemctl restart --no-block etcd")

    def healthy_everywhere():
        try:
            answers = [json.loads(node.http("/health", port=2379)) for node in lab.nodes]
            return all(answer.get("health") == "true" for answer in answers) or None
        except (ValueError, ConnectionError, OSError):
            return None

    netlab.wait_until("etcd healthy on every member", healthy_everywhere, 60, interval=0.1)
    return patroni_debian_render._etcd_dcs(checked)


def healthy(lab, clusters):
    """Each cluster's ``(leader, timeline)`` through the REST API, or None while one is not healthy yet."""
    seen = [netlab.health(lab.nodes, 8008 + index) for index in range(clusters)]
    return seen if all(seen) else None


def floor_once(lab, etcd=False):
    """Seconds of the Debian way by hand to a healthy cluster, and the CPU seconds it took (:py:func:`cpu_of`)."""
    fresh(lab, etcd=etcd)
    lab.provision()  # by hand, createconfig must exist on the hosts, as Debian's script does
    started = time.monotonic()
    cpu = cpu_of(lab, lambda: machines.debian_way(lab, etcd_by_hand(lab) if etcd else lab.dcs(), AUTHENTICATION, {}))
    return time.monotonic() - started, cpu[1]


def rollout_once(lab, clusters=1, etcd=False):
    """Seconds from ``salt-run`` to healthy clusters, the seconds of each orchestration step, the CPU seconds."""
    fresh(lab, clusters, etcd)
    (seconds, steps), cpu = cpu_of(lab, lambda: orchestrated(lab, clusters))
    return seconds, steps, cpu


SALT_RUN = "salt-run (the benchmark's own commands)"
REST = "the host's rest (kernel, the lab's Salt client, other programs)"


def cpu_of(lab, run):
    """``run()``'s result, and the CPU seconds this host spent while it ran, by part: the machines whole and their
    Salt minions, Patroni with PostgreSQL (bootstrap, clone and all it runs), the Salt master, ``salt-run`` and
    the rest (``MachineLab.cpu_seconds``)."""
    before, children = lab.cpu_seconds(), _children_cpu()
    result = run()
    after = lab.cpu_seconds()
    spent = {part: after[part] - before.get(part, 0.0) for part in after}
    spent[SALT_RUN] = _children_cpu() - children
    spent[REST] = spent["host"] - spent["machines"] - spent["Salt master"] - spent[SALT_RUN]
    return result, {part: round(seconds, 2) for part, seconds in spent.items()}


def _children_cpu():
    """CPU seconds of this benchmark's ended child processes (``salt-run``, each through ``ip netns exec``)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def orchestrated(lab, clusters=1):
    """``orch.patroni`` on the lab as it is: seconds from ``salt-run`` to healthy clusters, and each step's."""
    started = time.monotonic()
    code, output = lab.salt_run(*ORCHESTRATE)
    data = json.JSONDecoder().raw_decode(output[output.index("{") :])[0]
    states = next(iter(data["data"].values())).values()
    if code:
        failed = [f"{state['__id__']}: {state['comment']}" for state in states if state["result"] is False]
        raise SystemExit("the rollout failed: " + "\n".join(failed)[:4000])
    netlab.wait_until("every cluster healthy", lambda: healthy(lab, clusters), 60, interval=0.1)
    seconds = time.monotonic() - started
    steps = {state["__id__"]: state["duration"] / 1000 for state in states}
    # the preparation steps run in parallel: what lies outside the steps is the wall time minus their span
    spans = [(_clock(state["start_time"]), _clock(state["start_time"]) + state["duration"] / 1000) for state in states]
    span = max(end for _, end in spans) - min(start for start, _ in spans)
    steps["salt-run start and finish (outside the steps)"] = seconds - span
    return seconds, steps


def medians(steps):
    """Each step's median seconds over runs (``steps``: one ``{step: seconds}`` per run)."""
    return {step: round(statistics.median(spent[step] for spent in steps), 2) for step in steps[0]}


def _clock(text):
    """Seconds since midnight of a state's ``start_time`` (``HH:MM:SS.ffffff``)."""
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def main(runs, release, growing=True, etcd=False):
    floors, rollouts, steps, reruns, rerun_steps, floor_cpu, rollout_cpu = [], [], [], [], [], [], []
    growth = {"replicas": {}, "clusters": {}}
    growth_cpu = {"replicas": {}, "clusters": {}}
    with machines.MachineLab(machines=3, release=release) as lab:
        for run in range(runs):
            seconds, cpu = floor_once(lab, etcd)
            floors.append(seconds)
            floor_cpu.append(cpu)
            seconds, spent, cpu = rollout_once(lab, etcd=etcd)
            rollouts.append(seconds)
            steps.append(spent)
            rollout_cpu.append(cpu)
            again, spent_again = orchestrated(lab)
            reruns.append(again)
            rerun_steps.append(spent_again)
            print(
                f"run {run + 1}: floor {floors[-1]:.1f} s ({floor_cpu[-1]['host']:.1f} s of CPU),"
                f" rollout {seconds:.1f} s ({cpu['host']:.1f} s of CPU), converged re-run {again:.1f} s",
                file=sys.stderr,
            )
        growth["replicas"][2] = statistics.median(rollouts)
        growth_cpu["replicas"][2] = medians(rollout_cpu)
        for clusters in (1, 3, 6) if growing else ():
            seconds, _, growth_cpu["clusters"][clusters] = rollout_once(lab, clusters)
            growth["clusters"][clusters] = seconds
            print(f"{clusters} cluster(s) on 3 machines: {seconds:.1f} s", file=sys.stderr)
    for members in (2, 4, 5) if growing else ():
        with machines.MachineLab(machines=members, release=release) as lab:
            seconds, _, growth_cpu["replicas"][members - 1] = rollout_once(lab)
            growth["replicas"][members - 1] = seconds
            print(f"{members - 1} replica(s): {seconds:.1f} s", file=sys.stderr)
    floor, rollout = statistics.median(floors), statistics.median(rollouts)
    print(
        json.dumps(
            {
                "benchmark": "rollout_with_etcd_vs_floor" if etcd else "rollout_vs_floor",
                "release": release or machines.host_release(),
                "runs": runs,
                "floor_seconds": round(floor, 2),
                "rollout_seconds": round(rollout, 2),
                "ratio": round(rollout / floor, 3),
                "ratio_to_fastest_floor": round(rollout / min(floors), 3),
                "floor_runs": [round(s, 2) for s in floors],
                "rollout_runs": [round(s, 2) for s in rollouts],
                "rollout_steps_median_seconds": medians(steps),
                "floor_cpu_seconds_median": medians(floor_cpu),
                "rollout_cpu_seconds_median": medians(rollout_cpu),
                "converged_rerun_seconds": round(statistics.median(reruns), 2),
                "converged_rerun_runs": [round(s, 2) for s in reruns],
                "converged_rerun_steps_median_seconds": medians(rerun_steps),
                "rollout_seconds_by_replicas": {n: round(s, 2) for n, s in sorted(growth["replicas"].items())},
                "rollout_seconds_by_clusters_on_3_machines": {
                    n: round(s, 2) for n, s in sorted(growth["clusters"].items())
                },
                "rollout_cpu_seconds_by_replicas": dict(sorted(growth_cpu["replicas"].items())),
                "rollout_cpu_seconds_by_clusters_on_3_machines": dict(sorted(growth_cpu["clusters"].items())),
            }
        )
    )


if __name__ == "__main__":
    chosen, rest = machines.release_option(sys.argv[1:])
    etcd = "--etcd" in rest
    growing = "--no-growth" not in rest and not etcd
    rest = [arg for arg in rest if arg not in ("--no-growth", "--etcd")]
    main(int(rest[0]) if rest else 3, chosen, growing, etcd)
