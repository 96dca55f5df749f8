"""
Debian's ``pg_createconfig_patroni``, computed: the arguments and pillar checked, the host's facts read (ports,
addresses, clusters, other configs) and the config, the VIP file and their warnings rendered. Reads the host,
never changes it; ``patroni_debian_config.py`` plans and writes what this renders.

Pillar is an argument wherever it is read: this file is imported by its siblings, which Salt's dunders never
reach.

:depends: postgresql-common, iproute2, PyYAML
"""

import copy
import difflib
import glob
import ipaddress
import json
import math
import os
import re
import shlex
import socket
import stat
import urllib.parse

import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

from patroni_debian import (
    CLUSTER_MAX,
    CONFIG_OWNER,
    DEBIAN_REPLICATION,
    PG_CONF_DIR,
    PG_HOME,
    PG_LIB_DIR,
    PROGRAM,
    READ_LIMIT,
    VERSION_RE,
    _account,
    _all_masked,
    _check_boolean,
    _check_cluster,
    _check_initdb,
    _check_text,
    _check_version,
    _data_dir,
    _file_kind,
    _has_control_character,
    _is_secret_key,
    _masked,
    _pg_cluster_table,
    _pillar_get,
    _read_text,
    _run,
    _scrub,
    _which,
)

__virtualname__ = "patroni_debian"


def __virtual__():
    return __virtualname__


PATRONI_DIR = "/etc/patroni"

DCS_FILE = "/etc/patroni/dcs.yml"

NAMESPACE = "/postgresql-common/"

DEFAULT_PORT = 5432

RESTAPI_PORT_OFFSET = 2576  # Debian's rule: REST API 8008 for PostgreSQL 5432

MAX_PORT = 65535

PYTHON = "/usr/bin/python3"

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
    "tls",
)

# Options whose pillar value an argument deep-merges into rather than replaces: a replication password given
# on the command line must not drop the superuser's from pillar.
MERGED_OPTIONS = ("authentication", "dynamic", "config")

AUTHENTICATION_ROLES = ("replication", "superuser", "rewind", "restapi")

# the REST API's role is no PostgreSQL role: Patroni asks its name and password of callers of the unsafe endpoints
RESTAPI_ROLE_KEYS = ("username", "password")

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

SCOPE_FILE_RE = re.compile(r"(?:9\.\d|[1-9]\d+)-\w[-.\w]*\.yml", re.ASCII)

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

TLS_DIR = "/etc/patroni/tls"

# Where the formula puts what a ca_server issues (salt/patroni/tls.sls): the cluster's CA, the member's certificate
# and its key, root:postgres 0640 (PostgreSQL accepts a root-owned key its group may read; Patroni runs as postgres)
TLS_ISSUED = {"ca_file": f"{TLS_DIR}/ca.crt", "cert_file": f"{TLS_DIR}/member.crt", "key_file": f"{TLS_DIR}/member.key"}

TLS_FILE_KEYS = tuple(TLS_ISSUED)

TLS_KEYS = ("ca_server", *TLS_FILE_KEYS, "days_valid", "days_remaining", "sslmode")

# verify-full checks the leader's name (its connect address) against its certificate; verify-ca only the CA, for a
# PKI whose certificates cannot name the members' addresses
TLS_SSLMODES = ("verify-full", "verify-ca")

TLS_DEFAULTS = {"days_valid": 365, "days_remaining": 30, "sslmode": "verify-full"}

# From PostgreSQL 14 on, passwords are stored as SCRAM by default; an older cluster's roles may hold md5 hashes,
# which a scram-sha-256 rule would lock out, so those keep md5 (which also accepts SCRAM-hashed passwords).
SCRAM_SINCE = 14

MINION_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*", re.ASCII)

# pillar etcd: the DCS deployed by the formula (salt/etcd), one etcd cluster per pillar
ETCD_KEYS = ("cluster", "members", "v2", "tls")
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
ETCD_DATA_ROOT = "/var/lib/etcd"
# the cluster's name is its data directory's and its initial-cluster token: a plain file name, never the package's
# own default member's directory
ETCD_CLUSTER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", re.ASCII)
ETCD_PACKAGE_DEFAULT = "default"
# etcd over TLS (pillar etcd:tls): the member's own key and certificate, signed by the CA of patroni:tls. A key of
# its own because etcd runs as user etcd, which may not read the Patroni member's key (group postgres)
ETCD_TLS_DIR = "/etc/etcd/tls"
ETCD_TLS_FILES = {"cert_file": f"{ETCD_TLS_DIR}/member.crt", "key_file": f"{ETCD_TLS_DIR}/member.key"}

# Pillar patroni:backup (issue 23): pgBackRest from Debian's archive, its repository on a host of its own reached
# through pgBackRest's TLS server (Debian's pgbackrest.service, run as postgres), which every member runs too
BACKUP_KEYS = (
    "repository",
    "path",
    "retention_full",
    "from_replica",
    "schedule",
    "stanzas",
    "replicas_from_repository",
)
BACKUP_PATH = "/var/lib/pgbackrest"  # the package's own repository folder (postgres, 0750)
BACKUP_TYPES = ("full", "diff", "incr")
# systemd timers on the repository host (OnCalendar): a full backup a week, a differential one the other days
BACKUP_SCHEDULE = {"full": "Sun *-*-* 01:00:00", "diff": "Mon..Sat *-*-* 01:00:00"}
BACKUP_DEFAULTS = {
    "path": BACKUP_PATH,
    "retention_full": 2,
    "from_replica": True,
    "schedule": BACKUP_SCHEDULE,
    "stanzas": {},
    "replicas_from_repository": False,
}
CALENDAR_RE = re.compile(r"[A-Za-z0-9*,.:/~ +-]{1,100}", re.ASCII)  # the characters of systemd's OnCalendar
BACKUP_TLS_PORT = 8432  # pgBackRest's TLS server (tls-server-port)
REPOSITORY_METHOD = "pgbackrest"  # the replica-creation method that restores the newest backup
ARCHIVE_GET_SECONDS = 10  # a standby's restore_command gives up then, and the standby streams (_backup_settings)
BACKUP_RETENTION_MAX = 9999999  # pgBackRest's own bound of repo1-retention-full


# --------------------------------------------------------------------------------------------------
# small helpers


def _deep_merge(base, override):
    """A copy of ``base`` with ``override`` merged in: mappings merge key by key, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


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
# validation: every argument is checked before the host is looked at


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
        _check_known_keys(
            f"authentication:{role}", credentials, RESTAPI_ROLE_KEYS if role == "restapi" else AUTHENTICATION_KEYS
        )
        for key, value in credentials.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
                raise SaltInvocationError(f"authentication:{role}:{key} must be a string, got {type(value).__name__}")
        if role == "restapi":
            _check_restapi_role(credentials)
        elif "username" in credentials:
            _check_role_name(f"authentication:{role}:username", credentials["username"])
        password = credentials.get("password")
        if password is not None and _has_control_character(str(password)):
            raise SaltInvocationError(
                f"authentication:{role}:password holds a line break, NUL or other control character, which no "
                "pgpass file can hold"
            )
    return authentication


def _check_restapi_role(credentials):
    """The REST API's Basic authentication: a name without ``:`` (which ends the name in Basic's encoding) and a
    password, both given or neither."""
    username, password = credentials.get("username"), credentials.get("password")
    if not username or password is None or str(password) == "":
        raise SaltInvocationError(
            "authentication:restapi: give both username and password (Basic authentication of the REST API's unsafe "
            "endpoints), or leave the role out"
        )
    if ":" in str(username) or _has_control_character(str(username)) or str(username) != str(username).strip():
        raise SaltInvocationError(
            f"authentication:restapi:username: {_scrub(str(username))!r} cannot hold ':', surrounding spaces or a "
            "control character (HTTP Basic authentication ends the name at the first ':')"
        )


def _check_tls(tls):
    """Pillar ``patroni:tls`` (or the ``tls`` argument) completed with its defaults, or None without TLS: either
    ``ca_server`` (certificates issued by Salt, in TLS_ISSUED's files) or all of ``ca_file``, ``cert_file`` and
    ``key_file`` (the user's own PKI, used as they are)."""
    if tls is None:
        return None
    if not isinstance(tls, dict):
        raise SaltInvocationError(
            f"tls: expected a mapping such as {{ca_server: pg1}} or {{ca_file: …, cert_file: …, key_file: …}}, got "
            f"{type(tls).__name__}"
        )
    _check_known_keys("tls", tls, TLS_KEYS)
    files = [key for key in TLS_FILE_KEYS if tls.get(key) is not None]
    if tls.get("ca_server") is not None:
        if files:
            raise SaltInvocationError(
                f"tls: ca_server issues the certificates, so {', '.join(files)} cannot be given too; choose "
                "ca_server or your own ca_file, cert_file and key_file"
            )
        server = tls["ca_server"]
        if not isinstance(server, str) or not MINION_ID_RE.fullmatch(server):
            raise SaltInvocationError(f"tls:ca_server: {_scrub(repr(server))} is not a minion id")
    elif len(files) != len(TLS_FILE_KEYS):
        missing = ", ".join(key for key in TLS_FILE_KEYS if key not in files)
        raise SaltInvocationError(
            f"tls: needs ca_server: <minion id> (certificates issued by Salt), or all of ca_file, cert_file and "
            f"key_file (your own PKI); missing: {missing}"
        )
    for key in files:
        path = tls[key]
        if not isinstance(path, str) or not os.path.isabs(path) or _has_control_character(path):
            raise SaltInvocationError(f"tls:{key}: {_scrub(repr(path))} must be an absolute path")
    settings = {**TLS_DEFAULTS, **(TLS_ISSUED if not files else {}), **{k: v for k, v in tls.items() if v is not None}}
    for key in ("days_valid", "days_remaining"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SaltInvocationError(f"tls:{key}: {_scrub(repr(value))} must be a whole number of days, at least 1")
    if settings["days_remaining"] >= settings["days_valid"]:
        raise SaltInvocationError(
            f"tls: days_remaining {settings['days_remaining']} must be less than days_valid {settings['days_valid']}, "
            "or every run would renew the certificate"
        )
    if settings["sslmode"] not in TLS_SSLMODES:
        raise SaltInvocationError(
            f"tls:sslmode: {_scrub(repr(settings['sslmode']))} is not one of {', '.join(TLS_SSLMODES)} (a connection "
            "that does not verify the server is not TLS worth the name)"
        )
    return settings


def _check_etcd(etcd, tls=None):
    """Pillar ``etcd`` checked: ``{"cluster": name, "members": {minion id: address}, "v2": bool, "tls": files or
    None}``, or None when the pillar declares no etcd. Members are minion ids with the address their peers and
    clients reach them on. ``tls``: pillar ``patroni:tls``, whose CA signs the members' certificates when
    ``etcd:tls`` is true (:py:func:`_etcd_tls`)."""
    if etcd is None:
        return None
    if not isinstance(etcd, dict):
        raise SaltInvocationError(
            f"etcd: expected a mapping such as {{cluster: patroni, members: {{pg1: 10.0.0.11}}}}, got "
            f"{type(etcd).__name__}"
        )
    _check_known_keys("etcd", etcd, ETCD_KEYS)
    cluster = etcd.get("cluster")
    if not isinstance(cluster, str) or not ETCD_CLUSTER_RE.fullmatch(cluster) or cluster == ETCD_PACKAGE_DEFAULT:
        raise SaltInvocationError(
            f"etcd:cluster: {_scrub(repr(cluster))} is not a name for the etcd cluster (its data directory "
            f"{ETCD_DATA_ROOT}/<cluster> and its token): letters, digits, '_', '.' and '-', up to 63, and not "
            f"{ETCD_PACKAGE_DEFAULT!r}, the directory of the package's own one-member cluster"
        )
    members = etcd.get("members")
    if not isinstance(members, dict) or not members:
        raise SaltInvocationError("etcd:members: must map each member's minion id to its address, e.g. pg1: 10.0.0.11")
    checked, seen = {}, {}
    for name, address in members.items():
        if not isinstance(name, str) or not MINION_ID_RE.fullmatch(name):
            raise SaltInvocationError(f"etcd:members: {_scrub(repr(name))} is not a minion id")
        address = _check_address(f"etcd:members:{name}", address)
        if address in seen:
            raise SaltInvocationError(f"etcd:members: {name} and {seen[address]} have the same address {address}")
        seen[address] = name
        checked[name] = str(address)
    v2 = etcd.get("v2", False)
    if not isinstance(v2, bool):
        raise SaltInvocationError(f"etcd:v2: {_scrub(repr(v2))} must be true or false")
    return {"cluster": cluster, "members": checked, "v2": v2, "tls": _etcd_tls(etcd.get("tls", False), tls)}


def _etcd_tls(wanted, tls):
    """The files of an etcd served over TLS, or None: ``ca_file`` (patroni:tls's CA, which every member trusts for
    peers and clients alike), the member's own ``cert_file`` and ``key_file``, and ``clients``: the certificate
    and key pairs a client on this host may present, the etcd member's first, then the Patroni member's."""
    if not isinstance(wanted, bool):
        raise SaltInvocationError(f"etcd:tls: {_scrub(repr(wanted))} must be true or false")
    if not wanted:
        return None
    settings = _check_tls(tls) if isinstance(tls, dict) else None
    if not settings or settings.get("ca_server") is None:
        raise SaltInvocationError(
            "etcd:tls: true needs pillar patroni:tls:ca_server, whose CA signs each etcd member's certificate and "
            "which Patroni's own certificates come from; with your own PKI, run your own etcd over https and name "
            "it in patroni:dcs"
        )
    own = (ETCD_TLS_FILES["cert_file"], ETCD_TLS_FILES["key_file"])
    return {
        "ca_file": settings["ca_file"],
        **ETCD_TLS_FILES,
        "clients": [own, (settings["cert_file"], settings["key_file"])],
    }


def _check_backup(backup, tls=None):
    """Pillar ``patroni:backup`` checked: ``{"repository": {"host": minion id, "address": str}, "path",
    "retention_full", "from_replica"}``, or None when it declares no backup. The repository host and every member
    speak to each other through pgBackRest's TLS server, whose certificates the CA of ``patroni:tls:ca_server``
    issues (``tls``: that pillar)."""
    if backup is None:
        return None
    if not isinstance(backup, dict):
        raise SaltInvocationError(
            f"backup: expected a mapping such as {{repository: {{pgbr: 10.0.0.20}}}}, got {type(backup).__name__}"
        )
    _check_known_keys("backup", backup, BACKUP_KEYS)
    repository = backup.get("repository")
    if not isinstance(repository, dict) or len(repository) != 1:
        raise SaltInvocationError(
            "backup:repository: must map the repository host's minion id to its address, one host, e.g. "
            "{pgbr: 10.0.0.20}"
        )
    ((host, address),) = repository.items()
    if not isinstance(host, str) or not MINION_ID_RE.fullmatch(host):
        raise SaltInvocationError(f"backup:repository: {_scrub(repr(host))} is not a minion id")
    address = _check_address(f"backup:repository:{host}", address)
    settings = {**BACKUP_DEFAULTS, **{key: value for key, value in backup.items() if value is not None}}
    path = settings["path"]
    if not isinstance(path, str) or not os.path.isabs(path) or _has_control_character(path):
        raise SaltInvocationError(f"backup:path: {_scrub(repr(path))} must be an absolute path")
    path = os.path.normpath(path)
    for system in SYSTEM_FOLDERS:
        how = _overlap(system, path)
        if how in ("is", "contains") or (how == "is inside" and system not in DATA_PARENTS):
            raise SaltInvocationError(
                f"backup:path: {path} {how} {system}; the repository (which pgBackRest's retention expires files "
                f"in) must be a folder of its own, e.g. {BACKUP_PATH}"
            )
    retention = settings["retention_full"]
    if isinstance(retention, bool) or not isinstance(retention, int) or not 1 <= retention <= BACKUP_RETENTION_MAX:
        raise SaltInvocationError(
            f"backup:retention_full: {_scrub(repr(retention))} must be a whole number of full backups kept, at least 1"
        )
    from_replica = _check_boolean("backup:from_replica", settings["from_replica"])
    schedule = _check_schedule(settings["schedule"])
    stanzas = _check_stanzas(settings["stanzas"])
    replicas = _check_replicas_from_repository(settings["replicas_from_repository"])
    certificates = _check_tls(tls) if isinstance(tls, dict) else None
    if not certificates or certificates.get("ca_server") is None:
        raise SaltInvocationError(
            "backup: needs pillar patroni:tls:ca_server: the repository host and the members reach each other "
            "through pgBackRest's TLS server, with certificates from the cluster's CA (no ssh keys)"
        )
    return {
        "repository": {"host": host, "address": str(address)},
        "path": path,
        "retention_full": retention,
        "from_replica": from_replica,
        "schedule": schedule,
        "stanzas": stanzas,
        "replicas_from_repository": replicas,
    }


def _check_replicas_from_repository(value):
    """``backup:replicas_from_repository``: ``true`` for every cluster, or the scopes whose replicas are made from
    the repository (a restore of the newest backup) before ``clone`` from the leader; ``[]`` for none."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, list) or not all(
        isinstance(scope, str) and SCOPE_FILE_RE.fullmatch(f"{scope}.yml") for scope in value
    ):
        raise SaltInvocationError(
            f"backup:replicas_from_repository: {_scrub(repr(value))} is not true, false or a list of scopes such as "
            "[15-main]"
        )
    return sorted(set(value))


def _check_stanzas(stanzas):
    """``backup:stanzas``: ``{scope: [stanza, earlier stanza, …]}``, the stanza a cluster archives into first, then
    those it may restore from (a restored cluster archives into a fresh stanza, never into the history it came
    from); a scope not named has its own name as its one stanza. Every name is shaped like a scope. No two scopes
    archive into one stanza, nor one into the stanza named after another scope (that scope's first history);
    the stanzas a scope only reads may be another's: a restore into a new scope beside a running cluster reads
    the stanza that cluster archives into."""
    if not isinstance(stanzas, dict):
        raise SaltInvocationError(
            "backup:stanzas: expected a mapping such as {15-main: [15-main-2, 15-main]}, got "
            f"{type(stanzas).__name__}"
        )
    checked = {}
    for scope, names in stanzas.items():
        where = f"backup:stanzas:{_scrub(str(scope))}"
        if not isinstance(scope, str) or not SCOPE_FILE_RE.fullmatch(f"{scope}.yml"):
            raise SaltInvocationError(f"{where}: not a scope such as 15-main")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names:
            raise SaltInvocationError(f"{where}: expected a list of stanzas, the one archived into first")
        for name in names:
            if not isinstance(name, str) or not SCOPE_FILE_RE.fullmatch(f"{name}.yml"):
                raise SaltInvocationError(f"{where}: {_scrub(repr(name))} is not a stanza name shaped like a scope")
            if names.count(name) > 1:
                raise SaltInvocationError(f"{where}: stanza {name} is named twice")
        checked[scope] = list(names)
    _check_archived_into_once(checked)
    return checked


def _check_archived_into_once(stanzas):
    """Refuse a stanza archived into by two scopes, or by one scope while named after another."""
    for scope, names in stanzas.items():
        archived = names[0]
        for other, its_names in stanzas.items():
            if other != scope and archived in (other, its_names[0]):
                raise SaltInvocationError(
                    f"backup:stanzas:{scope}: {archived}, the stanza {scope} archives into, is named by {other} "
                    "too; a stanza archived into belongs to its one cluster"
                )


def _stanzas_of(backup, scope):
    """The stanzas of ``scope`` under a checked ``backup``: the one it archives into first, then earlier ones."""
    return list(backup["stanzas"].get(scope) or [scope])


def _archive_stanza(backup, scope):
    """The stanza ``scope`` archives into and is backed up into, under a checked ``backup``."""
    return _stanzas_of(backup, scope)[0]


def _archive_get(stanza, datadir):
    """The ``restore_command`` that reads a WAL file (or history file) from ``stanza``'s archive into the cluster
    at ``datadir``. pgBackRest resolves ``%p`` against its ``pg1-path`` and refuses one that is not PostgreSQL's
    working directory: given here, since the stanza's section may be another cluster's (a restore into a new
    scope reads the stanza of the cluster beside it)."""
    return f'pgbackrest --stanza={stanza} --pg1-path={datadir} archive-get %f "%p"'


def _check_schedule(schedule):
    """``backup:schedule``: ``{type: OnCalendar}`` of the backups the repository host's systemd timers take
    (``{}``: none, backups only on demand). systemd itself checks the expression when the timer is written."""
    if not isinstance(schedule, dict):
        raise SaltInvocationError(
            f"backup:schedule: expected a mapping such as {{full: 'Sun *-*-* 01:00:00'}}, got {type(schedule).__name__}"
        )
    _check_known_keys("backup:schedule", schedule, BACKUP_TYPES)
    for kind, calendar in schedule.items():
        if not isinstance(calendar, str) or not CALENDAR_RE.fullmatch(calendar.strip()):
            raise SaltInvocationError(
                f"backup:schedule:{kind}: {_scrub(repr(calendar))} is not a systemd calendar expression such as "
                "'Sun *-*-* 01:00:00' or 'daily'"
            )
    return {kind: calendar.strip() for kind, calendar in schedule.items()}


def _backup_settings(version, cluster, backup, tls, program):
    """What a declared ``patroni:backup`` asks of every member's config, ``{}`` without one: the archiving, through
    the DCS so that it follows the leader, into the stanza the cluster archives into (``archive``); and, for the
    clusters of ``replicas_from_repository``, replicas made from the repository first (``methods``: the program's
    restore of the newest backup, in place with ``--delta`` over a replica's own data at a reinit, then ``clone``
    from the leader when it fails) and WAL read from the archive
    (``recovery``), which such a replica needs from its backup's start on when the leader no longer keeps it.

    The archive's WAL is read within ``ARCHIVE_GET_SECONDS``: a standby asks its ``restore_command`` before it
    streams, and pgBackRest waits minutes for a repository host that does not answer (measured: over 120 s, at a
    first rollout whose repository host is configured last), which would hold every replica's start."""
    checked = _check_backup(backup, tls)
    if not checked:
        return {}
    scope = f"{version}-{cluster}"
    stanza = _archive_stanza(checked, scope)
    settings = {
        "archive": {"archive_mode": "on", "archive_command": f"pgbackrest --stanza={stanza} archive-push %p"},
    }
    replicas = checked["replicas_from_repository"]
    if replicas is True or (replicas and scope in replicas):
        settings["methods"] = {
            "create_replica_method": [REPOSITORY_METHOD, "pg_clonecluster"],
            # keep_data: at a reinit the replica's own data stays for pgBackRest's --delta to bring up to date
            REPOSITORY_METHOD: {"command": _program_command(program, f"restore --stanza={stanza}"), "keep_data": True},
        }
        datadir = _data_dir(version, cluster)
        settings["recovery"] = {"restore_command": f"timeout {ARCHIVE_GET_SECONDS} {_archive_get(stanza, datadir)}"}
    return settings


def _etcd_url(address, port, tls=False):
    return f"{'https' if tls else 'http'}://{_host_port(address, port)}"


def _etcd_dcs(etcd):
    """Patroni's DCS section for a checked pillar ``etcd``: etcd's v3 API, or its v2 API when ``v2`` asks for it
    (vip-manager 1.x follows only that one); over https with ``tls`` (the CA and the member's certificate are
    added as for any https etcd, :py:func:`_with_tls`)."""
    hosts = [_host_port(address, ETCD_CLIENT_PORT) for address in etcd["members"].values()]
    section = {"hosts": hosts, **({"protocol": "https"} if etcd["tls"] else {})}
    return {"etcd" if etcd["v2"] else "etcd3": section}


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
    return _parsed_yaml(text, path)


def _parsed_yaml(text, where):
    """Parsed YAML of ``text`` (read from ``where``, which the errors name), through ``_safe_yaml``."""
    try:
        return _safe_yaml(text)
    except yaml.YAMLError as exc:
        # the parser quotes the offending line, which may hold a secret
        raise CommandExecutionError(f"{where} is not valid YAML: {_scrub(str(exc))}") from None
    except _YamlTooLarge as exc:
        raise CommandExecutionError(f"{where} {exc}; no Patroni config is near that, refused unread") from None


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


def _pg_hba(network, rewind_user=None, tls=False, method="md5"):
    """Debian's pg_hba entries, plus pg_rewind's way in from the network when there is a rewind user. With ``tls``,
    the network's rules take TLS connections only (``hostssl``): with no rule for the others, they are refused."""
    network_kind = "hostssl" if tls else "host"
    entries = [
        _hba_line("local", "all", "all", "", "peer"),
        _hba_line("host", "all", "all", "127.0.0.1/32", method),
        _hba_line("host", "all", "all", "::1/128", method),
    ]
    if rewind_user:
        # pg_rewind reads the new leader's files through database postgres; nothing else is opened
        entries.append(_hba_line(network_kind, "postgres", rewind_user, str(network), method))
    entries += [
        _hba_line("local", "replication", "all", "", "peer"),
        _hba_line("host", "replication", "all", "127.0.0.1/32", method),
        _hba_line("host", "replication", "all", "::1/128", method),
    ]
    if tls:
        return entries + [_hba_line(network_kind, "replication", "all", str(network), method)]
    # Debian's template pads this line for a 9-character placeholder; the same spacing keeps a diff against a
    # config made by pg_createconfig_patroni down to the differences that matter.
    return entries + [f"host    replication     all             {network}               md5"]


def _dcs_uses_https(settings):
    """Whether an etcd section reaches etcd over https (``protocol: https``, or https URLs)."""
    hosts = settings.get("hosts") or settings.get("host") or []
    urls = [settings.get("url") or "", *(hosts.split(",") if isinstance(hosts, str) else hosts)]
    return settings.get("protocol") == "https" or any(str(url).strip().startswith("https://") for url in urls)


def _major(version):
    return int(str(version).split(".")[0])


def _with_tls(config, version, tls, restapi_role, network, rewind_user):
    """``config`` (Debian's, as data) encrypted and authenticated as pillar ``tls`` says: the REST API over https
    with Basic authentication of its unsafe endpoints, patronictl trusting the CA, PostgreSQL serving TLS, the
    network's pg_hba rules TLS only (SCRAM from SCRAM_SINCE on), replication and pg_rewind verifying the leader
    against the CA, and an etcd reached over https with the CA and the member's certificate (vip-manager takes
    them from the same section)."""
    if restapi_role:
        config["restapi"]["authentication"] = dict(restapi_role)
    if not tls:
        return config
    ca, cert, key = tls["ca_file"], tls["cert_file"], tls["key_file"]
    for dcs_type in ("etcd", "etcd3"):
        if isinstance(config.get(dcs_type), dict) and _dcs_uses_https(config[dcs_type]):
            # the DCS section's own files win; else the member's, which etcd's client-cert-auth also accepts
            for name, value in (("cacert", ca), ("cert", cert), ("key", key)):
                config[dcs_type].setdefault(name, value)
    config["restapi"].update(certfile=cert, keyfile=key, cafile=ca)
    config["ctl"] = {**(config.get("ctl") or {}), "cacert": ca}
    method = "scram-sha-256" if _major(version) >= SCRAM_SINCE else "md5"
    dynamic = config["bootstrap"]["dcs"]["postgresql"]
    dynamic["pg_hba"] = _pg_hba(network, rewind_user, True, method)
    if method == "scram-sha-256":
        dynamic["parameters"]["password_encryption"] = method
    config["postgresql"]["parameters"].update(ssl="on", ssl_cert_file=cert, ssl_key_file=key, ssl_ca_file=ca)
    for role in ("replication", "rewind"):
        credentials = config["postgresql"]["authentication"].get(role)
        if credentials:
            credentials.setdefault("sslmode", tls["sslmode"])
            credentials.setdefault("sslrootcert", ca)
    return config


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


def _base_config(version, cluster, name, hostip, network, port, data_dir, dcs, authentication, program, tls=None):
    """The configuration Debian's template yields, as data, with this project's methods and rejoin settings, and
    TLS and the REST API's authentication when pillar gives them (``_with_tls``).

    An ex-leader that crashed must rejoin unattended: it rewinds as the rewind role (see
    ``_with_rewind_credentials``), and is re-cloned when rewinding fails.
    """
    api = _host_port(hostip, port + RESTAPI_PORT_OFFSET)
    authentication = dict(authentication)
    restapi_role = authentication.pop("restapi", None)
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
    return _with_tls(config, version, tls, restapi_role, network, rewind_user)


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


# --------------------------------------------------------------------------------------------------
# arguments over pillar, checked, composed and rendered


def _dcs_source(dcs, cluster_pillar, pillar):
    """The DCS section and where it came from: argument, cluster pillar, pillar patroni:dcs, pillar etcd (the etcd
    salt/etcd deploys), dcs.yml."""
    if dcs is not None:
        return dcs, "the dcs argument"
    if cluster_pillar.get("dcs") is not None:
        return cluster_pillar["dcs"], "pillar patroni:clusters:<scope>:dcs"
    pillar_dcs = _pillar_get(pillar, "patroni:dcs")
    if pillar_dcs is not None:
        return pillar_dcs, "pillar patroni:dcs"
    etcd = _check_etcd(_pillar_get(pillar, "etcd"), _pillar_get(pillar, "patroni:tls"))
    if etcd:
        return _etcd_dcs(etcd), "pillar etcd"
    if not os.path.exists(DCS_FILE):
        raise SaltInvocationError(f"dcs: DCS not configured: give dcs=, set pillar patroni:dcs, or write {DCS_FILE}")
    return _read_yaml(DCS_FILE), DCS_FILE


def _cluster_pillar(pillar, scope):
    """Pillar ``patroni:clusters:<scope>``, refusing shapes that would otherwise be silently ignored."""
    for key in ("patroni", "patroni:clusters", f"patroni:clusters:{scope}"):
        value = _pillar_get(pillar, key)
        if value is not None and not isinstance(value, dict):
            raise SaltInvocationError(f"pillar {key} must be a mapping, got {type(value).__name__}")
    return _pillar_get(pillar, f"patroni:clusters:{scope}") or {}


def _arguments_over_pillar(version, cluster, kwargs, pillar):
    """Arguments over the cluster's entry in ``pillar`` ``patroni:clusters:<version>-<cluster>``.

    An argument replaces the pillar value, except for the mappings in MERGED_OPTIONS, which it is merged into.
    """
    unknown = sorted(key for key in kwargs if not key.startswith("__") and key not in OPTIONS)
    if unknown:
        raise SaltInvocationError(f"unknown argument(s): {', '.join(unknown)}; accepted: {', '.join(OPTIONS)}, force")
    cluster_pillar = _cluster_pillar(pillar, f"{version}-{cluster}")
    settings = {}
    for key in OPTIONS:
        given, declared = kwargs.get(key), cluster_pillar.get(key)
        if key in MERGED_OPTIONS and isinstance(given, dict) and isinstance(declared, dict):
            settings[key] = _deep_merge(declared, given)
        else:
            settings[key] = given if given is not None else declared
    settings["dcs"], settings["dcs_source"] = _dcs_source(kwargs.get("dcs"), cluster_pillar, pillar)
    # one certificate per host serves every cluster on it: TLS is pillar patroni:tls, for all of them
    settings["tls"] = kwargs.get("tls") if kwargs.get("tls") is not None else _pillar_get(pillar, "patroni:tls")
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


def _validated(version, cluster, kwargs, pillar):
    """The arguments over ``pillar``, each checked; no host fact is read but the DCS fragment file."""
    version, cluster = _check_version(version), _check_cluster(cluster)
    settings = _arguments_over_pillar(version, cluster, kwargs, pillar)
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
        "tls": _check_tls(settings["tls"]),
        "backup": _backup_settings(version, cluster, _pillar_get(pillar, "patroni:backup"), settings["tls"], program),
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
        checked["tls"],
    )
    config["bootstrap"]["dcs"].update(TIMING_PROFILES[checked["timing"]])
    if checked["backup"]:
        dcs_postgresql = config["bootstrap"]["dcs"].setdefault("postgresql", {})
        dcs_postgresql.setdefault("parameters", {}).update(checked["backup"]["archive"])
        if "recovery" in checked["backup"]:
            config["postgresql"].setdefault("recovery_conf", {}).update(checked["backup"]["recovery"])
        config["postgresql"].update(checked["backup"].get("methods", {}))
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


def _render(version, cluster, kwargs, pillar):
    """Everything createconfig would write, computed without writing: the one rendering implementation."""
    checked = _validated(version, cluster, kwargs, pillar)
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
    restapi = config.get("restapi") or {}
    restapi_host = str(restapi.get("listen", "")).rpartition(":")[0].strip("[]")
    if not restapi.get("authentication"):
        where = "every address" if restapi_host in ("", "*", "0.0.0.0", "::") else restapi.get("listen")
        risks.append(
            f"the REST API ({where}) has no authentication: anyone who reaches it can switch over, restart or "
            "reinitialise members and change the cluster's settings; set pillar "
            f"patroni:clusters:{config.get('scope')}:authentication:restapi and patroni:tls"
        )
    elif not restapi.get("certfile"):
        risks.append("the REST API's password crosses the network in clear (no certfile); set pillar patroni:tls")
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
