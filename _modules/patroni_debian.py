"""
Patroni clusters the Debian way: postgresql-common clusters ``<version>/<cluster>`` run by
``patroni@<version>-<cluster>`` with ``/etc/patroni/<version>-<cluster>.yml``.

This file has two doors. Salt loads it as the execution module ``patroni_debian``; Patroni will run the
very same file as a plain ``python3`` program for bootstrap and replica creation, where no Salt is
importable. So it uses the standard library and PyYAML only, and reaches Salt solely through the loader's
dunders when they exist.

:depends: postgresql-common, iproute2, PyYAML
"""

import contextlib
import copy
import ctypes
import difflib
import fcntl
import functools
import glob
import ipaddress
import json
import logging
import math
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse

import yaml

try:
    from salt.exceptions import CommandExecutionError, SaltInvocationError
except ImportError:  # run by Patroni as a plain program

    class CommandExecutionError(Exception):
        """A command or an operation on the host failed."""

    class SaltInvocationError(Exception):
        """An argument is invalid."""


class DataSafetyError(CommandExecutionError):
    """Refused: going on would remove or overwrite data that nobody asked to replace."""


log = logging.getLogger(__name__)

__virtualname__ = "patroni_debian"

PATRONI_DIR = "/etc/patroni"
DCS_FILE = "/etc/patroni/dcs.yml"
CREATECLUSTER_CONF = "/etc/postgresql-common/createcluster.conf"
PG_LIB_DIR = "/usr/lib/postgresql"
PG_HOME = "/var/lib/postgresql"
NAMESPACE = "/postgresql-common/"
DEFAULT_PORT = 5432
RESTAPI_PORT_OFFSET = 2576  # Debian's rule: REST API 8008 for PostgreSQL 5432
MAX_PORT = 65535
# Where the formula installs this very file for Patroni to run (createconfig's ``program`` overrides it).
PROGRAM = "/usr/share/patroni-debian/patroni_debian.py"
PYTHON = "/usr/bin/python3"
PG_CONF_DIR = "/etc/postgresql"
# Files Patroni leaves in a pg-common config folder; pg_dropcluster does not know them, so the folder would
# survive the drop and block pg_createcluster ("configuration already exists").
PATRONI_CONFIG_LEFTOVERS = (
    "postgresql.base.conf",
    "postgresql.base.conf.backup",
    "postgresql.conf.backup",
    "pg_hba.conf.backup",
    "pg_ident.conf.backup",
)
DEBIAN_REPLICATION = {"username": "replicator", "password": "rep-pass"}
CONFIG_OWNER, CONFIG_MODE = "postgres", 0o660
VIP_OWNER = "root"

DCS_TYPES = ("etcd", "etcd3", "consul", "zookeeper", "kubernetes", "raft", "exhibitor")
# Top-level Patroni keys that may travel with the DCS section: Debian pastes dcs.yml in at top level,
# which is the documented way to add them.
FRAGMENT_EXTRA_KEYS = ("tags", "log", "watchdog", "ctl", "citus")
# Keys the generated config owns; Debian lets its template win over a dcs.yml repeating them.
TEMPLATE_KEYS = ("scope", "namespace", "name", "restapi", "bootstrap", "postgresql")
# vip-manager's Debian packages: vip-manager is 1.0.2 on bookworm and trixie (upstream's own .deb of 2.x and
# later has the same name); trixie's vip-manager2 (3.x) replaces it.
VIP_MANAGER_PACKAGES = ("vip-manager", "vip-manager2")

OPTIONS = (
    "hostip",
    "network",
    "port",
    "vip",
    "endpoint",
    "dcs",
    "authentication",
    "timing",
    "dynamic",
    "config",
    "program",
)
# Options whose pillar value an argument deep-merges into rather than replaces: a replication password given
# on the command line must not drop the superuser's from pillar.
MERGED_OPTIONS = ("authentication", "dynamic", "config")
AUTHENTICATION_ROLES = ("replication", "superuser", "rewind")
# what Patroni takes for each role: the name, the password and libpq's TLS settings
AUTHENTICATION_KEYS = (
    "username",
    "password",
    "sslmode",
    "sslkey",
    "sslpassword",
    "sslcert",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslnegotiation",
    "gssencmode",
    "channel_binding",
)
ROLE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.$-]*", re.ASCII)
PG_HBA_KEYWORDS = ("all", "sameuser", "samerole", "samegroup", "replication", "public", "none")
# How fast a cluster notices a lost leader, as bootstrap.dcs's timing keys. debian: Patroni's and Debian's
# defaults, a failover within ttl + loop_wait = 40 s; fast: within 25 s, at twice the DCS writes. Both keep
# Patroni's rule loop_wait + 2 × retry_timeout <= ttl and its minimums (ttl 20, loop_wait 1, retry_timeout 3).
TIMING_PROFILES = {
    "debian": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10},
    "fast": {"ttl": 20, "loop_wait": 5, "retry_timeout": 5},
}
TIMING_MINIMUMS = {"ttl": 20, "loop_wait": 1, "retry_timeout": 3}
# Major versions as pg-common names them: 9.x before PostgreSQL 10, one number since (15, never 15.0).
VERSION_RE = re.compile(r"(?:9\.\d|[1-9]\d+)", re.ASCII)
# pg_createcluster accepts [-.\w]+; a leading dash would read as an option, a leading dot as a path trick.
CLUSTER_RE = re.compile(r"\w[-.\w]*", re.ASCII)
# NAMEDATALEN - 1, PostgreSQL's own limit for names: file, unit and DCS key names built from it stay short.
CLUSTER_MAX = 63
SCOPE_FILE_RE = re.compile(r"(?:9\.\d|[1-9]\d+)-\w[-.\w]*\.yml", re.ASCII)
# A key whose value is a secret wherever it appears (``sslpassword``, ``standby_cluster.password``, zookeeper's
# ``auth_data``, ``ssl_passphrase_command``, which holds one inside a command): one rule for every output.
SECRET_KEY_RE = re.compile(r"(?i)passw(?:or)?d|passphrase|token|secret|auth_data|credential|private_key")
NOT_SECRET_KEYS = ("password_encryption",)  # names a hash method, and DBAs read it in diffs
MASK = "********"
# Secrets inside values: ``password=…`` in a libpq key=value string or a URI query, and a URL's userinfo.
# A ``key=value`` or ``key: value`` pair (libpq, a URI query, an environment assignment, YAML, a message) masks
# its next word; a command's setting (``ssl_passphrase_command: echo x``) holds its secret anywhere in the rest of
# the line, so all of that goes.
SECRET_PAIR_RE = re.compile(
    r"(?i)\b(\w*(?:passw(?:or)?d|passphrase|token|secret)\w*)(\s*(?:=|:)\s*)"
    r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|(?<=_command: )[^\n]+|(?<=_command=)[^\n]+|[^\s&'\"#]+)"
)
# A URL's password runs to the line's last ``@``: a ``/``, ``@``, space or quote typed into it (unencoded) must not
# cut the mask short. Masking a little too much of a message is harmless; leaving a tail of a password is not.
URL_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]*):([^\n]*)@")
SHORTEST_LITERAL_SECRET = 4  # shorter pillar secrets are masked only where a key or a URL shows them
# Folders a data directory may neither be, contain, nor (but for DATA_PARENTS) lie in.
SYSTEM_FOLDERS = (
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/cache",
    "/var/lib",
    "/var/log",
    "/var/run",
    "/var/spool",
    "/var/tmp",
    PG_HOME,
)
DATA_PARENTS = ("/", "/home", "/opt", "/srv", "/var", "/var/lib", PG_HOME)  # a data directory may lie below these
# Serialises the runs on one host that decide from its state (ports, data directories). flock: a killed
# run cannot leave it held. /run/postgresql belongs to postgres, so only root and postgres can take it.
LOCK_DIR = "/run/postgresql"
LOCK_FILE = "/run/postgresql/patroni-debian.lock"
LOCK_WAIT = 120
MAX_WAIT = 86400  # seconds: the longest wait any timeout may ask for
READ_LIMIT = 1 << 20  # no config, DCS fragment or env file is near this; a larger one is not one of them
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
SEARCH_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def __virtual__():
    grains = globals().get("__grains__") or {}
    if grains.get("os_family", "Debian") != "Debian":
        return (False, "patroni_debian manages Debian's postgresql-common and patroni packages only")
    return __virtualname__


# --------------------------------------------------------------------------------------------------
# small helpers


def _which(name):
    """Find a program on PATH, then in the sbin folders a minion or a systemd unit may lack."""
    path = os.pathsep.join([os.environ.get("PATH", "")] + list(SEARCH_PATH))
    return shutil.which(name, path=path)


def _run(argv, check=True, user=None, env=None):
    """Run a command without a shell, as ``user`` when given and we are root.

    subprocess rather than cmd.run: the plain-program door has no Salt. Output is captured, never logged
    here, so a caller decides what is safe to show.
    """
    program = _which(argv[0]) if os.sep not in argv[0] else argv[0]
    if not program:
        raise CommandExecutionError(f"{argv[0]} is not installed")
    demote = None
    if user is not None and os.geteuid() == 0:
        entry = pwd.getpwnam(user)

        def demote():
            os.initgroups(entry.pw_name, entry.pw_gid)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

        env = {**(env if env is not None else os.environ), "HOME": entry.pw_dir, "USER": entry.pw_name}
    proc = subprocess.run(
        [program] + list(argv[1:]),
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd="/",  # a tool run as postgres must not start in root's folder
        preexec_fn=demote,
    )
    if check and proc.returncode:
        detail = (proc.stderr or proc.stdout).strip()
        raise CommandExecutionError(f"{' '.join(argv)} failed with exit code {proc.returncode}: {detail}")
    return proc


def _host_errors(function):
    """Report a failed system call (no space, read-only, permission, name too long) as the host's error, and
    mask every secret in every error message.

    Every public function of every file of the module wears it: a traceback names no file and says nothing a
    user can act on, and a message may quote a value from pillar that holds a secret in a place no rule
    expects. The pillar is the one Salt gave the function's own file.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            error = CommandExecutionError(f"{where}{exc.strerror or exc}")
        except (CommandExecutionError, SaltInvocationError) as exc:
            error = exc
        message = _scrub(str(error), _pillar_secrets(function.__globals__.get("__pillar__")))
        raise type(error)(message) from None

    return wrapper


def _read_text(path, follow_links=True):
    """The text of the regular file ``path``; None when it is missing.

    Anything else is a ``CommandExecutionError`` saying what is there: a link (when not followed), a folder,
    a FIFO or device (checked before opening, so a FIFO cannot hang us and /dev/zero cannot fill memory),
    a file larger than any config, text that is not UTF-8.
    """
    try:
        status = os.stat(path, follow_symlinks=follow_links)
        if stat.S_ISLNK(status.st_mode):
            raise CommandExecutionError(f"{path} is a symbolic link, not a file of its own")
        if not stat.S_ISREG(status.st_mode):
            raise CommandExecutionError(f"{path} is not a regular file ({_file_kind(status.st_mode)})")
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
        handle = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CommandExecutionError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(handle, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):  # swapped since the stat above
            raise CommandExecutionError(f"{path} is not a regular file")
        data = stream.read(READ_LIMIT + 1)
    if len(data) > READ_LIMIT:
        raise CommandExecutionError(f"{path} is larger than {READ_LIMIT} bytes; not a file this module reads")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandExecutionError(f"{path} is not UTF-8 text (byte {exc.start})") from None


def _file_kind(mode):
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


@contextlib.contextmanager
def _host_lock(what):
    """Hold the host's lock while ``what`` decides from the host's state and acts on it.

    Two runs at once would otherwise both see a port or a data directory free and both take it. Waits up to
    LOCK_WAIT seconds for another run, then says which lock is held.
    """
    if not os.path.isdir(LOCK_DIR):
        uid, gid = _account(CONFIG_OWNER)
        os.makedirs(LOCK_DIR, mode=0o2775, exist_ok=True)  # as postgresql-common's tmpfiles.d makes it
        os.chown(LOCK_DIR, uid, gid)
        os.chmod(LOCK_DIR, 0o2775)
    try:
        handle = os.open(LOCK_FILE, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise CommandExecutionError(f"cannot open the lock {LOCK_FILE}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CommandExecutionError(
                        f"{what}: another run has held {LOCK_FILE} for {LOCK_WAIT} s; try again when it is done"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(handle)


def _pillar_get(key, default=None, pillar=None):
    """A pillar value by ``a:b:c`` key, as plain data, from ``pillar`` or else this module's ``__pillar__``.

    Reads ``__pillar__`` itself: Salt 3008's ``pillar.get`` redacts every value unless ``unmask=True``,
    an argument older Salt versions reject, and the config needs the real values. A sibling module passes
    its own ``__pillar__``: Salt gives the dunders only to the modules it loads.
    """
    value = pillar if pillar is not None else globals().get("__pillar__")
    if value is None:
        return default
    for part in key.split(":"):
        try:
            value = value[part]
        except (KeyError, TypeError, IndexError):
            return default
    return _plain(value)


def _plain(value):
    """Plain dicts and lists in place of their subclasses (Salt's masked pillar containers), for YAML."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _deep_merge(base, override):
    """A copy of ``base`` with ``override`` merged in: mappings merge key by key, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _is_secret_key(key):
    return isinstance(key, str) and key.lower() not in NOT_SECRET_KEYS and bool(SECRET_KEY_RE.search(key))


def _scrub(text, secrets=()):
    """``text`` with the secrets inside it masked: ``password=…`` pairs, a URL's userinfo password, and each of
    ``secrets`` (literal values, e.g. pillar's, see ``_pillar_secrets``) wherever it stands.

    Any string may carry one (a ``primary_conninfo``, an etcd ``url``, a message quoting either, a password typed
    into the wrong key); masking a little too much in output is harmless, missing one is not.
    """
    text = str(text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = SECRET_PAIR_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return URL_USERINFO_RE.sub(lambda m: f"{m.group(1)}:{MASK}@", text)


def _pillar_secrets(pillar=None):
    """Every secret in pillar ``patroni`` as a literal: values under secret keys, URL passwords, ``password=``
    values. An error that quotes one of them in an unexpected place (a password pasted into ``endpoint``) still
    shows a mask."""
    found = set()

    def walk(value, secret):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, secret or _is_secret_key(key))
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item, secret)
        elif isinstance(value, str):
            if secret:
                found.add(value)
            found.update(match.group(3).strip("'\"") for match in SECRET_PAIR_RE.finditer(value))
            found.update(match.group(2) for match in URL_USERINFO_RE.finditer(value))
        elif secret and value is not None and not isinstance(value, bool):
            found.add(str(value))

    walk(_pillar_get("patroni", pillar=pillar), False)
    return {secret for secret in found if len(secret) >= SHORTEST_LITERAL_SECRET}


def _masked(value, key=None):
    """``value`` with every secret replaced by a mask, for output, logs and errors. Under a secret key every
    value is masked, keeping the shape (a diff's old/new, zookeeper's ``auth_data`` pairs)."""
    if _is_secret_key(key) and value is not None:
        return _all_masked(value)
    if isinstance(value, dict):
        return {k: _masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if isinstance(value, str):
        return _scrub(value)
    return value


def _all_masked(value):
    if isinstance(value, dict):
        return {key: _all_masked(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_all_masked(item) for item in value]
    return None if value is None else MASK


def _diff(old, new, prefix="", secret=False):
    """Key-by-key differences of two parsed documents, as ``{"a.b": {"old": …, "new": …}}``, secrets masked
    (everything below a secret key too)."""

    def shown(value, key):
        return _all_masked(value) if secret and value is not None else _masked(value, key)

    if not (isinstance(old, dict) and isinstance(new, dict)):
        if old == new:
            return {}
        key = prefix.rsplit(".", 1)[-1]
        return {prefix or "(document)": {"old": shown(old, key), "new": shown(new, key)}}
    changes = {}
    for key in list(old) + [k for k in new if k not in old]:
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in new:
            changes[path] = {"old": shown(old[key], key), "new": None}
        elif key not in old:
            changes[path] = {"old": None, "new": shown(new[key], key)}
        else:
            changes.update(_diff(old[key], new[key], path, secret or _is_secret_key(key)))
    return changes


def _host_port(host, port):
    """``host:port`` as Patroni parses it: an IPv6 address goes in brackets."""
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class _NoAliasDumper(yaml.SafeDumper):
    """A safe dumper that writes every value in full: Patroni configs are read by people too."""

    def ignore_aliases(self, data):
        return True


def _dump_yaml(document):
    return yaml.dump(document, Dumper=_NoAliasDumper, default_flow_style=False, sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------------------------------
# validation: every argument is checked before the host is looked at or touched


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, (str, int, float)):
        raise SaltInvocationError(f"version: {version!r} is not a PostgreSQL major version such as 15 or 9.6")
    version = str(version).strip()
    if not VERSION_RE.fullmatch(version):
        hint = f"; write {version[:-2]}" if re.fullmatch(r"[1-9]\d+\.0", version) else ""
        raise SaltInvocationError(
            f"version: {version!r} is not a PostgreSQL major version; expected 10 or later (15) or 9.x (9.6){hint}"
        )
    return version


def _check_initdb(version):
    initdb = os.path.join(PG_LIB_DIR, version, "bin", "initdb")
    if not os.path.isfile(initdb):
        raise SaltInvocationError(
            f"version: no initdb program for PostgreSQL {version} at {initdb}; install postgresql-{version}"
        )


def _check_cluster(cluster):
    if isinstance(cluster, bool) or not isinstance(cluster, (str, int)):
        raise SaltInvocationError(f"cluster: {cluster!r} is not a cluster name (quote names such as 'yes' or 'on')")
    cluster = str(cluster)
    if not CLUSTER_RE.fullmatch(cluster):
        raise SaltInvocationError(
            f"cluster: {cluster!r} is not a valid cluster name; use letters, digits, '_', '-' and '.', "
            "starting with a letter, digit or '_'"
        )
    if len(cluster) > CLUSTER_MAX:
        raise SaltInvocationError(f"cluster: a name of {len(cluster)} characters is too long; at most {CLUSTER_MAX}")
    return cluster


def _check_port(port):
    if port is None:
        return None
    if isinstance(port, bool) or not (
        isinstance(port, int) or (isinstance(port, str) and re.fullmatch(r"[0-9]{1,5}", port))
    ):
        raise SaltInvocationError(f"port: {port!r} is not a TCP port number (digits 0-9)")
    port = int(port)
    highest = MAX_PORT - RESTAPI_PORT_OFFSET
    if not 1 <= port <= highest:
        raise SaltInvocationError(
            f"port: {port} is out of range; expected 1 to {highest}, so that the REST API port "
            f"(port + {RESTAPI_PORT_OFFSET}) stays a valid port"
        )
    return port


def _check_seconds(name, value):
    """``value`` as a number of seconds (float): finite, more than 0, at most a day (a wait that long is a
    typo, and ``.inf`` or ``.nan`` would wait forever)."""
    try:
        seconds = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        seconds = None
    if seconds is None or not math.isfinite(seconds):
        raise SaltInvocationError(f"{name}: {value!r} is not a number of seconds")
    if not 0 < seconds <= MAX_WAIT:
        raise SaltInvocationError(f"{name}: {value!r} must be more than 0 and at most {MAX_WAIT} seconds")
    return seconds


def _check_force(force):
    """``force`` as a boolean: a string ``'no'`` must not count as true."""
    if isinstance(force, bool):
        return force
    if isinstance(force, int) and force in (0, 1):
        return bool(force)
    if isinstance(force, str) and force.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return force.strip().lower() in TRUE_WORDS
    raise SaltInvocationError(f"force: {force!r} is not a boolean; use True or False")


def _check_address(name, value):
    """A unicast address other members can reach: no wildcard, loopback, multicast, link-local or reserved.

    A link-local address needs a zone (``%eth0``) that names the *receiver's* interface, which differs on
    every member, so a single connect address cannot carry one.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        raise SaltInvocationError(f"{name}: {value!r} is not an IP address; expected e.g. 10.0.0.11 or fd00::11")
    try:
        address = ipaddress.ip_address(str(value).strip("[]"))
    except ValueError:
        raise SaltInvocationError(
            f"{name}: {value!r} is not an IP address; expected e.g. 10.0.0.11 or fd00::11"
        ) from None
    for unusable, what in (
        (address.is_unspecified, "the wildcard address"),
        (address.is_loopback, "a loopback address"),
        (address.is_multicast, "a multicast address"),
        (address.is_link_local, "a link-local address (its zone differs on every host)"),
        (address.is_reserved, "a reserved address"),
    ):
        if unusable:
            raise SaltInvocationError(
                f"{name}: {value} is {what}, which other members cannot reach; give a unicast address of this host"
            )
    return address


def _check_network(network):
    if network is None:
        return None
    text = str(network)
    try:
        if "/" not in text or isinstance(network, bool):
            raise ValueError
        return ipaddress.ip_interface(text)
    except ValueError:
        raise SaltInvocationError(
            f"network: {network!r} is not an address range for pg_hba; expected CIDR such as 10.0.0.0/24"
        ) from None


def _has_control_character(text):
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


def _check_text(name, value):
    """A value bound for a line-based file: a line break would start a new setting there."""
    text = str(value)
    if _has_control_character(text):
        raise SaltInvocationError(f"{name}: the value contains a line break or control character")
    return text


def _check_endpoints(endpoint, name="endpoint"):
    """``endpoint`` (comma-separated string or list) as a list of validated http(s) URLs."""
    if endpoint is None:
        return None
    items = endpoint.split(",") if isinstance(endpoint, str) else endpoint
    if not isinstance(items, (list, tuple)) or not items:
        raise SaltInvocationError(f"{name}: {_masked(endpoint)!r} is not a URL or a list of URLs")
    urls = []
    for item in items:
        url = _check_text(name, item).strip() if isinstance(item, str) else None
        parsed = urllib.parse.urlsplit(url or "")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None:
            raise SaltInvocationError(
                f"{name}: {_masked(item)!r} is not a DCS URL; expected http(s)://host:port, several joined by commas"
            )
        urls.append(url)
    return urls


def _check_mapping(name, value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SaltInvocationError(f"{name}: expected a mapping of Patroni keys, got {type(value).__name__}")
    return value


def _check_patroni_keys(name, value, known):
    """A mapping of Patroni settings whose top-level keys Patroni knows."""
    value = _check_mapping(name, value)
    _check_known_keys(name, value, known)
    return value


def _check_authentication(authentication):
    """``{role: {username, password, …}}`` for Patroni's roles; a role given as a string would crash later, a name
    pg_hba would read as syntax opens it, and a password with a line break can never be written to a pgpass."""
    authentication = _check_mapping("authentication", authentication)
    for role, credentials in authentication.items():
        if role not in AUTHENTICATION_ROLES:
            raise SaltInvocationError(
                f"authentication: unknown role {role!r}{_suggestion(role, AUTHENTICATION_ROLES)}; Patroni's roles are "
                f"{', '.join(AUTHENTICATION_ROLES)}"
            )
        if not isinstance(credentials, dict):
            raise SaltInvocationError(
                f"authentication:{role}: expected a mapping such as {{username: replicator, password: …}}, "
                f"got {type(credentials).__name__}"
            )
        _check_known_keys(f"authentication:{role}", credentials, AUTHENTICATION_KEYS)
        for key, value in credentials.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
                raise SaltInvocationError(f"authentication:{role}:{key} must be a string, got {type(value).__name__}")
        if "username" in credentials:
            _check_role_name(f"authentication:{role}:username", credentials["username"])
        password = credentials.get("password")
        if password is not None and _has_control_character(str(password)):
            raise SaltInvocationError(
                f"authentication:{role}:password holds a line break, NUL or other control character, which no "
                "pgpass file can hold"
            )
    return authentication


def _check_role_name(name, value):
    """A role name as pg_hba and Patroni take it unquoted: refused when pg_hba would need it quoted (a space, a
    comma, a quote, a leading ``+``, ``@`` or ``/``), when it is a pg_hba keyword, or a name PostgreSQL reserves."""
    if value is None or str(value) == "":
        raise SaltInvocationError(f"{name}: empty; give the role's name, e.g. replicator")
    text = str(value)
    if not ROLE_NAME_RE.fullmatch(text):
        raise SaltInvocationError(
            f"{name}: {_scrub(text)!r} is not a role name pg_hba can take as it is; use letters, digits, '_', '.', "
            "'-' and '$', starting with a letter, digit or '_' (pg_hba reads spaces, commas, quotes, a leading '+', "
            "'@' or '/' as its own syntax)"
        )
    if text.lower() in PG_HBA_KEYWORDS or text.lower().startswith("pg_") or len(text) > CLUSTER_MAX:
        raise SaltInvocationError(
            f"{name}: {text!r} cannot be a role here: pg_hba keywords ({', '.join(PG_HBA_KEYWORDS)}), names "
            f"starting with pg_ (PostgreSQL's own) and names over {CLUSTER_MAX} characters are refused"
        )
    return text


def _suggestion(key, known):
    """``; did you mean 'x'?`` for the known name closest to a mistyped ``key``, or nothing."""
    close = difflib.get_close_matches(str(key).strip(), [str(name) for name in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_known_keys(where, mapping, known):
    """Refuse the first key of ``mapping`` that is not one of ``known``, naming the closest known one."""
    for key in mapping:
        if key not in known:
            raise SaltInvocationError(
                f"{where}: unknown key {key!r}{_suggestion(key, known)}; known: {', '.join(map(str, known))}"
            )


def _check_override(name, base, override, path=""):
    """Refuse an override that would replace a section of the generated config with a non-mapping.

    ``postgresql: null`` merged over the config would leave Patroni, and this module, without the section
    every member needs; it is a typo, not a wish.
    """
    for key, value in override.items():
        where = f"{path}.{key}" if path else str(key)
        current = base.get(key) if isinstance(base, dict) else None
        if isinstance(current, dict):
            if not isinstance(value, dict):
                raise SaltInvocationError(
                    f"{name}: {where} must be a mapping (it is a section of the generated config), "
                    f"got {'null' if value is None else type(value).__name__}"
                )
            _check_override(name, current, value, where)


def _check_dcs(dcs, source):
    """Validate a DCS section (a mapping such as ``{"etcd3": {"hosts": [...]}}``); return its DCS type."""
    if dcs is None or dcs == {}:
        raise SaltInvocationError(
            f"dcs: DCS not configured ({source} is empty); give dcs=, pillar patroni:dcs or edit {DCS_FILE}"
        )
    if not isinstance(dcs, dict):
        raise SaltInvocationError(
            f"dcs: {source} must be a mapping such as {{etcd3: {{hosts: [10.0.0.5:2379]}}}}, got {type(dcs).__name__}"
        )
    known = DCS_TYPES + FRAGMENT_EXTRA_KEYS + TEMPLATE_KEYS
    unknown = [str(key) for key in dcs if key not in known]
    if unknown:
        raise SaltInvocationError(
            f"dcs: unknown key(s) {', '.join(unknown)} in {source}; a DCS section names one of "
            f"{', '.join(DCS_TYPES)} (and may add {', '.join(FRAGMENT_EXTRA_KEYS)})"
        )
    types = [key for key in dcs if key in DCS_TYPES]
    if len(types) != 1:
        found = ", ".join(types) if types else "none"
        raise SaltInvocationError(f"dcs: {source} must name exactly one DCS of {', '.join(DCS_TYPES)}; found {found}")
    settings = dcs[types[0]]
    if not isinstance(settings, dict) or not settings:
        raise SaltInvocationError(
            f"dcs: {types[0]} in {source} must be a mapping of its settings, e.g. {{hosts: [10.0.0.5:2379]}}"
        )
    return types[0]


# --------------------------------------------------------------------------------------------------
# facts read from the host (read only)


def _read_yaml(path, follow_links=True):
    """Parsed YAML of ``path``; None when the file is missing. A document whose aliases would expand it beyond
    YAML_NODE_LIMIT nodes (a "billion laughs" in a file postgres may write) is refused, not walked."""
    text = _read_text(path, follow_links)
    if text is None:
        return None
    try:
        return _safe_yaml(text)
    except yaml.YAMLError as exc:
        # the parser quotes the offending line, which may hold a secret
        raise CommandExecutionError(f"{path} is not valid YAML: {_scrub(str(exc))}") from None
    except _YamlTooLarge as exc:
        raise CommandExecutionError(f"{path} {exc}; no Patroni config is near that, refused unread") from None


class _YamlTooLarge(Exception):
    """A YAML document larger, once its aliases are expanded, than any config this module reads."""


YAML_NODE_LIMIT = 100_000  # nodes once aliases are expanded; a large Patroni config has a few hundred


def _safe_yaml(text):
    """``yaml.safe_load`` of ``text`` after counting its nodes with every alias expanded, in time linear in the
    document (each node's expanded size is computed once)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(root):
    sizes = {}
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        else:
            children = []
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        size = 1 + sum(sizes.get(id(child), 0) for child in children)
        if size > YAML_NODE_LIMIT:
            raise _YamlTooLarge(f"expands to more than {YAML_NODE_LIMIT} YAML nodes through its aliases")
        sizes[id(node)] = size
    return sizes[id(root)]


def _pg_cluster_table():
    """pg-common clusters from ``pg_lsclusters``: dicts of version, cluster, port, status, datadir."""
    if not _which("pg_lsclusters"):
        return []
    table = []
    for line in _lsclusters().splitlines():
        fields = line.split()
        if len(fields) >= 3:
            table.append(
                {
                    "version": fields[0],
                    "cluster": fields[1],
                    "port": int(fields[2]) if fields[2].isdigit() else None,
                    "status": fields[3] if len(fields) > 3 else "",
                    "datadir": fields[5] if len(fields) > 5 else None,
                }
            )
    return table


def _lsclusters(tries=5, pause=0.2):
    """``pg_lsclusters -h``, asked again when it fails: Patroni rewrites a member's postgresql.conf in place
    (truncated, then written), and pg_lsclusters reading it in between finds no data_directory ("Invalid data
    directory for cluster"). A failure that lasts ``tries`` × ``pause`` seconds is real and raised."""
    for attempt in range(tries):
        try:
            return _run(["pg_lsclusters", "-h"]).stdout
        except CommandExecutionError:
            if attempt == tries - 1:
                raise
            time.sleep(pause)


def _port_of(address):
    """The port of a ``host:port`` listen address, or None."""
    try:
        return int(str(address).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def _listen_port(config):
    """The PostgreSQL port a Patroni config listens on, or None."""
    try:
        return _port_of(config["postgresql"]["listen"])
    except (KeyError, TypeError):
        return None


def _restapi_port(config):
    """The port a Patroni config's REST API listens on, or None."""
    try:
        return _port_of(config["restapi"]["listen"])
    except (KeyError, TypeError):
        return None


def _other_patroni_configs(own_path, warnings):
    """The other Debian-style Patroni configs in /etc/patroni, parsed: ``{path: config}``.

    A neighbour that cannot be read (a link to a device, a FIFO, a folder, not UTF-8, not YAML) is the
    business of its own cluster: it is passed over with a warning, never a reason to fail this one.
    """
    configs = {}
    for path in sorted(glob.glob(os.path.join(PATRONI_DIR, "*.yml"))):
        if path == own_path or not SCOPE_FILE_RE.fullmatch(os.path.basename(path)):
            continue
        try:
            config = _read_yaml(path)
        except CommandExecutionError as exc:
            warnings.append(f"passed over when choosing the port and data directory: {exc}")
            continue
        if isinstance(config, dict):
            configs[path] = config
    return configs


def _config_data_dir(config):
    try:
        return os.path.normpath(str(config["postgresql"]["data_dir"]))
    except (KeyError, TypeError):
        return None


def _port_claims(version, cluster, clusters, others):
    """Every port another cluster on this host holds: ``{port: whose}``, PostgreSQL's and Patroni's REST API's.

    ``clusters`` is ``{(version, cluster): port}`` of pg-common; ``others`` the other Patroni configs."""
    claims = {}
    for (other_version, other_name), port in clusters.items():
        if port and (other_version, other_name) != (version, cluster):
            claims.setdefault(port, f"cluster {other_version}/{other_name}")
    for path, config in others.items():
        if _listen_port(config):
            claims.setdefault(_listen_port(config), f"Patroni config {path}")
        if _restapi_port(config):
            claims.setdefault(_restapi_port(config), f"the REST API of Patroni config {path}")
    return claims


def _choose_port(version, cluster, requested, clusters, own_config_port, claims):
    """The PostgreSQL port: given, else the cluster's own, else one past the highest PostgreSQL port in use (as
    Debian chooses), else 5432; a chosen port whose REST API port (+2576) is taken moves on to the next."""
    own_port = clusters.get((version, cluster))
    if requested is not None:
        if requested != own_port and requested in claims:
            raise SaltInvocationError(f"port: {requested} is already used by {claims[requested]}")
        return requested
    if own_port:
        return own_port
    if own_config_port and own_config_port not in claims and own_config_port + RESTAPI_PORT_OFFSET not in claims:
        return own_config_port
    postgres_ports = [port for port, whose in claims.items() if "REST API" not in whose]
    port = max(postgres_ports, default=DEFAULT_PORT - 1) + 1
    while port in claims or port + RESTAPI_PORT_OFFSET in claims:
        port += 1
    return _check_port(port)


def _data_dir(version, cluster):
    """The data directory pg_createcluster would pick, from createcluster.conf's ``data_directory``."""
    pattern = None
    for line in (_read_text(CREATECLUSTER_CONF) or "").splitlines():
        match = re.match(r"""\s*data_directory\s*=\s*(?:'([^']*)'|"([^"]*)"|([^\s#]+))""", line)
        if match:
            pattern = next(group for group in match.groups() if group is not None)
    if not pattern:
        return f"{PG_HOME}/{version}/{cluster}"
    if not pattern.startswith("/"):
        raise CommandExecutionError(f"data_directory {pattern!r} in {CREATECLUSTER_CONF} is not an absolute path")
    if "%v" not in pattern and "%c" not in pattern:
        # one folder for every cluster would collide; keep them apart the way Debian's template does
        return f"{pattern.rstrip('/')}/{version}/{cluster}"
    substitutes = {"%v": version, "%c": cluster, "%%": "%"}
    return re.sub(r"%[vc%]", lambda m: substitutes[m.group(0)], pattern).rstrip("/")


def _addresses():
    """Every address on the host: ``[(interface, ipaddress.ip_interface)]``."""
    links = json.loads(_run(["ip", "-j", "address", "show"]).stdout or "[]")
    return [
        (link["ifname"], ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}"))
        for link in links
        for info in link.get("addr_info", [])
        if info.get("family") in ("inet", "inet6") and "local" in info
    ]


def _default_source():
    """``(address, interface)`` that the default route leaves from: IPv4 first, then IPv6; None without one.

    Asks the routing table only (``ip route get``); no packet is sent.
    """
    for family, probe in (("-4", "8.8.8.8"), ("-6", "2001:4860:4860::8888")):
        proc = _run(["ip", "-j", family, "route", "get", probe], check=False)
        routes = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
        source = ipaddress.ip_address(routes[0]["prefsrc"]) if routes and routes[0].get("prefsrc") else None
        if source is not None and not source.is_loopback:
            return source, routes[0].get("dev")
    return None


def _host_network(hostip, addresses):
    """The pg_hba range for replication: the host address with its prefix, as Debian writes it."""
    for _, interface in addresses:
        if interface.ip == hostip:
            return interface
    return None


def _resolve_host_address(hostip, network):
    """Fill in the host address and network the Debian way, from the default route when not given."""
    if hostip is not None and network is not None:
        return hostip, network
    if not _which("ip"):
        raise CommandExecutionError(
            "iproute2 is not installed: cannot find the host address; install it or pass hostip= and network="
        )
    addresses = _addresses()
    source = _default_source()
    if hostip is None:
        if source is None:
            raise CommandExecutionError(
                "hostip: this host has no default route, so its address cannot be found; pass hostip= and network="
            )
        hostip = source[0]
    if network is None:
        network = _host_network(hostip, addresses)
        if network is None and source is not None:
            network = _host_network(source[0], addresses)
        if network is None:
            raise CommandExecutionError(f"network: no local address range found for {hostip}; pass network=")
    return hostip, network


def _hostname():
    # os.uname is what `hostname` prints, and what Patroni's vip-manager trigger value must equal
    return os.uname().nodename


def _account(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise CommandExecutionError(f"user {name} does not exist; install postgresql-common") from None
    return entry.pw_uid, entry.pw_gid


def _vip_manager():
    """``(package, major version)`` of the installed vip-manager, or None when none is installed."""
    try:
        proc = _run(
            ["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev} ${Version}\n", *VIP_MANAGER_PACKAGES], check=False
        )
    except CommandExecutionError:
        return None
    for line in proc.stdout.splitlines():
        match = re.fullmatch(r"(\S+) ii\s+(?:\d+:)?(\d+)\..*", line.strip())
        if match:
            return match.group(1), int(match.group(2))
    return None


def _vip_followable(package, major):
    """The Patroni DCS sections that vip-manager can follow, each with the dcs-type it is given for it.

    1.x reads etcd's v2 keys API only; 2.x and later read etcd through the v3 API, and consul, except Debian's
    vip-manager2, which is built without consul.
    """
    if major < 2:
        return {"etcd": "etcd"}
    if package == "vip-manager2":
        return {"etcd3": "etcd"}
    return {"etcd3": "etcd", "consul": "consul"}


def _vip_pairing_advice(package, major):
    """What would work instead, for a DCS the installed vip-manager cannot follow."""
    if major < 2:
        return (
            "Use an etcd: section (etcd's v2 API: etcd started with --enable-v2=true; gone in etcd 3.6), "
            "or install vip-manager2 (Debian 13) for etcd3."
        )
    if package == "vip-manager2":
        return "Use an etcd3: section, or install vip-manager (1.0.2) for an etcd: section."
    return "Use an etcd3: or consul: section."


# --------------------------------------------------------------------------------------------------
# rendering


def _hba_line(kind, database, user, address, method):
    return f"{kind:<7} {database:<15} {user:<15} {address:<23} {method}"


def _pg_hba(network, rewind_user=None):
    """Debian's pg_hba entries, plus pg_rewind's way in from the network when there is a rewind user."""
    entries = [
        _hba_line("local", "all", "all", "", "peer"),
        _hba_line("host", "all", "all", "127.0.0.1/32", "md5"),
        _hba_line("host", "all", "all", "::1/128", "md5"),
    ]
    if rewind_user:
        # pg_rewind reads the new leader's files through database postgres; nothing else is opened
        entries.append(_hba_line("host", "postgres", rewind_user, str(network), "md5"))
    return entries + [
        _hba_line("local", "replication", "all", "", "peer"),
        _hba_line("host", "replication", "all", "127.0.0.1/32", "md5"),
        _hba_line("host", "replication", "all", "::1/128", "md5"),
        # Debian's template pads this line for a 9-character placeholder; the same spacing keeps a diff against
        # a config made by pg_createconfig_patroni down to the differences that matter.
        f"host    replication     all             {network}               md5",
    ]


def _with_rewind_credentials(authentication):
    """``authentication`` with a rewind role: the one given, else the replication role.

    Patroni runs pg_rewind, and its check whether an ex-leader diverged, as the rewind role over the network.
    Debian's config has none (the superuser has no password), so that check can never log in and a crashed
    ex-leader loops forever. The replication role always has a password; at bootstrap Patroni only adds
    LOGIN, the password and pg_rewind's EXECUTE grants to it, keeping REPLICATION.
    """
    replication = authentication.get("replication") or {}
    if not authentication.get("rewind") and replication.get("username") and replication.get("password"):
        authentication = {**authentication, "rewind": dict(replication)}
    return authentication


def _rewind_user(authentication):
    """The role pg_rewind connects as, when it can log in over the network; else None."""
    credentials = authentication.get("rewind") or {}
    if credentials.get("username") and credentials.get("password"):
        return str(credentials["username"])
    return None


def _program_command(program, action):
    return f"{PYTHON} {shlex.quote(program)} {action}"


def _base_config(version, cluster, name, hostip, network, port, data_dir, dcs, authentication, program):
    """The configuration Debian's template yields, as data, with this project's methods and rejoin settings.

    An ex-leader that crashed must rejoin unattended: it rewinds as the rewind role (see
    ``_with_rewind_credentials``), and is re-cloned when rewinding fails.
    """
    api = _host_port(hostip, port + RESTAPI_PORT_OFFSET)
    # Debian's superuser has an empty password; Patroni 4's --validate-config refuses one that is not a string,
    # and an absent one means the same to Patroni (peer authentication over the socket).
    authentication = _with_rewind_credentials(
        _deep_merge({"replication": dict(DEBIAN_REPLICATION), "superuser": {"username": "postgres"}}, authentication)
    )
    rewind_user = _rewind_user(authentication)
    config = {"scope": f"{version}-{cluster}", "namespace": NAMESPACE, "name": name}
    config.update((key, copy.deepcopy(value)) for key, value in dcs.items() if key not in TEMPLATE_KEYS)
    config["restapi"] = {"listen": api, "connect_address": api}
    config["bootstrap"] = {
        "method": "pg_createcluster",
        "pg_createcluster": {"command": _program_command(program, "createcluster")},
        "dcs": {
            **TIMING_PROFILES["debian"],
            "maximum_lag_on_failover": 1048576,
            "check_timeline": True,
            "postgresql": {
                "use_pg_rewind": rewind_user is not None,
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
                "use_slots": True,
                "parameters": {},  # Debian's is empty, which Patroni 4's --validate-config refuses
                "pg_hba": _pg_hba(network, rewind_user),
            },
        },
    }
    config["postgresql"] = {
        "create_replica_method": ["pg_clonecluster"],
        "pg_clonecluster": {"command": _program_command(program, "clone")},
        "listen": f"*:{port}",
        "connect_address": _host_port(hostip, port),
        "use_unix_socket": True,
        "data_dir": data_dir,
        "bin_dir": f"{PG_LIB_DIR}/{version}/bin",
        "config_dir": f"{PG_CONF_DIR}/{version}/{cluster}",
        "pgpass": f"{PG_HOME}/{version}-{cluster}.pgpass",
        "authentication": authentication,
        "parameters": {
            "unix_socket_directories": "/var/run/postgresql/",
            "logging_collector": "on",
            "log_directory": "/var/log/postgresql",
            "log_filename": f"postgresql-{version}-{cluster}.log",
        },
    }
    return config


def _dcs_endpoints(dcs_type, settings):
    """vip-manager endpoints derived from a parsed DCS section (hostnames and ``hosts:`` included)."""
    if settings.get("url"):
        return _check_endpoints([settings["url"]], f"dcs:{dcs_type}:url")
    scheme = settings.get("protocol") or settings.get("scheme") or "http"
    hosts = settings.get("hosts") or settings.get("host")
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    if not hosts:
        raise SaltInvocationError(
            f"endpoint: cannot derive vip-manager's DCS endpoint from the {dcs_type} section "
            "(it has no host, hosts or url); pass endpoint=http://host:2379"
        )
    if not isinstance(hosts, list) or not all(isinstance(host, str) and host.strip() for host in hosts):
        raise SaltInvocationError(
            f"dcs:{dcs_type}:hosts: {_masked(hosts)!r} is not host:port or a list of host:port strings"
        )
    urls = [host if "://" in host else f"{scheme}://{host}" for host in (host.strip() for host in hosts)]
    return _check_endpoints(urls, f"dcs:{dcs_type}:hosts")


# DCS types whose section names host endpoints a TCP connection can try; the others (kubernetes, raft, exhibitor)
# find their peers themselves
DCS_WITH_HOSTS = ("etcd", "etcd3", "consul", "zookeeper")
DCS_CONNECT_TIMEOUT = 2.0  # seconds per endpoint: a DCS slower than that to accept a connection is not answering


def _dcs_answers(dcs, source):
    """``(DCS type, "host:port" that accepted a TCP connection)`` for a DCS section, ``(type, None)`` for a type
    without host endpoints; raises naming the DCS and each endpoint's error when none answers. Host and port
    only: credentials in a URL never reach a message."""
    dcs_type = _check_dcs(dcs, source)
    if dcs_type not in DCS_WITH_HOSTS:
        return dcs_type, None
    tried = []
    for url in _dcs_endpoints(dcs_type, dcs[dcs_type]):
        parts = urllib.parse.urlsplit(url)
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=DCS_CONNECT_TIMEOUT):
                return dcs_type, f"{parts.hostname}:{parts.port}"
        except OSError as exc:
            tried.append(f"{parts.hostname}:{parts.port} ({exc.strerror or exc})")
    raise CommandExecutionError(
        f"the DCS ({dcs_type}) does not answer at {', '.join(tried)}; nothing was changed. Patroni needs it to "
        "elect a leader and to keep one: bring it back (or correct the dcs section), then run again"
    )


def _split_credentials(urls):
    """``(urls without userinfo, (user, password) or None)``: credentials never go into a URL of the file."""
    bare, found = [], set()
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None or parts.password is not None:
            found.add((urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or "")))
            url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
        bare.append(url)
    if len(found) > 1:
        raise SaltInvocationError("endpoint: the DCS URLs carry different credentials; vip-manager takes one pair")
    return bare, (found.pop() if found else None)


def _vip_interface(vip, addresses):
    """The interface and prefix length of the local network that contains the VIP."""
    for ifname, interface in addresses:
        if interface.version == vip.version and not interface.is_loopback and vip in interface.network:
            if interface.network.prefixlen < interface.max_prefixlen:
                network = interface.network
                if network.prefixlen < network.max_prefixlen - 1 and vip in (
                    network.network_address,
                    network.broadcast_address,
                ):
                    what = "network" if vip == network.network_address else "broadcast"
                    raise SaltInvocationError(f"vip: {vip} is the {what} address of {network}; choose a host address")
                return ifname, network.prefixlen
    known = ", ".join(f"{ifname} {interface}" for ifname, interface in addresses if not interface.is_loopback)
    raise SaltInvocationError(
        f"vip: {vip} is in none of this host's networks ({known or 'none'}); "
        "a VIP must be in the subnet of an interface"
    )


def _vip_environment(config, dcs_type, vip, endpoints, addresses, vip_manager):
    """The vip-manager env file's keys, for ``vip_manager`` (``(package, major)`` as installed, or None).

    Each setting goes under its old name (VIP_IFACE, VIP_TYPE, …: vip-manager 1.x reads only those) and its
    new one (VIP_INTERFACE, VIP_DCS_TYPE, …: the only ones from 5.x on); 2.x to 4.x accept both when equal.
    """
    if vip_manager is None:
        raise CommandExecutionError(
            "vip: vip-manager is not installed; install vip-manager or vip-manager2 before configuring a VIP"
        )
    package, major = vip_manager
    followable = _vip_followable(package, major)
    if dcs_type not in followable:
        raise SaltInvocationError(
            f"vip: the installed {package} {major}.x cannot follow Patroni's {dcs_type} DCS; it follows only "
            f"{', '.join(followable)}. {_vip_pairing_advice(package, major)}"
        )
    settings = config[dcs_type]
    endpoints, credentials = _split_credentials(endpoints or _dcs_endpoints(dcs_type, settings))
    ifname, prefix = _vip_interface(vip, addresses)
    key = f"{config['namespace'].rstrip('/')}/{config['scope']}/leader"
    name = str(config["name"])
    env = {
        "VIP_IP": str(vip),
        "VIP_MASK": str(prefix),
        "VIP_NETMASK": str(prefix),
        "VIP_IFACE": ifname,
        "VIP_INTERFACE": ifname,
        "VIP_KEY": key,
        "VIP_TRIGGER_KEY": key,
        "VIP_HOST": name,
        "VIP_TRIGGER_VALUE": name,
        "VIP_TYPE": followable[dcs_type],
        "VIP_DCS_TYPE": followable[dcs_type],
        "VIP_DCS_ENDPOINTS": ",".join(endpoints),
        "VIP_ENDPOINT": ",".join(endpoints),
    }
    # credentials and TLS files the DCS needs, so vip-manager can read what Patroni writes
    sources = dict(settings)
    if credentials is not None:
        if not dcs_type.startswith("etcd"):
            raise SaltInvocationError(
                f"endpoint: credentials in a {dcs_type} URL; vip-manager takes them for etcd only"
            )
        for source, value in zip(("username", "password"), credentials):
            if sources.get(source) not in (None, value):
                raise SaltInvocationError(
                    f"endpoint: the URL's {source} differs from the one in the {dcs_type} section"
                )
            sources[source] = value
    for source, target in (
        ("username", "VIP_ETCD_USER"),
        ("password", "VIP_ETCD_PASSWORD"),
        ("cacert", "VIP_ETCD_CA_FILE"),
        ("cert", "VIP_ETCD_CERT_FILE"),
        ("key", "VIP_ETCD_KEY_FILE"),
        ("token", "VIP_CONSUL_TOKEN"),
    ):
        if sources.get(source) and (target.startswith("VIP_ETCD") == dcs_type.startswith("etcd")):
            env[target] = str(sources[source])
    for target, value in env.items():
        _check_text(f"vip file {target}", value)
    return env


def _env_file_text(header, env):
    escaped = {key: str(value).replace("\\", "\\\\").replace('"', '\\"') for key, value in env.items()}
    return header + "".join(f'{key}="{value}"\n' for key, value in escaped.items())


def _read_env_file(path):
    """A systemd EnvironmentFile's assignments as a dict; None when the file is missing."""
    text = _read_text(path, follow_links=False)
    if text is None:
        return None
    env = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if not match:
            continue
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = re.sub(r"\\(.)", r"\1", value[1:-1]) if value[0] == '"' else value[1:-1]
        env[match.group(1)] = value
    return env


def _dcs_source(dcs, cluster_pillar):
    """The DCS section and where it came from: argument, cluster pillar, pillar patroni:dcs, dcs.yml."""
    if dcs is not None:
        return dcs, "the dcs argument"
    if cluster_pillar.get("dcs") is not None:
        return cluster_pillar["dcs"], "pillar patroni:clusters:<scope>:dcs"
    pillar_dcs = _pillar_get("patroni:dcs")
    if pillar_dcs is not None:
        return pillar_dcs, "pillar patroni:dcs"
    if not os.path.exists(DCS_FILE):
        raise SaltInvocationError(f"dcs: DCS not configured: give dcs=, set pillar patroni:dcs, or write {DCS_FILE}")
    return _read_yaml(DCS_FILE), DCS_FILE


def _cluster_pillar(scope):
    """Pillar ``patroni:clusters:<scope>``, refusing shapes that would otherwise be silently ignored."""
    for key in ("patroni", "patroni:clusters", f"patroni:clusters:{scope}"):
        value = _pillar_get(key)
        if value is not None and not isinstance(value, dict):
            raise SaltInvocationError(f"pillar {key} must be a mapping, got {type(value).__name__}")
    return _pillar_get(f"patroni:clusters:{scope}") or {}


def _settings(version, cluster, kwargs):
    """Arguments over the cluster's pillar entry ``patroni:clusters:<version>-<cluster>``.

    An argument replaces the pillar value, except for the mappings in MERGED_OPTIONS, which it is merged into.
    """
    unknown = sorted(key for key in kwargs if not key.startswith("__") and key not in OPTIONS)
    if unknown:
        raise SaltInvocationError(f"unknown argument(s): {', '.join(unknown)}; accepted: {', '.join(OPTIONS)}, force")
    cluster_pillar = _cluster_pillar(f"{version}-{cluster}")
    settings = {}
    for key in OPTIONS:
        given, pillar = kwargs.get(key), cluster_pillar.get(key)
        if key in MERGED_OPTIONS and isinstance(given, dict) and isinstance(pillar, dict):
            settings[key] = _deep_merge(pillar, given)
        else:
            settings[key] = given if given is not None else pillar
    settings["dcs"], settings["dcs_source"] = _dcs_source(kwargs.get("dcs"), cluster_pillar)
    return settings


def _check_timing(timing):
    if timing is None:
        return "debian"
    if not isinstance(timing, str) or timing not in TIMING_PROFILES:
        raise SaltInvocationError(f"timing: {timing!r} is not a profile; use one of {', '.join(TIMING_PROFILES)}")
    return timing


def _check_timing_rule(dcs):
    """The timing keys as Patroni needs them: numbers of seconds at or above its minimums, and
    ``loop_wait + 2 × retry_timeout <= ttl`` (else a leader could lose its key while it still retries the DCS;
    Patroni 3.2 and later enforce it)."""
    values = {}
    for key, minimum in TIMING_MINIMUMS.items():
        value = dcs.get(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < minimum:
            raise SaltInvocationError(f"dynamic: {key}: {value!r} must be a number of seconds, at least {minimum}")
        values[key] = value
    if values["loop_wait"] + 2 * values["retry_timeout"] > values["ttl"]:
        raise SaltInvocationError(
            f"dynamic: loop_wait {values['loop_wait']:g} + 2 × retry_timeout {values['retry_timeout']:g} is more "
            f"than ttl {values['ttl']:g}; Patroni needs loop_wait + 2 × retry_timeout <= ttl (raise ttl, or choose "
            f"timing: {' or '.join(TIMING_PROFILES)})"
        )


def _check_patroni_dir():
    """Patroni runs as postgres: it must be able to reach the config in /etc/patroni."""
    try:
        status = os.stat(PATRONI_DIR)
    except FileNotFoundError:
        return  # created 0755 when written
    if not stat.S_ISDIR(status.st_mode):
        raise CommandExecutionError(f"{PATRONI_DIR} is not a directory ({_file_kind(status.st_mode)})")
    uid, gid = _account(CONFIG_OWNER)
    mode = status.st_mode
    if not (mode & 0o001 or (status.st_gid == gid and mode & 0o010) or (status.st_uid == uid and mode & 0o100)):
        raise CommandExecutionError(
            f"{PATRONI_DIR} (mode {mode & 0o7777:04o}) cannot be entered by {CONFIG_OWNER}, so Patroni could not read "
            f"its config; chmod 0755 {PATRONI_DIR}"
        )


def _validated(version, cluster, kwargs):
    """The arguments over pillar, each checked; no host fact is read but the DCS fragment file."""
    version, cluster = _check_version(version), _check_cluster(cluster)
    settings = _settings(version, cluster, kwargs)
    program = str(settings["program"] or PROGRAM)
    if not os.path.isabs(program) or "\n" in program:
        raise SaltInvocationError(f"program: {program!r} must be an absolute path")
    return {
        "version": version,
        "cluster": cluster,
        "settings": settings,
        "port": _check_port(settings["port"]),
        "hostip": _check_address("hostip", settings["hostip"]),
        "network": _check_network(settings["network"]),
        "vip": _check_address("vip", settings["vip"]),
        "endpoints": _check_endpoints(settings["endpoint"]),
        "authentication": _check_authentication(settings["authentication"]),
        "timing": _check_timing(settings["timing"]),
        "dynamic": _check_patroni_keys("dynamic", settings["dynamic"], DYNAMIC_KEYS),
        "overrides": _check_patroni_keys("config", settings["config"], CONFIG_KEYS),
        "dcs": settings["dcs"],
        "dcs_type": _check_dcs(settings["dcs"], settings["dcs_source"]),
        "program": program,
    }


def _composed(checked, name, hostip, network, port, data_dir):
    """The config ``checked`` arguments make with these host facts: Debian's template, the timing profile, then
    ``dynamic`` and ``config`` merged over it, and every check that needs no more of the host. The one
    composition: createconfig renders with the host's facts, check_pillar with stand-ins, so a pillar the render
    would refuse is refused before anything is installed."""
    config = _base_config(
        checked["version"],
        checked["cluster"],
        name,
        hostip,
        network,
        port,
        data_dir,
        checked["dcs"],
        checked["authentication"],
        checked["program"],
    )
    config["bootstrap"]["dcs"].update(TIMING_PROFILES[checked["timing"]])
    _check_override("dynamic", config["bootstrap"]["dcs"], checked["dynamic"])
    config["bootstrap"]["dcs"] = _deep_merge(config["bootstrap"]["dcs"], checked["dynamic"])
    _check_override("config", config, checked["overrides"])
    config = _deep_merge(config, checked["overrides"])
    _check_timing_rule(config["bootstrap"]["dcs"])
    _check_authentication(config["postgresql"].get("authentication"))
    _check_own_ports(config)
    _check_data_dir_path(config)
    _check_size(config)
    return config


def _check_own_ports(config):
    """PostgreSQL and the REST API each listen on a port of their own."""
    port, api = _listen_port(config), _restapi_port(config)
    if port is None:
        raise SaltInvocationError(
            f"config: postgresql.listen {_masked(config['postgresql'].get('listen'))!r} names no port; "
            "write address:port, e.g. '*:5432'"
        )
    if api is None:
        raise SaltInvocationError(
            f"config: restapi.listen {_masked((config.get('restapi') or {}).get('listen'))!r} names no port"
        )
    for where, value in (("postgresql.listen", port), ("restapi.listen", api)):
        if not 1 <= value <= MAX_PORT:
            raise SaltInvocationError(f"config: {where} port {value} is not a TCP port")
    if port == api:
        raise SaltInvocationError(f"config: PostgreSQL and the REST API would both listen on port {port}")


def _check_size(config):
    """A config larger than this module reads back (READ_LIMIT) would be written once and refused ever after."""
    size = len(_dump_yaml(config).encode("utf-8"))
    if size > READ_LIMIT // 2:
        raise SaltInvocationError(
            f"config: the rendered config would be {size} bytes; at most {READ_LIMIT // 2} are written (no Patroni "
            "config is near that: look for a runaway value in pillar)"
        )


def _render(version, cluster, kwargs):
    """Everything createconfig would write, computed without writing: the one rendering implementation."""
    checked = _validated(version, cluster, kwargs)
    version, cluster, settings = checked["version"], checked["cluster"], checked["settings"]
    port, hostip, network, vip = checked["port"], checked["hostip"], checked["network"], checked["vip"]
    endpoints, program = checked["endpoints"], checked["program"]
    dcs, dcs_type = checked["dcs"], checked["dcs_type"]
    _check_initdb(version)
    _account(CONFIG_OWNER)
    _check_patroni_dir()

    scope = f"{version}-{cluster}"
    config_file = os.path.join(PATRONI_DIR, f"{scope}.yml")
    vip_file = os.path.join(PATRONI_DIR, f"{scope}.vip")
    warnings = []
    _, existing = _existing_document(config_file, _read_own_yaml)
    others = _other_patroni_configs(config_file, warnings)
    clusters = _pg_cluster_table()
    ports = {(row["version"], row["cluster"]): row["port"] for row in clusters}
    claims = _port_claims(version, cluster, ports, others)
    own_port = _listen_port(existing) if isinstance(existing, dict) else None
    port = _choose_port(version, cluster, port, ports, own_port, claims)
    hostip, network = _resolve_host_address(hostip, network)
    if vip is not None and vip == hostip:
        raise SaltInvocationError(f"vip: {vip} is the host address; a VIP must be an address of its own")

    config = _composed(checked, _hostname(), hostip, network, port, _data_dir(version, cluster))
    _check_claims(version, cluster, config, claims, clusters, others)

    ignored = [key for key in dcs if key in TEMPLATE_KEYS]
    if ignored:
        warnings.append(
            f"{', '.join(ignored)} in {settings['dcs_source']} ignored, as Debian does: the generated keys win; "
            "set them with config= instead"
        )
    defaults = _debian_defaults(scope, config)
    if defaults:
        warnings.append(
            "no replication password given, so Debian's default password, the same on every Debian install, is "
            f"used; set pillar patroni:clusters:{scope}:authentication:replication:password"
        )

    if not config["bootstrap"]["dcs"]["postgresql"].get("use_pg_rewind"):
        warnings.append(
            "no rewind role with a password: a crashed ex-leader can only rejoin by re-cloning, and Patroni cannot "
            f"check whether it diverged; set pillar patroni:clusters:{scope}:authentication:rewind"
        )
    if not os.path.isfile(program):
        warnings.append(
            f"{program} is not installed: Patroni cannot bootstrap or clone until it is; "
            "run patroni_debian.install_program"
        )
    warnings += _risks(config)

    vip_env = None
    if vip is not None:
        vip_env = _vip_environment(config, dcs_type, vip, endpoints, _addresses(), _vip_manager())

    return {
        "config_file": config_file,
        "config": config,
        "vip_file": vip_file if vip_env else None,
        "vip": vip_env,
        "port": _listen_port(config),
        "restapi_port": _restapi_port(config),
        "warnings": warnings,
        "defaults": defaults,
    }


def _debian_defaults(scope, config):
    """The pillar keys of secrets left at Debian's well-known defaults in ``config``, however they got there."""
    replication = (config["postgresql"].get("authentication") or {}).get("replication") or {}
    if str(replication.get("password")) == DEBIAN_REPLICATION["password"]:
        return [f"patroni:clusters:{scope}:authentication:replication:password"]
    return []


def _risks(config):
    """What the config lets in that a reviewer should see: said in every run's warnings, never refused (pillar
    is the master's word, and each has its uses)."""
    risks = []
    restapi_host = str((config.get("restapi") or {}).get("listen", "")).rpartition(":")[0].strip("[]")
    if restapi_host in ("", "*", "0.0.0.0", "::") and not (config.get("restapi") or {}).get("authentication"):
        risks.append(
            "restapi.listen accepts connections on every address and the REST API has no authentication: anyone "
            "who reaches the port can restart, switch over or reinitialise members"
        )
    hba = (((config.get("bootstrap") or {}).get("dcs") or {}).get("postgresql") or {}).get("pg_hba") or []
    for line in hba:
        words = str(line).split()
        if words and words[0].startswith("host") and words[-1] == "trust":
            risks.append(f"pg_hba rule {' '.join(words)!r} lets in without a password over the network")
        if any(word in ("0.0.0.0/0", "::/0") for word in words) and words[-1] != "reject":
            risks.append(f"pg_hba rule {' '.join(words)!r} admits every address")
    commands = _pillar_commands(config)
    if commands:
        risks.append(
            f"pillar sets commands that run as postgres on every member: {', '.join(commands)}; review them as "
            "code (only the master's pillar can set them)"
        )
    return risks


def _pillar_commands(config):
    """The config keys whose values are programs Patroni runs, where pillar changed them from the generated."""
    keys = []
    postgresql = config.get("postgresql") or {}
    if postgresql.get("bin_dir") != f"{PG_LIB_DIR}/{config['scope'].split('-', 1)[0]}/bin":
        keys.append("postgresql.bin_dir")
    if postgresql.get("callbacks"):
        keys.append("postgresql.callbacks")
    for section, path in ((config.get("bootstrap") or {}, "bootstrap"), (postgresql, "postgresql")):
        for method, settings in section.items():
            if (
                isinstance(settings, dict)
                and "command" in settings
                and not str(settings["command"]).startswith(f"{PYTHON} ")
            ):
                keys.append(f"{path}.{method}.command")
    return keys


def _check_claims(version, cluster, config, claims, clusters, others):
    """The final config's ports and data directory are no one else's on this host."""
    for where, port in (("postgresql.listen", _listen_port(config)), ("restapi.listen", _restapi_port(config))):
        own = any((row["version"], row["cluster"]) == (version, cluster) and row["port"] == port for row in clusters)
        if port in claims and not own:
            raise SaltInvocationError(f"config: {where} port {port} is already used by {claims[port]}")
    data_dir = _config_data_dir(config)
    owners = [
        (
            f"cluster {row['version']}/{row['cluster']}",
            row["datadir"],
            os.path.join(PG_CONF_DIR, row["version"], row["cluster"]),
        )
        for row in clusters
        if (row["version"], row["cluster"]) != (version, cluster)
    ]
    owners += [
        (f"Patroni config {path}", _config_data_dir(other), (other.get("postgresql") or {}).get("config_dir"))
        for path, other in others.items()
    ]
    for owner, *paths in owners:
        for path in paths:
            how = _overlap(path, data_dir) if path else None
            if how:
                raise SaltInvocationError(
                    f"config: postgresql.data_dir {data_dir} {how} {path}, a directory of "
                    f"{owner}; each cluster's data directory must be apart from every other's"
                )


def _overlap(other, path):
    """How ``path`` overlaps ``other`` ("is", "contains", "is inside"), or None when apart."""
    first, second = os.path.realpath(other), os.path.realpath(path)
    if first == second:
        return "is"
    if first.startswith(second.rstrip("/") + "/"):
        return "contains"
    if second.startswith(first.rstrip("/") + "/"):
        return "is inside"
    return None


def _check_data_dir_path(config):
    """A data directory Patroni may remove on some failures (remove_data_directory_on_*): never a system folder,
    one that holds one, or the folder of a whole version of clusters."""
    data_dir = _config_data_dir(config)
    if data_dir is None or not os.path.isabs(data_dir):
        raise SaltInvocationError(f"config: postgresql.data_dir must be an absolute path, got {data_dir!r}")
    for system in SYSTEM_FOLDERS:
        how = _overlap(system, data_dir)
        if how in ("is", "contains") or (how == "is inside" and system not in DATA_PARENTS):
            raise SaltInvocationError(
                f"config: postgresql.data_dir {data_dir} {how} {system}; a data directory (which Patroni may remove "
                "when a rewind fails) must be a folder of its own, e.g. /var/lib/postgresql/15/main"
            )
    parent, leaf = os.path.split(os.path.normpath(data_dir))
    if parent == PG_HOME and VERSION_RE.fullmatch(leaf):
        raise SaltInvocationError(
            f"config: postgresql.data_dir {data_dir} is the folder of every PostgreSQL {leaf} cluster; give the "
            f"cluster's own, e.g. {data_dir}/main"
        )


def _existing_document(path, read):
    """``(present, document)`` of a file already there; an empty file (a failed Debian run) counts as absent.

    ``document`` is an ``_Unreadable`` when the file cannot be read as such (a link, not UTF-8, not valid
    YAML): it is still the user's, so it is only replaced with ``force``.
    """
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return False, None
    if stat.S_ISREG(status.st_mode) and status.st_size == 0:
        return False, None
    if stat.S_ISLNK(status.st_mode):
        return True, _Unreadable(f"a symbolic link to {os.readlink(path)}")
    if not stat.S_ISREG(status.st_mode):
        raise CommandExecutionError(
            f"{path} is {_file_kind(status.st_mode)}, not a file; move it away, force=True will not replace it"
        )
    try:
        return True, read(path)
    except CommandExecutionError as exc:
        return True, _Unreadable(str(exc).replace(f"{path} ", "", 1))


class _Unreadable(str):
    """What stands in for a document that could not be read: the reason, shown in place of its content."""


def _read_own_yaml(path):
    return _read_yaml(path, follow_links=False)


# --------------------------------------------------------------------------------------------------
# writing: plan every file first, write only when every plan holds


class _Target:
    """A file createconfig owns: where, what, and whose."""

    def __init__(self, path, document, text, read, owner, group, mode):
        self.path, self.document, self.text, self.read = path, document, text, read
        self.owner, self.group, self.mode = owner, group, mode


HEADER_MARK = ", written by Salt's patroni_debian.createconfig."


def _written_here(path):
    """Whether ``path`` is a config this module wrote (its first line says so): the states may bring it back."""
    try:
        text = _read_text(path, follow_links=False)
    except CommandExecutionError:
        return False
    return bool(text) and text.splitlines()[0].endswith(HEADER_MARK)


def _targets(rendered):
    config = rendered["config"]
    scope = config["scope"]
    header = (
        f"# Patroni configuration of PostgreSQL cluster {scope.replace('-', '/', 1)}{HEADER_MARK}\n"
        "# bootstrap.dcs applies at the first bootstrap only: change a running cluster with patronictl edit-config.\n"
    )
    targets = [
        _Target(
            rendered["config_file"],
            config,
            header + _dump_yaml(config),
            _read_own_yaml,
            CONFIG_OWNER,
            CONFIG_OWNER,
            CONFIG_MODE,
        )
    ]
    env = rendered["vip"]
    if env is not None:
        secret = any(_is_secret_key(key) for key in env)
        text = _env_file_text(
            f"# vip-manager settings for vip-manager@{scope}, written by Salt's patroni_debian.createconfig.\n", env
        )
        targets.append(
            _Target(rendered["vip_file"], env, text, _read_env_file, VIP_OWNER, VIP_OWNER, 0o600 if secret else 0o644)
        )
    return targets


def _plan(target, force):
    """What writing ``target`` would change, e.g. ``{"diff": {...}, "mode": {...}}``; empty when nothing.

    Raises when the file holds something else and ``force`` is not set: that file is the user's.
    """
    present, current = _existing_document(target.path, target.read)
    if not present:
        return {"created": True}
    changes = {}
    if current != target.document:
        diff = (
            _diff(current, target.document)
            if isinstance(current, dict)
            else {"(document)": {"old": _masked(current), "new": "(generated)"}}
        )
        if not force:
            summary = "; ".join(f"{key}: {change['old']!r} -> {change['new']!r}" for key, change in diff.items())
            raise CommandExecutionError(
                f"{target.path} already exists with other content ({summary}); pass force=True to replace it"
            )
        changes["diff"] = diff
        return changes  # rewritten whole: owner and mode come with the new file
    uid, gid = _account(target.owner)[0], _group_id(target.group)
    status = os.lstat(target.path)
    if (status.st_uid, status.st_gid) != (uid, gid):
        changes["owner"] = {"old": f"{status.st_uid}:{status.st_gid}", "new": f"{target.owner}:{target.group}"}
    if status.st_mode & 0o7777 != target.mode:
        changes["mode"] = {"old": f"{status.st_mode & 0o7777:04o}", "new": f"{target.mode:04o}"}
    return changes


def _group_id(name):
    import grp  # pylint: disable=import-outside-toplevel

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise CommandExecutionError(f"group {name} does not exist") from None


def _make_patroni_dir():
    """/etc/patroni as the package makes it, 0755 whatever the umask: Patroni (postgres) must enter it."""
    if not os.path.isdir(PATRONI_DIR):
        os.mkdir(PATRONI_DIR, 0o755)
        os.chmod(PATRONI_DIR, 0o755)


def _stage(target):
    """A complete, synced copy of ``target``'s new content beside it, never readable by others; its path."""
    uid, gid = _account(target.owner)[0], _group_id(target.group)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(target.path), prefix=f".{os.path.basename(target.path)}.")
    try:
        os.fchown(handle, uid, gid)
        os.fchmod(handle, target.mode)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(target.text)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


def _repair(target):
    """Owner and mode of the file itself, never of what a link swapped in would point to."""
    uid, gid = _account(target.owner)[0], _group_id(target.group)
    try:
        handle = os.open(target.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CommandExecutionError(f"{target.path} changed while being repaired: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise CommandExecutionError(f"{target.path} changed while being repaired: not a regular file")
        os.fchown(handle, uid, gid)
        os.fchmod(handle, target.mode)
    finally:
        os.close(handle)
    log.info("patroni_debian: repaired owner and mode of %s", target.path)


def _write_all(plans):
    """Write every planned file, or none: all new contents are staged (where a full disk shows) first, then each
    file replaced, and when a replacement fails (an immutable file, a read-only mount) those already replaced
    are put back. No staged copy, which holds passwords, outlives the call.

    A link at a target's path is replaced by the file, never followed.
    """
    writes = [(target, changes) for target, changes in plans if _rewrites(changes)]
    if writes:
        _make_patroni_dir()
    staged, saved, done = {}, {}, []
    try:
        for target, _ in writes:
            staged[target.path] = _stage(target)
        for target, _ in writes:
            if os.path.lexists(target.path):
                saved[target.path] = _keep_aside(target.path)
        for target, changes in writes:
            os.replace(staged.pop(target.path), target.path)
            done.append(target.path)
            log.info(
                "patroni_debian: wrote %s (keys changed: %s)", target.path, ", ".join(changes.get("diff", {})) or "new"
            )
    except BaseException:
        for path in reversed(done):
            _put_back(path, saved.get(path))
        raise
    finally:
        for temporary in list(staged.values()) + list(saved.values()):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    if writes:
        directory = os.open(PATRONI_DIR, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    for target, changes in plans:
        if changes and not _rewrites(changes):
            _repair(target)
    return done


def _keep_aside(path):
    """A hard link to the file now at ``path`` (its inode, owner and mode kept) to put back if the write fails.
    Linking also fails, before anything changed, where replacing would (an immutable file)."""
    aside = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.before")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(aside)
    os.link(path, aside, follow_symlinks=False)
    return aside


def _put_back(path, aside):
    """Undo one replacement: the earlier file back, or the new file gone when there was none."""
    try:
        if aside is None:
            os.unlink(path)
        else:
            os.replace(aside, path)
    except OSError as exc:
        log.error("patroni_debian: could not put back %s after a failed write: %s", path, exc.strerror)


def _rewrites(changes):
    """Whether a plan writes the file anew (rather than only repairing its owner and mode)."""
    return "created" in changes or "diff" in changes


def _named_options(scope):
    """The named options of createconfig/render_config from their ``locals()``, as ``_render`` takes them."""
    return {key: scope[key] for key in OPTIONS}


def _scrubbed_all(texts):
    secrets = _pillar_secrets()
    return [_scrub(text, secrets) for text in texts]


def _result(rendered, plans):
    return {
        "config_file": rendered["config_file"],
        "vip_file": rendered["vip_file"],
        "port": rendered["port"],
        "restapi_port": rendered["restapi_port"],
        "changes": {target.path: changes for target, changes in plans if changes},
        "warnings": _scrubbed_all(rendered["warnings"]),
    }


# --------------------------------------------------------------------------------------------------
# public functions


@_host_errors
def render_config(
    version,
    cluster,
    *,
    force=False,
    hostip=None,
    network=None,
    port=None,
    vip=None,
    endpoint=None,
    dcs=None,
    authentication=None,
    timing=None,
    dynamic=None,
    config=None,
    program=None,
    **kwargs,
):
    """
    Compute what :py:func:`createconfig` would write and change, writing nothing.

    Takes the same arguments as :py:func:`createconfig` and fails the same way. Secrets in the returned
    configuration and changes are masked. Besides what createconfig returns: ``config`` and ``vip`` (the
    content), ``managed`` (the existing config is one this module wrote) and ``defaults`` (the pillar keys of
    secrets left at Debian's well-known defaults).

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.render_config 15 main
        salt pg1 patroni_debian.render_config 15 main port=5433 vip=10.0.0.100
    """
    options = dict(kwargs, **_named_options(locals()))
    rendered = _render(version, cluster, options)
    plans = [(target, _plan(target, _check_force(force))) for target in _targets(rendered)]
    result = _result(rendered, plans)
    result["managed"] = _written_here(rendered["config_file"])
    result["defaults"] = rendered["defaults"]
    result["config"] = _masked(rendered["config"])
    result["vip"] = _masked(rendered["vip"])
    return result


@_host_errors
def createconfig(
    version,
    cluster,
    *,
    force=False,
    hostip=None,
    network=None,
    port=None,
    vip=None,
    endpoint=None,
    dcs=None,
    authentication=None,
    timing=None,
    dynamic=None,
    config=None,
    program=None,
    **kwargs,
):
    """
    Write the Patroni configuration of the pg-common cluster ``<version>/<cluster>``, as Debian's
    ``pg_createconfig_patroni`` does, with its bugs fixed.

    Writes ``/etc/patroni/<version>-<cluster>.yml`` (``postgres:postgres``, mode 0660, atomically) and,
    with ``vip``, ``/etc/patroni/<version>-<cluster>.vip`` for ``vip-manager@<version>-<cluster>``.
    Content equal to what is there is left alone and reported as no change; other content is replaced
    only with ``force=True``. Every argument is validated before anything is written.

    version
        PostgreSQL major version, e.g. ``15`` or ``9.6``; its ``initdb`` must be installed.

    cluster
        pg-common cluster name, e.g. ``main`` or ``my-app``.

    hostip
        Address for the REST API and for PostgreSQL's ``connect_address``. Default: the source address of
        the default route (IPv4, else IPv6).

    network
        Address range (CIDR) allowed to replicate in pg_hba. Default: the host address with its prefix.

    port
        PostgreSQL port. Default: the cluster's existing port, else the port in its existing config, else
        one past the highest port of every pg-common cluster and Patroni config, else 5432. The REST API
        listens on ``port + 2576``.

    force
        Replace existing files whose content differs. Default ``False``.

    vip
        Virtual IP address: also write the vip-manager file. The installed vip-manager must be able to
        follow the DCS (bookworm's 1.0.2 follows only ``etcd``, the v2 API).

    endpoint
        DCS URL(s) for vip-manager, comma-separated or a list. Default: derived from the DCS section.

    dcs
        The DCS section, e.g. ``{"etcd3": {"hosts": ["10.0.0.5:2379"]}}``. Default: pillar
        ``patroni:clusters:<version>-<cluster>:dcs``, else pillar ``patroni:dcs``, else ``/etc/patroni/dcs.yml``.

    authentication
        Merged over ``postgresql.authentication``, e.g. ``{"replication": {"password": "…"}}``. Without a
        replication password, Debian's default credentials are kept and a warning says so.

    timing
        ``debian`` (the default: ttl 30, loop_wait 10, retry_timeout 10; a failover within 40 s) or ``fast``
        (ttl 20, loop_wait 5, retry_timeout 5; within 25 s): ``bootstrap.dcs``'s timing keys. ``dynamic`` may
        set them one by one; the result must keep ``loop_wait + 2 × retry_timeout <= ttl``.

    dynamic
        Deep-merged into ``bootstrap.dcs`` (ttl, loop_wait, postgresql.parameters, …).

    config
        Deep-merged over the whole generated configuration: any Patroni key.

    Every argument but ``force`` defaults to the same key in pillar ``patroni:clusters:<version>-<cluster>``.

    Returns the files, the ports, the changes (secrets masked) and warnings.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.createconfig 15 main
        salt pg1 patroni_debian.createconfig 15 main port=5433 network=10.0.0.0/24 force=True
        salt pg1 patroni_debian.createconfig 15 main vip=10.0.0.100 dcs='{etcd: {host: 10.0.0.5:2379}}'
    """
    force = _check_force(force)
    options = dict(kwargs, **_named_options(locals()))
    with _host_lock(f"createconfig {version} {cluster}"):
        rendered = _render(version, cluster, options)
        plans = [(target, _plan(target, force)) for target in _targets(rendered)]
        written = _write_all(plans)
    result = _result(rendered, plans)
    result["written"] = written
    return result


# --------------------------------------------------------------------------------------------------
# createcluster and clone: Patroni's bootstrap and replica-creation methods


def _check_datadir(datadir, required=True):
    if datadir is None or datadir == "":
        if required:
            raise SaltInvocationError("datadir: required, an absolute path such as /var/lib/postgresql/15/main")
        return None
    path = _check_text("datadir", datadir)
    if not os.path.isabs(path):
        raise SaltInvocationError(f"datadir: {datadir!r} must be an absolute path")
    return os.path.normpath(path)


def _split_scope(scope):
    """``15-my-app`` is version 15, cluster ``my-app``: the version ends at the first dash (or slash)."""
    for separator in ("-", "/"):
        if separator in scope:
            version, cluster = scope.split(separator, 1)
            return _check_version(version), _check_cluster(cluster)
    raise SaltInvocationError(f"scope: {scope!r} is not <version>-<cluster>, e.g. 15-main")


def _is_empty_dir(path):
    """True for an empty or missing folder."""
    try:
        return not os.listdir(path)
    except FileNotFoundError:
        return True
    except NotADirectoryError:
        return False
    except PermissionError:
        raise CommandExecutionError(
            f"data directory {path} cannot be read as {pwd.getpwuid(os.geteuid()).pw_name}; run as root or as its owner"
        ) from None


def _running_postmaster(datadir):
    """PID of a live server that holds ``datadir`` (its postmaster.pid), or None."""
    try:
        with open(os.path.join(datadir, "postmaster.pid"), encoding="ascii") as handle:
            pid = int(handle.readline())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else
    return pid


def _same_path(first, second):
    return os.path.realpath(first) == os.path.realpath(second)


def _refuse_data_dir_of_another_cluster(version, cluster, datadir, table):
    """An emptied data directory still belongs to its cluster: pg_dropcluster of either would remove both."""
    for row in table:
        if (row["version"], row["cluster"]) != (version, cluster) and row["datadir"]:
            if _same_path(row["datadir"], datadir):
                raise DataSafetyError(f"data directory {datadir} belongs to cluster {row['version']}/{row['cluster']}")


def _make_room_for_clone(version, cluster, datadir):
    """Check that cloning into ``datadir`` loses nothing, and drop a stale pg-common cluster of this name."""
    if not _is_empty_dir(datadir):
        pid = _running_postmaster(datadir)
        if pid:
            raise DataSafetyError(f"data directory {datadir} is in use by a running server (pid {pid})")
        raise DataSafetyError(
            f"data directory {datadir} is not empty; refusing to overwrite it (Patroni empties it before cloning)"
        )
    table = _pg_cluster_table()
    _refuse_data_dir_of_another_cluster(version, cluster, datadir, table)
    own = next((row for row in table if (row["version"], row["cluster"]) == (version, cluster)), None)
    config_dir = f"{PG_CONF_DIR}/{version}/{cluster}"
    if own is None and not os.path.exists(config_dir):
        return
    if own is not None and own["status"].startswith("online"):
        raise DataSafetyError(f"cluster {version}/{cluster} is running; refusing to drop it to clone over it")
    if own is not None and own["datadir"] and not _same_path(own["datadir"], datadir):
        if not _is_empty_dir(own["datadir"]):
            raise DataSafetyError(
                f"cluster {version}/{cluster} keeps its data in {own['datadir']}, not {datadir}; "
                "drop it with pg_dropcluster if that data is not needed"
            )
    _drop_stale_cluster(version, cluster, config_dir)


def _drop_stale_cluster(version, cluster, config_dir):
    """Remove the pg-common metadata of a cluster whose data is gone (a re-clone)."""
    if os.path.exists(os.path.join(config_dir, "postgresql.conf")):
        _run(["pg_dropcluster", "--stop", version, cluster])
        log.info("patroni_debian: dropped stale cluster %s/%s, whose data was gone", version, cluster)
    for leftover in PATRONI_CONFIG_LEFTOVERS:
        path = os.path.join(config_dir, leftover)
        if os.path.isfile(path):
            os.unlink(path)
    if os.path.isdir(config_dir) and not os.listdir(config_dir):
        os.rmdir(config_dir)
    if os.path.exists(config_dir):
        raise CommandExecutionError(
            f"{config_dir} still holds {', '.join(sorted(os.listdir(config_dir)))} after pg_dropcluster; "
            f"remove them to let cluster {version}/{cluster} be cloned"
        )


def _empty_directory(path):
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


class _ConninfoOption(ctypes.Structure):
    """libpq's PQconninfoOption."""

    _fields_ = [
        ("keyword", ctypes.c_char_p),
        ("envvar", ctypes.c_char_p),
        ("compiled", ctypes.c_char_p),
        ("val", ctypes.c_char_p),
        ("label", ctypes.c_char_p),
        ("dispchar", ctypes.c_char_p),
        ("dispsize", ctypes.c_int),
    ]


def _libpq():
    try:
        library = ctypes.CDLL("libpq.so.5")
    except OSError:
        raise CommandExecutionError(
            "libpq.so.5 is not installed (package libpq5, a dependency of postgresql)"
        ) from None
    library.PQconninfoParse.restype = ctypes.POINTER(_ConninfoOption)
    library.PQconninfoParse.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    library.PQconninfoFree.argtypes = [ctypes.POINTER(_ConninfoOption)]
    library.PQfreemem.argtypes = [ctypes.c_void_p]
    return library


def _parse_conninfo(connstring):
    """libpq's own reading of ``connstring`` (key=value or URI): ``[(keyword, value, secret)]`` as given.

    libpq itself marks its secret options (``password``, ``sslpassword``, …) with the display character
    ``*``; a hand-written parser would miss a syntax or an option. Its error messages quote the string,
    which may hold a password, so they are not passed on.
    """
    library = _libpq()
    error = ctypes.c_void_p()
    options = library.PQconninfoParse(os.fsencode(connstring), ctypes.byref(error))
    if not options:
        if error.value:
            library.PQfreemem(error)
        raise SaltInvocationError(
            "connstring: libpq cannot read it; expected key=value pairs ('host=10.0.0.11 port=5432 user=replicator') "
            "or a postgresql:// URI (libpq's message is not shown: it may quote a password)"
        )
    try:
        parsed, index = [], 0
        while options[index].keyword:
            option = options[index]
            if option.val is not None:
                parsed.append((option.keyword.decode(), os.fsdecode(option.val), option.dispchar == b"*"))
            index += 1
    finally:
        library.PQconninfoFree(options)
    return parsed


def _conninfo_value(value):
    """A libpq value, quoted when empty or holding a space, quote or backslash."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + re.sub(r"(['\\])", r"\\\1", value) + "'"


def _split_connstring(connstring):
    """``(conninfo without secrets, {secret keyword: value})`` from any connection string libpq reads."""
    connstring = str(connstring or "").strip()
    if not connstring:
        raise SaltInvocationError("connstring: required, a libpq connection string such as 'host=10.0.0.11 port=5432'")
    public, secrets = [], {}
    for keyword, value, secret in _parse_conninfo(connstring):
        if secret:
            secrets[keyword] = value
        else:
            public.append(f"{keyword}={_conninfo_value(value)}")
    for keyword, value in secrets.items():
        if "\n" in value or "\r" in value or (keyword != "password" and value != value.strip()):
            raise SaltInvocationError(f"connstring: {keyword} cannot hold a line break or surrounding spaces")
    return " ".join(public), secrets


@contextlib.contextmanager
def _private_credentials(secrets):
    """Environment for libpq that carries ``secrets`` in files only postgres can read, gone afterwards.

    The password goes to a pgpass file (which escapes any character); other secrets (``sslpassword``) to a
    service file named by an added ``service=`` option. Never an argument: every local user can read those.
    """
    if not secrets:
        yield {}, ""
        return
    folder = tempfile.mkdtemp(prefix="patroni-debian-")  # mode 0700
    try:
        if os.geteuid() == 0:
            uid, gid = _account(CONFIG_OWNER)
            os.chown(folder, uid, gid)
        env, extra = {}, ""
        password = secrets.pop("password", None)
        if password is not None:
            env["PGPASSFILE"] = _private_file(folder, "pgpass", "*:*:*:*:" + re.sub(r"([:\\])", r"\\\1", password))
        if secrets:
            lines = "".join(f"{keyword}={value}\n" for keyword, value in secrets.items())
            env["PGSERVICEFILE"] = _private_file(folder, "pg_service.conf", f"[{SERVICE}]\n{lines}")
            extra = f" service={SERVICE}"
        yield env, extra
    finally:
        shutil.rmtree(folder, ignore_errors=True)


SERVICE = "patroni_debian_clone"


def _private_file(folder, name, text):
    path = os.path.join(folder, name)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    if os.geteuid() == 0:
        os.fchown(handle, *_account(CONFIG_OWNER))
    with os.fdopen(handle, "w", encoding="utf-8", errors="surrogateescape") as stream:
        stream.write(text + "\n")
    return path


def _basebackup(version, datadir, conninfo, secrets):
    """pg_basebackup of the source into ``datadir``, as postgres; secrets only through private files."""
    with _private_credentials(dict(secrets)) as (env, extra):
        argv = [
            f"{PG_LIB_DIR}/{version}/bin/pg_basebackup",
            "--pgdata",
            datadir,
            "-X",
            "stream",
            f"--dbname={conninfo}{extra}",
        ]
        _run(argv, user=CONFIG_OWNER, env={**os.environ, **env})


def _pg_createcluster(version, cluster, datadir=None, throwaway=False):
    """pg_createcluster with start.conf ``manual``: only Patroni starts a cluster it runs.

    ``throwaway``: the data initdb makes is replaced at once (a clone), so it is not synced to disk, which
    saves a replica about half a second of its join.
    """
    argv = ["pg_createcluster", "--start-conf=manual"] + ([f"--datadir={datadir}"] if datadir else [])
    _run(argv + [version, cluster] + (["--", "--no-sync"] if throwaway else []))


def _parent_folders_for_postgres(datadir):
    """The data directory's missing parent folders, made as postgres's (0755), as pg_createcluster makes them
    when postgres runs it. Run by root, it makes them root's: Patroni, as postgres, then can neither remove
    nor rename the data directory when it re-clones (reinit, a rewind that failed). Existing folders are left
    as they are."""
    if os.geteuid() != 0:
        return
    uid, gid = _account(CONFIG_OWNER)
    missing, parent = [], os.path.dirname(os.path.abspath(datadir))
    while not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for folder in reversed(missing):
        os.mkdir(folder, 0o755)
        os.chown(folder, uid, gid)
        os.chmod(folder, 0o755)  # whatever the umask


def _new_paths(version, cluster, datadir):
    """What pg_createcluster may create for ``<version>/<cluster>``, each with whether it is there now.

    ``[(path, status or None)]``, deepest first, missing parent folders included: what a failed run must
    remove again, and an empty data directory that was there, to be left empty with its owner and mode.
    """
    paths = []
    for leaf in (
        f"{PG_CONF_DIR}/{version}/{cluster}",
        datadir,
        f"/var/log/postgresql/postgresql-{version}-{cluster}.log",
    ):
        path = leaf
        while path != os.path.dirname(path):
            try:
                paths.append((path, os.lstat(path)))
                break
            except FileNotFoundError:
                paths.append((path, None))
                path = os.path.dirname(path)
    return sorted(dict(paths).items(), key=lambda item: -item[0].count(os.sep))


@contextlib.contextmanager
def _undone_on_failure(paths, datadir):
    """Run the block; if it fails, put back what ``paths`` recorded (nothing else existed to lose)."""
    try:
        yield
    except BaseException as failure:
        problems = []
        for path, before in paths:
            try:
                if before is None and os.path.lexists(path):
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
                elif before is not None and stat.S_ISDIR(before.st_mode):
                    if path == datadir:
                        _empty_directory(path)
                        os.chown(path, before.st_uid, before.st_gid)
                        os.chmod(path, before.st_mode & 0o7777)
                    with contextlib.suppress(PermissionError):  # only the owner may; times are not data
                        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror}")
        if problems and isinstance(failure, Exception):
            raise CommandExecutionError(f"{failure}; undoing it left {'; '.join(problems)}") from failure
        raise


@_host_errors
def createcluster(version, cluster, datadir=None):
    """
    Create the pg-common cluster ``<version>/<cluster>`` for Patroni to bootstrap, as Debian's
    ``pg_createcluster_patroni`` does: ``pg_createcluster --start-conf=manual``, so that only Patroni starts it.

    Refuses, touching nothing, when the cluster's configuration already exists or its data directory is not
    empty. Patroni calls this as its custom bootstrap method (through this file run as a program).

    version
        PostgreSQL major version, e.g. ``15``.

    cluster
        pg-common cluster name, e.g. ``main`` or ``my-app``.

    datadir
        Data directory; default: where pg_createcluster puts it (createcluster.conf).

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.createcluster 15 main
        salt pg1 patroni_debian.createcluster 15 my-app datadir=/srv/pg/15/my-app
    """
    version, cluster = _check_version(version), _check_cluster(cluster)
    datadir = _check_datadir(datadir, required=False)
    _check_initdb(version)
    config_dir = f"{PG_CONF_DIR}/{version}/{cluster}"
    with _host_lock(f"createcluster {version}/{cluster}"):
        target = datadir or _data_dir(version, cluster)
        if os.path.lexists(config_dir):
            raise DataSafetyError(
                f"cluster {version}/{cluster} already exists ({config_dir}); refusing to create it again. "
                "Drop it with pg_dropcluster if its data is not needed"
            )
        if not _is_empty_dir(target):
            raise DataSafetyError(
                f"data directory {target} is not empty; refusing to create {version}/{cluster} over it"
            )
        _refuse_data_dir_of_another_cluster(version, cluster, target, _pg_cluster_table())
        with _undone_on_failure(_new_paths(version, cluster, target), target):
            _parent_folders_for_postgres(target)
            _pg_createcluster(version, cluster, datadir)
    log.info("patroni_debian: created cluster %s/%s in %s", version, cluster, target)
    return {"cluster": f"{version}/{cluster}", "datadir": target, "config_dir": config_dir}


@_host_errors
def clone(version, cluster, datadir, connstring, password=None):
    """
    Make ``<version>/<cluster>`` a copy of a running member, as Debian's ``pg_clonecluster_patroni`` does:
    pg-common metadata from ``pg_createcluster --start-conf=manual``, data from ``pg_basebackup``.

    A stale pg-common cluster of the same name whose data is gone (a re-clone) is dropped first, with
    ``--stop``. Refuses, touching nothing, when the data directory is not empty (in use by a running server or
    not), when it belongs to another cluster, or when the cluster of this name is running or keeps data
    elsewhere. Patroni calls this as its replica creation method, with the password in ``PGPASSFILE``.

    version
        PostgreSQL major version, e.g. ``15``.

    cluster
        pg-common cluster name, e.g. ``main`` or ``my-app``.

    datadir
        Data directory to fill, empty or missing.

    connstring
        libpq connection string of the source, key=value (``host=10.0.0.11 port=5432 user=replicator``) or
        URI (``postgresql://replicator@10.0.0.11:5432/postgres``), read by libpq itself. Its secrets
        (``password``, ``sslpassword``) move into private files that only postgres can read and that are
        removed afterwards; they never reach a command line, a message or a log.

    password
        Replication password. Default: the one in ``connstring``, else pillar
        ``patroni:clusters:<version>-<cluster>:authentication:replication:password`` when ``connstring``
        names that role, else ``PGPASSFILE`` or ``~postgres/.pgpass``. Prefer pillar: an argument is
        stored in Salt's job cache.

    A failure after ``pg_createcluster`` removes what this run created (config folder, data directory,
    log file), so a retry starts from the same host.

    CLI Example:

    .. code-block:: bash

        salt pg2 patroni_debian.clone 15 main /var/lib/postgresql/15/main connstring='host=10.0.0.11 user=replicator'
    """
    version, cluster = _check_version(version), _check_cluster(cluster)
    datadir = _check_datadir(datadir)
    conninfo, secrets = _split_connstring(connstring)
    if password is not None:
        secrets["password"] = _check_text("password", password)
    elif "password" not in secrets:
        secrets.update(_pillar_replication_password(version, cluster, conninfo))
    _check_initdb(version)
    with _host_lock(f"clone {version}/{cluster}"):
        _make_room_for_clone(version, cluster, datadir)
        paths = _new_paths(version, cluster, datadir)
        with _undone_on_failure(paths, datadir):
            _parent_folders_for_postgres(datadir)
            _pg_createcluster(version, cluster, datadir, throwaway=True)
    with _undone_on_failure(paths, datadir):
        _empty_directory(datadir)  # initdb's fresh files, made by the line above, make way for the copy
        _basebackup(version, datadir, conninfo, secrets)
    log.info("patroni_debian: cloned cluster %s/%s into %s from %s", version, cluster, datadir, _scrub(conninfo))
    return {"cluster": f"{version}/{cluster}", "datadir": datadir, "source": _scrub(conninfo)}


def _pillar_replication_password(version, cluster, conninfo):
    """``{"password": …}`` from pillar when the connection is as the cluster's replication role (Salt door)."""
    replication = _pillar_get(f"patroni:clusters:{version}-{cluster}:authentication:replication") or {}
    if not isinstance(replication, dict) or replication.get("password") is None:
        return {}
    user = dict((keyword, value) for keyword, value, _ in _parse_conninfo(conninfo)).get("user")
    if user != str(replication.get("username") or DEBIAN_REPLICATION["username"]):
        return {}
    return {"password": _check_text("pillar replication password", replication["password"])}


PILLAR_CLUSTER_KEYS = OPTIONS + ("purge", "replace_existing")
PILLAR_KEYS = ("clusters", "dcs", "role", "lookup")
LOOKUP_KEYS = ("packages", "dcs_packages", "vip_packages", "health_timeout")
ROLES = ("bootstrap", "replica")
# Top-level keys of a Patroni config (config:) and of its dynamic settings (dynamic:, bootstrap.dcs), Patroni 3.0
# to 4.0: a key Patroni does not know is a typo that would otherwise be written and silently ignored.
CONFIG_KEYS = ("name", "namespace", "scope", "log", "bootstrap", "citus", "restapi", "ctl", "postgresql", "watchdog")
CONFIG_KEYS += ("tags",) + DCS_TYPES
DYNAMIC_KEYS = (
    "loop_wait",
    "ttl",
    "retry_timeout",
    "maximum_lag_on_failover",
    "maximum_lag_on_syncnode",
    "max_timelines_history",
    "primary_start_timeout",
    "primary_stop_timeout",
    "master_start_timeout",
    "master_stop_timeout",
    "primary_race_backoff",
    "synchronous_mode",
    "synchronous_mode_strict",
    "synchronous_node_count",
    "failsafe_mode",
    "check_timeline",
    "member_slots_ttl",
    "slots",
    "ignore_slots",
    "standby_cluster",
    "postgresql",
)
# What check_pillar composes a config with where a host fact is not in pillar: an address of the documentation
# range (RFC 5737), never reached; the facts themselves are checked at render time.
STAND_IN_HOST = ipaddress.ip_interface("192.0.2.1/24")
SCOPE_RE = re.compile(r"(?:9\.\d|[1-9]\d+)-\w[-.\w]*", re.ASCII)


@_host_errors
def check_pillar():
    """
    Check this minion's pillar ``patroni`` before anything is installed or changed: every cluster's config
    composed as :py:func:`createconfig` composes it (with stand-ins for the host's facts), so whatever the render
    would refuse is refused here; plus what only pillar can get wrong (unknown keys at every level, with the
    closest known one, a missing replication password, two clusters on one port or REST API port, a VIP that
    is this host's address or outside its networks, a version with no package, a role that is not one of
    ``bootstrap``/``replica``).

    Needs no PostgreSQL, Patroni or vip-manager installed. Returns ``{scope: {version, cluster, port, vip}}``;
    raises ``SaltInvocationError`` naming the pillar key and the accepted form.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.check_pillar
    """
    checked = _checked_pillar(_pillar_get("patroni"))
    addresses = _addresses() if _which("ip") else []
    for scope, cluster in checked.items():
        try:
            _check_on_this_host(cluster, addresses)
        except SaltInvocationError as exc:
            raise SaltInvocationError(f"pillar patroni:clusters:{scope}: {exc}") from None
    keys = ("version", "cluster", "port", "vip")
    return {scope: {key: cluster[key] for key in keys} for scope, cluster in checked.items()}


def _checked_pillar(patroni, empty=False):
    """Pillar ``patroni`` checked without the host (but for its DCS fragment file): ``{scope: facts}``. With
    ``empty``, a pillar that declares no cluster at all (no ``clusters``, or ``{}``) is valid."""
    if not isinstance(patroni, dict):
        raise SaltInvocationError(
            "pillar patroni "
            + ("is not set for this minion" if patroni is None else "must be a mapping")
            + "; see pillar.example"
        )
    _check_known_keys("pillar patroni", patroni, PILLAR_KEYS)
    role = patroni.get("role")
    if role is not None and role not in ROLES:
        raise SaltInvocationError(f"pillar patroni:role: {_scrub(repr(role))} is not one role of {', '.join(ROLES)}")
    _check_lookup(patroni.get("lookup"))
    clusters = patroni.get("clusters")
    if clusters is None and empty:
        clusters = {}
    if not isinstance(clusters, dict) or not (clusters or empty):
        raise SaltInvocationError("pillar patroni:clusters must map <version>-<cluster> (15-main) to its settings")
    checked, claims = {}, {}
    for scope, settings in clusters.items():
        where = f"pillar patroni:clusters:{scope}" if _is_scope(scope) else "pillar patroni:clusters"
        try:
            cluster = _checked_pillar_cluster(scope, settings)
            for what, port in cluster["claims"].items():
                if port in claims:
                    raise SaltInvocationError(f"{what}: {port} is also {claims[port]}")
            claims.update((port, f"the {what} of {scope}") for what, port in cluster["claims"].items())
        except SaltInvocationError as exc:
            raise SaltInvocationError(f"{where}: {exc}") from None
        checked[scope] = cluster
    return checked


def _is_scope(scope):
    return isinstance(scope, str) and bool(SCOPE_RE.fullmatch(scope)) and len(scope.split("-", 1)[1]) <= CLUSTER_MAX


def _check_lookup(lookup):
    """The formula's pillar ``patroni:lookup``: package lists are lists of package names, never a string (which
    Jinja would install letter by letter)."""
    if lookup is None:
        return
    if not isinstance(lookup, dict):
        raise SaltInvocationError(f"pillar patroni:lookup must be a mapping, got {type(lookup).__name__}")
    _check_known_keys("pillar patroni:lookup", lookup, LOOKUP_KEYS)
    if "packages" in lookup:
        _check_packages("pillar patroni:lookup:packages", lookup["packages"])
    for key in ("dcs_packages", "vip_packages"):
        if key in lookup:
            table = lookup[key]
            if not isinstance(table, dict):
                raise SaltInvocationError(f"pillar patroni:lookup:{key} must map a DCS type to a list of packages")
            _check_known_keys(f"pillar patroni:lookup:{key}", table, DCS_TYPES)
            for kind, packages in table.items():
                _check_packages(f"pillar patroni:lookup:{key}:{kind}", packages)
    if "health_timeout" in lookup:
        _check_seconds("pillar patroni:lookup:health_timeout", lookup["health_timeout"])


def _check_packages(where, packages):
    if not isinstance(packages, list) or not all(
        isinstance(name, str) and re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", name) for name in packages
    ):
        raise SaltInvocationError(f"{where}: {_scrub(repr(packages))} is not a list of Debian package names")


def _checked_pillar_cluster(scope, settings):
    if isinstance(scope, str) and "-" in scope:
        _split_scope(scope)  # its messages name the part that is wrong: the version or the cluster name
    if not _is_scope(scope):
        raise SaltInvocationError(
            f"{_scrub(repr(scope))} is not <version>-<cluster>, e.g. 15-main: a PostgreSQL major version (15, 9.6), "
            "a dash, and a cluster name of letters, digits, '_', '-' and '.' (no space or line break)"
        )
    version, cluster = _split_scope(scope)
    if not isinstance(settings, dict):
        raise SaltInvocationError(f"must be a mapping of settings, got {type(settings).__name__}")
    _check_known_keys("settings", settings, PILLAR_CLUSTER_KEYS)
    for flag in ("purge", "replace_existing"):
        if settings.get(flag) is not None and not isinstance(settings[flag], bool):
            raise SaltInvocationError(f"{flag}: {settings[flag]!r} is not a boolean; use true or false")
    values = _validated(version, cluster, {})
    if not (values["authentication"].get("replication") or {}).get("password"):
        raise SaltInvocationError(
            "authentication:replication:password is required; the states never use Debian's well-known default"
        )
    config = _composed(
        values,
        _hostname(),
        values["hostip"] or STAND_IN_HOST.ip,
        values["network"] or STAND_IN_HOST,
        values["port"] or DEFAULT_PORT,
        _data_dir(version, cluster),
    )
    if _debian_defaults(scope, config):
        raise SaltInvocationError(
            "the replication password is Debian's well-known default (rep-pass), the same on every Debian install; "
            "the states never use it"
        )
    overrides = values["overrides"]
    claims = {}
    if values["port"] is not None or "listen" in (overrides.get("postgresql") or {}):
        claims["port"] = _listen_port(config)
    if values["port"] is not None or "listen" in (overrides.get("restapi") or {}):
        claims["REST API port"] = _restapi_port(config)
    return {
        "version": version,
        "cluster": cluster,
        "port": claims.get("port"),
        "vip": str(values["vip"]) if values["vip"] else None,
        "dcs_type": values["dcs_type"],
        "values": values,
        "claims": claims,
        "replace_existing": settings.get("replace_existing") is True,
        "purge": settings.get("purge") is True,
    }


def _check_on_this_host(cluster, addresses):
    """What pillar can only be checked against on the member itself: its addresses and its apt sources."""
    values = cluster["values"]
    vip = values["vip"]
    if vip is not None:
        if values["network"] is not None and vip not in values["network"].network:
            raise SaltInvocationError(f"vip: {vip} is outside network {values['network'].network}")
        # the member's own address, as createconfig will find it; the VIP itself, held by vip-manager on the
        # leader, is another address of the host and must not count
        hostip = values["hostip"]
        if hostip is None and addresses:
            source = _default_source()
            hostip = source[0] if source else None
        if hostip is not None and vip == hostip:
            raise SaltInvocationError(f"vip: {vip} is this member's own address (hostip); a VIP must be free")
        if addresses and values["network"] is None:
            _vip_interface(vip, addresses)
    version = cluster["version"]
    if _which("apt-cache") and _run(["apt-cache", "show", f"postgresql-{version}"], check=False).returncode:
        raise SaltInvocationError(f"no package postgresql-{version} in this host's apt sources")


@_host_errors
def formula_clusters(only=None):
    """
    The clusters the formula renders states for on this minion, from pillar ``patroni`` once it validates
    (without the host: see :py:func:`check_pillar`), else none. Only names that passed the checks ever reach
    an sls file's text, so a pillar key cannot inject YAML or a state; the formula's state
    ``Pillar patroni is valid`` says what is wrong.

    only
        The orchestration's narrowing: a ``<version>-<cluster>`` name, several joined by commas, or a list.

    Returns ``{"valid": bool, "clusters": [{scope, version, cluster, vip, dcs_type, replace_existing, purge}],
    "lookup": {...}}``.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.formula_clusters
    """
    try:
        checked = _checked_pillar(_pillar_get("patroni"))
        named = _rollout_scopes(only)
    except (CommandExecutionError, SaltInvocationError) as exc:
        log.debug("patroni_debian: the formula renders no cluster: %s", _scrub(str(exc), _pillar_secrets()))
        return {"valid": False, "clusters": [], "lookup": {}}
    keys = ("version", "cluster", "vip", "dcs_type", "replace_existing", "purge")
    clusters = [
        dict({key: cluster[key] for key in keys}, scope=scope)
        for scope, cluster in sorted(checked.items())
        if named is None or scope in named
    ]
    return {"valid": True, "clusters": clusters, "lookup": _pillar_get("patroni:lookup") or {}}


@_host_errors
def declared_clusters():
    """
    The clusters this minion's pillar positively declares, as a sorted list of ``<version>-<cluster>`` names: what
    a member may leave (``leave_undeclared``) is only what a pillar that can be trusted no longer names. Raises,
    naming the problem, when the pillar failed to render, does not validate (a mistyped ``clustres``, a list,
    a name with a trailing space), or lacks ``patroni`` while holding a key spelled close to it. A pillar
    without any ``patroni`` key, or with ``patroni:clusters: {}``, declares none.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.declared_clusters
    """
    if _pillar_get("_errors"):
        # Salt's render errors quote the pillar file's lines, which may hold a secret: not passed on
        raise SaltInvocationError(
            "this minion's pillar failed to render (pillar.items on the minion says why); it declares nothing for sure"
        )
    patroni = _pillar_get("patroni")
    if patroni is None:
        pillar = globals().get("__pillar__")
        keys = list(pillar.value() if hasattr(pillar, "value") else pillar or {})
        near = difflib.get_close_matches("patroni", [str(key).strip().lower() for key in keys], n=1, cutoff=0.75)
        if near:
            raise SaltInvocationError(
                "this minion's pillar has no key patroni but one spelled close to it; correct it, or remove it to "
                "declare no cluster"
            )
        return []
    return sorted(_checked_pillar(patroni, empty=True))


def _rollout_scopes(clusters):
    """The clusters an orchestration names, as a set of scopes, exactly as given; None when it names none (all).

    ``15-main``, ``15-main,16-app`` or a list of names. An empty string or list, a name with a space or a line
    break, or anything but ``<version>-<cluster>`` is refused: trimming or dropping it would converge one set of
    clusters and check another.
    """
    if clusters is None:
        return None
    names = clusters.split(",") if isinstance(clusters, str) else clusters
    if not isinstance(names, (list, tuple)) or not names:
        raise SaltInvocationError(
            f"cluster: {_scrub(json.dumps(clusters, default=repr))} is not a <version>-<cluster> name or a list of them"
        )
    for name in names:
        if not _is_scope(name):
            raise SaltInvocationError(
                f"cluster: {_scrub(json.dumps(name, default=repr))} is not <version>-<cluster>, e.g. 15-main "
                "(names are taken exactly as given: no spaces or line breaks)"
            )
    return set(names)


@_host_errors
def dcs_reachable(version, cluster):
    """
    Whether the DCS of cluster ``<version>-<cluster>`` answers: one of its endpoints, from the DCS section its
    config is made from (as :py:func:`createconfig` finds it: pillar, else ``/etc/patroni/dcs.yml``), accepts a
    TCP connection within 2 s. The formula checks it before changing anything, so that a DCS outage fails the
    run at once, naming the DCS, rather than after a package, a file or a unit changed. Needs no Patroni or
    DCS client installed. Returns ``{dcs, endpoint}`` (``endpoint`` None for kubernetes, raft and exhibitor,
    which find their peers themselves); raises ``CommandExecutionError`` naming every endpoint tried.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.dcs_reachable 15 main
    """
    checked = _validated(version, cluster, {})
    try:
        dcs_type, endpoint = _dcs_answers(checked["dcs"], checked["settings"]["dcs_source"])
    except CommandExecutionError as exc:
        raise CommandExecutionError(f"{checked['version']}-{checked['cluster']}: {exc}") from None
    return {"dcs": dcs_type, "endpoint": endpoint}


@_host_errors
def install_program(path=PROGRAM):
    """
    Install this module file where the configs from :py:func:`createconfig` name it, for Patroni to run as
    its bootstrap and replica-creation program (``/usr/bin/python3 <path> createcluster|clone``).

    Copies the very file Salt loaded (synced from ``_modules`` or installed with pip), atomically, owner
    root, mode 0755, so what Patroni runs is always the release Salt runs. Same content: no change.

    path
        Where to install it. Default ``/usr/share/patroni-debian/patroni_debian.py``.

    Returns ``{"path", "changed"}``.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.install_program
    """
    target = _program_target(path)
    path = target.path
    if _program_is_current(target):
        return {"path": path, "changed": False}
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        os.makedirs(folder, 0o755, exist_ok=True)
        os.chmod(folder, 0o755)
    os.replace(_stage(target), path)
    log.info("patroni_debian: installed the program at %s", path)
    return {"path": path, "changed": True}


@_host_errors
def program_installed(path=PROGRAM):
    """
    Whether :py:func:`install_program` would change nothing: ``path`` holds this very module file, root's,
    mode 0755.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.program_installed
    """
    return _program_is_current(_program_target(path))


def _program_target(path):
    """The program file to install at ``path`` (absolute), as a target: this module file, root's, 0755."""
    path = str(path)
    if not os.path.isabs(path):
        raise SaltInvocationError(f"path: {path!r} must be an absolute path")
    with open(os.path.abspath(__file__), encoding="utf-8") as handle:
        return _Target(path, None, handle.read(), None, "root", "root", 0o755)


def _program_is_current(target):
    try:
        current = _read_text(target.path, follow_links=False)
    except CommandExecutionError:
        return False  # a link or an odd file: replaced by the program itself
    if current != target.text:
        return False
    status = os.lstat(target.path)
    return status.st_mode & 0o7777 == target.mode and status.st_uid == 0


# --------------------------------------------------------------------------------------------------
# the plain-program door: Patroni runs this file as its bootstrap and replica-creation command

USAGE = (
    "usage: patroni_debian.py createcluster --scope=<version>-<cluster> [--datadir=<dir>]\n"
    "       patroni_debian.py clone --scope=<version>-<cluster> --datadir=<dir> --connstring=<dsn>\n"
    "Other --key=value options (Patroni passes --role and, from Patroni 4, its method settings) are ignored."
)
EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 1, 2, 3


def _main(argv=None):
    """Run ``createcluster`` or ``clone`` with Patroni's ``--key=value`` arguments; return the exit code.

    Private: Salt must not list it as ``patroni_debian.main``.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--help"], ["-h"], ["help"]):
        print(USAGE)
        return 0
    if not argv or argv[0] not in ("createcluster", "clone"):
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE
    action, options = argv[0], {}
    for argument in argv[1:]:
        if not (argument.startswith("--") and "=" in argument):
            print(f"patroni_debian {action}: unexpected argument {argument!r}\n{USAGE}", file=sys.stderr)
            return EXIT_USAGE
        key, value = argument[2:].split("=", 1)
        options[key] = value
    scope = options.get("scope", "")
    try:
        version, cluster = _split_scope(scope)
        if action == "createcluster":
            result = createcluster(version, cluster, options.get("datadir") or None)
        else:
            result = clone(version, cluster, options.get("datadir"), options.get("connstring"))
    except SaltInvocationError as exc:
        print(f"patroni_debian {action} {scope}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DataSafetyError as exc:
        print(f"patroni_debian {action} {scope}: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except CommandExecutionError as exc:
        print(f"patroni_debian {action} {scope}: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"patroni_debian {action} {scope}: done: {result}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
