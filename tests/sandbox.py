"""A throw-away Debian host for one command: private mount, UTS and network namespaces.

The command sees its own host name, an ``eth0`` with the case's addresses and default route (or none), and
per-case ``/etc/patroni``, ``/etc/postgresql-common`` and ``/usr/lib/postgresql`` folders bind-mounted over the
real ones, and a private ``/run/postgresql`` (where the module takes its host lock); ``pg_lsclusters`` is a stub
printing the case's clusters. Nothing outside the case folder changes, and no packet leaves the namespace (it has
no link to anything).
"""

import dataclasses
import grp
import importlib
import json
import os
import pathlib
import pwd
import shutil
import stat
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parent.parent
DEBIAN_CONFFILES = ("config.yml.in", "dcs.yml", "vip.in")
DEBIAN_DEFAULT_DCS = object()  # marker: keep the package's dcs.yml as shipped


def served_repository(folder):
    """The repository as a Salt file root, as a user's checkout is: ``folder`` gets a link to each entry of the
    working copy but its hidden ones (``.venv``, ``.git``, caches). Salt's roots backend walks a file root whole at
    every file-list refresh, ignored entries too (measured: 1.4-2 s of CPU for this working copy with its
    virtualenv, which it also served as 18 000 files when the ignore patterns missed it), and the lab must not pay
    for what a user's master does not hold."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in REPO.iterdir():
        if not entry.name.startswith("."):
            (folder / entry.name).symlink_to(entry)
    return folder


@dataclasses.dataclass
class Host:
    hostname: str = "pg1"
    addresses: tuple = ("10.0.0.11/24",)
    gateway: object = "10.0.0.1"  # None: no default route; "onlink": on-link default route via eth0
    clusters: tuple = ()  # (version, name, port)
    versions: tuple = ("15",)  # versions whose initdb exists
    createcluster_conf: object = None
    dcs_yml: object = DEBIAN_DEFAULT_DCS  # text, None (missing) or DEBIAN_DEFAULT_DCS
    vip_in: bool = True
    files: dict = dataclasses.field(default_factory=dict)  # extra files in /etc/patroni
    prepare: object = None  # callable(etc_patroni folder): links, FIFOs, odd files laid out before the run
    setup: tuple = ()  # shell lines run inside the namespaces before the command (mounts, …)
    umask: object = None  # e.g. 0o077: the umask the command runs with
    patroni_dir: bool = True  # False: no /etc/patroni at all (an overlay over /etc hides it)
    # Debian's files from another release: a folder of its patroni and vip-manager packages extracted, whose
    # conffiles and pg_createconfig_patroni replace the installed ones; None: this host's installed package
    debian_tree: object = None

    def build(self, root):
        """Lay out the case folder ``root`` for this host."""
        etc_patroni = root / "etc_patroni"
        etc_patroni.mkdir(parents=True)
        conffiles = pathlib.Path(self.debian_tree or "/", "etc/patroni")
        for name in DEBIAN_CONFFILES:
            if name == "dcs.yml" and self.dcs_yml is not DEBIAN_DEFAULT_DCS:
                continue
            if name == "vip.in" and not self.vip_in:
                continue
            shutil.copy2(conffiles / name, etc_patroni / name)
        if isinstance(self.dcs_yml, str):
            (etc_patroni / "dcs.yml").write_text(self.dcs_yml)
        for name, text in self.files.items():
            (etc_patroni / name).write_text(text)
        if self.prepare is not None:
            self.prepare(etc_patroni)
        pgcommon = root / "etc_pgcommon"
        pgcommon.mkdir()
        if self.createcluster_conf is not None:
            (pgcommon / "createcluster.conf").write_text(self.createcluster_conf)
        for version in self.versions:
            bindir = root / "usr_lib_pg" / version / "bin"
            bindir.mkdir(parents=True)
            (bindir / "initdb").write_text("#!/bin/sh\nexit 0\n")
            (bindir / "initdb").chmod(0o755)
        (root / "usr_lib_pg").mkdir(exist_ok=True)
        # a host file naming the host, as on a real Debian host, and no name server: lookups end at once
        # instead of waiting on a link to nowhere (Salt's grains resolve the host name)
        (root / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {self.hostname}\n")
        (root / "resolv.conf").write_text("")
        stubs = root / "bin"
        stubs.mkdir()
        listing = "".join(
            f"{v} {n} {p} online postgres /var/lib/postgresql/{v}/{n} /var/log/postgresql/postgresql-{v}-{n}.log\n"
            for v, n, p in self.clusters
        )
        (stubs / "pg_lsclusters").write_text(f"#!/bin/sh\ncat <<'EOF'\n{listing}EOF\n")
        (stubs / "pg_lsclusters").chmod(0o755)
        if self.debian_tree is not None:  # first on PATH: this release's script instead of the installed one
            shutil.copy2(pathlib.Path(self.debian_tree, "usr/bin/pg_createconfig_patroni"), stubs)

    def setup_script(self, root):
        """Shell lines run inside the new namespaces before the command."""
        lines = ["set -e"]
        if not self.patroni_dir:
            # an overlay over /etc, below the binds, whose upper layer shows what the command made in /etc/patroni
            lines += [
                f"mkdir -p {root}/etc_upper {root}/etc_work",
                f"mount -t overlay overlay -o lowerdir=/etc,upperdir={root}/etc_upper,workdir={root}/etc_work /etc",
                "rm -rf /etc/patroni",
            ]
        else:
            lines.append(f"mount --bind {root}/etc_patroni /etc/patroni")
        lines += [
            f"mount --bind {root}/etc_pgcommon /etc/postgresql-common",
            f"mount --bind {root}/usr_lib_pg /usr/lib/postgresql",
            f"mount --bind {root}/hosts /etc/hosts",
            f"mount --bind {root}/resolv.conf /etc/resolv.conf",
            # the host's own lock stays the host's: a case takes its lock in a /run/postgresql of its own
            "if [ -d /run/postgresql ]; then mount -t tmpfs -o mode=2775 tmpfs /run/postgresql &&"
            " chown postgres:postgres /run/postgresql; else mount -t tmpfs -o mode=0755 tmpfs /run; fi",
            f"hostname {self.hostname}",
            "ip link set lo up",
        ]
        if self.addresses:
            lines += ["ip link add eth0 type veth peer name peer0", "ip link set peer0 up", "ip link set eth0 up"]
            # nodad: an IPv6 address still in duplicate detection is not used as a source address
            lines += [
                f"ip address add {address} dev eth0" + (" nodad" if ":" in address else "")
                for address in self.addresses
            ]
        if self.gateway == "onlink":
            lines.append("ip route add default dev eth0")
        elif self.gateway:
            family = "-6" if ":" in self.gateway else "-4"
            lines.append(f"ip {family} route add default via {self.gateway} dev eth0")
        lines.append(f"export PATH={root}/bin:$PATH")
        lines += list(self.setup)
        if self.umask is not None:
            lines.append(f"umask {self.umask:03o}")
        return "\n".join(lines)


@dataclasses.dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    files: dict  # name -> (text, owner, group, mode), for every file the command created or changed


def run(host, root, argv, env=None):
    """Run ``argv`` on a fresh sandboxed ``host`` laid out under ``root``; return its outcome and files."""
    root = pathlib.Path(root)
    host.build(root)
    folder = root / "etc_patroni" if host.patroni_dir else root / "etc_upper" / "patroni"
    before = _snapshot(folder)
    script = host.setup_script(root) + '\nexec "$@"\n'
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--uts",
            "--net",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            script,
            "sh",
            *argv,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, _changed(before, _snapshot(folder)))


def _changed(before, after):
    """The entries of ``after`` (a ``_snapshot``) that are new or differ from ``before``."""
    return {name: state for name, state in after.items() if before.get(name) != state}


def _snapshot(folder):
    """Every entry in ``folder`` as ``name -> (text, owner, group, mode)``; links, folders and special files
    by what they are (a link's target is not followed, a FIFO is not opened)."""
    files = {}
    if not folder.is_dir():
        return files
    for path in folder.iterdir():
        status = path.lstat()
        if stat.S_ISLNK(status.st_mode):
            content = f"-> {os.readlink(path)}"
        elif stat.S_ISREG(status.st_mode):
            content = path.read_bytes().decode("utf-8", "backslashreplace")
        else:
            content = f"({stat.S_IFMT(status.st_mode):o})"
        files[path.name] = (
            content,
            pwd.getpwuid(status.st_uid).pw_name,
            grp.getgrgid(status.st_gid).gr_name,
            status.st_mode & 0o7777,
        )
    return files


def run_plain(argv):
    """A command on the real host, for a test's own clean-up (e.g. ``chattr -i`` on a case file)."""
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def defining_module(function):
    """The module file of this checkout that defines ``patroni_debian.<function>``, imported (in a case's own
    process, with ``_modules`` on its path): Salt joins the files under one name, a test calls the file itself."""
    for name in ("patroni_debian", "patroni_debian_config"):
        module = importlib.import_module(name)
        if getattr(getattr(module, function, None), "__module__", None) == name:
            break
    return module


def module_argv(function, *args, pillar=None, **kwargs):
    """argv that calls ``patroni_debian.<function>`` from this checkout and prints its JSON result.

    The function is taken from the file of the module that defines it, and ``pillar`` becomes that file's
    ``__pillar__``, as Salt's loader would set them. Errors print ``Error: <message>`` and exit 1, the way a
    command-line tool reports them.
    """
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path[:0] = [{str(REPO / "_modules")!r}, {str(REPO / "tests")!r}]
        import sandbox
        module = sandbox.defining_module({function!r})
        args, kwargs, pillar = json.loads(sys.argv[1])
        if pillar is not None:
            module.__pillar__ = pillar
        try:
            result = getattr(module, {function!r})(*args, **kwargs)
        except (module.CommandExecutionError, module.SaltInvocationError) as exc:
            print(f"Error: {{exc}}")
            sys.exit(1)
        print(json.dumps(result))
        """
    )
    return [sys.executable, "-c", code, json.dumps([list(args), kwargs, pillar])]


def module_calls_argv(calls):
    """argv that makes every call of ``calls`` (``[function, args, kwargs, pillar]`` as module_argv takes them)
    one after another in one process, on one host, and prints a JSON list with, for each: ``said`` (what
    module_argv's process would print), ``returncode`` (what it would exit with), ``traceback`` (an exception
    other than Salt's two came out) and ``changed`` (the entries of /etc/patroni the call created or changed).

    For tables of refusals: one interpreter and one host for the whole table instead of one per row.
    """
    code = textwrap.dedent(
        f"""
        import json, pathlib, sys, traceback
        sys.path[:0] = [{str(REPO / "_modules")!r}, {str(REPO / "tests")!r}]
        import sandbox
        records = []
        for function, args, kwargs, pillar in json.loads(sys.argv[1]):
            module = sandbox.defining_module(function)
            module.__pillar__ = pillar  # what Salt's loader gives the function's own file, None outside Salt
            before = sandbox._snapshot(pathlib.Path("/etc/patroni"))
            record = {{"returncode": 0, "traceback": False}}
            try:
                record["said"] = json.dumps(getattr(module, function)(*args, **kwargs))
            except (module.CommandExecutionError, module.SaltInvocationError) as exc:
                record.update(said=f"Error: {{exc}}", returncode=1)
            except Exception:
                record.update(said=traceback.format_exc(), returncode=1, traceback=True)
            record["changed"] = sorted(sandbox._changed(before, sandbox._snapshot(pathlib.Path("/etc/patroni"))))
            records.append(record)
        print(json.dumps(records))
        """
    )
    return [sys.executable, "-c", code, json.dumps(calls)]
