"""Lab tier B: Debian hosts as namespaces on one machine (shared/reference/test-lab.md, part B).

A switch namespace holds a bridge and etcd; each node is a network namespace with a veth into that bridge, its
own address in a private test subnet that exists only inside these namespaces, an on-link default route, and
private mount and UTS namespaces: its own host name, /etc/hosts, /etc/postgresql, /var/lib/postgresql,
/etc/patroni, /var/log/postgresql and /run. The Debian packages on the machine (PostgreSQL, postgresql-common,
Patroni) run there unmodified. Nothing is added to the machine's own network namespace, and ``down()`` removes
every process, namespace and folder the lab made, also those of a run that was killed.
"""

import fcntl
import json
import os
import pathlib
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import sandbox

PREFIX = "pdl"  # every lab's names start with it: pdl-sw, pdl3-m1, …
LAB_ENV = "PATRONI_DEBIAN_LAB"  # which lab the commands for people act on: its slot number (default 0)
SLOTS = 64  # slot 0 is the lab people bring up (README, make demo); test labs take a free one of 1–63
LOCKS = pathlib.Path("/run/lock")
REPO = pathlib.Path(__file__).resolve().parent.parent


class Slot:
    """The names and addresses of one lab, apart from every other lab's on this machine: namespaces, cgroups and
    folders start with ``prefix``-, and the lab's subnet is 10.77.<number>.0/24, so labs run side by side.

    Slot 0 (``pdl-sw``, 10.77.0.0/24) is the lab of the commands for people (``up`` outlives its command); a lab
    made by a test run takes the first free slot of 1–63 and holds it with a lock for as long as its process
    lives, so a run that was killed leaves its slot free, and the next lab there removes what was left.
    """

    def __init__(self, number):
        if not 0 <= number < SLOTS:
            raise ValueError(f"lab slot {number}: choose 0–{SLOTS - 1}")
        self.number = number
        self.prefix = PREFIX if number == 0 else f"{PREFIX}{number}"
        self.subnet = f"10.77.{number}"
        self.gateway = f"{self.subnet}.1"
        self.etcd = f"{self.gateway}:2379"
        self.vip = f"{self.subnet}.100"  # an address of the subnet no host has, for a cluster's VIP
        self.switch = f"{self.prefix}-sw"
        self._lock = None

    def __repr__(self):
        return f"Slot({self.number})"

    def take(self):
        """Hold the slot's lock; False when another live process holds it."""
        LOCKS.mkdir(parents=True, exist_ok=True)
        handle = open(LOCKS / f"patroni-debian-lab-{self.number}.lock", "w")  # noqa: SIM115 - held for the lab's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock = handle
        return True

    def release(self):
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def free_slot():
    """The first slot of 1–63 that no live process holds, taken (its lock held by this process)."""
    for number in range(1, SLOTS):
        slot = Slot(number)
        if slot.take():
            return slot
    raise RuntimeError(f"every lab slot 1–{SLOTS - 1} is taken by a running lab")


def people_slot():
    """The slot the commands for people act on: ${LAB_ENV} or 0."""
    value = os.environ.get(LAB_ENV, "0")
    if not value.isdigit():
        raise SystemExit(f"{LAB_ENV}={value!r}: a lab slot is a number 0–{SLOTS - 1}")
    return Slot(int(value))


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


def _names_of(slot):
    """A test for names (namespaces, cgroups, folders) made by the lab of ``slot``, or by any lab when None."""
    pattern = re.compile(rf"{PREFIX}\d*-" if slot is None else re.escape(f"{slot.prefix}-"))
    return lambda name: pattern.match(name) is not None


def remove_stale(slot=None, every_lab=False):
    """Remove what a lab left behind (a run that was killed before its teardown): the lab of ``slot`` only, or,
    with ``every_lab``, every lab on this machine, including those of other runs still going."""
    if slot is None and not every_lab:
        raise ValueError("remove_stale: name the lab's slot, or ask for every_lab")
    ours = _names_of(None if every_lab else slot)
    for line in _sh("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if ours(name):
            _kill(_pids_in_netns(name))
            _sh("ip", "netns", "delete", name, check=False)
    labs = [p for p in pathlib.Path(tempfile.gettempdir()).glob(f"{PREFIX}*-lab-*") if ours(p.name)]
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in reversed(points):  # machine overlays, innermost first
        if any(point.startswith(f"{lab}/") for lab in labs):
            _sh("umount", "-l", point, check=False)
    for hierarchy in ("systemd", "unified"):
        for group in pathlib.Path(f"/sys/fs/cgroup/{hierarchy}").glob(f"{PREFIX}*-*"):
            if not ours(group.name):
                continue
            for folder in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [group]:
                _remove_cgroup(folder)
    for folder in labs:
        shutil.rmtree(folder, ignore_errors=True)


# The lab's HTTP client, one per lab in its switch namespace: a JSON line [url, timeout] in, {"body"} or {"error"} out.
FETCHER = """
import json, ssl, sys, urllib.error, urllib.request
for line in sys.stdin:
    url, timeout, cafile = json.loads(line)
    try:
        context = ssl.create_default_context(cafile=cafile) if cafile else None
        try:
            response = urllib.request.urlopen(url, timeout=timeout, context=context)
        except urllib.error.HTTPError as error:
            response = error
        answer = {"body": response.read().decode()}
    except Exception as exc:
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(answer), flush=True)
"""


class Helper:
    """A Python program of the lab's in its switch namespace (where the lab's addresses are), asked one JSON line
    at a time and answering one: one process for every call, where a Python started per call cost a core's tenth
    or more on a 2-core machine. Thread-safe; started on the first call, again after it died or hung."""

    def __init__(self, switch, code, args=(), log=None):
        self.argv = ["ip", "netns", "exec", switch, sys.executable, "-u", "-c", code, *args]
        self.log = log  # a file for its stderr, or None
        self._process, self._lock = None, threading.Lock()

    def ask(self, request, timeout):
        """The program's answer to ``request``; None when it gives none within ``timeout`` s (it is then stopped)."""
        with self._lock:
            try:
                process = self._running()
                process.stdin.write(json.dumps(request) + "\n")
                process.stdin.flush()
                ready, _, _ = select.select([process.stdout], [], [], timeout)
                reply = process.stdout.readline() if ready else ""
            except OSError:  # it died between two calls: the pipe is broken
                reply = ""
            if not reply:
                self._stop()
        return json.loads(reply) if reply else None

    def stop(self):
        with self._lock:
            self._stop()

    def _running(self):
        if self._process is None or self._process.poll() is not None:
            stderr = open(self.log, "a") if self.log else subprocess.DEVNULL  # noqa: SIM115 - the child's from here
            try:
                self._process = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    start_new_session=True,
                )
            finally:
                if self.log:
                    stderr.close()
        return self._process

    def _stop(self):
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


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


def plug_in(slot, netns, address):
    """A network namespace with ``eth0`` on the bridge of the lab of ``slot``, ``address``/24 and a default route."""
    _sh("ip", "netns", "add", netns)
    host_end = f"v{netns.rsplit('-', 1)[-1]}"  # in the lab's own switch namespace: no other lab's names there
    _sh("ip", "-n", slot.switch, "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", netns)
    _sh("ip", "-n", slot.switch, "link", "set", host_end, "master", "br0", "up")
    for command in (
        ["link", "set", "lo", "up"],
        ["link", "set", "eth0", "up"],
        ["address", "add", f"{address}/24", "dev", "eth0"],
        ["route", "add", "default", "via", slot.gateway, "dev", "eth0"],
    ):
        _sh("ip", "-n", netns, *command)


def hosts_file(slot, names_and_addresses):
    hosts = "".join(f"{a} {n}\n" for n, a in names_and_addresses)
    return f"127.0.0.1 localhost\n{hosts}{slot.gateway} etcd salt\n"


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
        self.netns = f"{lab.slot.prefix}-n{index}"
        self.address = f"{lab.slot.subnet}.{10 + index}"
        self.root = lab.root / self.name
        self.holder = None

    # -- life cycle

    def create(self):
        plug_in(self.lab.slot, self.netns, self.address)
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
        (self.root / "hosts").write_text(hosts_file(self.lab.slot, ((n.name, n.address) for n in self.lab.nodes)))
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
        """GET from this node's Patroni REST API, from the switch (as a client on the network would); over https
        verified against the lab's ``api_ca`` when it has one."""
        return self.lab.http(f"{'https' if self.lab.api_ca else 'http'}://{self.address}:{port}{path}")

    def psql(self, sql, port=5432):
        return self.run(["psql", "-X", "-q", "-At", "-p", str(port), "-c", sql], user="postgres").stdout.strip()


class Lab:
    """The switch, etcd, and the nodes; use as a context manager or call up() and down().

    ``slot``: a :py:class:`Slot` (``Slot(0)`` for the lab of the commands for people), or None for a free one.
    """

    def __init__(self, nodes=3, slot=None):
        self.slot = slot
        self.root = None
        self.nodes = []
        self.count = nodes
        self.etcd = None
        self.tls_etcd = None  # a second etcd, served over TLS with client certificates (start_tls_etcd)
        self.api_ca = None  # the CA file (on this host) of REST APIs served over https, or None for http
        self._fetcher, self._helpers_lock = None, threading.Lock()  # helpers made on first use, once

    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.down()

    @property
    def switch(self):
        return self.slot.switch

    @property
    def etcd_address(self):
        """host:port of the lab's etcd, for a DCS section."""
        return self.slot.etcd

    def dcs(self, kind="etcd3"):
        """A DCS section for the lab's etcd: ``etcd3`` (Patroni's v3 client) or ``etcd`` (v2, read by vip-manager 1)."""
        return {"etcd3": {"hosts": [self.slot.etcd]}} if kind == "etcd3" else {"etcd": {"host": self.slot.etcd}}

    def up(self):
        if self.slot is None:
            self.slot = free_slot()
        remove_stale(self.slot)
        self.root = pathlib.Path(tempfile.mkdtemp(prefix=f"{self.slot.prefix}-lab-"))
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
                ["address", "add", f"{self.slot.gateway}/24", "dev", "br0"],
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
        peer, client = f"http://{self.slot.gateway}:2380", f"http://{self.slot.etcd}"
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
                    client,
                    "--advertise-client-urls",
                    client,
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
        wait_until("etcd healthy", lambda: '"health":"true"' in self.http(f"{client}/health"), timeout=30)

    def start_tls_etcd(self, ca, cert, key):
        """A second etcd beside the lab's, at the gateway's port 2381, served over https with ``cert`` and ``key``
        and taking only clients whose certificate ``ca`` signed (--client-cert-auth); its data in the lab's folder.
        Returns its ``host:port``. Stopped with the lab, or by :py:meth:`stop_tls_etcd`."""
        endpoint = f"{self.slot.gateway}:2381"
        client, peer = f"https://{endpoint}", f"http://{self.slot.gateway}:2382"
        tls = ["--cert-file", str(cert), "--key-file", str(key), "--trusted-ca-file", str(ca), "--client-cert-auth"]
        with open(self.root / "etcd-tls.log", "ab") as log:
            self.tls_etcd = subprocess.Popen(
                ["ip", "netns", "exec", self.switch, "etcd", "--name", "tls", "--data-dir", str(self.root / "etcd-tls")]
                + ["--listen-client-urls", client, "--advertise-client-urls", client]
                + [
                    "--listen-peer-urls",
                    peer,
                    "--initial-advertise-peer-urls",
                    peer,
                    "--initial-cluster",
                    f"tls={peer}",
                ]
                + tls,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return endpoint

    def stop_tls_etcd(self):
        if self.tls_etcd is not None:
            self.tls_etcd.kill()
            self.tls_etcd.wait()
            self.tls_etcd = None
            shutil.rmtree(self.root / "etcd-tls", ignore_errors=True)

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
            f"--endpoints=http://{self.slot.etcd}",
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
        _sh("ip", "netns", "exec", self.switch, sys.executable, "-c", code, f"http://{self.slot.etcd}/v2/keys")

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
        """GET ``url`` from inside the switch namespace (where the lab's clients are); the body as text, also of
        an HTTP error. Not answering raises ConnectionError. One fetcher process in the switch serves every call:
        the health probes poll often, and a Python started per call cost a core's tenth on a 2-core machine."""
        with self._helpers_lock:
            if self._fetcher is None:
                self._fetcher = Helper(self.switch, FETCHER)
        answer = self._fetcher.ask([url, timeout, self.api_ca], timeout + 10)
        if answer is None:
            raise ConnectionError(f"GET {url}: the lab's fetcher gave no answer")
        if "error" in answer:
            raise ConnectionError(f"GET {url}: {answer['error']}")
        return answer["body"]

    def _stop_fetcher(self):
        if self._fetcher is not None:
            self._fetcher.stop()

    def down(self):
        self._stop_fetcher()
        self._keep_logs()
        for node in self.nodes:
            node.destroy()
        if self.etcd is not None:
            self.etcd.kill()
            self.etcd.wait()
        self.stop_tls_etcd()
        if self.slot is not None:
            remove_stale(self.slot)
            self.slot.release()
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
    """Commands for people: ``up [N]``, ``run <node> <command…>``, ``down [--all]``, on the lab of slot
    ${LAB_ENV} (default 0); ``down --all`` removes every lab on this machine, test runs' too."""
    slot = people_slot()
    if argv[:1] == ["up"]:
        lab = Lab(nodes=int(argv[1]) if len(argv) > 1 else 3, slot=slot)
        lab.up()  # its processes outlive this command, in their own sessions
        for node in lab.nodes:
            print(f"{node.name} {node.address}")
        print(f"etcd {slot.etcd}; folders in {lab.root}; program {lab.program}")
        return 0
    if len(argv) >= 3 and argv[0] == "run":
        pid = _holder_pid(f"{slot.prefix}-n{argv[1].removeprefix('pg')}")
        return subprocess.call(["nsenter", "-t", str(pid), "-m", "-u", "-n", "--", *argv[2:]])
    if argv in (["down"], ["down", "--all"]):
        remove_stale(slot, every_lab=argv == ["down", "--all"])
        return 0
    print(f"usage: {sys.argv[0]} up [N] | run <node> <command…> | down [--all]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
