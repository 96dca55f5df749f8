"""Backups with pgBackRest (issue 23), on the lab's three machines and a fourth, pg4, the repository host (pillar
``patroni:role: backup``), every certificate from the cluster's CA on pg1.

From fresh machines: pg4 publishes its part, ``orch.patroni`` rolls the cluster out with archiving into the stanza
``<version>-main`` through pg4's TLS server, and the repository host's formula names the members and creates the
stanza. ``pgbackrest check`` then passes on the leader, and again on the new leader after a switchover (archiving
follows the leader); a full backup taken on pg4 is listed with its WAL range.
"""

import json

import netlab
import pytest
from highstate import API_PORT, failures, highstate, machine, orchestrate, outcomes, pillar
from starting_points import trust_cluster_ca


def backup_pillars(lab, repository):
    """The members' pillar (the formula's, with TLS and ``patroni:backup``) and the repository host's."""
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


def pgbackrest(node, *args):
    return node.run(["runuser", "-u", "postgres", "--", "pgbackrest", *args], check=False)


@pytest.mark.spoils
def test_archiving_follows_the_leader_into_the_repository_host_and_a_backup_is_listed(fresh_machines, timings):
    lab = fresh_machines
    stanza = f"{lab.version}-main"
    with lab.extra_machines(1) as (repository,):
        members, own = backup_pillars(lab, repository)
        write_pillars(lab, members, own, repository)
        code, steps, _ = orchestrate(lab, "orch.patroni")
        assert code == 0, failures(steps)
        assert list(steps["The repository host has published its part"]["changes"]["ret"]) == [repository.name]
        served = steps["The repository host serves every member and has each cluster's stanza"]["changes"]["ret"]
        created = [s["__id__"] for s in served[repository.name].values() if s.get("changes")]
        assert f"The stanza {stanza} exists" in created, created
        trust_cluster_ca(lab)  # the REST API is served over https now
        leader, _ = netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, API_PORT), 60)
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
        returns = highstate(lab)
        failed, changed, _ = outcomes(returns)
        assert (failed, changed) == ([], []), (failed, changed)
