"""
pgBackRest the Debian way (issue 23): what ``/etc/pgbackrest.conf`` says on a Patroni member and on the repository
host, each host's part exchanged through the Salt mine, the stanza, backups on demand, and the backups of a stanza
as data and as a table from ``pgbackrest info --output=json``. docs/backups.md says what is built and what is not.

Every host runs Debian's ``pgbackrest.service`` (pgBackRest's TLS server, as postgres): the members archive into
the repository through the repository host's server, and the repository host's backups read a member through
the member's server. Each side accepts only the other's certificate (``tls-server-auth``, by the certificate's CN),
every certificate from the cluster's CA (pillar ``patroni:tls:ca_server``). Stanza = the Patroni scope
(``15-main``), so a major upgrade is a new stanza.
"""

import json
import logging
import os
import re
import socket

from salt.exceptions import CommandExecutionError, SaltInvocationError

import patroni_debian as debian
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
CONF_HEADER = "# pgBackRest for patroni_debian, written by Salt's patroni_debian formula: edits are replaced.\n"
SOCKET_DIR = "/var/run/postgresql"  # pg-common's unix_socket_directories
LOG_LEVEL_FILE = "detail"  # /var/log/pgbackrest/<stanza>-<command>.log: what a restore's post-mortem needs


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
    options = {
        **_tls_client("repo1-host", repository, tls),
        **_tls_server(tls, {repository_cn: list(stanzas)}),
        "log-level-file": LOG_LEVEL_FILE,
    }
    sections = [_section("global", options)]
    for scope, port in sorted(stanzas.items()):
        sections.append(
            _section(scope, {"pg1-path": _data_dir_of(scope), "pg1-port": port, "pg1-socket-path": SOCKET_DIR})
        )
    return CONF_HEADER + "\n".join(sections)


def _repository_conf(backup, tls, members):
    """``/etc/pgbackrest.conf`` of the repository host: the repository in ``backup['path']`` with its retention,
    its TLS server for the members' CNs (each to its own stanzas), and per stanza every member as a ``pgN-host``
    (in the order of their names; pgBackRest finds the primary among them itself). ``members``: ``{scope:
    {member name: {"address", "port", "cn"}}}``."""
    clients = {}
    for scope, hosts in members.items():
        for host in hosts.values():
            clients.setdefault(host["cn"], []).append(scope)
    options = {
        "repo1-path": backup["path"],
        "repo1-retention-full": backup["retention_full"],
        "start-fast": True,
        **_tls_server(tls, clients),
        "log-level-file": LOG_LEVEL_FILE,
    }
    sections = [_section("global", options)]
    for scope, hosts in sorted(members.items()):
        stanza = {"backup-standby": backup["from_replica"] and len(hosts) > 1}
        for number, (_, host) in enumerate(sorted(hosts.items()), start=1):
            stanza.update(_tls_client(f"pg{number}-host", host["address"], tls))
            stanza.update({f"pg{number}-path": _data_dir_of(scope), f"pg{number}-port": host["port"]})
        sections.append(_section(scope, stanza))
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
    return {
        "stanza": stanza,
        "status": _scrub(entry.get("status", {}).get("message", "")),
        "backups": backups,
        "archive": {"min": current.get("min"), "max": current.get("max")},
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
    or no cluster here); ``stanzas`` those it serves; ``error`` why it cannot be written yet; on the repository
    host also ``path``, the repository's folder.

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
    return dict(plan, path=backup["path"], timers=_timers(stanzas, backup["schedule"]))


def _timers(stanzas, schedule):
    """The repository host's scheduled backups: ``[{unit, stanza, type, calendar}]``, a systemd timer and service
    ``patroni-debian-backup-<stanza>-<type>`` each."""
    return [
        {"unit": f"patroni-debian-backup-{stanza}-{kind}", "stanza": stanza, "type": kind, "calendar": calendar}
        for stanza in stanzas
        for kind, calendar in sorted(schedule.items())
    ]


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


def _stanza(version, cluster):
    version, cluster = debian._check_version(version), debian._check_cluster(cluster)
    return f"{version}-{cluster}"


@debian._host_errors
def backup_stanza(version, cluster):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    The stanza of cluster ``<version>/<cluster>`` exists in the repository: created (``stanza-create``) when
    pgBackRest's ``info`` does not know it, run on the repository host once the cluster has a leader. Returns
    ``{stanza, created}``.

    CLI Example:

    .. code-block:: bash

        salt pgbr patroni_debian.backup_stanza 15 main
    """
    stanza = _stanza(version, cluster)
    known = _info(stanza)
    if known and known["status"] != "missing stanza path":
        return {"stanza": stanza, "created": False}
    _pgbackrest(f"--stanza={stanza}", "stanza-create")
    return {"stanza": stanza, "created": True}


@debian._host_errors
def backup(version, cluster, type="full"):  # pylint: disable=redefined-builtin
    """
    A backup of cluster ``<version>/<cluster>`` into the repository, run on the repository host (pgBackRest
    takes backups there when the repository is remote): ``type`` ``full``, ``diff`` or ``incr``. From a replica
    when pillar ``patroni:backup:from_replica`` allows it; pgBackRest's own lock refuses a second backup of the
    stanza while one runs. Returns the new backup as :py:func:`backups` lists it.

    CLI Example:

    .. code-block:: bash

        salt pgbr patroni_debian.backup 15 main
        salt pgbr patroni_debian.backup 15 main type=diff
    """
    stanza = _stanza(version, cluster)
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
def backups(version, cluster, table=False):
    """
    The backups of cluster ``<version>/<cluster>`` in the repository, oldest first, each with its sizes and WAL
    range, and the stanza's archive; with ``table``, the same as a table to read. Asked of pgBackRest
    (``info``), on the repository host or on a member.

    CLI Example:

    .. code-block:: bash

        salt pgbr patroni_debian.backups 15 main
        salt pgbr patroni_debian.backups 15 main table=True
    """
    stanza = _stanza(version, cluster)
    listed = _info(stanza)
    if listed is None:
        raise CommandExecutionError(f"pgBackRest's info names no stanza {stanza}")
    return _backups_table(listed) if debian._check_boolean("table", table) else listed
