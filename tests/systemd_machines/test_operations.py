"""Day-2 operations on a running cluster, through Salt on lab machines, on each release: the cluster as data and
as a table, restart and reload, switchovers refused with the reason before anything changes, a switchover under
a steady write load that loses no acknowledged row, failover refused while a healthy leader exists, reinit of a
replica and never of the leader. Each test starts from a cluster made the Debian way (``debian_way``), which
the first one checks.
"""

import time

import machines
import netlab
import pytest
from starting_points import starting_point, streaming
from highstate import start_times


AUTHENTICATION = {"replication": {"password": "ops-replication"}}
FAST = {"ttl": 20, "loop_wait": 5, "retry_timeout": 5}
API_PORT = 8008


def _debian_way(lab):
    """Cluster <version>-main made the Debian way by hand, through Salt: createconfig on every machine, then
    ``systemctl enable --now patroni@<version>-main`` (the fast timing profile); every member streaming."""
    started = time.monotonic()
    created, _ = machines.debian_way(lab, lab.dcs(), AUTHENTICATION, FAST)
    return {"createconfig": created, "seconds": time.monotonic() - started}


debian_way = starting_point("debian_way", _debian_way, streaming)


@pytest.fixture
def lab(debian_way):
    return debian_way


def call(lab, target, function, *args):
    """The result of ``patroni_debian.<function> <version> main <args>`` on one minion (an error: its text)."""
    return lab.salt(target, f"patroni_debian.{function}", lab.version, "main", *args, timeout=300)[target]


def leader_and_replicas(lab):
    leader, _ = netlab.wait_until("healthy", lambda: netlab.health(lab.nodes, API_PORT), 120)
    return leader, sorted(m.name for m in lab.nodes if m.name != leader)


def settled_status(lab, target):
    """``status`` once it reports no problem, else None: the DCS holds what each member said in its last loop,
    so it shows a healthy cluster up to ``loop_wait`` after the members' own answers do."""
    status = call(lab, target, "status")
    return status if not status["problems"] else None


def test_the_debian_way_by_hand_gives_one_leader_and_two_streaming_replicas(lab, timings):
    """createconfig through Salt on every machine, then systemctl start: 1 leader, 2 streaming replicas."""
    made = lab.made
    timings[f"machines: the Debian way by hand via Salt → healthy (floor for the rollout) ({lab.release})"] = made[
        "seconds"
    ]
    created = made["createconfig"]
    assert {name: result["written"] for name, result in created.items()} == {
        name: [f"/etc/patroni/{lab.version}-main.yml"] for name in ("pg1", "pg2", "pg3")
    }, created
    assert all(not any("not installed" in w for w in result["warnings"]) for result in created.values())
    leader, _ = leader_and_replicas(lab)
    units = lab.salt(
        "*",
        "cmd.run",
        f"systemctl is-enabled patroni@{lab.version}-main; systemctl is-active patroni@{lab.version}-main",
    )
    assert set(units.values()) == {"enabled\nactive"}
    psql = 'psql -X -q -At -c "CREATE TABLE IF NOT EXISTS lab AS SELECT 7 AS seven; SELECT seven FROM lab"'
    assert lab.salt(leader, "cmd.run", psql, "runas=postgres")[leader] == "7"


def test_status_is_data_for_states_and_a_table_for_people(lab):
    leader, replicas = leader_and_replicas(lab)
    status = netlab.wait_until("a status without problems", lambda: settled_status(lab, "pg2"), 30)
    assert status["leader"] == leader and status["pending_restart"] is False
    assert {name: row["role"] for name, row in status["members"].items()} == {
        leader: "leader",
        **dict.fromkeys(replicas, "replica"),
    }
    assert {row["state"] for name, row in status["members"].items() if name != leader} <= {"running", "streaming"}
    table = call(lab, "pg2", "status", "table=True")
    lines = table.splitlines()
    assert lines[0] == f"Cluster {lab.version}-main:" and lines[1].split()[:3] == ["member", "host", "role"]
    assert [line.split()[0] for line in lines[2:]] == ["pg1", "pg2", "pg3"]


def test_restart_with_nothing_pending_and_reload_change_nothing(lab):
    before = start_times(lab)
    restarted = call(lab, "pg3", "restart")
    assert restarted == {"member": "pg3", "restarted": False, "comment": "nothing waits for a restart"}
    assert call(lab, "pg3", "reload") == {"member": "pg3", "reloaded": True}
    assert start_times(lab) == before


def test_a_switchover_that_cannot_work_is_refused_with_the_reason_before_anything_changes(lab):
    """One real refusal per kind here (the leader as candidate, a name that is no member); a tagged, stopped,
    lagging or asynchronous candidate and nobody eligible are decided on captured answers
    (tests/unit/test_day2_decisions.py), a lagging one also in test_failures.py."""
    leader, replicas = leader_and_replicas(lab)
    before = start_times(lab)
    to_leader = call(lab, "pg1", "switchover", f"candidate={leader}")
    assert f"switchover to {leader} refused: {leader} is the leader already" in to_leader
    unknown = call(lab, "pg1", "switchover", "candidate=pg9")
    assert "switchover to pg9 refused: pg9 is no member of the cluster" in unknown
    assert netlab.health(lab.nodes, API_PORT)[0] == leader and start_times(lab) == before


def test_a_switchover_under_a_write_load_loses_no_acknowledged_row(lab, timings):
    leader, _ = leader_and_replicas(lab)
    old = next(machine for machine in lab.nodes if machine.name == leader)
    table = "DROP TABLE IF EXISTS load; CREATE TABLE load (n int primary key)"
    old.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-c", table])
    netlab.wait_until(
        "every member streaming after the DDL", lambda: netlab.health(lab.nodes, API_PORT), 60
    )  # a fault only after every replica streams on the leader's timeline
    # a bounded loop of inserts on the leader, through its socket: the numbers the server acknowledged
    writer = (
        "for n in $(seq 1 3000); do "
        'runuser -u postgres -- psql -X -q -c "INSERT INTO load VALUES ($n)" 2>/dev/null && echo $n; done '
        "> /tmp/acknowledged"
    )
    pid = int(old.run(["sh", "-c", f"({writer}) >/dev/null 2>&1 & echo $!"]).stdout.strip())
    netlab.wait_until("some rows acknowledged", lambda: int(count_acknowledged(old) or 0) > 50, 30)
    result = call(lab, "pg2" if leader != "pg2" else "pg3", "switchover")
    assert isinstance(result, dict), result
    timings[f"operations: switchover under write load → every member streams ({lab.release})"] = result["seconds"]
    assert result["old_leader"] == leader and result["new_leader"] != leader and result["rejoined"] is True
    old.run(["sh", "-c", f"kill {pid} 2>/dev/null; true"])
    acknowledged = set(old.run(["cat", "/tmp/acknowledged"]).stdout.split())
    new = next(machine for machine in lab.nodes if machine.name == result["new_leader"])
    stored = set(
        new.run(
            ["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-c", "SELECT n FROM load"]
        ).stdout.split()
    )
    assert len(acknowledged) > 50 and acknowledged <= stored, sorted(acknowledged - stored)[:20]
    assert netlab.health(lab.nodes, API_PORT)[0] == result["new_leader"]


def count_acknowledged(machine):
    return machine.run(["sh", "-c", "wc -l < /tmp/acknowledged"], check=False).stdout.strip()


def test_failover_is_refused_while_a_healthy_leader_exists(lab):
    leader, replicas = leader_and_replicas(lab)
    refused = call(lab, replicas[0], "failover", f"candidate={replicas[0]}")
    assert f"failover refused: {leader} leads and is healthy; use patroni_debian.switchover" in refused
    assert netlab.health(lab.nodes, API_PORT)[0] == leader


def test_reinit_rebuilds_a_replica_and_never_touches_the_leader(lab):
    leader, replicas = leader_and_replicas(lab)
    rows = "DROP TABLE IF EXISTS kept; CREATE TABLE kept AS SELECT generate_series(1, 500) AS n"
    lab.salt(leader, "cmd.run", f"psql -X -q -c '{rows}'", "runas=postgres")
    refused = call(lab, leader, "reinit")
    assert f"reinit refused: {leader} is the leader; switch over first" in refused
    rebuilt = call(lab, replicas[0], "reinit")
    assert isinstance(rebuilt, dict), rebuilt
    assert rebuilt["member"] == replicas[0] and rebuilt["leader"] == leader
    assert netlab.health(lab.nodes, API_PORT)[0] == leader
    stored = lab.salt(replicas[0], "cmd.run", "psql -X -A -t -c 'SELECT count(*) FROM kept'", "runas=postgres")
    assert stored[replicas[0]] == "500"


def test_operation_arguments_are_checked_before_any_call(lab):
    assert "timeout: 'soon' is not a number of seconds" in call(lab, "pg1", "switchover", "timeout=soon")
    assert "pending_only: 'maybe' is not a boolean" in call(lab, "pg1", "restart", "pending_only=maybe")
    missing = lab.salt("pg1", "patroni_debian.status", lab.version, "nosuch")["pg1"]
    assert f"/etc/patroni/{lab.version}-nosuch.yml does not exist" in missing
