"""
Debian's ``pg_createconfig_patroni`` as Salt functions: ``render_config`` and ``createconfig`` (every file
planned first, written only when every plan holds), and the pillar the formula renders from (``check_pillar``,
``formula_clusters``, ``declared_clusters``, ``dcs_reachable``).

Joins the execution module ``patroni_debian`` (as Salt's ``deb_postgres`` joins ``postgres``).

:depends: postgresql-common, iproute2, PyYAML
"""

import contextlib
import copy
import difflib
import inspect
import ipaddress
import logging
import json
import os
import re
import socket
import stat
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

from patroni_debian import (
    _check_boolean,
    CLUSTER_MAX,
    CONFIG_OWNER,
    _Target,
    _account,
    _check_seconds,
    _data_dir,
    _group_id,
    _host_errors,
    _host_lock,
    _is_secret_key,
    _masked,
    _pillar_get,
    _pillar_secrets,
    _poll,
    _read_text,
    _run,
    _scrub,
    _split_scope,
    _stage,
    _which,
)
from patroni_debian_render import (
    DCS_TYPES,
    DEFAULT_PORT,
    OPTIONS,
    PATRONI_DIR,
    VIP_OWNER,
    _addresses,
    _check_known_keys,
    _check_backup,
    _check_etcd,
    _check_tls,
    _composed,
    _dcs_answers,
    _debian_defaults,
    _default_source,
    _diff,
    _dump_yaml,
    _env_file_text,
    _existing_document,
    _hostname,
    _listen_port,
    _read_env_file,
    _read_own_yaml,
    _render,
    _restapi_port,
    _validated,
    _vip_interface,
)

log = logging.getLogger(__name__)

__virtualname__ = "patroni_debian"


def __virtual__():
    return __virtualname__


# --------------------------------------------------------------------------------------------------
# writing: plan every file first, write only when every plan holds


HEADER_MARK = ", written by Salt's patroni_debian.createconfig."

CONFIG_MODE = 0o660  # the config holds passwords: readable by postgres (owner and group) only


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


def _plans(rendered, force, declared):
    """Each file of ``rendered`` with what writing it would change (see ``_plan``). ``declared``: the formula's
    rules, checked on this very render, so that a state run renders a cluster once (see ``createconfig``)."""
    if not declared:
        return [(target, _plan(target, force)) for target in _targets(rendered)]
    if rendered["defaults"]:
        raise SaltInvocationError(
            f"pillar {', '.join(rendered['defaults'])} is required: the states never use Debian's well-known default"
        )
    plans = [(target, _plan(target, force=True)) for target in _targets(rendered)]
    foreign = [(target.path, changes["diff"]) for target, changes in plans if "diff" in changes]
    if foreign and not force and not _written_here(rendered["config_file"]):
        differing = ", ".join(f"{path} ({', '.join(diff) or 'its content'})" for path, diff in foreign)
        raise CommandExecutionError(
            f"{differing} already exists with other content, not written by this module; "
            "replace it with force=True (the state's replace: True)"
        )
    return plans


def _make_patroni_dir():
    """/etc/patroni as the package makes it, 0755 whatever the umask: Patroni (postgres) must enter it."""
    if not os.path.isdir(PATRONI_DIR):
        os.mkdir(PATRONI_DIR, 0o755)
        os.chmod(PATRONI_DIR, 0o755)


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


def _minion_pillar():
    """The pillar Salt gave this file, for its public functions to pass down (None when a sibling imported it:
    Salt gives the dunders only to the files it loads)."""
    return globals().get("__pillar__")


def _rewrites(changes):
    """Whether a plan writes the file anew (rather than only repairing its owner and mode)."""
    return "created" in changes or "diff" in changes


def _named_options(scope):
    """The named options of createconfig/render_config from their ``locals()``, as ``_render`` takes them."""
    return {key: scope[key] for key in OPTIONS}


def _scrubbed_all(texts, pillar):
    secrets = _pillar_secrets(pillar)
    return [_scrub(text, secrets) for text in texts]


def _result(rendered, plans, pillar):
    return {
        "config_file": rendered["config_file"],
        "vip_file": rendered["vip_file"],
        "port": rendered["port"],
        "restapi_port": rendered["restapi_port"],
        "changes": {target.path: changes for target, changes in plans if changes},
        "warnings": _scrubbed_all(rendered["warnings"], pillar),
    }


# --------------------------------------------------------------------------------------------------
# Debian's generator as public functions


@_host_errors
def render_config(version, cluster, *, force=False, **options):
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
    declared = _check_boolean("declared", options.pop("declared", False))
    pillar = _minion_pillar()
    rendered = _render(version, cluster, options, pillar)
    plans = _plans(rendered, _check_boolean("force", force), declared)
    result = _result(rendered, plans, pillar)
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
    tls=None,
    declared=False,
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
        replication password, Debian's default credentials are kept and a warning says so. A ``restapi`` role
        (``username``, ``password``) becomes the REST API's Basic authentication (``restapi.authentication``).

    timing
        ``debian`` (the default: ttl 30, loop_wait 10, retry_timeout 10; a failover within 40 s) or ``fast``
        (ttl 20, loop_wait 5, retry_timeout 5; within 25 s): ``bootstrap.dcs``'s timing keys. ``dynamic`` may
        set them one by one; the result must keep ``loop_wait + 2 × retry_timeout <= ttl``.

    dynamic
        Deep-merged into ``bootstrap.dcs`` (ttl, loop_wait, postgresql.parameters, …).

    config
        Deep-merged over the whole generated configuration: any Patroni key.

    tls
        TLS for the REST API, PostgreSQL, replication and pg_rewind, and Basic authentication of the REST API's
        unsafe endpoints when ``authentication`` has a ``restapi`` role: ``{"ca_server": "<minion id>"}``
        (certificates the formula has Salt issue, in ``/etc/patroni/tls``) or ``{"ca_file": …, "cert_file": …,
        "key_file": …}`` (your own PKI); optional ``sslmode`` (``verify-full``, the default, or ``verify-ca``).
        Default: pillar ``patroni:tls`` (for every cluster of the host). See the README's section Security.

    declared
        Plumbing, the formula's rules: pillar must give every secret (Debian's well-known defaults are refused),
        and a config this module wrote is always brought back to the declared content, while another file at
        that path is replaced only with ``force=True``. Default ``False``.

    Every argument but ``force``, ``declared`` and ``tls`` defaults to the same key in pillar
    ``patroni:clusters:<version>-<cluster>``.

    Returns the files, the ports, the changes (secrets masked), warnings, the files ``written`` and those that
    ``still_differ`` from the plan when read back (another writer in between).

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.createconfig 15 main
        salt pg1 patroni_debian.createconfig 15 main port=5433 network=10.0.0.0/24 force=True
        salt pg1 patroni_debian.createconfig 15 main vip=10.0.0.100 dcs='{etcd: {host: 10.0.0.5:2379}}'
    """
    force, declared = _check_boolean("force", force), _check_boolean("declared", declared)
    options, pillar = dict(kwargs, **_named_options(locals())), _minion_pillar()
    with _host_lock(f"createconfig {version} {cluster}"):
        rendered = _render(version, cluster, options, pillar)
        plans = _plans(rendered, force, declared)
        written = _write_all(plans)
        # read back, not rendered again: each file as planned (content, owner, mode) or named here
        still_differ = [target.path for target, _ in plans if _plan(target, force=True)]
    result = _result(rendered, plans, pillar)
    result["written"], result["still_differ"] = written, still_differ
    return result


# the same named options as createconfig, for sys.argspec and the docs (its body reads them from ``options``)
render_config.__signature__ = inspect.signature(createconfig)


# --------------------------------------------------------------------------------------------------
# the pillar the formula renders from


# tls is pillar patroni:tls alone: one certificate per host serves all its clusters
PILLAR_CLUSTER_KEYS = tuple(key for key in OPTIONS if key != "tls") + ("purge", "replace_existing")

PILLAR_KEYS = ("clusters", "dcs", "role", "lookup", "tls", "backup")

LOOKUP_KEYS = ("packages", "dcs_packages", "vip_packages", "health_timeout")

ROLES = ("bootstrap", "replica", "backup")  # backup: the repository host of patroni:backup

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
    pillar = _minion_pillar()
    checked = _checked_pillar(_pillar_get(pillar, "patroni"), etcd=_pillar_get(pillar, "etcd"))
    addresses = _addresses() if _which("ip") else []
    for scope, cluster in checked.items():
        try:
            _check_on_this_host(cluster, addresses)
        except SaltInvocationError as exc:
            raise SaltInvocationError(f"pillar patroni:clusters:{scope}: {exc}") from None
    keys = ("version", "cluster", "port", "vip")
    return {scope: {key: cluster[key] for key in keys} for scope, cluster in checked.items()}


def _checked_pillar(patroni, empty=False, etcd=None):
    """Pillar ``patroni`` checked without the host (but for its DCS fragment file): ``{scope: facts}``. With
    ``empty``, a pillar that declares no cluster at all (no ``clusters``, or ``{}``) is valid. ``etcd``: pillar
    ``etcd``, checked too, the clusters' DCS when ``patroni:dcs`` names none."""
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
    try:
        _check_tls(patroni.get("tls"))
    except SaltInvocationError as exc:
        raise SaltInvocationError(f"pillar patroni:{exc}") from None
    try:
        _check_etcd(etcd, patroni.get("tls"))
    except SaltInvocationError as exc:
        raise SaltInvocationError(f"pillar {exc}") from None
    try:
        _check_backup(patroni.get("backup"), patroni.get("tls"))
    except SaltInvocationError as exc:
        raise SaltInvocationError(f"pillar patroni:{exc}") from None
    clusters = patroni.get("clusters")
    if clusters is None and empty:
        clusters = {}
    if not isinstance(clusters, dict) or not (clusters or empty):
        raise SaltInvocationError("pillar patroni:clusters must map <version>-<cluster> (15-main) to its settings")
    checked, claims = {}, {}
    for scope, settings in clusters.items():
        where = f"pillar patroni:clusters:{scope}" if _is_scope(scope) else "pillar patroni:clusters"
        try:
            cluster = _checked_pillar_cluster(scope, settings, {"patroni": patroni, "etcd": etcd})
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


def _checked_pillar_cluster(scope, settings, pillar):
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
    flags = {
        flag: False if settings.get(flag) is None else _check_boolean(flag, settings[flag])
        for flag in ("purge", "replace_existing")
    }
    values = _validated(version, cluster, {}, pillar)
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
        **flags,
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
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    The clusters the formula renders states for on this minion, from pillar ``patroni`` once it validates
    (without the host: see :py:func:`check_pillar`), else none. Only names that passed the checks ever reach
    an sls file's text, so a pillar key cannot inject YAML or a state; the formula's state
    ``Pillar patroni is valid`` says what is wrong.

    only
        The orchestration's narrowing: a ``<version>-<cluster>`` name, several joined by commas, or a list.

    Returns ``{"valid": bool, "clusters": [{scope, version, cluster, vip, dcs_type, replace_existing, purge}],
    "lookup": {...}, "tls": {...}, "backup": bool}`` (``backup``: pillar ``patroni:backup`` declares backups).

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.formula_clusters
    """
    # every sls file of the formula imports map.jinja, which asks again: the pillar is checked once per job
    jid = (globals().get("__opts__") or {}).get("jid")
    return _per_job(globals().get("__context__"), jid, "formula_clusters", repr(only), _formula_clusters, only)


def _formula_clusters(only):
    pillar = _minion_pillar()
    try:
        checked = _checked_pillar(_pillar_get(pillar, "patroni"), etcd=_pillar_get(pillar, "etcd"))
        named = _rollout_scopes(only)
    except (CommandExecutionError, SaltInvocationError) as exc:
        log.debug("patroni_debian: the formula renders no cluster: %s", _scrub(str(exc), _pillar_secrets(pillar)))
        return {"valid": False, "clusters": [], "lookup": {}, "tls": {}, "backup": False}
    keys = ("version", "cluster", "vip", "dcs_type", "replace_existing", "purge")
    clusters = [
        dict({key: cluster[key] for key in keys}, scope=scope)
        for scope, cluster in sorted(checked.items())
        if named is None or scope in named
    ]
    return {
        "valid": True,
        "clusters": clusters,
        "lookup": _pillar_get(pillar, "patroni:lookup") or {},
        # the host's certificate names every cluster's VIP, whichever clusters a rollout narrows to
        "tls": _tls_certificate(
            _check_tls(_pillar_get(pillar, "patroni:tls")),
            checked.values(),
            addresses_as_names=_pillar_get(pillar, "patroni:backup") is not None,
        ),
        "backup": _pillar_get(pillar, "patroni:backup") is not None,
    }


def _tls_certificate(tls, clusters, addresses_as_names=False):
    """What salt/patroni/tls.sls manages for pillar ``tls`` (checked), or ``{}`` without it: the settings, and the
    member certificate's names (host name, FQDN, the host's addresses and every declared VIP, in a stable order:
    a VIP that moves to this host or away must not change the certificate).

    Also ``localhost`` and the loopback addresses: Patroni reads a replica's own timeline over a replication
    connection to ``localhost`` with the replication role's settings, which verify-full checks like any other.
    With ``addresses_as_names`` (a declared ``patroni:backup``), the host's addresses as DNS names too: bookworm's
    pgBackRest 2.45 checks a server's address only among those (pgbackrest#1977, read from 2.46 on)."""
    if not tls:
        return {}
    hostname, fqdn = _hostname(), socket.getfqdn()
    vips = {ipaddress.ip_address(cluster["vip"]) for cluster in clusters if cluster["vip"]}
    own = {
        interface.ip
        for _, interface in (_addresses() if _which("ip") else [])
        if not (interface.ip.is_loopback or interface.ip.is_link_local)
    }
    loopback = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    names = [f"DNS:{name}" for name in dict.fromkeys((hostname, fqdn, "localhost"))]
    names += [f"IP:{address}" for address in sorted(own | vips | loopback, key=lambda a: (a.version, a))]
    if addresses_as_names:
        names += [f"DNS:{address}" for address in sorted(own, key=lambda a: (a.version, a))]
    return dict(tls, CN=fqdn, subjectAltName=", ".join(names))


def _per_job(context, jid, name, key, compute, *args):
    """``compute(*args)`` once per Salt job and ``key``, kept in the job's ``context`` (``__context__``), handed
    out as a copy (the formula's Jinja updates what it gets). Outside a job (no jid) it is computed every time."""
    if context is None or not jid:
        return compute(*args)
    known = context.setdefault(f"patroni_debian.{name}", {})
    if (jid, key) not in known:
        known[(jid, key)] = compute(*args)
    return copy.deepcopy(known[(jid, key)])


@_host_errors
def declared_clusters():
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    The clusters this minion's pillar positively declares, as a sorted list of ``<version>-<cluster>`` names: what
    a member may leave (``leave_undeclared``) is only what a pillar that can be trusted no longer names. Raises,
    naming the problem, when the pillar failed to render, does not validate (a mistyped ``clustres``, a list,
    a name with a trailing space), or lacks ``patroni`` while holding a key spelled close to it. A pillar
    without any ``patroni`` key, or with ``patroni:clusters: {}``, declares none.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.declared_clusters
    """
    pillar = _minion_pillar()
    if _pillar_get(pillar, "_errors"):
        # Salt's render errors quote the pillar file's lines, which may hold a secret: not passed on
        raise SaltInvocationError(
            "this minion's pillar failed to render (pillar.items on the minion says why); it declares nothing for sure"
        )
    patroni = _pillar_get(pillar, "patroni")
    if patroni is None:
        keys = list(pillar.value() if hasattr(pillar, "value") else pillar or {})
        near = difflib.get_close_matches("patroni", [str(key).strip().lower() for key in keys], n=1, cutoff=0.75)
        if near:
            raise SaltInvocationError(
                "this minion's pillar has no key patroni but one spelled close to it; correct it, or remove it to "
                "declare no cluster"
            )
        return []
    return sorted(_checked_pillar(patroni, empty=True, etcd=_pillar_get(pillar, "etcd")))


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
def dcs_reachable(version, cluster, wait=0):
    """
    Whether the DCS of cluster ``<version>-<cluster>`` answers: one of its endpoints, from the DCS section its
    config is made from (as :py:func:`createconfig` finds it: pillar, else ``/etc/patroni/dcs.yml``), accepts a
    TCP connection within 2 s. The formula checks it before changing anything, so that a DCS outage fails the
    run at once, naming the DCS, rather than after a package, a file or a unit changed. Needs no Patroni or
    DCS client installed. Returns ``{dcs, endpoint, waited}`` (``endpoint`` None for kubernetes, raft and
    exhibitor, which find their peers themselves); raises ``CommandExecutionError`` naming every endpoint tried.

    wait
        Seconds to keep asking while the DCS is the etcd of pillar ``etcd`` and none of its endpoints answers:
        on a minion that runs none of its members, the rollout starts them on their own hosts beside this
        run. Any other DCS is asked once. Default 0.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.dcs_reachable 15 main
        salt pg1 patroni_debian.dcs_reachable 15 main wait=120
    """
    checked = _validated(version, cluster, {}, _minion_pillar())
    wait = _check_seconds("wait", wait) if wait != 0 else 0
    wait = wait if checked["settings"]["dcs_source"] == "pillar etcd" else 0
    started = time.monotonic()
    last = {}

    def answered():
        try:
            return _dcs_answers(checked["dcs"], checked["settings"]["dcs_source"])
        except CommandExecutionError as exc:
            last["error"] = exc
            return None

    found = _poll(answered, started + wait, interval=1)
    if found is None:
        waited = f" (asked for {wait:g} s)" if wait else ""
        raise CommandExecutionError(f"{checked['version']}-{checked['cluster']}: {last['error']}{waited}")
    dcs_type, endpoint = found
    return {"dcs": dcs_type, "endpoint": endpoint, "waited": round(time.monotonic() - started, 1)}
