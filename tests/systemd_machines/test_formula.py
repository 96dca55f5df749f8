"""Declarative clusters: the patroni formula through the example top file, on lab machines with a real master.

Highstate makes a healthy cluster, a second run changes nothing, test mode predicts without touching the host,
drift heals, and pillar changes reach the running cluster through PATCH /config. The replication password
travels only through pillar: never in state output or the minion's log. Each test starts from a cluster the
formula made by highstate (``cluster``) and declares the pillar it needs, applied by highstate unless the last
highstate applied that very pillar.
"""

import json
import time

import netlab
import pytest
from highstate import API_PORT, PASSWORD, config_path, highstate, outcomes, pillar, start_times
from starting_points import pillar_files, starting_point


def fingerprint(lab):
    """What test mode must leave alone: configs, pg-common clusters, data directory listings, unit states."""
    script = (
        "find /etc/patroni /etc/postgresql -printf '%p %s %m %u %T@\\n' | sort; "
        # a running server touches its files all the time: its data directories by name, mode and owner only
        f"find /var/lib/postgresql/{lab.version} -maxdepth 2 -printf '%p %m %u\\n' | sort; "
        f"systemctl is-enabled patroni@{lab.version}-main postgresql@{lab.version}-main; "
        f"systemctl is-active patroni@{lab.version}-main"
    )
    return lab.salt("*", "cmd.run", script)


def _by_highstate(lab):
    """Cluster <version>-main made by one highstate of machines fresh from the image (packages installed; no
    module, program or config), with the formula's pillar; then the minions restarted to skip Salt's module sync
    in the highstates that follow."""
    lab.set_pillar(pillar(lab))
    started = time.monotonic()
    returns = highstate(lab)
    seconds = time.monotonic() - started
    failed, changed, _ = outcomes(returns)
    assert not failed, failed
    lab.converged = pillar_files(lab)
    lab.without_highstate_sync()  # that highstate synced the modules: the next ones need not sync again
    return {"returns": returns, "seconds": seconds}


def main_streaming(lab):
    """Cluster <version>-main has every member streaming (whatever pillar the last test declared)."""
    return bool(netlab.health(lab.nodes, API_PORT))


formula_cluster = starting_point("formula_cluster", _by_highstate, main_streaming, provision=False)


@pytest.fixture
def cluster(formula_cluster, timings):
    lab = formula_cluster
    timings[f"formula: highstate of 3 machines → healthy cluster ({lab.release})"] = lab.made["seconds"]
    return lab, lab.made["returns"]


def converge(lab, declared):
    """``declared`` in pillar, applied by a highstate unless the last one applied that very pillar."""
    lab.set_pillar(declared)
    if getattr(lab, "converged", None) != pillar_files(lab):
        failed, _, _ = outcomes(highstate(lab))
        assert not failed, failed
    lab.converged = pillar_files(lab)


def cluster_ports(lab, member="pg1"):
    """Each pg-common cluster of ``member`` by name: its PostgreSQL port."""
    listing = lab.salt(member, "cmd.run", "pg_lsclusters -h")[member]
    return {line.split()[1]: int(line.split()[2]) for line in listing.splitlines()}


def rest_port(lab, name):
    return cluster_ports(lab)[name] + 2576  # createconfig's REST API port: PostgreSQL's + 2576


def test_highstate_yields_one_leader_and_two_streaming_replicas(cluster):
    lab, returns = cluster
    leader, timeline = netlab.health(lab.nodes, API_PORT)
    assert leader in ("pg1", "pg2", "pg3") and timeline == 1
    for minion in ("pg1", "pg2", "pg3"):
        states = {state["__id__"]: state for state in returns[minion].values()}
        assert states["The program Patroni runs is installed"]["changes"]
        assert states[f"Patroni {lab.version}-main is configured"]["changes"]
        assert (
            "streaming from" in states[f"Patroni {lab.version}-main is running and healthy"]["comment"]
            or minion == leader
        )
    units = lab.salt(
        "*",
        "cmd.run",
        f"systemctl is-enabled patroni@{lab.version}-main; systemctl is-active patroni@{lab.version}-main",
    )
    assert set(units.values()) == {"enabled\nactive"}


def test_a_second_highstate_and_a_dry_run_change_nothing(cluster, timings):
    lab, _ = cluster
    converge(lab, pillar(lab))
    before = netlab.health(lab.nodes, API_PORT)
    started = time.monotonic()
    failed, changed, _ = outcomes(highstate(lab))
    timings[f"formula: converged highstate re-run (3 members at once) ({lab.release})"] = time.monotonic() - started
    assert (failed, changed) == ([], [])
    failed, changed, undecided = outcomes(highstate(lab, test=True))
    assert (failed, changed, undecided) == ([], [], [])
    assert netlab.health(lab.nodes, API_PORT) == before


def test_drift_is_predicted_in_test_mode_untouched_then_healed(cluster):
    lab, _ = cluster
    converge(lab, pillar(lab))
    leader, _ = netlab.health(lab.nodes, API_PORT)
    replica = next(machine for machine in lab.nodes if machine.name != leader)
    replica.run(["sed", "-i", "s/use_unix_socket: true/use_unix_socket: false/", config_path(lab.version)])
    replica.run(["systemctl", "disable", "--now", f"patroni@{lab.version}-main"])
    before = fingerprint(lab)

    predicted = highstate(lab, target=replica.name, test=True)
    failed, changed, undecided = outcomes(predicted)
    assert not failed, failed
    assert {label.split(": ", 1)[1] for label in changed} == {
        f"Patroni {lab.version}-main is configured",
        f"Patroni {lab.version}-main is running and healthy",
    }
    # the live settings can only be read through this member's Patroni, which test mode does not start
    assert set(undecided) - set(changed) == {f"{replica.name}: The live settings of {lab.version}-main are as declared"}
    text = json.dumps(predicted)
    assert "use_unix_socket" in text and PASSWORD not in text
    assert fingerprint(lab) == before

    failed, changed, _ = outcomes(highstate(lab, target=replica.name))
    assert not failed, failed
    assert replica.run(["grep", "-c", "use_unix_socket: true", config_path(lab.version)]).stdout.strip() == "1"
    state = replica.run(
        ["sh", "-c", f"systemctl is-enabled patroni@{lab.version}-main; systemctl is-active patroni@{lab.version}-main"]
    )
    assert state.stdout.split() == ["enabled", "active"]
    assert netlab.wait_until("healed", lambda: netlab.health(lab.nodes, API_PORT), 120)


def test_a_pillar_change_reaches_the_running_cluster_through_the_dcs(cluster):
    lab, _ = cluster
    # values no other test declares: a change, whatever ran before
    lab.set_pillar(pillar(lab, dynamic={"ttl": 23, "postgresql": {"parameters": {"work_mem": "7MB"}}}))
    before = start_times(lab)
    returns = highstate(lab)
    failed, changed, _ = outcomes(returns)
    assert not failed, failed
    assert any(label.endswith(f"The live settings of {lab.version}-main are as declared") for label in changed), changed
    assert start_times(lab) == before  # ttl and work_mem take a reload: no member restarted

    def work_mem_everywhere():
        shown = lab.salt("*", "cmd.run", "psql -X -At -c 'SHOW work_mem'", "runas=postgres")
        return set(shown.values()) == {"7MB"}

    netlab.wait_until("work_mem 7MB on every member", work_mem_everywhere, 60)
    live = lab.salt("pg1", "patroni_debian.dynamic_config", lab.version, "main")["pg1"]
    assert live["ttl"] == 23 and live["postgresql"]["parameters"]["work_mem"] == "7MB"
    failed, changed, _ = outcomes(highstate(lab))
    assert (failed, changed) == ([], [])
    lab.converged = pillar_files(lab)


def test_a_pg_hba_line_and_a_restart_parameter_reach_every_member_and_nothing_restarts(cluster):
    lab, _ = cluster
    generated = lab.salt("pg1", "patroni_debian.render_config", lab.version, "main")["pg1"]
    pg_hba = generated["config"]["bootstrap"]["dcs"]["postgresql"]["pg_hba"] + [
        "host    all             all             10.99.0.0/24            md5"
    ]
    started = "psql -X -At -c 'SELECT pg_postmaster_start_time()'"
    before = lab.salt("*", "cmd.run", started, "runas=postgres")
    settings = {"ttl": 21, "postgresql": {"parameters": {"work_mem": "8MB", "max_connections": 150}, "pg_hba": pg_hba}}
    lab.set_pillar(pillar(lab, dynamic=settings))
    returns = highstate(lab)
    failed, changed, _ = outcomes(returns)
    assert not failed, failed
    comments = [state["comment"] for states in returns.values() for state in states.values() if state["changes"]]
    assert any("pending_restart" in comment and "not done here" in comment for comment in comments), comments

    def rule_everywhere():
        query = "psql -X -At -c \"SELECT count(*) FROM pg_hba_file_rules WHERE address = '10.99.0.0'\""
        return set(lab.salt("*", "cmd.run", query, "runas=postgres").values()) == {"1"}

    netlab.wait_until("the new pg_hba line on every member", rule_everywhere, 60)
    assert lab.salt("*", "cmd.run", started, "runas=postgres") == before  # no member restarted
    pending = lab.salt("*", "patroni_debian.status", lab.version, "main")
    assert all(row["pending_restart"] for status in pending.values() for row in status["members"].values()), pending
    failed, changed, _ = outcomes(highstate(lab))
    assert (failed, changed) == ([], [])
    lab.converged = pillar_files(lab)


def test_a_cluster_without_a_replication_password_is_refused_before_any_change(cluster):
    lab, _ = cluster
    before = fingerprint(lab)
    lab.set_pillar(pillar(lab, password=None))
    try:
        failed, changed, _ = outcomes(highstate(lab, target="pg1"))
        assert changed == [] and failed[0].startswith("pg1: Pillar patroni is valid: "), failed
        assert (
            f"pillar patroni:clusters:{lab.version}-main: authentication:replication:password is required" in failed[0]
        )
        assert all("requisite failed" in line for line in failed[1:]), failed  # nothing else even ran
        assert fingerprint(lab) == before
    finally:
        lab.set_pillar(pillar(lab))  # what converge() then applies when it differs from the last highstate's


def test_a_cluster_outside_patroni_is_kept_until_pillar_says_replace_it(cluster):
    """Debian's way of making a cluster (start.conf auto, running under postgresql@, with data) on one member:
    refused, naming the pillar key, data intact; with replace_existing it is dropped and Patroni clones it."""
    lab, _ = cluster
    member = lab.nodes[1]
    member.run(["pg_createcluster", lab.version, "legacy", "--start"])
    port = cluster_ports(lab, member.name)["legacy"]
    member.run(["su", "postgres", "-c", f"psql -X -q -p {port} -c 'CREATE TABLE kept AS SELECT 1 AS one'"])
    lab.set_pillar(pillar(lab, more=(f"{lab.version}-legacy",)))
    failed, _, _ = outcomes(highstate(lab, target=member.name))
    refused = [line for line in failed if f"Patroni {lab.version}-legacy has no foreign cluster in its way" in line]
    assert refused and f"{lab.version}/legacy (online, start auto" in refused[0], failed
    assert f"patroni:clusters:{lab.version}-legacy:replace_existing: true" in refused[0]
    kept = member.run(["su", "postgres", "-c", f"psql -X -At -p {port} -c 'SELECT one FROM kept'"]).stdout.strip()
    assert kept == "1"

    replacing = pillar(lab, more=(f"{lab.version}-legacy",))
    replacing["patroni"]["clusters"][f"{lab.version}-legacy"]["replace_existing"] = True
    lab.set_pillar(replacing)
    failed, changed, _ = outcomes(highstate(lab))
    assert not failed, failed
    assert f"{member.name}: Patroni {lab.version}-legacy has no foreign cluster in its way" in changed
    assert netlab.wait_until("legacy healthy", lambda: netlab.health(lab.nodes, rest_port(lab, "legacy")), 60)
    failed, changed, _ = outcomes(highstate(lab))
    assert (failed, changed) == ([], [])
    lab.converged = pillar_files(lab)


def with_vip(lab, declared):
    """``declared`` with cluster <version>-vip given the lab's VIP, on the DCS its release's vip-manager follows:
    trixie's etcd3 for vip-manager2, which the formula installs; bookworm's etcd (v2) for vip-manager 1.0.2."""
    dcs = lab.dcs("etcd3" if lab.release == "trixie" else "etcd")
    declared["patroni"]["clusters"][f"{lab.version}-vip"].update(vip=lab.slot.vip, dcs=dcs)
    return declared


def test_a_second_cluster_on_its_own_port_and_a_vip_following_its_leader(cluster):
    """A second cluster beside <version>-main, on the next free port, both streaming; and its VIP:
    vip-manager@<version>-vip from the VIP file configured writes, with the vip-manager the release
    recommends: on trixie vip-manager2 (installed by the formula) following the etcd3 section; on bookworm
    vip-manager 1.0.2, which reads etcd's v2 API only, following an etcd section (the lab's etcd serves v2 too)."""
    lab, _ = cluster
    declared = with_vip(lab, pillar(lab, more=(f"{lab.version}-vip",)))
    lab.set_pillar(declared)
    failed, changed, _ = outcomes(highstate(lab))
    assert not failed, failed
    for name in ("pg1", "pg2", "pg3"):
        assert f"{name}: The VIP of {lab.version}-vip follows its leader" in changed
    for listing in lab.salt("*", "cmd.run", "pg_lsclusters -h").values():
        rows = {line.split()[1]: int(line.split()[2]) for line in listing.splitlines()}
        assert rows["main"] == 5432 and rows["vip"] > 5432, listing  # the second cluster's: the next free port

    api = rest_port(lab, "vip")

    def vip_on_the_leader_only():
        state = netlab.health(lab.nodes, api)
        holders = [m.name for m in lab.nodes if f"{lab.slot.vip}/24" in m.run(["ip", "-o", "address", "show"]).stdout]
        return state and holders == [state[0]] and holders

    leader = netlab.wait_until(f"the VIP on the leader of {lab.version}-vip only", vip_on_the_leader_only, 60)[0]
    assert netlab.health(lab.nodes, API_PORT)  # <version>-main streams on beside it
    failed, changed, _ = outcomes(highstate(lab))
    assert (failed, changed) == ([], [])
    lab.converged = pillar_files(lab)
    if lab.release == "bookworm":  # the release's own vip-manager
        versions = lab.salt("*", "cmd.run", "dpkg-query -W -f='${Version}' vip-manager")
        assert all(version.startswith("1.0.2") for version in versions.values()), versions
    # the leader changes: the VIP follows, every member's vip-manager watching the leader key
    switched = lab.salt(leader, "patroni_debian.switchover", lab.version, "vip")[leader]
    assert isinstance(switched, dict) and switched["new_leader"] != leader, switched
    assert netlab.wait_until("the VIP on the new leader only", vip_on_the_leader_only, 60) == [switched["new_leader"]]


def test_the_password_is_in_no_output_and_no_minion_log(cluster):
    lab, returns = cluster
    assert PASSWORD not in json.dumps(returns)
    logs = lab.salt("*", "cmd.run", f"grep -c {PASSWORD} /var/log/salt/minion || true")
    assert set(logs.values()) == {"0"}, logs
    pattern = f"{PASSWORD[:-1]}[{PASSWORD[-1]}]"  # a regular expression that does not match its own command line
    arguments = lab.salt("*", "cmd.run", f"cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -c '{pattern}' || true")
    assert set(arguments.values()) == {"0"}, arguments  # no process of any member carries it in its arguments


@pytest.mark.spoils
def test_absent_takes_a_member_off_and_keeps_its_data(cluster):
    lab, _ = cluster
    # the clusters the VIP and the legacy tests made, when they ran before (converge makes them when not)
    app, old = f"{lab.version}-vip", f"{lab.version}-legacy"
    converge(lab, with_vip(lab, pillar(lab, more=(app, old))))
    absent = ["patroni_debian.absent", f"name={old} is gone", f"version={lab.version}", "cluster=legacy"]
    wrong = lab.salt("pg1", "state.single", *absent, "purge=maybe")["pg1"]
    assert [state["result"] for state in wrong.values()] == [False]
    assert "purge: 'maybe' is not a boolean" in next(iter(wrong.values()))["comment"]
    before = fingerprint(lab)
    (predicted,) = lab.salt("pg3", "state.single", *absent, "test=True")["pg3"].values()
    assert predicted["result"] is None and set(predicted["changes"]) == {
        f"patroni@{old}",
        f"postgresql@{old}",
        f"/etc/patroni/{old}.yml",
    }, predicted
    assert fingerprint(lab) == before
    (done,) = lab.salt("pg3", "state.single", *absent)["pg3"].values()
    assert done["result"] is True and done["changes"] == predicted["changes"], done
    state = lab.nodes[2].run(
        [
            "sh",
            "-c",
            f"systemctl is-enabled patroni@{old}; systemctl is-active patroni@{old}; "
            f"systemctl is-enabled postgresql@{old}",
        ],
        check=False,
    )
    assert state.stdout.split() == ["disabled", "inactive", "disabled"]  # pg-common's unit no longer masked
    assert lab.nodes[2].run(["test", "-e", f"/etc/patroni/{old}.yml"], check=False).returncode == 1
    assert (
        lab.nodes[2].run(["test", "-f", f"/var/lib/postgresql/{lab.version}/legacy/PG_VERSION"]).returncode == 0
    )  # data kept
    (again,) = lab.salt("pg3", "state.single", *absent)["pg3"].values()
    assert again["result"] is True and again["changes"] == {}

    # the formula's way: patroni.clean takes every cluster of the pillar off pg3; only purge: true drops data
    declared = with_vip(lab, pillar(lab, more=(app, old)))
    declared["patroni"]["clusters"][app]["purge"] = True
    lab.set_pillar(declared)
    returns = lab.salt("pg3", "state.apply", "patroni.clean", timeout=300)
    failed, changed, _ = outcomes(returns)
    assert not failed and len(changed) == 2, (failed, changed)  # main and vip; legacy was gone already
    names = {line.split()[1] for line in lab.nodes[2].run(["pg_lsclusters", "-h"]).stdout.splitlines()}
    assert "vip" not in names and {"main", "legacy"} <= names, names  # vip purged, the others' data kept
    for scope in (f"{lab.version}-main", app):
        assert lab.nodes[2].run(["test", "-e", f"/etc/patroni/{scope}.yml"], check=False).returncode == 1
