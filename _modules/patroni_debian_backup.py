"""
pgBackRest the Debian way (issue 23), the part that needs no host yet: what ``/etc/pgbackrest.conf`` says on a
Patroni member and on the repository host, and the backups of a stanza as data and as a table from
``pgbackrest info --output=json``. Not wired into the formula yet: docs/backups.md says what is built and what is
not.

Every host runs Debian's ``pgbackrest.service`` (pgBackRest's TLS server, as postgres): the members archive into
the repository through the repository host's server, and the repository host's backups read a member through
the member's server. Each side accepts only the other's certificate (``tls-server-auth``, by the certificate's CN),
every certificate from the cluster's CA (pillar ``patroni:tls:ca_server``). Stanza = the Patroni scope
(``15-main``), so a major upgrade is a new stanza.
"""

import json

from patroni_debian import PG_HOME, _scrub
from patroni_debian_render import BACKUP_TLS_PORT

__virtualname__ = "patroni_debian"

CONF_FILE = "/etc/pgbackrest.conf"  # the package's own, which pgbackrest reads without --config
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
