"""The orchestration's targets as Salt's own compound matcher reads them on a minion: the step that runs etcd on
hosts of its own must match those and no Patroni member (it once matched the bootstrap member, whose two state
runs at once then refused each other: Salt's matcher needs spaces inside parentheses)."""

import pathlib
import re

import jinja2
import pytest
import salt.config
import salt.loader

ORCH = pathlib.Path(__file__).resolve().parent.parent.parent / "salt" / "orch" / "patroni.sls"


def target(name, orch=ORCH):
    """The orchestration's ``name`` target, rendered from its own ``set`` lines."""
    text = orch.read_text()
    sets = "".join(
        match.group(0)
        for match in re.finditer(r"\{%-\s*set (?:members|bootstrap|etcd_hosts|repository|everyone)\b.*?%\}", text, re.S)
    )
    return jinja2.Environment().from_string(sets + "{{ " + name + " }}").render()


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
    restore = ORCH.with_name("patroni_restore.sls")
    backup, replica = {"patroni": {"role": "backup"}}, {"patroni": {"role": "replica"}}
    assert matches(target("members", restore), {}, replica) and not matches(target("members", restore), {}, backup)
    assert matches(target("bootstrap", restore), {"patroni_role": "bootstrap"}, {})
    assert not matches(target("bootstrap", restore), {}, replica)
    assert matches(target("repository", restore), {}, backup) and matches(target("everyone", restore), {}, backup)
    assert matches(target("everyone", restore), {}, replica) and not matches(target("everyone", restore), {}, {})
