"""
Patroni clusters the Debian way: postgresql-common clusters ``<version>/<cluster>`` run by
``patroni@<version>-<cluster>`` with ``/etc/patroni/<version>-<cluster>.yml``.

The program Patroni runs, and the kernel the module's other files share. This file has two doors. Salt loads
it as the execution module ``patroni_debian`` (``createcluster``, ``clone``, ``install_program``); Patroni runs
the very same file as a plain ``python3`` program for bootstrap and replica creation (``_main``), where no Salt
is importable: so it uses the standard library only, and reaches Salt solely through the loader's dunders, in
its public functions. The kernel: running commands, the host lock, masking secrets, the argument checks every
file shares, pg-common facts and atomic files. Debian's config generator is ``patroni_debian_render.py`` and
``patroni_debian_config.py``; operations are ``patroni_debian_ops.py`` and ``patroni_debian_day2.py``.

:depends: postgresql-common
"""

import contextlib
import ctypes
import fcntl
import functools
import logging
import math
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

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

CREATECLUSTER_CONF = "/etc/postgresql-common/createcluster.conf"

PG_LIB_DIR = "/usr/lib/postgresql"

PG_HOME = "/var/lib/postgresql"

# Where the formula installs this very file for Patroni to run (createconfig's ``program`` overrides it).
PROGRAM = "/usr/share/patroni-debian/patroni_debian.py"

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

CONFIG_OWNER = "postgres"

# Major versions as pg-common names them: 9.x before PostgreSQL 10, one number since (15, never 15.0).
VERSION_RE = re.compile(r"(?:9\.\d|[1-9]\d+)", re.ASCII)

# pg_createcluster accepts [-.\w]+; a leading dash would read as an option, a leading dot as a path trick.
CLUSTER_RE = re.compile(r"\w[-.\w]*", re.ASCII)

# NAMEDATALEN - 1, PostgreSQL's own limit for names: file, unit and DCS key names built from it stay short.
CLUSTER_MAX = 63

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

# Serialises the runs on one host that decide from its state (ports, data directories). flock: a killed
# run cannot leave it held. /run/postgresql belongs to postgres, so only root and postgres can take it.
LOCK_DIR = "/run/postgresql"

LOCK_FILE = "/run/postgresql/patroni-debian.lock"

LOCK_WAIT = 120

# The same for an etcd member's configuration, on hosts that may have no PostgreSQL (so no postgres account)
ETCD_LOCK_FILE = "/run/lock/patroni-debian-etcd.lock"

TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
MAX_WAIT = 86400  # seconds: the longest wait any timeout may ask for

READ_LIMIT = 1 << 20  # no config, DCS fragment or env file is near this; a larger one is not one of them

SEARCH_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def __virtual__():
    grains = globals().get("__grains__") or {}
    if grains.get("os_family", "Debian") != "Debian":
        return (False, "patroni_debian manages Debian's postgresql-common and patroni packages only")
    return __virtualname__


# --------------------------------------------------------------------------------------------------
# the kernel: running commands, the host lock, reading files


def _which(name):
    """Find a program on PATH, then in the sbin folders a minion or a systemd unit may lack."""
    path = os.pathsep.join([os.environ.get("PATH", "")] + list(SEARCH_PATH))
    return shutil.which(name, path=path)


def _run(argv, check=True, user=None, env=None):
    """Run a command without a shell, as ``user`` when given and we are root (:py:func:`_started`), to its end
    (:py:func:`_finished`).

    subprocess rather than cmd.run: the plain-program door has no Salt. Output is captured, never logged
    here, so a caller decides what is safe to show.
    """
    return _finished(_started(argv, user=user, env=env), argv, check=check)


def _started(argv, user=None, env=None):
    """The process of ``argv``, started without a shell, as ``user`` when given and we are root, in ``/`` (a
    tool run as postgres must not start in root's folder), its output captured for :py:func:`_finished`."""
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
    return subprocess.Popen(
        [program] + list(argv[1:]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd="/",
        preexec_fn=demote,
    )


def _finished(proc, argv, check=True):
    """Wait for ``proc`` (of ``argv``) to end; with ``check``, an exit code other than 0 is an error that says
    the command and its output."""
    stdout, stderr = proc.communicate()
    if check and proc.returncode:
        detail = (stderr or stdout).strip()
        raise CommandExecutionError(f"{' '.join(argv)} failed with exit code {proc.returncode}: {detail}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


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
def _host_lock(what, lock_file=LOCK_FILE):
    """Hold the host's lock while ``what`` decides from the host's state and acts on it.

    Two runs at once would otherwise both see a port or a data directory free and both take it. Waits up to
    LOCK_WAIT seconds for another run, then says which lock is held. ``lock_file``: another lock than
    PostgreSQL's (in a folder that exists).
    """
    if lock_file == LOCK_FILE and not os.path.isdir(LOCK_DIR):
        uid, gid = _account(CONFIG_OWNER)
        os.makedirs(LOCK_DIR, mode=0o2775, exist_ok=True)  # as postgresql-common's tmpfiles.d makes it
        os.chown(LOCK_DIR, uid, gid)
        os.chmod(LOCK_DIR, 0o2775)
    try:
        handle = os.open(lock_file, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise CommandExecutionError(f"cannot open the lock {lock_file}: {exc.strerror}") from None

    def take():
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return None

    try:
        if _poll(take, time.monotonic() + LOCK_WAIT, interval=0.05) is None:
            raise CommandExecutionError(
                f"{what}: another run has held {lock_file} for {LOCK_WAIT} s; try again when it is done"
            )
        yield
    finally:
        os.close(handle)


def _poll(probe, deadline, interval=0.5):
    """The module's one wait loop: ``probe()`` every ``interval`` s until it answers (anything but None) or the
    monotonic clock passes ``deadline`` (it is asked once more then); the answer, or None. A probe that knows
    waiting is pointless raises."""
    while True:
        answer = probe()
        if answer is not None or time.monotonic() >= deadline:
            return answer
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------
# the kernel: pillar as plain data, and masking secrets wherever they stand


def _pillar_get(pillar, key, default=None):
    """A value of ``pillar`` by ``a:b:c`` key, as plain data.

    ``pillar`` is a public function's own ``__pillar__`` (None outside Salt), always passed: Salt gives the
    dunders only to the files it loads, not to the copies the files import of each other. Not Salt's
    ``pillar.get``: Salt 3008's redacts every value unless ``unmask=True``, an argument older Salt versions
    reject, and the config needs the real values.
    """
    value = pillar
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


def _pillar_secrets(pillar):
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

    walk(_pillar_get(pillar, "patroni"), False)
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


# --------------------------------------------------------------------------------------------------
# the kernel: the argument checks every file shares


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


def _text_table(title, columns, rows):
    """``title``, then ``rows`` (tuples of text) under ``columns``, each column as wide as its widest cell."""
    cells = [tuple(columns)] + [tuple(row) for row in rows]
    widths = [max(len(line[column]) for line in cells) for column in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    return "\n".join([title] + lines)


def _has_control_character(text):
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


def _check_boolean(name, value):
    """``value`` as a boolean, the one rule for every flag: a string ``'no'`` must not count as true (the CLI
    passes words, pillar may quote them)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise SaltInvocationError(f"{name}: {value!r} is not a boolean; use true or false")


def _check_text(name, value):
    """A value bound for a line-based file: a line break would start a new setting there."""
    text = str(value)
    if _has_control_character(text):
        raise SaltInvocationError(f"{name}: the value contains a line break or control character")
    return text


# --------------------------------------------------------------------------------------------------
# the kernel: pg-common facts, and files written atomically


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


def _account(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise CommandExecutionError(f"user {name} does not exist; install postgresql-common") from None
    return entry.pw_uid, entry.pw_gid


class _Target:
    """A file createconfig owns: where, what, and whose."""

    def __init__(self, path, document, text, read, owner, group, mode):
        self.path, self.document, self.text, self.read = path, document, text, read
        self.owner, self.group, self.mode = owner, group, mode


def _group_id(name):
    import grp  # pylint: disable=import-outside-toplevel

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise CommandExecutionError(f"group {name} does not exist") from None


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


def _refuse_running_server(datadir):
    pid = _running_postmaster(datadir)
    if pid:
        raise DataSafetyError(f"data directory {datadir} is in use by a running server (pid {pid})")


def _own_row(table, version, cluster):
    """pg-common's row of ``<version>/<cluster>`` in ``table`` (``_pg_cluster_table``), or None."""
    return next((row for row in table if (row["version"], row["cluster"]) == (version, cluster)), None)


def _make_room_for_clone(version, cluster, datadir):
    """Check that cloning into ``datadir`` loses nothing, and drop a stale pg-common cluster of this name."""
    if not _is_empty_dir(datadir):
        _refuse_running_server(datadir)
        raise DataSafetyError(
            f"data directory {datadir} is not empty; refusing to overwrite it (Patroni empties it before cloning)"
        )
    table = _pg_cluster_table()
    _refuse_data_dir_of_another_cluster(version, cluster, datadir, table)
    own = _own_row(table, version, cluster)
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


@contextlib.contextmanager
def _running(argv, user=None, env=None):
    """``argv`` started (:py:func:`_started`): yields a function that waits for its end (an error if it failed);
    leaving the block before that ends it."""
    proc = _started(argv, user=user, env=env)
    try:
        yield lambda: _finished(proc, argv)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate()


@contextlib.contextmanager
def _basebackup(version, folder, conninfo, secrets):
    """pg_basebackup of the source into ``folder``, as postgres, :py:func:`_running`. Secrets only through private
    files, gone once it has ended.

    The source checkpoints at once (``--checkpoint=fast``, as Patroni's documentation configures its own
    basebackup): a spread checkpoint paces its writes over ``checkpoint_completion_target`` of
    ``checkpoint_timeout``, so a replica would wait up to minutes on a busy primary before copying a byte, and
    about 0.1 s per dirty buffer on a new one (a second of every replica's join after a bootstrap, measured)."""
    with _private_credentials(dict(secrets)) as (env, extra):
        argv = [
            f"{PG_LIB_DIR}/{version}/bin/pg_basebackup",
            "--pgdata",
            folder,
            "-X",
            "stream",
            "--checkpoint=fast",
            f"--dbname={conninfo}{extra}",
        ]
        with _running(argv, user=CONFIG_OWNER, env={**os.environ, **env}) as finished:
            yield finished


def _pg_createcluster(version, cluster, datadir=None, throwaway=False):
    """pg_createcluster with start.conf ``manual``: only Patroni starts a cluster it runs.

    ``throwaway``: the data initdb makes is replaced at once (a clone), so it is not synced to disk, which
    saves a replica about half a second of its join.
    """
    argv = ["pg_createcluster", "--start-conf=manual"] + ([f"--datadir={datadir}"] if datadir else [])
    _run(argv + [version, cluster] + (["--", "--no-sync"] if throwaway else []))


def _parent_folders_for_postgres(datadir):
    """The data directory's missing parent folders, made as postgres's (0755, whatever the umask), as
    pg_createcluster makes them when postgres runs it. Run by root, pg_createcluster would make them root's:
    Patroni, as postgres, then could neither remove nor rename the data directory when it re-clones (reinit, a
    rewind that failed). Made here for postgres too: a clone's copy goes into a folder beside the data
    directory before pg_createcluster runs. Existing folders are left as they are."""
    owner = _account(CONFIG_OWNER) if os.geteuid() == 0 else None
    missing, parent = [], os.path.dirname(os.path.abspath(datadir))
    while not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for folder in reversed(missing):
        os.mkdir(folder, 0o755)
        if owner:
            os.chown(folder, *owner)
        os.chmod(folder, 0o755)


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
    pg-common metadata from ``pg_createcluster --start-conf=manual``, data from ``pg_basebackup`` (asking the source
    for an immediate checkpoint, so that the copy starts at once). The base backup runs while ``pg_createcluster``
    does, into a new folder beside the data directory
    (``.<name>.clone-*``, removed whatever happens) that moves in once both are done; where the data directory
    is a mount point or its parent is not writable here, it runs after, into the data directory.

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
        secrets.update(_pillar_replication_password(version, cluster, conninfo, globals().get("__pillar__")))
    copy = functools.partial(_basebackup, version, conninfo=conninfo, secrets=secrets)
    _filled_cluster("clone", version, cluster, datadir, copy, beside=True)
    log.info("patroni_debian: cloned cluster %s/%s into %s from %s", version, cluster, datadir, _scrub(conninfo))
    return {"cluster": f"{version}/{cluster}", "datadir": datadir, "source": _scrub(conninfo)}


def _filled_cluster(action, version, cluster, datadir, copy, beside=False):
    """Debian's way to make a member from a copy: pg-common's metadata from ``pg_createcluster --start-conf=manual``,
    then the data in the emptied ``datadir`` from ``copy(folder)``, a block that starts the copy into ``folder``
    and yields a wait for its end (``pg_basebackup``, pgBackRest's ``restore``). With ``beside`` (a copy that
    needs nothing of the new cluster: a base backup) it runs beside initdb, into a folder next to ``datadir``,
    and moves in once both are done: a replica's join costs the longer of the two rather than both. Without, or
    where no such folder can be had (:py:func:`_folder_beside`), it runs after initdb, into ``datadir``.
    Refuses, touching nothing, what ``_make_room_for_clone`` refuses; a failure removes what this run created."""
    _check_initdb(version)
    with contextlib.ExitStack() as copying:  # closed last: a copy still running is ended, its folder removed
        with _host_lock(f"{action} {version}/{cluster}"):
            _make_room_for_clone(version, cluster, datadir)
            paths = _new_paths(version, cluster, datadir)
            with _undone_on_failure(paths, datadir):
                _parent_folders_for_postgres(datadir)
                folder = _folder_beside(copying, datadir) if beside else None
                copied = copying.enter_context(copy(folder)) if folder else None
                _pg_createcluster(version, cluster, datadir, throwaway=True)
        with _undone_on_failure(paths, datadir):
            if not folder:
                _empty_directory(datadir)  # initdb's fresh files, made above, make way for the copy
                copied = copying.enter_context(copy(datadir))
            copied()
            if folder:
                _empty_directory(datadir)
                _moved_into(folder, datadir)


def _folder_beside(stack, datadir):
    """A new empty folder next to ``datadir``, on its filesystem, for postgres to fill, removed when ``stack``
    closes. None where there is none to have: ``datadir`` a mount point (a rename cannot cross into it), or its
    parent not writable here (Patroni runs the program as postgres)."""
    parent = os.path.dirname(os.path.abspath(datadir))
    if os.path.isdir(datadir) and os.stat(datadir).st_dev != os.stat(parent).st_dev:
        return None
    try:
        folder = tempfile.mkdtemp(prefix=f".{os.path.basename(datadir)}.clone-", dir=parent)  # mode 0700
    except PermissionError:
        return None
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    if os.geteuid() == 0:
        os.chown(folder, *_account(CONFIG_OWNER))
    return folder


def _moved_into(folder, datadir):
    """What ``folder`` holds, renamed into the empty ``datadir`` on the same filesystem, the renames on disk."""
    for name in os.listdir(folder):
        os.rename(os.path.join(folder, name), os.path.join(datadir, name))
    handle = os.open(datadir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


BACKUP_LABEL_RE = re.compile(r"\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?", re.ASCII)  # pgBackRest's backup labels


def _check_backup_set(backup_set):
    if backup_set is None or backup_set == "":
        return None
    text = _check_text("set", backup_set)
    if not BACKUP_LABEL_RE.fullmatch(text):
        raise SaltInvocationError(f"set: {text!r} is not a pgBackRest backup label such as 20261203-010000F")
    return text


def _restore_from_repository(version, cluster, datadir, stanza, backup_set=None):
    """Patroni's bootstrap method for a restore (``orch.patroni_restore``): the cluster made as ``clone`` makes
    it, its data from pgBackRest's ``restore`` of ``stanza`` (the newest backup, or ``backup_set``). pgBackRest
    writes no recovery settings (``--type=none``): Patroni writes the method's ``recovery_conf`` (the target, the
    promotion) where it keeps them, and drops them once the restored leader has promoted; settings pgBackRest
    left in ``postgresql.auto.conf`` would outlive the restore and stop a later replica at the old target."""
    version, cluster = _check_version(version), _check_cluster(cluster)
    datadir = _check_datadir(datadir)
    if not stanza:
        raise SaltInvocationError("stanza: required, the pgBackRest stanza to restore from, e.g. 15-main")
    stanza = "-".join(_split_scope(_check_text("stanza", stanza)))
    backup_set = _check_backup_set(backup_set)
    argv = ["pgbackrest", f"--stanza={stanza}", f"--pg1-path={datadir}", "--type=none"]
    argv += [f"--set={backup_set}"] if backup_set else []
    delta = not _is_empty_dir(datadir)
    if delta:
        _delta_restored(version, cluster, datadir, lambda: _run([*argv, "--delta", "restore"], user=CONFIG_OWNER))
    else:
        # not beside: pgBackRest restores into its --pg1-path, datadir, which is the folder it is given
        restore = [*argv, "restore"]
        _filled_cluster("restore", version, cluster, datadir, lambda folder: _running(restore, user=CONFIG_OWNER))
    log.info("patroni_debian: restored cluster %s/%s into %s from stanza %s", version, cluster, datadir, stanza)
    return {
        "cluster": f"{version}/{cluster}",
        "datadir": datadir,
        "stanza": stanza,
        "set": backup_set or "latest",
        "delta": delta,
    }


def _delta_restored(version, cluster, datadir, restore):
    """A replica's own data brought to the backup in place, ``restore()`` running pgBackRest's ``--delta`` (only
    the files that differ are fetched): Patroni keeps the data directory for the repository's method
    (``keep_data``), at a reinit. Refused, touching nothing, unless it is this very cluster's data: pg-common's
    ``<version>/<cluster>`` at this data directory, of that version, PostgreSQL stopped. Patroni then empties it
    and clones (the next method keeps no data)."""
    with _host_lock(f"restore {version}/{cluster}"):
        _refuse_running_server(datadir)
        own = _own_row(_pg_cluster_table(), version, cluster)
        if own is None or not own["datadir"] or not _same_path(own["datadir"], datadir):
            raise DataSafetyError(
                f"data directory {datadir} is not empty and is not cluster {version}/{cluster}'s in pg-common: "
                "refusing to restore over it in place"
            )
        found = (_read_text(os.path.join(datadir, "PG_VERSION"), follow_links=False) or "").strip()
        if found != version:
            raise DataSafetyError(f"data directory {datadir} holds PostgreSQL {found or 'nothing'}, not {version}")
        restore()


def _pillar_replication_password(version, cluster, conninfo, pillar):
    """``{"password": …}`` from pillar when the connection is as the cluster's replication role (Salt door)."""
    replication = _pillar_get(pillar, f"patroni:clusters:{version}-{cluster}:authentication:replication") or {}
    if not isinstance(replication, dict) or replication.get("password") is None:
        return {}
    user = dict((keyword, value) for keyword, value, _ in _parse_conninfo(conninfo)).get("user")
    if user != str(replication.get("username") or DEBIAN_REPLICATION["username"]):
        return {}
    return {"password": _check_text("pillar replication password", replication["password"])}


# --------------------------------------------------------------------------------------------------
# the program's installation on a member


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
    Plumbing: the formula and the orchestrations call it; people rarely need to.

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


USAGE = (
    "usage: patroni_debian.py createcluster --scope=<version>-<cluster> [--datadir=<dir>]\n"
    "       patroni_debian.py clone --scope=<version>-<cluster> --datadir=<dir> --connstring=<dsn>\n"
    "       patroni_debian.py restore --scope=<version>-<cluster> --datadir=<dir> --stanza=<stanza> [--set=<label>]\n"
    "Other --key=value options (Patroni passes --role and, from Patroni 4, its method settings) are ignored."
)

EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 1, 2, 3


# --------------------------------------------------------------------------------------------------
# the plain-program door: Patroni runs this file as its bootstrap and replica-creation command


def _main(argv=None):
    """Run ``createcluster`` or ``clone`` with Patroni's ``--key=value`` arguments; return the exit code.

    Private: Salt must not list it as ``patroni_debian.main``.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--help"], ["-h"], ["help"]):
        print(USAGE)
        return 0
    if not argv or argv[0] not in ("createcluster", "clone", "restore"):
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
        elif action == "restore":
            datadir, stanza, backup_set = options.get("datadir"), options.get("stanza"), options.get("set")
            result = _restore_from_repository(version, cluster, datadir, stanza, backup_set)
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
