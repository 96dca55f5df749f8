"""The decisions of issue 21 that need no machine: pillar patroni:tls and the REST API's role checked, and what
a config becomes with them (the lab proves the cluster works: tests/systemd_machines/test_tls.py)."""

import ipaddress
import os
import sys

import pytest
from salt.exceptions import SaltInvocationError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_modules"))
import patroni_debian_render as render  # noqa: E402  pylint: disable=wrong-import-position

MARKER = "Tls-secret-marker"


def config(version="15", tls=None, authentication=None, etcd=None):
    return render._base_config(
        version,
        "main",
        "pg1",
        "10.0.0.11",
        ipaddress.ip_interface("10.0.0.11/24"),
        5432,
        f"/var/lib/postgresql/{version}/main",
        {"etcd3": etcd or {"hosts": ["10.0.0.5:2379"]}},
        authentication or {"replication": {"password": MARKER}},
        "/usr/share/patroni-debian/patroni_debian.py",
        render._check_tls(tls),
    )


def test_without_tls_the_config_is_debian_s_and_the_open_rest_api_is_said():
    plain = config()
    assert "certfile" not in plain["restapi"] and "ctl" not in plain and "ssl" not in plain["postgresql"]["parameters"]
    assert plain["bootstrap"]["dcs"]["postgresql"]["pg_hba"][-1].split() == [
        "host",
        "replication",
        "all",
        "10.0.0.11/24",
        "md5",
    ]
    assert "sslmode" not in plain["postgresql"]["authentication"]["replication"]
    (risk,) = render._risks(plain)
    assert "has no authentication" in risk and "authentication:restapi" in risk and "patroni:tls" in risk


def test_a_rest_api_role_without_tls_is_said_to_cross_the_network_in_clear():
    authenticated = config(
        authentication={"replication": {"password": "x"}, "restapi": {"username": "a", "password": MARKER}}
    )
    assert authenticated["restapi"]["authentication"] == {"username": "a", "password": MARKER}
    assert "restapi" not in authenticated["postgresql"]["authentication"]
    assert render._risks(authenticated) == [
        "the REST API's password crosses the network in clear (no certfile); set pillar patroni:tls"
    ]


def test_with_a_ca_server_every_part_uses_the_issued_files():
    secured = config(
        tls={"ca_server": "pg1"},
        authentication={"replication": {"password": "x"}, "restapi": {"username": "patroni", "password": MARKER}},
    )
    ca, cert, key = "/etc/patroni/tls/ca.crt", "/etc/patroni/tls/member.crt", "/etc/patroni/tls/member.key"
    assert secured["restapi"] == {
        "listen": "10.0.0.11:8008",
        "connect_address": "10.0.0.11:8008",
        "authentication": {"username": "patroni", "password": MARKER},
        "certfile": cert,
        "keyfile": key,
        "cafile": ca,
    }
    assert secured["ctl"] == {"cacert": ca}
    parameters = secured["postgresql"]["parameters"]
    assert (parameters["ssl"], parameters["ssl_cert_file"], parameters["ssl_key_file"]) == ("on", cert, key)
    for role in ("replication", "rewind"):
        credentials = secured["postgresql"]["authentication"][role]
        assert (credentials["sslmode"], credentials["sslrootcert"]) == ("verify-full", ca)
    assert "sslmode" not in secured["postgresql"]["authentication"]["superuser"]  # its socket has no TLS
    dynamic = secured["bootstrap"]["dcs"]["postgresql"]
    assert dynamic["parameters"] == {"password_encryption": "scram-sha-256"}
    network = [line.split() for line in dynamic["pg_hba"] if "10.0.0.11/24" in line]
    assert network == [
        ["hostssl", "postgres", "replicator", "10.0.0.11/24", "scram-sha-256"],
        ["hostssl", "replication", "all", "10.0.0.11/24", "scram-sha-256"],
    ]
    assert render._risks(secured) == []


def test_before_postgresql_14_the_rules_keep_md5_which_older_stored_passwords_need():
    dynamic = config("13", tls={"ca_server": "pg1"})["bootstrap"]["dcs"]["postgresql"]
    assert {line.split()[-1] for line in dynamic["pg_hba"] if not line.startswith("local")} == {"md5"}
    assert "password_encryption" not in dynamic["parameters"]


def test_your_own_pki_is_used_as_it_is_and_verify_ca_may_be_chosen():
    own = {"ca_file": "/etc/ssl/ca.pem", "cert_file": "/etc/ssl/pg1.pem", "key_file": "/etc/ssl/private/pg1.key"}
    secured = config(tls={**own, "sslmode": "verify-ca"})
    assert (secured["restapi"]["certfile"], secured["restapi"]["keyfile"]) == (own["cert_file"], own["key_file"])
    assert secured["postgresql"]["authentication"]["replication"]["sslmode"] == "verify-ca"
    assert secured["postgresql"]["authentication"]["replication"]["sslrootcert"] == own["ca_file"]


def test_a_role_s_own_ssl_settings_win_over_tls_s():
    secured = config(
        tls={"ca_server": "pg1"},
        authentication={"replication": {"password": "x", "sslmode": "verify-ca", "sslrootcert": "/etc/ssl/mine.pem"}},
    )
    replication = secured["postgresql"]["authentication"]["replication"]
    assert (replication["sslmode"], replication["sslrootcert"]) == ("verify-ca", "/etc/ssl/mine.pem")


@pytest.mark.parametrize(
    ("tls", "says"),
    [
        ("pg1", "expected a mapping"),
        ({}, "missing: ca_file, cert_file, key_file"),
        ({"ca_sever": "pg1"}, "did you mean 'ca_server'"),
        ({"ca_server": "pg1", "ca_file": "/etc/ssl/ca.pem"}, "cannot be given too"),
        ({"ca_server": "pg 1"}, "is not a minion id"),
        ({"ca_server": ["pg1"]}, "is not a minion id"),
        ({"ca_file": "/a", "cert_file": "/b"}, "missing: key_file"),
        ({"ca_file": "a.pem", "cert_file": "/b", "key_file": "/c"}, "must be an absolute path"),
        ({"ca_file": "/a\n", "cert_file": "/b", "key_file": "/c"}, "must be an absolute path"),
        ({"ca_server": "pg1", "days_valid": "365"}, "whole number of days"),
        ({"ca_server": "pg1", "days_remaining": 0}, "whole number of days"),
        ({"ca_server": "pg1", "days_valid": True}, "whole number of days"),
        ({"ca_server": "pg1", "days_valid": 30, "days_remaining": 30}, "must be less than days_valid"),
        ({"ca_server": "pg1", "sslmode": "require"}, "is not one of verify-full, verify-ca"),
    ],
)
def test_a_tls_pillar_that_cannot_work_is_refused_with_the_reason(tls, says):
    with pytest.raises(SaltInvocationError, match=None) as raised:
        render._check_tls(tls)
    assert says in str(raised.value), raised.value


@pytest.mark.parametrize(
    ("credentials", "says"),
    [
        ({"username": "patroni"}, "give both username and password"),
        ({"password": MARKER}, "give both username and password"),
        ({"username": "a:b", "password": MARKER}, "cannot hold ':'"),
        ({"username": " patroni", "password": MARKER}, "surrounding spaces"),
        ({"username": "patroni", "password": MARKER, "sslmode": "require"}, "unknown key 'sslmode'"),
    ],
)
def test_a_rest_api_role_that_cannot_authenticate_is_refused_and_its_password_never_shown(credentials, says):
    with pytest.raises(SaltInvocationError) as raised:
        render._check_authentication({"restapi": credentials})
    assert says in str(raised.value) and MARKER not in str(raised.value), raised.value


@pytest.mark.parametrize(
    "etcd",
    [
        {"hosts": ["10.0.0.5:2379"], "protocol": "https"},
        {"hosts": "https://10.0.0.5:2379,https://10.0.0.6:2379"},
        {"url": "https://10.0.0.5:2379"},
    ],
)
def test_an_etcd_reached_over_https_gets_the_ca_and_the_member_s_certificate(etcd):
    secured = config(tls={"ca_server": "pg1"}, etcd=dict(etcd))
    files = {key: secured["etcd3"][key] for key in ("cacert", "cert", "key")}
    assert files == {
        "cacert": "/etc/patroni/tls/ca.crt",
        "cert": "/etc/patroni/tls/member.crt",
        "key": "/etc/patroni/tls/member.key",
    }


def test_an_etcd_over_http_or_with_its_own_files_is_left_as_it_is():
    own = {"hosts": ["10.0.0.5:2379"], "protocol": "https", "cacert": "/etc/etcd/ca.pem"}
    for etcd in ({"hosts": ["10.0.0.5:2379"]}, own):
        secured = config(tls={"ca_server": "pg1"}, etcd=dict(etcd))
        assert {key: secured["etcd3"][key] for key in etcd} == etcd
        assert ("cert" in secured["etcd3"]) == (etcd is own)
