"""Bad pillar fails before any change: patroni_debian.check_pillar, which the formula runs first, names the pillar
key and the accepted form. On sandboxed hosts (tests/sandbox.py) with no PostgreSQL of their own: eth0 10.0.0.11/24.
"""

import copy
import json

import pytest
import sandbox


# Every secret of the good pillar holds the marker: no refusal below may show any of it (issue 18, class 2)
MARKER = "Mk7-secret-marker"
GOOD_CLUSTER = {
    "authentication": {
        "replication": {"password": "a-long-secret"},
        "superuser": {"username": "postgres", "sslpassword": f"Ssl-{MARKER}"},
        "rewind": {"username": "rewinder", "password": f"Rew-{MARKER}"},
    }
}
GOOD = {
    "patroni": {
        "dcs": {"etcd3": {"hosts": ["10.0.0.5:2379"], "username": "root", "password": f"Dcs-{MARKER}"}},
        "clusters": {"15-main": GOOD_CLUSTER},
    }
}
ETCD2 = {"etcd": {"host": "10.0.0.5:2379"}}


def with_auth(role, **credentials):
    """GOOD_CLUSTER's authentication with ``role``'s credentials merged over."""
    authentication = copy.deepcopy(GOOD_CLUSTER["authentication"])
    authentication.setdefault(role, {}).update(credentials)
    return {"authentication": authentication}


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
    (
        "unknown key",
        bad(cluster={"netwrok": "10.0.0.0/24"}),
        [WHERE, "unknown key 'netwrok' (did you mean 'network'?)"],
    ),
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
        ["15-app: port: 5433 is also the port of 15-main"],
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
    ("purge not a boolean", bad(cluster={"purge": "maybe"}), [WHERE, "purge", "not a boolean"]),
    ("a member under two roles", bad(role=["bootstrap", "replica"]), ["patroni:role", "not one role"]),
    ("an unknown role", bad(role="leader"), ["patroni:role", "'leader'", "bootstrap, replica"]),
    ("program relative", bad(cluster={"program": "patroni_debian.py"}), [WHERE, "program", "absolute path"]),
    # issue 18, class 2: a secret where a message quotes the value
    (
        "URL password with a slash",
        bad(cluster={"vip": "10.0.0.100", "endpoint": f"http://u:x/{MARKER}@10.0.0.5"}, dcs=ETCD2),
        [WHERE, "is not a DCS URL"],
    ),
    ("a password pasted into hostip", bad(cluster={"hostip": f"Rew-{MARKER}"}), [WHERE, "hostip", "********"]),
    # class 3: names that would be pasted into an sls file
    ("scope with a line break", bad(scope="15-main\nInjected state:"), ["cluster", "not a valid cluster name"]),
    ("scope with a trailing space", bad(scope="15-main "), ["cluster", "'main '"]),
    ("scope with a leading space", bad(scope=" 15-main"), ["' 15-main' is not <version>-<cluster>"]),
    # class 4: role names that pg_hba reads as syntax
    (
        "username that opens pg_hba",
        bad(cluster=with_auth("rewind", username="all 0.0.0.0/0 trust #")),
        [WHERE, "authentication:rewind:username", "not a role name pg_hba can take"],
    ),
    ("username with a space", bad(cluster=with_auth("replication", username="rep user")), ["replication:username"]),
    ("username a keyword", bad(cluster=with_auth("replication", username="all")), ["pg_hba keywords"]),
    ("username empty", bad(cluster=with_auth("replication", username="")), ["replication:username: empty"]),
    # class 5: data directories Patroni may remove
    ("data_dir /", bad(cluster={"config": {"postgresql": {"data_dir": "/"}}}), [WHERE, "data_dir / is /"]),
    ("data_dir /etc", bad(cluster={"config": {"postgresql": {"data_dir": "/etc"}}}), [WHERE, "data_dir /etc is /etc"]),
    (
        "data_dir every cluster's parent",
        bad(cluster={"config": {"postgresql": {"data_dir": "/var/lib/postgresql/15"}}}),
        [WHERE, "the folder of every PostgreSQL 15 cluster"],
    ),
    # class 7: what the render refuses, refused before anything is installed
    ("listen without a port", bad(cluster={"config": {"postgresql": {"listen": "*"}}}), [WHERE, "names no port"]),
    ("dynamic postgresql null", bad(cluster={"dynamic": {"postgresql": None}}), [WHERE, "must be a mapping"]),
    (
        "ttl below the minimum through config",
        bad(cluster={"config": {"bootstrap": {"dcs": {"ttl": 5}}}}),
        [WHERE, "ttl: 5", "at least 20"],
    ),
    (
        "Debian's default password through config",
        bad(cluster={"config": {"postgresql": {"authentication": {"replication": {"password": "rep-pass"}}}}}),
        [WHERE, "well-known default"],
    ),
    # class 8: ports
    (
        "a port that is another cluster's REST API port",
        bad(
            clusters={
                "15-main": {**GOOD_CLUSTER, "port": 5432},
                "15-app": {**GOOD_CLUSTER, "port": 5440, "config": {"postgresql": {"listen": "*:8008"}}},
            }
        ),
        ["15-app: port: 8008 is also the REST API port of 15-main"],
    ),
    (
        "a REST API listening on the PostgreSQL port",
        bad(cluster={"port": 5433, "config": {"restapi": {"listen": "10.0.0.11:5433"}}}),
        [WHERE, "both listen on port 5433"],
    ),
    # class 9: values that can never work
    ("ttl infinite", bad(cluster={"dynamic": {"ttl": float("inf")}}), [WHERE, "ttl: inf", "at least 20"]),
    ("ttl not a number", bad(cluster={"dynamic": {"ttl": float("nan")}}), [WHERE, "ttl: nan"]),
    (
        "password with a line break",
        bad(cluster=with_auth("replication", password=f"{MARKER}\nx")),
        [WHERE, "line break, NUL"],
    ),
    # class 12: unknown keys at every level, with the closest known one
    (
        "top-level dsc",
        bad(dsc={"etcd3": {"hosts": ["a:1"]}}),
        ["pillar patroni: unknown key 'dsc' (did you mean 'dcs'?)"],
    ),
    (
        "clusters mistyped",
        {"patroni": {"dcs": GOOD["patroni"]["dcs"], "clustres": {"15-main": GOOD_CLUSTER}}},
        ["unknown key 'clustres' (did you mean 'clusters'?)"],
    ),
    ("lookup packages a string", bad(lookup={"packages": "patroni"}), ["lookup:packages: 'patroni' is not a list"]),
    ("lookup key mistyped", bad(lookup={"pakages": ["patroni"]}), ["did you mean 'packages'?"]),
    (
        "config key mistyped",
        bad(cluster={"config": {"postgressql": {"listen": "*:5433"}}}),
        [WHERE, "config: unknown key 'postgressql' (did you mean 'postgresql'?)"],
    ),
    ("dynamic key mistyped", bad(cluster={"dynamic": {"loop_wiat": 5}}), [WHERE, "did you mean 'loop_wait'?"]),
    (
        "authentication key mistyped",
        bad(cluster=with_auth("replication", pasword="x")),
        [WHERE, "did you mean 'password'?"],
    ),
    # issue 21: TLS and the REST API's role
    ("tls a string", bad(tls="pg1"), ["pillar patroni:tls", "expected a mapping"]),
    ("tls key mistyped", bad(tls={"ca_sever": "pg1"}), ["pillar patroni:tls", "did you mean 'ca_server'?"]),
    ("tls with half a PKI", bad(tls={"ca_file": "/etc/ssl/ca.pem"}), ["pillar patroni:tls", "missing: cert_file"]),
    ("tls per cluster", bad(cluster={"tls": {"ca_server": "pg1"}}), [WHERE, "unknown key 'tls'"]),
    (
        "REST API role without a password",
        bad(cluster=with_auth("restapi", username="patroni")),
        [WHERE, "authentication:restapi: give both username and password"],
    ),
    (
        "REST API name with a colon",
        bad(cluster=with_auth("restapi", username="pat:roni", password=f"Api-{MARKER}")),
        [WHERE, "cannot hold ':'"],
    ),
]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    """check_pillar's answer to every pillar of BAD_PILLAR, asked in one sandboxed process, in table order."""
    calls = [["check_pillar", [], {}, row[1]] for row in BAD_PILLAR]
    argv = sandbox.module_calls_argv(calls)
    outcome = sandbox.run(sandbox.Host(dcs_yml=None), tmp_path_factory.mktemp("bad-pillar"), argv)
    assert outcome.returncode == 0 and "Traceback" not in outcome.stderr, outcome.stdout + outcome.stderr
    assert outcome.files == {}
    for secret in ("a-long-secret", MARKER, MARKER[:7], MARKER[-7:]):
        assert secret not in outcome.stderr, outcome.stderr
    return dict(zip([row[0] for row in BAD_PILLAR], json.loads(outcome.stdout)))


@pytest.mark.parametrize("way,words", [(row[0], row[2]) for row in BAD_PILLAR], ids=[row[0] for row in BAD_PILLAR])
def test_bad_pillar_is_refused_naming_the_key(refusals, way, words):
    answer = refusals[way]
    said = answer["said"]
    assert answer["returncode"] == 1 and said.startswith("Error: ") and not answer["traceback"], said
    for word in words:
        assert word in said, said
    for secret in ("a-long-secret", MARKER, MARKER[:7], MARKER[-7:]):
        assert secret not in said, said
    assert answer["changed"] == []


RENDER_EVERY_PILLAR = """
import json, sys
sys.path.insert(0, sys.argv[1])
import patroni_debian as module
import patroni_debian_config as config
import patroni_debian_render as render
render.DCS_CONNECT_TIMEOUT = 0.05  # the sandbox has no DCS: each refusal at once rather than after 2 s
said = []
for pillar in json.loads(sys.argv[2]):
    config.__pillar__ = pillar  # as Salt's loader gives it to the file of these functions
    for function in (config.render_config, config.createconfig, config.dcs_reachable):
        try:
            said.append(json.dumps(function("15", "main")))
        except (module.CommandExecutionError, module.SaltInvocationError) as exc:
            said.append(str(exc))
print(json.dumps(said))
"""


def test_no_refusal_of_render_config_createconfig_or_dcs_reachable_shows_a_secret(tmp_path):
    """Every bad pillar above through the functions that read pillar themselves (issue 18, class 2): whatever
    each says, success or refusal, holds no part of a secret."""
    pillars = [row[1] for row in BAD_PILLAR]
    argv = [sandbox.sys.executable, "-c", RENDER_EVERY_PILLAR, str(sandbox.REPO / "_modules"), json.dumps(pillars)]
    outcome = sandbox.run(sandbox.Host(dcs_yml=None), tmp_path, argv)
    assert outcome.returncode == 0 and "Traceback" not in outcome.stderr, outcome.stderr
    said = json.loads(outcome.stdout)
    assert len(said) == 3 * len(pillars)
    for secret in ("a-long-secret", MARKER, MARKER[:7], MARKER[-7:]):
        assert not [text for text in said if secret in text], secret


def test_good_pillar_is_accepted(tmp_path):
    pillar = bad(
        clusters={"15-main": {**GOOD_CLUSTER, "vip": "10.0.0.100"}, "15-app": GOOD_CLUSTER}, dcs=ETCD2, role="bootstrap"
    )
    outcome = sandbox.run(sandbox.Host(dcs_yml=None), tmp_path, sandbox.module_argv("check_pillar", pillar=pillar))
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert '"15-main": {"version": "15", "cluster": "main", "port": null, "vip": "10.0.0.100"}' in outcome.stdout


DECLARED_EVERY_PILLAR = """
import json, sys
sys.path.insert(0, sys.argv[1])
import patroni_debian as module
import patroni_debian_config as config
said = []
for pillar in json.loads(sys.argv[2]):
    config.__pillar__ = pillar  # as Salt's loader gives it to the file of this function
    try:
        said.append(["declares", config.declared_clusters()])
    except (module.CommandExecutionError, module.SaltInvocationError) as exc:
        said.append(["refused", str(exc)])
print(json.dumps(said))
"""

# What a member may leave is only what a pillar that can be trusted no longer names (issue 18, class 1): the
# shapes an operator in a hurry breaks it into, each refused naming the problem (the lab's test_membership runs
# the first and the render error through the orchestration); and the pillars that do declare, none or some.
DECLARED = [
    ("a typo in clusters", {"patroni": {**GOOD["patroni"], "clustres": {}}}, "refused", "did you mean 'clusters'"),
    ("clusters a list", {"patroni": {**GOOD["patroni"], "clusters": ["15-main"]}}, "refused", "clusters must map"),
    ("a trailing space", bad(clusters={"15-main ": GOOD_CLUSTER}), "refused", "'main '"),
    ("a typo in patroni", {"patrnoi": GOOD["patroni"]}, "refused", "spelled close to it"),
    ("a render error", {"_errors": [f"Rendering SLS 'patroni' failed: {MARKER}"]}, "refused", "failed to render"),
    ("no patroni at all", {"other": {"x": 1}}, "declares", []),
    ("no cluster", {"patroni": {"clusters": {}}}, "declares", []),
    (
        "two clusters",
        bad(clusters={"15-main": GOOD_CLUSTER, "16-app": GOOD_CLUSTER}),
        "declares",
        ["15-main", "16-app"],
    ),
]


@pytest.fixture(scope="module")
def declared(tmp_path_factory):
    """declared_clusters' answer to every pillar of DECLARED, asked in one sandboxed process."""
    pillars = [row[1] for row in DECLARED]
    argv = [sandbox.sys.executable, "-c", DECLARED_EVERY_PILLAR, str(sandbox.REPO / "_modules"), json.dumps(pillars)]
    outcome = sandbox.run(sandbox.Host(dcs_yml=None), tmp_path_factory.mktemp("declared"), argv)
    assert outcome.returncode == 0 and "Traceback" not in outcome.stderr, outcome.stdout + outcome.stderr
    assert outcome.files == {}
    return dict(zip([row[0] for row in DECLARED], json.loads(outcome.stdout)))


@pytest.mark.parametrize(
    "way,outcome,words", [(row[0], *row[2:]) for row in DECLARED], ids=[row[0] for row in DECLARED]
)
def test_only_a_pillar_that_can_be_trusted_declares_what_a_member_runs(declared, way, outcome, words):
    said, answer = declared[way]
    assert said == outcome, answer
    if outcome == "refused":
        assert words in answer and MARKER[:7] not in answer and "a-long-secret" not in answer, answer
    else:
        assert answer == words
