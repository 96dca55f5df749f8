"""The rollout: ``salt-run state.orchestrate orch.patroni`` on lab machines with a real master.

Bare machines become a healthy cluster led by the bootstrap member; a second run changes nothing; after a
failover a run leaves leadership where it is; a replica with broken pillar, a replica powered off and a leader
killed mid-rollout each stop the run with a message naming the minion, while the healthy members keep serving.
The first and the last test start from fresh machines, the others from a cluster the rollout made.
"""

import json
import subprocess
import time

import machines
import netlab
import pytest
import highstate
from highstate import API_PORT, PREPARE, failures, pillar, prepared, start_times
from starting_points import arrived, streaming


GATE = "Every member leads and accepts writes, or streams from the leader on its timeline"
SUMMARY = "Summary of each cluster, verified"
PHASES = (
    "First phase, the member that goes first in each cluster is converged",
    "Second phase, every member is converged",
)


def orchestrate(lab, *args):
    return highstate.orchestrate(lab, "orch.patroni", *args)


def changed_states(steps):
    """``minion: state id`` of every state that changed something in the formula's runs."""
    return [f"{minion}: {state['__id__']}" for minion, state in changed_runs(steps)]


def changed_runs(steps):
    """``(minion, state)`` of every state that changed something in the formula's runs (both phases)."""
    return [
        (minion, state)
        for phase in PHASES
        for minion, states in steps[phase]["changes"].get("ret", {}).items()
        for state in states.values()
        if state["changes"]
    ]


def write_on(lab, leader):
    psql = 'psql -X -q -At -c "CREATE TABLE IF NOT EXISTS rollout (n int); INSERT INTO rollout VALUES (1) RETURNING n"'
    return lab.salt(leader, "cmd.run", psql, "runas=postgres")[leader]


@pytest.fixture
def lab(orchestrated):
    return orchestrated


def test_bare_machines_become_a_cluster_led_by_the_bootstrap_member(fresh_machines, timings):
    lab = fresh_machines
    lab.set_pillar(pillar(lab))
    started = time.monotonic()
    code, steps, output = orchestrate(lab)
    timings[f"orchestration: bare machines → healthy 3-member cluster ({lab.release})"] = time.monotonic() - started
    assert code == 0, failures(steps)
    assert netlab.health(lab.nodes, API_PORT) == ("pg1", 1)
    summary = steps[SUMMARY]["changes"]["ret"]["pg1"][f"{lab.version}-main"]
    members = json.loads(lab.nodes[0].http("/cluster", port=API_PORT))["members"]
    assert summary["leader"] == "pg1" and summary["timeline"] == 1 and summary["port"] == 5432
    assert {name: (m["role"], m["timeline"]) for name, m in summary["members"].items()} == {
        m["name"]: (m["role"], m["timeline"]) for m in members
    }
    assert set(summary["members"]) == {"pg1", "pg2", "pg3"}
    gate = steps[GATE]["changes"]["ret"]
    assert {minion: result[f"{lab.version}-main"]["role"] for minion, result in gate.items()} == {
        "pg1": "primary",
        "pg2": "replica",
        "pg3": "replica",
    }
    # issue 24: the replicas' packages are in place (this image), so the first phase is the bootstrap member's
    # alone, their first step wrote no grain, and the second phase is everyone's
    said = {machine.name: prepared(steps, machine.name)["comment"] for machine in lab.nodes}
    assert all("pending: " in said[name] for name in ("pg2", "pg3")), said
    first, second = steps[PHASES[0]]["comment"], steps[PHASES[1]]["comment"]  # each names the minions it ran on
    assert "pg1" in first and "pg2" not in first and "pg3" not in first, first
    assert all(name in second for name in ("pg1", "pg2", "pg3")), second
    # the gate notes what the next run's first step will answer, so that step writes no grain
    assert rollout_grains(lab) == {"pg1": "converged", "pg2": "converged", "pg3": "converged"}
    arrived(lab, "orchestrated", streaming)  # what that starting point makes: the next test may start from here


def rollout_grains(lab):
    """Each member's grain ``patroni_debian_rollout``, as the minion holds it."""
    return lab.salt("*", "grains.get", "patroni_debian_rollout")


def test_a_second_run_changes_nothing_and_restarts_nothing(lab, timings):
    before, started_at = netlab.health(lab.nodes, API_PORT), start_times(lab)
    started = time.monotonic()
    code, steps, output = orchestrate(lab)
    timings[f"orchestration: converged re-run ({lab.release})"] = time.monotonic() - started
    assert code == 0, failures(steps)
    assert changed_states(steps) == []
    said = {machine.name: prepared(steps, machine.name)["comment"] for machine in lab.nodes}
    assert all("converged: the formula would change nothing" in comment for comment in said.values()), said
    assert all(not steps[phase]["changes"] for phase in PHASES), "a phase ran on a converged member"
    assert netlab.health(lab.nodes, API_PORT) == before and start_times(lab) == started_at


def test_a_re_run_converges_only_the_member_that_drifted(lab):
    """Issue 24: each member answers whether the formula would change anything there, and both phases run on
    those that would alone; the others are left out of them, never out of the gate."""
    leader, timeline = netlab.health(lab.nodes, API_PORT)
    drifted = next(machine for machine in lab.nodes if machine.name != leader)
    unit = f"patroni@{lab.version}-main"
    drifted.run(["systemctl", "disable", unit])
    started_at = start_times(lab)
    # a dry run asks no member (Salt runs no function then): its phases preview every member, changing nothing
    code, steps, output = orchestrate(lab, "test=True")
    assert code == 0, failures(steps)
    preview = steps[PHASES[1]]
    assert preview["result"] is None and set(preview["changes"]["ret"]) == {drifted.name}, preview["comment"]
    assert all(machine.name in preview["comment"] for machine in lab.nodes), preview["comment"]
    assert drifted.run(["systemctl", "is-enabled", unit], check=False).stdout.strip() == "disabled"
    code, steps, output = orchestrate(lab)
    assert code == 0, failures(steps)
    said = {machine.name: prepared(steps, machine.name)["comment"] for machine in lab.nodes}
    assert said[drifted.name].endswith(f"pending: the formula would change: Patroni {lab.version}-main is running"), (
        said
    )
    assert all("converged" in comment for name, comment in said.items() if name != drifted.name), said
    changed = [f"{minion}: {state['__id__']}" for minion, state in changed_runs(steps)]
    assert changed == [f"{drifted.name}: Patroni {lab.version}-main is running"], changed
    for phase in PHASES:
        assert set(steps[phase]["changes"].get("ret", {})) <= {drifted.name}, steps[phase]["comment"]
    assert set(steps[GATE]["changes"]["ret"]) == {machine.name for machine in lab.nodes}
    assert drifted.run(["systemctl", "is-enabled", unit]).stdout.strip() == "enabled"
    assert set(rollout_grains(lab).values()) == {"converged"}  # the drifted member's "pending" noted away again
    assert netlab.health(lab.nodes, API_PORT) == (leader, timeline) and start_times(lab) == started_at


def test_after_a_failover_the_run_keeps_leadership_where_it_is(lab, timings):
    pg1, others = lab.nodes[0], lab.nodes[1:]
    pg1.power_cut()
    new_leader = netlab.wait_until("a new leader", lambda: netlab.leader_among(others, API_PORT), timeout=120)
    pg1.boot()
    lab.wait_minions()
    _, timeline = netlab.wait_until("pg1 back as a replica", lambda: netlab.health(lab.nodes, API_PORT), 180)
    started = time.monotonic()
    code, steps, output = orchestrate(lab)
    timings[f"orchestration: re-run after a failover ({lab.release})"] = time.monotonic() - started
    assert code == 0, failures(steps)
    assert changed_states(steps) == []
    assert netlab.health(lab.nodes, API_PORT) == (new_leader, timeline)
    assert steps[SUMMARY]["changes"]["ret"]["pg1"][f"{lab.version}-main"]["leader"] == new_leader


def test_a_replica_with_broken_pillar_stops_the_run_and_the_others_keep_serving(lab):
    leader, _ = netlab.health(lab.nodes, API_PORT)
    broken = next(machine.name for machine in lab.nodes if machine.name != leader)
    root = lab.pillar_root
    (root / "broken.sls").write_text(json.dumps({"patroni": {"clusters": {f"{lab.version}-main": {"port": "fifty"}}}}))
    (root / "top.sls").write_text(f"base:\n  'pg*':\n    - lab\n  '{broken}':\n    - broken\n")
    try:
        code, steps, output = orchestrate(lab)
        assert code != 0
        failed = [state for state in steps.values() if state["result"] is False]
        assert failed and failed[0]["__id__"] == PHASES[0], output[-3000:]
        assert broken in failed[0]["comment"], failed[0]["comment"]
        causes = [state["comment"] for state in failed[0]["changes"]["ret"][broken].values() if not state["result"]]
        assert any(f"patroni:clusters:{lab.version}-main" in cause and "fifty" in cause for cause in causes), causes
        assert GATE not in steps  # failhard: nothing after the failed step ran
        assert write_on(lab, leader) == "1"
        assert netlab.health(lab.nodes, API_PORT)[0] == leader
    finally:
        lab.set_pillar(pillar(lab))


@pytest.mark.parametrize(
    "sls,argument,words",
    [
        ("orch.patroni", '{"cluster": "main"}', 'cluster: "main" is not <version>-<cluster>'),
        ("orch.patroni", '{"cluster": []}', "cluster: [] is not a <version>-<cluster> name"),
        ("orch.patroni", '{"cluster": ["15-main\\n"]}', "is not <version>-<cluster>"),
        ("orch.patroni_restart", '{"timeout": .nan}', "timeout: 'NaN' is not a number of seconds"),
    ],
)
def test_bad_orchestration_arguments_stop_it_before_anything_changes(lab, sls, argument, words):
    """Issue 18, class 6: both orchestrations check their arguments in Python, on the members, before any step
    that changes something, with the intended message (never a YAML error)."""
    code, steps, output = highstate.orchestrate(lab, sls, f"pillar={argument}")
    assert code != 0
    failed = [state for state in steps.values() if state["result"] is False]
    assert len(failed) == 1 and failed[0]["__id__"] in (PREPARE, "The rolling restart's arguments are valid"), output[
        -3000:
    ]
    assert words in failures(steps), failures(steps)
    assert not any(step.startswith(("First phase", "Each cluster")) for step in steps), list(steps)


def test_a_replica_powered_off_is_named_within_bounded_time_and_the_others_stay_healthy(lab, timings):
    leader, timeline = netlab.health(lab.nodes, API_PORT)
    off = next(machine for machine in lab.nodes if machine.name != leader)
    off.power_cut()
    try:
        started = time.monotonic()
        code, steps, output = orchestrate(lab)
        timings[f"orchestration: a member powered off → the run says which ({lab.release})"] = (
            time.monotonic() - started
        )
        assert code != 0
        failed = [state for state in steps.values() if state["result"] is False]
        assert failed and off.name in failed[0]["comment"], output[-3000:]
        running = [machine for machine in lab.nodes if machine is not off]
        assert netlab.health(running, API_PORT) == (leader, timeline)
    finally:
        off.boot()
        lab.wait_minions()
        netlab.wait_until("the member back", lambda: netlab.health(lab.nodes, API_PORT), 180)


@pytest.mark.spoils
def test_the_leader_killed_while_replicas_clone_fails_the_run_clearly(fresh_machines):
    lab = fresh_machines
    bounded = pillar(lab)
    bounded["patroni"]["lookup"] = {"health_timeout": 20}  # the states' wait, as the gates' below
    lab.set_pillar(bounded)
    argv = machines.salt_run_cli(lab.switch, lab.salt_config) + ["state.orchestrate", "orch.patroni"]
    argv.append('pillar={"timeout": 20}')
    run = subprocess.Popen(argv + ["--out=json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pg1 = lab.nodes[0]
    netlab.wait_until("pg1 leads", lambda: netlab.leader_among([pg1], API_PORT), 120, interval=0.1)
    pg1.power_cut()  # the replicas start cloning the moment pg1 leads
    output, errors = run.communicate(timeout=400)
    assert run.returncode != 0, output[-3000:] + errors[-2000:]
    data = json.JSONDecoder().raw_decode(output[output.index("{") :])[0]
    steps = {state["__id__"]: state for state in next(iter(data["data"].values())).values()}
    failed = [state for state in steps.values() if state["result"] is False]
    # the killed leader itself (no return) or a replica (no leader to clone from), by name
    assert failed and any(name in failed[0]["comment"] for name in ("pg1", "pg2", "pg3")), output[-3000:]
    # no replica could finish its clone: no step says any member is healthy
    assert steps.get(GATE, {}).get("result") is not True and SUMMARY not in steps, output[-3000:]
