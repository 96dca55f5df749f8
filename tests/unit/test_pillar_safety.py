"""The pure decisions that keep a pillar mistake from taking a member down, leaking a secret or opening pg_hba
(issue 18): masking, names, seconds, data directories, ports, YAML limits, orchestration arguments, risks."""

import os
import sys
import time

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_modules"))
import patroni_debian as pd  # noqa: E402  pylint: disable=wrong-import-position
import patroni_debian_config as config  # noqa: E402  pylint: disable=wrong-import-position
import patroni_debian_render as render  # noqa: E402  pylint: disable=wrong-import-position

MARKER = "Mk7-secret-marker"


# --------------------------------------------------------------------------------------------------
# class 2: one masking rule


@pytest.mark.parametrize(
    "text",
    [
        f"endpoint: 'http://u:x/{MARKER}@10.0.0.5' is not a DCS URL",  # a '/' in the password
        f"http://u:p@{MARKER}@10.0.0.5:2379",  # an '@' in the password
        f"http://u:{MARKER} tail@10.0.0.5:2379",  # a space in the password
        f"['http://a:{MARKER}@h1:2379', 'http://b:{MARKER}@h2:2379']",
        f"postgresql://rep:{MARKER}@h:5432/postgres",
        f'host=a password="{MARKER} x" user=b',
        f"sslpassword={MARKER}",
        f"ssl_passphrase_command: {MARKER}",
        f"PGPASSWORD={MARKER} pg_basebackup",
    ],
)
def test_scrub_leaves_no_part_of_a_secret(text):
    scrubbed = pd._scrub(text)
    for part in (MARKER, MARKER[:6], MARKER[-6:]):
        assert part not in scrubbed, scrubbed


def test_scrub_keeps_what_is_no_secret():
    for text in ("http://10.0.0.5:2379/v2", "host=a port=5432", "the DCS (etcd3) does not answer at 10.0.0.5:2379"):
        assert pd._scrub(text) == text


@pytest.mark.parametrize(
    "key",
    ["sslpassword", "standby_cluster.password", "auth_data", "ssl_passphrase_command", "VIP_ETCD_PASSWORD", "token"],
)
def test_secret_keys_wherever_the_word_stands(key):
    assert pd._is_secret_key(key)


def test_masked_keeps_shape_under_a_secret_key():
    document = {
        "postgresql": {"authentication": {"superuser": {"username": "postgres", "sslpassword": MARKER}}},
        "zookeeper": {"hosts": ["z:2181"], "auth_data": [["digest", f"user:{MARKER}"]]},
        "standby_cluster.password": {"old": MARKER, "new": MARKER},
        "parameters": {"ssl_passphrase_command": f"echo {MARKER}", "password_encryption": "scram-sha-256"},
    }
    masked = pd._masked(document)
    assert MARKER not in repr(masked)
    assert masked["zookeeper"]["auth_data"] == [[pd.MASK, pd.MASK]]
    assert masked["standby_cluster.password"] == {"old": pd.MASK, "new": pd.MASK}
    assert masked["parameters"]["password_encryption"] == "scram-sha-256"


def test_diff_masks_everything_below_a_secret_key():
    old = {"zookeeper": {"auth_data": [["digest", "u:old"]]}, "x": {"credentials": {"a": "old"}}}
    new = {"zookeeper": {"auth_data": [["digest", f"u:{MARKER}"]]}, "x": {"credentials": {"a": MARKER}}}
    assert MARKER not in repr(render._diff(old, new)) and "u:old" not in repr(render._diff(old, new))


def test_pillar_secrets_are_masked_wherever_a_message_quotes_them():
    pillar = {
        "patroni": {
            "dcs": {"etcd3": {"hosts": ["h:2379"], "password": "Dcs-" + MARKER}},
            "clusters": {
                "15-main": {
                    "authentication": {"replication": {"password": MARKER}},
                    "endpoint": f"http://u:Url-{MARKER}@h:2379",
                    "dynamic": {"postgresql": {"parameters": {"archive_command": f"x password=Pair-{MARKER}"}}},
                }
            },
        }
    }
    secrets = pd._pillar_secrets(pillar)
    assert {MARKER, "Dcs-" + MARKER, "Url-" + MARKER, "Pair-" + MARKER} <= secrets
    message = f"hostip: {MARKER!r} is not an IP address; port: 'Dcs-{MARKER}'"
    assert MARKER not in pd._scrub(message, secrets)


# --------------------------------------------------------------------------------------------------
# class 4: role names


@pytest.mark.parametrize(
    "name",
    ["all 0.0.0.0/0 trust #", "rep user", "a,b", '"q"', "+group", "@file", "/regex", "all", "replication", "pg_x", ""],
)
def test_role_names_pg_hba_would_read_as_syntax_are_refused(name):
    with pytest.raises(pd.SaltInvocationError, match="authentication:replication:username"):
        render._check_authentication({"replication": {"username": name, "password": "x"}})


@pytest.mark.parametrize("password", [f"{MARKER}\nb", f"{MARKER}\x00b", f"{MARKER}\rb"])
def test_passwords_no_pgpass_can_hold_are_refused(password):
    with pytest.raises(pd.SaltInvocationError, match="line break, NUL") as error:
        render._check_authentication({"replication": {"username": "replicator", "password": password}})
    assert MARKER not in str(error.value)  # the value is never quoted


def test_ordinary_role_names_pass():
    for name in ("replicator", "rewind_user", "Rep-1", "svc.repl", "r$1"):
        render._check_authentication({"rewind": {"username": name, "password": "x"}})


def test_unknown_role_key_is_named_with_the_closest_known():
    with pytest.raises(pd.SaltInvocationError, match=r"unknown key 'pasword' \(did you mean 'password'\?\)"):
        render._check_authentication({"replication": {"username": "r", "pasword": "x"}})


# --------------------------------------------------------------------------------------------------
# classes 6 and 9: seconds and orchestration arguments


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "NaN", "Infinity", "-inf", -1, 0, True, None, 1e9, "x"])
def test_seconds_that_can_never_end_or_begin_are_refused(value):
    with pytest.raises(pd.SaltInvocationError, match="timeout"):
        pd._check_seconds("timeout", value)


@pytest.mark.parametrize(
    "value",
    ["main", "", [], ["15-main\n"], "15-main, 16-app", " 15-main", ["15-main", 15], {"15-main": 1}, 15, "15-a/b"],
)
def test_orchestration_names_are_taken_exactly_as_given(value):
    with pytest.raises(pd.SaltInvocationError, match="cluster: "):
        config._rollout_scopes(value)


def test_orchestration_names_accepted():
    assert config._rollout_scopes(None) is None
    assert config._rollout_scopes("15-main,16-app") == {"15-main", "16-app"}
    assert config._rollout_scopes(["9.6-x.y"]) == {"9.6-x.y"}


@pytest.mark.parametrize("ttl", [float("inf"), float("nan")])
def test_a_ttl_that_is_no_number_is_refused(ttl):
    with pytest.raises(pd.SaltInvocationError, match="ttl"):
        render._check_timing_rule({"ttl": ttl, "loop_wait": 10, "retry_timeout": 10})


# --------------------------------------------------------------------------------------------------
# class 5: data directories


def config_with(data_dir, scope="15-main"):
    return {"scope": scope, "postgresql": {"data_dir": data_dir, "listen": "*:5432"}, "restapi": {"listen": "a:8008"}}


@pytest.mark.parametrize(
    "data_dir",
    ["/", "/etc", "/etc/pg", "/var", "/var/lib", "/var/lib/postgresql", "/var/lib/postgresql/15", "/usr/local/pg",
     "/run/pg", "/home", "/boot/x", "/var/log/pg"],
)  # fmt: skip
def test_data_dir_never_a_system_folder(data_dir):
    with pytest.raises(pd.SaltInvocationError, match="postgresql.data_dir"):
        render._check_data_dir_path(config_with(data_dir))


@pytest.mark.parametrize("data_dir", ["/var/lib/postgresql/15/main", "/srv/pg/15/main", "/data/pg", "/home/pg/x"])
def test_data_dir_of_its_own_passes(data_dir):
    render._check_data_dir_path(config_with(data_dir))


ROWS = [{"version": "15", "cluster": "old", "port": 5433, "datadir": "/var/lib/postgresql/15/old"}]
OTHER = {"/etc/patroni/16-x.yml": {"postgresql": {"data_dir": "/srv/x/data", "config_dir": "/etc/postgresql/16/x"}}}


@pytest.mark.parametrize(
    "data_dir,words",
    [
        ("/var/lib/postgresql/15/old", "is /var/lib/postgresql/15/old"),
        ("/var/lib/postgresql/15/old/sub", "is inside /var/lib/postgresql/15/old"),
        ("/srv/x", "contains /srv/x/data"),
        ("/srv/x/data/y", "is inside /srv/x/data"),
    ],
)
def test_data_dir_overlapping_another_cluster_is_refused(data_dir, words):
    with pytest.raises(pd.SaltInvocationError, match=words):
        render._check_claims("15", "main", config_with(data_dir), {}, ROWS, OTHER)


# --------------------------------------------------------------------------------------------------
# class 8: ports


def test_own_ports_must_differ_and_name_a_port():
    config = config_with("/srv/a")
    config["restapi"]["listen"] = "a:5432"
    with pytest.raises(pd.SaltInvocationError, match="both listen on port 5432"):
        render._check_own_ports(config)
    config["postgresql"]["listen"] = "*"
    with pytest.raises(pd.SaltInvocationError, match="names no port"):
        render._check_own_ports(config)


def test_a_rest_api_port_of_another_config_is_refused_as_postgres_port():
    others = {"/etc/patroni/16-x.yml": {"postgresql": {"listen": "*:5433"}, "restapi": {"listen": "a:5432"}}}
    claims = render._port_claims("15", "main", {}, others)
    with pytest.raises(pd.SaltInvocationError, match="5432 is already used by the REST API of Patroni config"):
        render._check_claims("15", "main", config_with("/srv/a"), claims, [], {})


# --------------------------------------------------------------------------------------------------
# class 9 and 10: sizes


def test_a_config_too_large_to_read_back_is_never_written():
    config = config_with("/srv/a")
    config["tags"] = {"blob": "x" * pd.READ_LIMIT}
    with pytest.raises(pd.SaltInvocationError, match="bytes"):
        render._check_size(config)


def test_a_yaml_alias_bomb_is_refused_at_once():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 9)]
    bomb = "\n".join(lines) + "\n"
    assert len(bomb) < 1000
    started = time.monotonic()
    with pytest.raises(render._YamlTooLarge):
        render._safe_yaml(bomb)
    assert time.monotonic() - started < 5  # linear in the text, never the expansion (a hang is the bug)


def test_ordinary_anchors_still_load():
    text = "base: &b {a: 1}\nx: *b\ny: [*b, *b]\n"
    assert render._safe_yaml(text) == yaml.safe_load(text)
    assert render._safe_yaml("") is None


# --------------------------------------------------------------------------------------------------
# the risks said in every run


def test_risks_are_named():
    config = config_with("/srv/a")
    config["restapi"] = {"listen": "0.0.0.0:8008"}
    config["bootstrap"] = {"dcs": {"postgresql": {"pg_hba": ["host all all 0.0.0.0/0 trust"]}}}
    config["postgresql"].update(bin_dir="/opt/evil", callbacks={"on_start": "/bin/x"})
    risks = "\n".join(render._risks(config))
    for words in ("no authentication", "without a password", "admits every address", "postgresql.bin_dir",
                  "postgresql.callbacks"):  # fmt: skip
        assert words in risks, risks
