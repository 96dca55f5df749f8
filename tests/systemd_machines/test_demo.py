"""``make demo`` as a newcomer runs it, end to end, then ``make demo-down``.

The cluster it reports must be real (through Salt and through the REST API), its output must carry no password,
the commands it suggests must work, and ``make demo-down`` must leave no process, namespace, mount, cgroup or
folder behind.
"""

import json
import pathlib
import re
import subprocess
import time
import types

import machines
import netlab


REPO = netlab.REPO
# a member's line in the cluster table: name, role, state, timeline 1, lag, address
ROW = r"^(pg\d)\s+(leader|replica)\s+(?:running|streaming)\s+1\s+\d+\s+([\d.]+):5432$"
DEMO = netlab.Slot(0)  # the demo's lab; the labs of this test run take other slots


def make(target, timeout=1800):
    proc = subprocess.run(["make", target], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def leftovers():
    """What the demo's lab leaves on the host while it is up (other labs' things are theirs)."""
    left = []
    prefix = f"{DEMO.prefix}-"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    left += [f"namespace {line.split()[0]}" for line in netns.splitlines() if line.startswith(prefix)]
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        left += [f"mount {line.split()[1]}" for line in mounts if f"/{prefix}lab-" in line.split()[1]]
    for hierarchy in ("systemd", "unified"):
        left += [f"cgroup {p}" for p in pathlib.Path(f"/sys/fs/cgroup/{hierarchy}").glob(f"{prefix}*")]
    left += [f"folder {p}" for p in pathlib.Path("/tmp").glob(f"{prefix}lab-*")]
    left += [f"folder {p}" for p in pathlib.Path("/root").glob(".patroni-debian-demo-*")]
    # live processes only: an exited child waiting to be reaped (state Z) holds nothing, and other tests' are
    # pytest's own children until it exits
    table = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    for line in table.splitlines():
        pid, stat, *args = line.split(None, 2)
        args = args[0] if args else ""
        mine = f"/{prefix}lab-" in args  # its machines, master and etcd run from the lab's folder
        if mine and not stat.startswith("Z") and re.search(r"systemd-nspawn|salt-master|\betcd\b", args):
            left.append(f"process {pid} {args}")
    return left


class Neighbour:
    """A test run's lab beside the demo: a node with a process of its own and etcd holding a key."""

    def __init__(self, lab):
        self.lab = lab
        self.node = lab.nodes[0]
        self.sleeper = self.node.spawn(["sleep", "infinity"], user="postgres", log=lab.root / "sleeper.log")
        self.node.run(["touch", "/etc/patroni/mine"])
        self._put_key()

    def _put_key(self):
        code = "import urllib.request as u, sys; u.urlopen(u.Request(sys.argv[1], data=b'value=here', method='PUT'))"
        url = f"http://{self.lab.slot.etcd}/v2/keys/neighbour"
        netlab._sh("ip", "netns", "exec", self.lab.switch, "python3", "-c", code, url)

    def intact(self):
        """What is wrong with the neighbour lab, or an empty list."""
        wrong = []
        if self.sleeper.poll() is not None:
            wrong.append("its node's process was killed")
        if self.node.run(["test", "-e", "/etc/patroni/mine"], check=False).returncode:
            wrong.append("its node's file is gone")
        if '"value":"here"' not in self.lab.http(f"http://{self.lab.slot.etcd}/v2/keys/neighbour"):
            wrong.append("its etcd lost its key")
        return wrong


def test_make_demo_shows_a_real_cluster_without_a_password_and_demo_down_leaves_nothing(timings):
    """Beside a lab of this test run (another slot): the demo and that lab never meet; make demo-down removes the
    demo's lab only."""
    netlab.remove_stale(DEMO)  # the demo refuses to start over a lab that is up, as it would for a person
    with netlab.Lab(nodes=1) as other:
        neighbour = Neighbour(other)
        demo_and_demo_down(timings)
        assert neighbour.intact() == []


def demo_and_demo_down(timings):
    started = time.monotonic()
    code, output = make("demo")
    timings["make demo (image cached): command → cluster table"] = time.monotonic() - started
    try:
        assert code == 0, output[-5000:]
        secret = pathlib.Path(re.search(r"The replication password is in (\S+) \(root only\)", output).group(1))
        password = json.loads(secret.read_text())["patroni"]["clusters"]["15-main"]["authentication"]
        password = password["replication"]["password"]
        assert len(password) >= 24 and password not in output
        assert secret.stat().st_mode & 0o777 == 0o600 and secret.parent.stat().st_mode & 0o777 == 0o700

        rows = re.findall(ROW, output, re.M)
        roles = {name: role for name, role, _ in rows}
        addresses = {name: address for name, _, address in rows}
        assert sorted(roles.values()) == ["leader", "replica", "replica"], output[-3000:]
        leader = next(name for name, role in roles.items() if role == "leader")
        config = machines._lab_config(DEMO)  # the running demo, through its master
        health = subprocess.run(
            machines.salt_cli(DEMO.switch, config)
            + ["--out=json", "--static", "*", "patroni_debian.wait_members", "timeout=60"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert {name: result["15-main"]["role"] for name, result in json.loads(health.stdout).items()} == {
            name: "primary" if name == leader else "replica" for name in roles
        }
        switch = netlab.Lab(slot=DEMO)
        members = [
            types.SimpleNamespace(
                name=name, http=lambda path, port, n=name: switch.http(f"http://{addresses[n]}:{port}{path}")
            )
            for name in roles
        ]
        assert netlab.health(members, 8008) == (leader, 1)

        suggested = re.findall(r"^  (\.venv/bin/python tests/machines\.py run .*?psql.*?)(?:   #.*)?$", output, re.M)
        assert len(suggested) == 2, output[-3000:]
        subprocess.run(["bash", "-c", suggested[0]], cwd=REPO, check=True, capture_output=True, timeout=60)
        answer = netlab.wait_until(
            "the row on a replica",
            lambda: (
                "42"
                in subprocess.run(
                    ["bash", "-c", suggested[1]], cwd=REPO, capture_output=True, text=True, timeout=60
                ).stdout
            ),
            timeout=30,
        )
        assert answer
        with netlab.Lab(nodes=1):  # a lab made and removed while the demo is up leaves it as it was
            pass
        assert netlab.health(members, 8008) == (leader, 1)
    finally:
        code_down, output_down = make("demo-down", timeout=300)
    assert code_down == 0, output_down
    assert leftovers() == []


def test_make_demo_over_a_demo_that_is_up_says_what_to_do():
    with machines.MachineLab(machines=1, slot=DEMO):
        code, output = make("demo", timeout=120)
    assert code != 0
    assert "A demo is already up" in output and "make demo-down" in output


def test_the_demo_as_another_user_asks_for_root():
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "/usr/bin/python3",
            "tests/demo.py",
            "check",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "run it as root" in proc.stderr
