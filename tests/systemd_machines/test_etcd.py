"""Issue 22 on real machines: the DCS from pillar. Bare machines given pillar etcd (the three machines themselves
its members, over TLS with certificates of the cluster's CA) and patroni:tls become, by one highstate, one etcd
cluster (the package's own one-member cluster, which its install starts, replaced) and a Patroni cluster on it
(test_bare_machines.py makes it); the cluster rides out one etcd member down, loses no data and never has two
primaries when etcd's quorum is lost, and heals by itself; members leave and join through orch.etcd_member, never
below three without force; pillar that would break etcd changes nothing.

Every test but one starts from that cluster (``tls_cluster``); the last puts etcd on hosts of its own, two
machines more, from fresh machines.
"""

import json
import time

import netlab
import pytest
import yaml
from highstate import config_path, failures, machine, orchestrate, outcomes, start_times
from highstate import pillar as highstate_pillar
from starting_points import etcd_pillar, etcd_whole

API_PORT = 8008
NAMESPACE = "/postgresql-common/"


def etcd_status(lab, on="pg1"):
    return lab.salt(on, "patroni_debian.etcd_status")[on]


def sql(node, statement):
    argv = ["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-q", "-c", statement]
    return node.run(argv).stdout.strip()


ETCD_TLS = {"ETCDCTL_CACERT": "/etc/patroni/tls/ca.crt", "ETCDCTL_CERT": "/etc/etcd/tls/member.crt"}
ETCD_TLS["ETCDCTL_KEY"] = "/etc/etcd/tls/member.key"
QUICK = ["--dial-timeout=1s", "--command-timeout=2s"]


def etcdctl(node, *args, endpoint="https://127.0.0.1:2379", env=ETCD_TLS, check=True):
    """etcdctl on ``node`` against ``endpoint`` (its own member over https, with its etcd member's certificate);
    ``env``: the TLS files, through etcdctl's environment."""
    argv = ["etcdctl", *QUICK, f"--endpoints={endpoint}", *args]
    proc = node.run(argv, env={"ETCDCTL_API": "3", **env}, check=check)
    return proc.stdout if check else proc


def active(node):
    return node.run(["systemctl", "is-active", "etcd"], check=False).stdout.strip()


def test_the_package_s_members_become_one_etcd_cluster_and_a_patroni_cluster_on_it(tls_cluster):
    """Behaviour 1: one etcd cluster of the three declared members (one cluster ID, one leader), which is the only
    DCS the members' configs name, over https with the members' certificates; the package's own one-member cluster
    left in its folder and serving nothing; the Patroni cluster's keys there; a client without a certificate of the
    cluster's CA, or over plain http, gets nothing. (The second highstate, which changes nothing, is
    test_bare_machines.py's.)"""
    lab = tls_cluster
    view = etcd_status(lab)
    names = sorted(node.name for node in lab.nodes)
    assert sorted(view["members"]) == names and view["listed"] == names and not view["problems"], view
    assert {row["cluster_id"] for row in view["members"].values()} == {view["cluster_id"]}
    assert view["leader"] in names and sum(row["leader"] for row in view["members"].values()) == 1, view
    hosts = [f"{node.address}:2379" for node in lab.nodes]
    patroni_tls = {"cacert": "/etc/patroni/tls/ca.crt", "cert": "/etc/patroni/tls/member.crt"}
    patroni_tls["key"] = "/etc/patroni/tls/member.key"
    api = "etcd" if lab.release == "bookworm" else "etcd3"  # etcd's v2 API on bookworm, for vip-manager 1.0.2
    for node in lab.nodes:
        config = yaml.safe_load(node.run(["cat", config_path(lab.version)]).stdout)
        assert config[api] == {"hosts": hosts, "protocol": "https", **patroni_tls}, config
        env = node.run(["cat", "/etc/default/etcd"]).stdout
        assert f'ETCD_NAME="{node.name}"' in env and 'ETCD_DATA_DIR="/var/lib/etcd/lab"' in env, env
        assert f'ETCD_ADVERTISE_CLIENT_URLS="https://{node.address}:2379"' in env, env
        assert 'ETCD_CLIENT_CERT_AUTH="true"' in env and 'ETCD_PEER_CLIENT_CERT_AUTH="true"' in env, env
        key = node.run(["stat", "-c", "%U:%G %a", "/etc/etcd/tls/member.key"]).stdout.strip()
        assert key == "root:etcd 640", key
        # the package's default member made its folder when it ran; it no longer does
        assert node.run(["test", "-d", "/var/lib/etcd/default/member"], check=False).returncode == 0
        assert node.run(["pgrep", "-c", "-x", "etcd"]).stdout.strip() == "1"
    leader, _ = netlab.health(lab.nodes, API_PORT)
    scope = f"{lab.version}-main"
    pg2 = machine(lab, "pg2")
    assert leader_key(lab, pg2, f"{NAMESPACE}{scope}/leader") == leader
    # a client without a certificate of the cluster's CA, and one over plain http, get nothing
    uncertified = etcdctl(
        pg2, "get", "--prefix", NAMESPACE, env={"ETCDCTL_CACERT": ETCD_TLS["ETCDCTL_CACERT"]}, check=False
    )
    plain = etcdctl(pg2, "get", "--prefix", NAMESPACE, endpoint=f"http://{pg2.address}:2379", env={}, check=False)
    for refused in (uncertified, plain):
        assert refused.returncode != 0 and scope not in refused.stdout, (refused.stdout, refused.stderr)
    table = lab.salt("pg1", "patroni_debian.etcd_status", "table=True")["pg1"]
    assert f"etcd cluster lab (id {view['cluster_id']}):" in table and all(name in table for name in names), table


def leader_key(lab, node, key):
    """The value of Patroni's ``key`` in the etcd, through the API Patroni writes it with: v2 on bookworm."""
    if lab.release != "bookworm":
        return etcdctl(node, "get", "--print-value-only", key).strip()
    files = ["--ca-file", ETCD_TLS["ETCDCTL_CACERT"], "--cert-file", ETCD_TLS["ETCDCTL_CERT"]]
    files += ["--key-file", ETCD_TLS["ETCDCTL_KEY"]]
    argv = ["etcdctl", "--endpoints=https://127.0.0.1:2379", *files, "get", key]
    return node.run(argv, env={"ETCDCTL_API": "2"}).stdout.strip()


def primaries(lab):
    """The members that run as a primary now (their Patroni's own word); one that does not answer is none."""
    statuses = netlab.member_statuses(lab.nodes, API_PORT)
    return sorted(
        name
        for name, status in statuses.items()
        if status and status.get("role") in ("master", "primary") and status.get("state") == "running"
    )


def writes_on_the_only_primary(lab, leader, table, seconds):
    """A row a second into ``table`` on ``leader`` for ``seconds``, each time checking that it is the only member
    running as a primary; the rows acknowledged."""
    acknowledged, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        sql(leader, f"INSERT INTO {table} VALUES ({len(acknowledged) + 1})")
        acknowledged.append(len(acknowledged) + 1)
        assert primaries(lab) == [leader.name]
        time.sleep(1)
    return acknowledged


def test_etcd_members_down_one_keeps_the_leader_two_demote_it_and_back_heal_by_themselves(tls_cluster):
    """Behaviours 2 and 3: etcd stopped on the leader's host: for longer than the leader key's ttl the leader stays
    and takes writes. Then a second member stopped too (quorum lost): the leader demotes, and at no moment do two
    members run as primaries. Both started again: one leader, every member streaming, etcd whole, no hand; the
    etcd formula then changes nothing; every acknowledged row is there."""
    lab = tls_cluster
    leader, _ = netlab.health(lab.nodes, API_PORT)
    first = machine(lab, leader)
    second = next(node for node in lab.nodes if node.name != leader)
    sql(first, "DROP TABLE IF EXISTS kept; CREATE TABLE kept (n int primary key)")
    first.run(["systemctl", "stop", "etcd"])
    stopped = [first]
    try:
        assert "does not answer" in json.dumps(etcd_status(lab, second.name)["problems"])
        acknowledged = writes_on_the_only_primary(lab, first, "kept", 25)  # ttl 20 s (timing: fast)
        assert netlab.health(lab.nodes, API_PORT)[0] == leader
        second.run(["systemctl", "stop", "etcd"])
        stopped.append(second)

        def demoted():
            now = primaries(lab)
            assert len(now) <= 1, f"two primaries: {now}"
            return True if not now else None

        netlab.wait_until("the leader demoted without etcd's quorum", demoted, 60, interval=0.5)
    finally:
        for node in stopped:
            node.run(["systemctl", "start", "--no-block", "etcd"])
    netlab.wait_until("etcd whole and every member streaming", lambda: etcd_whole(lab), 120)
    new_leader, _ = netlab.health(lab.nodes, API_PORT)
    stored = sql(machine(lab, new_leader), "SELECT count(*) FROM kept")
    assert int(stored) >= len(acknowledged) > 10, (stored, len(acknowledged))
    # the etcd formula, which the outage concerned, has nothing to do
    failed, changed, _ = outcomes(lab.salt("*", "state.apply", "etcd", timeout=120))
    assert not failed and not changed, (failed, changed)


def test_with_failsafe_mode_the_leader_keeps_writing_through_the_quorum_loss(tls_cluster):
    """Behaviour 3 with Patroni's failsafe mode on (turned on with patronictl, as a DBA does; pillar's dynamic
    failsafe_mode reaches the DCS the same way through the formula): etcd stopped on both replicas' hosts, so
    etcd has no quorum: for longer than the leader key's ttl the leader stays the only primary and takes writes,
    its replicas answering its failsafe calls over the REST API's TLS, with its credentials. etcd back: the same
    leader, every member streaming, every acknowledged row there; failsafe mode taken out again."""
    lab = tls_cluster
    leader, _ = netlab.health(lab.nodes, API_PORT)
    first = machine(lab, leader)
    replicas = [node for node in lab.nodes if node is not first]
    edit = ["patronictl", "-c", config_path(lab.version), "edit-config", "--force", "--set"]
    first.run([*edit, "failsafe_mode=true"])
    try:
        netlab.wait_until(
            "every member sees failsafe mode",
            lambda: all(json.loads(node.http("/config", port=API_PORT)).get("failsafe_mode") for node in lab.nodes),
            30,
        )
        sql(first, "DROP TABLE IF EXISTS failsafe; CREATE TABLE failsafe (n int primary key)")
        for node in replicas:
            node.run(["systemctl", "stop", "etcd"])
        try:
            acknowledged = writes_on_the_only_primary(lab, first, "failsafe", 25)  # ttl 20 s (timing: fast)
        finally:
            for node in replicas:
                node.run(["systemctl", "start", "--no-block", "etcd"])
        netlab.wait_until("etcd whole and every member streaming", lambda: etcd_whole(lab), 120)
        assert netlab.health(lab.nodes, API_PORT)[0] == leader
        assert int(sql(first, "SELECT count(*) FROM failsafe")) == len(acknowledged) > 10
    finally:
        first.run([*edit, "failsafe_mode=null"])


def test_a_member_leaves_only_with_force_below_three_and_joins_again_patroni_undisturbed(tls_cluster):
    """Behaviour 4: etcd_member_remove refuses to take the cluster below three members, with the reason; with force
    and pg3 taken out of pillar, pg3 leaves (its etcd stopped and disabled, its data moved aside), the other two
    are a whole cluster; pg3 declared again joins as a new member with an empty data directory. Patroni
    undisturbed throughout: the same leader, no postmaster restarted."""
    lab = tls_cluster
    leader, _ = netlab.health(lab.nodes, API_PORT)
    before = start_times(lab)
    pg3 = machine(lab, "pg3")
    old_id = etcd_status(lab)["members"]["pg3"]["id"]

    refused = lab.salt("pg3", "patroni_debian.etcd_member_remove", "pg3")["pg3"]
    assert "would leave 2 voting member(s): below 3" in str(refused), refused
    assert active(pg3) == "active" and etcd_status(lab)["listed"] == ["pg1", "pg2", "pg3"]

    two = {node.name: node.address for node in lab.nodes if node.name != "pg3"}
    lab.set_pillar(etcd_pillar(lab, members=two))
    code, steps, _ = orchestrate(lab, "orch.etcd_member", 'pillar={"remove": "pg3", "force": true}')
    assert code == 0, failures(steps)
    view = etcd_status(lab)
    assert sorted(view["members"]) == ["pg1", "pg2"] and view["listed"] == ["pg1", "pg2"], view
    assert not view["problems"], view
    assert active(pg3) != "active" and pg3.run(["systemctl", "is-enabled", "etcd"], check=False).stdout.strip() == (
        "disabled"
    )
    assert pg3.run(["sh", "-c", "ls -d /var/lib/etcd/lab.removed-*/member"]).returncode == 0
    assert pg3.run(["test", "-e", "/var/lib/etcd/lab"], check=False).returncode != 0
    assert netlab.health(lab.nodes, API_PORT)[0] == leader

    lab.set_pillar(etcd_pillar(lab))
    code, steps, _ = orchestrate(lab, "orch.etcd_member", 'pillar={"add": "pg3"}')
    assert code == 0, failures(steps)
    view = etcd_status(lab)
    assert view["listed"] == ["pg1", "pg2", "pg3"] and not view["problems"], view
    assert view["members"]["pg3"]["id"] != old_id
    assert netlab.health(lab.nodes, API_PORT)[0] == leader and start_times(lab) == before


def set_pillars(lab, most, pg3):
    """Pillar ``most`` for pg1 and pg2, ``pg3`` for pg3."""
    (lab.pillar_root / "lab.sls").write_text(json.dumps(most))
    (lab.pillar_root / "odd.sls").write_text(json.dumps(pg3))
    top = "base:\n  'L@pg1,pg2':\n    - match: compound\n    - lab\n  'pg3':\n    - odd\n"
    (lab.pillar_root / "top.sls").write_text(top)
    assert all(lab.salt("*", "saltutil.refresh_pillar", "wait=True").values())


def test_pillar_that_would_break_etcd_is_refused_and_changes_nothing(tls_cluster):
    """Behaviour 5, on a running cluster: a new cluster name (token and data directory) on pg3, a member list
    that leaves out pg3, which runs a member, and etcd:tls turned off under a member serving https: the etcd
    formula fails on pg3 with the reason, its /etc/default/etcd and its running member as they were."""
    lab = tls_cluster
    pg3 = machine(lab, "pg3")
    env = pg3.run(["cat", "/etc/default/etcd"]).stdout
    wanted = etcd_pillar(lab)
    two = {node.name: node.address for node in lab.nodes if node.name != "pg3"}
    try:
        for pg3_pillar, reason in (
            (etcd_pillar(lab, cluster="renamed"), "renaming a running etcd cluster would start an empty one"),
            (etcd_pillar(lab, members=two), "runs an etcd member (/var/lib/etcd/lab) but pillar etcd:members does"),
            (etcd_pillar(lab, tls=False), "serves its peers over https, and pillar etcd:tls asks for http"),
        ):
            set_pillars(lab, wanted, pg3_pillar)
            returns = lab.salt("pg3", "state.sls", "etcd", timeout=120)
            failed, changed, _ = outcomes(returns)
            assert failed and not changed and any(reason in line for line in failed), returns
            assert pg3.run(["cat", "/etc/default/etcd"]).stdout == env and active(pg3) == "active"
    finally:
        lab.set_pillar(wanted)
    assert etcd_whole(lab)


def changed_in(steps):
    """``step: minion: state id`` of every state that changed something in an orchestration's state steps."""
    changed = []
    for step in steps.values():
        for minion, states in (step["changes"].get("ret") or {}).items():
            states = states.values() if isinstance(states, dict) else ()
            changed += [f"{step['__id__']}: {minion}: {s['__id__']}" for s in states if _changed_state(s)]
    return changed


def _changed_state(result):
    return isinstance(result, dict) and "__id__" in result and bool(result.get("changes"))


@pytest.mark.spoils
def test_etcd_on_hosts_of_its_own_forms_in_the_run_that_rolls_the_cluster_out_on_it(fresh_machines, timings):
    """Separate DCS hosts: etcd on pg4 and pg5, two machines of their own with no Patroni role, and on pg3, a
    Patroni member; Patroni on pg1, pg2 and pg3. From fresh machines one ``orch.patroni`` forms the etcd (its
    members on both kinds of host started together) and rolls the cluster out on it: pg1 and pg2, which run no
    etcd member, ask for the DCS until its members on the other hosts answer. One etcd of the three declared
    members, the only DCS the members' configs name; no Patroni on the etcd hosts; a second run changes nothing."""
    lab = fresh_machines
    with lab.extra_machines(2) as extra:
        hosts = [machine(lab, "pg3"), *extra]
        etcd = {"cluster": "split", "members": {host.name: host.address for host in hosts}}
        wanted = highstate_pillar(lab)
        del wanted["patroni"]["dcs"]
        wanted["etcd"] = etcd
        (lab.pillar_root / "lab.sls").write_text(json.dumps(wanted))
        (lab.pillar_root / "dcs.sls").write_text(json.dumps({"etcd": etcd}))
        top = "base:\n  'L@pg1,pg2,pg3':\n    - match: compound\n    - lab\n  'L@pg4,pg5':\n    - match: compound\n"
        (lab.pillar_root / "top.sls").write_text(top + "    - dcs\n")
        assert all(lab.salt("*", "saltutil.refresh_pillar", "wait=True").values())
        started = time.monotonic()
        code, steps, _ = orchestrate(lab, "orch.patroni")
        timings[f"etcd: fresh machines → etcd on 2 hosts of its own and a member, and a cluster ({lab.release})"] = (
            time.monotonic() - started
        )
        assert code == 0, failures(steps)
        assert sorted(steps["etcd runs on its own hosts too"]["changes"]["ret"]) == ["pg4", "pg5"]
        names = sorted(etcd["members"])
        view = etcd_status(lab)  # asked from pg1, which runs no member
        assert sorted(view["members"]) == names and view["listed"] == names and not view["problems"], view
        assert view["leader"] in names, view
        leader, _ = netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, API_PORT), 60)
        assert leader == "pg1"
        for node in lab.nodes:
            config = yaml.safe_load(node.run(["cat", config_path(lab.version)]).stdout)
            assert config["etcd3"] == {"hosts": [f"{host.address}:2379" for host in hosts]}, config
        for host in extra:
            units = host.run(["systemctl", "list-units", "--all", "--no-legend", "patroni*", "postgresql@*"]).stdout
            assert not units.strip() and active(host) == "active", units
        code, steps, _ = orchestrate(lab, "orch.patroni")
        assert code == 0, failures(steps)
        assert changed_in(steps) == []
