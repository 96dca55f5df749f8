"""The decisions of a restore (issue 23, ``orch.patroni_restore``) that need no machine: the target as given, the
backup set a time starts from and the refusals of a target outside the archive, what Patroni writes for the
recovery, and the bootstrap section that makes Patroni's bootstrap a restore; read from pgBackRest 2.45's own
``info`` (captured on bookworm). The lab restores a cluster to a time: tests/systemd_machines/test_backup.py."""

import datetime
import json
import os
import pathlib
import sys

import pytest
from salt.exceptions import SaltInvocationError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_modules"))
import patroni_debian as debian  # noqa: E402  pylint: disable=wrong-import-position
import patroni_debian_backup as backup_module  # noqa: E402  pylint: disable=wrong-import-position

CAPTURE = pathlib.Path(__file__).parent / "captures" / "pgbackrest" / "bookworm-info-one-full.json"
INFO = json.loads(CAPTURE.read_text())  # one full backup of stanza 15-bk, ended at 1796307970 (UNIX seconds)
UTC = datetime.timezone.utc
DATADIR = "/var/lib/postgresql/15/main"


def listed(*more):
    """The captured stanza, with ``more`` backups after its full one: ``(label, type, stopped)``."""
    document = json.loads(json.dumps(INFO))
    for label, kind, stopped in more:
        one = json.loads(json.dumps(document[0]["backup"][0]))
        one.update(label=label, type=kind, timestamp={"start": stopped - 5, "stop": stopped})
        document[0]["backup"].append(one)
    return backup_module._backups_of(document, "15-bk")


def test_the_stanza_s_database_system_is_read_from_pgbackrest_s_info():
    assert listed()["system_identifier"] == "7715083836920374966"


@pytest.mark.parametrize(
    "target, says",
    [
        ("yesterday", "target: 'yesterday' is not 'latest' or a mapping"),
        ({"when": "x"}, "target: unknown key 'when'; known: time, name, set, timeline"),
        ({"time": "2026-12-03 17:00:00"}, "has no time zone; add one"),
        ({"time": "3 pm"}, "'3 pm' is not a time such as"),
        ({"time": "2026-12-03 17:00:00+00", "name": "x"}, "a time or a name, not both"),
        ({"set": "latest"}, "'latest' is not a pgBackRest backup label"),
        ({"timeline": "newest"}, "is not current, latest or a timeline number"),
        ({"timeline": 2}, "give a time, a name or a set"),
        ({"name": ""}, "target:name"),
    ],
)
def test_a_bad_target_is_refused_with_the_reason(target, says):
    with pytest.raises(SaltInvocationError) as refused:
        backup_module._check_restore_target(target)
    assert says in str(refused.value)


def test_a_time_is_taken_in_its_own_zone_and_written_in_utc():
    checked = backup_module._check_restore_target({"time": "2026-12-03 18:30:00.25+01:00", "timeline": "current"})
    assert checked["time"] == datetime.datetime(2026, 12, 3, 17, 30, 0, 250000, tzinfo=UTC)
    assert backup_module._recovery_conf("15-main", checked, DATADIR) == {
        "restore_command": 'pgbackrest --stanza=15-main --pg1-path=/var/lib/postgresql/15/main archive-get %f "%p"',
        "recovery_target_time": "2026-12-03 17:30:00.250000+00",
        "recovery_target_action": "promote",
        "recovery_target_timeline": "current",
    }


def test_latest_recovers_to_the_end_of_the_archive_and_a_set_to_its_consistent_end():
    assert backup_module._check_restore_target("latest") == {}
    assert backup_module._recovery_conf("15-main", {}, DATADIR) == {
        "restore_command": 'pgbackrest --stanza=15-main --pg1-path=/var/lib/postgresql/15/main archive-get %f "%p"'
    }
    by_set = backup_module._check_restore_target({"set": "20261203-142604F"})
    assert backup_module._recovery_conf("15-main", by_set, DATADIR)["recovery_target"] == "immediate"
    by_name = backup_module._check_restore_target({"name": "before-migration"})
    assert backup_module._recovery_conf("15-main", by_name, DATADIR)["recovery_target_name"] == "before-migration"


def test_a_time_starts_from_the_newest_backup_that_ended_before_it():
    stanza = listed(("20261203-150000F_20261203-150100D", "diff", 1796311000), ("20261203-160000F", "full", 1796314600))
    at = {"time": datetime.datetime.fromtimestamp(1796312000, UTC)}
    assert backup_module._restore_choice(stanza, at, now=1796400000)["label"] == "20261203-150000F_20261203-150100D"
    assert backup_module._restore_choice(stanza, {}, now=1796400000)["label"] == "20261203-160000F"
    named = {"set": "20261203-142604F"}
    assert backup_module._restore_choice(stanza, named, now=1796400000)["label"] == "20261203-142604F"


@pytest.mark.parametrize(
    "target, says",
    [
        ({"time": datetime.datetime.fromtimestamp(1796307969, UTC)}, "is outside the archive of 15-bk: its oldest"),
        ({"time": datetime.datetime.fromtimestamp(1796400001, UTC)}, "is in the future"),
        ({"set": "20261203-142605F"}, "stanza 15-bk has no backup 20261203-142605F (it has 20261203-142604F)"),
    ],
)
def test_a_target_outside_the_archive_is_refused(target, says):
    with pytest.raises(SaltInvocationError) as refused:
        backup_module._restore_choice(listed(), target, now=1796400000)
    assert says in str(refused.value)


def test_a_stanza_without_a_good_backup_is_refused():
    empty = dict(listed(), backups=[dict(listed()["backups"][0], error=True)])
    with pytest.raises(SaltInvocationError, match="stanza 15-bk has no backup to restore"):
        backup_module._restore_choice(empty, {}, now=1796400000)


def test_the_restore_is_patroni_s_bootstrap_through_the_program_with_the_recovery_patroni_writes():
    recovery = {"restore_command": "x", "recovery_target": "immediate", "recovery_target_action": "promote"}
    section = backup_module._restore_bootstrap(debian.PROGRAM, "15-main", "20261203-142604F", recovery)
    assert section == {
        "method": "pgbackrest_restore",
        "pgbackrest_restore": {
            "command": f"/usr/bin/python3 {debian.PROGRAM} restore --stanza=15-main --set=20261203-142604F",
            "recovery_conf": recovery,
        },
    }


@pytest.mark.parametrize(
    "argv, says",
    [
        (["restore", "--scope=15-main", "--datadir=/var/lib/postgresql/15/main"], "stanza: required"),
        (["restore", "--scope=15-main", "--datadir=relative", "--stanza=15-main"], "must be an absolute path"),
        (["restore", "--scope=15-main", "--datadir=/d", "--stanza=15-main", "--set=x;rm"], "not a pgBackRest backup"),
    ],
)
def test_the_program_s_restore_refuses_bad_arguments_before_touching_the_host(argv, says, capsys):
    assert debian._main(argv) == debian.EXIT_USAGE
    assert says in capsys.readouterr().err


@pytest.mark.parametrize(
    "stanzas, given, reads",
    [
        (["15-main-2", "15-main"], None, "15-main"),
        (["15-main-3", "15-main-2", "15-main"], None, "15-main-2"),
        (["15-main-3", "15-main-2", "15-main"], "15-main", "15-main"),
    ],
)
def test_a_restore_reads_the_stanza_before_the_one_it_archives_into(stanzas, given, reads):
    assert backup_module._restore_source("15-main", stanzas, given) == reads


@pytest.mark.parametrize(
    "stanzas, given, says",
    [
        (["15-main"], None, "would archive into 15-main, the stanza it is restored from: declare a fresh stanza"),
        (["15-main"], None, "patroni:backup:stanzas: {15-main: [15-main-2, 15-main]}"),
        (["15-main-2", "15-main"], "15-main-2", "{15-main: [15-main-3, 15-main-2, 15-main]}"),
        (["15-main-2", "15-main"], "15-other", "'15-other' is not one of 15-main's: 15-main-2, 15-main"),
    ],
)
def test_a_restore_into_the_stanza_it_reads_is_refused_with_the_pillar_that_would_do(stanzas, given, says):
    with pytest.raises(SaltInvocationError) as refused:
        backup_module._restore_source("15-main", stanzas, given)
    assert says in str(refused.value)


def test_a_stanza_of_another_database_system_is_refused_and_an_unknown_one_is_not():
    with pytest.raises(SaltInvocationError) as refused:
        backup_module._check_same_system("15-main", "7715083836920374966", "15-main", "7715083836920374967")
    assert "stanza 15-main holds the backups of database system 7715083836920374966, not of cluster" in str(
        refused.value
    )
    backup_module._check_same_system("15-main", listed()["system_identifier"], "15-main", "7715083836920374966")
    backup_module._check_same_system("15-main", "7715083836920374966", "15-main", None)  # the DCS lost its keys


@pytest.mark.parametrize(
    "role, clusters, answer",
    [
        ("replica", {"15-main": {}}, {"scope": "15-nowhere", "member": False}),  # a member of another cluster only
        ("replica", None, {"scope": "15-nowhere", "member": False}),
        ("bootstrap", {"15-main": {}}, "pillar patroni:clusters does not declare it"),  # the restore would be here
    ],
)
def test_a_member_that_does_not_declare_the_cluster_takes_no_part_unless_the_restore_is_there(
    monkeypatch, role, clusters, answer
):
    backup = {"repository": {"pgbr": "10.0.0.9"}}
    pillar = {"patroni": {"role": role, "tls": {"ca_server": "pg1"}, "backup": backup}}
    pillar["patroni"].update({"clusters": clusters} if clusters else {})
    monkeypatch.setattr(backup_module, "__pillar__", pillar, raising=False)
    monkeypatch.setattr(backup_module, "__grains__", {}, raising=False)
    assert not os.path.lexists("/etc/patroni/15-nowhere.yml")
    if isinstance(answer, dict):
        assert backup_module.restore_plan("15", "nowhere") == answer
    else:
        with pytest.raises(SaltInvocationError) as refused:
            backup_module.restore_plan("15", "nowhere", stanza="15-main")
        assert answer in str(refused.value)
