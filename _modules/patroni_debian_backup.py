"""
pgBackRest the Debian way (issue 23): what ``/etc/pgbackrest.conf`` says on a Patroni member and on the repository
host, each host's part exchanged through the Salt mine, the stanza, backups on demand, and the backups of a stanza
as data and as a table from ``pgbackrest info --output=json``. docs/backups.md says what is built and what is not.

Every host runs Debian's ``pgbackrest.service`` (pgBackRest's TLS server, as postgres): the members archive into
the repository through the repository host's server, and the repository host's backups read a member through
the member's server. Each side accepts only the other's certificate (``tls-server-auth``, by the certificate's CN),
every certificate from the cluster's CA (pillar ``patroni:tls:ca_server``). Stanza = the Patroni scope
(``15-main``), until a restore: a restored cluster archives into the fresh stanza pillar ``patroni:backup:stanzas``
names first (``orch.patroni_restore``, through Patroni's bootstrap), never into the one it came from.
"""

import datetime
import json
import logging
import os
import re
import socket
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

import patroni_debian as debian
import patroni_debian_ops as ops  # the cluster in its DCS, read and removed with Patroni's own client
import patroni_debian_render as render
from patroni_debian import PG_HOME, _scrub
from patroni_debian_render import BACKUP_TLS_PORT, BACKUP_TYPES

log = logging.getLogger(__name__)

__virtualname__ = "patroni_debian"

CONF_FILE = "/etc/pgbackrest.conf"  # the package's own, which pgbackrest reads without --config
MINE_KEY = "patroni_debian_backup"  # each host's part, exchanged through the Salt mine (backup_identity)
# The members whose parts the repository host takes, targeted as salt/top.sls.example targets them (the grains only
# where minions are trusted: a grain is the minion's own word)
MEMBERS = "I@patroni:role:bootstrap or I@patroni:role:replica or G@patroni_role:bootstrap or G@patroni_role:replica"
CN_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?", re.ASCII)  # a host name, as the CN is
BACKUP_LOCK_FILE = "/run/lock/patroni-debian-backup.lock"
RESTORE_LOCK_FILE = "/run/lock/patroni-debian-restore.lock"  # one restore_prepare or restore_start at a time
CONF_HEADER = "# pgBackRest for patroni_debian, written by Salt's patroni_debian formula: edits are replaced.\n"
SOCKET_DIR = "/var/run/postgresql"  # pg-common's unix_socket_directories
LOG_LEVEL_FILE = "detail"  # /var/log/pgbackrest/<stanza>-<command>.log: what a restore's post-mortem needs
# zstd rather than pgBackRest's default gzip, for backups (compressed where the files are read) and each WAL segment
# archive-push sends: a full backup of 1 GB took 6.9 s against gzip's 24.2 s, pg_basebackup 4.0 s (bench/backup.py)
COMPRESS_TYPE = "zst"


def __virtual__():
    return __virtualname__


def _section(name, options):
    """One ``[name]`` section: an option given as a list is repeated, one line per value (how pgBackRest takes
    several ``tls-server-auth`` clients)."""
    lines = [f"[{name}]"]
    for key, value in options.items():
        for one in value if isinstance(value, list) else [value]:
            lines.append(f"{key}={_option_text(one)}")
    return "\n".join(lines) + "\n"


def _option_text(value):
    if isinstance(value, bool):
        return "y" if value else "n"
    return str(value)


def _tls_server(tls, clients):
    """This host's pgBackRest TLS server: on every address, with this host's certificate, for the clients' CNs
    alone, each to the stanzas it is named with (``{cn: [stanza, …]}``)."""
    return {
        "tls-server-address": "*",
        "tls-server-port": BACKUP_TLS_PORT,
        "tls-server-ca-file": tls["ca_file"],
        "tls-server-cert-file": tls["cert_file"],
        "tls-server-key-file": tls["key_file"],
        "tls-server-auth": [f"{cn}={','.join(sorted(stanzas))}" for cn, stanzas in sorted(clients.items())],
    }


def _tls_client(prefix, address, tls):
    """How this host reaches another's TLS server (``repo1-host`` or ``pgN-host``): its address (which its
    certificate names, bookworm's pgBackRest 2.45 only among the DNS names: pgbackrest#1977) and this host's
    certificate."""
    return {
        prefix: address,
        f"{prefix}-type": "tls",
        f"{prefix}-port": BACKUP_TLS_PORT,
        f"{prefix}-ca-file": tls["ca_file"],
        f"{prefix}-cert-file": tls["cert_file"],
        f"{prefix}-key-file": tls["key_file"],
    }


def _data_dir_of(scope):
    version, cluster = scope.split("-", 1)
    return f"{PG_HOME}/{version}/{cluster}"


def _member_conf(backup, tls, repository_cn, stanzas):
    """``/etc/pgbackrest.conf`` of a Patroni member: ``backup`` (pillar ``patroni:backup``, checked), ``tls`` this
    host's certificate files, ``repository_cn`` the CN of the repository host's certificate (the one client its
    own server accepts), ``stanzas`` ``{scope: port}`` of its clusters."""
    repository = backup["repository"]["address"]
    current = [render._archive_stanza(backup, scope) for scope in stanzas]
    options = {
        **_tls_client("repo1-host", repository, tls),
        **_tls_server(tls, {repository_cn: current}),
        "compress-type": COMPRESS_TYPE,
        "log-level-file": LOG_LEVEL_FILE,
    }
    sections = [_section("global", options)]
    for stanza, (scope, port) in _member_sections(backup, stanzas).items():
        sections.append(
            _section(stanza, {"pg1-path": _data_dir_of(scope), "pg1-port": port, "pg1-socket-path": SOCKET_DIR})
        )
    return CONF_HEADER + "\n".join(sections)


def _member_sections(backup, stanzas):
    """``{stanza: (scope, port)}``: the cluster each stanza of a member's clusters describes, the one archiving
    into it first, else the first that reads it (a restore into a new scope reads the stanza of the cluster beside
    it; its reads name their own data directory on the command line). The earlier stanzas are there for
    ``info``, restore and archive-get."""
    sections = {render._archive_stanza(backup, scope): (scope, port) for scope, port in sorted(stanzas.items())}
    for scope, port in sorted(stanzas.items()):
        for stanza in render._stanzas_of(backup, scope)[1:]:
            sections.setdefault(stanza, (scope, port))
    return sections


def _repository_conf(backup, tls, members):
    """``/etc/pgbackrest.conf`` of the repository host: the repository in ``backup['path']`` with its retention,
    its TLS server for the members' CNs (each to its own stanzas), and per stanza every member as a ``pgN-host``
    (in the order of their names; pgBackRest finds the primary among them itself). ``members``: ``{scope:
    {member name: {"address", "port", "cn"}}}``."""
    clients = {}
    for scope, hosts in members.items():
        for host in hosts.values():
            named = clients.setdefault(host["cn"], [])
            named.extend(one for one in render._stanzas_of(backup, scope) if one not in named)
    options = {
        "repo1-path": backup["path"],
        "repo1-retention-full": backup["retention_full"],
        "start-fast": True,
        "compress-type": COMPRESS_TYPE,
        **_tls_server(tls, clients),
        "log-level-file": LOG_LEVEL_FILE,
    }
    sections = [_section("global", options)]
    for scope, hosts in sorted(members.items()):
        # the stanza it archives into alone: a backup can never go into one a restored cluster came from
        stanza = {"backup-standby": backup["from_replica"] and len(hosts) > 1}
        for number, (_, host) in enumerate(sorted(hosts.items()), start=1):
            stanza.update(_tls_client(f"pg{number}-host", host["address"], tls))
            stanza.update({f"pg{number}-path": _data_dir_of(scope), f"pg{number}-port": host["port"]})
        sections.append(_section(render._archive_stanza(backup, scope), stanza))
    return CONF_HEADER + "\n".join(sections)


# --------------------------------------------------------------------------------------------------
# backups as data and as a table


def _backups_of(info, stanza):
    """The backups of ``stanza`` in ``pgbackrest info --output=json``'s answer, oldest first: ``{label, type,
    prior, started, stopped, size, repository_size, wal_start, wal_stop, lsn_start, lsn_stop, error}`` (times as
    UNIX seconds, sizes in bytes), and the stanza's archive (``{min, max}`` WAL of its current database)."""
    try:
        document = json.loads(info) if isinstance(info, str) else info
        (entry,) = [one for one in document if one.get("name") == stanza]
    except (TypeError, ValueError, AttributeError):
        return None
    backups = []
    for one in entry.get("backup") or []:
        backups.append(
            {
                "label": one["label"],
                "type": one["type"],
                "prior": one.get("prior"),
                "started": one["timestamp"]["start"],
                "stopped": one["timestamp"]["stop"],
                "size": one["info"]["size"],
                "repository_size": one["info"]["repository"]["size"],
                "wal_start": one["archive"]["start"],
                "wal_stop": one["archive"]["stop"],
                "lsn_start": (one.get("lsn") or {}).get("start"),
                "lsn_stop": (one.get("lsn") or {}).get("stop"),
                "error": bool(one.get("error")),
            }
        )
    archives = entry.get("archive") or []
    current = archives[-1] if archives else {}
    databases = entry.get("db") or []
    return {
        "stanza": stanza,
        "status": _scrub(entry.get("status", {}).get("message", "")),
        "backups": backups,
        "archive": {"min": current.get("min"), "max": current.get("max")},
        "system_identifier": str(databases[-1]["system-id"]) if databases else None,
    }


def _size_text(size):
    if size < 1024:
        return f"{size} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"


def _backups_table(listed):
    """``_backups_of``'s answer as the table a person reads, one line per backup."""
    rows = [("label", "type", "size", "in repository", "WAL from", "WAL to")]
    for one in listed["backups"]:
        rows.append(
            (
                one["label"] + (" (error)" if one["error"] else ""),
                one["type"],
                _size_text(one["size"]),
                _size_text(one["repository_size"]),
                one["wal_start"],
                one["wal_stop"],
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    archive = listed["archive"]
    lines.append(f"archive of {listed['stanza']}: {archive['min'] or '-'} .. {archive['max'] or '-'}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# the host: this minion's part, its configuration, the stanza, backups


def _minion():
    return (globals().get("__opts__") or {}).get("id") or os.uname().nodename


def _pillar_backup():
    """``(backup, tls)``: pillar ``patroni:backup`` checked (None without it) and this host's certificate files."""
    pillar = globals().get("__pillar__")
    tls = debian._pillar_get(pillar, "patroni:tls")
    backup = render._check_backup(debian._pillar_get(pillar, "patroni:backup"), tls)
    return backup, render._check_tls(tls) if backup else None


def _local_stanzas(pillar):
    """``{scope: {"address", "port"}}`` of this host's clusters that pillar declares and whose Patroni config
    exists: the address the others reach its PostgreSQL at (its ``connect_address``) and its port."""
    clusters = debian._pillar_get(pillar, "patroni:clusters") or {}
    stanzas = {}
    for scope in sorted(clusters if isinstance(clusters, dict) else {}):
        if not isinstance(scope, str) or not render.SCOPE_FILE_RE.fullmatch(f"{scope}.yml"):
            continue  # the formula's pillar check names it; never a path or a section of its making
        config = render._read_yaml(f"{render.PATRONI_DIR}/{scope}.yml", follow_links=False)
        try:
            host = str(config["postgresql"]["connect_address"]).rsplit(":", 1)[0].strip("[]")
        except (KeyError, TypeError):
            continue
        port = render._listen_port(config)
        if port is not None:
            stanzas[scope] = {"address": host, "port": port}
    return stanzas


def _certificate_cn():
    return socket.getfqdn()  # the CN pillar_rules._tls_certificate gives every certificate the CA signs


@debian._host_errors
def backup_identity():
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    This minion's part in pgBackRest for pillar ``patroni:backup``: the CN of its certificate (which the other
    side's TLS server admits), whether it is the repository host, and the stanzas it runs (``{scope: {address,
    port}}``), or ``{}`` without the pillar.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.backup_identity
    """
    backup, _ = _pillar_backup()
    if not backup:
        return {}
    repository = backup["repository"]["host"] == _minion()
    stanzas = {} if repository else _local_stanzas(globals().get("__pillar__"))
    return {"cn": _certificate_cn(), "repository": repository, "stanzas": stanzas}


def _published(target, tgt_type="glob"):
    """The published parts of the minions ``target`` matches, ``{minion: identity}`` from the Salt mine, each
    checked: what another minion published goes into this host's configuration, so a part that is not a plain
    name, addresses and ports is left out (and logged), never written."""
    salt = globals().get("__salt__") or {}
    answer = salt["mine.get"](target, MINE_KEY, tgt_type=tgt_type) if "mine.get" in salt else {}
    parts = {}
    for minion, identity in (answer or {}).items():
        try:
            parts[minion] = _checked_part(identity)
        except (SaltInvocationError, TypeError, KeyError, AttributeError) as exc:
            log.warning("patroni_debian: %s's part in pgBackRest is left out: %s", minion, _scrub(exc))
    return parts


def _checked_part(identity):
    cn = identity["cn"]
    if not isinstance(cn, str) or not CN_RE.fullmatch(cn):
        raise SaltInvocationError(f"{cn!r} is not a host name")
    stanzas = {}
    for scope, where in (identity.get("stanzas") or {}).items():
        if not render.SCOPE_FILE_RE.fullmatch(f"{scope}.yml"):
            raise SaltInvocationError(f"{scope!r} is not a scope")
        address = str(render._check_address(f"stanzas:{scope}:address", where["address"]))
        port = render._check_port(where["port"])
        if port is None:
            raise SaltInvocationError(f"stanzas:{scope}: no port")
        stanzas[scope] = {"address": address, "port": port}
    return {"cn": cn, "repository": identity.get("repository") is True, "stanzas": stanzas}


def _plan_text(backup, tls):
    """``(role, text, stanzas)`` for this minion from the published parts; raises with what is missing."""
    name = backup["repository"]["host"]
    if _minion() == name:
        members = {}
        for minion, identity in sorted(_published(MEMBERS, "compound").items()):
            for scope, where in (identity.get("stanzas") or {}).items():
                members.setdefault(scope, {})[minion] = dict(where, cn=identity["cn"])
        return "repository", _repository_conf(backup, tls, members), sorted(members)
    stanzas = _local_stanzas(globals().get("__pillar__"))
    if not stanzas:
        return None, None, []
    repository = _published(name).get(name)
    if not repository or not repository.get("repository"):
        raise CommandExecutionError(
            f"the repository host {name} has not published its part in the Salt mine yet ({MINE_KEY}): apply "
            "the formula there first (orch.patroni does it before the members)"
        )
    ports = {scope: where["port"] for scope, where in stanzas.items()}
    return "member", _member_conf(backup, tls, repository["cn"], ports), sorted(stanzas)


@debian._host_errors
def backup_plan():
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    What ``/etc/pgbackrest.conf`` says on this minion for pillar ``patroni:backup``, changing nothing:
    ``{role, changed, stanzas, error, text}``, ``role`` ``repository``, ``member`` or None (no backup declared,
    or no cluster here); ``stanzas`` the scopes it serves; ``error`` why it cannot be written yet; on the
    repository host also ``path``, the repository's folder, ``current`` (``{scope: the stanza it archives
    into}``), ``timers`` (the scheduled backups) and ``stale_timers`` (the formula's timers it no longer has).

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.backup_plan
    """
    try:
        backup, tls = _pillar_backup()
    except SaltInvocationError as exc:
        return {"role": None, "changed": False, "stanzas": [], "error": f"pillar patroni:{exc}"}
    if not backup:
        return {"role": None, "changed": False, "stanzas": [], "error": None}
    try:
        role, text, stanzas = _plan_text(backup, tls)
    except CommandExecutionError as exc:
        return {"role": None, "changed": False, "stanzas": [], "error": str(exc)}
    current = debian._read_text(CONF_FILE, follow_links=False)
    changed = role is not None and current != text
    plan = {"role": role, "changed": changed, "stanzas": stanzas, "error": None, "text": text}
    if role != "repository":
        return plan
    current = {scope: render._archive_stanza(backup, scope) for scope in stanzas}
    timers = _timers(sorted(current.values()), backup["schedule"])
    return dict(plan, path=backup["path"], current=current, timers=timers, stale_timers=_stale_timers(timers))


TIMER_PREFIX = "patroni-debian-backup-"
UNIT_DIR = "/etc/systemd/system"


def _timers(stanzas, schedule):
    """The repository host's scheduled backups: ``[{unit, stanza, type, calendar}]``, a systemd timer and service
    ``patroni-debian-backup-<stanza>-<type>`` each."""
    return [
        {"unit": f"{TIMER_PREFIX}{stanza}-{kind}", "stanza": stanza, "type": kind, "calendar": calendar}
        for stanza in stanzas
        for kind, calendar in sorted(schedule.items())
    ]


def _stale_timers(timers, folder=UNIT_DIR):
    """The formula's timers on this host that the plan no longer has (a stanza a restore left behind, a type
    pillar dropped): each must stop, or it would back a cluster up into a stanza it no longer archives into."""
    wanted = {timer["unit"] for timer in timers}
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    found = {name[: -len(".timer")] for name in names if name.startswith(TIMER_PREFIX) and name.endswith(".timer")}
    return sorted(found - wanted)


@debian._host_errors
def backup_configure():
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Writes ``/etc/pgbackrest.conf`` as :py:func:`backup_plan` plans it, atomically (root, group postgres, 0640:
    pgBackRest runs as postgres), and returns the plan without the text; refuses with the plan's error.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.backup_configure
    """
    with debian._host_lock("backup_configure", BACKUP_LOCK_FILE):
        plan = backup_plan()
        if plan["error"]:
            raise CommandExecutionError(plan["error"])
        text = plan.pop("text", None)
        if plan["changed"]:
            target = debian._Target(CONF_FILE, None, text, None, "root", "postgres", 0o640)
            os.replace(debian._stage(target), CONF_FILE)
            log.info("patroni_debian: wrote %s", CONF_FILE)
        return plan


def _pgbackrest(*args):
    return debian._run(["pgbackrest", *args], user="postgres")


def _info(stanza):
    """pgBackRest's ``info`` of ``stanza`` as ``_backups_of`` reads it (None when it names no such stanza)."""
    return _backups_of(_pgbackrest("--output=json", f"--stanza={stanza}", "info").stdout, stanza)


def _stanzas(version, cluster):
    """The stanzas of ``<version>/<cluster>`` under this minion's pillar: the one it archives into, then earlier
    ones (``backup:stanzas``); its scope alone without that pillar."""
    scope = ops._scope(version, cluster)
    backup, _ = _pillar_backup()
    return render._stanzas_of(backup, scope) if backup else [scope]


@debian._host_errors
def backup_stanza(version, cluster):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    The stanza cluster ``<version>/<cluster>`` archives into exists in the repository: created
    (``stanza-create``) when pgBackRest's ``info`` does not know it, run on the repository host once the cluster
    has a leader. Returns ``{stanza, created}``.

    CLI Example:

    .. code-block:: bash

        salt pgbr patroni_debian.backup_stanza 15 main
    """
    stanza = _stanzas(version, cluster)[0]
    known = _info(stanza)
    if known and known["status"] != "missing stanza path":
        return {"stanza": stanza, "created": False}
    _pgbackrest(f"--stanza={stanza}", "stanza-create")
    return {"stanza": stanza, "created": True}


@debian._host_errors
def backup(version, cluster, type="full"):  # pylint: disable=redefined-builtin
    """
    A backup of cluster ``<version>/<cluster>`` into the stanza it archives into, run on the repository host (pgBackRest
    takes backups there when the repository is remote): ``type`` ``full``, ``diff`` or ``incr``. From a replica
    when pillar ``patroni:backup:from_replica`` allows it; pgBackRest's own lock refuses a second backup of the
    stanza while one runs. Returns the new backup as :py:func:`backups` lists it.

    CLI Example:

    .. code-block:: bash

        salt pgbr patroni_debian.backup 15 main
        salt pgbr patroni_debian.backup 15 main type=diff
    """
    stanza = _stanzas(version, cluster)[0]
    if type not in BACKUP_TYPES:
        raise SaltInvocationError(f"type: {type!r} is not one of {', '.join(BACKUP_TYPES)}")
    backup_pillar, _ = _pillar_backup()
    if not backup_pillar or backup_pillar["repository"]["host"] != _minion():
        where = backup_pillar["repository"]["host"] if backup_pillar else "the repository host"
        raise CommandExecutionError(f"backups of {stanza} are taken on {where}, not on {_minion()}")
    _pgbackrest(f"--stanza={stanza}", f"--type={type}", "backup")
    listed = backups(version, cluster)
    return listed["backups"][-1]


@debian._host_errors
def backups(version, cluster, table=False, stanza=None):
    """
    The backups of cluster ``<version>/<cluster>`` in the repository, oldest first, each with its sizes and WAL
    range, and the stanza's archive; with ``table``, the same as a table to read. Asked of pgBackRest
    (``info``), on the repository host or on a member. ``stanza``: one of the cluster's earlier stanzas (pillar
    ``patroni:backup:stanzas``) rather than the one it archives into.

    CLI Example:

    .. code-block:: bash

        salt pgbr patroni_debian.backups 15 main
        salt pgbr patroni_debian.backups 15 main table=True
        salt pgbr patroni_debian.backups 15 main stanza=15-main
    """
    stanza = _one_of_the_stanzas(version, cluster, stanza)
    listed = _info(stanza)
    if listed is None:
        raise CommandExecutionError(f"pgBackRest's info names no stanza {stanza}")
    return _backups_table(listed) if debian._check_boolean("table", table) else listed


def _one_of_the_stanzas(version, cluster, stanza):
    """``stanza`` when it is one of the cluster's (checked), else the one it archives into."""
    stanzas = _stanzas(version, cluster)
    if stanza in (None, ""):
        return stanzas[0]
    if stanza not in stanzas:
        raise SaltInvocationError(f"stanza: {_scrub(str(stanza))!r} is not one of {', '.join(stanzas)}")
    return stanza


# --------------------------------------------------------------------------------------------------
# restore (orch.patroni_restore): into the same scope, through Patroni's custom bootstrap

RESTORE_METHOD = "pgbackrest_restore"  # the bootstrap method's name in the restoring member's config
RESTORE_KEYS = ("time", "name", "set", "timeline")
KEPT_ASIDE = "before-restore"  # a replaced data directory is renamed <datadir>.before-restore-<UTC time>


def _check_restore_target(target):
    """``target`` as the restore takes it: ``latest`` (the end of the archive), or a mapping with one of
    ``time`` (with its time zone), ``name`` (a restore point of ``pg_create_restore_point``) and ``set`` (a
    backup's label: that backup, to its consistent end), ``set`` also beside ``time`` or ``name`` to choose the
    backup, and ``timeline`` (``current``, ``latest`` or a number) for the recovery's timeline."""
    if target in (None, "", "latest"):
        return {}
    if not isinstance(target, dict) or not target:
        raise SaltInvocationError(f"target: {_scrub(target)!r} is not 'latest' or a mapping such as {{time: ...}}")
    render._check_known_keys("target", target, RESTORE_KEYS)
    if "time" in target and "name" in target:
        raise SaltInvocationError("target: give a time or a name, not both")
    checked = {}
    if "time" in target:
        checked["time"] = _check_target_time(target["time"])
    if "name" in target:
        checked["name"] = debian._check_text("target:name", target["name"])
        if not checked["name"]:
            raise SaltInvocationError("target:name: empty; give the restore point's name")
    if "set" in target:
        checked["set"] = debian._check_backup_set(target["set"])
    if "timeline" in target:
        timeline = str(target["timeline"])
        if timeline not in ("current", "latest") and not (timeline.isdigit() and int(timeline) > 0):
            raise SaltInvocationError(f"target:timeline: {timeline!r} is not current, latest or a timeline number")
        checked["timeline"] = timeline
    if not ({"time", "name", "set"} & set(checked)):
        raise SaltInvocationError("target: give a time, a name or a set (or target: latest)")
    return checked


def _check_target_time(value):
    """A time with its zone, as an aware datetime in UTC: without a zone PostgreSQL would read it in the server's
    ``TimeZone``, which the one who typed it may not know."""
    text = str(value).strip()
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SaltInvocationError(f"target:time: {text!r} is not a time such as 2026-12-03 17:04:05+00") from None
    if moment.tzinfo is None:
        raise SaltInvocationError(f"target:time: {text!r} has no time zone; add one, e.g. +00 or +01:00")
    return moment.astimezone(datetime.timezone.utc)


def _restore_choice(listed, target, now):
    """The backup set a restore to ``target`` (checked) starts from, from ``_backups_of``'s listing: refused with
    the reason when the stanza has no backup, the set is not there, or the time is outside the archive (before
    the oldest backup's end: nothing to start from; after ``now``, UNIX seconds)."""
    stanza = listed["stanza"]
    backups = [one for one in listed["backups"] if not one["error"]]
    if not backups:
        raise SaltInvocationError(f"stanza {stanza} has no backup to restore")
    if "set" in target:
        chosen = [one for one in backups if one["label"] == target["set"]]
        if not chosen:
            labels = ", ".join(one["label"] for one in backups)
            raise SaltInvocationError(f"target:set: stanza {stanza} has no backup {target['set']} (it has {labels})")
        return chosen[0]
    if "time" in target:
        moment = target["time"].timestamp()
        if moment < backups[0]["stopped"]:
            oldest = _utc_text(backups[0]["stopped"])
            raise SaltInvocationError(
                f"target:time: {_utc_text(moment)} is outside the archive of {stanza}: its oldest backup ends at "
                f"{oldest}"
            )
        if moment > now:
            raise SaltInvocationError(f"target:time: {_utc_text(moment)} is in the future (now {_utc_text(now)})")
        return [one for one in backups if one["stopped"] <= moment][-1]
    return backups[-1]


def _utc_text(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def _recovery_conf(stanza, target, datadir):
    """What Patroni writes for the restored member's recovery (its bootstrap method's ``recovery_conf``): the WAL
    from the repository, to the target, then promotion; to the end of the archive for ``latest``."""
    conf = {"restore_command": render._archive_get(stanza, datadir)}
    if "time" in target:
        conf["recovery_target_time"] = _utc_text(target["time"].timestamp())
    elif "name" in target:
        conf["recovery_target_name"] = target["name"]
    elif "set" in target:
        conf["recovery_target"] = "immediate"
    if len(conf) > 1:
        conf["recovery_target_action"] = "promote"
    if "timeline" in target:
        conf["recovery_target_timeline"] = target["timeline"]
    return conf


def _restore_bootstrap(program, stanza, backup_set, recovery):
    """The ``bootstrap`` section that makes Patroni's bootstrap a restore: the program's ``restore`` action
    (pg-common's metadata, then pgBackRest's restore of ``backup_set``), and the recovery Patroni writes."""
    command = render._program_command(program, f"restore --stanza={stanza} --set={backup_set}")
    return {"method": RESTORE_METHOD, RESTORE_METHOD: {"command": command, "recovery_conf": recovery}}


def _restore_source(scope, stanzas, stanza):
    """The stanza a restore of ``scope`` reads (``stanza``, else the one before the stanza it archives into),
    refused when it is the one the restored cluster would archive into: a restored cluster never pushes WAL
    into the history it came from."""
    source = stanza if stanza not in (None, "") else (stanzas[1] if len(stanzas) > 1 else stanzas[0])
    if source == stanzas[0]:
        fresh = _next_stanza(stanzas[0])
        raise SaltInvocationError(
            f"{scope} would archive into {source}, the stanza it is restored from: declare a fresh stanza first, "
            f"pillar patroni:backup:stanzas: {{{scope}: [{', '.join([fresh, *stanzas])}]}}"
        )
    if source not in stanzas:
        raise SaltInvocationError(f"stanza: {_scrub(str(source))!r} is not one of {scope}'s: {', '.join(stanzas)}")
    return source


def _next_stanza(stanza):
    """``15-main`` → ``15-main-2``, ``15-main-2`` → ``15-main-3``: a name for the stanza after a restore."""
    head, _, number = stanza.rpartition("-")
    return f"{head}-{int(number) + 1}" if number.isdigit() and head.count("-") else f"{stanza}-2"


def _check_same_system(stanza, stanza_id, scope, cluster_id):
    """Refuse a stanza whose database system is not the one the cluster's DCS knows (its ``initialize`` key):
    another cluster's backups, restored over this one. Either unknown (no DCS keys: a cluster lost whole, a stanza
    not created yet) is no refusal."""
    if cluster_id and stanza_id and str(cluster_id) != str(stanza_id):
        raise SaltInvocationError(
            f"stanza {stanza} holds the backups of database system {stanza_id}, not of cluster {scope} as its "
            f"DCS knows it ({cluster_id}): refusing to restore another cluster's data over it"
        )


def _declares(scope):
    """Whether this minion is a member of ``scope``: its Patroni config is here, or its pillar declares it."""
    clusters = debian._pillar_get(globals().get("__pillar__"), "patroni:clusters")
    return (isinstance(clusters, dict) and scope in clusters) or os.path.lexists(f"{render.PATRONI_DIR}/{scope}.yml")


def _member_config(version, cluster):
    """``(config, written)``: this member's Patroni config of ``<version>/<cluster>``, else the one pillar declares,
    rendered without writing anything: a restore into a new scope, or onto members whose config is gone, plans
    from it (the formula, run first, would bootstrap an empty cluster there)."""
    scope = ops._scope(version, cluster)
    if os.path.lexists(f"{render.PATRONI_DIR}/{scope}.yml"):
        return ops._config(scope), True
    pillar = globals().get("__pillar__")
    if not _declares(scope):
        raise SaltInvocationError(
            f"{scope} has no Patroni config here and pillar patroni:clusters does not declare it: declare the cluster "
            "to restore (without running the formula, which would bootstrap it empty) and restore again"
        )
    return render._render(version, cluster, {}, pillar)["config"], False


def _restore_plan(version, cluster, target, confirm, stanza=None):
    """The plan every restore step checks again before it acts (``restore_plan``'s answer)."""
    scope = ops._scope(version, cluster)
    checked = _check_restore_target(target)
    backup_pillar, _ = _pillar_backup()
    if not backup_pillar:
        raise SaltInvocationError("pillar patroni:backup declares no repository to restore from")
    config, written = _member_config(version, cluster)
    stanzas = render._stanzas_of(backup_pillar, scope)
    source = _restore_source(scope, stanzas, stanza)
    datadir = str(config["postgresql"]["data_dir"])
    listed = _info(source)
    if listed is None or listed["status"] == "missing stanza path":
        raise SaltInvocationError(f"the repository has no stanza {source}")
    chosen = _restore_choice(listed, checked, time.time())
    view = ops._dcs_view(scope, config=None if written else config)
    _check_same_system(source, listed["system_identifier"], scope, view.get("system_identifier"))
    has_data = not debian._is_empty_dir(datadir)
    if has_data and os.path.ismount(datadir):
        raise SaltInvocationError(
            f"{datadir} is a mount point: the restore keeps a replaced data directory by renaming it aside, which a "
            "mount point cannot be; move its contents into a folder of that file system, or unmount it, first"
        )
    if (view["initialized"] or has_data) and str(confirm) != scope:
        there = "its DCS keys" if view["initialized"] else f"the data in {datadir}"
        raise SaltInvocationError(
            f"cluster {scope} exists ({there}): a restore replaces it; give confirm={scope} to restore over it"
        )
    return {
        "scope": scope,
        "member": True,
        "stanza": source,
        "archives_into": stanzas[0],
        "set": chosen["label"],
        "recovery": _recovery_conf(source, checked, datadir),
        "restores_here": ops._role_of(globals().get("__pillar__"), globals().get("__grains__")) == "bootstrap",
        "datadir": datadir,
        "has_data": has_data,
        "initialized": view["initialized"],
        "leader": view["leader"],
        "name": config.get("name"),
        "timeline": view["timeline"],
    }


@debian._host_errors
def restore_plan(version, cluster, target="latest", confirm=None, stanza=None):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    What a restore of cluster ``<version>/<cluster>`` from its stanza would do on this member, changing nothing:
    the stanza it reads (``stanza``, else the one before the stanza the cluster archives into, pillar
    ``patroni:backup:stanzas``), the backup set it starts from, the recovery Patroni writes, whether it restores
    here (the member with the bootstrap role) and whether it replaces data. Refused, with the reason, when the
    restored cluster would archive into the stanza it came from, for a target outside the archive, a backup set
    the stanza does not have, a stanza of another database system than the cluster's DCS knows, and a cluster
    that exists (DCS keys or data here) without ``confirm=<version>-<cluster>``.

    The cluster may be new here (a restore into a new scope beside another, or onto members whose config is gone):
    pillar ``patroni:clusters`` declares it, and the plan reads its declared config without writing it. A minion
    that neither declares the cluster nor has its config answers ``{"member": false}`` and takes no part, unless
    it has the bootstrap role (the restore happens there: refused).

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.restore_plan 15 main target='{time: "2026-12-03 17:04:05+00"}'
        salt pg1 patroni_debian.restore_plan 15 copy target=latest stanza=15-main
    """
    scope = ops._scope(version, cluster)
    bootstrap = ops._role_of(globals().get("__pillar__"), globals().get("__grains__")) == "bootstrap"
    if not bootstrap and not _declares(scope):
        return {"scope": scope, "member": False}
    return _restore_plan(version, cluster, target, confirm, stanza)


@debian._host_errors
def restore_prepare(version, cluster, target="latest", confirm=None, stanza=None, timeout=120):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    This member made ready for a restore of ``<version>/<cluster>`` (:py:func:`restore_plan` checked again):
    its Patroni stopped, the leader's last (it waits up to ``timeout`` seconds for the others to stop, so that
    no replica takes over), and its data directory, when it has one, renamed aside to
    ``<datadir>.before-restore-<UTC time>``: kept, never removed, until you remove it.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.restore_prepare 15 main confirm=15-main
    """
    timeout = debian._check_seconds("timeout", timeout)
    with debian._host_lock(f"restore_prepare {version}/{cluster}", RESTORE_LOCK_FILE):
        return _restore_prepare(version, cluster, target, confirm, stanza, timeout)


def _restore_prepare(version, cluster, target, confirm, stanza, timeout):
    plan = _restore_plan(version, cluster, target, confirm, stanza)
    scope, unit = plan["scope"], f"patroni@{plan['scope']}"
    salt = globals()["__salt__"]
    stopped = bool(salt["service.status"](unit))
    if stopped:
        if plan["leader"] == plan["name"]:
            _wait_others_stopped(version, cluster, plan["name"], timeout)
        salt["service.stop"](unit)
    if debian._running_postmaster(plan["datadir"]):
        raise CommandExecutionError(f"{scope}: PostgreSQL still runs in {plan['datadir']} with Patroni stopped")
    aside = None
    if plan["has_data"]:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = f"{plan['datadir']}.{KEPT_ASIDE}-{stamp}"
        os.rename(plan["datadir"], aside)
        log.info("patroni_debian: %s's data directory kept aside as %s for the restore", scope, aside)
    return {"stopped": stopped, "kept_aside": aside}


def _wait_others_stopped(version, cluster, name, timeout):
    """Until every other member of the cluster has stopped (its Patroni says so, or is gone from the DCS)."""
    salt = globals()["__salt__"]
    deadline, running = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        listed = salt["patroni_debian.members"](version, cluster)
        running = [one["name"] for one in listed if one.get("name") != name and one.get("state") != "stopped"]
        if not running:
            return
        time.sleep(0.5)
    raise CommandExecutionError(f"{', '.join(running)} still run after {timeout} s: refusing to stop the leader")


@debian._host_errors
def restore_start(version, cluster, target="latest", confirm=None, stanza=None, timeout=600):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    The restore itself, on the member with the bootstrap role once every member is prepared
    (:py:func:`restore_prepare`): the cluster's keys removed from the DCS, this member's config given a
    bootstrap that restores the planned backup set through the program (pg-common's metadata, then pgBackRest)
    and recovers to the target, Patroni started; returns once this member leads and accepts writes, its config
    back to the declared one. The other members then clone from it (the formula).

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.restore_start 15 main target='{time: "2026-12-03 17:04:05+00"}' confirm=15-main
    """
    timeout = debian._check_seconds("timeout", timeout)
    # a lock of its own: the program that Patroni runs for the restore takes the host's lock
    with debian._host_lock(f"restore_start {version}/{cluster}", RESTORE_LOCK_FILE):
        return _restore_start(version, cluster, target, confirm, stanza, timeout)


def _restore_start(version, cluster, target, confirm, stanza, timeout):
    plan = _restore_plan(version, cluster, target, confirm, stanza)
    scope = plan["scope"]
    if not plan["restores_here"]:
        raise CommandExecutionError(f"{scope} is restored on the member with the bootstrap role, not here")
    if plan["has_data"] or globals()["__salt__"]["service.status"](f"patroni@{scope}"):
        raise CommandExecutionError(f"{scope} still runs or has data here: run restore_prepare on every member first")
    started = time.monotonic()
    salt, pillar = globals()["__salt__"], globals().get("__pillar__")
    program = debian._pillar_get(pillar, f"patroni:clusters:{scope}:program") or debian.PROGRAM
    overrides = debian._pillar_get(pillar, f"patroni:clusters:{scope}:config") or {}
    bootstrap = _restore_bootstrap(program, plan["stanza"], plan["set"], plan["recovery"])
    restoring = render._deep_merge(overrides, {"bootstrap": bootstrap})
    salt["patroni_debian.createconfig"](version, cluster, declared=True, config=restoring)
    try:
        forgotten = ops._patroni_dcs(scope, ops.DCS_FORGET)  # with the config just written: a new scope had none
        salt["service.start"](f"patroni@{scope}")
        healthy = salt["patroni_debian.wait_healthy"](version, cluster, timeout=timeout)
    finally:
        salt["patroni_debian.createconfig"](version, cluster, declared=True)  # never a restore at a later bootstrap
    salt["service.reload"](f"patroni@{scope}")
    log.info("patroni_debian: restored %s from backup %s, %s", scope, plan["set"], _scrub(plan["recovery"]))
    return {
        "stanza": plan["stanza"],
        "archives_into": plan["archives_into"],
        "set": plan["set"],
        "recovery": plan["recovery"],
        "forgotten": forgotten,
        "leader": healthy["leader"],
        "timeline": healthy["timeline"],
        "seconds": round(time.monotonic() - started, 1),
    }
