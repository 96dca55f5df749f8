"""The decisions of issue 23 that need no machine: pillar ``patroni:backup`` checked before anything is installed,
the ``/etc/pgbackrest.conf`` of a member and of the repository host, the archiving a backup puts in the DCS, the
certificate's names, and the backups of a stanza read from pgBackRest's own answer (captured from bookworm's
2.45). The lab proves archiving, check and backup work: tests/systemd_machines/test_backup.py."""

import ipaddress
import os
import pathlib
import sys

import pytest
from salt.exceptions import SaltInvocationError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_modules"))
import patroni_debian_backup as backup_module  # noqa: E402  pylint: disable=wrong-import-position
import patroni_debian_config as config  # noqa: E402  pylint: disable=wrong-import-position
import patroni_debian_render as render  # noqa: E402  pylint: disable=wrong-import-position

TLS = {"ca_server": "pg1"}
REPOSITORY = {"pgbr": "10.0.0.20"}


@pytest.mark.parametrize(
    "backup, tls, says",
    [
        ("pgbr", TLS, "backup: expected a mapping such as {repository: {pgbr: 10.0.0.20}}, got str"),
        ({"repository": REPOSITORY, "retention": 2}, TLS, "unknown key 'retention' (did you mean 'retention_full'?)"),
        ({}, TLS, "backup:repository: must map the repository host's minion id to its address, one host"),
        ({"repository": {"a": "10.0.0.20", "b": "10.0.0.21"}}, TLS, "one host"),
        ({"repository": ["pgbr"]}, TLS, "backup:repository: must map"),
        ({"repository": {"pg br": "10.0.0.20"}}, TLS, "backup:repository: 'pg br' is not a minion id"),
        ({"repository": {"pgbr": "127.0.0.1"}}, TLS, "backup:repository:pgbr: 127.0.0.1 is a loopback address"),
        ({"repository": {"pgbr": "backup.example"}}, TLS, "is not an IP address"),
        ({"repository": REPOSITORY, "path": "backups"}, TLS, "backup:path: 'backups' must be an absolute path"),
        ({"repository": REPOSITORY, "path": "/var/lib"}, TLS, "backup:path: /var/lib is /var/lib"),
        ({"repository": REPOSITORY, "path": "/etc/pgbackrest"}, TLS, "/etc/pgbackrest is inside /etc"),
        ({"repository": REPOSITORY, "path": "/var/lib/x\n"}, TLS, "must be an absolute path"),
        ({"repository": REPOSITORY, "retention_full": 0}, TLS, "backup:retention_full: 0 must be a whole number"),
        ({"repository": REPOSITORY, "retention_full": True}, TLS, "backup:retention_full: True must be"),
        ({"repository": REPOSITORY, "retention_full": "2"}, TLS, "backup:retention_full: '2' must be"),
        ({"repository": REPOSITORY, "from_replica": "perhaps"}, TLS, "backup:from_replica: 'perhaps' is not a boolean"),
        ({"repository": REPOSITORY, "schedule": "daily"}, TLS, "backup:schedule: expected a mapping"),
        ({"repository": REPOSITORY, "schedule": {"weekly": "Sun"}}, TLS, "unknown key 'weekly'"),
        ({"repository": REPOSITORY, "schedule": {"full": "Sun\nExecStart=/bin/sh"}}, TLS, "is not a systemd calendar"),
        ({"repository": REPOSITORY, "schedule": {"full": 7}}, TLS, "backup:schedule:full: 7 is not a systemd"),
        ({"repository": REPOSITORY}, None, "backup: needs pillar patroni:tls:ca_server"),
        ({"repository": REPOSITORY, "stanzas": ["15-main"]}, TLS, "backup:stanzas: expected a mapping such as"),
        ({"repository": REPOSITORY, "replicas_from_repository": "yes"}, TLS, "'yes' is not true, false or a list"),
        ({"repository": REPOSITORY, "replicas_from_repository": [15]}, TLS, "[15] is not true, false or a list"),
        ({"repository": REPOSITORY, "stanzas": {"main": ["15-main"]}}, TLS, "backup:stanzas:main: not a scope"),
        ({"repository": REPOSITORY, "stanzas": {"15-main": []}}, TLS, "expected a list of stanzas"),
        ({"repository": REPOSITORY, "stanzas": {"15-main": ["main 2"]}}, TLS, "'main 2' is not a stanza name"),
        ({"repository": REPOSITORY, "stanzas": {"15-a": ["15-a-2", "15-a-2"]}}, TLS, "stanza 15-a-2 is named twice"),
        ({"repository": REPOSITORY, "stanzas": {"15-a": ["15-x"], "15-b": ["15-x"]}}, TLS, "15-x, the stanza 15-a"),
        ({"repository": REPOSITORY, "stanzas": {"15-a": ["15-b"], "15-b": ["15-b-2"]}}, TLS, "named by 15-b too"),
        ({"repository": REPOSITORY}, {"ca_file": "/a", "cert_file": "/b", "key_file": "/c"}, "needs pillar"),
    ],
)
def test_a_pillar_backup_that_cannot_be_deployed_is_refused_with_the_reason(backup, tls, says):
    with pytest.raises(SaltInvocationError) as refused:
        render._check_backup(backup, tls)
    assert says in str(refused.value)


def test_a_repository_host_alone_is_enough_the_rest_has_defaults():
    assert render._check_backup({"repository": REPOSITORY}, TLS) == {
        "repository": {"host": "pgbr", "address": "10.0.0.20"},
        "path": "/var/lib/pgbackrest",
        "retention_full": 2,
        "from_replica": True,
        "schedule": {"full": "Sun *-*-* 01:00:00", "diff": "Mon..Sat *-*-* 01:00:00"},
        "stanzas": {},
        "replicas_from_repository": False,
    }
    given = {"repository": {"pgbr": "fd00::20"}, "path": "/srv/backups/", "retention_full": 7, "from_replica": "no"}
    checked = render._check_backup(dict(given, schedule={"incr": " hourly "}), TLS)
    assert checked["repository"]["address"] == "fd00::20" and checked["path"] == "/srv/backups"
    assert (checked["retention_full"], checked["from_replica"]) == (7, False)
    assert checked["schedule"] == {"incr": "hourly"}
    assert render._check_backup(dict(given, schedule={}), TLS)["schedule"] == {}  # backups on demand only
    assert render._check_backup(None, TLS) is None


FILES = {"ca_file": "/etc/patroni/tls/ca.crt", "cert_file": "/etc/patroni/tls/member.crt", "key_file": "/k.key"}
CHECKED = render._check_backup({"repository": REPOSITORY}, TLS)
CAPTURES = pathlib.Path(__file__).parent / "captures" / "pgbackrest"


def sections(text):
    """A pgbackrest.conf as ``{section: [(key, value), …]}``, repeated keys kept in their order."""
    parsed, current = {}, None
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = parsed.setdefault(line[1:-1], [])
        elif line and not line.startswith("#"):
            key, value = line.split("=", 1)
            current.append((key, value))
    return parsed


def test_a_member_archives_through_the_repository_host_s_server_and_serves_the_repository_host_alone():
    text = backup_module._member_conf(CHECKED, FILES, "pgbr.example", {"15-main": 5432, "16-sales": 5433})
    assert text.startswith("# pgBackRest for patroni_debian, written by Salt")
    conf = sections(text)
    assert list(conf) == ["global", "15-main", "16-sales"]
    shown = dict(conf["global"])
    assert (shown["repo1-host"], shown["repo1-host-type"], shown["repo1-host-port"]) == ("10.0.0.20", "tls", "8432")
    assert shown["repo1-host-cert-file"] == shown["tls-server-cert-file"] == "/etc/patroni/tls/member.crt"
    assert [value for key, value in conf["global"] if key == "tls-server-auth"] == ["pgbr.example=15-main,16-sales"]
    assert shown["compress-type"] == "zst"  # each WAL segment archive-push sends: zstd, not gzip (bench/backup.py)
    assert dict(conf["16-sales"]) == {
        "pg1-path": "/var/lib/postgresql/16/sales",
        "pg1-port": "5433",
        "pg1-socket-path": "/var/run/postgresql",
    }


def test_the_repository_host_reaches_every_member_and_lets_each_in_to_its_own_stanzas_only():
    members = {
        "15-main": {
            "pg2": {"address": "10.0.0.12", "port": 5432, "cn": "pg2.example"},
            "pg1": {"address": "10.0.0.11", "port": 5432, "cn": "pg1.example"},
        },
        "16-sales": {"pg3": {"address": "fd00::13", "port": 5433, "cn": "pg3.example"}},
    }
    conf = sections(backup_module._repository_conf(CHECKED, FILES, members))
    shown = dict(conf["global"])
    assert (shown["repo1-path"], shown["repo1-retention-full"], shown["start-fast"]) == (
        "/var/lib/pgbackrest",
        "2",
        "y",
    )
    assert shown["compress-type"] == "zst"
    assert [value for key, value in conf["global"] if key == "tls-server-auth"] == [
        "pg1.example=15-main",
        "pg2.example=15-main",
        "pg3.example=16-sales",
    ]
    main = dict(conf["15-main"])
    assert (main["pg1-host"], main["pg2-host"], main["backup-standby"]) == ("10.0.0.11", "10.0.0.12", "y")
    assert main["pg2-path"] == "/var/lib/postgresql/15/main" and main["pg2-host-type"] == "tls"
    sales = dict(conf["16-sales"])
    assert (sales["pg1-host"], sales["pg1-port"], sales["backup-standby"]) == ("fd00::13", "5433", "n")
    assert "pg2-host" not in sales  # one member: its backups are read from it, the primary


def test_backups_as_data_and_as_a_table_from_pgbackrest_s_own_answer():
    """Captured from pgBackRest 2.45 (bookworm): one full backup of stanza 15-bk through a TLS repository host."""
    info = (CAPTURES / "bookworm-info-one-full.json").read_text()
    listed = backup_module._backups_of(info, "15-bk")
    (only,) = listed["backups"]
    assert (only["label"], only["type"], only["error"]) == ("20261203-142604F", "full", False)
    assert (only["size"], only["repository_size"]) == (22956398, 3031886)
    assert (only["wal_start"], only["wal_stop"]) == ("000000010000000000000003", "000000010000000000000004")
    assert only["stopped"] - only["started"] == 6
    assert listed["archive"] == {"min": "000000010000000000000001", "max": "000000010000000000000004"}
    assert listed["status"] == "ok"
    table = backup_module._backups_table(listed).splitlines()
    assert table[0].split() == ["label", "type", "size", "in", "repository", "WAL", "from", "WAL", "to"]
    assert table[1].split()[:4] == ["20261203-142604F", "full", "21.9", "MiB"]
    assert table[-1] == "archive of 15-bk: 000000010000000000000001 .. 000000010000000000000004"
    assert backup_module._backups_of(info, "16-other") is None
    assert backup_module._backups_of("not json", "15-bk") is None


def formula_pillar(backup=None):
    """The formula's pillar for cluster 15-main over TLS, with ``patroni:backup`` when given."""
    patroni = {
        "dcs": {"etcd3": {"hosts": ["10.0.0.5:2379"]}},
        "tls": TLS,
        "clusters": {"15-main": {"authentication": {"replication": {"password": "a-long-secret"}}}},
    }
    return {"patroni": dict(patroni, backup=backup) if backup else patroni}


def composed(pillar):
    checked = render._validated("15", "main", {}, pillar)
    address, network = ipaddress.ip_address("10.0.0.11"), ipaddress.ip_interface("10.0.0.11/24")
    return render._composed(checked, "pg1", address, network, 5432, "/var/lib/postgresql/15/main")


def test_a_declared_backup_archives_every_member_into_the_stanza_of_its_scope_through_the_dcs():
    pillar = formula_pillar()
    assert "archive_command" not in composed(pillar)["bootstrap"]["dcs"]["postgresql"]["parameters"]
    pillar["patroni"]["backup"] = {"repository": REPOSITORY}
    config = composed(pillar)
    parameters = config["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert parameters["archive_mode"] == "on"
    assert parameters["archive_command"] == "pgbackrest --stanza=15-main archive-push %p"
    # replicas clone by default, and stream without asking the archive (a standby asks it before it streams)
    assert config["postgresql"]["create_replica_method"] == ["pg_clonecluster"]
    assert "recovery_conf" not in config["postgresql"]
    own = {"postgresql": {"parameters": {"archive_command": "/bin/true"}}}
    pillar["patroni"]["clusters"]["15-main"]["dynamic"] = own  # the pillar's own dynamic settings still win
    assert composed(pillar)["bootstrap"]["dcs"]["postgresql"]["parameters"]["archive_command"] == "/bin/true"


def test_with_a_backup_the_certificate_names_the_host_s_addresses_as_dns_names_too(monkeypatch):
    """Bookworm's pgBackRest 2.45 finds a server's address only among the DNS names (pgbackrest#1977)."""
    monkeypatch.setattr(config, "_hostname", lambda: "pg1")
    monkeypatch.setattr(config.socket, "getfqdn", lambda: "pg1.example")
    monkeypatch.setattr(config, "_which", lambda name: True)
    monkeypatch.setattr(config, "_addresses", lambda: [("eth0", ipaddress.ip_interface("10.0.0.11/24"))])
    tls = render._check_tls(TLS)
    plain = config._tls_certificate(tls, [])["subjectAltName"].split(", ")
    named = config._tls_certificate(tls, [], addresses_as_names=True)["subjectAltName"].split(", ")
    assert "IP:10.0.0.11" in plain and "DNS:10.0.0.11" not in plain
    assert named == [*plain, "DNS:10.0.0.11"]


@pytest.mark.parametrize(
    "identity, says",
    [
        ({"cn": "pg1.example\ntls-server-auth=evil=*", "stanzas": {}}, "is not a host name"),
        ({"cn": "pg1", "stanzas": {"15-main]\n[x": {"address": "10.0.0.11", "port": 5432}}}, "is not a scope"),
        ({"cn": "pg1", "stanzas": {"15-main": {"address": "10.0.0.11\npg9-host=x", "port": 5432}}}, "IP address"),
        ({"cn": "pg1", "stanzas": {"15-main": {"address": "127.0.0.1", "port": 5432}}}, "a loopback address"),
        ({"cn": "pg1", "stanzas": {"15-main": {"address": "10.0.0.11", "port": "5432\n"}}}, "not a TCP port"),
        ({"cn": "pg1", "stanzas": {"15-main": {"address": "10.0.0.11", "port": None}}}, "no port"),
    ],
)
def test_a_published_part_goes_into_the_configuration_only_as_names_addresses_and_ports(identity, says):
    """What another minion put in the Salt mine becomes lines of this host's /etc/pgbackrest.conf: a line break
    or anything but a host name, a scope, an address and a port is refused, never written."""
    with pytest.raises(SaltInvocationError) as refused:
        backup_module._checked_part(identity)
    assert says in str(refused.value)


def test_a_published_part_as_the_formula_publishes_it_is_taken():
    stanzas = {"15-main": {"address": "10.0.0.11", "port": 5432}}
    identity = {"cn": "pg1.example", "repository": False, "stanzas": stanzas}
    assert backup_module._checked_part(identity) == identity
    assert backup_module._checked_part({"cn": "pgbr", "repository": True})["repository"] is True


def test_the_repository_host_times_each_type_of_backup_of_each_stanza():
    timers = backup_module._timers(["15-main", "16-x"], {"full": "Sun *-*-* 01:00:00", "diff": "daily"})
    assert [timer["unit"] for timer in timers] == [
        "patroni-debian-backup-15-main-diff",
        "patroni-debian-backup-15-main-full",
        "patroni-debian-backup-16-x-diff",
        "patroni-debian-backup-16-x-full",
    ]
    assert timers[0] == {"unit": timers[0]["unit"], "stanza": "15-main", "type": "diff", "calendar": "daily"}
    assert backup_module._timers(["15-main"], {}) == []


def test_a_timer_the_plan_no_longer_has_is_stale_and_only_the_formula_s_own(tmp_path):
    for name in ("patroni-debian-backup-15-main-full.timer", "patroni-debian-backup-15-main-2-full.timer"):
        (tmp_path / name).write_text("[Timer]\n")
    (tmp_path / "patroni-debian-backup-15-main-full.service").write_text("[Service]\n")
    (tmp_path / "logrotate.timer").write_text("[Timer]\n")
    timers = backup_module._timers(["15-main-2"], {"full": "weekly"})
    assert backup_module._stale_timers(timers, str(tmp_path)) == ["patroni-debian-backup-15-main-full"]
    assert backup_module._stale_timers(timers, str(tmp_path / "none")) == []


def test_after_a_restore_a_cluster_archives_into_its_fresh_stanza_and_reads_the_earlier_ones():
    stanzas = {"15-main": ["15-main-2", "15-main"]}
    generations = render._check_backup({"repository": REPOSITORY, "stanzas": stanzas}, TLS)
    member = sections(backup_module._member_conf(generations, FILES, "pgbr.example", {"15-main": 5432}))
    assert list(member) == ["global", "15-main-2", "15-main"]  # restore and archive-get read the earlier one
    assert [value for key, value in member["global"] if key == "tls-server-auth"] == ["pgbr.example=15-main-2"]
    members = {"15-main": {"pg1": {"address": "10.0.0.11", "port": 5432, "cn": "pg1.example"}}}
    repository = sections(backup_module._repository_conf(generations, FILES, members))
    assert list(repository) == ["global", "15-main-2"]  # backups go into the fresh stanza alone
    assert [value for key, value in repository["global"] if key == "tls-server-auth"] == [
        "pg1.example=15-main,15-main-2"
    ]
    parameters = composed(formula_pillar({"repository": REPOSITORY, "stanzas": stanzas}))["bootstrap"]["dcs"][
        "postgresql"
    ]["parameters"]
    assert parameters["archive_command"] == "pgbackrest --stanza=15-main-2 archive-push %p"


def test_a_new_scope_restored_beside_a_running_cluster_reads_that_cluster_s_stanza_and_archives_into_its_own():
    stanzas = {"15-main": ["15-main-2", "15-main"], "15-copy": ["15-copy", "15-main-2"]}
    both = render._check_backup({"repository": REPOSITORY, "stanzas": stanzas}, TLS)
    member = sections(backup_module._member_conf(both, FILES, "pgbr.example", {"15-main": 5432, "15-copy": 5433}))
    # one section per stanza, the one archiving into it describing it: reads name their own pg1-path
    assert list(member) == ["global", "15-copy", "15-main-2", "15-main"]
    assert ("pg1-path", "/var/lib/postgresql/15/main") in member["15-main-2"]
    assert ("pg1-path", "/var/lib/postgresql/15/copy") in member["15-copy"]
    assert [value for key, value in member["global"] if key == "tls-server-auth"] == ["pgbr.example=15-copy,15-main-2"]
    alone = sections(backup_module._member_conf(both, FILES, "pgbr.example", {"15-copy": 5433}))
    assert list(alone) == ["global", "15-copy", "15-main-2"]  # a member of the new scope alone reads it too
    members = {
        "15-main": {"pg1": {"address": "10.0.0.11", "port": 5432, "cn": "pg1.example"}},
        "15-copy": {"pg1": {"address": "10.0.0.11", "port": 5433, "cn": "pg1.example"}},
    }
    repository = sections(backup_module._repository_conf(both, FILES, members))
    assert list(repository) == ["global", "15-copy", "15-main-2"]
    assert [value for key, value in repository["global"] if key == "tls-server-auth"] == [
        "pg1.example=15-copy,15-main,15-main-2"
    ]


def test_this_host_s_stanzas_are_its_declared_scopes_with_a_config_and_only_those(monkeypatch):
    configs = {
        "/etc/patroni/15-main.yml": {"postgresql": {"connect_address": "10.0.0.11:5432", "listen": "0.0.0.0:5432"}},
        "/etc/patroni/16-x.yml": {"postgresql": {"connect_address": "[fd00::11]:5433", "listen": "*:5433"}},
        "/etc/patroni/17-noport.yml": {"postgresql": {"connect_address": "10.0.0.11:5434"}},
    }
    read = []
    monkeypatch.setattr(render, "_read_yaml", lambda path, follow_links=True: read.append(path) or configs.get(path))
    clusters = {name: {} for name in ("15-main", "16-x", "17-noport", "18-missing", "../../etc/x", "15-a\nb")}
    stanzas = backup_module._local_stanzas({"patroni": {"clusters": clusters}})
    assert stanzas == {
        "15-main": {"address": "10.0.0.11", "port": 5432},
        "16-x": {"address": "fd00::11", "port": 5433},
    }
    assert all(path.startswith("/etc/patroni/1") and "\n" not in path and ".." not in path for path in read), read


def test_replicas_from_the_repository_restore_the_newest_backup_first_and_clone_when_that_fails():
    pillar = formula_pillar(
        {"repository": REPOSITORY, "replicas_from_repository": True, "stanzas": {"15-main": "15-main-2"}}
    )
    postgresql = composed(pillar)["postgresql"]
    assert postgresql["create_replica_method"] == ["pgbackrest", "pg_clonecluster"]
    assert postgresql["pgbackrest"] == {
        "command": "/usr/bin/python3 /usr/share/patroni-debian/patroni_debian.py restore --stanza=15-main-2",
        "keep_data": True,  # a reinit's --delta restore over the replica's own data
    }
    # such a replica needs the WAL from its backup's start on: from the archive, never waiting on it for long
    get = 'timeout 10 pgbackrest --stanza=15-main-2 --pg1-path=/var/lib/postgresql/15/main archive-get %f "%p"'
    assert postgresql["recovery_conf"] == {"restore_command": get}
    pillar["patroni"]["backup"]["replicas_from_repository"] = ["16-other"]  # another cluster's only
    assert composed(pillar)["postgresql"]["create_replica_method"] == ["pg_clonecluster"]


def test_a_cluster_whose_pillar_dropped_the_backup_stops_archiving_into_the_formula_s_repository():
    import patroni_debian_ops as ops  # pylint: disable=import-outside-toplevel

    ours = {
        "postgresql": {
            "parameters": {"archive_mode": "on", "archive_command": "pgbackrest --stanza=15-main-2 archive-push %p"}
        }
    }
    dropped = {"postgresql": {"parameters": {}}}
    assert ops._wanted_changes(ops._with_leftover_archiving_off(dropped, ours), ours) == {
        "postgresql.parameters.archive_mode": {"old": "on", "new": "off"}
    }
    declared = {"postgresql": {"parameters": dict(ours["postgresql"]["parameters"])}}
    assert ops._with_leftover_archiving_off(declared, ours) == declared  # still declared: left alone
    own = {"postgresql": {"parameters": {"archive_mode": "on", "archive_command": "cp %p /mnt/wal/%f"}}}
    assert ops._with_leftover_archiving_off(dropped, own) == dropped  # archiving of the site's own: left alone
    off = {"postgresql": {"parameters": dict(ours["postgresql"]["parameters"], archive_mode="off")}}
    assert ops._wanted_changes(ops._with_leftover_archiving_off(dropped, off), off) == {}  # once off, no change
