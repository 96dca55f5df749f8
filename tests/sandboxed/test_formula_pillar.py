"""The formula rendered by real salt-call with a hostile or mistyped pillar (issue 18, classes 3 and 12): a cluster
key never reaches an sls file's text unless it validated, so it cannot inject a state or break the YAML; a bad
pillar renders to the validator's state, which fails naming the problem, and to nothing of any cluster; a package
list given as a string is never installed letter by letter. On sandboxed hosts (tests/sandbox.py).
"""

import json
import sys

import pytest
import sandbox
import yaml


SALT_CALL = str(sandbox.pathlib.Path(sys.executable).parent / "salt-call")
DCS = "dcs: {etcd3: {hosts: ['10.0.0.5:2379']}}"
AUTH = "{authentication: {replication: {password: Formula-Secret-9}}}"
# always there, whatever the pillar: what the formula is made of before any cluster
SKELETON = {
    "Pillar patroni is valid",
    "Pillar etcd is valid",  # salt/etcd, included: on a minion pillar etcd declares no member on, only its check
    "Debian's automatic main cluster stays off",
    "PostgreSQL, Patroni and the DCS client are installed",
    "The program Patroni runs is installed",
}
INJECTED = "Injected state"
# pillar patroni as YAML text (so keys may be integers or hold line breaks), words the validator's comment names
HOSTILE = {
    "key with a line break and a state": (
        f'patroni:\n  {DCS}\n  clusters:\n    "15-main\\n{INJECTED}:\\n  test.fail_without_changes: []\\n": {AUTH}\n',
        "not a valid cluster name",
    ),
    "integer key": (f"patroni:\n  {DCS}\n  clusters:\n    15: {AUTH}\n", "15 is not <version>-<cluster>"),
    "key with a quote": (f"patroni:\n  {DCS}\n  clusters:\n    '15-ma\"in': {AUTH}\n", "not a valid cluster name"),
    "key with a trailing space": (f"patroni:\n  {DCS}\n  clusters:\n    '15-main ': {AUTH}\n", "'main '"),
    "lookup packages a string": (
        f"patroni:\n  {DCS}\n  lookup: {{packages: patroni}}\n  clusters:\n    15-main: {AUTH}\n",
        "lookup:packages: 'patroni' is not a list of Debian package names",
    ),
    "etcd member with a line break and a state": (
        f"patroni:\n  clusters:\n    15-main: {AUTH}\netcd:\n  cluster: lab\n  members:\n"
        f'    "pg1\\n{INJECTED}:\\n  test.fail_without_changes: []\\n": 10.0.0.11\n',
        "is not a minion id",
    ),
    "top-level dsc": (
        f"patroni:\n  dsc: {{etcd3: {{hosts: ['10.0.0.5:2379']}}}}\n  clusters:\n    15-main: {AUTH}\n",
        "unknown key 'dsc' (did you mean 'dcs'?)",
    ),
}
GOOD = f"patroni:\n  {DCS}\n  clusters:\n    15-main: {AUTH}\n"


def minion(tmp_path, pillar_text, formula=sandbox.REPO / "salt"):
    """A masterless minion's configuration: ``pillar_text`` as pillar ``patroni``, the formula from ``formula``."""
    config, pillar = tmp_path / "conf", tmp_path / "pillar"
    config.mkdir(parents=True)
    pillar.mkdir()
    (pillar / "top.sls").write_text("base:\n  '*':\n    - patroni\n")
    (pillar / "patroni.sls").write_text(pillar_text)
    settings = {
        "id": "pg1",
        "file_client": "local",
        "root_dir": str(tmp_path / "root"),
        "log_file": str(tmp_path / "minion.log"),
        "file_roots": {"base": [str(formula), str(sandbox.served_repository(tmp_path / "repository"))]},
        "pillar_roots": {"base": [str(pillar)]},
        "enable_fqdns_grains": False,
    }
    (config / "minion").write_text(yaml.safe_dump(settings))
    return config


def salt_call(tmp_path, pillar_text, *args):
    config = minion(tmp_path, pillar_text)
    argv = [SALT_CALL, "--local", "-c", str(config), "--out=json", *args]
    outcome = sandbox.run(sandbox.Host(dcs_yml=None), tmp_path / "host", argv)
    assert "Traceback" not in outcome.stderr, outcome.stderr
    return outcome, json.loads(outcome.stdout or "{}").get("local")


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_pillar_renders_only_the_validator_which_names_the_problem(case, tmp_path):
    text, words = HOSTILE[case]
    outcome, high = salt_call(tmp_path / "show", text, "state.show_sls", "patroni")
    assert isinstance(high, dict), outcome.stdout + outcome.stderr  # rendered: no YAML error, no Jinja traceback
    assert set(high) == SKELETON, sorted(high)
    packages = next(
        arg["pkgs"] for arg in high["PostgreSQL, Patroni and the DCS client are installed"]["pkg"] if "pkgs" in arg
    )
    assert packages == ["patroni"]

    outcome, states = salt_call(tmp_path / "validate", text, "state.sls", "patroni.validate")
    assert isinstance(states, dict) and len(states) == 2, outcome.stdout
    state = next(state for state in states.values() if state["__id__"] == "Pillar patroni is valid")
    assert state["result"] is False and words in state["comment"], state
    assert "Formula-Secret-9" not in outcome.stdout + outcome.stderr


def test_a_good_pillar_renders_its_cluster(tmp_path):
    """The control: the same rendering with a valid pillar has the cluster's states, quoted values included."""
    outcome, high = salt_call(tmp_path, GOOD, "state.show_sls", "patroni")
    assert isinstance(high, dict), outcome.stdout
    assert SKELETON < set(high) and "Patroni 15-main is configured" in high
    configured = high["Patroni 15-main is configured"]["patroni_debian"]
    assert {"version": "15"} in configured and {"cluster": "main"} in configured


def test_unreadable_defaults_fail_the_render_naming_the_file_and_quoting_nothing(tmp_path):
    """A formula copy whose defaults.yaml is not YAML: the render stops with the file's name, and the parser's quote
    of the offending line (which could hold a value a user pasted there) is masked: by the YAML reader's scrub and,
    behind it, by the module's error wrapper, either of which suffices. (Salt's own log on stderr carries the
    render's traceback, as for any error raised inside Jinja; the job's answer does not.)"""
    formula = tmp_path / "formula" / "patroni"
    formula.mkdir(parents=True)
    for entry in (sandbox.REPO / "salt" / "patroni").iterdir():
        if entry.name != "defaults.yaml":
            (formula / entry.name).symlink_to(entry)
    (formula / "defaults.yaml").write_text("patroni:\n  packages: [patroni\n  password: Defaults-Secret-7\n")
    config = minion(tmp_path, GOOD, formula=formula.parent)
    argv = [SALT_CALL, "--local", "-c", str(config), "--out=json", "state.show_sls", "patroni"]
    outcome = sandbox.run(sandbox.Host(dcs_yml=None), tmp_path / "host", argv)
    errors = json.loads(outcome.stdout)["local"]
    assert outcome.returncode != 0 and isinstance(errors, list) and "Traceback" not in outcome.stdout, outcome.stdout
    assert all("the formula's defaults salt://patroni/defaults.yaml is not valid YAML" in error for error in errors)
    assert "Defaults-Secret-7" not in outcome.stdout + outcome.stderr
