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
import time

import netlab
import pytest
from highstate import API_PORT, failures, highstate, machine, orchestrate, outcomes, pillar
from starting_points import trust_cluster_ca


def backup_pillars(lab, repository):
    """The members' pillar (the formula's with TLS, and ``patroni:backup``) and the repository host's."""
    backup = {"repository": {repository.name: repository.address}}
    members = pillar(lab, tls={"ca_server": "pg1"})
    members["patroni"]["backup"] = backup
    own = {"patroni": {"role": "backup", "tls": {"ca_server": "pg1"}, "backup": backup}}
    return members, own


def write_pillars(lab, members, own, repository):
    (lab.pillar_root / "lab.sls").write_text(json.dumps(members))
    (lab.pillar_root / "repository.sls").write_text(json.dumps(own))
    top = f"base:\n  'L@pg1,pg2,pg3':\n    - match: compound\n    - lab\n  '{repository.name}':\n    - repository\n"
    (lab.pillar_root / "top.sls").write_text(top)
    assert all(lab.salt("*", "saltutil.refresh_pillar", "wait=True").values())


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
        shown = machine(lab, leader).run(["runuser", "-u", "postgres", "--", "psql", "-XAtc", "SHOW archive_mode"])
        assert shown.stdout.strip() == "on", shown
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
