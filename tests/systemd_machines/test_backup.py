"""Backups with pgBackRest (issue 23), on the lab's three machines and a fourth, pg4, the repository host (pillar
``patroni:role: backup``), every certificate from the cluster's CA on pg1.

From fresh machines, a TLS cluster rolled out archiving nothing; then pillar declares the backup, ``orch.patroni``
has pg4 publish its part, writes every member's pgBackRest and puts the archiving into the DCS (``archive_mode``
waits for a restart), then has pg4 name the members and create the stanza ``<version>-main``;
``orch.patroni_restart`` restarts the members one at a time. ``pgbackrest check`` then passes on the leader, and
again on the new leader after a switchover (archiving follows the leader); a full backup taken on pg4 is listed
with its WAL range; the default schedule's timers wait on pg4, and the differential one's service takes a backup
on the full one; a highstate of all four then changes nothing.
"""

import json
import threading
import time

import netlab
import pytest
from highstate import (
    API_PORT,
    backup_pillars,
    failures,
    highstate,
    machine,
    orchestrate,
    outcomes,
    pillar,
    start_times,
    write_pillars,
)
from starting_points import trust_cluster_ca


def active(node, unit):
    return node.run(["systemctl", "is-active", unit], check=False).stdout.strip()


def pgbackrest(node, *args):
    return node.run(["runuser", "-u", "postgres", "--", "pgbackrest", *args], check=False)


@pytest.mark.spoils
def test_backups_turned_on_for_a_running_cluster_follow_the_leader_into_the_repository_host(fresh_machines, timings):
    lab = fresh_machines
    stanza = f"{lab.version}-main"
    lab.set_pillar(pillar(lab, tls={"ca_server": "pg1"}))
    code, steps, _ = orchestrate(lab, "orch.patroni")
    assert code == 0, failures(steps)
    trust_cluster_ca(lab)  # the REST API is served over https now
    with lab.extra_machines(1) as (repository,):
        members, own = backup_pillars(lab, repository)
        write_pillars(lab, members, own, repository)
        started = time.monotonic()
        code, steps, _ = orchestrate(lab, "orch.patroni")
        assert code == 0, failures(steps)
        assert list(steps["The repository host has published its part"]["changes"]["ret"]) == [repository.name]
        served = steps["The repository host serves every member and has each cluster's stanza"]["changes"]["ret"]
        created = [s["__id__"] for s in served[repository.name].values() if s.get("changes")]
        assert f"The stanza {stanza} exists" in created, created
        code, steps, _ = orchestrate(lab, "orch.patroni_restart")  # archive_mode takes a restart
        assert code == 0, failures(steps)
        timings[f"backup: turned on for a running cluster, rollout and rolling restart ({lab.release})"] = (
            time.monotonic() - started
        )
        leader, _ = netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, API_PORT), 60)
        shown = machine(lab, leader).psql("SHOW archive_mode")
        assert shown == "on", shown
        checked = pgbackrest(machine(lab, leader), f"--stanza={stanza}", "check")
        assert checked.returncode == 0, checked.stderr
        switched = lab.salt(leader, "patroni_debian.switchover", lab.version, "main")[leader]
        new = switched["new_leader"]
        netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, API_PORT), 60)
        checked = pgbackrest(machine(lab, new), f"--stanza={stanza}", "check")
        assert checked.returncode == 0, checked.stderr
        taken = lab.salt(repository.name, "patroni_debian.backup", lab.version, "main", timeout=300)[repository.name]
        assert isinstance(taken, dict) and taken["type"] == "full" and not taken["error"], taken
        listed = lab.salt(repository.name, "patroni_debian.backups", lab.version, "main")[repository.name]
        assert [one["label"] for one in listed["backups"]] == [taken["label"]], listed
        # the default schedule: a timer per type, enabled and waiting; its service takes the backup it names
        for kind in ("full", "diff"):
            timer = f"patroni-debian-backup-{stanza}-{kind}.timer"
            shown = repository.run(["systemctl", "is-enabled", timer], check=False).stdout.strip()
            assert shown == "enabled" and active(repository, timer) == "active", (timer, shown)
        repository.run(["systemctl", "start", f"patroni-debian-backup-{stanza}-diff.service"])  # oneshot: waits
        listed = lab.salt(repository.name, "patroni_debian.backups", lab.version, "main")[repository.name]
        assert [one["type"] for one in listed["backups"]] == ["full", "diff"], listed
        assert listed["backups"][1]["prior"] == taken["label"]
        returns = highstate(lab)
        failed, changed, _ = outcomes(returns)
        assert (failed, changed) == ([], []), (failed, changed)
        restored_to_a_time_before_a_disaster(lab, repository, members, own, timings)
        replica_from_the_repository_while_the_leader_writes(lab, timings)
        restored_into_a_new_scope_beside_the_running_cluster(lab, repository, members, own, timings)


ROWS = "SELECT count(*) || ':' || md5(coalesce(string_agg(id::text, ',' ORDER BY id), '')) FROM rows"


def with_stanzas(lab, repository, members, own, stanzas, **more):
    """Pillar ``patroni:backup:stanzas`` for the lab's cluster (the stanza it archives into first), and ``more``
    keys of ``patroni:backup``."""
    for one in (members, own):
        one["patroni"]["backup"].update(more, stanzas={f"{lab.version}-main": stanzas})
    write_pillars(lab, members, own, repository)


def archive_end(lab, repository, stanza):
    """The last WAL segment in ``stanza``'s archive."""
    listed = lab.salt(repository.name, "patroni_debian.backups", lab.version, "main", f"stanza={stanza}")
    return listed[repository.name]["archive"]["max"]


def restore(lab, **request):
    return orchestrate(
        lab, "orch.patroni_restore", f"pillar={json.dumps(dict(request, cluster=f'{lab.version}-main'))}"
    )


def pg_cluster(node, version, name):
    """pg-common's line for ``<version>/<name>`` in ``pg_lsclusters``: ``[version, name, port, status, …]``."""
    for line in node.run(["pg_lsclusters", "-h"]).stdout.splitlines():
        if line.split()[:2] == [version, name]:
            return line.split()
    return None


def rows_everywhere(lab):
    netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, API_PORT), 120)
    return [one.psql(ROWS) for one in lab.nodes]


def restored_to_a_time_before_a_disaster(lab, repository, members, own, timings):
    """Batch A, time T, batch B, the WAL archived; bad restores refused, nothing lost; every data directory and
    the DCS keys destroyed, the cluster restored to T into a fresh stanza: the leader has batch A exactly, on a
    timeline above the old one, both replicas streaming with the same rows, a full backup in the fresh stanza,
    and not one WAL segment more in the old one. Then batch C, and the restored cluster's own backup restored
    in turn (to the end of its archive, over the running cluster, confirmed), with replicas made from the
    repository first (its fresh stanza has no backup yet: they fall back to cloning the leader): A and C
    everywhere."""
    scope = f"{lab.version}-main"
    leader, _ = netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, API_PORT), 60)
    node = machine(lab, leader)
    node.psql("CREATE TABLE rows (id int PRIMARY KEY); INSERT INTO rows SELECT generate_series(1, 1000)")
    batch_a = node.psql(ROWS)
    moment = node.psql("SELECT clock_timestamp()")
    time.sleep(1.1)
    node.psql("INSERT INTO rows SELECT generate_series(1001, 2000)")
    both = node.psql(ROWS)
    checked = pgbackrest(node, f"--stanza={scope}", "check")  # switches the WAL and waits for its archiving
    assert checked.returncode == 0, checked.stderr
    timeline = json.loads(node.http("/patroni", port=API_PORT))["timeline"]
    said = lab.salt("pg1", "patroni_debian.restore_plan", lab.version, "main", f"target={json.dumps({'time': moment})}")
    assert f"patroni:backup:stanzas: {{{scope}: [{scope}-2, {scope}]}}" in str(said["pg1"]), said
    with_stanzas(lab, repository, members, own, [f"{scope}-2", scope])
    refusals = {
        "confirm=": {"time": moment},
        "outside the archive": {"time": "2000-01-01 00:00:00+00"},
        "in the future": {"time": "2999-01-01 00:00:00+00"},
        "no time zone": {"time": "2026-12-03 17:00:00"},
        "has no backup 20000101-000000F": {"set": "20000101-000000F"},
    }
    for reason, target in refusals.items():
        said = lab.salt("pg1", "patroni_debian.restore_plan", lab.version, "main", f"target={json.dumps(target)}")
        assert reason in str(said["pg1"]), (reason, said)
    code, steps, _ = restore(lab, target={"time": moment})
    assert code != 0 and "confirm=" in failures(steps), failures(steps)
    assert node.psql(ROWS) == both  # nothing lost, nothing stopped
    # the disaster: every data directory and the cluster's keys in the DCS gone
    for one in lab.nodes:
        one.run(["systemctl", "stop", f"patroni@{scope}"])
        one.run(["rm", "-rf", f"/var/lib/postgresql/{lab.version}/main"])
    answer = f"{scope}\nYes I am aware\n"
    node.run(["sh", "-c", f"printf '{answer}' | patronictl -c /etc/patroni/{scope}.yml remove {scope}"])
    old_end = archive_end(lab, repository, scope)
    started = time.monotonic()
    code, steps, _ = restore(lab, target={"time": moment})
    assert code == 0, failures(steps)
    timings[f"backup: restored to a time from nothing, a full backup in the fresh stanza ({lab.release})"] = (
        time.monotonic() - started
    )
    (restored,) = steps["The bootstrap member has restored the cluster and leads it"]["changes"]["ret"].values()
    assert restored["timeline"] > timeline and restored["stanza"] == scope, (restored, timeline)
    assert rows_everywhere(lab) == [batch_a] * 3
    # pg-common lists every member online, run by Patroni (its status flags: online[,recovery],patroni)
    assert all({"online", "patroni"} <= set(pg_cluster(one, lab.version, "main")[3].split(",")) for one in lab.nodes)
    listed = lab.salt(repository.name, "patroni_debian.backups", lab.version, "main")[repository.name]
    assert (listed["stanza"], [one["type"] for one in listed["backups"]]) == (f"{scope}-2", ["full"]), listed
    assert archive_end(lab, repository, scope) == old_end  # the old stanza received no WAL from the restored one
    # the restored cluster's own backup is restorable: batch C, then a restore to the end of its archive
    node = machine(lab, restored["leader"])
    node.psql("INSERT INTO rows SELECT generate_series(2001, 2500)")
    batches_a_c = node.psql(ROWS)
    checked = pgbackrest(node, f"--stanza={scope}-2", "check")
    assert checked.returncode == 0, checked.stderr
    with_stanzas(lab, repository, members, own, [f"{scope}-3", f"{scope}-2", scope], replicas_from_repository=True)
    started = time.monotonic()
    code, steps, _ = restore(lab, confirm=scope)
    assert code == 0, failures(steps)
    timings[f"backup: a running cluster restored to the end of its archive, confirmed ({lab.release})"] = (
        time.monotonic() - started
    )
    assert rows_everywhere(lab) == [batches_a_c] * 3
    assert archive_end(lab, repository, scope) == old_end
    replica = next(node for node in lab.nodes if node.name != restored["leader"])
    journal = replica.run(["journalctl", "-o", "cat", "-u", f"patroni@{scope}"]).stdout
    assert "Error creating replica using method pgbackrest" in journal, journal[-3000:]


def replica_from_the_repository_while_the_leader_writes(lab, timings):
    """Pillar ``replicas_from_repository`` (set before the last restore): a replica re-initialised while the
    leader takes writes is made from the repository's newest backup (Patroni's log names the method) over its own
    data, in place (pgBackRest's ``--delta``), streams, and has the leader's rows."""
    leader, _ = netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, API_PORT), 60)
    replica = next(node for node in lab.nodes if node.name != leader)
    stop, written = threading.Event(), []

    def write():
        while not stop.is_set():
            machine(lab, leader).psql(f"INSERT INTO rows VALUES ({3001 + len(written)})")
            written.append(1)

    writer = threading.Thread(target=write)
    writer.start()
    started = time.monotonic()
    try:
        reinit = lab.salt(replica.name, "patroni_debian.reinit", lab.version, "main", timeout=300)[replica.name]
    finally:
        stop.set()
        writer.join()
    timings[f"backup: a replica made from the repository while the leader writes ({lab.release})"] = (
        time.monotonic() - started
    )
    assert isinstance(reinit, dict), reinit
    journal = replica.run(["journalctl", "-o", "cat", "-u", f"patroni@{lab.version}-main"]).stdout
    assert "replica has been created using pgbackrest" in journal, journal[-3000:]
    # Patroni kept the replica's data (keep_data): pgBackRest fetched only what differs (--delta)
    assert "Leaving data directory uncleaned" in journal and "'delta': True" in journal, journal[-3000:]
    assert len(written) > 10, written
    counts = netlab.wait_until("the same rows everywhere", lambda: len(set(rows_everywhere(lab))) == 1, 30)
    assert counts and rows_everywhere(lab)[0].startswith(f"{1500 + len(written)}:"), rows_everywhere(lab)


def restored_into_a_new_scope_beside_the_running_cluster(lab, repository, members, own, timings):
    """Pillar declares ``<version>-copy`` on pg1 alone, reading the running cluster's stanza and archiving into its
    own; the formula never ran for it. Restored to the end of the archive beside the running cluster, on the same
    machines: its one member leads with the cluster's rows, pg-common lists it online on its own port, it archives
    into its own stanza (a full backup there), and the running cluster kept its members, timeline and rows,
    nothing in it restarted."""
    scope, copy = f"{lab.version}-main", f"{lab.version}-copy"
    leader, _ = netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, API_PORT), 60)
    rows = machine(lab, leader).psql(ROWS)
    checked = pgbackrest(machine(lab, leader), f"--stanza={scope}-3", "check")  # every row's WAL in the archive
    assert checked.returncode == 0, checked.stderr
    before, timeline = start_times(lab), json.loads(machine(lab, leader).http("/patroni", port=API_PORT))["timeline"]
    stanzas = {scope: [f"{scope}-3", f"{scope}-2", scope], copy: [copy, f"{scope}-3"]}
    for one in (members, own):
        one["patroni"]["backup"]["stanzas"] = stanzas
    declared = {"patroni": {"clusters": {copy: members["patroni"]["clusters"][scope]}}}
    write_pillars(lab, members, own, repository, only={"pg1": declared})
    started = time.monotonic()
    code, steps, _ = orchestrate(lab, "orch.patroni_restore", f"pillar={json.dumps({'cluster': copy})}")
    assert code == 0, failures(steps)
    timings[f"backup: restored into a new scope beside the running cluster ({lab.release})"] = (
        time.monotonic() - started
    )
    planned = steps["Every member finds the restore possible and confirmed"]["changes"]["ret"]
    assert {name: plan["member"] for name, plan in planned.items()} == {"pg1": True, "pg2": False, "pg3": False}
    (restored,) = steps["The bootstrap member has restored the cluster and leads it"]["changes"]["ret"].values()
    assert (restored["leader"], restored["stanza"], restored["archives_into"]) == ("pg1", f"{scope}-3", copy)
    pg1 = machine(lab, "pg1")
    assert pg1.psql(ROWS, cluster=f"{lab.version}/copy") == rows
    listed = pg_cluster(pg1, lab.version, "copy")
    assert listed[3] == "online,patroni" and listed[2] != pg_cluster(pg1, lab.version, "main")[2], listed
    assert f"--stanza={copy} " in pg1.psql("SHOW archive_command", cluster=f"{lab.version}/copy")
    backups = lab.salt(repository.name, "patroni_debian.backups", lab.version, "copy")[repository.name]
    assert (backups["stanza"], [one["type"] for one in backups["backups"]]) == (copy, ["full"]), backups
    assert rows_everywhere(lab) == [rows] * 3
    assert start_times(lab) == before  # the running cluster: not one member restarted
    assert json.loads(machine(lab, leader).http("/patroni", port=API_PORT))["timeline"] == timeline
