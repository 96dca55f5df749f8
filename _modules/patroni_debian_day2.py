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

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "patroni_debian"

# a /restart filter that matches nothing answers 503 with this text: nothing to do, not a failure
NOTHING_PENDING = "restart conditions are not satisfied"
TABLE_COLUMNS = ("member", "host", "role", "state", "timeline", "lag", "pending restart", "tags")


def __virtual__():
    return ops.__virtual__()


# --------------------------------------------------------------------------------------------------
# reading the cluster


def _base(member):
    """The REST base URL of a ``/cluster`` member (its ``api_url`` without the ``/patroni`` path)."""
    return member["api_url"].rsplit("/", 1)[0]


def _view(api, settings=False):
    """The cluster as seen now: ``/cluster``, each member's ``/patroni`` (None when it does not answer), the
    leader's ``/patroni``, and with ``settings`` the live dynamic settings (else empty)."""
    listing = api.call("GET", "/cluster")
    members = listing.get("members", [])
    statuses = {}
    for member in members:
        try:
            statuses[member["name"]] = ops._normalised(
                api.call("GET", "/patroni", expect=(200, 503), base=_base(member))
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
    if member.get("role") in ("leader", "standby_leader"):
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
        own = view["statuses"].get(member["name"]) or {}
        lag = _lag(view, member)
        rows[member["name"]] = {
            "host": member.get("host"),
            "port": member.get("port"),
            "role": member.get("role"),
            "state": member.get("state"),
            "timeline": member.get("timeline"),
            "lag": "unknown" if lag is None else lag,
            "pending_restart": bool(member.get("pending_restart") or own.get("pending_restart")),
            "tags": member.get("tags") or {},
        }
    return rows


def _table(scope, rows):
    cells = [TABLE_COLUMNS] + [
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
        for name, row in rows.items()
    ]
    widths = [max(len(line[column]) for line in cells) for column in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    return "\n".join([f"Cluster {scope}:"] + lines)


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
    return _table(api.scope, rows) if _boolean("table", table) else result


def _boolean(name, value):
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "yes", "1"):
        return True
    if str(value).lower() in ("false", "no", "0"):
        return False
    raise SaltInvocationError(f"{name}: {value!r} is not a boolean")


def _seconds(name, value):
    seconds = debian._check_seconds(name, value)
    if seconds <= 0:
        raise SaltInvocationError(f"{name}: {value!r} must be more than 0 seconds")
    return seconds


# --------------------------------------------------------------------------------------------------
# switchover and failover


def _why_not_candidate(name, view):
    """Why member ``name`` cannot take over now, or None when it can: it must be a running replica streaming
    from the leader on its timeline, without ``nofailover``, within ``maximum_lag_on_failover``, and the
    synchronous standby when the cluster is in synchronous mode."""
    member = next((m for m in view["members"] if m["name"] == name), None)
    if member is None:
        return f"{name} is no member of the cluster"
    if member.get("role") in ("leader", "standby_leader"):
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
        if member.get("role") in ("leader", "standby_leader"):
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


def _raise_when_failed(scope, what, answer):
    """Patroni answers 503 both when it failed and when it could not tell in time; only the first is final
    (the second is settled by watching who leads)."""
    if "failed" in str(answer).lower():
        raise CommandExecutionError(f"{scope}: {what}: Patroni says: {answer}")


def _wait_for_leader(api, candidate, timeout, started):
    """Poll ``/cluster`` until ``candidate`` leads as a running primary; the new leader's row."""
    seen = "no answer yet"
    while time.monotonic() - started < timeout:
        try:
            view = _view(api)
            leader = view["leader"] or {}
            own = view["statuses"].get(leader.get("name")) or {}
            if leader.get("name") == candidate and own.get("role") == "primary" and own.get("state") == "running":
                return leader
            seen = f"the leader is {leader.get('name')} ({own.get('role')}, {own.get('state')})"
        except CommandExecutionError as exc:
            seen = str(exc)
        time.sleep(0.5)
    raise CommandExecutionError(f"{api.scope}: {candidate} did not lead within {timeout:g} s: {seen}")


def _wait_all_streaming(api, timeout, started):
    """Poll until every member runs, the replicas streaming from the leader on its timeline, as they say and
    as the DCS says (a member records its new state there only in its next loop); what is still not so when
    ``timeout`` ends (empty: all is)."""
    pending = ["(not looked yet)"]
    while time.monotonic() - started < timeout:
        try:
            view = _view(api)
            pending = [
                m["name"]
                for m in view["members"]
                if ops._health(m["name"], view["statuses"].get(m["name"]) or {}, view["leader_status"])
            ] + ops._cluster_problems(view["members"], view["leader"] or {})
        except CommandExecutionError:
            pending = ["(the cluster does not answer)"]
        if not pending:
            return []
        time.sleep(0.5)
    return pending


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
    timeout = _seconds("timeout", timeout)
    api = ops._api(version, cluster)
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
    answer = api.call("POST", "/switchover", body, expect=(200, 202, 503), base=_base(leader), timeout=timeout)
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
    timeout = _seconds("timeout", timeout)
    force = _boolean("force", force)
    candidate = str(candidate)
    api = ops._api(version, cluster)
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
        "POST", "/failover", {"candidate": candidate}, expect=(200, 503), base=_base(member), timeout=timeout
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
    timeout = _seconds("timeout", timeout)
    body = {"restart_pending": True} if _boolean("pending_only", pending_only) else {}
    api = ops._api(version, cluster)
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


def reinit(version, cluster, timeout=300):
    """
    Rebuild this member's data from the leader (``POST /reinitialize``): a replica only; on the leader it is
    refused, as it would destroy the cluster's only primary. Waits until the member streams again. Returns
    ``{member, leader, timeline, seconds}``.

    CLI Example:

    .. code-block:: bash

        salt pg3 patroni_debian.reinit 15 main
    """
    timeout = _seconds("timeout", timeout)
    api = ops._api(version, cluster)
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
    while time.monotonic() - started < timeout:
        try:
            now = ops._own_status(api).get("postmaster_start_time")
        except CommandExecutionError:
            now = None  # Patroni busy rebuilding
        if now and now != before:
            return
        time.sleep(0.5)
    raise CommandExecutionError(f"{api.scope} on {api.name}: reinit did not finish within {timeout:g} s")
