#!/usr/bin/env python3
"""``make demo``: three Debian machines, a Salt master and etcd on this host, and a Patroni cluster rolled out on
them by the orchestration, from the values of pillar.example. ``make demo-down`` removes it all.

    python3 tests/demo.py check     what this host lacks, one sentence each (standard library only: runs first)
    .venv/bin/python tests/demo.py up      the demo (after make deps image)
    python3 tests/demo.py down      processes, namespaces, mounts, overlays, cgroups, folders of the lab: gone

The machines, etcd and the master keep running after ``up``, for the commands it prints.
"""

import json
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
PREFIX = "pdl"  # the names of tests/netlab.py's slot 0, the lab of the commands for people: namespace pdl-sw
MEMORY_NEEDED = 2 << 30  # three machines with PostgreSQL and Patroni, etcd and a master use about 1.2 GiB
DISK_NEEDED = 3 << 30  # the two images (about 1.6 GiB) and the machines' overlays
RUN = ".venv/bin/python tests/machines.py"


# --------------------------------------------------------------------------------------------------
# what the host must offer, checked before anything is installed or started


def problems():
    """One sentence per thing this host lacks for the demo, each saying what to do; empty when all is well."""
    if os.geteuid() != 0:
        return ["The demo builds machines and network namespaces: run it as root (sudo make demo)."]
    found = []
    release = _os_release()
    if release.get("ID") != "debian" or release.get("VERSION_ID") != "12":
        # the lab's image is bookworm, built from this host's bookworm mirror
        name = release.get("PRETTY_NAME", "this system")
        found.append(f"The demo runs on Debian 12 (bookworm), not {name}: use a Debian 12 host or VM.")
    if _lab_is_up():
        found.append(
            "A demo is already up: reuse it (its commands: .venv/bin/python tests/machines.py salt 'pg*' test.ping), "
            "or remove it with make demo-down, then make demo."
        )
    elif not _namespaces_work():
        found.append(
            "This host cannot make network namespaces or mount namespaces (an unprivileged container?), so "
            "systemd-nspawn cannot boot the machines: run the demo on a Debian host, a VM or a privileged container."
        )
    available = _meminfo().get("MemAvailable", 0)
    if available < MEMORY_NEEDED:
        found.append(
            f"The demo needs {MEMORY_NEEDED >> 30} GiB of free memory, this host has {available / (1 << 30):.1f}: "
            "stop something or use a larger host."
        )
    for folder in ("/var/cache", "/tmp"):
        free = shutil.disk_usage(folder).free
        if free < DISK_NEEDED:
            found.append(
                f"The demo needs {DISK_NEEDED >> 30} GiB free under {folder}, there are {free / (1 << 30):.1f}: free "
                "some space."
            )
    return found


def _os_release():
    values = {}
    try:
        text = pathlib.Path("/etc/os-release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return values
    for line in text.splitlines():
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"')
    return values


def _meminfo():
    values = {}
    with open("/proc/meminfo", encoding="ascii") as stream:
        for line in stream:
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
    return values


def _lab_is_up():
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout.split()
    return f"{PREFIX}-sw" in names


def _namespaces_work():
    probe = f"{PREFIX}-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False).returncode == 0
    if made:
        subprocess.run(["ip", "netns", "delete", probe], capture_output=True, check=False)
    unshared = subprocess.run(["unshare", "--mount", "--pid", "--fork", "true"], capture_output=True, check=False)
    return made and unshared.returncode == 0


# --------------------------------------------------------------------------------------------------
# the demo


class Step:
    """``→ what …`` now, the elapsed seconds every 10 s while it runs, ``✓ what (N s)`` at the end."""

    def __init__(self, what):
        self.what, self.done = what, threading.Event()

    def __enter__(self):
        self.started = time.monotonic()
        print(f"→ {self.what} …", flush=True)
        threading.Thread(target=self._tick, daemon=True).start()
        return self

    def _tick(self):
        while not self.done.wait(10):
            print(f"  … {self.what}: {time.monotonic() - self.started:.0f} s", flush=True)

    def __exit__(self, kind, value, traceback):
        self.done.set()
        mark = "✓" if kind is None else "✗"
        print(f"{mark} {self.what} ({time.monotonic() - self.started:.1f} s)", flush=True)


def demo_pillar(folder, etcd, network, version):
    """pillar.example's cluster as ``<version>-main`` (the release's PostgreSQL), on the lab's etcd and network,
    with a replication password made here; pg1 has the bootstrap role, the others replica (assigned by the
    pillar top file, as on a real master).

    The folder is root's alone and the password is never printed. Returns the file holding it.
    """
    import yaml  # from .venv: up runs after make deps

    example = yaml.safe_load((REPO / "pillar.example").read_text())["patroni"]
    (cluster,) = example["clusters"].values()
    cluster["network"] = network
    cluster["authentication"]["replication"]["password"] = secrets.token_urlsafe(24)
    folder.mkdir(mode=0o700)
    secret = folder / "patroni.sls"
    handle = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w") as stream:
        json.dump({"patroni": {"dcs": {"etcd3": {"hosts": [etcd]}}, "clusters": {f"{version}-main": cluster}}}, stream)
    (folder / "bootstrap.sls").write_text(json.dumps({"patroni": {"role": "bootstrap"}}))
    (folder / "replica.sls").write_text(json.dumps({"patroni": {"role": "replica"}}))
    (folder / "top.sls").write_text(
        "base:\n  'pg*':\n    - patroni\n  'pg1':\n    - bootstrap\n  'pg2,pg3':\n    - match: list\n    - replica\n"
    )
    return secret


def table(summary):
    """The cluster as lines for people."""
    lines = [f"{'member':8} {'role':8} {'state':10} {'timeline':>8} {'lag':>6}  address"]
    for name, member in sorted(summary["members"].items()):
        role, state, timeline, lag = (str(member[key]) for key in ("role", "state", "timeline", "lag"))
        lines.append(f"{name:8} {role:8} {state:10} {timeline:>8} {lag:>6}  {member['host']}:{member['port']}")
    return "\n".join(lines)


def up(release=None):
    sys.path.insert(0, str(HERE))
    import machines
    import netlab

    started = time.monotonic()
    release = release or machines.host_release()
    if release not in machines.RELEASES:
        print(f"--release {release}: the lab has images of {', '.join(machines.RELEASES)}", file=sys.stderr)
        return 2
    version = machines.RELEASES[release]["postgresql"]
    with Step(f"lab image of Debian {release} (built once, then cached)"):
        machines.image(release)
    pillar_root = pathlib.Path(f"/root/.patroni-debian-demo-{time.strftime('%Y%m%d-%H%M%S')}")
    slot = netlab.Slot(0)  # the commands it suggests act on slot 0; a test run's labs take other slots
    secret = demo_pillar(pillar_root, slot.etcd, f"{slot.subnet}.0/24", version)
    lab = machines.MachineLab(machines=3, pillar=pillar_root, release=release, slot=slot)
    with Step("three machines booted, etcd and a Salt master"):
        lab.up()  # they outlive this program, for the commands below
        lab.wait_minions()
    with Step("rollout: salt-run state.orchestrate orch.patroni"):
        code, output = lab.salt_run("state.orchestrate", "orch.patroni", "--out=json")
    steps = json.JSONDecoder().raw_decode(output[output.index("{") :])[0] if "{" in output else {}
    steps = next(iter(steps.get("data", {}).values()), {}).values()
    if code:
        for step in steps:
            if step["result"] is False:
                print(f"✗ {step['__id__']}: {step['comment']}", file=sys.stderr)
        print("The rollout failed; the lab is still up for a look. make demo-down removes it.", file=sys.stderr)
        return 1
    summary = next(step for step in steps if step["__id__"].startswith("Summary"))["changes"]["ret"]
    scope = f"{version}-main"
    cluster = next(iter(summary.values()))[scope]
    where = f"Debian {release}, PostgreSQL {version}, Patroni"
    print(f"\nCluster {scope} ({where}), leader {cluster['leader']}, timeline {cluster['timeline']}:")
    print(table(cluster))
    if cluster.get("vip"):
        print(f"VIP {cluster['vip']}")
    leader = cluster["leader"]
    print(f"\nReady in {time.monotonic() - started:.0f} s. The replication password is in {secret} (root only).")
    print("Try, from this folder:")
    print(f"  {RUN} run {leader} runuser -u postgres -- psql -c 'CREATE TABLE demo AS SELECT 42 AS answer'")
    print(f"  {RUN} run pg2 runuser -u postgres -- psql -c 'SELECT answer FROM demo'   # replicated")
    print(f"  {RUN} salt 'pg*' patroni_debian.wait_members     # each member's health, through Salt")
    other = next(name for name in sorted(cluster["members"]) if name != leader)
    print(f"  {RUN} run {leader} systemctl kill -s KILL patroni@{scope}   # kill the leader (Patroni, PostgreSQL) …")
    print(f"  {RUN} salt {other} patroni_debian.summary       # … a replica leads within the ttl, 30 s")
    print(f"  {RUN} run {leader} systemctl start patroni@{scope}   # the old leader rejoins as a replica")
    print(f"  {RUN} salt-run state.orchestrate orch.patroni  # the rollout again: no change")
    print("  make demo-down                                    # remove everything")
    return 0


def down():
    sys.path.insert(0, str(HERE))
    import netlab

    netlab.remove_stale(netlab.Slot(0))  # the demo's lab only: a test run's labs beside it stay
    for folder in pathlib.Path("/root").glob(".patroni-debian-demo-*"):
        shutil.rmtree(folder, ignore_errors=True)
    print("The demo is down: no machine, namespace, mount, cgroup or lab folder is left.")
    return 0


def main(argv):
    if argv[:1] == ["check"]:
        found = problems()
        for problem in found:
            print(problem, file=sys.stderr)
        return 1 if found else 0
    if argv[:1] == ["up"] and len(argv) in (1, 3) and argv[1:2] in ([], ["--release"]):
        return up(argv[2] if len(argv) == 3 else None)
    if argv[:1] == ["down"]:
        return down()
    print(f"usage: {sys.argv[0]} check | up [--release bookworm|trixie] | down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
