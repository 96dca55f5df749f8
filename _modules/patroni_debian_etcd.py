"""
The DCS too: the etcd cluster of pillar ``etcd`` on Debian's ``etcd-server``, its state for people, and its
membership changed one member at a time.

Joins the execution module ``patroni_debian`` (``patroni_debian.etcd_status`` and so on). A member's whole
configuration is ``/etc/default/etcd`` (the package's unit reads it), its data ``/var/lib/etcd/<cluster>``, never
the package's own one-member ``/var/lib/etcd/default``. etcd is asked through its v3 JSON gateway on the client
port, which Debian's etcd 3.4 (bookworm) and 3.5 (trixie) both serve.

:depends: etcd-server, etcd-client
"""

import concurrent.futures
import functools
import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.request

import patroni_debian as debian  # the sibling door file, for its pure helpers
import patroni_debian_config as pillar_rules  # the certificate's names, as the Patroni member's has them
import patroni_debian_render as render  # pillar etcd's check and the DCS section it makes

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "patroni_debian"

ENV_FILE = "/etc/default/etcd"
UNIT = "etcd.service"
PACKAGES = ("etcd-server", "etcd-client")
ENV_HEADER = (
    "# Written by Salt (patroni_debian, pillar etcd): the whole configuration of this etcd member.\n"
    "# The initial-cluster settings count only while the data directory is empty; after that etcd keeps its\n"
    "# members itself: change them with salt-run state.orchestrate orch.etcd_member.\n"
)
ASK_TIMEOUT = 2.0  # seconds for one answer of one member: a member slower than that is not answering
MIN_VOTERS = 3  # below three members one failure loses quorum


def __virtual__():
    return __virtualname__


# --------------------------------------------------------------------------------------------------
# pillar etcd: what this minion is


def _minion():
    return (globals().get("__opts__") or {}).get("id") or os.uname().nodename


def _pillar_etcd(pillar=None):
    """Pillar ``etcd`` checked, or None when it declares none; read in the public function's own file unless
    ``pillar`` is given."""
    pillar = pillar if pillar is not None else globals().get("__pillar__")
    return render._check_etcd(debian._pillar_get(pillar, "etcd"), debian._pillar_get(pillar, "patroni:tls"))


def _data_dir(etcd):
    return f"{render.ETCD_DATA_ROOT}/{etcd['cluster']}"


def _client_url(etcd, address):
    return render._etcd_url(address, render.ETCD_CLIENT_PORT, bool(etcd["tls"]))


def _peer_url(etcd, address):
    return render._etcd_url(address, render.ETCD_PEER_PORT, bool(etcd["tls"]))


def _tls_environment(tls):
    """etcd's TLS settings: clients and peers alike present a certificate of the cluster's CA (Patroni and
    vip-manager the Patroni member's, which the same CA signed)."""
    return {
        "ETCD_CERT_FILE": tls["cert_file"],
        "ETCD_KEY_FILE": tls["key_file"],
        "ETCD_TRUSTED_CA_FILE": tls["ca_file"],
        "ETCD_CLIENT_CERT_AUTH": "true",
        "ETCD_PEER_CERT_FILE": tls["cert_file"],
        "ETCD_PEER_KEY_FILE": tls["key_file"],
        "ETCD_PEER_TRUSTED_CA_FILE": tls["ca_file"],
        "ETCD_PEER_CLIENT_CERT_AUTH": "true",
    }


def _environment(name, etcd, state, initial):
    """The member's ``/etc/default/etcd`` as a dict: ``state`` ``new`` or ``existing`` with ``initial`` (name →
    address) the members it starts with; clients on its address and loopback (Patroni on the same host and
    etcdctl without arguments reach it there)."""
    address = etcd["members"][name]
    env = {
        "ETCD_NAME": name,
        "ETCD_DATA_DIR": _data_dir(etcd),
        "ETCD_LISTEN_PEER_URLS": _peer_url(etcd, address),
        "ETCD_LISTEN_CLIENT_URLS": f"{_client_url(etcd, address)},{_client_url(etcd, '127.0.0.1')}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": _peer_url(etcd, address),
        "ETCD_ADVERTISE_CLIENT_URLS": _client_url(etcd, address),
        "ETCD_INITIAL_CLUSTER": ",".join(f"{member}={_peer_url(etcd, peer)}" for member, peer in initial.items()),
        "ETCD_INITIAL_CLUSTER_STATE": state,
        "ETCD_INITIAL_CLUSTER_TOKEN": etcd["cluster"],
    }
    if etcd["v2"]:
        env["ETCD_ENABLE_V2"] = "true"
    if etcd["tls"]:
        env.update(_tls_environment(etcd["tls"]))
    return env


def _has_data(data_dir):
    """Whether etcd has made a member in ``data_dir`` (its ``member`` folder): from then on it ignores every
    initial-cluster setting."""
    return os.path.isdir(os.path.join(data_dir, "member"))


def _members_here(but=None):
    """Data directories of etcd members on this host, but cluster ``but``'s, the package's default and those a
    removal moved aside."""
    try:
        names = sorted(os.listdir(render.ETCD_DATA_ROOT))
    except FileNotFoundError:
        return []
    return [
        f"{render.ETCD_DATA_ROOT}/{name}"
        for name in names
        if name not in (but, render.ETCD_PACKAGE_DEFAULT)
        and ".removed-" not in name
        and _has_data(f"{render.ETCD_DATA_ROOT}/{name}")
    ]


# --------------------------------------------------------------------------------------------------
# asking etcd: its v3 JSON gateway (numbers of 64 bits come as strings)


def _tls_context(etcd):
    """For an etcd over TLS: its CA verifies the member, and this host presents the first certificate it has of
    the cluster's CA (the etcd member's, else the Patroni member's); None over http."""
    tls = etcd["tls"]
    if not tls:
        return None
    files = (tls["ca_file"], *(path for pair in tls["clients"] for path in pair))
    return _tls_context_of(tls["ca_file"], tuple(tls["clients"]), tuple(_file_stamp(path) for path in files))


def _file_stamp(path):
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns, found.st_size


@functools.lru_cache(maxsize=4)
def _tls_context_of(ca_file, clients, stamps):
    """Made once per set of files as they are (``stamps``: a renewed or new file makes another): a cluster survey
    asks each member twice, every half second while it waits."""
    context = ssl.create_default_context(cafile=ca_file if stamps[0] else None)
    for cert, key in clients:
        if os.access(cert, os.R_OK) and os.access(key, os.R_OK):
            context.load_cert_chain(cert, key)
            break
    return context


def _open(etcd, request, timeout=ASK_TIMEOUT):
    try:
        context = _tls_context(etcd)
    except (OSError, ssl.SSLError) as exc:
        raise CommandExecutionError(f"the TLS files of pillar etcd:tls cannot be used: {exc}") from None
    return urllib.request.urlopen(request, timeout=timeout, context=context)  # noqa: S310 - a pillar address


def _ask(etcd, address, path, body=None, timeout=ASK_TIMEOUT):
    """POST ``body`` to ``/v3/<path>`` of the member at ``address``; its answer, or CommandExecutionError."""
    request = urllib.request.Request(
        f"{_client_url(etcd, address)}/v3/{path}",
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with _open(etcd, request, timeout) as answer:
            return json.loads(answer.read(1_000_000) or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode("utf-8", "replace").strip()
        raise CommandExecutionError(f"etcd at {address} answered {exc.code} to {path}: {detail}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandExecutionError(f"etcd at {address} does not answer ({reason})") from None


def _member_list(etcd, address):
    """``{"cluster_id", "members": [{id, name, peer_urls, client_urls, learner}]}`` as the member at ``address``
    knows it (a linearizable read: it needs the cluster's quorum)."""
    answer = _ask(etcd, address, "cluster/member/list")
    return {
        "cluster_id": _hex(answer.get("header", {}).get("cluster_id")),
        "members": [
            {
                "id": _hex(member.get("ID")),
                "name": member.get("name", ""),
                "peer_urls": member.get("peerURLs", []),
                "client_urls": member.get("clientURLs", []),
                "learner": bool(member.get("isLearner")),
            }
            for member in answer.get("members", [])
        ],
    }


def _hex(number):
    return f"{int(number):x}" if number not in (None, "") else None


def _member_status(etcd, address):
    """What the member at ``address`` says of itself (no quorum needed), with its health (which needs it)."""
    answer = _ask(etcd, address, "maintenance/status")
    header = answer.get("header", {})
    status = {
        "cluster_id": _hex(header.get("cluster_id")),
        "id": _hex(header.get("member_id")),
        "leader_id": _hex(answer.get("leader")),
        "version": answer.get("version"),
        "db_size": int(answer.get("dbSize", 0)),
        "raft_index": int(answer.get("raftIndex", 0)),
        "raft_term": int(answer.get("raftTerm", 0)),
    }
    status["healthy"] = _healthy(etcd, address)
    return status


def _healthy(etcd, address):
    """etcd's own ``/health``: true once the member has a leader and serves reads through it."""
    try:
        with _open(etcd, f"{_client_url(etcd, address)}/health") as answer:
            return json.loads(answer.read(10_000)).get("health") in (True, "true")
    except (OSError, ValueError, CommandExecutionError):
        return False


def _first_answer(addresses, ask):
    """``(address, answer)`` of the first of ``addresses`` (in their order) whose ``ask`` answers, or ``(None,
    errors)``. All are asked at once: a member up without a quorum holds a question for the whole ASK_TIMEOUT, and
    asked one after another the members of a cluster starting together would wait for each other in turn."""
    addresses = list(addresses)
    if not addresses:
        return None, []

    def one(address):
        try:
            return address, ask(address), None
        except CommandExecutionError as exc:
            return address, None, str(exc)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(addresses)) as pool:
        answers = list(pool.map(one, addresses))
    for address, answer, _ in answers:
        if answer is not None:
            return address, answer
    return None, [error for _, _, error in answers]


# --------------------------------------------------------------------------------------------------
# the cluster as data and as a table


def _survey(etcd):
    """Every declared member's own status (or its error), and the member list as the first to answer has it."""
    members = {}
    for name, address in etcd["members"].items():
        try:
            members[name] = dict(_member_status(etcd, address), address=address)
        except CommandExecutionError as exc:
            members[name] = {"address": address, "healthy": False, "error": str(exc)}
    _, listing = _first_answer(
        [address for name, address in etcd["members"].items() if members[name].get("healthy")],
        functools.partial(_member_list, etcd),
    )
    return members, listing if isinstance(listing, dict) else None


def _cluster_view(etcd):
    members, listing = _survey(etcd)
    ids = {row["id"]: name for name, row in members.items() if row.get("id")}
    leaders = {row.get("leader_id") for row in members.values() if row.get("leader_id") not in (None, "0")}
    cluster_ids = sorted({row["cluster_id"] for row in members.values() if row.get("cluster_id")})
    problems = [f"{name}: {row['error']}" for name, row in members.items() if row.get("error")]
    problems += [f"{name}: not healthy" for name, row in members.items() if not row.get("error") and not row["healthy"]]
    if len(cluster_ids) > 1:
        problems.append(f"the members belong to {len(cluster_ids)} clusters: {', '.join(cluster_ids)}")
    if len(leaders) > 1:
        problems.append("the members name different leaders")
    listed = {}
    if listing:
        declared = {_peer_url(etcd, address): name for name, address in etcd["members"].items()}
        for member in listing["members"]:
            urls = [declared.get(url) for url in member["peer_urls"]]
            listed[member["name"] or next((url for url in urls if url), "(unstarted)")] = member
        extra = sorted(set(listed) - set(etcd["members"]))
        missing = sorted(set(etcd["members"]) - set(listed))
        if extra:
            problems.append(f"members pillar etcd:members does not declare: {', '.join(extra)}")
        if missing:
            problems.append(f"declared in pillar but not members of the cluster: {', '.join(missing)}")
    leader_id = next(iter(leaders)) if len(leaders) == 1 else None
    for name, row in members.items():
        row["leader"] = bool(leader_id) and row.get("id") == leader_id
        row.pop("leader_id", None)
    return {
        "cluster": etcd["cluster"],
        "cluster_id": cluster_ids[0] if len(cluster_ids) == 1 else None,
        "leader": ids.get(leader_id),
        "members": members,
        "listed": sorted(listed),
        "problems": problems,
    }


def _table(view):
    rows = [
        (
            name,
            row["address"],
            "leader" if row.get("leader") else ("member" if row.get("id") else "-"),
            "healthy" if row.get("healthy") else ("down" if row.get("error") else "unhealthy"),
            str(row.get("db_size", "")),
            str(row.get("raft_index", "")),
            row.get("version") or "",
        )
        for name, row in view["members"].items()
    ]
    title = f"etcd cluster {view['cluster']} (id {view['cluster_id'] or '?'}):"
    columns = ("member", "address", "role", "health", "db size", "raft index", "version")
    lines = debian._text_table(title, columns, rows)
    return "\n".join([lines] + [f"problem: {problem}" for problem in view["problems"]])


@debian._host_errors
def etcd_status(table=False):
    """
    The etcd cluster of pillar ``etcd`` as its members report it: ``{cluster, cluster_id, leader, members: {name:
    {address, id, healthy, leader, db_size, raft_index, raft_term, version}}, listed, problems}``. A member that
    does not answer has ``error`` instead; ``listed``: the members the cluster itself lists; ``problems`` says
    what keeps it from being one healthy cluster of the declared members (empty when it is).

    table
        ``True``: the same as a text table, for people.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.etcd_status
        salt pg1 patroni_debian.etcd_status table=True --out=raw
    """
    etcd = _required_pillar()
    view = _cluster_view(etcd)
    return _table(view) if table else view


def _required_pillar():
    etcd = _pillar_etcd()
    if not etcd:
        raise SaltInvocationError("pillar etcd declares no etcd cluster for this minion; see pillar.example")
    return etcd


@debian._host_errors
def etcd_wait(timeout=120):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Waits until the etcd cluster of pillar ``etcd`` is whole: every declared member healthy, one cluster ID, and
    the cluster's member list exactly the declared members. Returns :py:func:`etcd_status`'s data; raises
    ``CommandExecutionError`` naming what is still wrong when ``timeout`` seconds pass.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.etcd_wait timeout=60
    """
    etcd = _required_pillar()
    timeout = debian._check_seconds("timeout", timeout)
    return _wait_whole(etcd, timeout)


def _wait_whole(etcd, timeout):
    last = {}

    def whole():
        last["view"] = _cluster_view(etcd)
        return last["view"] if not last["view"]["problems"] else None

    answer = debian._poll(whole, time.monotonic() + timeout, interval=0.5)
    if answer is None:
        raise CommandExecutionError(
            f"etcd cluster {etcd['cluster']} is not whole after {timeout:g} s: {'; '.join(last['view']['problems'])}"
        )
    return answer


# --------------------------------------------------------------------------------------------------
# one member: what it starts as, its file, its service


def _start_as(name, etcd):
    """``(state, initial members)`` for this member's empty data directory: ``new`` with the declared members
    when no other declared member answers as a cluster (they are being started together), ``existing`` with the
    cluster's own list when it lists this member's peer address (added by orch.etcd_member); refused when a
    cluster runs without this member, or when the members answering belong to a cluster of other members."""
    own_peer = _peer_url(etcd, etcd["members"][name])
    others = [address for member, address in etcd["members"].items() if member != name]
    address, listing = _first_answer(others, functools.partial(_member_list, etcd))
    if address is None:
        return "new", dict(etcd["members"])
    declared = {_peer_url(etcd, peer): member for member, peer in etcd["members"].items()}
    foreign = [url for member in listing["members"] for url in member["peer_urls"] if url not in declared]
    if foreign:
        raise CommandExecutionError(
            f"etcd at {address} belongs to a cluster with members pillar etcd:members does not declare "
            f"({', '.join(sorted(foreign))}): is the pillar of two etcd clusters pointing at each other? Nothing "
            "was started"
        )
    listed = [url for member in listing["members"] for url in member["peer_urls"]]
    if own_peer not in listed:
        raise CommandExecutionError(
            f"etcd cluster {etcd['cluster']} already runs (asked {address}) and does not list {name}: add it with "
            f'salt-run state.orchestrate orch.etcd_member pillar=\'{{"add": "{name}"}}\'. Nothing was started'
        )
    return "existing", {declared[url]: etcd["members"][declared[url]] for url in listed}


def _start_decision(name, etcd):
    """:py:func:`_start_as`, decided once per Salt job: the formula's validator and its running state plan the
    same member within seconds, and a decision to start ``new`` holds for a member of a cluster starting together
    (a refusal is asked again)."""
    context = globals().get("__context__")
    jid = (globals().get("__opts__") or {}).get("jid")
    if context is None or not jid:
        return _start_as(name, etcd)
    key = ("patroni_debian.etcd_start", jid, name, repr(sorted(etcd["members"].items())), etcd["cluster"])
    if key not in context:
        context[key] = _start_as(name, etcd)
    state, initial = context[key]
    return state, dict(initial)


def _scheme_change(current, etcd):
    """Why a running member may not be moved between http and https by a rewrite of its file, or None: its peers
    know it by the peer URL they listed, and a member that starts serving another scheme is cut off from them."""
    serving = str(current.get("ETCD_LISTEN_PEER_URLS", "")).split("://", 1)[0]
    wanted = "https" if etcd["tls"] else "http"
    if serving in ("http", "https") and serving != wanted:
        return (
            f"this etcd member serves its peers over {serving}, and pillar etcd:tls asks for {wanted}: a running "
            "etcd cluster is not moved between http and https by the formula (its members would lose each other). "
            f"Put etcd:tls back to {str(serving == 'https').lower()}; the move is etcd's own procedure, one member "
            "at a time (etcdctl member update with its new peer URL, then its restart), not done by the formula yet"
        )
    return None


@debian._host_errors
def tls_plan(etcd=False):
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Pillar ``patroni:tls`` checked, with the names this host's certificate carries (``CN``, ``subjectAltName``:
    host name, FQDN, its addresses, every declared VIP, ``localhost`` and loopback), or ``{}`` without TLS or with
    a pillar that does not validate (the formula's validators say what is wrong). Valid on any minion, one
    without a Patroni cluster too: ``salt/patroni/ca.sls`` makes or fetches the CA from it.

    etcd
        ``True``: the certificate of this minion's etcd member instead (its own ``cert_file`` and ``key_file``,
        which user etcd reads), or ``{}`` when it runs none over TLS (pillar ``etcd:tls``).

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.tls_plan
        salt pg1 patroni_debian.tls_plan etcd=True
    """
    etcd = debian._check_boolean("etcd", etcd)
    context, jid = globals().get("__context__"), (globals().get("__opts__") or {}).get("jid")
    # a highstate renders it up to three times (salt/etcd, and salt/patroni/ca.sls twice): once per job
    return pillar_rules._per_job(context, jid, "tls_plan", etcd, _tls_plan, globals().get("__pillar__"), etcd)


def _tls_plan(pillar, etcd):
    try:
        tls = render._check_tls(debian._pillar_get(pillar, "patroni:tls"))
        member = _pillar_etcd(pillar) if etcd else None
    except SaltInvocationError:
        return {}
    if etcd and (not member or not member["tls"] or _minion() not in member["members"]):
        return {}
    # the names of the Patroni member's certificate, every declared VIP among them: a VIP that moves to this host
    # must not change a certificate (nor restart etcd)
    try:
        patroni, pillar_etcd = debian._pillar_get(pillar, "patroni"), debian._pillar_get(pillar, "etcd")
        clusters = pillar_rules._checked_pillar(patroni, etcd=pillar_etcd).values()
    except (CommandExecutionError, SaltInvocationError):
        clusters = []  # a host of etcd alone, with no Patroni cluster: no VIP ever comes to it
    backup = debian._pillar_get(pillar, "patroni:backup") is not None and not etcd
    plan = pillar_rules._tls_certificate(tls, clusters, addresses_as_names=backup)
    if etcd and plan:
        plan.update(cert_file=member["tls"]["cert_file"], key_file=member["tls"]["key_file"])
    return plan


def _env_target(env):
    text = render._env_file_text(ENV_HEADER, env)
    return debian._Target(ENV_FILE, env, text, render._read_env_file(ENV_FILE), "root", "root", 0o644)


@debian._host_errors
def etcd_member_plan():
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    What the formula does for this minion's etcd member, deciding from pillar ``etcd`` and the host, changing
    nothing: ``{member: bool, cluster, data_dir, has_data, env, changes, renewed, start_as, error}`` (a minion that
    runs no member: ``{member, cluster, error}``, ``cluster`` None without pillar etcd). ``error``
    says why nothing may be done (an invalid pillar, a cluster of this name renamed, a member this minion runs
    that pillar no longer declares, a running cluster that does not list it, a running member moved between http
    and https); ``changes``: the keys of ``/etc/default/etcd`` that differ; ``renewed``: TLS files written since
    the running etcd started (it needs a restart to take them).

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.etcd_member_plan
    """
    name = _minion()
    try:
        etcd = _pillar_etcd()
    except SaltInvocationError as exc:
        return {"member": False, "error": f"pillar {exc}"}
    if not etcd or name not in etcd["members"]:
        error = None
        stale = _members_here()
        if stale:
            error = (
                f"this minion runs an etcd member ({', '.join(stale)}) but pillar etcd:members does not declare it: "
                'remove it with salt-run state.orchestrate orch.etcd_member pillar=\'{"remove": "' + name + "\"}'"
            )
        return {"member": False, "cluster": etcd["cluster"] if etcd else None, "error": error}
    plan = {"member": True, "cluster": etcd["cluster"], "data_dir": _data_dir(etcd), "error": None}
    stale = _members_here(but=etcd["cluster"])
    if stale:
        plan["error"] = (
            f"this host holds the data of another etcd cluster ({', '.join(stale)}), while pillar etcd:cluster is "
            f"{etcd['cluster']!r}: renaming a running etcd cluster would start an empty one beside its data. Put "
            "the name back, or remove the member with orch.etcd_member first"
        )
        return plan
    plan["has_data"] = _has_data(plan["data_dir"])
    current = render._read_env_file(ENV_FILE) or {}
    if plan["has_data"]:
        plan["error"] = _scheme_change(current, etcd)
        if plan["error"]:
            return plan
        # etcd ignores the initial-cluster settings from now on: keep what the file says, or the pillar's
        state = current.get("ETCD_INITIAL_CLUSTER_STATE", "new")
        env = _environment(name, etcd, state, dict(etcd["members"]))
        for key in ("ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE"):
            env[key] = current.get(key, env[key])
    else:
        try:
            state, initial = _start_decision(name, etcd)
        except CommandExecutionError as exc:
            plan["error"] = str(exc)
            return plan
        env = _environment(name, etcd, state, initial)
    plan["start_as"] = env["ETCD_INITIAL_CLUSTER_STATE"]
    plan["env"] = env
    plan["changes"] = sorted(key for key in set(env) | set(current) if env.get(key) != current.get(key))
    plan["renewed"] = _renewed_since_start(etcd["tls"])
    return plan


def _renewed_since_start(tls):
    """The TLS files of ``tls`` written after the running etcd started, which it may not have taken: etcd can
    keep serving the certificate it started with (etcd-io/etcd#9541), so a renewal needs a restart."""
    if not tls:
        return []
    shown = debian._run(["systemctl", "show", "--property=MainPID", "--value", UNIT], check=False).stdout.strip()
    try:
        with open(f"/proc/{int(shown)}/stat", encoding="ascii") as stat:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as stat:
            booted = next(int(line.split()[1]) for line in stat if line.startswith("btime "))
    except (ValueError, OSError, IndexError, StopIteration):
        return []  # not running: it takes the files when it starts
    started = booted + ticks / os.sysconf("SC_CLK_TCK")
    files = (tls["ca_file"], tls["cert_file"], tls["key_file"])
    return [path for path in files if os.path.exists(path) and os.stat(path).st_mtime > started + 1]


@debian._host_errors
def etcd_configure():
    """
    Plumbing: the formula and the orchestrations call it; people rarely need to.

    Writes this minion's ``/etc/default/etcd`` as :py:func:`etcd_member_plan` plans it, atomically, and returns
    the plan; refuses with the plan's error. Starts nothing.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.etcd_configure
    """
    with debian._host_lock("etcd_configure", debian.ETCD_LOCK_FILE):
        plan = etcd_member_plan()
        if plan.get("error"):
            raise CommandExecutionError(plan["error"])
        if not plan["member"]:
            raise CommandExecutionError("pillar etcd:members does not declare this minion: it runs no etcd member")
        if plan["changes"]:
            target = _env_target(plan["env"])
            os.replace(debian._stage(target), ENV_FILE)
            log.info("patroni_debian: wrote %s (changed: %s)", ENV_FILE, ", ".join(plan["changes"]))
        return plan


# --------------------------------------------------------------------------------------------------
# membership: one member at a time, never below quorum


def _healthy_cluster(etcd, leaving=None):
    """The cluster's member list, asked of a healthy member other than ``leaving``, refusing when any listed
    member is not healthy: a membership change then could cost the quorum."""
    view = _cluster_view(etcd)
    down = [name for name, row in view["members"].items() if name in view["listed"] and not row.get("healthy")]
    if down:
        raise CommandExecutionError(
            f"etcd members {', '.join(down)} are not healthy: changing the membership now would put the quorum at "
            "risk; bring them back first (patroni_debian.etcd_status says what is wrong)"
        )
    addresses = [row["address"] for name, row in view["members"].items() if name != leaving and row.get("healthy")]
    address, listing = _first_answer(addresses, functools.partial(_member_list, etcd))
    if address is None:
        raise CommandExecutionError(
            f"no healthy member of etcd cluster {etcd['cluster']} answers: {'; '.join(listing)}"
        )
    return address, listing


@debian._host_errors
def etcd_member_add(name):
    """
    Adds the member ``name`` to the running etcd cluster of pillar ``etcd`` (``member add``), which pillar
    ``etcd:members`` must already declare with its address. The member starts only when the formula runs on
    it (the orchestration ``orch.etcd_member`` does both). Refused when the cluster already lists it or any of
    its members is not healthy.

    CLI Example:

    .. code-block:: bash

        salt pg4 patroni_debian.etcd_member_add pg4
    """
    etcd = _required_pillar()
    if name not in etcd["members"]:
        raise SaltInvocationError(
            f"{name!r} is not in pillar etcd:members; declare it with its address first, then add it"
        )
    address, listing = _healthy_cluster(etcd)
    peer = _peer_url(etcd, etcd["members"][name])
    if any(peer in member["peer_urls"] for member in listing["members"]):
        raise CommandExecutionError(f"etcd cluster {etcd['cluster']} already lists {name} ({peer})")
    answer = _ask(etcd, address, "cluster/member/add", {"peerURLs": [peer]})
    log.info("patroni_debian: added etcd member %s (%s) through %s", name, peer, address)
    return {"added": name, "id": _hex((answer.get("member") or {}).get("ID")), "through": address}


@debian._host_errors
def etcd_member_remove(name, force=False):
    """
    Removes the member ``name`` from the etcd cluster of pillar ``etcd`` (``member remove``, asked of another
    healthy member); run on ``name`` itself, it also stops and disables its etcd and moves its data directory
    aside (``/var/lib/etcd/<cluster>.removed-<time>``), so it never starts again on stale data. Refused when the
    cluster does not list ``name``, when any member is not healthy, and when fewer than 3 members would remain,
    unless ``force`` is true.

    CLI Example:

    .. code-block:: bash

        salt pg3 patroni_debian.etcd_member_remove pg3
        salt pg1 patroni_debian.etcd_member_remove pg3 force=True
    """
    etcd = _required_pillar()
    force = debian._check_boolean("force", force)
    address, listing = _healthy_cluster(etcd, leaving=name)
    peers = {_peer_url(etcd, peer): member for member, peer in etcd["members"].items()}
    leaving = [m for m in listing["members"] if m["name"] == name or any(peers.get(u) == name for u in m["peer_urls"])]
    if not leaving:
        names = ", ".join(sorted(m["name"] or "(unstarted)" for m in listing["members"]))
        raise SaltInvocationError(f"etcd cluster {etcd['cluster']} has no member {name!r}; its members: {names}")
    remaining = len([m for m in listing["members"] if not m["learner"]]) - 1
    if remaining < MIN_VOTERS and not force:
        raise CommandExecutionError(
            f"removing {name} would leave {remaining} voting member(s): below {MIN_VOTERS}, one more failure loses "
            "etcd's quorum and with it every Patroni leader; add a member first, or pass force=True"
        )
    _ask(etcd, address, "cluster/member/remove", {"ID": str(int(leaving[0]["id"], 16))})
    log.info("patroni_debian: removed etcd member %s through %s", name, address)
    result = {"removed": name, "through": address, "remaining": remaining}
    if name == _minion():
        result["data_moved_to"] = _retire(etcd)
    return result


def _retire(etcd):
    """This host's removed member: etcd stopped and disabled, its data moved aside (never deleted)."""
    debian._run(["systemctl", "disable", "--now", UNIT])
    data_dir = _data_dir(etcd)
    if not os.path.exists(data_dir):
        return None
    aside = f"{data_dir}.removed-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    os.rename(data_dir, aside)
    return aside
