"""The orchestration's targets as Salt's own compound matcher reads them on a minion: the step that runs etcd on
hosts of its own must match those and no Patroni member (it once matched the bootstrap member, whose two state
runs at once then refused each other: Salt's matcher needs spaces inside parentheses)."""

import importlib.util
import json
import pathlib
import re
import sys

import jinja2
import pytest
import salt.config
import salt.loader

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent.parent / "_modules"))

import patroni_debian_ops as ops  # noqa: E402

ORCH = pathlib.Path(__file__).resolve().parent.parent.parent / "salt" / "orch" / "patroni.sls"


def target(name, orch=ORCH, pillar=None, opts=None):
    """The orchestration's ``name`` target, rendered from its own ``set`` lines with the orchestration's ``pillar``
    (and the master's ``opts``: ``test`` in a dry run)."""
    text = orch.read_text()
    names = "members|bootstrap|unsettled|early|etcd_hosts|repository|everyone|roles|declares|scope"
    sets = "".join(match.group(0) for match in re.finditer(r"\{%-\s*set (?:" + names + r")\b.*?%\}", text, re.S))
    return jinja2.Environment().from_string(sets + "{{ " + name + " }}").render(pillar=pillar or {}, opts=opts or {})


def matches(tgt, grains, pillar):
    opts = salt.config.minion_config(None)
    opts.update(id="m1", grains={"id": "m1", **grains}, pillar=pillar)
    return salt.loader.matchers(opts)["compound_match.match"](tgt, opts=opts)


ETCD = {"etcd": {"cluster": "c", "members": {"m1": "10.0.0.11"}}}


@pytest.mark.parametrize(
    "grains, pillar, expected",
    [
        ({}, ETCD, True),  # an etcd host of its own
        ({"patroni_role": "bootstrap"}, ETCD, False),  # a member by grain, etcd co-located
        ({}, {**ETCD, "patroni": {"role": "replica"}}, False),  # a member by pillar
        ({"patroni_role": "bootstrap"}, {}, False),  # a member without pillar etcd
        ({}, {}, False),  # neither
    ],
)
def test_the_etcd_hosts_step_matches_etcd_hosts_of_their_own_only(grains, pillar, expected):
    assert matches(target("etcd_hosts"), grains, pillar) is expected


def test_everyone_includes_etcd_hosts_and_members():
    assert matches(target("everyone"), {}, ETCD) and matches(target("everyone"), {"patroni_role": "replica"}, {})
    assert not matches(target("everyone"), {}, {})


def test_the_repository_host_is_everyone_s_and_the_repository_steps_but_no_member():
    backup = {"patroni": {"role": "backup"}}
    assert matches(target("repository"), {}, backup) and matches(target("everyone"), {}, backup)
    assert not matches(target("members"), {}, backup)
    assert not matches(target("repository"), {}, {"patroni": {"role": "replica"}})


def test_the_restore_stops_members_restores_on_the_bootstrap_member_and_creates_the_stanza_on_the_repository_host():
    restore, request = ORCH.with_name("patroni_restore.sls"), {"cluster": "15-copy"}
    backup = {"patroni": {"role": "backup"}}
    replica = {"patroni": {"role": "replica", "clusters": {"15-main": {}, "15-copy": {}}}}
    beside = {"patroni": {"role": "replica", "clusters": {"15-main": {}}}}  # a member of another cluster only

    def restoring(name, grains, pillar):
        return matches(target(name, restore, request), grains, pillar)

    assert restoring("members", {}, replica) and not restoring("members", {}, backup)
    assert not restoring("members", {}, beside) and restoring("roles", {}, beside)  # asked by the plan, then not
    assert restoring("bootstrap", {"patroni_role": "bootstrap"}, {"patroni": {"clusters": {"15-copy": {}}}})
    assert not restoring("bootstrap", {"patroni_role": "bootstrap"}, {"patroni": {"clusters": {"15-main": {}}}})
    assert not restoring("bootstrap", {}, replica)
    assert restoring("repository", {}, backup) and restoring("everyone", {}, backup)
    assert restoring("everyone", {}, beside) and not restoring("everyone", {}, {})
    assert not matches(target("members", restore, {"cluster": "15 main"}), {}, replica)  # no word: no member


@pytest.mark.parametrize(
    "grains, pillar, expected",
    [
        ({"patroni_debian_rollout": "pending"}, {"patroni": {"role": "replica"}}, True),
        ({"patroni_debian_rollout": "pending", "patroni_role": "bootstrap"}, {}, True),
        ({"patroni_debian_rollout": "converged"}, {"patroni": {"role": "replica"}}, False),
        ({"patroni_debian_rollout": "converged", "patroni_role": "bootstrap"}, {}, False),
        ({}, {"patroni": {"role": "bootstrap"}}, True),  # a new member: its grain is written only to say converged
        ({"patroni_debian_rollout": "pending"}, {"patroni": {"role": "backup"}}, False),  # no member
    ],
)
def test_the_phases_run_on_the_members_that_did_not_say_converged(grains, pillar, expected):
    """Issue 24: the first step keeps each member's answer in grain patroni_debian_rollout, written only when it
    crosses ``converged``; both phases leave out the members whose grain says ``converged``, the gate none."""
    assert matches(target("unsettled"), grains, pillar) is expected
    # a dry run of the orchestration runs no first step, so its phases preview every member
    assert target("unsettled", opts={"test": True}) == target("members")
    assert matches(target("members"), grains, pillar) is (pillar.get("patroni", {}).get("role") != "backup")


REPLICA = {"patroni": {"role": "replica"}}


@pytest.mark.parametrize(
    "grains, pillar, expected",
    [
        ({}, {"patroni": {"role": "bootstrap"}}, True),  # the bootstrap member goes first by its role
        ({"patroni_role": "bootstrap", "patroni_debian_rollout": "pending"}, {}, True),
        ({"patroni_debian_rollout": "early"}, REPLICA, True),  # leads now, or has packages to install
        ({}, REPLICA, False),  # a new replica whose packages are in place: the second phase only
        ({"patroni_debian_rollout": "pending"}, REPLICA, False),
        ({}, {**REPLICA, **ETCD}, True),  # pillar etcd: every member starts its etcd in the first phase
        ({"patroni_debian_rollout": "converged"}, {**REPLICA, **ETCD}, False),
        ({"patroni_debian_rollout": "converged", "patroni_role": "bootstrap"}, {}, False),
        ({"patroni_debian_rollout": "early"}, {"patroni": {"role": "backup"}}, False),  # no member
    ],
)
def test_the_first_phase_runs_on_the_unsettled_members_that_have_work_in_it(grains, pillar, expected):
    """Issue 24: a replica whose packages and program are in place is left out of the first phase, which would only
    render the formula there; the bootstrap member, a member that said ``early`` and, with pillar etcd, every
    member are in it, unless converged."""
    assert matches(target("early"), grains, pillar) is expected
    assert not expected or matches(target("unsettled"), grains, pillar)  # never beyond the second phase's members
    assert target("early", opts={"test": True}) == target("members")  # a dry run previews every member


def _state_module():
    path = ORCH.parent.parent.parent / "_states" / "patroni_debian.py"
    spec = importlib.util.spec_from_file_location("patroni_debian_states", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "answer, grain, written",
    [
        ({"converged": False, "early": False, "role": "replica"}, None, None),  # a new replica, packages in place
        ({"converged": False, "early": True, "role": "replica"}, None, "early"),  # a new replica to install
        ({"converged": False, "early": True, "role": "replica"}, "early", None),
        ({"converged": False, "early": False, "role": "replica"}, "early", "pending"),
        ({"converged": False, "early": False, "role": "replica"}, "converged", "pending"),
        ({"converged": True, "early": False, "role": "replica"}, "converged", None),
        ({"converged": True, "early": False, "role": "replica"}, "early", "converged"),
        ({"converged": False, "early": True, "role": "bootstrap"}, None, None),  # first by its role
        ({"converged": False, "early": True, "role": "bootstrap"}, "early", None),
        ({"converged": False, "early": True, "role": "bootstrap"}, "converged", "pending"),
    ],
)
def test_the_first_step_writes_the_grain_only_when_the_phases_would_read_it_otherwise(answer, grain, written):
    """Each write of grain patroni_debian_rollout costs the first step a pillar refresh that the member waits for:
    only an answer that puts the member in other phases than the grain the master knows is written."""
    states = _state_module()
    value = states._rollout_answer(answer)
    assert (value if states._grain_to_write(value, answer["role"], grain) else None) == written


def _captured(name):
    return json.loads(
        (pathlib.Path(__file__).resolve().parent / "captures" / "rollout" / f"bookworm-{name}.json").read_text()
    )


def test_a_member_is_converged_when_the_formula_s_dry_run_predicts_no_change_and_no_failure():
    """``captures/rollout``: the formula's dry run on a member of a converged cluster, on one whose unit was
    disabled by hand (the state that would enable it says so), and Salt's answer when nothing rendered."""
    assert ops._unsettled(_captured("converged")) == []
    assert ops._unsettled(_captured("unit_disabled")) == ["Patroni 15-main is running"]
    assert ops._unsettled(_captured("no_such_sls")) == [
        "it did not render (No matching sls found for 'patroni.nosuch' in env 'base')"
    ]
    failing = {"a": {"__id__": "Pillar patroni is valid", "result": False, "changes": {}, "__run_num__": 0}}
    assert ops._unsettled(failing) == ["Pillar patroni is valid"]


def test_the_noted_pillar_is_the_minion_s_own_whatever_the_order_and_without_the_rollout_s_override():
    """The gate reads the minion's own pillar only when its digest is the one the first step noted: the same
    pillar in another key order, and with the first step's own ``patroni_rollout``, is the same; any other value
    is not (a new cluster, a changed port, a new password)."""
    own = {"patroni": {"role": "replica", "clusters": {"15-main": {"port": 5432}, "15-x": {}}}, "etcd": {"a": 1}}
    noted = ops._pillar_digest(
        {"etcd": {"a": 1}, "patroni_rollout": {"clusters": None, "timeout": 120}, "patroni": own["patroni"]}
    )
    assert ops._pillar_digest(own) == noted
    for changed in (
        {**own, "patroni": {**own["patroni"], "clusters": {"15-main": {"port": 5432}}}},
        {**own, "patroni": {**own["patroni"], "clusters": {"15-main": {"port": 5433}, "15-x": {}}}},
        {**own, "etcd": {"a": 1, "password": "new"}},
    ):
        assert ops._pillar_digest(changed) != noted
    assert ops._pillar_digest(None) == ops._pillar_digest({}) == ops._pillar_digest({"patroni_rollout": {}})
    # the minion keeps a "schedule" key in its own pillar (measured: pillar.raw has it, a fresh compile not)
    assert ops._pillar_digest({**own, "schedule": {}}) == noted
