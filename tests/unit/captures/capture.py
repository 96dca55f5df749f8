#!/usr/bin/env python3
"""Capture real Patroni answers for the unit tests of the day-2 decisions: ``/cluster``, each member's
``/patroni`` and ``/config`` of a 3-member cluster the rollout made on the lab's machines, in the states those
decisions judge. One JSON file per release and state, next to this script:

    .venv/bin/python tests/unit/captures/capture.py [--release bookworm|trixie]   (root; default: both)

bookworm runs Patroni 3.0.2, trixie 4.0.7. The lab's addresses (10.77.<slot>.x) stay in the answers as captured.
"""

import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent.parent / "systemd_machines")]

import highstate  # noqa: E402
import machines  # noqa: E402
import netlab  # noqa: E402

API = highstate.API_PORT


def answers(lab):
    """What the decisions read: ``/cluster`` and ``/config`` from pg1, ``/patroni`` of every member (None where
    its Patroni does not answer)."""

    def get(node, path):
        try:
            return json.loads(node.http(path, port=API))
        except (ValueError, ConnectionError):  # no answer: nobody listens on the port
            return None

    return {
        "cluster": get(lab.nodes[0], "/cluster"),
        "config": get(lab.nodes[0], "/config"),
        "patroni": {node.name: get(node, "/patroni") for node in lab.nodes},
    }


def save(lab, state):
    (HERE / f"{lab.release}-{state}.json").write_text(json.dumps(answers(lab), indent=1, sort_keys=True) + "\n")
    print(f"{lab.release}: {state}", flush=True)


def members(lab):
    return {m["name"]: m for m in json.loads(lab.nodes[0].http("/cluster", port=API))["members"]}


def patch(lab, body):
    code = (
        "import json, sys, urllib.request as u\n"
        "r = u.Request(sys.argv[1], data=sys.argv[2].encode(), method='PATCH', "
        "headers={'Content-Type': 'application/json'})\n"
        "u.urlopen(r, timeout=10).read()\n"
    )
    url = f"http://{lab.nodes[0].address}:{API}/config"
    netlab._sh("ip", "netns", "exec", lab.switch, sys.executable, "-c", code, url, json.dumps(body))


def healthy(lab):
    return netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, API), 120)


def capture(release):
    with machines.MachineLab(machines=3, release=release) as lab:
        lab.wait_minions()
        lab.set_pillar(highstate.pillar(lab))
        code, steps, _ = highstate.orchestrate(lab, "orch.patroni")
        assert code == 0, highstate.failures(steps)
        leader, _ = healthy(lab)
        time.sleep(6)  # a loop_wait: every member has written its state to the DCS
        save(lab, "healthy")
        replicas = sorted(m.name for m in lab.nodes if m.name != leader)
        config = f"/etc/patroni/{lab.version}-main.yml"

        tagged = next(m for m in lab.nodes if m.name == replicas[1])
        tagged.run(["sh", "-c", f"printf 'tags:\\n  nofailover: true\\n' >> {config}"])
        tagged.run(["systemctl", "reload", f"patroni@{lab.version}-main"])
        netlab.wait_until("nofailover in /cluster", lambda: members(lab)[tagged.name].get("tags"), 30)
        save(lab, "nofailover")
        tagged.run(["sed", "-i", "/^tags:$/,$d", config])
        tagged.run(["systemctl", "reload", f"patroni@{lab.version}-main"])
        netlab.wait_until("no tags", lambda: not members(lab)[tagged.name].get("tags"), 30)

        lagging = next(m for m in lab.nodes if m.name == replicas[0])
        receiver = lagging.run(["pgrep", "-f", "postgres: .*walreceiver"]).stdout.split()[0]
        lagging.run(["kill", "-STOP", receiver])
        writer = next(m for m in lab.nodes if m.name == leader)
        writer.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "psql",
                "-X",
                "-q",
                "-c",
                "CREATE TABLE bulk AS SELECT repeat('x', 1000) AS filler FROM generate_series(1, 4000)",
            ]
        )
        time.sleep(1)
        save(lab, "lagging")
        lagging.run(["kill", "-CONT", receiver])
        healthy(lab)

        stopped = next(m for m in lab.nodes if m.name == replicas[1])
        stopped.run(["systemctl", "stop", f"patroni@{lab.version}-main"])
        netlab.wait_until("the member gone from /cluster", lambda: stopped.name not in members(lab), 60)
        save(lab, "member_stopped")
        stopped.run(["systemctl", "start", f"patroni@{lab.version}-main"])
        healthy(lab)

        patch(lab, {"synchronous_mode": True})
        netlab.wait_until(
            "a synchronous standby", lambda: any(m["role"] == "sync_standby" for m in members(lab).values()), 60
        )
        time.sleep(6)
        save(lab, "synchronous")
        patch(lab, {"synchronous_mode": False})
        netlab.wait_until(
            "no synchronous standby",
            lambda: not any(m["role"] == "sync_standby" for m in members(lab).values()),
            60,
        )

        patch(lab, {"postgresql": {"parameters": {"max_connections": 150}}})
        netlab.wait_until(
            "every member pending a restart",
            lambda: all(m.get("pending_restart") for m in members(lab).values()),
            60,
        )
        save(lab, "pending_restart")


def main(argv):
    release, rest = machines.release_option(argv)
    if rest:
        print(__doc__, file=sys.stderr)
        return 2
    for name in [release] if release else list(machines.RELEASES):
        capture(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
