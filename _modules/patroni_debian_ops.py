"""
Operations on a Patroni cluster of the Debian layout: its running members through the REST API of the member on
this host, and the member's removal.

Joins the execution module ``patroni_debian`` (as Salt's ``deb_postgres`` joins ``postgres``): these functions
appear as ``patroni_debian.status``, ``patroni_debian.wait_healthy`` and so on. The program file Patroni runs,
``patroni_debian.py``, never needs this one; this one uses its pure helpers.

Works with Patroni 3.0.2 (bookworm) and 4.0.7 (trixie): only endpoints both have, and the leader's role read as
``master`` or ``primary`` alike.

:depends: requests (shipped with Salt)
"""

import copy
import hashlib
import ipaddress
import json
import logging
import math
import os
import re
import time
import warnings

import patroni_debian as debian  # the siblings, for their pure helpers (no dunders there)
import patroni_debian_config as pillar_rules  # its checks of pillar and orchestration arguments
import patroni_debian_render as render

try:
    import requests
except ImportError:  # pragma: no cover - Salt depends on requests
    requests = None

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "patroni_debian"

LEADER_ROLES = ("master", "primary")  # /patroni's role of the leader: Patroni 3 says master, 4 says primary
LEADING_ROLES = ("leader", "standby_leader")  # /cluster's role of the member that holds the leader key
TIMEOUT = 5  # seconds for one REST call; a member that takes longer is not answering
PATCH_TRIES = 5  # every member's state may patch at once; Patroni answers 409 to all but one
# a PATCH /config body that changes nothing (an empty section merged), yet has Patroni read the DCS and wake its loop
NO_CHANGE = {"postgresql": {}}
# the lines of a patroni@ journal that say why it stopped: our program's refusals, Patroni's and PostgreSQL's errors
ERROR_LINE_RE = re.compile(r"refused|FATAL|ERROR|Exception:|failed")


def __virtual__():
    if requests is None:
        return (False, "patroni_debian's REST operations need the requests library")
    return __virtualname__


# --------------------------------------------------------------------------------------------------
# the member's REST API, set up from its own config file


class _Api:
    """One member's Patroni REST API, addressed and authenticated as its ``restapi``/``ctl`` sections say."""

    def __init__(self, scope, config):
        restapi, ctl = config.get("restapi") or {}, config.get("ctl") or {}
        auth = restapi.get("authentication") or {}
        self.scope = scope
        self.name = str(config.get("name", "?"))
        self.base = ("https" if restapi.get("certfile") else "http") + "://" + str(restapi.get("connect_address"))
        self.auth = (str(auth["username"]), str(auth.get("password", ""))) if auth.get("username") else None
        self.verify = ctl.get("cacert") or restapi.get("cafile") or not ctl.get("insecure", False)

    def call(self, method, path, body=None, expect=(200,), base=None, timeout=TIMEOUT):
        """The decoded answer of one call; an answer not in ``expect`` is an error with Patroni's message."""
        url = (base or self.base) + path
        try:
            response = requests.request(method, url, json=body, auth=self.auth, verify=self.verify, timeout=timeout)
        except requests.RequestException as exc:
            raise CommandExecutionError(
                f"{self.scope} on {self.name}: {method} {url}: Patroni does not answer ({exc})"
            ) from None
        if response.status_code not in expect:
            message = response.text.strip()[:500]
            raise CommandExecutionError(
                f"{self.scope} on {self.name}: {method} {url}: HTTP {response.status_code}: {message}"
            )
        try:
            return response.json()
        except ValueError:
            return response.text.strip()


def _scope(version, cluster):
    return f"{debian._check_version(version)}-{debian._check_cluster(cluster)}"


def _config(scope):
    path = f"{render.PATRONI_DIR}/{scope}.yml"
    config = render._read_yaml(path)
    if not isinstance(config, dict):
        raise CommandExecutionError(
            f"{path} does not exist or is not a Patroni config; run patroni_debian.createconfig"
        )
    return config


def _api(version, cluster):
    scope = _scope(version, cluster)
    return _Api(scope, _config(scope))


def _acting_api(version, cluster):
    """The member's REST API once its DCS answers: an operation that changes something fails at once, naming
    the DCS, rather than half-way (Patroni itself would retry it for ``retry_timeout`` and then refuse)."""
    scope = _scope(version, cluster)
    config = _config(scope)
    dcs = {key: config[key] for key in render.DCS_TYPES if key in config}
    try:
        render._dcs_answers(dcs, f"{render.PATRONI_DIR}/{scope}.yml")
    except (CommandExecutionError, SaltInvocationError) as exc:
        raise CommandExecutionError(f"{scope}: {exc}") from None
    return _Api(scope, config)


# --------------------------------------------------------------------------------------------------
# pure readings of Patroni's answers (unit-tested on answers captured from real clusters)


def _normalised(status):
    """``/patroni`` with the leader's role spelled ``primary`` whatever the Patroni version."""
    status = dict(status)
    if status.get("role") in LEADER_ROLES:
        status["role"] = "primary"
    return status


def _leads(member):
    """Whether a ``/cluster`` member holds the leader key."""
    return member.get("role") in LEADING_ROLES


def _leader_of(cluster):
    """The member that holds the leader key in a ``/cluster`` answer, or None."""
    return next((member for member in cluster.get("members", []) if _leads(member)), None)


def _rest_base(member):
    """The REST base URL of a ``/cluster`` member (its ``api_url`` without the ``/patroni`` path)."""
    return member["api_url"].rsplit("/", 1)[0]


def _health(name, own, leader_status):
    """Why member ``name`` is not healthy yet, or None when it is.

    Healthy: it leads (role primary, running), or it is a running replica on the leader's timeline whose
    name the leader lists among its streaming WAL senders. "running" alone is not enough: a replica reports
    it before it streams. Patroni 3.0.4 and later also say ``replication_state`` (4.0.7: ``streaming``, or
    ``in archive recovery`` while it restores WAL), read when present; the leader's view decides either way.
    """
    if own.get("state") != "running":
        return f"PostgreSQL is {own.get('state', 'unknown')}"
    if own.get("role") == "primary":
        return None
    if own.get("role") != "replica":
        return f"role is {own.get('role')}"
    if leader_status is None:
        return "no member holds the leader key"
    if own.get("timeline") != leader_status.get("timeline"):
        return f"on timeline {own.get('timeline')}, the leader on {leader_status.get('timeline')}"
    if own.get("replication_state") not in (None, "streaming"):
        return f"replication is {own['replication_state']}, not streaming"
    streaming = {
        row.get("application_name") for row in leader_status.get("replication") or [] if row.get("state") == "streaming"
    }
    if name not in streaming:
        return "not streaming from the leader yet"
    return None


def _wanted_changes(wanted, live, prefix=""):
    """The keys of ``wanted`` whose live value differs: ``{"a.b": {"old", "new"}}``.

    Only what is wanted counts: a None there means "no opinion" (Debian's template leaves ``parameters``
    empty), and keys Patroni adds on its own are not drift.
    """
    changes = {}
    for key, value in wanted.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        current = live.get(key) if isinstance(live, dict) else None
        if value is None:
            continue
        if isinstance(value, dict):
            changes.update(_wanted_changes(value, current if isinstance(current, dict) else {}, path))
        elif key == "pg_hba" and isinstance(value, list) and isinstance(current, list):
            if [_hba_meaning(line) for line in value] != [_hba_meaning(line) for line in current]:
                changes[path] = {"old": current, "new": value}
        elif current != value and str(current) != str(value):  # Patroni keeps some numbers as strings
            changes[path] = {"old": current, "new": value}
    return changes


def _hba_meaning(line):
    """A pg_hba line as PostgreSQL reads it: words, an address range as its network.

    Debian writes each member's own address with its prefix (``10.0.0.12/24``), which PostgreSQL masks to the
    network; without this, every member would find the leader's lines "different" and patch them back.
    """
    words = []
    for word in str(line).split():
        try:
            words.append(str(ipaddress.ip_interface(word).network) if "/" in word else word)
        except ValueError:
            words.append(word)
    return words


def _patch_body(changes):
    """The nested document PATCH /config takes, from ``{"a.b": {"new": v}}``."""
    body = {}
    for path, change in changes.items():
        node = body
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(change["new"])
    return body


# --------------------------------------------------------------------------------------------------
# reading the cluster: the host's clusters, the members, a member's health


@debian._host_errors
def clusters():
    """
    The pg-common clusters of this host, from ``pg_lsclusters``, keyed ``<version>/<cluster>``.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.clusters
    """
    return {
        f"{row['version']}/{row['cluster']}": {"port": row["port"], "status": row["status"], "datadir": row["datadir"]}
        for row in debian._pg_cluster_table()
    }


def _own_status(api):
    """This member's view of itself (``GET /patroni``), the leader's role spelled ``primary``."""
    return _normalised(api.call("GET", "/patroni", expect=(200, 503)))


@debian._host_errors
def members(version, cluster):
    """
    The cluster's members as the DCS knows them (``GET /cluster``): name, role, state, host, port, timeline, lag.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.members 15 main
    """
    return _api(version, cluster).call("GET", "/cluster").get("members", [])


@debian._host_errors
def serves_its_config(version, cluster):
    """
    Plumbing: the formula and the orchestrations call it (the ``running`` state); people rarely need to.

    Whether the member's Patroni serves its REST API the way its config file says (https with a ``certfile``,
    else http). False when the file changed scheme (TLS turned on or off) and Patroni has not read it yet: the
    configured scheme gets no answer while the other one does. Asked before a member's health, which the
    project's client reads as the file says. Only GET ``/liveness``, without credentials.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.serves_its_config 15 main
    """
    api = _api(version, cluster)
    try:
        requests.get(api.base + "/liveness", verify=api.verify, timeout=TIMEOUT)
        return True
    except requests.RequestException:
        pass
    scheme, _, address = api.base.partition("://")
    other = ("http" if scheme == "https" else "https") + "://" + address
    try:
        # which scheme answers, not what it says: nothing is read from this answer, so it need not be verified
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            requests.get(other + "/liveness", verify=False, timeout=TIMEOUT)
    except requests.RequestException:
        return True  # no answer either way: not a matter of scheme, the health wait says what is wrong
    return False


@debian._host_errors
def wait_healthy(version, cluster, timeout=120, interval=0.2):
    """
    Wait until this member is healthy: the leader, or a replica streaming from the leader on its timeline.

    Polls inside (sub-second steps) and returns ``{member, role, leader, timeline, seconds}``; after
    ``timeout`` seconds raises ``CommandExecutionError`` saying what it saw last.

    version
        PostgreSQL major version, e.g. ``15``.

    cluster
        pg-common cluster name, e.g. ``main``.

    timeout
        Seconds to wait. Default 120.

    CLI Example:

    .. code-block:: bash

        salt pg2 patroni_debian.wait_healthy 15 main timeout=60
    """
    return _poll_member("not healthy", _api(version, cluster), "health", _health_once, timeout, interval)


def _health_once(api):
    """``(what was seen, result or None)`` after one look at this member and its leader."""
    try:
        own = _own_status(api)
        leader = _leader_of(api.call("GET", "/cluster"))
        leader_status = None
        if leader and leader.get("api_url"):
            base = _rest_base(leader)
            leader_status = _normalised(api.call("GET", "/patroni", expect=(200, 503), base=base))
    except CommandExecutionError as exc:
        return str(exc), None
    why = _health(api.name, own, leader_status)
    if why is not None:
        if leader_status is not None and own.get("role") != "primary":
            _wake_leader(api, leader)
        return why, None
    return why, {
        "member": api.name,
        "role": own["role"],
        "leader": leader["name"] if leader else api.name,
        "timeline": own.get("timeline"),
    }


def _wake_leader(api, leader, every=1.0):
    """Have the leader's Patroni run its HA loop now rather than at its next ``loop_wait``.

    A new member streams through a replication slot that the leader creates in its loop; until then the
    member's first attempt fails and PostgreSQL waits ``wal_retrieve_retry_interval`` (5 s) to retry, so a
    replica would wait up to ``loop_wait`` + 5 s after its clone. Patroni wakes its loop after every
    ``PATCH /config``; this one (``NO_CHANGE``) changes nothing in the DCS.
    At most one call a second; a failure only costs the seconds it was to save.
    """
    now = time.monotonic()
    if now - getattr(api, "woken", -every) < every:
        return
    api.woken = now
    base = _rest_base(leader)
    try:
        api.call("PATCH", "/config", NO_CHANGE, expect=(200, 409, 503), base=base)
    except CommandExecutionError as exc:
        log.debug("patroni_debian: could not wake the leader of %s: %s", api.scope, exc)


# --------------------------------------------------------------------------------------------------
# the live DCS settings: read, compared with the config, patched


@debian._host_errors
def dynamic_config(version, cluster):
    """
    The cluster's live settings in the DCS (``GET /config``): ttl, loop_wait, postgresql.parameters, pg_hba, ….

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.dynamic_config 15 main
    """
    return debian._masked(_live_config(_api(version, cluster)))


@debian._host_errors
def dynamic_config_changes(version, cluster, fresh=False):
    """
    What differs between the live DCS settings and ``bootstrap.dcs`` of this member's config file (the
    settings pillar declares, written by ``createconfig``): ``{"a.b": {"old", "new"}}``, secrets masked.
    Only the keys the config file sets count.

    fresh
        Read the DCS itself rather than Patroni's copy of it (``GET /config`` answers from the copy its last
        loop read, stale for up to a loop after a change; a ``PATCH`` that changes nothing reads the DCS).

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.dynamic_config_changes 15 main
    """
    return debian._masked(_changes(_api(version, cluster), fresh=fresh is True))


def _changes(api, fresh=False):
    wanted = (_config(api.scope).get("bootstrap") or {}).get("dcs") or {}
    live = _config_from_dcs(api) if fresh else None
    live = live if isinstance(live, dict) else _live_config(api)
    return _wanted_changes(_with_leftover_archiving_off(wanted, live), live)


FORMULA_ARCHIVING_RE = re.compile(r"pgbackrest --stanza=\S+ archive-push %p")  # render._backup_settings's


def _with_leftover_archiving_off(wanted, live):
    """``wanted``, and ``archive_mode: off`` when the cluster still archives through the formula's pgBackRest
    that its config no longer asks for (pillar ``patroni:backup`` dropped): WAL must not go on into a repository
    nobody declares, nor pile up in ``pg_wal`` once that repository is gone. ``archive_command`` is left as it is,
    so archiving works until the restart that ``archive_mode`` takes (``orch.patroni_restart``)."""
    parameters = ((live.get("postgresql") or {}).get("parameters") or {}) if isinstance(live, dict) else {}
    asked = ((wanted.get("postgresql") or {}).get("parameters") or {}).get("archive_command")
    if asked is not None or not FORMULA_ARCHIVING_RE.fullmatch(str(parameters.get("archive_command") or "")):
        return wanted
    return render._deep_merge(wanted, {"postgresql": {"parameters": {"archive_mode": "off"}}})


def _config_from_dcs(api):
    """The settings as the DCS holds them now: what a ``PATCH /config`` that changes nothing answers with (Patroni
    reads the DCS for it, where ``GET /config`` answers from its last loop's copy); not a mapping when the DCS
    holds none yet."""
    return api.call("PATCH", "/config", NO_CHANGE, expect=(200, 503))


def _config_once(api):
    """``GET /config``, or when it answers 502 (right after a bootstrap), the settings as the DCS holds them;
    not a mapping when the DCS holds none yet."""
    live = api.call("GET", "/config", expect=(200, 502))
    if not isinstance(live, dict):
        live = _config_from_dcs(api)
    return live


def _live_config(api, seconds=15):
    """``GET /config``. Right after a bootstrap Patroni answers 502 until its next loop has read the DCS; then
    a ``PATCH /config`` that changes nothing (as :py:func:`_wake_leader` sends) reads the DCS at once and
    answers with the settings. A Patroni just started has its REST API up within a moment: waited for."""
    error = None

    def probe():
        nonlocal error
        try:
            live, error = _config_once(api), None
        except CommandExecutionError as exc:
            # a Patroni started a moment ago opens its REST API within a second
            if not __salt__["service.status"](f"patroni@{api.scope}"):
                raise
            live, error = None, exc
        return live if isinstance(live, dict) else None

    live = debian._poll(probe, time.monotonic() + seconds, interval=0.3)
    if live is None:
        raise error or CommandExecutionError(
            f"{api.scope} on {api.name}: GET /config: the DCS holds no settings for it yet"
        )
    return live


@debian._host_errors
def patch_dynamic_config(version, cluster, wait=True):
    """
    Make the live DCS settings match ``bootstrap.dcs`` of this member's config file, with ``PATCH /config``
    of the differing keys only. Patroni applies them on every member at its next loop; nothing is restarted.

    Returns ``{"changes", "pending_restart"}``: with ``wait``, after a PostgreSQL parameter changed, it waits
    one ``loop_wait`` for Patroni to apply it and reports whether Patroni then asks for a restart.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.patch_dynamic_config 15 main
    """
    api = _acting_api(version, cluster)
    for _ in range(PATCH_TRIES):
        changes = _changes(api)
        if not changes:  # nothing to do, or another member has just done it
            return {"changes": {}, "pending_restart": False}
        live = api.call("PATCH", "/config", _patch_body(changes), expect=(200, 409))
        if isinstance(live, dict):
            break
        time.sleep(0.2)  # 409: another member patched at the same moment; look again
    else:
        raise CommandExecutionError(f"{api.scope} on {api.name}: PATCH /config kept conflicting with other writers")
    log.info("patroni_debian: patched the DCS settings of %s: %s", api.scope, ", ".join(changes))
    pending = False
    if wait and any(key.startswith("postgresql.parameters.") for key in changes):
        pending = _wait_pending_restart(api, float(live.get("loop_wait", 10)) + 3)
    return {"changes": debian._masked(changes), "pending_restart": pending}


def _wait_pending_restart(api, seconds):
    """Whether this member reports ``pending_restart`` within ``seconds`` (Patroni applies at its next loop)."""
    pending = debian._poll(
        lambda: True if api.call("GET", "/patroni", expect=(200, 503)).get("pending_restart") else None,
        time.monotonic() + seconds,
    )
    return pending is not None


# --------------------------------------------------------------------------------------------------
# removal: a member taken out, and leaving the clusters its pillar no longer declares


def _units(scope):
    return (f"patroni@{scope}", f"vip-manager@{scope}")


@debian._host_errors
def removal_plan(version, cluster, purge=False):
    """
    What :py:func:`remove` would do on this host, as changes ``{what: {"old", "new"}}``; empty when nothing of
    the member is left.

    CLI Example:

    .. code-block:: bash

        salt pg3 patroni_debian.removal_plan 15 old purge=True
    """
    scope = _scope(version, cluster)
    plan = {}
    for unit in _units(scope):
        running, enabled = __salt__["service.status"](unit), __salt__["service.enabled"](unit)
        if running or enabled:
            old = ", ".join(word for word, on in (("running", running), ("enabled", enabled)) if on)
            plan[unit] = {"old": old, "new": "stopped, disabled"}
    for path in (f"{render.PATRONI_DIR}/{scope}.yml", f"{render.PATRONI_DIR}/{scope}.vip"):
        if os.path.lexists(path):
            plan[path] = {"old": "present", "new": "absent"}
    if __salt__["service.masked"](f"postgresql@{scope}"):  # masked by the running state: pg-common's again
        plan[f"postgresql@{scope}"] = {"old": "masked", "new": "unmasked"}
    if debian._check_boolean("purge", purge):
        version, cluster = debian._split_scope(scope)
        table = {(row["version"], row["cluster"]): row for row in debian._pg_cluster_table()}
        if (version, cluster) in table:
            plan[f"cluster {version}/{cluster}"] = {"old": table[(version, cluster)]["datadir"], "new": "dropped"}
    return plan


@debian._host_errors
def remove(version, cluster, purge=False):
    """
    Take this member out: ``patroni@`` and ``vip-manager@`` stopped and disabled, its config and VIP files
    removed, ``postgresql@`` unmasked (the cluster is pg-common's again). Its pg-common cluster and data are
    kept, unless ``purge=True`` drops them (``pg_dropcluster --stop``): the one way this project removes data,
    and only when asked by name.

    CLI Example:

    .. code-block:: bash

        salt pg3 patroni_debian.remove 15 old
    """
    purge = debian._check_boolean("purge", purge)
    plan = removal_plan(version, cluster, purge)
    scope = _scope(version, cluster)
    for unit in _units(scope):
        if unit in plan:
            __salt__["service.stop"](unit)
            __salt__["service.disable"](unit)
    for path in (f"{render.PATRONI_DIR}/{scope}.yml", f"{render.PATRONI_DIR}/{scope}.vip"):
        if path in plan:
            os.unlink(path)  # the entry itself: a link is removed, never its target
    if purge and any(key.startswith("cluster ") for key in plan):
        debian._run(["pg_dropcluster", "--stop", *debian._split_scope(scope)])
    if f"postgresql@{scope}" in plan:
        __salt__["service.unmask"](f"postgresql@{scope}")
    log.info("patroni_debian: removed %s from this host: %s", scope, ", ".join(plan) or "nothing was left")
    return plan


MEMBER_GRAIN = "patroni_debian_clusters"  # the clusters the formula runs on this minion (salt/patroni/config.sls)


@debian._host_errors
def leave_undeclared(clusters=None, timeout=120):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Take this member out of each cluster the formula runs here (grain ``patroni_debian_clusters``) that this
    minion's pillar no longer declares: ``patroni@`` and ``vip-manager@`` stopped and disabled, config and VIP
    files removed, the data kept (:py:func:`remove`); returns only once the member is gone from the cluster as
    its other members list it (a Patroni stopped cleanly leaves its member key to expire: within ``ttl``).
    Never ``patronictl remove``, which wipes the whole cluster from the DCS. Refused, changing
    nothing, when this member leads the cluster (switch over first), and when the pillar cannot be trusted to
    say what it declares (``declared_clusters``: it failed to render, does not validate, or mistypes
    ``patroni``): a typo must never take a member down. The rollout (``orch.patroni``) calls it on
    every minion with the grain; ``clusters`` narrows it to those named.

    Returns ``{scope: {removed, members, seconds}}``; empty when pillar still declares everything here.

    CLI Example:

    .. code-block:: bash

        salt pg3 patroni_debian.leave_undeclared
    """
    timeout = debian._check_seconds("timeout", timeout)
    plans = {scope: _leaving_member(scope) for scope in undeclared_here(clusters)}  # every refusal before any change
    result = {}
    for scope, watch in plans.items():
        started = time.monotonic()
        version, cluster = debian._split_scope(scope)
        removed = remove(version, cluster)
        members = _wait_gone(watch, timeout) if watch else []
        __salt__["grains.remove"](MEMBER_GRAIN, scope)
        result[scope] = {"removed": removed, "members": members, "seconds": round(time.monotonic() - started, 1)}
    return result


@debian._host_errors
def undeclared_here(clusters=None):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    The clusters :py:func:`leave_undeclared` would take this member out of, changing nothing: those the formula
    runs here (grain ``patroni_debian_clusters``) that this minion's pillar no longer declares, only those named
    in ``clusters`` if given. Refused when the pillar cannot be trusted to say what it declares, as there.

    CLI Example:

    .. code-block:: bash

        salt pg3 patroni_debian.undeclared_here
    """
    named = pillar_rules._rollout_scopes(clusters)
    listed = _listed_here()
    named_in_pillar = debian._pillar_get(_minion_pillar(), "patroni:clusters")
    if not listed or (isinstance(named_in_pillar, dict) and set(listed) <= set(named_in_pillar)):
        return []  # pillar still names every cluster here: nothing leaves, whatever else it may get wrong
    try:
        declared = set(__salt__["patroni_debian.declared_clusters"]())
    except (CommandExecutionError, SaltInvocationError) as exc:
        raise CommandExecutionError(
            f"{_minion()}: leaving {', '.join(sorted(listed))} refused, nothing was changed: only a pillar that "
            f"validates and no longer names a cluster takes a member out. {exc}"
        ) from None
    return sorted(scope for scope in listed if scope not in declared and (named is None or scope in named))


def _listed_here():
    """The clusters the formula runs on this minion, as its grain ``patroni_debian_clusters`` lists them."""
    return [str(scope) for scope in (globals().get("__grains__") or {}).get(MEMBER_GRAIN) or []]


def _leaving_member(scope):
    """``(this member's API, the REST bases of the others)`` to watch it leave ``scope`` from (read before its
    config goes), None when Patroni does not run here (nothing to wait for); refused when this member leads."""
    if not os.path.exists(f"{render.PATRONI_DIR}/{scope}.yml") or not __salt__["service.status"](f"patroni@{scope}"):
        return None
    api = _Api(scope, _config(scope))
    listing = api.call("GET", "/cluster")
    leader = _leader_of(listing)
    if leader is not None and leader["name"] == api.name:
        raise CommandExecutionError(
            f"{_minion()}: {scope}: leaving refused: {api.name} leads the cluster; switch over first "
            f"(salt {_minion()} patroni_debian.switchover {scope.replace('-', ' ', 1)}), then run again"
        )
    others = [_rest_base(member) for member in listing.get("members", []) if member["name"] != api.name]
    return (api, others) if others else None


def _wait_gone(watch, timeout):
    """Poll the other members' ``/cluster`` until this member's name is absent; the names listed then."""
    api, others = watch
    seen = "(not looked yet)"

    def probe():
        nonlocal seen
        for base in others:
            try:
                names = [m["name"] for m in api.call("GET", "/cluster", base=base).get("members", [])]
            except CommandExecutionError as exc:
                seen = str(exc)
                continue
            if api.name not in names:
                return sorted(names)
            seen = f"{base} still lists {api.name}"
        return None

    names = debian._poll(probe, time.monotonic() + timeout)
    if names is None:
        raise CommandExecutionError(
            f"{_minion()}: {api.scope}: stopped and removed here, yet after {timeout:g} s {seen}"
        )
    return names


# --------------------------------------------------------------------------------------------------
# a pg-common cluster outside Patroni in the way


@debian._host_errors
def foreign_cluster(version, cluster):
    """
    The pg-common cluster ``<version>/<cluster>`` when it exists outside Patroni (Debian's automatic ``main``
    of ``postgresql-<version>``, or one made by hand with ``pg_createcluster``), else None.

    A cluster is Patroni's when ``patroni@<version>-<cluster>`` runs (it may be creating it this moment), its
    start.conf is ``manual`` (how createcluster and clone make it) or Patroni has taken over its config
    (``postgresql.base.conf``). Returns ``{cluster, status, datadir, start}``.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.foreign_cluster 15 main
    """
    scope = _scope(version, cluster)
    if __salt__["service.status"](f"patroni@{scope}"):
        return None
    version, cluster = debian._split_scope(scope)
    config_dir = f"{debian.PG_CONF_DIR}/{version}/{cluster}"
    row = next((r for r in debian._pg_cluster_table() if (r["version"], r["cluster"]) == (version, cluster)), None)
    if row is None and not os.path.lexists(config_dir):
        return None
    lines = (debian._read_text(f"{config_dir}/start.conf") or "").splitlines()
    start = next((line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()), "auto")
    if start == "manual" or os.path.lexists(f"{config_dir}/postgresql.base.conf"):
        return None
    return {
        "cluster": f"{version}/{cluster}",
        "status": row["status"] if row else "unknown",
        "datadir": row["datadir"] if row else None,
        "start": start,
    }


@debian._host_errors
def drop_foreign_cluster(version, cluster):
    """
    Drop the pg-common cluster ``<version>/<cluster>`` that exists outside Patroni, with its data
    (``pg_dropcluster --stop``), so that Patroni creates or clones it. Refuses a cluster that is Patroni's.
    The formula calls this only when pillar ``patroni:clusters:<version>-<cluster>:replace_existing`` is true.

    CLI Example:

    .. code-block:: bash

        salt pg2 patroni_debian.drop_foreign_cluster 15 main
    """
    foreign = foreign_cluster(version, cluster)
    if foreign is None:
        raise CommandExecutionError(f"{version}/{cluster} is not a cluster outside Patroni; nothing was dropped")
    debian._run(["pg_dropcluster", "--stop", *foreign["cluster"].split("/")])
    log.info(
        "patroni_debian: dropped %s (outside Patroni, data in %s), as pillar asked",
        foreign["cluster"],
        foreign["datadir"],
    )
    return foreign


# --------------------------------------------------------------------------------------------------
# the rollout's questions and gates (salt/orch/patroni.sls): asked on each member at run time, because an
# orchestration's Jinja is rendered before its first step and cannot know who leads by then


@debian._host_errors
def rollout_arguments(clusters=None, timeout=120):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    The arguments of an orchestration (``orch.patroni``, ``orch.patroni_restart``) checked, the one way both
    take them, before either changes anything: ``clusters`` (pillar ``cluster``) a ``<version>-<cluster>`` name,
    several joined by commas, or a list, each taken exactly as given (a space or a line break is refused, never
    trimmed; an empty list names nothing and is refused, never read as "all"); ``timeout`` a finite number of
    seconds. Returns ``{"clusters": [...] or None, "timeout": seconds}``.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.rollout_arguments clusters=15-main timeout=60
    """
    named = pillar_rules._rollout_scopes(clusters)
    return {
        "clusters": sorted(named) if named is not None else None,
        "timeout": debian._check_seconds("timeout", timeout),
    }


ROLLOUT_GRAIN = "patroni_debian_rollout"  # "converged" keeps a member out of orch.patroni's phases
NOTED_PILLAR = "patroni_debian_rollout.pillar"  # in the minion's cachedir: the first step's pillar, as a digest


@debian._host_errors
def note_rollout_pillar():
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Note the digest of this job's pillar (the rollout's first step compiles it fresh) in the minion's cache,
    root's alone. The rollout's gate and summary then read the minion's own pillar when it is that pillar, and
    compile a fresh one when it is not: so the first step need not refresh the minion's pillar and wait for it.
    Left out: the rollout's own ``patroni_rollout`` (one job's override) and ``schedule`` (which the minion adds
    to its own pillar). Returns the digest.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.note_rollout_pillar
    """
    digest = _pillar_digest(_minion_pillar())
    path = _noted_pillar_path()
    os.replace(debian._stage(debian._Target(path, None, digest, None, "root", "root", 0o600)), path)
    return digest


def _noted_pillar_path():
    return os.path.join(__opts__["cachedir"], NOTED_PILLAR)


NOT_NOTED = ("patroni_rollout", "schedule")  # one job's override; the key the minion's scheduler adds in memory


def _pillar_digest(pillar):
    """sha256 of ``pillar`` as JSON with sorted keys, without ``NOT_NOTED``."""
    plain = {key: value for key, value in dict(pillar or {}).items() if key not in NOT_NOTED}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()


def _rollout_pillar():
    """The pillar the rollout's first step compiled (:py:func:`note_rollout_pillar`): the minion's own when its
    digest is the one noted, else a fresh one (pillar changed since the minion last refreshed it, or nothing was
    noted), the minion then asked to refresh its own after the job."""
    pillar = _minion_pillar()
    try:
        with open(_noted_pillar_path(), encoding="ascii") as stream:
            noted = stream.read().strip()
    except (OSError, ValueError):
        noted = None
    if noted and noted == _pillar_digest(pillar):
        return pillar
    __salt__["event.fire"]({}, "pillar_refresh")
    return __salt__["pillar.items"]()


@debian._host_errors
def rollout_converged(clusters=None):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Whether the rollout (``orch.patroni``) would change nothing on this member: the formula, in test mode, with
    this minion's pillar, predicts no change and no failure for the clusters named (all by default). A member
    that has not run a declared cluster yet (no config, or the formula's grain does not list it) is not
    converged, without asking the formula. And, when it is not, whether its first phase has work
    (:py:func:`rollout_goes_early`). Returns ``{member, role, converged, early, reason}``; ``member`` is false,
    and nothing is asked, on a minion without a Patroni role (``role``: pillar ``patroni:role``, else grain
    ``patroni_role``).

    The rollout's first step asks it of every member and its phases run only on those that are not converged,
    its first phase only on those of them that go early; its gate still checks every member.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.rollout_converged
    """
    role = _role()
    if role not in ("bootstrap", "replica"):
        return {"member": False, "role": role, "converged": True, "early": False, "reason": "no Patroni role here"}
    unsettled = _why_unsettled(clusters)
    if unsettled is None:
        reason, early = "the formula would change nothing", False
    else:
        reason, early = unsettled, rollout_goes_early(clusters)
    return {"member": True, "role": role, "converged": unsettled is None, "early": early, "reason": reason}


def _why_unsettled(clusters):
    """Why the rollout would change something on this member, or None when it would not."""
    listed = _listed_here()
    scopes = [scope for scope, _, _ in _pillar_scopes(clusters, _minion_pillar())]
    new = [scope for scope in scopes if scope not in listed or not os.path.exists(f"{render.PATRONI_DIR}/{scope}.yml")]
    if new:
        return f"{', '.join(new)}: not set up here yet"
    unsettled = _unsettled(_formula_predicted(clusters))
    return f"the formula would change: {', '.join(unsettled)}" if unsettled else None


@debian._host_errors
def rollout_goes_early(clusters=None):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Whether the rollout's first phase (``orch.patroni``) has work on this member: it goes first in one of the
    clusters named (all by default, :py:func:`leads_rollout`), or the packages the first phase would install are
    not all installed (apt's minutes, beside the leader's bootstrap), or pillar asks for TLS or backups
    (certificates and the repository's part, made beside the bootstrap), or pillar ``patroni`` does not validate
    (the first phase says what is wrong, before any member changes). Otherwise the member waits for the second
    phase, which installs the program Patroni runs (a file) before Patroni starts: a replica whose packages are in
    place gains nothing from a first phase but a Salt job that renders the formula (half a second of a core,
    measured; the master's share besides).

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.rollout_goes_early
    """
    first = formula_map("patroni", {"clusters": clusters, "phase": "first"})
    if not first["valid"] or first["clusters"] or first["tls"] or first["backup"]:
        return True
    return not all(__salt__["pkg.version"](package) for package in first["packages"])


def _formula_predicted(clusters):
    """The formula's states in test mode, as the rollout's second phase would apply them here."""
    context = globals().get("__context__")
    retcode = context.get("retcode") if context is not None else None
    try:
        # concurrent: this is asked from within a state run (the rollout's first step), and a dry run changes
        # nothing that another run could race
        return __salt__["state.sls"](
            "patroni",
            test=True,
            concurrent=True,
            pillar={"patroni_rollout": {"clusters": clusters, "phase": "all"}},
        )
    finally:
        if context is not None:  # a failure it predicts is no failure of the job that asked
            context.pop("retcode", None)
            if retcode is not None:
                context["retcode"] = retcode


def _unsettled(predicted):
    """The IDs of the states a dry run of the formula says would change or fail; a formula that did not render
    (Salt returns its errors as a list) is unsettled as a whole."""
    if not isinstance(predicted, dict):
        return [f"it did not render ({'; '.join(map(str, predicted or ['no answer']))[:300]})"]
    chosen = sorted(
        (state for state in predicted.values() if isinstance(state, dict)),
        key=lambda state: state.get("__run_num__", 0),
    )
    return [str(state.get("__id__")) for state in chosen if state.get("result") is not True or state.get("changes")]


def _minion_pillar():
    """The pillar Salt gave this file, for the functions of this file's own to pass down (None when a sibling
    imported it: Salt gives the dunders only to the files it loads)."""
    return globals().get("__pillar__")


def _role():
    """This minion's role, pillar ``patroni:role`` (what the top file targets) or else grain ``patroni_role``."""
    return _role_of(_minion_pillar(), globals().get("__grains__"))


def _role_of(pillar, grains):
    return debian._pillar_get(pillar, "patroni:role") or (grains or {}).get("patroni_role")


def _minion():
    return (globals().get("__opts__") or {}).get("id") or os.uname().nodename


def _pillar_scopes(clusters, pillar):
    """``[(scope, version, cluster)]`` of ``pillar``'s ``patroni:clusters``, only those named if any."""
    named = pillar_rules._rollout_scopes(clusters)
    declared = debian._pillar_get(pillar, "patroni:clusters")
    scopes = sorted(scope for scope in declared if pillar_rules._is_scope(scope)) if isinstance(declared, dict) else []
    chosen = [scope for scope in scopes if named is None or scope in named]
    return [(scope, *debian._split_scope(scope)) for scope in chosen]


def _runs_here(scope):
    return os.path.exists(f"{render.PATRONI_DIR}/{scope}.yml") and __salt__["service.status"](f"patroni@{scope}")


# Read by Patroni's own DCS client, in the interpreter Patroni runs under, from the member's config: every DCS type
# Patroni supports, and no Patroni needs to run here. Prints what a member's start depends on, as JSON; given a
# number of seconds, first waits (in one process, polling every 0.1 s) for a leader running as the primary, or
# for a claim on the bootstrap to be dropped; given "claimed" after them, for a claim or a leader instead. No
# validator: Patroni 4 refuses Debian's template there (its empty parameters and superuser password), yet runs it.
DCS_VIEW = """
import json, sys, time
from patroni.config import Config
from patroni.dcs import get_dcs
dcs = get_dcs(Config(sys.argv[1], validator=None))
wait = float(sys.argv[2]) if len(sys.argv) > 2 else 0
until = sys.argv[3] if len(sys.argv) > 3 else "ready"
deadline, claimed = time.monotonic() + wait, False
while True:
    cluster = dcs.get_cluster()
    leader = cluster.leader
    data = leader.member.data if leader else {}
    view = {"initialized": cluster.initialize is not None, "leader": leader.name if leader else None,
            "role": data.get("role"), "state": data.get("state"), "timeline": data.get("timeline"),
            "system_identifier": cluster.initialize or None}
    ready = leader is not None and view["role"] in LEADER_ROLES and view["state"] == "running"
    dropped = claimed and not view["initialized"]
    claimed = claimed or view["initialized"]
    done = (claimed or leader is not None) if until == "claimed" else (ready or dropped)
    if done or time.monotonic() >= deadline:
        break
    time.sleep(0.1)
print(json.dumps(view))
""".replace("LEADER_ROLES", repr(LEADER_ROLES))
PATRONI_PYTHON = "/usr/bin/python3"  # the interpreter of Debian's /usr/bin/patroni


# The cluster's keys removed from the DCS, as ``patronictl remove`` does (its confirmation is the caller's): only for
# a restore into the same scope, every member stopped. Prints what was there.
DCS_FORGET = """
import json, sys
from patroni.config import Config
from patroni.dcs import get_dcs
dcs = get_dcs(Config(sys.argv[1], validator=None))
cluster = dcs.get_cluster()
print(json.dumps({"initialized": cluster.initialize is not None, "system_identifier": cluster.initialize or None,
                  "members": sorted(member.name for member in cluster.members)}))
dcs.delete_cluster()
"""


def _patroni_dcs(scope, script, *args, config=None):
    """What ``script`` prints (JSON), run with Patroni's own DCS client on this member's config of ``scope``, or on
    ``config`` (a config not written yet, e.g. the declared one of a cluster about to be restored here): its DCS
    part alone, which Patroni reads from its environment variable when the config file does not exist, so nothing
    of it is written or shown in the process's arguments."""
    path, env = f"{render.PATRONI_DIR}/{scope}.yml", None
    if config is None:
        _config(scope)  # the config must be there: a clear error rather than Patroni's traceback
    else:
        path = f"/dev/null/{scope}.yml"  # a path that cannot exist: Patroni reads the variable only without a file
        dcs = {key: config[key] for key in ("scope", "namespace", "name", *render.DCS_TYPES) if key in config}
        env = {**os.environ, "PATRONI_CONFIGURATION": json.dumps(dcs)}
    argv = [PATRONI_PYTHON, "-c", script, path, *args]
    proc = debian._run(argv, check=False, env=env)
    if proc.returncode:
        lines = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()]
        cause = debian._scrub(lines[-1]) if lines else f"exit status {proc.returncode}"
        raise CommandExecutionError(f"{scope}: the DCS cannot be reached with Patroni's client: {cause}")
    return json.loads(proc.stdout)


def _dcs_view(scope, wait=0, config=None, until="ready"):
    """The cluster as its DCS holds it (:py:func:`in_dcs`), watched up to ``wait`` s until a leader is ready or
    the bootstrap's claim is dropped (``until="ready"``), or until the cluster is claimed (``"claimed"``): one
    process of Patroni's client, which looks every 0.1 s."""
    view = _patroni_dcs(scope, DCS_VIEW, str(float(wait)), until, config=config)
    if view["role"] in LEADER_ROLES:
        view["role"] = "primary"
    return view


@debian._host_errors
def in_dcs(version, cluster):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    The cluster as its DCS holds it, read with Patroni's own DCS client from this member's config, whether or
    not Patroni runs here: ``{initialized, leader, role, state, timeline}`` (``initialized``: a member has
    claimed the cluster's bootstrap; the others describe the leader key's holder, or are None).

    CLI Example:

    .. code-block:: bash

        salt pg2 patroni_debian.in_dcs 15 main
    """
    return _dcs_view(_scope(version, cluster))


def _leader_ready(view):
    return view["leader"] is not None and view["role"] == "primary" and view["state"] == "running"


@debian._host_errors
def clones_when_started(version, cluster):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Whether this member has the replica role (pillar ``patroni:role``, else grain ``patroni_role``) and no data
    for the cluster yet: Patroni started now would clone it from the leader, or, with no leader yet, could
    race the bootstrap member to create the cluster. The ``running`` state then waits for a leader first.

    CLI Example:

    .. code-block:: bash

        salt pg2 patroni_debian.clones_when_started 15 main
    """
    scope = _scope(version, cluster)
    data_dir = (_config(scope).get("postgresql") or {}).get("data_dir")
    return _role() == "replica" and not (data_dir and os.path.exists(os.path.join(str(data_dir), "PG_VERSION")))


@debian._host_errors
def wait_leader_in_dcs(version, cluster, timeout=120):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Wait until the cluster's DCS shows a leader whose PostgreSQL runs as the primary; read with Patroni's
    client (:py:func:`in_dcs`), so it needs no Patroni running here. A member without data starts only then,
    so it clones and never races the bootstrap member to create the cluster. Fails at once when the claim
    on the cluster's bootstrap is dropped (the bootstrap failed), else after ``timeout`` seconds.

    CLI Example:

    .. code-block:: bash

        salt pg2 patroni_debian.wait_leader_in_dcs 15 main timeout=60
    """
    scope = _scope(version, cluster)
    timeout = debian._check_seconds("timeout", timeout)
    started = time.monotonic()
    view = _dcs_view(scope, wait=timeout)
    if _leader_ready(view):
        return {**view, "seconds": round(time.monotonic() - started, 1)}
    if view["initialized"] is False and time.monotonic() - started < timeout:
        raise CommandExecutionError(f"{_minion()}: {scope}: leader: the bootstrap failed (its claim was dropped)")
    seen = f"{view['leader']} leads, {view['role']}, {view['state']}" if view["leader"] else "no leader"
    raise CommandExecutionError(f"{_minion()}: {scope}: leader: none ready after {timeout:g} s: {seen}")


@debian._host_errors
def wait_claimed(version, cluster, timeout=120, interval=0.2):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Wait until this member's Patroni runs and the cluster is claimed: a leader holds it, or a member's bootstrap
    is under way. The orchestration's first phase returns then, so the other members start converging while
    the first one bootstraps (they start Patroni once :py:func:`wait_leader_in_dcs` sees a leader).

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.wait_claimed 15 main
    """
    return _poll_member("no member claimed it", _api(version, cluster), "claim", _claim_once, timeout, interval)


# how long one look at the claim watches the DCS: each look starts Patroni's client anew (a Python process and its
# imports, more CPU than a REST request), so it watches a while rather than being started five times a second
CLAIM_WATCH_SECONDS = 1.0


def _claim_once(api):
    """``(what was seen, the DCS view or None)``: claimed once a leader holds the cluster or a bootstrap began."""
    view = _dcs_view(api.scope, wait=CLAIM_WATCH_SECONDS, until="claimed")
    return ("unclaimed", None) if not (view["initialized"] or view["leader"]) else (None, view)


# what each cluster's running state waits for, by the orchestration's phase: a claim on the cluster in the first,
# a started Patroni in the second (its gate then waits for health), health in a plain run
READY_BY_PHASE = {"first": "claimed", "all": "started"}
WAITS_FOR = {
    "healthy": "is running and healthy",
    "claimed": "is running and its cluster claimed",
    "started": "is running",
}


@debian._host_errors
def formula_map(tplroot="patroni", rollout=None, saltenv="base"):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    What the formula's states are made of (the formula's map.jinja asks it) on this minion: its settings (``patroni`` of
    ``salt://<tplroot>/defaults.yaml``, then the entry of its ``releases`` for this Debian release, grain
    ``oscodename``, then pillar ``patroni:lookup``), the clusters it renders states for
    (:py:func:`formula_clusters`), each with what its running state waits for, the packages they need, and pillar
    ``patroni:tls`` and ``patroni:backup`` as checked.

    rollout
        The orchestration's narrowing (pillar ``patroni_rollout``): ``clusters``, and ``phase``: ``first`` keeps
        the clusters this member goes first in (:py:func:`leads_rollout`) and leaves their live settings alone (a
        bootstrap under way takes them from this very config); ``all`` waits for a started Patroni only.

    Returns ``{patroni, clusters, packages, tls, valid, backup}``. Computed once per Salt job: every sls file of
    the formula imports map.jinja, and Jinja would otherwise read the defaults and merge them anew for each.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.formula_map
    """
    rollout = rollout if isinstance(rollout, dict) else {}
    key = repr((tplroot, rollout, saltenv))
    args = (str(tplroot), rollout, str(saltenv))
    return pillar_rules._per_job(__context__, __opts__.get("jid"), "formula_map", key, _formula_map, *args)


def _formula_map(tplroot, rollout, saltenv):
    defaults = _formula_defaults(tplroot, saltenv)
    declared = __salt__["patroni_debian.formula_clusters"](rollout.get("clusters"))
    release = (defaults.get("releases") or {}).get(__grains__.get("oscodename"), {})
    settings = render._deep_merge(render._deep_merge(defaults["patroni"], release), declared["lookup"])
    phase = rollout.get("phase")
    ready = READY_BY_PHASE.get(phase, "healthy")
    clusters, packages = [], list(settings.get("packages") or [])
    for cluster in declared["clusters"]:
        if phase == "first" and not leads_rollout(cluster["version"], cluster["cluster"]):
            continue
        cluster.update(ready=ready, running=f"Patroni {cluster['scope']} {WAITS_FOR[ready]}", dynamic=phase != "first")
        clusters.append(cluster)
        packages.append(f"postgresql-{cluster['version']}")
        packages.extend((settings.get("dcs_packages") or {}).get(cluster["dcs_type"], []))
        if cluster["vip"]:
            packages.extend((settings.get("vip_packages") or {}).get(cluster["dcs_type"], []))
    if declared["backup"] and clusters:
        packages.append("pgbackrest")
    return {
        "patroni": settings,
        "clusters": clusters,
        "packages": list(dict.fromkeys(packages)),
        "tls": declared["tls"],
        "valid": declared["valid"],
        "backup": declared["backup"],
    }


def _formula_defaults(tplroot, saltenv):
    """The formula's ``defaults.yaml``, from the master (or the local file roots), checked to hold ``patroni``."""
    source = f"salt://{tplroot}/defaults.yaml"
    text = __salt__["cp.get_file_str"](source, saltenv=saltenv)
    if not text:
        raise CommandExecutionError(f"the formula's defaults {source} (saltenv {saltenv}) could not be read")
    parsed = render._parsed_yaml(text, f"the formula's defaults {source}")
    if not isinstance(parsed, dict) or not isinstance(parsed.get("patroni"), dict):
        raise CommandExecutionError(f"the formula's defaults {source} have no mapping patroni")
    return parsed


@debian._host_errors
def leads_rollout(version, cluster):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Whether this member goes first when ``<version>-<cluster>`` is rolled out: it leads the running cluster
    now, or it has the bootstrap role (pillar ``patroni:role``, else grain ``patroni_role``) and does not run
    as a replica of it. So a rollout after a failover starts with whoever leads, never moves leadership back,
    and a bare bootstrap member of a running cluster clones from the leader like any replica.

    The formula asks it when the orchestration applies its first phase (pillar ``patroni_rollout:phase:
    first``).

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.leads_rollout 15 main
    """
    scope = _scope(version, cluster)
    # each sls of the formula imports map.jinja, which asks: once per job is enough
    return pillar_rules._per_job(__context__, __opts__.get("jid"), "leads_rollout", scope, _leads_rollout, scope)


def _leads_rollout(scope):
    own = None
    if _runs_here(scope):
        try:
            own = _own_status(_api(*debian._split_scope(scope)))
        except CommandExecutionError:
            own = None  # Patroni starting up: not a replica of anyone yet
    if own and own.get("role") == "primary":
        return True
    return _role() == "bootstrap" and not (own and own.get("role") == "replica")


def _local_sql(config, sql):
    """``sql`` run on the PostgreSQL of this host's config, through the local socket as postgres (no password
    involved): the finished process, its output unaligned, one row per line."""
    port = render._listen_port(config)
    sockets = str((config.get("postgresql") or {}).get("parameters", {}).get("unix_socket_directories") or "")
    socket = sockets.split(",")[0].strip() or "/var/run/postgresql"
    argv = ["psql", "-X", "-A", "-t", "-h", socket, "-p", str(port), "-d", "postgres", "-c", sql]
    return debian._run(argv, check=False, user="postgres")


def _accepts_writes(config):
    """Whether the PostgreSQL of this host's config gives out a transaction id: a write, which a server in
    recovery refuses."""
    return _local_sql(config, "SELECT txid_current()").returncode == 0


def _member_once(api):
    """:py:func:`_health_once`, and where this member leads, its PostgreSQL accepts a write."""
    seen, result = _health_once(api)
    if result is not None and result["role"] == "primary" and not _accepts_writes(_config(api.scope)):
        return f"{api.name} holds the leader key but its PostgreSQL refuses a write", None
    return seen, result


# how often a wait asks systemd whether Patroni still runs: each ask is a systemctl process of the Salt job's, where
# a look at the REST API is a request, and a gate looking every 0.2 s spent more CPU on the one than on the other
UNIT_CHECK_SECONDS = 1.0


def _poll_member(what, api, step, once, timeout, interval):
    """Call ``once(api)`` until it gives a result; after ``timeout`` s an error naming minion, step and cause. A
    Patroni that stopped fails the wait at once, seen within ``UNIT_CHECK_SECONDS``."""
    timeout, interval = debian._check_seconds("timeout", timeout), debian._check_seconds("interval", interval)
    started, seen, unit_checked = time.monotonic(), None, -math.inf

    def probe():
        nonlocal seen, unit_checked
        seen, result = once(api)
        if result is None and time.monotonic() - unit_checked >= UNIT_CHECK_SECONDS:
            unit_checked = time.monotonic()
            if not __salt__["service.status"](f"patroni@{api.scope}"):
                # it will not get healthy by waiting
                raise CommandExecutionError(f"{_minion()}: {api.scope}: {step}: {_why_stopped(api.scope)}")
        return result

    result = debian._poll(probe, started + timeout, interval)
    if result is None:
        raise CommandExecutionError(f"{_minion()}: {api.scope}: {step}: {what} after {timeout:g} s: {seen}")
    return {**result, "seconds": round(time.monotonic() - started, 1)}


def _why_stopped(scope):
    """``patroni@<scope> is not running`` with the last error its journal shows, secrets masked."""
    unit = f"patroni@{scope}"
    journal = debian._run(["journalctl", "-u", unit, "-n", "60", "-o", "cat", "--no-pager"], check=False).stdout
    errors = [line.strip() for line in journal.splitlines() if ERROR_LINE_RE.search(line)]
    return f"{unit} is not running" + (f"; its journal says: {debian._scrub(errors[-1])}" if errors else "")


@debian._host_errors
def wait_members(clusters=None, timeout=120, interval=0.2, note_converged=False):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Wait until this member is healthy in each cluster of its pillar (``patroni:clusters``, or only those
    named): the leader, whose PostgreSQL then gives out a transaction id (a write, refused in recovery), or a
    replica streaming from the leader on its timeline (:py:func:`wait_healthy`).
    A cluster without a config here is an error: the member was to be converged before. The pillar is the one
    the rollout's first step compiled (:py:func:`note_rollout_pillar`), else a fresh one. Returns ``{scope:
    {member, role, leader, timeline, seconds}}``; after ``timeout`` seconds raises ``CommandExecutionError``
    naming the minion, the cluster, the step and what it saw last. The orchestration's last gate.

    ``note_converged=True`` (the orchestration's gate): once healthy, the member's grain
    ``patroni_debian_rollout`` says ``converged`` (written without a pillar refresh), the answer the next
    rollout's first step most likely gives after the formula has just been applied here: that step then need
    not write the grain and wait for the master to learn it. It asks the formula again whatever the grain says.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.wait_members timeout=60
    """
    result = {}
    for scope, version, cluster in _pillar_scopes(clusters, _rollout_pillar()):
        try:
            api = _api(version, cluster)
        except CommandExecutionError as exc:
            raise CommandExecutionError(f"{_minion()}: {scope}: member: {exc}") from None
        result[scope] = _poll_member("not healthy", api, "member", _member_once, timeout, interval)
    if note_converged and globals().get("__grains__", {}).get(ROLLOUT_GRAIN) != "converged":
        __salt__["grains.setval"](ROLLOUT_GRAIN, "converged", refresh_pillar=False)
    return result


def _cluster_problems(members, leader):
    """Why a ``/cluster`` answer is not one healthy cluster: no single leader, a member not running, or a
    replica not on the leader's timeline."""
    leaders = [member["name"] for member in members if _leads(member)]
    if len(leaders) != 1:
        return [f"{len(leaders)} members hold the leader key: {', '.join(leaders) or 'none'}"]
    problems = []
    for member in members:
        if member.get("state") not in ("running", "streaming"):
            problems.append(f"{member['name']} is {member.get('state')}")
        elif member.get("timeline") != leader.get("timeline"):
            timelines = f"timeline {member.get('timeline')}, the leader on {leader.get('timeline')}"
            problems.append(f"{member['name']} is on {timelines}")
    return problems


@debian._host_errors
def summary(clusters=None):
    """
    Each cluster of this minion's pillar (or only those named) as its members see it (``GET /cluster``),
    verified: exactly one leader, every member running and on the leader's timeline. Returns ``{scope:
    {leader, timeline, port, vip, members: {name: {role, state, timeline, lag, host, port}}}}``; raises
    ``CommandExecutionError`` naming the cluster and what is wrong. The orchestration's last step; its pillar
    is read as :py:func:`wait_members` reads it.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.summary
    """
    scopes = _pillar_scopes(clusters, _rollout_pillar())
    named = pillar_rules._rollout_scopes(clusters) or set()
    missing = sorted(named - {scope for scope, _, _ in scopes})
    if missing:
        raise CommandExecutionError(f"{_minion()}: no {', '.join(missing)} in its pillar patroni:clusters")
    result = {}
    for scope, version, cluster in scopes:
        api = _api(version, cluster)
        members = api.call("GET", "/cluster").get("members", [])
        leader = _leader_of({"members": members}) or {}
        problems = _cluster_problems(members, leader)
        if problems:
            raise CommandExecutionError(f"{_minion()}: {scope}: summary: {'; '.join(problems)}")
        vip = (render._read_env_file(f"{render.PATRONI_DIR}/{scope}.vip") or {}).get("VIP_IP")
        result[scope] = {
            "leader": leader["name"],
            "timeline": leader.get("timeline"),
            "port": leader.get("port"),
            "vip": vip,
            "members": {
                member["name"]: {
                    "role": member.get("role"),
                    "state": member.get("state"),
                    "timeline": member.get("timeline"),
                    "lag": member.get("lag", 0 if member.get("role") == "leader" else "unknown"),
                    "host": member.get("host"),
                    "port": member.get("port"),
                }
                for member in members
            },
        }
    return result
