"""Edge cases of the module's pure helpers; the behaviour on hosts is tested in differential/ and functional/."""

import ipaddress
import json
import os
import pathlib
import pwd
import socket
import subprocess
import sys
import time

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_modules"))
import patroni_debian as pd  # noqa: E402  pylint: disable=wrong-import-position
import patroni_debian_config as config  # noqa: E402  pylint: disable=wrong-import-position
import patroni_debian_render as render  # noqa: E402  pylint: disable=wrong-import-position
import patroni_debian_ops as ops  # noqa: E402  pylint: disable=wrong-import-position


def test_deep_merge_merges_mappings_replaces_the_rest_and_leaves_inputs_alone():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": None}
    override = {"a": {"c": [3], "e": {"f": 1}}, "d": {"g": 2}}
    assert render._deep_merge(base, override) == {"a": {"b": 1, "c": [3], "e": {"f": 1}}, "d": {"g": 2}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": None}


@pytest.mark.parametrize(
    "key,secret",
    [
        ("password", True),
        ("PASSWORD", True),
        ("VIP_ETCD_PASSWORD", True),
        ("token", True),
        ("client_secret", True),
        ("password_encryption", False),
        ("username", False),
        ("keyfile", False),
        (None, False),
        (3, False),
    ],
)
def test_secret_keys(key, secret):
    assert pd._is_secret_key(key) is secret


def test_masked_hides_nested_secrets_but_not_absent_ones():
    document = {
        "auth": {"replication": {"username": "r", "password": "p"}, "superuser": {"password": None}},
        "hosts": [{"token": "t"}],
        "password_encryption": "scram-sha-256",
    }
    assert pd._masked(document) == {
        "auth": {"replication": {"username": "r", "password": pd.MASK}, "superuser": {"password": None}},
        "hosts": [{"token": pd.MASK}],
        "password_encryption": "scram-sha-256",
    }


def test_diff_reports_changed_added_and_removed_keys_masked():
    old = {"a": 1, "auth": {"password": "old"}, "gone": {"token": "x"}}
    new = {"a": 2, "auth": {"password": "new"}, "added": [1]}
    assert render._diff(old, new) == {
        "a": {"old": 1, "new": 2},
        "auth.password": {"old": pd.MASK, "new": pd.MASK},
        "gone": {"old": {"token": pd.MASK}, "new": None},
        "added": {"old": None, "new": [1]},
    }
    assert render._diff(new, new) == {}


@pytest.mark.parametrize(
    "host,expected",
    [("10.0.0.11", "10.0.0.11:8008"), ("fd00::11", "[fd00::11]:8008"), (ipaddress.ip_address("::1"), "[::1]:8008")],
)
def test_host_port_brackets_ipv6(host, expected):
    assert render._host_port(host, 8008) == expected


CLUSTERS = {("15", "main"): 5432, ("14", "old"): 5433}


def configs(**ports):
    """Other Patroni configs as ``_port_claims`` reads them: ``name=(postgres port, REST API port or None)``."""
    return {
        f"/etc/patroni/{name.replace('_', '-')}.yml": {
            "postgresql": {"listen": f"*:{port}"},
            **({"restapi": {"listen": f"10.0.0.11:{api}"}} if api else {}),
        }
        for name, (port, api) in ports.items()
    }


@pytest.mark.parametrize(
    "version,cluster,requested,clusters,own_config,others,expected",
    [
        ("15", "new", None, {}, None, {}, 5432),
        ("15", "new", None, CLUSTERS, None, {}, 5434),
        ("15", "main", None, CLUSTERS, None, {}, 5432),
        ("15", "main", 5432, CLUSTERS, None, {}, 5432),
        ("15", "new", 543, CLUSTERS, None, {}, 543),
        ("15", "new", None, CLUSTERS, 6000, {}, 6000),
        ("15", "new", None, CLUSTERS, 5433, {}, 5434),  # its old port went to another cluster
        ("15", "new", None, {}, None, configs(**{"15_a": (5432, None)}), 5433),
        ("15", "main", 5440, CLUSTERS, None, {}, 5440),  # moving a cluster to a free port is allowed
        # the next port's REST API port (5433 + 2576 = 8009) is another config's REST API: the one after
        ("15", "new", None, {}, None, configs(**{"15_a": (5432, 8009)}), 5434),
        # a REST API port never counts as a PostgreSQL port to go one past
        ("15", "new", None, {}, None, configs(**{"15_a": (5432, 8008)}), 5433),
        # the old port of its own config now clashes with another's REST API through its own REST API port
        ("15", "new", None, {}, 5440, configs(**{"15_a": (5432, 8016)}), 5433),
    ],
)
def test_choose_port(version, cluster, requested, clusters, own_config, others, expected):
    claims = render._port_claims(version, cluster, clusters, others)
    assert render._choose_port(version, cluster, requested, clusters, own_config, claims) == expected


@pytest.mark.parametrize(
    "requested,clusters,others,culprit",
    [
        (5433, CLUSTERS, {}, "cluster 14/old"),
        (5432, {}, configs(**{"15_a": (5432, None)}), "Patroni config /etc/patroni/15-a.yml"),
        (8008, {}, configs(**{"15_a": (5432, 8008)}), "the REST API of Patroni config /etc/patroni/15-a.yml"),
    ],
)
def test_choose_port_refuses_a_taken_port(requested, clusters, others, culprit):
    claims = render._port_claims("15", "new", clusters, others)
    with pytest.raises(pd.SaltInvocationError, match=culprit):
        render._choose_port("15", "new", requested, clusters, None, claims)


@pytest.mark.parametrize(
    "conf,expected",
    [
        (None, "/var/lib/postgresql/15/my-app"),
        ("#data_directory = '/srv/%v/%c'\n", "/var/lib/postgresql/15/my-app"),
        ("data_directory = '/srv/pg/%v/%c'\n", "/srv/pg/15/my-app"),
        ('  data_directory = "/srv/pg/%v/%c/"  # trailing comment\n', "/srv/pg/15/my-app"),
        ("data_directory = /srv/%c-%v\n", "/srv/my-app-15"),
        ("data_directory = '/srv/100%%/%v/%c'\n", "/srv/100%/15/my-app"),
        ("data_directory = '/srv/pgdata'\n", "/srv/pgdata/15/my-app"),
        ("data_directory = '/a/%v/%c'\ndata_directory = '/b/%v/%c'\n", "/b/15/my-app"),  # last wins, as in pg-common
    ],
)
def test_data_dir_follows_createcluster_conf(conf, expected, tmp_path, monkeypatch):
    path = tmp_path / "createcluster.conf"
    if conf is not None:
        path.write_text(conf)
    monkeypatch.setattr(pd, "CREATECLUSTER_CONF", str(path))
    assert pd._data_dir("15", "my-app") == expected


def test_data_dir_must_be_absolute(tmp_path, monkeypatch):
    path = tmp_path / "createcluster.conf"
    path.write_text("data_directory = 'pg/%v/%c'\n")
    monkeypatch.setattr(pd, "CREATECLUSTER_CONF", str(path))
    with pytest.raises(pd.CommandExecutionError, match="not an absolute path"):
        pd._data_dir("15", "main")


@pytest.mark.parametrize(
    "section,expected",
    [
        ({"host": "10.0.0.5:2379"}, ["http://10.0.0.5:2379"]),
        ({"hosts": "a:2379, b:2379"}, ["http://a:2379", "http://b:2379"]),
        ({"hosts": ["a:2379", "https://b:2379"]}, ["http://a:2379", "https://b:2379"]),
        ({"host": "a:2379", "protocol": "https"}, ["https://a:2379"]),
        ({"url": "https://etcd.example:2379"}, ["https://etcd.example:2379"]),
        ({"host": "consul:8500", "scheme": "https"}, ["https://consul:8500"]),
    ],
)
def test_dcs_endpoints(section, expected):
    assert render._dcs_endpoints("etcd", section) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        ("http://a:1", ["http://a:1"]),
        ("http://a:1, https://[fd00::5]:2379", ["http://a:1", "https://[fd00::5]:2379"]),
        (["http://10.0.0.5:2379"], ["http://10.0.0.5:2379"]),
        (None, None),
    ],
)
def test_endpoints_accepted(value, expected):
    assert render._check_endpoints(value) == expected


@pytest.mark.parametrize("value", ["a:1", "http://a", "http://:1", "http://a:99999", "", [], 5, "http://a:1,"])
def test_endpoints_rejected(value):
    with pytest.raises(pd.SaltInvocationError, match="endpoint"):
        render._check_endpoints(value)


@pytest.mark.parametrize("version,expected", [(15, "15"), ("10", "10"), (9.6, "9.6"), ("9.6", "9.6"), (" 16 ", "16")])
def test_versions_accepted(version, expected):
    assert pd._check_version(version) == expected


@pytest.mark.parametrize("version", ["9", 9, "v15", "15.1.2", "", "015", "0.1", None, True, [15]])
def test_versions_rejected(version):
    with pytest.raises(pd.SaltInvocationError, match="version"):
        pd._check_version(version)


@pytest.mark.parametrize("name", ["main", "my-app", "a.b", "_x", "12345", 12345, "x" * 60])
def test_cluster_names_accepted(name):
    assert pd._check_cluster(name) == str(name)


@pytest.mark.parametrize("name", ["", "-x", ".x", "..", "a/b", "a b", "a&b", "ä", "a\n", None, False])
def test_cluster_names_rejected(name):
    with pytest.raises(pd.SaltInvocationError, match="cluster"):
        pd._check_cluster(name)


@pytest.mark.parametrize("name", ["12345", "yes", "on", "null", "1e3", "0x10", "~", "true"])
def test_member_name_stays_a_string_in_yaml(name):
    assert yaml.safe_load(render._dump_yaml({"name": name}))["name"] == name


def test_env_file_round_trip_keeps_quotes_backslashes_and_dollars():
    env = {"VIP_IP": "10.0.0.100", "VIP_ETCD_PASSWORD": 'a"b\\c$d e'}
    text = render._env_file_text("# header\n", env)
    path_env = {}
    for line in text.splitlines()[1:]:
        key, value = line.split("=", 1)
        path_env[key] = value
    assert path_env["VIP_ETCD_PASSWORD"] == '"a\\"b\\\\c$d e"'


def test_env_file_parser_reads_what_the_writer_writes(tmp_path):
    env = {"VIP_IP": "10.0.0.100", "VIP_ETCD_PASSWORD": 'a"b\\c$d e'}
    path = tmp_path / "x.vip"
    path.write_text(render._env_file_text("# header\n", env) + "# VIP_OTHER=1\nVIP_PLAIN=unquoted\n")
    assert render._read_env_file(str(path)) == {**env, "VIP_PLAIN": "unquoted"}
    assert render._read_env_file(str(tmp_path / "missing")) is None


def test_plain_turns_dict_and_list_subclasses_into_plain_data():
    class Masked(dict):
        pass

    class MaskedList(list):
        pass

    value = pd._plain(Masked(a=MaskedList([Masked(b=1)])))
    assert type(value) is dict and type(value["a"]) is list and type(value["a"][0]) is dict
    assert yaml.safe_load(render._dump_yaml(value)) == {"a": [{"b": 1}]}


def _targets_in(folder, monkeypatch):
    monkeypatch.setattr(config, "PATRONI_DIR", str(folder))  # where _write_all reads it
    return [
        pd._Target(
            str(folder / "15-main.yml"), {}, "new: text\n", render._read_own_yaml, "postgres", "postgres", 0o660
        ),
        pd._Target(
            str(folder / "15-main.vip"), {}, 'VIP_IP="10.0.0.100"\n', render._read_env_file, "root", "root", 0o644
        ),
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to postgres needs root")
def test_write_all_never_exposes_a_partial_or_readable_file(tmp_path, monkeypatch):
    """At the rename each new file is already complete, owned and moded; the old files stay until then."""
    targets = _targets_in(tmp_path, monkeypatch)
    (tmp_path / "15-main.yml").write_text("old\n")
    postgres = pwd.getpwnam("postgres")
    seen = []
    real_replace = os.replace

    def spying_replace(source, destination):
        status = os.stat(source)
        seen.append((os.path.basename(destination), status.st_mode & 0o7777, status.st_uid, open(source).read()))
        real_replace(source, destination)

    monkeypatch.setattr(pd.os, "replace", spying_replace)
    written = config._write_all([(targets[0], {"diff": {}}), (targets[1], {"created": True})])
    assert seen == [
        ("15-main.yml", 0o660, postgres.pw_uid, "new: text\n"),
        ("15-main.vip", 0o644, 0, 'VIP_IP="10.0.0.100"\n'),
    ]
    assert written == [t.path for t in targets] and sorted(os.listdir(tmp_path)) == ["15-main.vip", "15-main.yml"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to postgres needs root")
def test_write_all_writes_both_files_or_neither(tmp_path, monkeypatch):
    """A disk that fills up while the second file is staged leaves the first file as it was, and no temporary."""
    targets = _targets_in(tmp_path, monkeypatch)
    (tmp_path / "15-main.yml").write_text("old\n")
    calls = []
    real_fsync = os.fsync

    def fsync_failing_the_second_time(handle):
        calls.append(handle)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_fsync(handle)

    monkeypatch.setattr(pd.os, "fsync", fsync_failing_the_second_time)
    with pytest.raises(OSError, match="No space"):
        config._write_all([(targets[0], {"diff": {}}), (targets[1], {"created": True})])
    assert os.listdir(tmp_path) == ["15-main.yml"] and (tmp_path / "15-main.yml").read_text() == "old\n"


def test_the_clone_s_secrets_live_in_private_files_that_are_gone_afterwards(tmp_path, monkeypatch):
    """The password reaches pg_basebackup through a pgpass file made 0600 whatever the umask, in a folder of its
    own that is gone when the clone is done; a password with ``:`` or ``\\`` is escaped as libpq reads it."""
    monkeypatch.setattr(pd.tempfile, "tempdir", str(tmp_path))
    old = os.umask(0)
    try:
        with pd._private_credentials({"password": "a:b\\c", "sslpassword": "k"}) as (env, extra):
            pgpass, service = env["PGPASSFILE"], env["PGSERVICEFILE"]
            modes = {path: os.stat(path).st_mode & 0o777 for path in (pgpass, service)}
            folder = os.path.dirname(pgpass)
            folder_mode = os.stat(folder).st_mode & 0o777
            text = open(pgpass, encoding="utf-8").read()
    finally:
        os.umask(old)
    assert modes == {pgpass: 0o600, service: 0o600} and folder_mode == 0o700
    assert text == "*:*:*:*:a\\:b\\\\c\n" and extra == f" service={pd.SERVICE}"
    assert not os.path.exists(folder) and os.listdir(tmp_path) == []


def test_a_private_file_never_follows_a_link_planted_at_its_name(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("theirs\n")
    (tmp_path / "pgpass").symlink_to(target)
    with pytest.raises(FileExistsError):
        pd._private_file(str(tmp_path), "pgpass", "*:*:*:*:secret")
    assert target.read_text() == "theirs\n"


@pytest.mark.parametrize(
    "connstring,expected,secrets",
    [
        ("host=10.0.0.11 port=5432 user=replicator", "user=replicator host=10.0.0.11 port=5432", {}),
        ("host=a password=s3cr user=r", "user=r host=a", {"password": "s3cr"}),
        ("dbname=postgres password='a b\\'c' host=a", "dbname=postgres host=a", {"password": "a b'c"}),
        ("  host = a   application_name='my app' ", "host=a application_name='my app'", {}),
        ("postgresql://rep:p%40ss@h:5432/postgres", "user=rep dbname=postgres host=h port=5432", {"password": "p@ss"}),
        ("postgres://h/postgres", "dbname=postgres host=h", {}),
        (
            "postgresql://repl@h:5499/postgres?password=x%20y&sslpassword=k",
            "user=repl dbname=postgres host=h port=5499",
            {"password": "x y", "sslpassword": "k"},
        ),
        ("host=a sslpassword=zz", "host=a", {"sslpassword": "zz"}),
        ("postgresql://h/?options=-c%20x%3Dy", "host=h options='-c x=y'", {}),
    ],
)
def test_split_connstring_reads_every_form_through_libpq(connstring, expected, secrets):
    assert pd._split_connstring(connstring) == (expected, secrets)


@pytest.mark.parametrize(
    "connstring",
    ["", None, "host", "host=a 'x'", "=a", "postgresql://h/?bogus=1", "host=a password=se cret", "nosuchkey=1"],
)
def test_split_connstring_refuses_without_quoting_the_string(connstring):
    with pytest.raises(pd.SaltInvocationError, match="connstring") as error:
        pd._split_connstring(connstring)
    assert "cret" not in str(error.value) and "bogus" not in str(error.value)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("host=a password='x y' user=b", "host=a password=******** user=b"),
        ("postgresql://u:pw@h/db?password=zz&x=1", "postgresql://u:********@h/db?password=********&x=1"),
        ("http://root:pw@10.0.0.5:2379", "http://root:********@10.0.0.5:2379"),
        ("sslpassword=k host=a", "sslpassword=******** host=a"),
        ("password: hunter2", "password: ********"),
        ("host=a port=5432", "host=a port=5432"),
        ("http://10.0.0.5:2379/v2", "http://10.0.0.5:2379/v2"),
    ],
)
def test_scrub_masks_secrets_inside_values(text, expected):
    assert pd._scrub(text) == expected


def test_masked_scrubs_values_of_keys_that_are_not_secret():
    config = {"primary_conninfo": "host=a password=s3", "etcd": {"url": "http://u:s3@h:2379"}, "password": "s3"}
    assert "s3" not in json.dumps(pd._masked(config))


@pytest.mark.parametrize(
    "scope,expected",
    [
        ("15-main", ("15", "main")),
        ("15-my-app", ("15", "my-app")),
        ("9.6-main", ("9.6", "main")),
        ("15/main", ("15", "main")),
    ],
)
def test_split_scope_takes_the_version_up_to_the_first_dash(scope, expected):
    assert pd._split_scope(scope) == expected


@pytest.mark.parametrize("scope", ["main", "15", "15-", "-main", "x-main", "15-a/b"])
def test_split_scope_rejects(scope):
    with pytest.raises(pd.SaltInvocationError):
        pd._split_scope(scope)


def test_basebackup_secrets_only_in_private_files(monkeypatch):
    """At the process boundary: no secret in an argument; password in PGPASSFILE, sslpassword in a service file,
    both 0600 and removed afterwards."""
    seen = {}

    def recording_start(argv, user=None, env=None):
        files = {
            key: (env[key], os.stat(env[key]).st_mode & 0o777, open(env[key]).read())
            for key in ("PGPASSFILE", "PGSERVICEFILE")
        }
        seen.update(argv=argv, user=user, files=files)
        return subprocess.Popen(["true"])

    monkeypatch.setattr(pd, "_started", recording_start)
    with pd._basebackup(
        "15", "/var/lib/postgresql/15/main", "host=a user=r", {"password": "pa:ss\\word", "sslpassword": "k3y"}
    ) as finished:
        assert finished().returncode == 0
    assert not any("pa:ss" in argument or "k3y" in argument for argument in seen["argv"])
    assert seen["argv"][0] == "/usr/lib/postgresql/15/bin/pg_basebackup" and seen["user"] == "postgres"
    assert "--checkpoint=fast" in seen["argv"]  # the source checkpoints at once: no spread checkpoint to wait for
    assert seen["argv"][-1] == "--dbname=host=a user=r service=patroni_debian_clone"
    assert seen["files"]["PGPASSFILE"][1:] == (0o600, "*:*:*:*:pa\\:ss\\\\word\n")
    assert seen["files"]["PGSERVICEFILE"][1:] == (0o600, "[patroni_debian_clone]\nsslpassword=k3y\n\n")
    assert not any(os.path.exists(path) for path, _, _ in seen["files"].values())


@pytest.mark.parametrize("argv", [[], ["bootstrap"], ["clone", "positional"], ["createcluster", "--scope=main"]])
def test_program_door_usage_errors_exit_2(argv, capsys):
    assert pd._main(argv) == pd.EXIT_USAGE
    message = capsys.readouterr().err
    assert "usage" in message.lower() or "scope: 'main' is not <version>-<cluster>" in message


@pytest.mark.skipif(os.geteuid() != 0, reason="installs a root-owned file")
def test_install_program_copies_the_loaded_file_once_and_never_through_a_link(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me\n")
    path = tmp_path / "share" / "patroni_debian.py"
    path.parent.mkdir(mode=0o700)
    path.symlink_to(target)
    assert pd.install_program(str(path)) == {"path": str(path), "changed": True}
    assert path.read_bytes() == pathlib.Path(pd.__file__).read_bytes() and not path.is_symlink()
    assert os.stat(path).st_mode & 0o7777 == 0o755 and target.read_text() == "keep me\n"
    assert pd.install_program(str(path)) == {"path": str(path), "changed": False}
    path.chmod(0o644)
    assert pd.install_program(str(path))["changed"] and os.stat(path).st_mode & 0o7777 == 0o755


def test_install_program_needs_an_absolute_path():
    with pytest.raises(pd.SaltInvocationError, match="absolute"):
        pd.install_program("share/patroni_debian.py")


# ---- Patroni 3.0.2 and 4.0.7 answers, and the vip-manager of each release


LEADER_302 = {
    "state": "running",
    "role": "master",
    "timeline": 2,
    "replication": [{"application_name": "pg2", "state": "streaming"}],
}
LEADER_407 = {
    "state": "running",
    "role": "primary",
    "timeline": 2,
    "replication": [{"application_name": "pg2", "state": "streaming"}],
}


@pytest.mark.parametrize("leader", [LEADER_302, LEADER_407], ids=["3.0.2", "4.0.7"])
def test_a_replica_is_healthy_only_streaming_on_the_leaders_timeline_in_either_version(leader):
    leader = ops._normalised(leader)
    assert ops._health("pg1", leader, leader) is None
    replica = {"state": "running", "role": "replica", "timeline": 2}
    assert ops._health("pg2", replica, leader) is None
    assert ops._health("pg2", {**replica, "replication_state": "streaming"}, leader) is None
    assert ops._health("pg3", replica, leader) == "not streaming from the leader yet"
    archive = {**replica, "replication_state": "in archive recovery"}
    assert ops._health("pg2", archive, leader) == "replication is in archive recovery, not streaming"
    assert ops._health("pg2", {**replica, "timeline": 1}, leader) == "on timeline 1, the leader on 2"


def test_cluster_listing_states_of_either_version_count_as_up():
    leader = {"name": "pg1", "role": "leader", "state": "running", "timeline": 3}
    members = [
        leader,
        {"name": "pg2", "role": "replica", "state": "streaming", "timeline": 3},
        {"name": "pg3", "role": "replica", "state": "running", "timeline": 3},
    ]
    assert ops._cluster_problems(members, leader) == []
    members[2]["state"] = "starting"
    assert ops._cluster_problems(members, leader) == ["pg3 is starting"]


@pytest.mark.parametrize(
    ("package", "major", "followable"),
    [
        ("vip-manager", 1, {"etcd": "etcd"}),  # bookworm's and trixie's 1.0.2: etcd's v2 API
        ("vip-manager2", 3, {"etcd3": "etcd"}),  # trixie's, built without consul
        ("vip-manager", 2, {"etcd3": "etcd", "consul": "consul"}),  # upstream's own package
    ],
)
def test_each_vip_manager_follows_what_it_can_read(package, major, followable):
    assert render._vip_followable(package, major) == followable


def test_a_vip_pairing_that_cannot_work_is_refused_naming_what_would():
    config = {
        "scope": "17-main",
        "namespace": "/postgresql-common/",
        "name": "pg1",
        "etcd": {"host": "10.0.0.5:2379"},
        "etcd3": {"hosts": ["10.0.0.5:2379"]},
    }
    addresses = [("eth0", ipaddress.ip_interface("10.0.0.11/24"))]
    with pytest.raises(pd.SaltInvocationError, match="vip-manager2 3.x cannot follow Patroni's etcd DCS.*etcd3:"):
        render._vip_environment(
            config, "etcd", ipaddress.ip_address("10.0.0.100"), None, addresses, ("vip-manager2", 3)
        )
    with pytest.raises(pd.SaltInvocationError, match="vip-manager 1.x cannot follow .*etcd3.*install vip-manager2"):
        render._vip_environment(
            config, "etcd3", ipaddress.ip_address("10.0.0.100"), None, addresses, ("vip-manager", 1)
        )
    with pytest.raises(pd.CommandExecutionError, match="install vip-manager or vip-manager2"):
        render._vip_environment(config, "etcd3", ipaddress.ip_address("10.0.0.100"), None, addresses, None)
    env = render._vip_environment(
        config, "etcd3", ipaddress.ip_address("10.0.0.100"), None, addresses, ("vip-manager2", 3)
    )
    # old names for vip-manager 1.x, new ones for 5.x; equal, as 2.x to 4.x require when both are set
    assert (env["VIP_IFACE"], env["VIP_INTERFACE"], env["VIP_TYPE"], env["VIP_DCS_TYPE"]) == (
        "eth0",
        "eth0",
        "etcd",
        "etcd",
    )
    assert env["VIP_TRIGGER_KEY"] == env["VIP_KEY"] == "/postgresql-common/17-main/leader"
    assert env["VIP_DCS_ENDPOINTS"] == env["VIP_ENDPOINT"] == "http://10.0.0.5:2379"


def test_lag_is_read_from_live_wal_positions_before_the_dcs():
    import patroni_debian_day2 as day2  # noqa: PLC0415

    view = {
        "leader_status": {"role": "primary", "xlog": {"location": 5000}},
        "statuses": {"pg2": {"xlog": {"received_location": 4000, "replayed_location": 3000}}, "pg3": None},
    }
    assert day2._lag(view, {"name": "pg1", "role": "leader"}) == 0
    assert day2._lag(view, {"name": "pg2", "role": "replica", "lag": "unknown"}) == 1000  # live, not the DCS's
    assert day2._lag(view, {"name": "pg3", "role": "replica", "lag": 700}) == 700  # no answer: the DCS's
    assert day2._lag(view, {"name": "pg3", "role": "replica", "lag": "unknown"}) is None


@pytest.mark.parametrize("profile", sorted(render.TIMING_PROFILES))
def test_every_timing_profile_keeps_patronis_rule(profile):
    timing = render.TIMING_PROFILES[profile]
    render._check_timing_rule(timing)
    assert timing["loop_wait"] + 2 * timing["retry_timeout"] <= timing["ttl"]


@pytest.mark.parametrize(
    "dcs,words",
    [
        ({"ttl": 30, "loop_wait": 10, "retry_timeout": 11}, "loop_wait 10 + 2 × retry_timeout 11 is more than ttl 30"),
        ({"ttl": "30", "loop_wait": 10, "retry_timeout": 10}, "ttl: '30' must be a number of seconds"),
        ({"ttl": True, "loop_wait": 10, "retry_timeout": 10}, "ttl: True must be a number"),
        ({"ttl": 30, "loop_wait": 0, "retry_timeout": 10}, "loop_wait: 0 must be a number of seconds, at least 1"),
        ({"ttl": 30, "loop_wait": 10}, "retry_timeout: None"),
    ],
)
def test_timing_rule_refusals_name_the_keys(dcs, words):
    with pytest.raises(pd.SaltInvocationError, match=None) as refused:
        render._check_timing_rule(dcs)
    assert words in str(refused.value)


def test_a_timing_at_the_rule_s_edge_is_accepted():
    render._check_timing_rule({"ttl": 25, "loop_wait": 5, "retry_timeout": 10})


def test_a_dcs_that_refuses_connections_is_named_with_each_endpoint_and_no_secret():
    dcs = {"etcd": {"url": "http://root:S3cret@127.0.0.1:1"}}
    with pytest.raises(pd.CommandExecutionError) as refused:
        render._dcs_answers(dcs, "pillar")
    assert "the DCS (etcd) does not answer at 127.0.0.1:1 (Connection refused); nothing was changed" in str(
        refused.value
    )
    assert "S3cret" not in str(refused.value) and "root" not in str(refused.value)


def test_a_dcs_answers_at_its_first_endpoint_that_accepts_a_connection():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        dcs = {"etcd3": {"hosts": ["127.0.0.1:1", f"127.0.0.1:{port}"]}}
        assert render._dcs_answers(dcs, "pillar") == ("etcd3", f"127.0.0.1:{port}")


def test_a_dcs_without_host_endpoints_is_not_probed():
    assert render._dcs_answers({"kubernetes": {"namespace": "db"}}, "pillar") == ("kubernetes", None)


def test_pg_lsclusters_is_asked_again_while_patroni_rewrites_a_config(tmp_path, monkeypatch):
    """Patroni rewrites postgresql.conf in place; pg_lsclusters reading it meanwhile fails for a moment (seen in
    the lab: "Invalid data directory for cluster 15 main"). A failure that passes is retried; one that lasts is
    raised with its message."""
    failures = tmp_path / "failures"
    failures.write_text("2")
    stub = tmp_path / "pg_lsclusters"
    stub.write_text(
        "#!/bin/sh\n"
        f'left=$(cat {failures}); if [ "$left" -gt 0 ]; then echo $((left - 1)) > {failures}; '
        'echo "Error: Invalid data directory for cluster 15 main" >&2; exit 1; fi\n'
        "echo '15 main 5432 online postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log'\n"
    )
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert [row["datadir"] for row in pd._pg_cluster_table()] == ["/var/lib/postgresql/15/main"]
    failures.write_text("9")
    with pytest.raises(pd.CommandExecutionError, match="Invalid data directory for cluster 15 main"):
        pd._lsclusters(tries=3, pause=0)


@pytest.mark.parametrize(
    "value,meaning",
    [(True, True), (False, False), (1, True), (0, False), ("yes", True), (" On ", True), ("1", True)]
    + [("no", False), ("OFF", False), ("false", False), ("0", False)],
)
def test_one_boolean_rule_reads_every_flag(value, meaning):
    """force, purge, replace_existing, table, pending_only: the same words, so 'no' is never true anywhere."""
    assert pd._check_boolean("flag", value) is meaning


@pytest.mark.parametrize("value", ["maybe", "", 2, None, [], "y"])
def test_one_boolean_rule_refuses_what_is_not_a_boolean(value):
    with pytest.raises(pd.SaltInvocationError, match=r"flag: .* is not a boolean; use true or false"):
        pd._check_boolean("flag", value)


def test_the_one_wait_loop_answers_asks_once_more_at_the_deadline_and_lets_a_refusal_through():
    answers = iter([None, None, "ready"])
    assert pd._poll(lambda: next(answers), time.monotonic() + 60, interval=0) == "ready"
    asked = []
    assert pd._poll(lambda: asked.append(1), time.monotonic() - 1, interval=0) is None and asked == [1]
    assert pd._poll(lambda: [], time.monotonic() + 60, interval=0) == []  # an empty answer is an answer

    def refusing():
        raise pd.CommandExecutionError("patroni@15-main is not running")

    with pytest.raises(pd.CommandExecutionError, match="not running"):
        pd._poll(refusing, time.monotonic() + 60, interval=0)
