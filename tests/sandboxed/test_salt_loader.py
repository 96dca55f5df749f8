"""The execution module through real salt-call, both ways of installing it (DESIGN.md §2).

Each call runs on a sandboxed host (tests/sandbox.py), so the files it writes land in a case folder.
"""

import json
import pathlib
import sys

import pytest
import sandbox
import yaml


VENV_BIN = pathlib.Path(sys.executable).parent
WITHOUT_ENTRY_POINT = pathlib.Path(__file__).with_name("salt_call_without_entry_point.py")
PILLAR = {
    "patroni": {
        "dcs": {"etcd3": {"hosts": ["10.0.0.5:2379", "10.0.0.6:2379"]}},
        "clusters": {
            "15-main": {
                "network": "10.0.0.0/24",
                "authentication": {
                    "replication": {"username": "replicator", "password": "S3cret-from-pillar"},
                    "rewind": {"username": "rewinder", "password": "Rew1nd-from-pillar"},
                },
                "program": str(sandbox.REPO / "_modules" / "patroni_debian.py"),
                "timing": "fast",
                "dynamic": {"ttl": 21, "postgresql": {"parameters": {"max_connections": 200}}},
            }
        },
    }
}


@pytest.fixture
def minion_dir(tmp_path):
    """A masterless minion configuration with the repository as file root and a pillar for 15-main."""
    config = tmp_path / "conf"
    pillar = tmp_path / "pillar"
    config.mkdir()
    pillar.mkdir()
    (pillar / "top.sls").write_text("base:\n  '*':\n    - patroni\n")
    (pillar / "patroni.sls").write_text(yaml.safe_dump(PILLAR))
    minion = {
        "id": "pg1",
        "file_client": "local",
        "root_dir": str(tmp_path / "root"),
        "log_file": str(tmp_path / "minion.log"),
        "file_roots": {"base": [str(sandbox.served_repository(tmp_path / "repository"))]},
        "pillar_roots": {"base": [str(pillar)]},
        "enable_fqdns_grains": False,
    }
    (config / "minion").write_text(yaml.safe_dump(minion))
    return config


def salt_call(launcher, config, *args):
    return launcher + ["--local", "-c", str(config), "--out=json", "--retcode-passthrough", *args]


def test_entry_point_way(minion_dir, tmp_path):
    """pip install -e . is enough: no sync, pillar supplies the DCS and the password, which never shows."""
    launcher = [str(VENV_BIN / "salt-call")]
    outcome = sandbox.run(
        sandbox.Host(dcs_yml=None),
        tmp_path / "host",
        salt_call(launcher, minion_dir, "patroni_debian.createconfig", "15", "main"),
    )
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    result = json.loads(outcome.stdout)["local"]
    assert (
        result["written"] == ["/etc/patroni/15-main.yml"] and result["port"] == 5432 and result["restapi_port"] == 8008
    )
    # the one thing a pillar without patroni:tls and a REST API role is told
    assert len(result["warnings"]) == 1 and "the REST API (" in result["warnings"][0], result["warnings"]
    assert "has no authentication" in result["warnings"][0]
    assert "S3cret-from-pillar" not in outcome.stdout + outcome.stderr
    assert "Rew1nd-from-pillar" not in outcome.stdout + outcome.stderr

    text, owner, group, mode = outcome.files["15-main.yml"]
    config = yaml.safe_load(text)
    assert (owner, group, mode) == ("postgres", "postgres", 0o660)
    assert config["etcd3"] == PILLAR["patroni"]["dcs"]["etcd3"]
    assert config["postgresql"]["authentication"]["replication"]["password"] == "S3cret-from-pillar"
    # the fast profile's timing, with pillar's dynamic ttl over it
    assert {key: config["bootstrap"]["dcs"][key] for key in ("ttl", "loop_wait", "retry_timeout")} == {
        "ttl": 21,
        "loop_wait": 5,
        "retry_timeout": 5,
    }
    assert config["bootstrap"]["dcs"]["postgresql"]["parameters"] == {"max_connections": 200}
    hba = config["bootstrap"]["dcs"]["postgresql"]["pg_hba"]
    assert hba[-1].split()[3] == "10.0.0.0/24"
    # rewind credentials from pillar: pg_rewind is used, and its role may reach database postgres from the network
    assert config["bootstrap"]["dcs"]["postgresql"]["use_pg_rewind"] is True
    assert ["host", "postgres", "rewinder", "10.0.0.0/24", "md5"] in [line.split() for line in hba]
    program = PILLAR["patroni"]["clusters"]["15-main"]["program"]
    assert config["postgresql"]["pg_clonecluster"]["command"] == f"/usr/bin/python3 {program} clone"


def test_formula_way_needs_sync_and_then_works(minion_dir, tmp_path):
    """Repository as file root, then saltutil.sync_all: the module is missing before and present after."""
    launcher = [sys.executable, str(WITHOUT_ENTRY_POINT)]
    host = sandbox.Host(dcs_yml=None)
    before = sandbox.run(
        host, tmp_path / "before", salt_call(launcher, minion_dir, "patroni_debian.render_config", "15", "main")
    )
    assert before.returncode != 0 and "is not available" in before.stdout + before.stderr

    sync = sandbox.run(host, tmp_path / "sync", salt_call(launcher, minion_dir, "saltutil.sync_all"))
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert "modules.patroni_debian" in json.loads(sync.stdout)["local"]["modules"]

    first = sandbox.run(
        host, tmp_path / "after", salt_call(launcher, minion_dir, "patroni_debian.createconfig", "15", "main")
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout)["local"]["written"] == ["/etc/patroni/15-main.yml"]
    assert yaml.safe_load(first.files["15-main.yml"][0])["etcd3"] == PILLAR["patroni"]["dcs"]["etcd3"]


def test_second_run_changes_nothing(minion_dir, tmp_path):
    """createconfig twice on one host: the second run writes nothing and reports no change."""
    launcher = [str(VENV_BIN / "salt-call")]
    call = salt_call(launcher, minion_dir, "patroni_debian.createconfig", "15", "main")
    script = ["/bin/sh", "-c", '"$@" > /dev/null && exec "$@"', "twice", *call]
    outcome = sandbox.run(sandbox.Host(dcs_yml=None), tmp_path, script)
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    result = json.loads(outcome.stdout)["local"]
    assert result["written"] == [] and result["changes"] == {}
    assert "15-main.yml" in outcome.files  # written by the first run, untouched by the second


def test_render_config_masks_secrets_and_predicts(minion_dir, tmp_path):
    launcher = [str(VENV_BIN / "salt-call")]
    outcome = sandbox.run(
        sandbox.Host(dcs_yml=None),
        tmp_path,
        salt_call(launcher, minion_dir, "patroni_debian.render_config", "15", "main", "port=5433"),
    )
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    result = json.loads(outcome.stdout)["local"]
    assert outcome.files == {}
    assert result["changes"] == {"/etc/patroni/15-main.yml": {"created": True}}
    assert result["config"]["postgresql"]["authentication"]["replication"]["password"] == "********"
    assert result["config"]["postgresql"]["listen"] == "*:5433"
    assert "S3cret-from-pillar" not in outcome.stdout + outcome.stderr


@pytest.mark.parametrize("way", ["entry point", "file roots"])
def test_operations_and_states_load_both_ways(minion_dir, tmp_path, way):
    """The operations files join patroni_debian (their sibling imports work), and the state module loads."""
    launcher = [str(VENV_BIN / "salt-call")] if way == "entry point" else [sys.executable, str(WITHOUT_ENTRY_POINT)]
    host = sandbox.Host(dcs_yml=None, clusters=(("15", "other", 5433),))
    if way == "file roots":
        sync = sandbox.run(host, tmp_path / "sync", salt_call(launcher, minion_dir, "saltutil.sync_all"))
        synced = json.loads(sync.stdout)["local"]
        assert "modules.patroni_debian_ops" in synced["modules"] and "states.patroni_debian" in synced["states"]
        for name in ("render", "config", "day2"):
            assert f"modules.patroni_debian_{name}" in synced["modules"], synced
    listing = sandbox.run(
        host, tmp_path / "list", salt_call(launcher, minion_dir, "sys.list_functions", "patroni_debian")
    )
    functions = json.loads(listing.stdout)["local"]
    for name in ("createconfig", "wait_members", "status", "switchover", "failover", "restart", "reload", "reinit"):
        assert f"patroni_debian.{name}" in functions, functions  # all three files join patroni_debian
    listed = sandbox.run(host, tmp_path / "ops", salt_call(launcher, minion_dir, "patroni_debian.clusters"))
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert json.loads(listed.stdout)["local"] == {
        "15/other": {"port": 5433, "status": "online", "datadir": "/var/lib/postgresql/15/other"}
    }
    state = ["state.single", "patroni_debian.configured", "name=15-main", "version=15", "cluster=main", "test=True"]
    predicted = sandbox.run(host, tmp_path / "state", salt_call(launcher, minion_dir, *state))
    assert predicted.files == {} and "S3cret-from-pillar" not in predicted.stdout
    (result,) = json.loads(predicted.stdout)["local"].values()
    assert result["result"] is None and result["changes"] == {"/etc/patroni/15-main.yml": {"created": True}}, result


LOADERS_SCRIPT = """
import json, sys
import salt.config
from saltfactories.utils.functional import Loaders

loaders = Loaders(salt.config.minion_config(sys.argv[1]))
calls = {}


def count(frame, event, arg):  # an observer of the real calls, not a stand-in for any
    if event == "call" and frame.f_code.co_name in ("_render", "_checked_pillar"):
        calls[frame.f_code.co_name] = calls.get(frame.f_code.co_name, 0) + 1


sys.setprofile(count)
runs = []
for test in json.loads(sys.argv[2]):
    calls.clear()
    ret = loaders.states.patroni_debian.configured(name="15-main", version="15", cluster="main", test=test)
    runs.append({"result": ret.result, "changes": ret.changes, "comment": ret.comment, "renders": calls.get("_render")})
calls.clear()
loaders.opts["jid"] = "20261202221500000000"  # as in a state run: what map.jinja asks is checked once per job
asked = [loaders.modules.patroni_debian.formula_clusters() for sls_file in range(3)]
sys.setprofile(None)
print(json.dumps({"runs": runs, "pillar_checks": calls.get("_checked_pillar"), "asked": asked}))
"""


@pytest.mark.parametrize("testmode", [True, False])
def test_configured_through_salt_factories_loaders(minion_dir, tmp_path, testmode):
    """The state through pytest-salt-factories' Loaders (the real loader, the entry point's modules), on a
    sandboxed host: a prediction changes nothing; acting writes the file; the next run changes nothing."""
    runs = [True, False, True] if testmode else [False, False, True]
    argv = [sys.executable, "-c", LOADERS_SCRIPT, str(minion_dir / "minion"), json.dumps(runs)]
    outcome = sandbox.run(sandbox.Host(dcs_yml=None), tmp_path, argv)
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    answer = json.loads(outcome.stdout.splitlines()[-1])
    first, *rest = answer["runs"]
    assert all(run["renders"] == 1 for run in answer["runs"]), answer["runs"]  # one render per cluster per run
    assert answer["pillar_checks"] == 1 and answer["asked"][0]["valid"], answer  # once per job, however often asked
    assert answer["asked"][0] == answer["asked"][2] and answer["asked"][0]["clusters"][0]["scope"] == "15-main"
    assert (first["result"] is None) is testmode and first["changes"] == {"/etc/patroni/15-main.yml": {"created": True}}
    if testmode:
        acted, *rest = rest
        assert acted["result"] is True and acted["changes"] == first["changes"]  # acting does what was predicted
    assert rest and all(run["result"] is True and run["changes"] == {} for run in rest), rest
    assert set(outcome.files) == {"15-main.yml"} and outcome.files["15-main.yml"][1:] == ("postgres", "postgres", 0o660)
    assert "S3cret-from-pillar" not in outcome.stdout


FOREIGN_SCRIPT = """
import json, sys
import salt.config
from saltfactories.utils.functional import Loaders

loaders = Loaders(salt.config.minion_config(sys.argv[1]))
runs = []
for replace in (False, True, False):
    ret = loaders.states.patroni_debian.configured(name="15-main", version="15", cluster="main", replace=replace)
    runs.append({"result": ret.result, "changes": ret.changes, "comment": ret.comment})
print(json.dumps(runs))
"""


def test_configured_leaves_a_config_it_did_not_write_until_told_to_replace_it(minion_dir, tmp_path):
    """A config of someone else's at the path: refused, naming the file and what differs, the file untouched;
    with replace it is written (and read back as planned); the next run changes nothing."""
    host = sandbox.Host(dcs_yml=None, files={"15-main.yml": "scope: theirs\n"})
    argv = [sys.executable, "-c", FOREIGN_SCRIPT, str(minion_dir / "minion")]
    outcome = sandbox.run(host, tmp_path, argv)
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    refused, replaced, again = json.loads(outcome.stdout.splitlines()[-1])
    assert refused["result"] is False and refused["changes"] == {}, refused
    comment = refused["comment"]
    assert "15-main.yml (" in comment and "scope" in comment and "replace: True" in comment, comment
    assert replaced["result"] is True and "/etc/patroni/15-main.yml" in replaced["changes"], replaced
    assert again["result"] is True and again["changes"] == {}, again
    assert outcome.files["15-main.yml"][1:] == ("postgres", "postgres", 0o660)
    assert "S3cret-from-pillar" not in outcome.stdout
