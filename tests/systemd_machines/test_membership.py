"""Members in and out, declaratively, through ``salt-run state.orchestrate orch.patroni``.

A minion given the cluster in pillar joins as a streaming replica, admitted by every member's pg_hba as it stands
(the cluster's network), without a restart of the others; a minion whose pillar loses the cluster leaves it:
Patroni stopped and disabled, data kept, the run back only once the others no longer list it; a leader's minion
losing it is refused before anything changes. In the lab a minion's role comes from a grain in its minion config,
so taking a minion "out of pillar" also takes that grain away, as an operator would take the role away.
Tests start from a cluster of pg1 and pg2, pg3 outside it (``two_members``), or from the rollout's cluster of
three (``orchestrated``).
"""

import ipaddress
import json
import time

import highstate
import netlab
import pytest
from highstate import API_PORT, PREPARE, failures, pillar, prepared, start_times
from starting_points import arrived, make_orchestrated, pillar_files, starting_point, streaming


def give_role(machine, role):
    """``machine``'s minion config with grain ``patroni_role`` set to ``role`` (None: no role), minion restarted."""
    path = machine.merged / "etc" / "salt" / "minion"
    config = json.loads(path.read_text())
    config["grains"] = {"patroni_role": role} if role else {}
    path.write_text(json.dumps(config))
    machine.run(["systemctl", "restart", "salt-minion"])
    machine.lab.wait_minions()


def declare(lab, members):
    """The cluster in the pillar of ``members`` (a glob over minion ids) only."""
    lab.set_pillar(pillar(lab), target=f"'{members}'")


def rollout(lab):
    code, steps, output = highstate.orchestrate(lab, "orch.patroni")
    return code, steps


def listed(lab):
    return sorted(m["name"] for m in json.loads(lab.nodes[0].http("/cluster", port=API_PORT))["members"])


def admits_for_replication(machine, address):
    """Whether ``machine``'s PostgreSQL, as it runs now, has a pg_hba rule for replication from ``address``."""
    argv = ["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-c"]
    query = "SELECT address, netmask FROM pg_hba_file_rules WHERE 'replication' = ANY(database) AND address IS NOT NULL"
    rows = [line.split("|") for line in machine.run(argv + [query]).stdout.split()]
    wanted = ipaddress.ip_address(address)
    networks = [
        ipaddress.ip_network(f"{net}/{bin(int(ipaddress.ip_address(mask))).count('1')}", strict=False)
        for net, mask in rows
        if mask and ipaddress.ip_address(net).version == wanted.version
    ]
    return any(wanted in network for network in networks)


def _two_members(lab):
    """Cluster <version>-main of pg1 and pg2 only, by the rollout: pg3 has no role and no cluster in pillar."""
    give_role(lab.nodes[2], None)
    declare(lab, "pg[12]")
    code, steps = rollout(lab)
    assert code == 0, failures(steps)


def pg1_and_pg2(lab):
    """pg1 and pg2 streaming, alone in the cluster, with the same pillar."""
    return netlab.health(lab.nodes[:2], API_PORT), listed(lab), pillar_files(lab)


two_members = starting_point("two_members", _two_members, pg1_and_pg2)


def pg3_a_replica(lab):
    """Every member streaming (as ``orchestrated`` is), pg3 not the leader: the member a test takes out must not
    lead (a leader's minion losing the cluster is refused). An earlier test's failover may have left pg3
    leading a cluster that ``orchestrated`` still accepts."""
    health = netlab.health(lab.nodes, API_PORT)
    return streaming(lab) if health and health[0] != lab.nodes[2].name else None


pg3_replica = starting_point("pg3_replica", make_orchestrated, pg3_a_replica, adopts=("orchestrated",))


def test_the_leader_s_minion_losing_the_cluster_is_refused_before_anything_changes(two_members):
    lab = two_members
    pg1 = lab.nodes[0]
    leader, timeline = netlab.health(lab.nodes[:2], API_PORT)
    assert leader == "pg1"
    before = start_times(lab, ("pg1", "pg2"))
    give_role(pg1, None)
    declare(lab, "pg2")
    try:
        code, steps = rollout(lab)
        assert code != 0
        assert (
            f"pg1: {lab.version}-main: leaving refused: pg1 leads the cluster; switch over first "
            f"(salt pg1 patroni_debian.switchover {lab.version} main), then run again"
        ) in failures(steps)
        assert not any(step.startswith("First phase") for step in steps)  # the run stopped there
        assert netlab.health(lab.nodes[:2], API_PORT) == (leader, timeline)
        assert start_times(lab, ("pg1", "pg2")) == before
    finally:
        give_role(pg1, "bootstrap")
        declare(lab, "pg[12]")


def test_a_minion_given_the_cluster_joins_and_no_other_member_restarts(two_members, timings):
    lab = two_members
    pg3 = lab.nodes[2]
    before, led = start_times(lab, ("pg1", "pg2")), netlab.health(lab.nodes[:2], API_PORT)
    give_role(pg3, "replica")
    declare(lab, "pg*")
    started = time.monotonic()
    code, steps = rollout(lab)
    assert code == 0, failures(steps)
    assert netlab.wait_until("pg3 streaming", lambda: netlab.health(lab.nodes, API_PORT), 60) == led
    timings[f"membership: pg3 given the cluster → rollout done, pg3 streaming ({lab.release})"] = (
        time.monotonic() - started
    )
    assert listed(lab) == ["pg1", "pg2", "pg3"]
    assert start_times(lab, ("pg1", "pg2")) == before
    assert all(admits_for_replication(machine, pg3.address) for machine in lab.nodes)
    arrived(lab, "orchestrated", streaming)  # three members by the rollout, the formula's pillar for all


def pillar_texts(lab, good, broken):
    """pg1 and pg2 get ``good`` (a mapping), pg3 the pillar file text ``broken``; every minion refreshed."""
    (lab.pillar_root / "lab.sls").write_text(json.dumps(good))
    (lab.pillar_root / "broken.sls").write_text(broken)
    (lab.pillar_root / "top.sls").write_text("base:\n  'pg[12]':\n    - lab\n  'pg3':\n    - broken\n")
    lab.salt("*", "saltutil.refresh_pillar", "wait=True")


def broken_ways(lab):
    """A replica's pillar broken as an operator in a hurry breaks it: ``(id, pillar file text, refusal, words)``. One of
    each family: one that renders but does not validate, and one Salt cannot render; every other shape is a
    decision of declared_clusters, proven in tests/sandboxed/test_bad_pillar.py."""
    good = pillar(lab)["patroni"]
    return [
        (
            "a typo in clusters",
            {"patroni": {"dcs": good["dcs"], "clustres": good["clusters"]}},
            "pg3: leaving {version}-main refused, nothing was changed",
            "did you mean 'clusters'",
        ),
        # Salt runs no state on a pillar that failed to render: the rollout's first job stops there, saying so
        ("a render error", "patroni: {clusters: [unclosed\n", "pg3: Pillar failed to render", "failed to render"),
    ]


def test_a_replica_whose_pillar_breaks_never_leaves_and_every_member_keeps_streaming(orchestrated):
    """Issue 18, class 1: only a pillar that validates and no longer names the cluster takes a member out; a
    broken one stops the rollout at the leaving step, naming the minion and the problem, with nothing changed."""
    lab = orchestrated
    health = netlab.health(lab.nodes, API_PORT)
    before = start_times(lab)
    unit = f"patroni@{lab.version}-main"
    try:
        for way, broken, refusal, words in broken_ways(lab):
            pillar_texts(lab, pillar(lab), broken if isinstance(broken, str) else json.dumps(broken))
            code, steps = rollout(lab)
            assert code != 0, way
            assert steps[PREPARE]["result"] is False and not any(step.startswith("First phase") for step in steps), way
            said = failures(steps)
            assert refusal.format(version=lab.version) in said and words in said, (
                way,
                said,
            )
            assert pg3_unit(lab, unit) == ("active", "enabled"), way
            assert netlab.health(lab.nodes, API_PORT) == health and start_times(lab) == before, way
    finally:
        declare(lab, "pg*")


def pg3_unit(lab, unit):
    pg3 = lab.nodes[2]
    return tuple(
        pg3.run(["systemctl", command, unit], check=False).stdout.strip() for command in ("is-active", "is-enabled")
    )


@pytest.mark.spoils
def test_a_minion_whose_pillar_loses_the_cluster_leaves_it_and_keeps_its_data(pg3_replica, timings):
    lab = pg3_replica
    pg3 = lab.nodes[2]
    before = start_times(lab, ("pg1", "pg2"))
    give_role(pg3, None)
    declare(lab, "pg[12]")
    code, steps = rollout(lab)
    assert code == 0, failures(steps)
    left = prepared(steps, "pg3")["changes"]["left"][f"{lab.version}-main"]
    timings[f"membership: pg3 leaves → gone from the cluster ({lab.release})"] = left["seconds"]
    assert left["members"] == ["pg1", "pg2"] and listed(lab) == ["pg1", "pg2"]
    assert f"patroni@{lab.version}-main" in left["removed"]
    unit = f"patroni@{lab.version}-main"
    assert pg3.run(["systemctl", "is-active", unit], check=False).stdout.strip() == "inactive"
    assert pg3.run(["systemctl", "is-enabled", unit], check=False).stdout.strip() == "disabled"
    assert not pg3.run(["test", "-e", f"/etc/patroni/{lab.version}-main.yml"], check=False).returncode == 0
    assert pg3.run(["test", "-f", f"/var/lib/postgresql/{lab.version}/main/PG_VERSION"], check=False).returncode == 0
    assert start_times(lab, ("pg1", "pg2")) == before
    assert lab.salt("pg3", "grains.get", "patroni_debian_clusters")["pg3"] in ([], "", None)
    code, steps = rollout(lab)  # a second run has nothing left to do, and no longer targets pg3 at all
    assert code == 0 and "pg3" not in steps[PREPARE]["changes"]["ret"], failures(steps)
