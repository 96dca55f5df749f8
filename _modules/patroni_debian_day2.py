"""
Day-2 operations on a running Patroni cluster of the Debian layout: its state as data and as a table,
switchover, failover, restart, reload and reinit, each through the REST API with the credentials of the
member's own config, each refusing with the reason before it changes anything.

Joins the execution module ``patroni_debian`` (``patroni_debian.switchover`` and so on). Works with Patroni
3.0.2 (bookworm) and 4.0.7 (trixie): only what both accept is sent (never the role ``master``), and what they
answer is read in either spelling.

:depends: requests (shipped with Salt)
"""

import time

import patroni_debian as debian  # the sibling door file, for its pure helpers
import patroni_debian_ops as ops  # the sibling's pure helpers: the REST client and the readings of answers

from salt.exceptions import CommandExecutionError

__virtualname__ = "patroni_debian"

# a /restart filter that matches nothing answers 503 with this text: nothing to do, not a failure
NOTHING_PENDING = "restart conditions are not satisfied"
# a replica refuses to run with a lower value than its primary: lowering one, the primary restarts first
SHARED_MEMORY_SETTINGS = (
    "max_connections",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "max_wal_senders",
    "max_worker_processes",
)
TABLE_COLUMNS = ("member", "host", "role", "state", "timeline", "lag", "pending restart", "tags")


def __virtual__():
    return ops.__virtual__()


# --------------------------------------------------------------------------------------------------
# reading the cluster


def _view(api, settings=False):
    """The cluster as seen now: ``/cluster``, each member's ``/patroni`` (None when it does not answer), the
    leader's ``/patroni``, and with ``settings`` the live dynamic settings (else empty)."""
    listing = api.call("GET", "/cluster")
    members = listing.get("members", [])
    statuses = {}
    for member in members:
        try:
            statuses[member["name"]] = ops._normalised(
                api.call("GET", "/patroni", expect=(200, 503), base=ops._rest_base(member))
            )
        except (CommandExecutionError, KeyError):
            statuses[member["name"]] = None
    leader = ops._leader_of(listing)
    return {
        "members": members,
        "statuses": statuses,
        "leader": leader,
        "leader_status": statuses.get(leader["name"]) if leader else None,
        "dynamic": _settings(api) if settings and leader else {},
    }


def _settings(api):
    live = ops._config_once(api)
    return live if isinstance(live, dict) else {}


def _lag(view, member):
    """Bytes of WAL ``member`` lacks, from the live positions (the leader's ``xlog.location`` against the
    member's received or replayed one, whichever is further); else as the DCS has it, which lags up to
    ``loop_wait`` and says ``unknown`` for a member that has not reported yet; None when neither knows."""
    if ops._leads(member):
        return 0
    own = view["statuses"].get(member["name"]) or {}
    leader_location = ((view["leader_status"] or {}).get("xlog") or {}).get("location")
    wal = own.get("xlog") or {}
    position = max(wal.get("received_location") or 0, wal.get("replayed_location") or 0)
    if isinstance(leader_location, int) and position:
        return max(0, leader_location - position)
    lag = member.get("lag")
    return lag if isinstance(lag, int) else None


def _rows(view):
    """One row per member for people and for states: role, state, timeline, lag, pending restart, tags."""
    rows = {}
    for member in sorted(view["members"], key=lambda m: m["name"]):
        lag = _lag(view, member)
        rows[member["name"]] = {
            "host": member.get("host"),
            "port": member.get("port"),
            "role": member.get("role"),
            "state": member.get("state"),
            "timeline": member.get("timeline"),
            "lag": "unknown" if lag is None else lag,
            "pending_restart": _pending(view, member),
            "tags": member.get("tags") or {},
        }
    return rows


def _pending(view, member):
    own = view["statuses"].get(member["name"]) or {}
    return bool(member.get("pending_restart") or own.get("pending_restart"))


def _unhealthy(view):
    """``{member: why}`` for each member not running as the leader or a replica streaming on its timeline, and
    the cluster's own problems (no single leader, a member on another timeline) under the key None."""
    why = {}
    for member in view["members"]:
        own = view["statuses"].get(member["name"])
        reason = (
            "its Patroni does not answer" if own is None else ops._health(member["name"], own, view["leader_status"])
        )
        if reason:
            why[member["name"]] = reason
    problems = ops._cluster_problems(view["members"], view["leader"] or {})
    if problems:
        why[None] = "; ".join(problems)
    return why


def _table(scope, members):
    rows = [
        (
            name,
            f"{row['host']}:{row['port']}",
            str(row["role"]),
            str(row["state"]),
            str(row["timeline"]),
            str(row["lag"]),
            "yes" if row["pending_restart"] else "",
            ",".join(f"{key}={value}" for key, value in sorted(row["tags"].items())),
        )
        for name, row in members.items()
    ]
    return debian._text_table(f"Cluster {scope}:", TABLE_COLUMNS, rows)


@debian._host_errors
def status(version, cluster, table=False):
    """
    The cluster as its members report it, through this member's REST API: ``{scope, leader, timeline,
    pending_restart, problems, members: {name: {host, port, role, state, timeline, lag, pending_restart,
    tags}}}``. ``problems`` says what keeps it from being one healthy cluster (no single leader, a member not
    running, a replica on another timeline); empty when healthy. ``lag``: bytes of WAL a member lacks, from
    the live positions where its Patroni answers, else as the DCS has it (``unknown`` until it reports).

    table
        ``True``: the same as a text table, for people.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.status 15 main
        salt pg1 patroni_debian.status 15 main table=True --out=raw
    """
    api = ops._api(version, cluster)
    view = _view(api)
    rows = _rows(view)
    leader = view["leader"] or {}
    result = {
        "scope": api.scope,
        "leader": leader.get("name"),
        "timeline": leader.get("timeline"),
        "pending_restart": any(row["pending_restart"] for row in rows.values()),
        "problems": ops._cluster_problems(view["members"], leader),
        "members": rows,
    }
    return _table(api.scope, rows) if debian._check_boolean("table", table) else result


# --------------------------------------------------------------------------------------------------
# switchover and failover


def _why_not_candidate(name, view):
    """Why member ``name`` cannot take over now, or None when it can: it must be a running replica streaming
    from the leader on its timeline, without ``nofailover``, within ``maximum_lag_on_failover``, and the
    synchronous standby when the cluster is in synchronous mode."""
    member = next((m for m in view["members"] if m["name"] == name), None)
    if member is None:
        return f"{name} is no member of the cluster"
    if ops._leads(member):
        return f"{name} is the leader already"
    if (member.get("tags") or {}).get("nofailover"):
        return f"{name} is tagged nofailover"
    own = view["statuses"].get(name)
    if own is None:
        return f"{name}'s Patroni does not answer"
    why = ops._health(name, own, view["leader_status"])
    if why is not None:
        return f"{name} is not streaming on the leader's timeline: {why}"
    limit = view["dynamic"].get("maximum_lag_on_failover", 1048576)
    lag = _lag(view, member)
    if lag is None:
        return f"{name}'s lag is unknown"
    if lag > limit:
        return f"{name} lags {lag} bytes behind, more than maximum_lag_on_failover ({limit})"
    if view["dynamic"].get("synchronous_mode") and member.get("role") != "sync_standby":
        return f"{name} is not the synchronous standby, and the cluster is in synchronous mode"
    return None


def _best_candidate(view):
    """The eligible member with the least lag (the synchronous standby in synchronous mode), or an error
    listing why each member is not eligible."""
    reasons, eligible = [], []
    for member in view["members"]:
        if ops._leads(member):
            continue
        why = _why_not_candidate(member["name"], view)
        if why is None:
            eligible.append((_lag(view, member), member["name"]))
        else:
            reasons.append(why)
    if not eligible:
        raise CommandExecutionError("no member can take over: " + ("; ".join(reasons) or "the leader is alone"))
    return min(eligible)[1]


def _healthy_leader(view, scope):
    leader = view["leader"]
    if leader is None:
        raise CommandExecutionError(f"{scope}: no member holds the leader key; a failover is what it needs")
    if view["leader_status"] is None or view["leader_status"].get("role") != "primary":
        raise CommandExecutionError(f"{scope}: the leader {leader['name']} does not answer as a running primary")
    return leader


SWITCHOVER_TRIES = 5


def _asked_to_switch_over(api, leader, body, timeout):
    """Patroni's answer to ``POST /switchover``. Its 412 "no good candidates" is its view of a moment (it asks
    each candidate's REST API with a 2 s timeout, which a member restarted seconds ago on a busy host can miss) and
    changes nothing: asked again, up to SWITCHOVER_TRIES times, while this module's own view still finds the
    candidate good."""
    base, tries = ops._rest_base(leader), 1
    while True:
        try:
            return api.call("POST", "/switchover", body, expect=(200, 202, 503), base=base, timeout=timeout)
        except CommandExecutionError as exc:
            if "HTTP 412" not in str(exc) or tries >= SWITCHOVER_TRIES:
                raise
        tries += 1
        time.sleep(2)
        why = _why_not_candidate(body["candidate"], _view(api, settings=True))
        if why is not None:
            raise CommandExecutionError(f"{api.scope}: switchover to {body['candidate']} refused: {why}")


def _raise_when_failed(scope, what, answer):
    """Patroni answers 503 both when it failed and when it could not tell in time; only the first is final
    (the second is settled by watching who leads)."""
    if "failed" in str(answer).lower():
        raise CommandExecutionError(f"{scope}: {what}: Patroni says: {answer}")


def _wait_for_leader(api, candidate, timeout, started):
    """Poll ``/cluster`` until ``candidate`` leads as a running primary; the new leader's row."""
    seen = "no answer yet"

    def probe():
        nonlocal seen
        try:
            view = _view(api)
        except CommandExecutionError as exc:
            seen = str(exc)
            return None
        leader = view["leader"] or {}
        own = view["statuses"].get(leader.get("name")) or {}
        if leader.get("name") == candidate and own.get("role") == "primary" and own.get("state") == "running":
            return leader
        seen = f"the leader is {leader.get('name')} ({own.get('role')}, {own.get('state')})"
        return None

    leader = debian._poll(probe, started + timeout)
    if leader is None:
        raise CommandExecutionError(f"{api.scope}: {candidate} did not lead within {timeout:g} s: {seen}")
    return leader


def _wait_all_streaming(api, timeout, started):
    """Poll until every member runs, the replicas streaming from the leader on its timeline, as they say and
    as the DCS says (a member records its new state there only in its next loop); what is still not so when
    ``timeout`` ends (empty: all is)."""
    pending = ["(not looked yet)"]

    def probe():
        nonlocal pending
        try:
            pending = [name or problems for name, problems in _unhealthy(_view(api)).items()]
        except CommandExecutionError:
            pending = ["(the cluster does not answer)"]
        return None if pending else []

    debian._poll(probe, started + timeout)
    return pending


@debian._host_errors
def switchover(version, cluster, candidate=None, scheduled_at=None, timeout=120):
    """
    Hand leadership over on purpose, to ``candidate`` or to the best member: streaming from the leader on its
    timeline, the least lag, within ``maximum_lag_on_failover``, not tagged ``nofailover``, and the synchronous
    standby in synchronous mode. A candidate that is none of these is refused with the reason before anything
    changes, as is a cluster without a healthy leader (that needs :py:func:`failover`).

    The switchover is confirmed by the new leader's name and role in the cluster, never by the HTTP status
    alone; then the run waits until every member streams again (the old leader rejoins as a replica).
    Returns ``{old_leader, new_leader, timeline, seconds, rejoined}``; ``rejoined`` is False when a member
    did not stream again within ``timeout`` (the switchover itself is done then).

    candidate
        Member name to hand over to. Default: the best one, as above.

    scheduled_at
        ISO 8601 time with zone (``2026-12-01T03:00+00:00``): Patroni does it then; returns at once.

    timeout
        Seconds to wait for the new leader and for every member to stream again. Default 120.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.switchover 15 main
        salt pg1 patroni_debian.switchover 15 main candidate=pg3
        salt pg1 patroni_debian.switchover 15 main scheduled_at=2026-12-01T03:00+00:00
    """
    timeout = debian._check_seconds("timeout", timeout)
    api = ops._acting_api(version, cluster)
    view = _view(api, settings=True)  # maximum_lag_on_failover, synchronous_mode
    leader = _healthy_leader(view, api.scope)
    if candidate is None:
        candidate = _best_candidate(view)
    else:
        candidate = str(candidate)
        why = _why_not_candidate(candidate, view)
        if why is not None:
            raise CommandExecutionError(f"{api.scope}: switchover to {candidate} refused: {why}")
    body = {"leader": leader["name"], "candidate": candidate}
    if scheduled_at is not None:
        body["scheduled_at"] = str(scheduled_at)
    started = time.monotonic()
    answer = _asked_to_switch_over(api, leader, body, timeout)
    _raise_when_failed(api.scope, "switchover", answer)
    if scheduled_at is not None:
        return {
            "old_leader": leader["name"],
            "new_leader": candidate,
            "scheduled_at": str(scheduled_at),
            "answer": answer,
        }
    new = _wait_for_leader(api, candidate, timeout, started)
    pending = _wait_all_streaming(api, timeout, started)
    return {
        "old_leader": leader["name"],
        "new_leader": new["name"],
        "timeline": new.get("timeline"),
        "seconds": round(time.monotonic() - started, 1),
        "rejoined": not pending,
        **({"not_streaming": pending} if pending else {}),
    }


@debian._host_errors
def failover(version, cluster, candidate, force=False, timeout=120):
    """
    Make ``candidate`` the leader when the cluster has no healthy leader. Refused while a healthy leader
    exists (use :py:func:`switchover`, which checks the candidate and keeps every acknowledged write), unless
    ``force=True``; refused for a candidate that does not answer or is tagged ``nofailover``. Confirmed by
    the candidate leading as a running primary. Returns ``{old_leader, new_leader, timeline, seconds}``.

    CLI Example:

    .. code-block:: bash

        salt pg2 patroni_debian.failover 15 main candidate=pg2
    """
    timeout = debian._check_seconds("timeout", timeout)
    force = debian._check_boolean("force", force)
    candidate = str(candidate)
    api = ops._acting_api(version, cluster)
    view = _view(api)
    leader = view["leader"]
    if leader is not None and view["leader_status"] and view["leader_status"].get("role") == "primary" and not force:
        raise CommandExecutionError(
            f"{api.scope}: failover refused: {leader['name']} leads and is healthy; use patroni_debian.switchover "
            "(or force=True)"
        )
    member = next((m for m in view["members"] if m["name"] == candidate), None)
    if member is None or view["statuses"].get(candidate) is None:
        raise CommandExecutionError(f"{api.scope}: failover to {candidate} refused: it does not answer")
    if (member.get("tags") or {}).get("nofailover"):
        raise CommandExecutionError(f"{api.scope}: failover to {candidate} refused: it is tagged nofailover")
    started = time.monotonic()
    answer = api.call(
        "POST", "/failover", {"candidate": candidate}, expect=(200, 503), base=ops._rest_base(member), timeout=timeout
    )
    _raise_when_failed(api.scope, "failover", answer)
    new = _wait_for_leader(api, candidate, timeout, started)
    return {
        "old_leader": leader["name"] if leader else None,
        "new_leader": new["name"],
        "timeline": new.get("timeline"),
        "seconds": round(time.monotonic() - started, 1),
    }


# --------------------------------------------------------------------------------------------------
# one member: restart, reload, reinit


@debian._host_errors
def restart(version, cluster, pending_only=True, timeout=120):
    """
    Restart this member's PostgreSQL through Patroni (``POST /restart``), never the ``patroni@`` unit (which
    costs a failover on the leader). With ``pending_only`` (the default) only when a setting waits for a
    restart: nothing pending is a no-op, not an error. A leader restarts in place, keeping its leadership.
    Then waits until the member is healthy again. Returns ``{member, restarted, role, seconds}``.

    CLI Example:

    .. code-block:: bash

        salt pg2 patroni_debian.restart 15 main
        salt pg2 patroni_debian.restart 15 main pending_only=False
    """
    timeout = debian._check_seconds("timeout", timeout)
    body = {"restart_pending": True} if debian._check_boolean("pending_only", pending_only) else {}
    api = ops._acting_api(version, cluster)
    started = time.monotonic()
    answer = api.call("POST", "/restart", body, expect=(200, 503), timeout=timeout)
    if NOTHING_PENDING in str(answer):
        return {"member": api.name, "restarted": False, "comment": "nothing waits for a restart"}
    if "restarted successfully" not in str(answer).lower():
        raise CommandExecutionError(f"{api.scope} on {api.name}: restart failed: {answer}")
    healthy = __salt__["patroni_debian.wait_healthy"](version, cluster, timeout=timeout)
    return {
        "member": api.name,
        "restarted": True,
        "role": healthy["role"],
        "seconds": round(time.monotonic() - started, 1),
    }


@debian._host_errors
def reload(version, cluster):
    """
    Have this member's Patroni re-read its config file and apply it (``POST /reload``; PostgreSQL reloads
    where a setting changed). Returns ``{member, reloaded}``.

    CLI Example:

    .. code-block:: bash

        salt '*' patroni_debian.reload 15 main
    """
    api = ops._api(version, cluster)
    api.call("POST", "/reload", expect=(200, 202))
    return {"member": api.name, "reloaded": True}


@debian._host_errors
def reinit(version, cluster, timeout=300):
    """
    Rebuild this member's data from the leader (``POST /reinitialize``): a replica only; on the leader it is
    refused, as it would destroy the cluster's only primary. Waits until the member streams again. Returns
    ``{member, leader, timeline, seconds}``.

    CLI Example:

    .. code-block:: bash

        salt pg3 patroni_debian.reinit 15 main
    """
    timeout = debian._check_seconds("timeout", timeout)
    api = ops._acting_api(version, cluster)
    own = ops._own_status(api)
    leader = ops._leader_of(api.call("GET", "/cluster"))
    if own.get("role") == "primary" or (leader and leader["name"] == api.name):
        raise CommandExecutionError(
            f"{api.scope}: reinit refused: {api.name} is the leader; switch over first, then reinit it"
        )
    if leader is None:
        raise CommandExecutionError(f"{api.scope}: reinit refused: no leader to copy the data from")
    started = time.monotonic()
    api.call("POST", "/reinitialize", {"force": True}, expect=(200,), timeout=timeout)
    _wait_new_postmaster(api, own.get("postmaster_start_time"), timeout, started)
    healthy = __salt__["patroni_debian.wait_healthy"](version, cluster, timeout=timeout)
    return {
        "member": api.name,
        "leader": healthy["leader"],
        "timeline": healthy["timeline"],
        "seconds": round(time.monotonic() - started, 1),
    }


def _wait_new_postmaster(api, before, timeout, started):
    """Patroni reinitialises in its own loop after answering: wait until this member runs a PostgreSQL
    started after ``before`` (until then it is the old one, healthy as ever)."""

    def probe():
        try:
            now = ops._own_status(api).get("postmaster_start_time")
        except CommandExecutionError:
            now = None  # Patroni busy rebuilding
        return True if now and now != before else None

    if debian._poll(probe, started + timeout) is None:
        raise CommandExecutionError(f"{api.scope} on {api.name}: reinit did not finish within {timeout:g} s")


# --------------------------------------------------------------------------------------------------
# the whole cluster: a rolling restart


def _lowered_settings(api, dynamic):
    """The shared-memory settings the live config sets below what this member's PostgreSQL runs with: a
    replica must not run with less than its primary, so for these the primary restarts first."""
    wanted = ((dynamic.get("postgresql") or {}).get("parameters")) or {}
    names = [name for name in SHARED_MEMORY_SETTINGS if name in wanted]
    if not names:
        return []
    listed = ", ".join(f"'{name}'" for name in names)
    proc = ops._local_sql(ops._config(api.scope), f"SELECT name, setting FROM pg_settings WHERE name IN ({listed})")
    if proc.returncode:
        raise CommandExecutionError(
            f"{api.scope} on {api.name}: cannot read the running settings: {proc.stderr.strip()}"
        )
    running = dict(line.split("|", 1) for line in proc.stdout.split())
    lowered = []
    for name in names:
        try:
            if int(str(wanted[name])) < int(running[name]):
                lowered.append(name)
        except (KeyError, ValueError):
            continue  # not a plain number: PostgreSQL itself will say what it makes of it
    return lowered


class _RollingRestart:
    """One cluster's rolling restart, driven through the members' REST APIs: every step is gated on every
    member being healthy, and a member that is not stops the run before another goes down."""

    def __init__(self, version, cluster, timeout):
        self.version, self.cluster, self.timeout = version, cluster, timeout
        self.api = ops._acting_api(version, cluster)
        self.done = []
        self.expected = None  # the members at the start: one that drops out of the list is lost, not fine

    def stop(self, why):
        done = ", ".join(self.done) or "no member"
        raise CommandExecutionError(
            f"{self.api.scope}: rolling restart stopped: {why}; restarted so far: {done}; nothing else was restarted"
        )

    def healthy_view(self, settings=False):
        view = _view(self.api, settings=settings)
        why = self.unhealthy(view)
        if why:
            self.stop("not every member is healthy, and a restart now could take a second one down: " + _reasons(why))
        return view

    def restart(self, name):
        """Restart member ``name`` through its own REST API, then wait until it streams (or leads) again;
        any other member turning unhealthy meanwhile stops the run at once."""
        view = self.healthy_view()
        member = next(m for m in view["members"] if m["name"] == name)
        if not _pending(view, member):
            return
        before = (view["statuses"].get(name) or {}).get("postmaster_start_time")
        started = time.monotonic()
        try:
            answer = self.api.call(
                "POST",
                "/restart",
                {"restart_pending": True},
                expect=(200, 503),
                base=ops._rest_base(member),
                timeout=self.timeout,
            )
        except CommandExecutionError as exc:
            self.stop(f"{name} did not restart: {exc}")
        if NOTHING_PENDING in str(answer):
            return
        if "restarted successfully" not in str(answer).lower():
            self.stop(f"{name}: Patroni says: {answer}")
        self.done.append(name)
        self.wait_back(name, before, started)

    def unhealthy(self, view):
        """:py:func:`_unhealthy`, and each member of the start that the cluster no longer lists (its member key
        expired: its Patroni stopped), which would otherwise look like a healthy, smaller cluster."""
        listed = {member["name"] for member in view["members"]}
        if self.expected is None:
            self.expected = listed
        why = _unhealthy(view)
        for name in sorted(self.expected - listed):
            why[name] = "it is no longer listed in the cluster (its Patroni stopped)"
        return why

    def wait_back(self, name, before, started):
        why = {name: "(not looked yet)"}

        def probe():
            nonlocal why
            try:
                view = _view(self.api)
            except CommandExecutionError as exc:
                why = {None: str(exc)}
                return None
            why = self.unhealthy(view)
            # while the primary restarts its replicas stop streaming; a member that goes down is another matter
            others = {
                other: reason
                for other, reason in why.items()
                if other not in (name, None) and (view["statuses"].get(other) or {}).get("state") != "running"
            }
            if others:
                self.stop(f"while {name} restarted: " + _reasons(others))
            now = (view["statuses"].get(name) or {}).get("postmaster_start_time")
            return True if not why and now and now != before else None

        if debian._poll(probe, started + self.timeout) is None:
            self.stop(f"{name} was not healthy again within {self.timeout:g} s: " + _reasons(why))

    def run(self):
        started = time.monotonic()
        view = self.healthy_view(settings=True)
        leader = _healthy_leader(view, self.api.scope)["name"]
        pending = sorted(m["name"] for m in view["members"] if _pending(view, m))
        result = {"leader": leader, "pending": pending, "restarted": self.done, "switchover": None}
        if not pending:
            return {**result, "order": None, "comment": "nothing waits for a restart", "seconds": 0}
        replicas = [name for name in pending if name != leader]
        lowered = _lowered_settings(self.api, view["dynamic"])
        if lowered:
            # a replica keeps the primary's higher value until the primary runs with the lower one
            result["order"] = f"primary first: {', '.join(lowered)} decreased"
            for name in [leader] + replicas:
                self.restart(name)
        else:
            result["order"] = "replicas first, then a switchover"
            for name in replicas:
                self.restart(name)
            if leader in pending:
                self.healthy_view()
                switched = switchover(self.version, self.cluster, timeout=self.timeout)
                if not switched["rejoined"]:
                    self.stop(f"after the switchover to {switched['new_leader']}: {switched['not_streaming']}")
                result["switchover"] = {key: switched[key] for key in ("old_leader", "new_leader", "seconds")}
                self.restart(leader)  # a no-op when its demotion applied the settings already
        # a replica restarted before its primary ran with a lowered setting needs a second restart
        left = self.wait_cleared(view["dynamic"])
        for name in left:
            self.restart(name)
        result["still_pending"] = self.wait_cleared(view["dynamic"])
        return {
            **result,
            "leader": self.healthy_view()["leader"]["name"],
            "seconds": round(time.monotonic() - started, 1),
        }

    def wait_cleared(self, dynamic):
        """The members still waiting for a restart once their Patroni had a loop to notice the restart (the
        flag is computed in its loop, and the DCS copy lags one more)."""
        left = []

        def probe():
            nonlocal left
            view = self.healthy_view()
            left = sorted(m["name"] for m in view["members"] if _pending(view, m))
            return None if left else []

        debian._poll(probe, time.monotonic() + 2 * float(dynamic.get("loop_wait", 10)) + 3)
        return left


def _reasons(why):
    return "; ".join(reason if name is None else f"{name}: {reason}" for name, reason in why.items())


def _scopes_led_here(version, cluster, clusters):
    """The clusters this call drives: the one named, else each pillar cluster whose leader is this member."""
    if version is not None or cluster is not None:
        return [(ops._scope(version, cluster), version, cluster)]
    chosen = []
    for scope, version, cluster in ops._pillar_scopes(clusters, __pillar__):
        api = ops._api(version, cluster)
        leader = ops._leader_of(api.call("GET", "/cluster"))
        if leader is None:
            raise CommandExecutionError(f"{scope}: no member holds the leader key; nothing was restarted")
        if leader["name"] == api.name:
            chosen.append((scope, version, cluster))
    return chosen


@debian._host_errors
def rolling_restart(version=None, cluster=None, clusters=None, timeout=300):
    """
    Restart, one member at a time, every PostgreSQL of the cluster that waits for a restart
    (``pending_restart``), through Patroni's REST API: never the ``patroni@`` unit, which costs a failover.
    Replicas go one by one, each gated on streaming again on the leader's timeline; then a switchover to the
    best gated candidate; then the old leader, when its demotion did not apply the change already. When the
    change decreases ``max_connections``, ``max_prepared_transactions``, ``max_locks_per_transaction``,
    ``max_wal_senders`` or ``max_worker_processes``, the primary restarts first, in place (a replica cannot
    run with less than its primary), then the replicas.

    At most one member is down at any time: every step starts only when every member is healthy, and a member
    that turns unhealthy meanwhile (a machine lost, a replica that does not come back) stops the run at once
    with the reason, before another member is restarted. Nothing pending is a no-op.

    With ``version`` and ``cluster``: that cluster. Without: every cluster of this minion's pillar (or those
    named in ``clusters``) that this member leads, so that one member drives each cluster (the
    ``orch.patroni_restart`` orchestration calls it on every member).

    Returns ``{scope: {leader, pending, order, restarted, switchover, still_pending, seconds}}``.

    CLI Example:

    .. code-block:: bash

        salt pg1 patroni_debian.rolling_restart 15 main
        salt -I 'patroni:role:*' patroni_debian.rolling_restart
    """
    timeout = debian._check_seconds("timeout", timeout)
    return {
        scope: _RollingRestart(version, cluster, timeout).run()
        for scope, version, cluster in _scopes_led_here(version, cluster, clusters)
    }
