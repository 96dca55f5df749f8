"""Bad pillar fails before any change: patroni_debian.check_pillar, which the formula runs first, names the pillar
key and the accepted form. On sandboxed hosts (tests/sandbox.py) with no PostgreSQL of their own: eth0 10.0.0.11/24.
"""

import copy

import pytest
import sandbox

pytestmark = pytest.mark.differential

GOOD_CLUSTER = {"authentication": {"replication": {"password": "a-long-secret"}}}
GOOD = {"patroni": {"dcs": {"etcd3": {"hosts": ["10.0.0.5:2379"]}}, "clusters": {"15-main": GOOD_CLUSTER}}}
ETCD2 = {"etcd": {"host": "10.0.0.5:2379"}}


def bad(cluster=None, scope="15-main", **top):
    """GOOD with ``cluster`` merged into 15-main's settings (or replacing them when not a mapping) and ``top``
    over patroni's keys."""
    pillar = copy.deepcopy(GOOD)
    if cluster is not None:
        settings = {**GOOD_CLUSTER, **cluster} if isinstance(cluster, dict) else cluster
        pillar["patroni"]["clusters"] = {scope: settings}
    elif scope != "15-main":
        pillar["patroni"]["clusters"] = {scope: GOOD_CLUSTER}
    pillar["patroni"].update(top)
    return pillar


WHERE = "pillar patroni:clusters:15-main"
# id, pillar, words the message must contain
BAD_PILLAR = [
    ("no patroni pillar", {}, ["pillar patroni is not set"]),
    ("patroni a list", {"patroni": ["15-main"]}, ["pillar patroni must be a mapping"]),
    ("no clusters", {"patroni": {"dcs": GOOD["patroni"]["dcs"]}}, ["patroni:clusters must map"]),
    ("clusters a list", bad(clusters=["15-main"]), ["patroni:clusters must map"]),
    ("clusters empty", bad(clusters={}), ["patroni:clusters must map"]),
    ("scope without a dash", bad(scope="main"), ["'main' is not <version>-<cluster>"]),
    ("scope with a slash", bad(scope="15-a/b"), ["cluster", "'a/b'"]),
    ("scope with a space", bad(scope="15-my app"), ["cluster", "'my app'"]),
    ("scope of version 15.0", bad(scope="15.0-main"), ["version", "write 15"]),
    ("version whose packages do not exist", bad(scope="99-main"), ["no package postgresql-99"]),
    ("cluster settings a string", bad(cluster="on"), [WHERE, "must be a mapping"]),
    ("unknown key", bad(cluster={"netwrok": "10.0.0.0/24"}), [WHERE, "unknown key(s) netwrok", "network"]),
    ("missing replication password", bad(cluster={"authentication": {}}), [WHERE, "replication:password is required"]),
    (
        "replication password empty",
        bad(cluster={"authentication": {"replication": {"password": ""}}}),
        ["replication:password is required"],
    ),
    ("no DCS at all", bad(dcs=None), [WHERE, "DCS not configured"]),
    ("unknown DCS type", bad(dcs={"etcd4": {"hosts": ["a:1"]}}), [WHERE, "unknown key(s) etcd4"]),
    ("DCS a list", bad(dcs=["etcd3"]), [WHERE, "dcs", "mapping"]),
    ("two DCS types", bad(dcs={"etcd": {"host": "a:1"}, "consul": {"host": "b:1"}}), ["exactly one"]),
    ("dynamic not a mapping", bad(cluster={"dynamic": ["ttl", 20]}), [WHERE, "dynamic", "mapping"]),
    ("timing profile unknown", bad(cluster={"timing": "quick"}), [WHERE, "timing: 'quick' is not a profile", "fast"]),
    ("timing a list", bad(cluster={"timing": ["fast"]}), [WHERE, "timing: ['fast'] is not a profile", "debian"]),
    (
        "timing rule broken by dynamic",
        bad(cluster={"timing": "fast", "dynamic": {"loop_wait": 11}}),
        [WHERE, "loop_wait 11 + 2 × retry_timeout 5 is more than ttl 20"],
    ),
    ("ttl below Patroni's minimum", bad(cluster={"dynamic": {"ttl": 10}}), [WHERE, "ttl: 10", "at least 20"]),
    ("config not a mapping", bad(cluster={"config": "tags"}), [WHERE, "config", "mapping"]),
    ("authentication a string", bad(cluster={"authentication": "secret"}), [WHERE, "authentication", "mapping"]),
    ("port not a number", bad(cluster={"port": "fifty"}), [WHERE, "port", "TCP port"]),
    (
        "two clusters on one port",
        bad(clusters={"15-main": {**GOOD_CLUSTER, "port": 5433}, "15-app": {**GOOD_CLUSTER, "port": 5433}}),
        ["15-app:port", "5433 is also the port of 15-main"],
    ),
    ("network without prefix", bad(cluster={"network": "10.0.0.0"}), [WHERE, "network", "CIDR"]),
    ("hostip loopback", bad(cluster={"hostip": "127.0.0.1"}), [WHERE, "hostip", "loopback"]),
    (
        "VIP outside the network",
        bad(cluster={"vip": "192.168.5.5", "network": "10.0.0.0/24"}, dcs=ETCD2),
        [WHERE, "vip", "outside network 10.0.0.0/24"],
    ),
    (
        "VIP outside every host network",
        bad(cluster={"vip": "192.168.5.5"}, dcs=ETCD2),
        [WHERE, "vip", "in none of this host's networks"],
    ),
    (
        "VIP equal to this member's address",
        bad(cluster={"vip": "10.0.0.11"}, dcs=ETCD2),
        [WHERE, "vip", "this member's own address"],
    ),
    (
        "VIP equal to the given hostip",
        bad(cluster={"vip": "10.0.0.50", "hostip": "10.0.0.50"}, dcs=ETCD2),
        [WHERE, "vip", "this member's own address"],
    ),
    ("VIP the broadcast address", bad(cluster={"vip": "10.0.0.255"}, dcs=ETCD2), ["vip", "broadcast address"]),
    ("purge not a boolean", bad(cluster={"purge": "yes"}), [WHERE, "purge", "not a boolean"]),
    ("a member under two roles", bad(role=["bootstrap", "replica"]), ["patroni:role", "not one role"]),
    ("an unknown role", bad(role="leader"), ["patroni:role", "'leader'", "bootstrap, replica"]),
    ("program relative", bad(cluster={"program": "patroni_debian.py"}), [WHERE, "program", "absolute path"]),
]


@pytest.mark.parametrize("pillar,words", [row[1:] for row in BAD_PILLAR], ids=[row[0] for row in BAD_PILLAR])
def test_bad_pillar_is_refused_naming_the_key(pillar, words, tmp_path):
    outcome = sandbox.run(sandbox.Host(dcs_yml=None), tmp_path, sandbox.module_argv("check_pillar", pillar=pillar))
    text = outcome.stdout + outcome.stderr
    assert outcome.returncode == 1 and outcome.stdout.startswith("Error: ") and "Traceback" not in text, text
    for word in words:
        assert word in outcome.stdout, text
    assert "a-long-secret" not in text
    assert outcome.files == {}


def test_good_pillar_is_accepted(tmp_path):
    pillar = bad(
        clusters={"15-main": {**GOOD_CLUSTER, "vip": "10.0.0.100"}, "15-app": GOOD_CLUSTER}, dcs=ETCD2, role="bootstrap"
    )
    outcome = sandbox.run(sandbox.Host(dcs_yml=None), tmp_path, sandbox.module_argv("check_pillar", pillar=pillar))
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert '"15-main": {"version": "15", "cluster": "main", "port": null, "vip": "10.0.0.100"}' in outcome.stdout
