"""Bad input to createconfig: a clear error naming the argument and the accepted form, and nothing written.

Runs on sandboxed hosts (tests/sandbox.py) that also hold an existing config of another cluster, which
must come through every refusal byte for byte.
"""

import json

import pytest
import sandbox


OTHER = "15-other.yml"
OTHER_TEXT = "scope: 15-other\npostgresql:\n  listen: '*:5440'\n"
ETCD3 = {"etcd3": {"hosts": ["10.0.0.5:2379"]}}


def host(**changes):
    settings = {"files": {OTHER: OTHER_TEXT}, "clusters": (("15", "other", 5433),)}
    settings.update(changes)
    return sandbox.Host(**settings)


# id, positional arguments, keyword arguments, host, words the message must contain
BAD_INPUT = [
    ("version 9", ("9", "main"), {}, host(), ["version", "9.6"]),
    ("version v15", ("v15", "main"), {}, host(), ["version", "'v15'"]),
    ("version 15.1.2", ("15.1.2", "main"), {}, host(), ["version", "15.1.2"]),
    ("version empty", ("", "main"), {}, host(), ["version", "major version"]),
    ("version boolean", (True, "main"), {}, host(), ["version", "major version"]),
    ("version without initdb", ("16", "main"), {}, host(), ["version", "initdb", "postgresql-16"]),
    ("cluster empty", ("15", ""), {}, host(), ["cluster", "letters, digits"]),
    ("cluster with slash", ("15", "a/b"), {}, host(), ["cluster", "'a/b'"]),
    ("cluster with space", ("15", "my app"), {}, host(), ["cluster", "'my app'"]),
    ("cluster with leading dash", ("15", "-main"), {}, host(), ["cluster", "starting with"]),
    ("cluster dot-dot", ("15", ".."), {}, host(), ["cluster", "'..'"]),
    ("cluster with ampersand", ("15", "a&b"), {}, host(), ["cluster", "'a&b'"]),
    ("cluster boolean", ("15", True), {}, host(), ["cluster", "quote"]),
    ("port not a number", ("15", "main"), {"port": "abc"}, host(), ["port", "'abc'", "TCP port"]),
    ("port zero", ("15", "main"), {"port": 0}, host(), ["port", "1 to 62959"]),
    ("port too high", ("15", "main"), {"port": 70000}, host(), ["port", "1 to 62959"]),
    ("port leaves no REST API port", ("15", "main"), {"port": 62960}, host(), ["port", "REST API"]),
    ("port negative", ("15", "main"), {"port": -1}, host(), ["port", "1 to 62959"]),
    ("port boolean", ("15", "main"), {"port": True}, host(), ["port", "TCP port"]),
    ("port of another cluster", ("15", "main"), {"port": 5433}, host(), ["port", "5433", "cluster 15/other"]),
    ("port of another Patroni config", ("15", "main"), {"port": 5440}, host(), ["port", "Patroni config"]),
    ("hostip malformed", ("15", "main"), {"hostip": "10.0.0.300"}, host(), ["hostip", "IP address"]),
    ("hostip with prefix", ("15", "main"), {"hostip": "10.0.0.11/24"}, host(), ["hostip", "IP address"]),
    ("hostip a name", ("15", "main"), {"hostip": "pg1"}, host(), ["hostip", "IP address"]),
    ("network without prefix", ("15", "main"), {"network": "10.0.0.0"}, host(), ["network", "CIDR"]),
    ("network prefix too long", ("15", "main"), {"network": "10.0.0.0/33"}, host(), ["network", "CIDR"]),
    ("network words", ("15", "main"), {"network": "lan"}, host(), ["network", "CIDR"]),
    ("vip malformed", ("15", "main"), {"vip": "10.0.0.999"}, host(), ["vip", "IP address"]),
    (
        "vip is the host address",
        ("15", "main"),
        {"vip": "10.0.0.11", "hostip": "10.0.0.11", "dcs": {"etcd": {"host": "10.0.0.5:2379"}}},
        host(),
        ["vip", "host address"],
    ),
    (
        "vip is the detected host address",
        ("15", "main"),
        {"vip": "10.0.0.11", "dcs": {"etcd": {"host": "10.0.0.5:2379"}}},
        host(),
        ["vip", "host address"],
    ),
    ("program relative", ("15", "main"), {"program": "patroni_debian.py"}, host(), ["program", "absolute path"]),
    (
        "vip outside every network",
        ("15", "main"),
        {"vip": "192.168.99.9", "dcs": {"etcd": {"host": "10.0.0.5:2379"}}},
        host(),
        ["vip", "subnet", "eth0 10.0.0.11/24"],
    ),
    (
        "vip with a DCS vip-manager 1 cannot follow",
        ("15", "main"),
        {"vip": "10.0.0.100", "dcs": ETCD3},
        host(),
        ["vip", "etcd3", "vip-manager2"],
    ),
    (
        "vip with srv only etcd",
        ("15", "main"),
        {"vip": "10.0.0.100", "dcs": {"etcd": {"srv": "example.org"}}},
        host(),
        ["endpoint", "pass endpoint="],
    ),
    (
        "endpoint without scheme",
        ("15", "main"),
        {"vip": "10.0.0.100", "endpoint": "10.0.0.5:2379"},
        host(),
        ["endpoint", "http(s)://host:port"],
    ),
    (
        "endpoint other scheme",
        ("15", "main"),
        {"vip": "10.0.0.100", "endpoint": "ftp://10.0.0.5:2379"},
        host(),
        ["endpoint", "http(s)://host:port"],
    ),
    (
        "endpoint without port",
        ("15", "main"),
        {"vip": "10.0.0.100", "endpoint": "http://10.0.0.5"},
        host(),
        ["endpoint", "http(s)://host:port"],
    ),
    ("endpoint empty list", ("15", "main"), {"vip": "10.0.0.100", "endpoint": []}, host(), ["endpoint", "URL"]),
    ("dcs missing", ("15", "main"), {}, host(dcs_yml=None), ["dcs", "DCS not configured", "/etc/patroni/dcs.yml"]),
    ("dcs empty mapping", ("15", "main"), {"dcs": {}}, host(), ["dcs", "DCS not configured"]),
    ("dcs a string", ("15", "main"), {"dcs": "etcd3"}, host(), ["dcs", "mapping", "str"]),
    ("dcs a list", ("15", "main"), {"dcs": ["etcd3"]}, host(), ["dcs", "mapping", "list"]),
    ("dcs of unknown type", ("15", "main"), {"dcs": {"etcdd": {"host": "x:1"}}}, host(), ["dcs", "etcdd", "etcd3"]),
    (
        "dcs naming two types",
        ("15", "main"),
        {"dcs": {"etcd": {"host": "a:1"}, "etcd3": {"host": "b:1"}}},
        host(),
        ["dcs", "exactly one", "etcd, etcd3"],
    ),
    ("dcs only tags", ("15", "main"), {"dcs": {"tags": {"nofailover": True}}}, host(), ["dcs", "exactly one", "none"]),
    (
        "dcs type without settings",
        ("15", "main"),
        {"dcs": {"etcd3": None}},
        host(),
        ["dcs", "etcd3", "mapping of its settings"],
    ),
    (
        "dcs.yml not YAML",
        ("15", "main"),
        {},
        host(dcs_yml="etcd: [unclosed\n"),
        ["/etc/patroni/dcs.yml", "not valid YAML"],
    ),
    ("dcs.yml a scalar", ("15", "main"), {}, host(dcs_yml="just words\n"), ["dcs", "mapping"]),
    ("config not a mapping", ("15", "main"), {"config": "x"}, host(), ["config", "mapping"]),
    ("dynamic a list", ("15", "main"), {"dynamic": [1]}, host(), ["dynamic", "mapping"]),
    ("authentication a string", ("15", "main"), {"authentication": "secret"}, host(), ["authentication", "mapping"]),
    ("unknown argument", ("15", "main"), {"prot": 5433}, host(), ["unknown argument", "prot", "port"]),
    ("no default route and no hostip", ("15", "main"), {}, host(gateway=None), ["hostip", "pass hostip="]),
    # versions and names
    ("version 15.0", ("15.0", "main"), {}, host(), ["version", "'15.0'", "write 15"]),
    ("version 15.0 as a number", (15.0, "main"), {}, host(), ["version", "write 15"]),
    ("version 8.4", ("8.4", "main"), {}, host(), ["version", "'8.4'"]),
    ("version a list", (["15"], "main"), {}, host(), ["version", "major version"]),
    ("cluster of 250 characters", ("15", "c" * 250), {}, host(), ["cluster", "250 characters", "at most 63"]),
    ("cluster of 64 characters", ("15", "c" * 64), {}, host(), ["cluster", "at most 63"]),
    ("cluster a list", ("15", ["main"]), {}, host(), ["cluster", "not a cluster name"]),
    # ports
    ("port superscript two", ("15", "main"), {"port": "²"}, host(), ["port", "'²'", "digits 0-9"]),
    ("port Arabic-Indic digits", ("15", "main"), {"port": "٥٤٣٢"}, host(), ["port", "digits 0-9"]),
    ("port a float", ("15", "main"), {"port": 5432.0}, host(), ["port", "TCP port"]),
    ("port with a sign", ("15", "main"), {"port": "+5433"}, host(), ["port", "TCP port"]),
    ("port hexadecimal", ("15", "main"), {"port": "0x1538"}, host(), ["port", "TCP port"]),
    ("port with spaces", ("15", "main"), {"port": " 5433"}, host(), ["port", "TCP port"]),
    # addresses nobody can reach
    ("hostip 0.0.0.0", ("15", "main"), {"hostip": "0.0.0.0"}, host(), ["hostip", "wildcard"]),
    ("hostip ::", ("15", "main"), {"hostip": "::"}, host(), ["hostip", "wildcard"]),
    ("hostip loopback", ("15", "main"), {"hostip": "127.0.0.1"}, host(), ["hostip", "loopback"]),
    ("hostip IPv6 loopback", ("15", "main"), {"hostip": "::1"}, host(), ["hostip", "loopback"]),
    ("hostip multicast", ("15", "main"), {"hostip": "224.0.0.1"}, host(), ["hostip", "multicast"]),
    ("hostip IPv6 multicast", ("15", "main"), {"hostip": "ff02::1"}, host(), ["hostip", "multicast"]),
    ("hostip link-local with zone", ("15", "main"), {"hostip": "fe80::1%eth0"}, host(), ["hostip", "link-local"]),
    ("hostip IPv4 link-local", ("15", "main"), {"hostip": "169.254.1.1"}, host(), ["hostip", "link-local"]),
    ("hostip reserved", ("15", "main"), {"hostip": "240.0.0.1"}, host(), ["hostip", "reserved"]),
    ("hostip broadcast-all", ("15", "main"), {"hostip": "255.255.255.255"}, host(), ["hostip", "reserved"]),
    ("hostip boolean", ("15", "main"), {"hostip": True}, host(), ["hostip", "IP address"]),
    ("hostip a list", ("15", "main"), {"hostip": ["10.0.0.11"]}, host(), ["hostip", "IP address"]),
    ("network boolean", ("15", "main"), {"network": True}, host(), ["network", "CIDR"]),
    (
        "vip the network address",
        ("15", "main"),
        {"vip": "10.0.0.0", "dcs": {"etcd": {"host": "10.0.0.5:2379"}}},
        host(),
        ["vip", "network address of 10.0.0.0/24"],
    ),
    (
        "vip the broadcast address",
        ("15", "main"),
        {"vip": "10.0.0.255", "dcs": {"etcd": {"host": "10.0.0.5:2379"}}},
        host(),
        ["vip", "broadcast address"],
    ),
    ("vip 0.0.0.0", ("15", "main"), {"vip": "0.0.0.0"}, host(), ["vip", "wildcard"]),
    ("vip loopback", ("15", "main"), {"vip": "127.0.0.2"}, host(), ["vip", "loopback"]),
    ("vip multicast", ("15", "main"), {"vip": "224.0.0.18"}, host(), ["vip", "multicast"]),
    # DCS values that would make endpoints nobody can reach, or inject lines
    (
        "dcs hosts a number with a VIP",
        ("15", "main"),
        {"vip": "10.0.0.100", "dcs": {"etcd": {"hosts": 5}}},
        host(),
        ["dcs:etcd:hosts", "host:port"],
    ),
    (
        "dcs hosts numbers with a VIP",
        ("15", "main"),
        {"vip": "10.0.0.100", "dcs": {"etcd": {"hosts": [1, 2]}}},
        host(),
        ["dcs:etcd:hosts", "host:port"],
    ),
    (
        "dcs host without port with a VIP",
        ("15", "main"),
        {"vip": "10.0.0.100", "dcs": {"etcd": {"host": "10.0.0.5"}}},
        host(),
        ["dcs:etcd:hosts", "http(s)://host:port"],
    ),
    (
        "dcs url of another scheme with a VIP",
        ("15", "main"),
        {"vip": "10.0.0.100", "dcs": {"etcd": {"url": "ftp://10.0.0.5:2379"}}},
        host(),
        ["dcs:etcd:url", "http(s)"],
    ),
    (
        "dcs username with a newline",
        ("15", "main"),
        {"vip": "10.0.0.100", "dcs": {"etcd": {"host": "10.0.0.5:2379", "username": "a\nVIP_IP=1.2.3.4"}}},
        host(),
        ["VIP_ETCD_USER", "line break"],
    ),
    (
        "endpoint with a newline",
        ("15", "main"),
        {"vip": "10.0.0.100", "endpoint": "http://10.0.0.5:2379\nVIP_X=1"},
        host(),
        ["endpoint", "line break"],
    ),
    (
        "endpoint credentials differing from the DCS's",
        ("15", "main"),
        {
            "vip": "10.0.0.100",
            "endpoint": "http://a:b@10.0.0.5:2379",
            "dcs": {"etcd": {"host": "10.0.0.5:2379", "username": "c", "password": "d"}},
        },
        host(),
        ["endpoint", "differs"],
    ),
    (
        "endpoints with two credentials",
        ("15", "main"),
        {
            "vip": "10.0.0.100",
            "endpoint": "http://a:b@10.0.0.5:2379,http://a:c@10.0.0.6:2379",
            "dcs": {"etcd": {"host": "x:1"}},
        },
        host(),
        ["endpoint", "different credentials"],
    ),
    # sections and overrides
    (
        "config postgresql null",
        ("15", "main"),
        {"config": {"postgresql": None}},
        host(),
        ["config", "postgresql must be a mapping", "null"],
    ),
    ("config bootstrap null", ("15", "main"), {"config": {"bootstrap": None}}, host(), ["config", "bootstrap"]),
    (
        "config authentication a string",
        ("15", "main"),
        {"config": {"postgresql": {"authentication": "x"}}},
        host(),
        ["config", "postgresql.authentication must be a mapping", "str"],
    ),
    ("config restapi a list", ("15", "main"), {"config": {"restapi": []}}, host(), ["config", "restapi", "list"]),
    (
        "dynamic postgresql null",
        ("15", "main"),
        {"dynamic": {"postgresql": None}},
        host(),
        ["dynamic", "postgresql must be a mapping"],
    ),
    ("dynamic null", ("15", "main"), {"dynamic": "x"}, host(), ["dynamic", "mapping"]),
    (
        "config listen on another cluster's port",
        ("15", "main"),
        {"config": {"postgresql": {"listen": "*:5433"}}},
        host(),
        ["port", "5433", "cluster 15/other"],
    ),
    (
        "config listen on another config's port",
        ("15", "main"),
        {"config": {"postgresql": {"listen": "*:5440"}}},
        host(),
        ["port", "5440", "Patroni config"],
    ),
    (
        "config listen without a port",
        ("15", "main"),
        {"config": {"postgresql": {"listen": "*"}}},
        host(),
        ["config", "postgresql.listen", "names no port"],
    ),
    (
        "config data_dir of another cluster",
        ("15", "main"),
        {"config": {"postgresql": {"data_dir": "/var/lib/postgresql/15/other/"}}},
        host(),
        ["postgresql.data_dir", "cluster 15/other"],
    ),
    (
        "config data_dir relative",
        ("15", "main"),
        {"config": {"postgresql": {"data_dir": "data"}}},
        host(),
        ["postgresql.data_dir", "absolute"],
    ),
    (
        "authentication replication a string",
        ("15", "main"),
        {"authentication": {"replication": "secret"}},
        host(),
        ["authentication:replication", "mapping", "str"],
    ),
    (
        "authentication superuser a list",
        ("15", "main"),
        {"authentication": {"superuser": ["postgres"]}},
        host(),
        ["authentication:superuser", "mapping"],
    ),
    (
        "authentication unknown role",
        ("15", "main"),
        {"authentication": {"replicaton": {"password": "x"}}},
        host(),
        ["authentication", "'replicaton'", "replication, superuser, rewind"],
    ),
    (
        "authentication password a list",
        ("15", "main"),
        {"authentication": {"replication": {"password": ["x"]}}},
        host(),
        ["authentication:replication:password", "string"],
    ),
    ("force maybe", ("15", "main"), {"force": "maybe"}, host(), ["force", "boolean"]),
    ("force 2", ("15", "main"), {"force": 2}, host(), ["force", "boolean"]),
    ("program with a newline", ("15", "main"), {"program": "/usr/bin/x\n/y"}, host(), ["program", "absolute path"]),
    # pillar shapes that used to be ignored
    (
        "pillar patroni a string",
        ("15", "main"),
        {"pillar": {"patroni": "yes"}},
        host(),
        ["pillar patroni must be a mapping", "str"],
    ),
    (
        "pillar clusters a list",
        ("15", "main"),
        {"pillar": {"patroni": {"clusters": ["15-main"]}}},
        host(),
        ["pillar patroni:clusters must be a mapping", "list"],
    ),
    (
        "pillar cluster a string",
        ("15", "main"),
        {"pillar": {"patroni": {"clusters": {"15-main": "on"}}}},
        host(),
        ["pillar patroni:clusters:15-main must be a mapping"],
    ),
    ("pillar dcs a list", ("15", "main"), {"pillar": {"patroni": {"dcs": ["etcd3"]}}}, host(), ["dcs", "mapping"]),
]


FUNCTIONS = ("createconfig", "render_config")


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    """Every row of BAD_INPUT through both functions: one sandboxed process per distinct host, the calls in
    table order, each with what it said and which files it changed."""
    hosts = {}
    for name, args, kwargs, case_host, _ in BAD_INPUT:
        hosts.setdefault(repr(case_host), (case_host, []))[1].append((name, args, kwargs))
    found = {}
    for case_host, rows in hosts.values():
        calls, names = [], []
        for name, args, kwargs in rows:
            arguments = {key: value for key, value in kwargs.items() if key != "pillar"}
            for function in FUNCTIONS:
                calls.append([function, list(args), arguments, kwargs.get("pillar")])
                names.append((function, name))
        outcome = sandbox.run(case_host, tmp_path_factory.mktemp("bad-input"), sandbox.module_calls_argv(calls))
        assert outcome.returncode == 0 and "Traceback" not in outcome.stderr, outcome.stdout + outcome.stderr
        assert outcome.files == {}, "a refused call changed files"
        found.update(zip(names, json.loads(outcome.stdout)))
    return found


@pytest.mark.parametrize("name,words", [(row[0], row[4]) for row in BAD_INPUT], ids=[row[0] for row in BAD_INPUT])
@pytest.mark.parametrize("function", FUNCTIONS)
def test_bad_input_is_refused_and_writes_nothing(answers, function, name, words):
    answer = answers[(function, name)]
    said = answer["said"]
    assert answer["returncode"] == 1 and said.startswith("Error: ") and not answer["traceback"], said
    for word in words:
        assert word in said
    assert answer["changed"] == [], "a refused call changed files"
