"""Lab tier B: Debian hosts as namespaces on one machine (shared/reference/test-lab.md, part B).

A switch namespace holds a bridge and etcd; each node is a network namespace with a veth into that bridge, its
own address in a private test subnet that exists only inside these namespaces, an on-link default route, and
private mount and UTS namespaces: its own host name, /etc/hosts, /etc/postgresql, /var/lib/postgresql,
/etc/patroni, /var/log/postgresql and /run. The Debian packages on the machine (PostgreSQL, postgresql-common,
Patroni) run there unmodified. Nothing is added to the machine's own network namespace, and ``down()`` removes
every process, namespace and folder the lab made, also those of a run that was killed.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import sandbox

PREFIX = "pdl"  # namespace names: pdl-sw, pdl-n1, …
SUBNET = "10.77.0"
GATEWAY = f"{SUBNET}.1"
ETCD = f"{GATEWAY}:2379"
REPO = pathlib.Path(__file__).resolve().parent.parent


def _sh(*argv, check=True, timeout=60, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout, **kwargs)


def _pids_in_netns(name):
    proc = _sh("ip", "netns", "pids", name, check=False)
    return [int(pid) for pid in proc.stdout.split()]


def _kill(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _remove_cgroup(folder, seconds=10):
    """rmdir of a cgroup, which the kernel refuses while a process is in it: a machine killed a moment ago
    may still have processes on their way out, or one that escaped its network namespace. Those are killed,
    and the removal retried for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return
        try:
            _kill(int(pid) for pid in (folder / "cgroup.procs").read_text().split())
        except OSError:
            pass
        time.sleep(0.1)


def remove_stale():
    """Remove what an earlier lab left behind (a run that was killed before its teardown)."""
    for line in _sh("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(f"{PREFIX}-"):
            _kill(_pids_in_netns(name))
            _sh("ip", "netns", "delete", name, check=False)
    labs = list(pathlib.Path(tempfile.gettempdir()).glob(f"{PREFIX}-lab-*"))
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in reversed(points):  # machine overlays, innermost first
        if any(point.startswith(f"{lab}/") for lab in labs):
            _sh("umount", "-l", point, check=False)
    for hierarchy in ("systemd", "unified"):
        for group in pathlib.Path(f"/sys/fs/cgroup/{hierarchy}").glob(f"{PREFIX}-*"):
            for folder in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [group]:
                _remove_cgroup(folder)
    for folder in labs:
        shutil.rmtree(folder, ignore_errors=True)


def wait_until(what, probe, timeout, interval=0.5):
    """Call ``probe`` until it returns something true; return it, or fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 - a probe's failure is a value to report, not to raise
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout} s; last seen: {last!r}")
        time.sleep(interval)


def plug_in(switch, netns, address):
    """A network namespace with ``eth0`` on the switch's bridge, ``address``/24 and a default route."""
    _sh("ip", "netns", "add", netns)
    host_end = f"{PREFIX}v{netns.rsplit('-', 1)[-1]}"
    _sh("ip", "-n", switch, "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", netns)
    _sh("ip", "-n", switch, "link", "set", host_end, "master", "br0", "up")
    for command in (
        ["link", "set", "lo", "up"],
        ["link", "set", "eth0", "up"],
        ["address", "add", f"{address}/24", "dev", "eth0"],
        ["route", "add", "default", "via", GATEWAY, "dev", "eth0"],
    ):
        _sh("ip", "-n", netns, *command)


def hosts_file(names_and_addresses):
    return "127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in names_and_addresses) + f"{GATEWAY} etcd salt\n"


def run_inside(name, enter, argv, check=True, timeout=120, **kwargs):
    """Run ``argv`` on a lab host through ``enter`` (its nsenter prefix); a failure names the host."""
    proc = subprocess.run(
        [*enter, *argv], capture_output=True, text=True, timeout=timeout, check=False, cwd="/", **kwargs
    )
    if check and proc.returncode:
        raise AssertionError(
            f"{name}: {' '.join(map(str, argv))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


LEADER_ROLES = ("master", "primary")  # Patroni 3 says master, 4 says primary


def member_statuses(members, api_port):
    """Each member's ``GET /patroni``, or None where it does not answer."""
    seen = {}
    for member in members:
        try:
            seen[member.name] = json.loads(member.http("/patroni", port=api_port))
        except Exception:  # noqa: BLE001 - a member that does not answer is simply not healthy
            seen[member.name] = None
    return seen


def health(members, api_port):
    """``(leader, timeline)`` when one leader has every other member streaming from it on its timeline.

    Judged from the leader's replication view and each replica's timeline, never from "running", which a
    replica reports before it streams.
    """
    seen = member_statuses(members, api_port)
    leaders = [name for name, status in seen.items() if status and status.get("role") in LEADER_ROLES]
    if len(leaders) != 1:
        return None
    leader = seen[leaders[0]]
    timeline = leader.get("timeline")
    streaming = {
        row.get("application_name") for row in leader.get("replication", []) if row.get("state") == "streaming"
    }
    for name, status in seen.items():
        if name != leaders[0]:
            if not status or status.get("role") != "replica" or status.get("timeline") != timeline:
                return None
            if name not in streaming:
                return None
    return leaders[0], timeline


def leader_among(members, api_port):
    """The name of a member that reports itself leader, or None."""
    seen = member_statuses(members, api_port)
    return next((name for name, status in seen.items() if status and status.get("role") in LEADER_ROLES), None)


class Node:
    """One Debian host of the lab."""

    def __init__(self, lab, index):
        self.lab = lab
        self.name = f"pg{index}"
        self.netns = f"{PREFIX}-n{index}"
        self.address = f"{SUBNET}.{10 + index}"
        self.root = lab.root / self.name
        self.holder = None

    # -- life cycle

    def create(self):
        plug_in(self.lab.switch, self.netns, self.address)
        self._lay_out_folders()
        self._start_holder()

    def _lay_out_folders(self):
        postgres = ("postgres", "postgres")
        for folder, owner, mode in (
            ("etc_postgresql", postgres, 0o755),
            ("var_lib_postgresql", postgres, 0o755),
            ("etc_patroni", ("root", "root"), 0o755),
            ("var_log_postgresql", ("root", "postgres"), 0o1775),
        ):
            path = self.root / folder
            path.mkdir(parents=True)
            shutil.chown(path, *owner)
            path.chmod(mode)
        (self.root / "hosts").write_text(hosts_file((node.name, node.address) for node in self.lab.nodes))
        (self.root / "resolv.conf").write_text("")

    def _start_holder(self):
        """A process that keeps the node's mount and UTS namespaces alive; commands join it with nsenter."""
        root = self.root
        setup = "\n".join(
            [
                "set -e",
                f"hostname {self.name}",
                f"mount --bind {root}/etc_postgresql /etc/postgresql",
                f"mount --bind {root}/var_lib_postgresql /var/lib/postgresql",
                f"mount --bind {root}/etc_patroni /etc/patroni",
                f"mount --bind {root}/var_log_postgresql /var/log/postgresql",
                f"mount --bind {root}/hosts /etc/hosts",
                f"mount --bind {root}/resolv.conf /etc/resolv.conf",
                "mount -t tmpfs -o mode=0755 tmpfs /run",
                "install -d -o postgres -g postgres -m 2775 /run/postgresql",
                "echo ready",
                "exec sleep infinity",
            ]
        )
        self.holder = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                setup,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        line = self.holder.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"{self.name}: namespace set-up failed: {line} {self.holder.stderr.read()}")
        self.mount_ns = os.readlink(f"/proc/{self.holder.pid}/ns/mnt")

    def destroy(self):
        if self.holder is not None:
            self.kill_all()
            self.holder.kill()
            self.holder.wait()

    # -- running things on the node

    def _enter(self, user=None):
        argv = ["nsenter", "-t", str(self.holder.pid), "-m", "-u", "-n", "--"]
        if user:
            argv += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--reset-env"]
        return argv

    def run(self, argv, user=None, check=True, timeout=120, env=None):
        return run_inside(self.name, self._enter(user), argv, check, timeout, env={**os.environ, **(env or {})})

    def spawn(self, argv, user, log):
        with open(log, "ab") as stream:
            return subprocess.Popen(
                self._enter(user) + list(argv), stdout=stream, stderr=subprocess.STDOUT, cwd="/", start_new_session=True
            )

    def processes(self):
        """PIDs of every process inside this node but its namespace holder."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != self.holder.pid:
                try:
                    if os.readlink(f"/proc/{entry}/ns/mnt") == self.mount_ns:
                        pids.append(int(entry))
                except OSError:
                    continue
        return pids

    def kill_all(self):
        """A power cut of everything running on the node (its namespaces stay)."""
        while pids := self.processes():
            _kill(pids)
            time.sleep(0.1)

    def module(self, function, *args, **kwargs):
        """Call a function of this checkout's execution module on the node, as root; return its result."""
        return json.loads(self.run(sandbox.module_argv(function, *args, **kwargs)).stdout)

    def http(self, path, port=8008):
        """GET from this node's Patroni REST API, from the switch (as a client on the network would)."""
        return self.lab.http(f"http://{self.address}:{port}{path}")

    def psql(self, sql, port=5432):
        return self.run(["psql", "-X", "-q", "-At", "-p", str(port), "-c", sql], user="postgres").stdout.strip()


class Lab:
    """The switch, etcd, and the nodes; use as a context manager or call up() and down()."""

    def __init__(self, nodes=3):
        self.switch = f"{PREFIX}-sw"
        self.root = None
        self.nodes = []
        self.count = nodes
        self.etcd = None

    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.down()

    def up(self):
        remove_stale()
        self.root = pathlib.Path(tempfile.mkdtemp(prefix=f"{PREFIX}-lab-"))
        self.root.chmod(0o755)  # postgres must reach the program copy below
        self.program = self.root / "program" / "patroni_debian.py"
        self.program.parent.mkdir(mode=0o755)
        shutil.copy(REPO / "_modules" / "patroni_debian.py", self.program)
        self.program.chmod(0o755)
        try:
            _sh("ip", "netns", "add", self.switch)
            for command in (
                ["link", "set", "lo", "up"],
                ["link", "add", "br0", "type", "bridge"],
                ["address", "add", f"{GATEWAY}/24", "dev", "br0"],
                ["link", "set", "br0", "up"],
            ):
                _sh("ip", "-n", self.switch, *command)
            self._start_etcd()
            self.nodes = [self.member(index) for index in range(1, self.count + 1)]
            for node in self.nodes:
                node.create()
        except BaseException:
            self.down()
            raise

    def member(self, index):
        return Node(self, index)

    def _start_etcd(self):
        data = self.root / "etcd"
        peer = f"http://{GATEWAY}:2380"
        with open(self.root / "etcd.log", "ab") as log:
            self.etcd = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.switch,
                    "etcd",
                    "--name",
                    "lab",
                    "--data-dir",
                    str(data),
                    "--listen-client-urls",
                    f"http://{ETCD}",
                    "--advertise-client-urls",
                    f"http://{ETCD}",
                    "--listen-peer-urls",
                    peer,
                    "--initial-advertise-peer-urls",
                    peer,
                    "--initial-cluster",
                    f"lab={peer}",
                    "--enable-v2=true",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until("etcd healthy", lambda: '"health":"true"' in self.http(f"http://{ETCD}/health"), timeout=30)

    def stop_etcd(self):
        """The DCS gone: etcd killed (connections refused), its data kept for :py:meth:`start_etcd`."""
        self.etcd.kill()
        self.etcd.wait()

    def start_etcd(self):
        """etcd started again on its data, once :py:meth:`stop_etcd` stopped it."""
        Lab._start_etcd(self)

    def clear_dcs(self):
        """Forget every cluster in etcd, as before a fresh rollout: the v3 keys (etcd3) and the v2 ones (etcd, which
        vip-manager 1.0.2 reads), which etcd keeps apart."""
        _sh(
            "ip",
            "netns",
            "exec",
            self.switch,
            "etcdctl",
            f"--endpoints=http://{ETCD}",
            "del",
            "--prefix",
            "/",
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        code = (
            "import json, sys, urllib.request\n"
            "base = sys.argv[1]\n"
            "for node in json.load(urllib.request.urlopen(base + '/', timeout=5))['node'].get('nodes', []):\n"
            "    url = base + node['key'] + '?recursive=true' + ('&dir=true' if node.get('dir') else '')\n"
            "    urllib.request.urlopen(urllib.request.Request(url, method='DELETE'), timeout=5)\n"
        )
        _sh("ip", "netns", "exec", self.switch, sys.executable, "-c", code, f"http://{ETCD}/v2/keys")

    def _keep_logs(self):
        """Copy every log of the lab to $PATRONI_DEBIAN_LAB_LOGS, when set, before it is removed."""
        target = os.environ.get("PATRONI_DEBIAN_LAB_LOGS")
        if not target or self.root is None:
            return
        for log in self.root.rglob("*.log"):
            destination = pathlib.Path(target) / log.relative_to(self.root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, destination)

    def http(self, url, timeout=3):
        """GET ``url`` from inside the switch namespace; the body as text."""
        code = (
            "import sys, urllib.request\n"
            "try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))\n"
            "except urllib.error.HTTPError as e:\n    r = e\n"
            "sys.stdout.write(r.read().decode())\n"
        )
        return _sh(
            "ip", "netns", "exec", self.switch, sys.executable, "-c", code, url, str(timeout), timeout=timeout + 10
        ).stdout

    def down(self):
        self._keep_logs()
        for node in self.nodes:
            node.destroy()
        if self.etcd is not None:
            self.etcd.kill()
            self.etcd.wait()
        remove_stale()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def _holder_pid(netns):
    """The namespace holder of a node of a running lab (its `sleep infinity`)."""
    for pid in _pids_in_netns(netns):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if handle.read().split(b"\0")[:2] == [b"sleep", b"infinity"]:
                    return pid
        except OSError:
            continue
    raise SystemExit(f"no lab node {netns} is running; start one with: {sys.argv[0]} up")


def main(argv):
    """Commands for people: ``up [N]``, ``run <node> <command…>``, ``down``."""
    if argv[:1] == ["up"]:
        lab = Lab(nodes=int(argv[1]) if len(argv) > 1 else 3)
        lab.up()  # its processes outlive this command, in their own sessions
        for node in lab.nodes:
            print(f"{node.name} {node.address}")
        print(f"etcd {ETCD}; folders in {lab.root}; program {lab.program}")
        return 0
    if len(argv) >= 3 and argv[0] == "run":
        pid = _holder_pid(f"{PREFIX}-n{argv[1].removeprefix('pg')}")
        return subprocess.call(["nsenter", "-t", str(pid), "-m", "-u", "-n", "--", *argv[2:]])
    if argv[:1] == ["down"]:
        remove_stale()
        return 0
    print(f"usage: {sys.argv[0]} up [N] | run <node> <command…> | down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
