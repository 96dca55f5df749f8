"""Lab tier C: Debian machines that boot systemd (systemd-nspawn), with a Salt master (shared/reference/test-lab.md C).

The image of a Debian release (bookworm: PostgreSQL 15, Patroni 3.0.2; trixie: PostgreSQL 17, Patroni 4.0.7) is
made by debootstrap from the host's mirror, with systemd, PostgreSQL (no auto-created cluster), Patroni, etcd,
vip-manager and Salt for the minion, from wheels built inside the release itself for its Python (the machines
have no uplink). It is cached under $PATRONI_DEBIAN_IMAGE_CACHE (default /var/cache/patroni-debian) and rebuilt
when its recipe changes; $PATRONI_DEBIAN_RELEASES (default: all of RELEASES) says which releases the suite runs on.
Each machine is an overlay on the image in its own network namespace on lab B's bridge (tests/netlab.py), booted
by systemd-nspawn with real systemd and a salt-minion unit. The master runs in the switch namespace with this
checkout as its file root, so minions get the modules through saltutil.sync_all, as from a formula, and
patroni_debian.install_program puts the program where the configs name it.
"""

import contextlib
import hashlib
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import host_cpu
import netlab
import sandbox

REPO = netlab.REPO
VENV_BIN = pathlib.Path(sys.executable).parent
IMAGE_CACHE = pathlib.Path(os.environ.get("PATRONI_DEBIAN_IMAGE_CACHE", "/var/cache/patroni-debian"))
SALT_PIN = "salt==3008.4"
DEBOOTSTRAP_INCLUDE = "systemd,systemd-sysv,dbus,iproute2,procps,python3,python3-venv,ca-certificates"
# Per Debian release: its PostgreSQL, the packages installed in the full image, and packages only put in the
# image's local apt repository (trixie's vip-manager2 conflicts with vip-manager: the formula picks one).
RELEASES = {
    "bookworm": {
        "postgresql": "15",
        "packages": "postgresql-15 patroni python3-etcd etcd-server etcd-client vip-manager pgbackrest",
    },
    "trixie": {
        "postgresql": "17",
        "packages": "postgresql-17 patroni python3-etcd etcd-server etcd-client vip-manager pgbackrest",
        "available": "vip-manager2",
    },
}
# What Salt's minion needs to build its wheels inside the release (timelib has a C extension)
WHEEL_BUILD_PACKAGES = "gcc libc6-dev python3-dev"
MINION_UNIT = """\
[Unit]
Description=The Salt minion (patroni_debian lab)
After=network-online.target

[Service]
ExecStart=/opt/salt/bin/salt-minion
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""
# The lab's Salt client, one per lab in its switch namespace (where the master's address is): a JSON line
# [target, function, args, options of LocalClient.cmd_cli] in, {"return": by minion} or {"error"} out. What
# `salt --static --out=json` prints (minions that did not return left out), without a Python and a master login
# per call, nor the discovery ping that --static's batch publishes first: the suite calls Salt some hundreds of
# times, and each `salt` process cost a core for a second.
SALT_CLIENT = """
import json, sys
import salt.client
client = salt.client.LocalClient(c_path=sys.argv[1])
for line in sys.stdin:
    target, function, args, options = json.loads(line)
    try:
        returns = {}
        for answer in client.cmd_cli(target, function, args, **options):
            for minion, value in (answer or {}).items():
                if value.get("out") != "no_return":
                    returns[minion] = value.get("ret")
        reply = {"return": returns}
    except Exception as exc:
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(reply), flush=True)
"""
PROGRAM_PATH = "/usr/share/patroni-debian/patroni_debian.py"  # where install_program puts the program
# the parts of a machine's CPU that the benchmarks tell apart: its systemd units' cgroups (Machine.cpu_seconds)
CPU_PARTS = {"Salt minions": "salt-minion.service", "Patroni and PostgreSQL": "system-patroni.slice"}
LOCAL_APT = "/srv/lab-apt"  # inside the images: every .deb the lab needs, as an apt repository (no uplink)
# Salt's wheels for the release's own Python, built in a throwaway copy of the release's root.
WHEELS_SCRIPT = f"""\
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends {WHEEL_BUILD_PACKAGES} > /dev/null
python3 -m venv /tmp/build
/tmp/build/bin/pip wheel -q --disable-pip-version-check --wheel-dir /var/tmp/wheels '{SALT_PIN}'
"""
# The bare image: systemd, Salt's minion, and a local apt repository of the packages, none of them installed.
# (Packages that conflict with installed ones are downloaded by a run of their own.)
BARE_SCRIPT = """\
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
mkdir -p {LOCAL_APT}/partial
for packages in "postgresql-common {packages}" {available}; do
    apt-get install -y -qq --no-install-recommends --download-only -o Dir::Cache::archives={LOCAL_APT} \\
        $packages > /dev/null
done
rm -rf {LOCAL_APT}/partial {LOCAL_APT}/lock
python3 -m venv /opt/salt
/opt/salt/bin/pip install -q --no-index --find-links /var/tmp/wheels '{salt_pin}'
rm -rf /var/tmp/wheels
cat > /etc/systemd/system/salt-minion.service <<'EOF'
{minion_unit}EOF
systemctl enable salt-minion.service
apt-get clean
rm -f /etc/machine-id /var/lib/dbus/machine-id
: > /etc/machine-id
"""
# Run after the local repository is indexed and made the only apt source.
LOCAL_SOURCE_SCRIPT = """\
set -e
rm -rf /var/lib/apt/lists/*
apt-get update -qq
"""
# The full image: the bare one with the packages installed from its local repository, no cluster created.
FULL_SCRIPT = """\
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends postgresql-common > /dev/null
sed -i 's/^#\\?\\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
apt-get install -y -qq --no-install-recommends {packages} > /dev/null
# nothing runs that the tests did not ask for: vip-manager has no config yet, etcd runs on the lab's bridge
systemctl disable vip-manager.service etcd.service patroni.service
apt-get clean
"""


def _log(message):
    print(f"[lab image] {message}", file=sys.stderr, flush=True)


def host_release():
    """The codename of the Debian release this host runs (bookworm, trixie, …)."""
    for line in pathlib.Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("/etc/os-release names no VERSION_CODENAME")


def releases():
    """The releases the lab runs on: $PATRONI_DEBIAN_RELEASES (space or comma separated), else all of RELEASES."""
    chosen = os.environ.get("PATRONI_DEBIAN_RELEASES", " ".join(RELEASES)).replace(",", " ").split()
    unknown = [name for name in chosen if name not in RELEASES]
    if unknown or not chosen:
        raise SystemExit(f"PATRONI_DEBIAN_RELEASES={' '.join(chosen)!r}: choose from {', '.join(RELEASES)}")
    return chosen


def _mirror_sources(release):
    """The host's apt sources for Debian with its suites renamed for ``release``: the image uses the mirror this
    host uses, whatever it is. Returns ``(deb822 text, mirror URI)``."""
    path = pathlib.Path("/etc/apt/sources.list.d/debian.sources")
    if not path.exists():
        raise RuntimeError("no /etc/apt/sources.list.d/debian.sources on this host to take the mirror from")
    own = host_release()
    text = re.sub(rf"\b{own}(?=[-\s]|$)", release, path.read_text(), flags=re.MULTILINE)
    uri = None
    for line in text.splitlines():
        if line.startswith("URIs:"):
            uri = line.split()[1]
        elif line.startswith("Suites:") and release in line.split() and uri and "security" not in uri:
            return text, uri
    raise RuntimeError(f"no {own} mirror in {path}")


def _scripts(release):
    """The chroot scripts of ``release``'s images, in the order they run."""
    spec = RELEASES[release]
    bare = BARE_SCRIPT.format(
        LOCAL_APT=LOCAL_APT,
        packages=spec["packages"],
        available=spec.get("available", ""),
        salt_pin=SALT_PIN,
        minion_unit=MINION_UNIT,
    )
    return {"wheels": WHEELS_SCRIPT, "bare": bare, "local": LOCAL_SOURCE_SCRIPT, "full": FULL_SCRIPT.format(**spec)}


def recipe(release):
    """Everything that decides the release's images; its hash names the cached images."""
    sources, mirror = _mirror_sources(release)
    scripts = _scripts(release).values()
    return "\n".join([release, DEBOOTSTRAP_INCLUDE, SALT_PIN, *scripts, sources, mirror, _index_packages.__doc__])


def image(release, bare=False):
    """The cached image folder of ``release`` for the current recipe (``bare``: no PostgreSQL, Patroni, etcd or
    vip-manager installed, only in its local apt repository), both built first when missing."""
    if release not in RELEASES:
        raise SystemExit(f"release {release!r}: the lab has images of {', '.join(RELEASES)}")
    digest = hashlib.sha256(recipe(release).encode()).hexdigest()[:16]
    target = IMAGE_CACHE / f"images-{release}-{digest}"
    if not (target / "full" / "etc" / "os-release").exists():
        IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
        build = pathlib.Path(tempfile.mkdtemp(prefix="build-", dir=IMAGE_CACHE))
        try:
            _build(build, release)
            build.rename(target)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        for old in IMAGE_CACHE.glob("image*-*"):
            # the release's older recipes, and images from before there were releases
            if old != target and (old.name.startswith(f"images-{release}-") or old.name.count("-") == 1):
                shutil.rmtree(old, ignore_errors=True)
    return target / ("bare" if bare else "full")


def _step(what, argv, **kwargs):
    started = time.monotonic()
    _log(f"{what} …")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    _log(f"{what}: {time.monotonic() - started:.0f} s")


def _build(build, release):
    """``build/bare`` and ``build/full`` of ``release``."""
    sources, mirror = _mirror_sources(release)
    scripts = _scripts(release)
    root = build / "bare"
    _step(
        f"debootstrap {release}",
        ["debootstrap", "--variant=minbase", f"--include={DEBOOTSTRAP_INCLUDE}", release, str(root), mirror],
    )
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(sources)
    _build_wheels(build, root, scripts["wheels"])
    (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")  # install, start nothing
    (root / "usr/sbin/policy-rc.d").chmod(0o755)
    _chroot("the bare image: Salt, and the packages downloaded", root, scripts["bare"])
    _index_packages(root / LOCAL_APT.lstrip("/"))
    (root / "etc/apt/sources.list.d/debian.sources").unlink()
    (root / "etc/apt/sources.list.d/lab.list").write_text(f"deb [trusted=yes] file:{LOCAL_APT} ./\n")
    _chroot("the local apt repository as the only source", root, scripts["local"])
    full = build / "full"
    _step("the full image from the bare one", ["cp", "-a", "--reflink=auto", str(root), str(full)])
    _chroot("packages installed in the full image", full, scripts["full"])
    for image_root in (root, full):
        (image_root / "usr/sbin/policy-rc.d").unlink()


def _build_wheels(build, root, script):
    """Salt's wheels into ``root``/var/tmp/wheels, built for the release's Python in a copy of ``root`` that has
    a compiler (the image itself gets none). pip there trusts what pip trusts on this host."""
    builder = build / "wheels"
    try:
        _step("a copy of the root to build Salt's wheels in", ["cp", "-a", "--reflink=auto", str(root), str(builder)])
        host_ca = pathlib.Path(os.environ.get("PIP_CERT") or _pip_cert() or "/etc/ssl/certs/ca-certificates.crt")
        if host_ca.is_file():
            shutil.copy(host_ca, builder / "var/tmp/host-ca.pem")
        _chroot("Salt wheels for the release's Python", builder, script, {"PIP_CERT": "/var/tmp/host-ca.pem"})
        shutil.copytree(builder / "var/tmp/wheels", root / "var/tmp/wheels")
    finally:
        shutil.rmtree(builder, ignore_errors=True)


def _pip_cert():
    """The certificate bundle pip is configured with on this host, or None."""
    proc = subprocess.run(
        [str(VENV_BIN / "pip"), "config", "get", "global.cert"], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _chroot(what, root, script, env=None):
    (root / "tmp/setup.sh").write_text(script)
    inside = (
        f"mount -t proc proc {root}/proc && mount --bind /dev {root}/dev && exec chroot {root} /bin/sh /tmp/setup.sh"
    )
    environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **(env or {})}
    _step(what, ["unshare", "--mount", "--propagation", "private", "sh", "-c", inside], env=environment)
    (root / "tmp/setup.sh").unlink()


def _index_packages(folder):
    """Packages index (control fields, Filename, Size, SHA256) of the .deb files in ``folder``, for apt."""
    entries = []
    for deb in sorted(folder.glob("*.deb")):
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        entries.append(f"{control.rstrip()}\nFilename: ./{deb.name}\nSize: {deb.stat().st_size}\nSHA256: {digest}\n")
    (folder / "Packages").write_text("\n".join(entries))


class Machine:
    """A Debian machine booting systemd, on the lab's bridge."""

    def __init__(self, lab, index):
        self.lab = lab
        self.index = index
        self.name = f"pg{index}"
        self.netns = f"{lab.slot.prefix}-m{index}"
        self.address = f"{lab.slot.subnet}.{10 + index}"
        self.root = lab.root / self.name
        self.merged = self.root / "merged"
        self.role = "bootstrap" if index == 1 else "replica"
        self.nspawn = None
        self.cgroup = f"{lab.slot.prefix}-{self.name}"

    def create(self):
        netlab.plug_in(self.lab.slot, self.netns, self.address)
        self._mount_overlay()
        self.boot()

    def _mount_overlay(self, provision=False):
        for folder in ("upper", "work", "merged"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        lower, upper, work = self.lab.image, self.root / "upper", self.root / "work"
        netlab._sh(
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lower},upperdir={upper},workdir={work}",
            str(self.merged),
        )
        etc = self.merged / "etc"
        (etc / "hostname").write_text(f"{self.name}\n")
        (etc / "hosts").write_text(netlab.hosts_file(self.lab.slot, ((m.name, m.address) for m in self.lab.nodes)))
        (etc / "resolv.conf").unlink(missing_ok=True)
        (etc / "resolv.conf").write_text("")
        (etc / "salt").mkdir(exist_ok=True)
        minion = {
            "master": self.lab.slot.gateway,
            "id": self.name,
            "grains": {"patroni_role": self.role} if self.role else {},
            "acceptance_wait_time": 1,
            "random_reauth_delay": 0,
            "log_level_logfile": "info",
            "enable_fqdns_grains": False,  # reverse lookups of every address: the lab has no name server
            # Salt's highstate syncs every module kind and reloads all modules first (2-3 s of a core per minion
            # and run); with this checkout's modules already in place there is nothing to sync. A machine without
            # them (the session's first boot, the bare image, formula_cluster) keeps Salt's default.
            "autoload_dynamic_modules": not provision,
        }
        (etc / "salt" / "minion").write_text(json.dumps(minion))  # JSON is YAML
        self._install_keys(etc / "salt" / "pki" / "minion")
        if provision:
            self._place_modules()
        self._ready_lines = self._minion_ready_lines()

    MINION_LOG = "var/log/salt/minion"
    READY = "Minion is ready to receive requests!"

    def _minion_ready_lines(self):
        try:
            with open(self.merged / self.MINION_LOG, encoding="utf-8", errors="replace") as log:
                return sum(self.READY in line for line in log)
        except OSError:
            return 0

    def minion_started(self):
        """Whether the minion has said it is ready since the machine's disk was last laid out (read from the host:
        no process in the machine)."""
        return self._minion_ready_lines() > self._ready_lines

    def _place_modules(self):
        """This checkout's modules where ``saltutil.sync_modules`` and ``sync_states`` put them, and its program
        where ``install_program`` does, before the minion starts: what :py:meth:`MachineLab.provision` does
        through Salt (as the session's first boot still does), at the cost of a file copy."""
        extmods = self.merged / "var" / "cache" / "salt" / "minion" / "extmods"
        for kind, sources in (
            ("modules", (REPO / "_modules").glob("*.py")),
            ("states", (REPO / "_states").glob("*.py")),
        ):
            (extmods / kind).mkdir(parents=True, exist_ok=True)
            for source in sources:
                shutil.copy(source, extmods / kind / source.name)
        program = self.merged / PROGRAM_PATH.lstrip("/")
        program.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "_modules" / "patroni_debian.py", program)
        program.chmod(0o755)

    def _install_keys(self, pki):
        """The machine's minion key pair, made once per lab and accepted on the master: a reset keeps it."""
        keys = self.root / "keys"
        if not (keys / "minion.pem").exists():
            keys.mkdir(parents=True, exist_ok=True)
            netlab._sh(str(VENV_BIN / "salt-key"), "--gen-keys=minion", f"--gen-keys-dir={keys}")
            accepted = self.lab.master_pki / "minions"
            accepted.mkdir(parents=True, exist_ok=True)
            shutil.copy(keys / "minion.pub", accepted / self.name)
        pki.mkdir(parents=True, exist_ok=True)
        for name, mode in (("minion.pem", 0o400), ("minion.pub", 0o644)):
            shutil.copy(keys / name, pki / name)
            (pki / name).chmod(mode)

    def boot(self, wait=True):
        """Start the machine; return once systemd says it is running (or degraded), or at once without ``wait``
        (then :py:meth:`wait_booted`)."""
        for hierarchy in ("systemd", "unified"):
            os.makedirs(f"/sys/fs/cgroup/{hierarchy}/{self.cgroup}", exist_ok=True)
        # each machine from a cgroup of its own, or they would share one payload cgroup (test-lab.md)
        enter = (
            f"echo $$ > /sys/fs/cgroup/systemd/{self.cgroup}/cgroup.procs && "
            f'echo $$ > /sys/fs/cgroup/unified/{self.cgroup}/cgroup.procs && exec "$@"'
        )
        argv = [
            "systemd-nspawn",
            "-q",
            "-D",
            str(self.merged),
            "-M",
            self.name,
            "-b",
            "--register=no",
            "--keep-unit",
            f"--network-namespace-path=/run/netns/{self.netns}",
            # the machine's own network namespace: vip-manager may add and remove its VIP there
            "--capability=CAP_NET_ADMIN",
            "--console=pipe",
            "--resolv-conf=off",  # keep the machine's own, empty resolv.conf: no name server is reachable
        ]
        with open(self.root / "console.log", "ab") as log:
            self.nspawn = subprocess.Popen(
                ["sh", "-c", enter, "sh", *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if wait:
            self.wait_booted()

    def wait_booted(self):
        netlab.wait_until(
            f"{self.name} systemd up",
            lambda: self.run(["systemctl", "is-system-running"], check=False).stdout.strip() in ("running", "degraded"),
            timeout=90,
            interval=0.3,
        )

    def init_pid(self):
        """PID of the machine's systemd, or None while it is down."""
        if self.nspawn is None or self.nspawn.poll() is not None:
            return None
        children = subprocess.run(["pgrep", "-P", str(self.nspawn.pid)], capture_output=True, text=True).stdout.split()
        return int(children[0]) if children else None

    def run(self, argv, check=True, timeout=120, env=None):
        """``argv`` run as root on the machine; ``env`` added to the environment (a secret goes there, never into
        the arguments)."""
        pid = self.init_pid()
        if pid is None:
            raise AssertionError(f"{self.name} is not running")
        enter = ["nsenter", "-t", str(pid), "-a", "--"]
        return netlab.run_inside(self.name, enter, argv, check, timeout, env={**os.environ, **(env or {})})

    def power_cut(self):
        """SIGKILL of the machine's systemd: everything in it dies at once, its disk stays as it was."""
        pid = self.init_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
        if self.nspawn is not None:
            self.nspawn.wait(timeout=30)

    def reset(self, wait=True, provision=False):
        """Back to the lab's image, booted: power cut (its state is dropped anyway), no upper layer, boot; with
        ``provision``, this checkout's modules and program in place before it boots."""
        self.power_cut()
        netlab._sh("umount", str(self.merged))
        for folder in ("upper", "work"):
            shutil.rmtree(self.root / folder)
        self._mount_overlay(provision)
        self.boot(wait)

    def destroy(self):
        self.power_cut()  # the lab is thrown away: no need to wait for a clean shutdown
        netlab._sh("umount", "-l", str(self.merged), check=False)

    def cpu_seconds(self):
        """CPU seconds the machine has used, whole and by part (``CPU_PARTS``), from its cgroups' ``cpu.stat``: the
        counters only grow while the machine's cgroup exists (resets included), so two reads' difference is what
        ran between them. A part not started yet counts 0."""
        folder = pathlib.Path(f"/sys/fs/cgroup/unified/{self.cgroup}")
        spent = {"machines": host_cpu.cgroup_seconds(folder)}
        for part, unit in CPU_PARTS.items():
            spent[part] = sum(host_cpu.cgroup_seconds(found) for found in folder.glob(f"**/{unit}"))
        return spent

    def http(self, path, port=8008):
        return self.lab.http(f"{'https' if self.lab.api_ca else 'http'}://{self.address}:{port}{path}")

    def psql(self, statement, cluster=None):
        """``statement`` run by psql as postgres on the machine's default cluster, or on pg-common's ``cluster``
        (``15/copy``, through pg_wrapper); its output, unaligned."""
        where = ["--cluster", cluster] if cluster else []
        argv = ["runuser", "-u", "postgres", "--", "psql", *where, "-X", "-A", "-t", "-q", "-c", statement]
        return self.run(argv).stdout.strip()


def salt_cli(switch, config):
    """The salt command for a lab's master: it reaches the master at its interface address, which exists
    only inside the lab's switch namespace."""
    return ["ip", "netns", "exec", switch, str(VENV_BIN / "salt"), "-c", str(config)]


class MachineLab(netlab.Lab):
    """Lab B's switch and etcd, with Debian machines for nodes and a Salt master on the bridge."""

    def __init__(self, machines=3, pillar=None, bare=False, release=None, slot=None):
        super().__init__(nodes=machines, slot=slot)
        self.bare = bare  # machines without PostgreSQL, Patroni, etcd or vip-manager installed
        self.release = release or host_release()
        self.version = RELEASES[self.release]["postgresql"]  # the release's PostgreSQL major version
        self.master = None
        self._salt_client = None
        self.pillar = pathlib.Path(pillar).resolve() if pillar else None  # the master's pillar root, if given

    def up(self):
        self.image = image(self.release, self.bare)
        super().up()

    def member(self, index):
        return Machine(self, index)

    def _start_etcd(self):
        super()._start_etcd()
        self._start_master()

    def _start_master(self):
        config = self.root / "salt"
        config.mkdir()
        self.pillar_root = self.pillar or demo_pillar(config / "pillar", self.version, self.slot.etcd)
        self.default_pillar = None if self.pillar else files(self.pillar_root)
        # the README's file roots: the formula folder and the repository (for _modules, _states), and before
        # them a folder of the lab's own with the example top file as top.sls
        (config / "states").mkdir()
        shutil.copy(REPO / "salt" / "top.sls.example", config / "states" / "top.sls")
        self.master_pki = config / "root" / "etc" / "salt" / "pki" / "master"
        file_roots = [str(config / "states"), str(REPO / "salt"), str(sandbox.served_repository(config / "repository"))]
        master = {
            "interface": self.slot.gateway,
            "root_dir": str(config / "root"),
            "pki_dir": "/etc/salt/pki/master",
            "file_roots": {"base": file_roots},
            "pillar_roots": {"base": [str(self.pillar_root)]},
            # a working copy's compiled files are no files to serve
            "file_ignore_regex": [r"(^|/)__pycache__($|/)"],
            "log_file": str(config / "master.log"),
            "log_level_logfile": "info",
            "timeout": 30,
            # the members' certificates are signed by the CA server through Salt's x509 module (README, Security)
            "peer": {".*": ["x509.sign_remote_certificate"]},
        }
        (config / "master").write_text(json.dumps(master))
        self.salt_config = config
        self.master = subprocess.Popen(
            ["ip", "netns", "exec", self.switch, str(VENV_BIN / "salt-master"), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def salt_run(self, *args, timeout=600):
        """``salt-run <args>`` on the master; its output as text, and its exit code."""
        proc = subprocess.run(
            salt_run_cli(self.switch, self.salt_config) + list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return proc.returncode, proc.stdout + proc.stderr

    def salt(self, target, function, *args, tgt_type=None, timeout=120, gather_job_timeout=10):
        """``salt <target> <function> <args>`` on the master; the result by minion, as ``salt --static
        --out=json`` prints it (a minion that did not return is left out). After ``timeout`` s the master asks the
        minions still silent whether they run the job, and waits ``gather_job_timeout`` s for their answer."""
        options = {"tgt_type": tgt_type or "glob", "timeout": timeout, "gather_job_timeout": gather_job_timeout}
        with self._helpers_lock:
            if self._salt_client is None:
                config, log = str(self.salt_config / "master"), self.salt_config / "client.log"
                self._salt_client = netlab.Helper(self.switch, SALT_CLIENT, [config], log)
        answer = self._salt_client.ask([target, function, list(args), options], timeout + gather_job_timeout + 60)
        if answer is None:
            raise AssertionError(f"salt {target} {function}: no answer; see {self.salt_config / 'client.log'}")
        if "error" in answer:
            raise AssertionError(f"salt {target} {function}: {answer['error']}")
        return answer["return"]

    def set_pillar(self, pillar, target="'pg*'"):
        """``pillar`` (a mapping) for the minions ``target`` matches, and nothing else (other files a test wrote
        into the lab's own pillar root go), refreshed on every minion."""
        folder = self.pillar_root
        if self.default_pillar is not None:
            for path in folder.iterdir():
                if path.name not in self.default_pillar:
                    path.unlink()
        (folder / "lab.sls").write_text(json.dumps(pillar))  # JSON is YAML
        (folder / "top.sls").write_text(f"base:\n  {target}:\n    - lab\n")
        refreshed = self.salt("*", "saltutil.refresh_pillar", "wait=True")
        assert all(refreshed.values()), refreshed

    def provision(self):
        """This checkout's modules synced to every minion, and its program installed where the configs name it."""
        # the two kinds this checkout has: a third of sync_all's time, which asks the master for some twenty kinds
        names = {machine.name for machine in self.nodes}
        for kind in ("modules", "states"):
            self._sync(kind, names)
        installed = self.salt("*", "patroni_debian.install_program")
        assert set(installed) == names, installed
        assert all(result["path"] == PROGRAM_PATH for result in installed.values()), installed

    def _sync(self, kind, names, attempts=3):
        """``saltutil.sync_<kind>`` until every minion of ``names`` has synced this checkout's: a master up for
        seconds may answer a minion's first file list empty (seen once in a hundred fresh labs), so a minion
        that synced nothing is asked again, alone."""
        waiting = set(names)
        for _ in range(attempts):
            synced = self.salt(",".join(sorted(waiting)), f"saltutil.sync_{kind}", tgt_type="list")
            waiting -= {name for name, kinds in synced.items() if f"{kind}.patroni_debian" in kinds}
            if not waiting:
                return
            time.sleep(1)
        raise AssertionError(f"saltutil.sync_{kind}: {', '.join(sorted(waiting))} synced nothing, {attempts} times")

    def without_highstate_sync(self):
        """Every minion restarted with ``autoload_dynamic_modules: False``: its modules are synced already, and
        Salt's highstate would sync every module kind and reload all modules first, 2-3 s of a core per minion
        and run."""
        for machine in self.nodes:
            path = machine.merged / "etc" / "salt" / "minion"
            config = json.loads(path.read_text())
            path.write_text(json.dumps(dict(config, autoload_dynamic_modules=False)))
        for machine in self.nodes:
            # the pings that follow must reach the new minion: its own "ready" is awaited (it starts once the old
            # one has stopped), all three restarting at once
            machine._ready_lines = machine._minion_ready_lines()
            machine.run(["systemctl", "restart", "--no-block", "salt-minion"])
        self.wait_minions()

    def reset_all(self, bare=False, provision=False):
        """Every machine back to its image (``bare``: the one without PostgreSQL, Patroni, etcd or vip-manager)
        and booted, etcd emptied, the lab's own pillar root as it made it, every minion answering: a clean
        slate. ``provision``: with this checkout's modules and program in place (``_place_modules``)."""
        self.image = image(self.release, bare)
        self._reset_pillar()
        for machine in self.nodes:
            machine.power_cut()  # all at once: no member reacts to another's reset
        for machine in self.nodes:
            machine.reset(wait=False, provision=provision)
        for machine in self.nodes:
            machine.wait_booted()
        self.clear_dcs()
        self.wait_minions()

    @contextlib.contextmanager
    def extra_machines(self, count):
        """``count`` machines more of the lab's image (pg4, …) beside the session's three, for one test: booted
        with no Patroni role, this checkout's modules in place, their minions answering; on the way out destroyed,
        their network namespaces, disks and keys with them. They are no ``nodes``: clean slates, pillar targets
        and the lab's checks leave them out."""
        first = len(self.nodes) + 1
        extra = [Machine(self, index) for index in range(first, first + count)]
        try:
            for machine in extra:
                machine.role = None
                netlab.plug_in(self.slot, machine.netns, machine.address)
                machine._mount_overlay(provision=True)
                machine.boot(wait=False)
            for machine in extra:
                machine.wait_booted()
            self.wait_minions(machines=extra)
            yield extra
        finally:
            for machine in extra:
                machine.destroy()
                netlab._sh("ip", "netns", "delete", machine.netns, check=False)
                (self.master_pki / "minions" / machine.name).unlink(missing_ok=True)
                shutil.rmtree(machine.root, ignore_errors=True)

    def _reset_pillar(self):
        if self.default_pillar is None:  # a pillar root of the user's: theirs to keep
            return
        for path in self.pillar_root.iterdir():
            if path.name not in self.default_pillar:
                path.unlink()
        for name, text in self.default_pillar.items():
            (self.pillar_root / name).write_text(text)

    def wait_minions(self, timeout=120, machines=None):
        """Every minion (of ``machines``, default the lab's) answers test.ping. A minion still starting misses the
        ping's publication for good, so each ping is short and the next one is published anew."""
        machines = self.nodes if machines is None else machines
        names = {machine.name for machine in machines}
        listed = ",".join(sorted(names))
        # a ping published before a minion listens is lost and waits out its timeout: first the minions' own word
        started = time.monotonic()
        netlab.wait_until(
            "every minion says it is ready",
            lambda: all(machine.minion_started() for machine in machines),
            timeout,
            interval=0.1,
        )
        timeout = max(1, timeout - (time.monotonic() - started))
        return netlab.wait_until(
            "every minion answers test.ping",
            lambda: set(self.salt(listed, "test.ping", tgt_type="list", timeout=2, gather_job_timeout=1)) >= names,
            timeout,
            interval=0.5,
        )

    def cpu_seconds(self):
        """CPU seconds so far, by part: the host whole (``host``), the lab's machines (``machines``) and their Salt
        minions and Patroni with PostgreSQL (``CPU_PARTS``), the Salt master. Two reads' difference is what ran
        between them; the host's rest is everything else (the master's clients, the kernel, other labs)."""
        master = host_cpu.session_seconds(self.master.pid) if self.master else 0.0
        spent = {"host": host_cpu.busy_seconds(), "Salt master": master}
        for machine in self.nodes:
            for part, seconds in machine.cpu_seconds().items():
                spent[part] = spent.get(part, 0.0) + seconds
        return spent

    def down(self):
        if self._salt_client is not None:
            self._salt_client.stop()
        if self.master is not None:
            self.master.kill()
            self.master.wait()
        super().down()  # remove_stale() also takes the machines' overlays and cgroups


def files(folder):
    """The text of every file in ``folder``, by name."""
    return {path.name: path.read_text() for path in folder.iterdir() if path.is_file()}


def salt_run_cli(switch, config):
    return ["ip", "netns", "exec", switch, str(VENV_BIN / "salt-run"), "-c", str(config)]


def demo_pillar(folder, version, etcd):
    """A working pillar for the lab: its etcd and cluster <version>-main with a replication password made here.

    The folder is root's alone; the password is never printed. Returns the folder.
    """
    folder.mkdir(mode=0o700)
    (folder / "top.sls").write_text("base:\n  'pg*':\n    - patroni\n")
    pillar = {
        "patroni": {
            "dcs": {"etcd3": {"hosts": [etcd]}},
            "clusters": {
                f"{version}-main": {"authentication": {"replication": {"password": secrets.token_urlsafe(24)}}}
            },
        }
    }
    handle = os.open(folder / "patroni.sls", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w") as stream:
        stream.write(json.dumps(pillar))  # JSON is YAML
    return folder


def _lab_config(slot):
    configs = sorted(pathlib.Path(tempfile.gettempdir()).glob(f"{slot.prefix}-lab-*/salt/master"))
    if not configs:
        raise SystemExit(f"no lab is running; start one with: {sys.argv[0]} up")
    return configs[-1].parent


def debian_way(lab, dcs, authentication, dynamic, timeout=180):
    """The Debian way by hand, through Salt: createconfig on every machine, then ``systemctl enable --now
    patroni@<version>-main``; wait until healthy. Returns ``(createconfig results, (leader, timeline))``."""
    created = lab.salt(
        "*",
        "patroni_debian.createconfig",
        lab.version,
        "main",
        f"dcs={json.dumps(dcs)}",
        f"authentication={json.dumps(authentication)}",
        f"dynamic={json.dumps(dynamic)}",
    )
    lab.salt("*", "cmd.run", f"systemctl enable --now patroni@{lab.version}-main")
    healthy = netlab.wait_until(f"{lab.version}-main healthy", lambda: netlab.health(lab.nodes, 8008), timeout)
    return created, healthy


def _init_pid(slot, name):
    """PID 1 of a running lab machine, found through its network namespace."""
    netns = f"{slot.prefix}-m{name.removeprefix('pg')}"
    for pid in netlab._pids_in_netns(netns):
        with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
            if handle.read().strip() == "systemd":
                return pid
    raise SystemExit(f"no lab machine {name} is running; start the lab with: {sys.argv[0]} up")


USAGE = (
    "image [--release R] | up [N] [--pillar DIR] [--release R] | run <machine> <command…> | salt <salt args…> | "
    "salt-run <args…> | down [--all]"
)


def main(argv):
    """Commands for people: image, up, run, salt, salt-run, down (see USAGE)."""
    if argv[:1] == ["image"]:
        release, rest = release_option(argv[1:])
        if rest:
            return _usage()
        for name in [release] if release else releases():
            print(image(name))
        return 0
    slot = netlab.people_slot()
    if argv[:1] == ["up"]:
        return _up(argv[1:], slot)
    if len(argv) >= 3 and argv[0] == "run":
        return subprocess.call(["nsenter", "-t", str(_init_pid(slot, argv[1])), "-a", "--", *argv[2:]])
    if len(argv) >= 2 and argv[0] == "salt":
        return subprocess.call(salt_cli(slot.switch, _lab_config(slot)) + argv[1:])
    if len(argv) >= 2 and argv[0] == "salt-run":
        return subprocess.call(salt_run_cli(slot.switch, _lab_config(slot)) + argv[1:])
    if argv in (["down"], ["down", "--all"]):
        netlab.remove_stale(slot, every_lab=argv == ["down", "--all"])
        return 0
    return _usage()


def _usage():
    print(f"usage: {sys.argv[0]} {USAGE}", file=sys.stderr)
    return 2


def release_option(args):
    """``(release or None, the other arguments)`` from ``--release R`` among ``args``."""
    if "--release" not in args:
        return None, args
    at = args.index("--release")
    if at + 1 >= len(args) or args[at + 1] not in RELEASES:
        raise SystemExit(f"--release: choose from {', '.join(RELEASES)}")
    return args[at + 1], args[:at] + args[at + 2 :]


def _up(args, slot):
    """``up [N] [--pillar DIR] [--release R]``: N machines (3) of release R (this host's), the master's pillar
    root DIR (default: a demo pillar)."""
    release, args = release_option(args)
    count, pillar = 3, None
    while args:
        if args[0] == "--pillar" and len(args) > 1:
            pillar, args = args[1], args[2:]
        elif args[0].isdigit():
            count, args = int(args[0]), args[1:]
        else:
            return _usage()
    if pillar and not pathlib.Path(pillar, "top.sls").is_file():
        raise SystemExit(f"--pillar {pillar}: no top.sls there; a pillar root holds a top file")
    lab = MachineLab(machines=count, pillar=pillar, release=release, slot=slot)
    lab.up()  # machines, etcd and the master outlive this command, in their own sessions
    lab.wait_minions()
    for machine in lab.nodes:
        print(f"{machine.name} {machine.address} role={machine.role}")
    where = pillar or (
        f"{lab.salt_config / 'pillar'} (demo: {lab.version}-main, a replication password made here, root only)"
    )
    print(f"Debian {lab.release}; etcd {slot.etcd}; salt master {slot.gateway} (config {lab.salt_config})")
    print(f"pillar {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
