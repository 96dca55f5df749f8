"""The day-2 decisions on answers captured from real Patroni: 3.0.2 (bookworm) and 4.0.7 (trixie).

``captures/<release>-<state>.json`` hold ``/cluster``, ``/config`` and each member's ``/patroni`` of a 3-member
cluster the rollout made, in the states the decisions judge (``captures/capture.py`` made them, in the lab).
The answers reach the module's own reading (``_view``) through a replay of the REST calls it makes; the lab
keeps one real case per family (tests/systemd_machines).
"""

import json
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "_modules"))

import patroni_debian_day2 as day2  # noqa: E402
import patroni_debian_ops as ops  # noqa: E402

RELEASES = ("bookworm", "trixie")
MAXIMUM_LAG = 1048576  # Patroni's default maximum_lag_on_failover


class Replay:
    """The module's REST client, answering from a capture: ``/cluster`` and ``/config`` as pg1 gave them, and
    ``/patroni`` as each member did (a member that did not answer: an error, as over the network)."""

    scope = "captured"

    def __init__(self, capture):
        self.capture = capture
        self.bases = {ops._rest_base(m): m["name"] for m in capture["cluster"]["members"]}

    def call(self, method, path, body=None, expect=(200,), base=None, timeout=None):
        assert method == "GET", (method, path)
        if path == "/patroni":
            answer = self.capture["patroni"].get(self.bases[base])
            if answer is None:
                raise ops.CommandExecutionError(f"{base}: Patroni does not answer")
            return answer
        return self.capture[path.lstrip("/")]


def captured(release, state):
    return json.loads((HERE / "captures" / f"{release}-{state}.json").read_text())


def view(release, state, settings=True, silent=()):
    capture = captured(release, state)
    for name in silent:  # a member whose Patroni stopped answering since the DCS heard from it
        capture["patroni"][name] = None
    return day2._view(Replay(capture), settings=settings)


def roles(view_):
    leader = view_["leader"]["name"]
    replicas = sorted(m["name"] for m in view_["members"] if m["name"] != leader)
    return leader, replicas


@pytest.mark.parametrize("release", RELEASES)
def test_a_healthy_cluster_has_no_problem_and_every_replica_may_take_over(release):
    healthy = view(release, "healthy")
    leader, replicas = roles(healthy)
    assert healthy["leader_status"]["role"] == "primary"  # Patroni 3 says master: read as primary
    assert day2._unhealthy(healthy) == {}
    assert day2._why_not_candidate(leader, healthy) == f"{leader} is the leader already"
    assert day2._why_not_candidate("pg9", healthy) == "pg9 is no member of the cluster"
    assert [day2._why_not_candidate(name, healthy) for name in replicas] == [None, None]
    assert day2._best_candidate(healthy) in replicas
    assert all(day2._lag(healthy, m) == 0 for m in healthy["members"] if m["name"] == leader)


@pytest.mark.parametrize("release", RELEASES)
def test_a_member_whose_patroni_does_not_answer_is_unhealthy_and_never_a_candidate(release):
    healthy = view(release, "healthy")
    _, (first, second) = roles(healthy)
    silent = view(release, "healthy", silent=(first,))
    assert day2._unhealthy(silent) == {first: "its Patroni does not answer"}
    assert day2._why_not_candidate(first, silent) == f"{first}'s Patroni does not answer"
    assert day2._best_candidate(silent) == second


@pytest.mark.parametrize("release", RELEASES)
def test_a_replica_tagged_nofailover_is_never_chosen(release):
    tagged = view(release, "nofailover")
    _, replicas = roles(tagged)
    (name,) = [m["name"] for m in tagged["members"] if (m.get("tags") or {}).get("nofailover")]
    assert day2._why_not_candidate(name, tagged) == f"{name} is tagged nofailover"
    assert day2._best_candidate(tagged) == next(other for other in replicas if other != name)
    assert day2._unhealthy(tagged) == {}  # a tag is no illness


@pytest.mark.parametrize("release", RELEASES)
def test_a_lagging_replica_is_refused_with_its_lag_and_the_other_is_chosen(release):
    lagging = view(release, "lagging")
    _, replicas = roles(lagging)
    lags = {name: day2._lag(lagging, next(m for m in lagging["members"] if m["name"] == name)) for name in replicas}
    behind = max(lags, key=lags.get)
    assert lags[behind] > MAXIMUM_LAG, lags  # 4 MB written while its WAL receiver was stopped
    assert day2._why_not_candidate(behind, lagging) == (
        f"{behind} lags {lags[behind]} bytes behind, more than maximum_lag_on_failover ({MAXIMUM_LAG})"
    )
    assert day2._best_candidate(lagging) == next(name for name in replicas if name != behind)


@pytest.mark.parametrize("release", RELEASES)
def test_a_stopped_member_is_no_member_and_the_rest_is_healthy(release):
    stopped = view(release, "member_stopped")
    listed = sorted(m["name"] for m in stopped["members"])
    (gone,) = {"pg1", "pg2", "pg3"} - set(listed)
    assert len(listed) == 2 and day2._unhealthy(stopped) == {}
    assert day2._why_not_candidate(gone, stopped) == f"{gone} is no member of the cluster"
    _, (replica,) = roles(stopped)
    assert day2._best_candidate(stopped) == replica


@pytest.mark.parametrize("release", RELEASES)
def test_in_synchronous_mode_only_the_synchronous_standby_may_take_over(release):
    synchronous = view(release, "synchronous")
    assert synchronous["dynamic"]["synchronous_mode"] is True
    (standby,) = [m["name"] for m in synchronous["members"] if m["role"] == "sync_standby"]
    _, replicas = roles(synchronous)
    (other,) = [name for name in replicas if name != standby]
    assert day2._why_not_candidate(standby, synchronous) is None
    assert day2._why_not_candidate(other, synchronous) == (
        f"{other} is not the synchronous standby, and the cluster is in synchronous mode"
    )
    assert day2._best_candidate(synchronous) == standby


@pytest.mark.parametrize("release", RELEASES)
def test_no_eligible_member_is_an_error_that_says_why_for_each(release):
    tagged = view(release, "nofailover", silent=())
    _, replicas = roles(tagged)
    untagged = next(name for name in replicas if not day2._why_not_candidate(name, tagged))
    nobody = view(release, "nofailover", silent=(untagged,))
    with pytest.raises(ops.CommandExecutionError) as raised:
        day2._best_candidate(nobody)
    said = str(raised.value)
    assert said.startswith("no member can take over: ") and "tagged nofailover" in said
    assert f"{untagged}'s Patroni does not answer" in said


@pytest.mark.parametrize("release", RELEASES)
def test_pending_restart_is_read_from_every_member(release):
    pending = view(release, "pending_restart", settings=False)
    rows = day2._rows(pending)
    assert sorted(rows) == ["pg1", "pg2", "pg3"] and all(row["pending_restart"] for row in rows.values())
    assert not any(row["pending_restart"] for row in day2._rows(view(release, "healthy")).values())


@pytest.mark.parametrize("release", RELEASES)
def test_the_live_settings_differ_only_where_the_declared_ones_do(release):
    live = captured(release, "healthy")["config"]
    same = {"ttl": live["ttl"], "postgresql": {"parameters": None, "pg_hba": live["postgresql"]["pg_hba"]}}
    assert ops._wanted_changes(same, live) == {}
    # Debian writes each member's own address with its prefix (the leader's .11/24 is live): another member's
    # config says .12/24, spaced its own way, and means the same network to PostgreSQL
    own = [" ".join(line.replace(".11/24", ".12/24").split()) for line in live["postgresql"]["pg_hba"]]
    assert own != live["postgresql"]["pg_hba"] and any(".12/24" in line for line in own)
    assert ops._wanted_changes({"postgresql": {"pg_hba": own}}, live) == {}
    another = own[:-1] + [own[-1].replace("md5", "scram-sha-256")]
    assert set(ops._wanted_changes({"postgresql": {"pg_hba": another}}, live)) == {"postgresql.pg_hba"}
    wanted = {"ttl": live["ttl"] + 1, "postgresql": {"parameters": {"work_mem": "8MB"}}}
    changes = ops._wanted_changes(wanted, live)
    assert changes == {
        "ttl": {"old": live["ttl"], "new": live["ttl"] + 1},
        "postgresql.parameters.work_mem": {"old": None, "new": "8MB"},
    }
    assert ops._patch_body(changes) == {"ttl": live["ttl"] + 1, "postgresql": {"parameters": {"work_mem": "8MB"}}}


def test_a_pg_hba_line_means_what_postgresql_reads():
    assert ops._hba_meaning("host  replication  replicator  10.77.3.12/24  md5") == [
        "host",
        "replication",
        "replicator",
        "10.77.3.0/24",
        "md5",
    ]
    assert ops._hba_meaning("local all all peer") == ["local", "all", "all", "peer"]
    assert ops._hba_meaning("host all all fe80::1/64 md5")[3] == "fe80::/64"
    assert ops._hba_meaning("host all all samenet md5")[3] == "samenet"


@pytest.mark.parametrize(
    "answer,final",
    [
        ("Switchover failed", True),  # Patroni 3.0.2 and 4.0.7, api.py: action.title() + ' failed'
        ("Failover failed", True),
        ("Switchover status unknown", False),  # ... + ' status unknown': settled by watching who leads
        ("Failover status unknown", False),
    ],
)
def test_only_a_failed_answer_is_final(answer, final):
    if final:
        with pytest.raises(ops.CommandExecutionError, match=f"15-main: switchover: Patroni says: {answer}"):
            day2._raise_when_failed("15-main", "switchover", answer)
    else:
        assert day2._raise_when_failed("15-main", "switchover", answer) is None


class SwitchoverReplay(Replay):
    """The capture's cluster, whose leader answers ``POST /switchover`` with ``refusals`` (HTTP statuses with
    Patroni's own words) first, then as Patroni does when it switched over; ``silent_after`` members stop
    answering once the first refusal was given."""

    def __init__(self, capture, refusals, silent_after=()):
        super().__init__(capture)
        self.refusals, self.silent_after, self.posts = list(refusals), silent_after, 0

    def call(self, method, path, body=None, expect=(200,), base=None, timeout=None):
        if method != "POST":
            return super().call(method, path, body, expect, base, timeout)
        assert path == "/switchover" and body["leader"] == self.bases[base], (path, body, base)
        self.posts += 1
        if self.refusals:
            status, words = self.refusals.pop(0)
            for name in self.silent_after:
                self.capture["patroni"][name] = None
            raise ops.CommandExecutionError(f"{self.scope} on pg1: POST {base}{path}: HTTP {status}: {words}")
        return f'Successfully switched over to "{body["candidate"]}"'


NO_GOOD_CANDIDATES = (412, "switchover is not possible: no good candidates have been found")  # Patroni 3.0.2's


def _switch_over(release, refusals, silent_after=()):
    capture = captured(release, "healthy")
    api = SwitchoverReplay(capture, refusals, silent_after)
    leader, (candidate, _) = roles(day2._view(api, settings=True))
    body = {"leader": leader, "candidate": candidate}
    leader_row = next(m for m in capture["cluster"]["members"] if m["name"] == leader)
    return api, candidate, lambda: day2._asked_to_switch_over(api, leader_row, body, timeout=10)


@pytest.mark.parametrize("release", RELEASES)
def test_patroni_s_momentary_no_good_candidates_is_asked_again_while_the_candidate_stays_good(release, monkeypatch):
    """Patroni asks each candidate's REST API with a 2 s timeout; a replica restarted seconds before on a busy
    host can miss it (seen once in CI, rolling_restart's switchover on bookworm). Nothing changed: ask again."""
    monkeypatch.setattr(day2.time, "sleep", lambda seconds: None)
    api, candidate, ask = _switch_over(release, [NO_GOOD_CANDIDATES] * 2)
    assert ask() == f'Successfully switched over to "{candidate}"' and api.posts == 3
    api, _, ask = _switch_over(release, [NO_GOOD_CANDIDATES] * day2.SWITCHOVER_TRIES)
    with pytest.raises(ops.CommandExecutionError, match="HTTP 412: switchover is not possible"):
        ask()
    assert api.posts == day2.SWITCHOVER_TRIES
    api, _, ask = _switch_over(release, [(500, "internal error")])
    with pytest.raises(ops.CommandExecutionError, match="HTTP 500"):
        ask()
    assert api.posts == 1


@pytest.mark.parametrize("release", RELEASES)
def test_a_candidate_that_stops_answering_after_patroni_s_refusal_is_refused_with_the_reason(release, monkeypatch):
    monkeypatch.setattr(day2.time, "sleep", lambda seconds: None)
    capture = captured(release, "healthy")
    leader, (candidate, _) = roles(day2._view(Replay(capture), settings=True))
    api, _, ask = _switch_over(release, [NO_GOOD_CANDIDATES], silent_after=(candidate,))
    with pytest.raises(ops.CommandExecutionError, match=f"switchover to {candidate} refused: .*"):
        ask()
    assert api.posts == 1
