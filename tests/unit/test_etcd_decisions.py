"""The decisions of issue 22 that need no machine: pillar etcd checked, the DCS section and /etc/default/etcd it
makes, and how an empty member decides to start, on answers captured from Debian's etcd 3.4 (``captures/etcd``:
a one-member cluster, and the same after ``member add`` of 10.77.0.11, whose new member is listed unstarted,
without a name). The lab proves the cluster works: tests/systemd_machines/test_etcd.py."""

import json
import os
import pathlib
import sys

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_modules"))
import patroni_debian_etcd as etcd_module  # noqa: E402  pylint: disable=wrong-import-position
import patroni_debian_render as render  # noqa: E402  pylint: disable=wrong-import-position

CAPTURES = pathlib.Path(__file__).parent / "captures" / "etcd"
MEMBERS = {"pg1": "10.0.0.11", "pg2": "10.0.0.12", "pg3": "10.0.0.13"}


def captured(name):
    return json.loads((CAPTURES / f"bookworm-{name}.json").read_text())


@pytest.mark.parametrize(
    "etcd, says",
    [
        ([1], "expected a mapping"),
        ({"cluster": "a", "members": MEMBERS, "memebrs": {}}, "unknown key 'memebrs' (did you mean 'members'?)"),
        ({"members": MEMBERS}, "etcd:cluster: None is not a name"),
        ({"cluster": "default", "members": MEMBERS}, "the package's own one-member cluster"),
        ({"cluster": "../x", "members": MEMBERS}, "is not a name for the etcd cluster"),
        ({"cluster": "a", "members": {}}, "etcd:members: must map each member's minion id"),
        ({"cluster": "a", "members": ["pg1"]}, "etcd:members: must map"),
        ({"cluster": "a", "members": {"pg 1": "10.0.0.11"}}, "'pg 1' is not a minion id"),
        ({"cluster": "a", "members": {"pg1": "127.0.0.1"}}, "a loopback address"),
        ({"cluster": "a", "members": {"pg1": "db.example"}}, "is not an IP address"),
        ({"cluster": "a", "members": {"pg1": "10.0.0.11", "pg2": "10.0.0.11"}}, "pg2 and pg1 have the same address"),
        ({"cluster": "a", "members": MEMBERS, "v2": "yes"}, "etcd:v2: 'yes' must be true or false"),
        ({"cluster": "a", "members": MEMBERS, "tls": "yes"}, "etcd:tls: 'yes' must be true or false"),
        ({"cluster": "a", "members": MEMBERS, "tls": True}, "etcd:tls: true needs pillar patroni:tls:ca_server"),
    ],
)
def test_a_pillar_etcd_that_cannot_be_deployed_is_refused_with_the_reason(etcd, says):
    with pytest.raises(SaltInvocationError) as refused:
        render._check_etcd(etcd)
    assert says in str(refused.value)


def test_the_dcs_is_etcd_s_v3_api_on_every_member_and_v2_only_when_asked():
    checked = render._check_etcd({"cluster": "patroni", "members": MEMBERS})
    assert checked == {"cluster": "patroni", "members": MEMBERS, "v2": False, "tls": None}
    assert render._etcd_dcs(checked) == {"etcd3": {"hosts": ["10.0.0.11:2379", "10.0.0.12:2379", "10.0.0.13:2379"]}}
    six = render._check_etcd({"cluster": "patroni", "members": {"pg1": "fd00::11"}, "v2": True})
    assert render._etcd_dcs(six) == {"etcd": {"hosts": ["[fd00::11]:2379"]}}


def test_pillar_patroni_dcs_wins_over_pillar_etcd_and_pillar_etcd_over_dcs_yml():
    pillar = {"patroni": {"dcs": {"etcd3": {"hosts": ["10.0.0.5:2379"]}}}, "etcd": {"cluster": "p", "members": MEMBERS}}
    assert render._dcs_source(None, {}, pillar) == (pillar["patroni"]["dcs"], "pillar patroni:dcs")
    del pillar["patroni"]["dcs"]
    dcs, source = render._dcs_source(None, {}, pillar)
    assert source == "pillar etcd" and list(dcs) == ["etcd3"]


def test_a_member_s_environment_names_it_its_data_and_the_initial_cluster():
    checked = render._check_etcd({"cluster": "patroni", "members": MEMBERS, "v2": True})
    env = etcd_module._environment("pg2", checked, "new", MEMBERS)
    assert env["ETCD_NAME"] == "pg2" and env["ETCD_DATA_DIR"] == "/var/lib/etcd/patroni"
    assert env["ETCD_LISTEN_CLIENT_URLS"] == "http://10.0.0.12:2379,http://127.0.0.1:2379"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://10.0.0.12:2379"
    assert env["ETCD_INITIAL_CLUSTER"] == (
        "pg1=http://10.0.0.11:2380,pg2=http://10.0.0.12:2380,pg3=http://10.0.0.13:2380"
    )
    assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == "patroni" and env["ETCD_ENABLE_V2"] == "true"
    text = render._env_file_text(etcd_module.ENV_HEADER, env)
    assert 'ETCD_INITIAL_CLUSTER_STATE="new"\n' in text and text.startswith("# Written by Salt")


def answering(monkeypatch, answers):
    """etcd's gateway answering from captures: ``answers`` maps an address to a captured member list (an address
    not in it does not answer)."""

    def ask(etcd, address, path, body=None, timeout=None):
        if address not in answers:
            raise CommandExecutionError(f"etcd at {address} does not answer (refused)")
        assert path == "cluster/member/list"
        return answers[address]

    monkeypatch.setattr(etcd_module, "_ask", ask)


def test_members_no_cluster_answers_for_start_a_new_cluster_together(monkeypatch):
    answering(monkeypatch, {})
    checked = render._check_etcd({"cluster": "lab", "members": MEMBERS})
    assert etcd_module._start_as("pg1", checked) == ("new", MEMBERS)


def test_a_member_the_running_cluster_lists_unstarted_joins_it_as_existing(monkeypatch):
    answering(monkeypatch, {"10.77.0.1": captured("added-member-list")})
    checked = render._check_etcd({"cluster": "lab", "members": {"lab": "10.77.0.1", "pg1": "10.77.0.11"}})
    assert etcd_module._start_as("pg1", checked) == ("existing", {"pg1": "10.77.0.11", "lab": "10.77.0.1"})


def test_an_empty_member_the_running_cluster_does_not_list_is_refused_with_the_step_that_adds_it(monkeypatch):
    answering(monkeypatch, {"10.77.0.1": captured("one-member-list")})
    checked = render._check_etcd({"cluster": "lab", "members": {"lab": "10.77.0.1", "pg1": "10.77.0.11"}})
    with pytest.raises(CommandExecutionError) as refused:
        etcd_module._start_as("pg1", checked)
    assert "does not list pg1: add it with salt-run state.orchestrate orch.etcd_member" in str(refused.value)


def test_members_that_answer_for_another_cluster_are_refused_as_pillars_pointing_at_each_other(monkeypatch):
    """pg2's declared address answers as a member of a cluster whose member (10.77.0.1) this pillar does not
    declare: two clusters' pillars crossed."""
    answering(monkeypatch, {"10.0.0.12": captured("one-member-list")})
    checked = render._check_etcd({"cluster": "lab", "members": MEMBERS})
    with pytest.raises(CommandExecutionError) as refused:
        etcd_module._start_as("pg1", checked)
    assert "pointing at each other" in str(refused.value) and "http://10.77.0.1:2380" in str(refused.value)


def test_the_member_list_reads_etcd_s_64_bit_numbers_and_an_unstarted_member(monkeypatch):
    answering(monkeypatch, {"10.77.0.1": captured("added-member-list")})
    checked = render._check_etcd({"cluster": "lab", "members": {"lab": "10.77.0.1"}})
    listing = etcd_module._member_list(checked, "10.77.0.1")
    assert listing["cluster_id"] == f"{12737750194933763807:x}"
    assert [member["name"] for member in listing["members"]] == ["", "lab"]
    assert listing["members"][0]["id"] == f"{2393862209261739112:x}"


CA_SERVER = {"ca_server": "pg1"}


def test_an_etcd_over_tls_needs_the_ca_of_patroni_tls_not_a_pki_of_the_user_s():
    own = {"ca_file": "/pki/ca.crt", "cert_file": "/pki/m.crt", "key_file": "/pki/m.key"}
    with pytest.raises(SaltInvocationError) as refused:
        render._check_etcd({"cluster": "a", "members": MEMBERS, "tls": True}, own)
    assert "with your own PKI, run your own etcd over https" in str(refused.value)
    checked = render._check_etcd({"cluster": "a", "members": MEMBERS, "tls": True}, CA_SERVER)
    assert checked["tls"] == {
        "ca_file": "/etc/patroni/tls/ca.crt",
        "cert_file": "/etc/etcd/tls/member.crt",
        "key_file": "/etc/etcd/tls/member.key",
        "clients": [
            ("/etc/etcd/tls/member.crt", "/etc/etcd/tls/member.key"),
            ("/etc/patroni/tls/member.crt", "/etc/patroni/tls/member.key"),
        ],
    }


def test_over_tls_the_dcs_is_https_and_patroni_presents_its_member_certificate():
    pillar = {"patroni": {"tls": CA_SERVER}, "etcd": {"cluster": "p", "members": MEMBERS, "tls": True}}
    dcs, source = render._dcs_source(None, {}, pillar)
    assert source == "pillar etcd" and dcs["etcd3"]["protocol"] == "https"
    config = {"etcd3": dict(dcs["etcd3"]), "restapi": {}, "bootstrap": {"dcs": {"postgresql": {"parameters": {}}}}}
    config["postgresql"] = {"parameters": {}, "authentication": {}}
    tls = render._check_tls(CA_SERVER)
    render._with_tls(config, "15", tls, None, "10.0.0.0/24", None)
    assert config["etcd3"]["cert"] == "/etc/patroni/tls/member.crt"
    assert config["etcd3"]["cacert"] == "/etc/patroni/tls/ca.crt"


def test_an_etcd_member_over_tls_serves_https_to_peers_and_clients_and_asks_for_their_certificates():
    checked = render._check_etcd({"cluster": "patroni", "members": MEMBERS, "tls": True}, CA_SERVER)
    env = etcd_module._environment("pg2", checked, "new", MEMBERS)
    assert env["ETCD_LISTEN_CLIENT_URLS"] == "https://10.0.0.12:2379,https://127.0.0.1:2379"
    assert env["ETCD_LISTEN_PEER_URLS"] == env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == "https://10.0.0.12:2380"
    assert env["ETCD_INITIAL_CLUSTER"].startswith("pg1=https://10.0.0.11:2380,")
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    assert env["ETCD_KEY_FILE"] == env["ETCD_PEER_KEY_FILE"] == "/etc/etcd/tls/member.key"
    assert env["ETCD_TRUSTED_CA_FILE"] == env["ETCD_PEER_TRUSTED_CA_FILE"] == "/etc/patroni/tls/ca.crt"


@pytest.mark.parametrize(
    "serving, tls, says",
    [
        ("http", True, "over http, and pillar etcd:tls asks for https"),
        ("https", False, "over https, and pillar etcd:tls asks for http"),
    ],
)
def test_a_running_member_is_not_moved_between_http_and_https_by_a_rewrite(serving, tls, says):
    checked = render._check_etcd({"cluster": "p", "members": MEMBERS, "tls": tls}, CA_SERVER)
    refusal = etcd_module._scheme_change({"ETCD_LISTEN_PEER_URLS": f"{serving}://10.0.0.11:2380"}, checked)
    assert says in refusal and "etcdctl member update" in refusal
    same = {"ETCD_LISTEN_PEER_URLS": f"{'https' if tls else 'http'}://10.0.0.11:2380"}
    assert etcd_module._scheme_change(same, checked) is None
    assert etcd_module._scheme_change({}, checked) is None  # the package's file: no member of ours yet


def _self_signed(folder, name):
    """A key and a self-signed certificate of ``name`` written to ``folder``: (certificate path, key path)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_the_tls_context_is_made_once_per_set_of_files_and_anew_when_one_is_renewed(tmp_path):
    """A cluster survey asks every member twice, every half second while it waits: one context serves them all
    until a file is replaced (a renewed certificate is presented at once)."""
    ca, _ = _self_signed(tmp_path, "ca")
    cert, key = _self_signed(tmp_path, "member")
    tls = {"ca_file": str(ca), "clients": [(str(tmp_path / "absent.crt"), str(key)), (str(cert), str(key))]}
    etcd = {"tls": tls}
    first = etcd_module._tls_context(etcd)
    assert etcd_module._tls_context(etcd) is first
    renewed, _ = _self_signed(tmp_path, "renewed")
    os.replace(renewed, cert)
    os.replace(tmp_path / "renewed.key", key)
    assert etcd_module._tls_context(etcd) is not first
    assert etcd_module._tls_context({"tls": None}) is None
