"""createconfig against Debian's own pg_createconfig_patroni, of each release: bookworm's as installed on this
host (patroni 3.0.2, vip-manager 1.0.2), trixie's extracted from the packages in the trixie lab image's local
apt repository (patroni 4.0.7, vip-manager 1.0.2), never installed on the host.

Each case builds one sandboxed host (tests/sandbox.py), runs the real Debian script and this project's
function on identical copies of it, and compares the outcomes: the same effective configuration key by key
(parsed YAML), the same VIP keys and values, the same owner and mode; or both refusing; or a deliberate
difference (docs/differences.md) checked explicitly. A case whose Debian outcome changed
between releases says so in ``changed``. Acceptance examples of shared/reference/debian-patroni.md §13 are
tagged A1…A26.
"""

import dataclasses
import pathlib
import subprocess

import machines
import pytest
import sandbox
import yaml


ETCD = "etcd:\n  host: 10.0.0.5:2379\n"
ETCD3_LIST = "etcd3:\n  hosts:\n  - 10.0.0.5:2379\n  - 10.0.0.6:2379\n  - 10.0.0.7:2379\n"
TWO_CLUSTERS = (("15", "main", 5432), ("15", "other", 5433))


@dataclasses.dataclass
class Case:
    id: str
    debian: list  # pg_createconfig_patroni arguments
    ours: tuple = ()  # positional arguments of createconfig (default: the last two of `debian`)
    kwargs: dict = dataclasses.field(default_factory=dict)
    host: sandbox.Host = dataclasses.field(default_factory=sandbox.Host)
    expect: str = "same"  # same | both_fail | deliberate
    check: object = None  # deliberate: check(debian_outcome, our_outcome)
    changed: dict = dataclasses.field(default_factory=dict)  # release -> (expect, check) where Debian's changed


def yml(outcome, name="15-main.yml"):
    return yaml.safe_load(outcome.files[name][0])


def env_file(outcome, name="15-main.vip"):
    """A vip-manager env file as a dict, parsed independently of the module."""
    env = {}
    for line in outcome.files[name][0].splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip().strip('"')
    return env


def assert_same(debian, ours):
    assert debian.returncode == 0, debian.stdout + debian.stderr
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert sorted(debian.files) == sorted(ours.files)
    for name, (text, *owner_mode) in debian.files.items():
        assert ours.files[name][1:] == tuple(owner_mode), name
        if name.endswith(".yml"):
            assert yml(ours, name) == debian_equivalent(yaml.safe_load(text))
        else:
            assert env_file(ours, name) == debian_vip_equivalent(env_file(debian, name))


def debian_vip_equivalent(env):
    """Debian's VIP file with the new names of the settings beside the old ones (docs/differences.md)."""
    return {**env, "VIP_INTERFACE": env["VIP_IFACE"], "VIP_DCS_TYPE": env["VIP_TYPE"]}


def debian_equivalent(config):
    """Debian's config with the deliberate differences that hold for every valid input (docs/differences.md)."""
    config["name"] = str(config["name"])  # the member name is always a string
    # what Patroni 4's --validate-config refuses: empty parameters, a superuser password that is no string
    config["bootstrap"]["dcs"]["postgresql"]["parameters"] = (
        config["bootstrap"]["dcs"]["postgresql"]["parameters"] or {}
    )
    superuser = config["postgresql"]["authentication"]["superuser"]
    if superuser.get("password") is None:
        superuser.pop("password", None)
    program = "/usr/bin/python3 /usr/share/patroni-debian/patroni_debian.py"
    config["bootstrap"]["pg_createcluster"]["command"] = f"{program} createcluster"  # this project's methods
    config["postgresql"]["pg_clonecluster"]["command"] = f"{program} clone"
    # an ex-leader must rejoin: the replication role doubles as pg_rewind's, reachable from the network
    authentication = config["postgresql"]["authentication"]
    authentication["rewind"] = dict(authentication["replication"])
    hba = config["bootstrap"]["dcs"]["postgresql"]["pg_hba"]
    network = hba[-1].split()[3]
    hba.insert(3, f"host    postgres        {authentication['rewind']['username']:<15} {network:<23} md5")
    return config


def assert_refused(outcome, *words):
    """Our function failed cleanly: exit 1, a message naming the problem, and no file written."""
    assert outcome.returncode == 1, outcome.stdout + outcome.stderr
    assert outcome.stdout.startswith("Error: "), outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stderr
    for word in words:
        assert word in outcome.stdout
    assert outcome.files == {}


# ---- deliberate differences, each checked on both sides


def check_options_anywhere(debian, ours):
    assert debian.returncode == 1 and "invalid version main" in debian.stdout
    assert yml(ours)["postgresql"]["listen"] == "*:5433"


def check_exact_port_clash(debian, ours):
    assert debian.returncode == 1 and "Port 543 already in use" in debian.stdout
    assert ours.returncode == 0 and yml(ours, "15-second.yml")["postgresql"]["listen"] == "*:543"


def check_numeric_name(debian, ours):
    assert yml(debian)["name"] == 12345  # Debian: a YAML integer, which Patroni rejects
    assert yml(ours)["name"] == "12345"


def check_no_route(debian, ours):
    assert debian.returncode == 0 and yml(debian)["restapi"]["listen"] == ":8008"
    assert_refused(ours, "hostip", "no default route")


def check_slash_in_dcs(debian, ours):
    assert debian.returncode == 0 and debian.files["15-main.yml"][0] == ""  # A23: 0-byte config, exit 0
    assert yml(ours)["etcd3"] == {"hosts": "http://10.0.0.5:2379"}


def check_etcd3_vip(debian, ours):
    assert debian.returncode == 0 and env_file(debian)["VIP_TYPE"] == "etcd3"  # rejected by vip-manager 1.0.2
    assert_refused(ours, "vip", "etcd3", "--enable-v2")


def check_zookeeper_vip(debian, ours):
    assert debian.returncode == 1 and debian.files["15-main.vip"][0] == ""  # leaves an empty .vip behind
    assert_refused(ours, "vip", "zookeeper")


def check_zookeeper_vip_written_by_trixie(debian, ours):
    assert debian.returncode == 0 and env_file(debian)["VIP_TYPE"] == "zookeeper"  # no vip-manager follows it
    assert_refused(ours, "vip", "zookeeper")


def check_vip_without_template(debian, ours):
    assert debian.returncode == 1 and "vip.in does not exist" in debian.stdout
    assert debian.files["15-main.vip"][0] == ""
    assert ours.returncode == 0 and env_file(ours)["VIP_TYPE"] == "etcd"


def check_ipv6_hostip(debian, ours):
    assert yml(debian)["restapi"]["listen"] == "fd00::11:8008"  # ambiguous host:port
    config = yml(ours)
    assert config["restapi"]["listen"] == config["restapi"]["connect_address"] == "[fd00::11]:8008"
    assert config["postgresql"]["connect_address"] == "[fd00::11]:5432"


def check_ipv6_only_host(debian, ours):
    assert yml(debian)["restapi"]["listen"] == ":8008"
    config = yml(ours)
    assert config["restapi"]["listen"] == "[fd00::11]:8008"
    assert config["bootstrap"]["dcs"]["postgresql"]["pg_hba"][-1].split()[3] == "fd00::11/64"


def check_ampersand_in_dcs(debian, ours):
    assert yml(debian)["etcd"]["username"] == "a@DCS_CONFIG@b"
    assert yml(ours)["etcd"]["username"] == "a&b"


def check_backslash_in_dcs(debian, ours):
    assert yml(debian)["etcd"]["username"] == "a\\b"
    assert yml(ours)["etcd"]["username"] == "a\\\\b"


def check_back_to_back_ports(debian, ours):
    assert yml(debian, "15-beta.yml")["postgresql"]["listen"] == "*:5432"  # clashes with 15-alpha
    assert yml(ours, "15-beta.yml")["postgresql"]["listen"] == "*:5433"


def check_datadir_without_placeholder(debian, ours):
    assert yml(debian)["postgresql"]["data_dir"] == "/srv/pgdata'/15/main"
    assert yml(ours)["postgresql"]["data_dir"] == "/srv/pgdata/15/main"


def check_datadir_pattern(debian, ours):
    assert yml(debian)["postgresql"]["data_dir"] == "/srv/15/main"  # not where pg_createcluster would put it
    assert yml(ours)["postgresql"]["data_dir"] == "/srv/main-15"


def check_vip_mixed_prefixes(debian, ours):
    assert debian.returncode == 0 and debian.files["15-main.vip"][0] == ""
    env = env_file(ours)
    assert (env["VIP_IFACE"], env["VIP_MASK"], env["VIP_NETMASK"]) == ("eth0", "24", "24")


def check_hostname_endpoint(debian, ours):
    assert debian.returncode == 1 and "not in 'http://1.2.3.4:1234" in debian.stdout
    assert env_file(ours)["VIP_ENDPOINT"] == "http://etcd1:2379"


def check_hosts_string_endpoint(debian, ours):
    assert debian.returncode == 1
    assert env_file(ours)["VIP_DCS_ENDPOINTS"] == "http://etcd1:2379,http://etcd2:2379"


def check_existing_config_kept(debian, ours):
    assert debian.returncode == 1 and "already exists" in debian.stdout
    assert_refused(ours, "already exists", "bootstrap.dcs.postgresql.pg_hba", "force=True")


def check_existing_port_kept(debian, ours):
    assert debian.returncode == 1 and "already exists" in debian.stdout
    assert ours.returncode == 0 and '"written": []' in ours.stdout
    assert yml(ours)["postgresql"]["listen"] == "*:5433"
    assert ours.files["15-main.yml"][1:] == ("postgres", "postgres", 0o660)  # ownership and mode repaired


def check_identical_file_kept(debian, ours):
    assert debian.returncode == 1 and "already exists" in debian.stdout
    assert ours.returncode == 0 and '"written": []' in ours.stdout
    assert '"diff"' not in ours.stdout and '"mode": {"old": "0644", "new": "0660"}' in ours.stdout
    assert ours.files["15-main.yml"][0] == OUR_DEFAULT_CONFIG  # not rewritten, only its mode repaired


def check_debian_file_needs_force(debian, ours):
    assert debian.returncode == 1 and "already exists" in debian.stdout
    assert_refused(
        ours,
        "bootstrap.pg_createcluster.command",
        "postgresql.pg_clonecluster.command",
        "bootstrap.dcs.postgresql.pg_hba",
        "postgresql.authentication.rewind",
        "force=True",
    )
    assert "postgresql.listen" not in ours.stdout  # only the deliberate differences, nothing else


def check_local_hostip_prefix(debian, ours):
    assert yml(debian)["bootstrap"]["dcs"]["postgresql"]["pg_hba"][-1].split()[3] == "10.0.0.11/24"
    config = yml(ours)
    assert config["bootstrap"]["dcs"]["postgresql"]["pg_hba"][-1].split()[3] == "192.168.5.5/16"
    assert config["restapi"]["listen"] == yml(debian)["restapi"]["listen"] == "192.168.5.5:8008"


def check_indented_comment_only(debian, ours):
    assert debian.returncode == 0 and "zookeeper" not in yml(debian) and "etcd" not in yml(debian)
    assert_refused(ours, "dcs", "DCS not configured")


def debian_config(host, args):
    """The config Debian's script writes for ``args`` on ``host``, to place as an existing file."""
    outcome = sandbox.run(host, _scratch(), ["pg_createconfig_patroni", *args])
    assert outcome.returncode == 0, outcome.stdout
    return next(text for name, (text, *_) in outcome.files.items() if name.endswith(".yml"))


_SCRATCH = []


def _scratch():
    import tempfile

    folder = tempfile.mkdtemp(prefix="pcd-")
    _SCRATCH.append(folder)
    return folder


def our_config(host, *args, **kwargs):
    """The config createconfig writes for ``args`` on ``host``, to place as an existing file."""
    outcome = sandbox.run(host, _scratch(), sandbox.module_argv("createconfig", *args, **kwargs))
    assert outcome.returncode == 0, outcome.stdout
    return next(text for name, (text, *_) in outcome.files.items() if name.endswith(".yml"))


BASE = sandbox.Host()
DEBIAN_DEFAULT_CONFIG = debian_config(BASE, ["15", "main"])
DEBIAN_5433_CONFIG = debian_config(BASE, ["--port=5433", "15", "main"])
DEBIAN_WIDE_CONFIG = debian_config(BASE, ["--network=10.0.0.0/16", "15", "main"])
OUR_DEFAULT_CONFIG = our_config(BASE, "15", "main")
OUR_5433_CONFIG = our_config(BASE, "15", "main", port=5433)
ALPHA_CONFIG = debian_config(BASE, ["15", "alpha"])

CASES = [
    Case("A1-A5 defaults, zookeeper dcs.yml", ["15", "main"]),
    Case("A6 etcd host", ["15", "main"], host=sandbox.Host(dcs_yml=ETCD)),
    Case(
        "A7 comments, etcd3 list, blank and indented comment",
        ["15", "main"],
        host=sandbox.Host(dcs_yml="# my dcs\netcd3:\n  hosts:\n  - 10.0.0.5:2379\n\n  - 10.0.0.6:2379\n   # later\n"),
    ),
    Case("A8 hostip", ["--hostip=192.168.1.50", "15", "main"], kwargs={"hostip": "192.168.1.50"}),
    Case("A9 network", ["--network=10.0.0.0/16", "15", "main"], kwargs={"network": "10.0.0.0/16"}),
    Case("A10 port", ["--port=5433", "15", "main"], kwargs={"port": 5433}),
    Case("A11 existing cluster port reused", ["15", "main"], host=sandbox.Host(clusters=(("15", "main", 5432),))),
    Case(
        "A11 existing cluster port given",
        ["--port=5432", "15", "main"],
        kwargs={"port": 5432},
        host=sandbox.Host(clusters=(("15", "main", 5432),)),
    ),
    Case("A12 next free port", ["15", "second"], host=sandbox.Host(clusters=TWO_CLUSTERS)),
    Case(
        "A13 port clash",
        ["--port=5433", "15", "second"],
        kwargs={"port": 5433},
        host=sandbox.Host(clusters=TWO_CLUSTERS),
        expect="both_fail",
    ),
    Case(
        "A13 port substring is no clash",
        ["--port=543", "15", "second"],
        kwargs={"port": 543},
        host=sandbox.Host(clusters=TWO_CLUSTERS),
        expect="deliberate",
        check=check_exact_port_clash,
    ),
    Case("A14 version 9.6", ["9.6", "main"], host=sandbox.Host(versions=("9.6",))),
    Case("A15 version 9", ["9", "main"], expect="both_fail"),
    Case("A15 version without initdb", ["16", "main"], expect="both_fail"),
    Case(
        "A16 options after positionals",
        ["15", "main", "--port=5433"],
        ours=("15", "main"),
        kwargs={"port": 5433},
        expect="deliberate",
        check=check_options_anywhere,
    ),
    Case(
        "A17 existing different config kept",
        ["15", "main"],
        host=sandbox.Host(files={"15-main.yml": DEBIAN_WIDE_CONFIG}),
        expect="deliberate",
        check=check_existing_config_kept,
    ),
    Case(
        "A17 force regenerates",
        ["--force", "15", "main"],
        kwargs={"force": True},
        host=sandbox.Host(files={"15-main.yml": DEBIAN_WIDE_CONFIG}),
    ),
    Case(
        "existing config's port is kept",
        ["15", "main"],
        host=sandbox.Host(files={"15-main.yml": OUR_5433_CONFIG}),
        expect="deliberate",
        check=check_existing_port_kept,
    ),
    Case(
        "A17 identical config left alone",
        ["15", "main"],
        host=sandbox.Host(files={"15-main.yml": OUR_DEFAULT_CONFIG}),
        expect="deliberate",
        check=check_identical_file_kept,
    ),
    Case(
        "A17 config made by Debian's tool needs force",
        ["15", "main"],
        host=sandbox.Host(files={"15-main.yml": DEBIAN_DEFAULT_CONFIG}),
        expect="deliberate",
        check=check_debian_file_needs_force,
    ),
    Case(
        "A18 dcs.yml only comments",
        ["15", "main"],
        host=sandbox.Host(dcs_yml="# nothing\n\n#etcd:\n"),
        expect="both_fail",
    ),
    Case("A18 dcs.yml missing", ["15", "main"], host=sandbox.Host(dcs_yml=None), expect="both_fail"),
    Case(
        "A19 createcluster.conf data_directory",
        ["15", "main"],
        host=sandbox.Host(createcluster_conf="data_directory = '/srv/pg/%v/%c'\n"),
    ),
    Case("A20 dashed cluster name", ["15", "my-app"]),
    Case(
        "A21 FQDN host in a /16",
        ["15", "main"],
        host=sandbox.Host(hostname="db2.example.com", addresses=("172.16.5.20/16",), gateway="172.16.0.1"),
    ),
    Case(
        "A21 numeric host name",
        ["15", "main"],
        host=sandbox.Host(hostname="12345"),
        expect="deliberate",
        check=check_numeric_name,
    ),
    Case(
        "A22 no default route",
        ["15", "main"],
        host=sandbox.Host(gateway=None),
        expect="deliberate",
        check=check_no_route,
    ),
    Case(
        "A23 slash in dcs.yml",
        ["15", "main"],
        host=sandbox.Host(dcs_yml="etcd3:\n  hosts: http://10.0.0.5:2379\n"),
        expect="deliberate",
        check=check_slash_in_dcs,
    ),
    Case(
        "A24 vip with etcd",
        ["--vip=10.0.0.100", "15", "main"],
        kwargs={"vip": "10.0.0.100"},
        host=sandbox.Host(dcs_yml=ETCD),
    ),
    Case(
        "A25 vip with etcd3",
        ["--vip=10.0.0.100", "15", "main"],
        kwargs={"vip": "10.0.0.100"},
        host=sandbox.Host(dcs_yml=ETCD3_LIST),
        expect="deliberate",
        check=check_etcd3_vip,
    ),
    Case(
        "A25 vip with zookeeper",
        ["--vip=10.0.0.100", "15", "main"],
        kwargs={"vip": "10.0.0.100"},
        expect="deliberate",
        check=check_zookeeper_vip,
        changed={"trixie": ("deliberate", check_zookeeper_vip_written_by_trixie)},
    ),
    Case(
        "A26 vip without vip.in",
        ["--vip=10.0.0.100", "15", "main"],
        kwargs={"vip": "10.0.0.100"},
        host=sandbox.Host(dcs_yml=ETCD, vip_in=False),
        expect="deliberate",
        check=check_vip_without_template,
    ),
    # ---- beyond the acceptance examples
    Case(
        "vip with explicit endpoint",
        ["--vip=10.0.0.100", "--endpoint=http://10.0.0.9:2379,https://10.0.0.8:2379", "15", "main"],
        kwargs={"vip": "10.0.0.100", "endpoint": "http://10.0.0.9:2379,https://10.0.0.8:2379"},
        host=sandbox.Host(dcs_yml=ETCD),
    ),
    Case(
        "vip and force replace both files",
        ["--force", "--vip=10.0.0.100", "15", "main"],
        kwargs={"vip": "10.0.0.100", "force": True},
        host=sandbox.Host(dcs_yml=ETCD, files={"15-main.yml": DEBIAN_WIDE_CONFIG, "15-main.vip": 'VIP_IP="1.2.3.4"\n'}),
    ),
    Case(
        "vip endpoint with a host name",
        ["--vip=10.0.0.100", "--endpoint=http://etcd1:2379", "15", "main"],
        kwargs={"vip": "10.0.0.100", "endpoint": "http://etcd1:2379"},
        host=sandbox.Host(dcs_yml=ETCD),
        expect="deliberate",
        check=check_hostname_endpoint,
        changed={"trixie": ("same", None)},  # trixie's script dropped its IPv4-only endpoint check
    ),
    Case(
        "vip endpoints from a hosts string with names",
        ["--vip=10.0.0.100", "15", "main"],
        kwargs={"vip": "10.0.0.100"},
        host=sandbox.Host(dcs_yml="etcd:\n  hosts: etcd1:2379,etcd2:2379\n"),
        expect="deliberate",
        check=check_hosts_string_endpoint,
    ),
    Case(
        "vip on an interface with mixed prefixes",
        ["--vip=10.0.0.100", "15", "main"],
        kwargs={"vip": "10.0.0.100"},
        host=sandbox.Host(dcs_yml=ETCD, addresses=("10.0.0.11/24", "192.168.7.1/28")),
        expect="deliberate",
        check=check_vip_mixed_prefixes,
    ),
    Case(
        "secondary address is ignored",
        ["15", "main"],
        host=sandbox.Host(addresses=("10.0.0.11/24", "10.0.0.12/24")),
    ),
    Case(
        "hostip on a second local network",
        ["--hostip=192.168.5.5", "15", "main"],
        kwargs={"hostip": "192.168.5.5"},
        host=sandbox.Host(addresses=("10.0.0.11/24", "192.168.5.5/16")),
        expect="deliberate",
        check=check_local_hostip_prefix,
    ),
    Case("on-link default route", ["15", "main"], host=sandbox.Host(gateway="onlink")),
    Case(
        "IPv6 host address given",
        ["--hostip=fd00::11", "--network=fd00::/64", "15", "main"],
        kwargs={"hostip": "fd00::11", "network": "fd00::/64"},
        expect="deliberate",
        check=check_ipv6_hostip,
    ),
    Case(
        "IPv6-only host",
        ["15", "main"],
        host=sandbox.Host(addresses=("fd00::11/64",), gateway="fd00::1"),
        expect="deliberate",
        check=check_ipv6_only_host,
    ),
    Case("IPv6 network in pg_hba", ["--network=fd00::/64", "15", "main"], kwargs={"network": "fd00::/64"}),
    Case(
        "tags and log travel with the DCS",
        ["15", "main"],
        host=sandbox.Host(dcs_yml=ETCD + "tags:\n  nofailover: false\nlog:\n  level: INFO\n"),
    ),
    Case(
        "dcs.yml repeating restapi: the generated one wins",
        ["15", "main"],
        host=sandbox.Host(dcs_yml=ETCD + "restapi:\n  listen: 1.2.3.4:1\n"),
    ),
    Case(
        "ampersand in dcs.yml",
        ["15", "main"],
        host=sandbox.Host(dcs_yml="etcd:\n  host: 10.0.0.5:2379\n  username: a&b\n"),
        expect="deliberate",
        check=check_ampersand_in_dcs,
    ),
    Case(
        "backslash in dcs.yml",
        ["15", "main"],
        host=sandbox.Host(dcs_yml='etcd:\n  host: 10.0.0.5:2379\n  username: "a\\\\\\\\b"\n'),
        expect="deliberate",
        check=check_backslash_in_dcs,
    ),
    Case(
        "dcs.yml of indented comments only",
        ["15", "main"],
        host=sandbox.Host(dcs_yml="  # etcd:\n  #   host: 10.0.0.5:2379\n"),
        expect="deliberate",
        check=check_indented_comment_only,
    ),
    Case(
        "two new clusters back to back",
        ["15", "beta"],
        host=sandbox.Host(files={"15-alpha.yml": ALPHA_CONFIG}),
        expect="deliberate",
        check=check_back_to_back_ports,
    ),
    Case(
        "data_directory without placeholders",
        ["15", "main"],
        host=sandbox.Host(createcluster_conf="data_directory = '/srv/pgdata'\n"),
        expect="deliberate",
        check=check_datadir_without_placeholder,
    ),
    Case(
        "data_directory with another pattern",
        ["15", "main"],
        host=sandbox.Host(createcluster_conf="data_directory = '/srv/%c-%v'\n"),
        expect="deliberate",
        check=check_datadir_pattern,
    ),
    Case(
        "commented data_directory",
        ["15", "main"],
        host=sandbox.Host(createcluster_conf="#data_directory = '/srv/pg/%v/%c'\ncreate_main_cluster = false\n"),
    ),
    Case(
        "cluster of another version next to 15",
        ["14", "main"],
        host=sandbox.Host(versions=("14", "15"), clusters=(("15", "main", 5432),)),
    ),
]


RELEASES = list(machines.RELEASES)


@pytest.fixture(scope="session")
def debian_trees(tmp_path_factory):
    """release -> folder of its patroni and vip-manager packages extracted (None: this host's, as installed)."""
    trees = {}

    def tree(release):
        if release == machines.host_release():
            return None
        if release not in machines.releases():
            pytest.skip(f"{release} is not among PATRONI_DEBIAN_RELEASES")
        if release not in trees:
            trees[release] = tmp_path_factory.mktemp(f"debian-{release}")
            debs = pathlib.Path(machines.image(release, bare=True), machines.LOCAL_APT.lstrip("/"))
            for package in ("patroni", "vip-manager"):
                (deb,) = debs.glob(f"{package}_*.deb")
                subprocess.run(["dpkg-deb", "-x", str(deb), str(trees[release])], check=True)
        return trees[release]

    return tree


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_createconfig_matches_debian(case, release, debian_trees, tmp_path):
    host = dataclasses.replace(case.host, debian_tree=debian_trees(release))
    debian = sandbox.run(host, tmp_path / "debian", ["pg_createconfig_patroni", *case.debian])
    ours_args = case.ours or tuple(case.debian[-2:])
    ours = sandbox.run(host, tmp_path / "ours", sandbox.module_argv("createconfig", *ours_args, **case.kwargs))
    expect, check = case.changed.get(release, (case.expect, case.check))
    if expect == "same":
        assert_same(debian, ours)
    elif expect == "both_fail":
        assert debian.returncode == 1, debian.stdout
        assert_refused(ours)
    else:
        check(debian, ours)


def test_acceptance_values_of_the_default_run(tmp_path):
    """A1-A5 spelled out on our side, so a shared mistake with Debian's output could not pass unseen."""
    ours = sandbox.run(sandbox.Host(), tmp_path, sandbox.module_argv("createconfig", "15", "main"))
    config = yml(ours)
    assert ours.files["15-main.yml"][1:] == ("postgres", "postgres", 0o660)
    assert (config["scope"], config["namespace"], config["name"]) == ("15-main", "/postgresql-common/", "pg1")
    assert config["zookeeper"] == {"hosts": "127.0.0.1:2181"}
    assert config["restapi"] == {"listen": "10.0.0.11:8008", "connect_address": "10.0.0.11:8008"}
    pg = config["postgresql"]
    assert (pg["listen"], pg["connect_address"]) == ("*:5432", "10.0.0.11:5432")
    assert pg["data_dir"] == "/var/lib/postgresql/15/main"
    assert pg["pgpass"] == "/var/lib/postgresql/15-main.pgpass"
    assert pg["parameters"]["log_filename"] == "postgresql-15-main.log"
    hba = config["bootstrap"]["dcs"]["postgresql"]["pg_hba"]
    assert len(hba) == 8 and hba[-1].split() == ["host", "replication", "all", "10.0.0.11/24", "md5"]
    assert hba[3].split() == ["host", "postgres", "replicator", "10.0.0.11/24", "md5"]  # pg_rewind's way in
    assert pg["authentication"]["rewind"] == pg["authentication"]["replication"]
    assert pg["authentication"]["superuser"] == {"username": "postgres"}  # peer authentication, as Debian's
    assert "Debian's default password" in ours.stdout


def test_debian_conffiles_are_pristine():
    """The differential baseline is the package as shipped: dpkg must see no change to its files."""
    proc = subprocess.run(["dpkg", "--verify", "patroni", "vip-manager"], capture_output=True, text=True, check=False)
    assert proc.stdout.strip() == "", proc.stdout
