"""The rolling restart: ``salt-run state.orchestrate orch.patroni_restart`` on a cluster the rollout made.

A setting that needs a restart reaches every member one at a time, replicas first and the leader after a
switchover, never more than one member down (sampled every 0.2 s all along); a decreasing ``max_connections``
restarts the primary first; a replica powered off mid-run stops the run with its name before another member goes
down, and the next run, once it is back, finishes the job. Each test starts from a cluster the rollout made
(``restartable``: whatever restart settings an earlier test of this file left applied) and says the settings it
wants.
"""

import subprocess
import threading

import highstate
import machines
import netlab
import pytest
from highstate import API_PORT, failures, pillar, start_times
from starting_points import make_orchestrated, starting_point


RESTART = "Each cluster's leader restarts its members one at a time"


class DownWatcher:
    """Samples every member's ``/patroni`` in the background: the most members seen down (not answering, or
    not ``running``) at one time."""

    def __init__(self, lab):
        self.lab, self.most_down, self.samples, self.worst = lab, 0, 0, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.is_set():
            statuses = netlab.member_statuses(self.lab.nodes, API_PORT)
            down = sorted(name for name, status in statuses.items() if not status or status.get("state") != "running")
            self.samples += 1
            if len(down) > self.most_down:
                self.most_down, self.worst = len(down), {name: statuses[name] for name in down}
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def postmaster_pid_file(machine):
    """``machine``'s postmaster.pid, read on its disk from here: no process to start, so a restart is seen at
    once (the file goes when PostgreSQL stops and comes back, another file, when it starts)."""
    path = machine.merged / "var" / "lib" / "postgresql" / str(machine.lab.version) / "main" / "postmaster.pid"
    try:
        return path.stat().st_ino, path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def pending(lab):
    statuses = netlab.member_statuses(lab.nodes, API_PORT)
    return sorted(name for name, status in statuses.items() if status and status.get("pending_restart"))


def show(lab, setting):
    """``SHOW <setting>`` on every member."""
    shown = lab.salt("pg*", "cmd.run", f'psql -X -At -c "SHOW {setting}"', "runas=postgres")
    return {minion: value.strip() for minion, value in shown.items()}


def declare(lab, parameters):
    """``parameters`` in pillar, brought to the live settings by the rollout; every member then waits for a
    restart."""
    lab.set_pillar(pillar(lab, dynamic={"postgresql": {"parameters": parameters}}))
    code, steps, _ = highstate.orchestrate(lab, "orch.patroni")
    assert code == 0, failures(steps)
    names = {machine.name for machine in lab.nodes}
    netlab.wait_until("every member waits for a restart", lambda: set(pending(lab)) == names, 60)


def rolling_restart(lab, *args):
    code, steps, output = highstate.orchestrate(lab, "orch.patroni_restart", *args)
    if code != 0:  # shown with the failure: the switchover's refusal has been seen on bookworm only in full runs
        print("Patroni's peers that did not answer:", highstate.peers_unanswered(lab))
    returns = steps.get(RESTART, {}).get("changes", {}).get("ret", {})
    driven = {minion: result for minion, result in returns.items() if result}
    return code, steps, driven


def nothing_pending(lab):
    """Every member streaming, none waiting for a restart."""
    return bool(netlab.health(lab.nodes, API_PORT)) and pending(lab) == []


restartable = starting_point("restartable", make_orchestrated, nothing_pending, adopts=("orchestrated",))


@pytest.fixture
def lab(restartable):
    return restartable


def test_nothing_pending_is_a_no_op(lab):
    before = start_times(lab)
    code, steps, driven = rolling_restart(lab)
    assert code == 0, failures(steps)
    (result,) = [result[f"{lab.version}-main"] for result in driven.values()]
    assert result["restarted"] == [] and result["comment"] == "nothing waits for a restart"
    assert start_times(lab) == before


def live(lab, setting):
    """The one value of ``setting`` every member runs with."""
    (value,) = set(show(lab, setting).values())
    return value


def another_shared_buffers(lab):
    """A shared_buffers other than the live one, with max_connections as it is: a change restarted replicas
    first, whatever an earlier test left."""
    wanted = "56MB" if live(lab, "shared_buffers") == "48MB" else "48MB"
    return {"shared_buffers": wanted, "max_connections": int(live(lab, "max_connections"))}


def test_a_restart_setting_reaches_every_member_one_at_a_time_replicas_first(lab, timings):
    wanted = another_shared_buffers(lab)
    declare(lab, wanted)
    leader, _ = netlab.health(lab.nodes, API_PORT)
    replicas = sorted(machine.name for machine in lab.nodes if machine.name != leader)
    before = start_times(lab)
    with DownWatcher(lab) as watcher:
        code, steps, driven = rolling_restart(lab)
    assert code == 0, failures(steps)
    assert list(driven) == [leader]  # the leader's minion drove the cluster; the others returned nothing
    result = driven[leader][f"{lab.version}-main"]
    timings[f"rolling restart of 3 members, replicas first + switchover ({lab.release})"] = result["seconds"]
    assert result["order"] == "replicas first, then a switchover"
    assert result["restarted"][:2] == replicas
    assert result["switchover"]["old_leader"] == leader and result["switchover"]["new_leader"] in replicas
    assert watcher.most_down <= 1 and watcher.samples >= 10, (watcher.most_down, watcher.worst)
    after = start_times(lab)
    assert all(after[name] != before[name] for name in before), (before, after)
    assert live(lab, "shared_buffers") == wanted["shared_buffers"] and pending(lab) == []
    assert netlab.health(lab.nodes, API_PORT)[0] == result["switchover"]["new_leader"]


def test_a_decreasing_max_connections_restarts_the_primary_first(lab, timings):
    fewer = int(live(lab, "max_connections")) - 10
    declare(lab, {"shared_buffers": live(lab, "shared_buffers"), "max_connections": fewer})
    leader, timeline = netlab.health(lab.nodes, API_PORT)
    with DownWatcher(lab) as watcher:
        code, steps, driven = rolling_restart(lab)
    assert code == 0, failures(steps)
    result = driven[leader][f"{lab.version}-main"]
    timings[f"rolling restart of 3 members, primary first ({lab.release})"] = result["seconds"]
    assert result["order"] == "primary first: max_connections decreased"
    assert result["restarted"][0] == leader and len(result["restarted"]) == 3 and result["switchover"] is None
    assert result["still_pending"] == []
    assert watcher.most_down <= 1, (watcher.most_down, watcher.worst)
    assert live(lab, "max_connections") == str(fewer) and pending(lab) == []
    assert netlab.health(lab.nodes, API_PORT) == (leader, timeline)  # no switchover, no failover


def test_a_replica_powered_off_mid_run_stops_it_before_a_second_member_goes_down(lab):
    wanted = another_shared_buffers(lab)
    declare(lab, wanted)
    leader, timeline = netlab.health(lab.nodes, API_PORT)
    first, second = sorted((m for m in lab.nodes if m.name != leader), key=lambda m: m.name)  # its restart order
    before = start_times(lab)
    argv = machines.salt_run_cli(lab.switch, lab.salt_config) + ["state.orchestrate", "orch.patroni_restart"]
    argv.append("--out=json")
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        running = postmaster_pid_file(first)
        netlab.wait_until(f"{first.name} restarting", lambda: postmaster_pid_file(first) != running, 120, 0.01)
        second.power_cut()
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0, output
    # stopped while waiting for the first to stream again, or, when the cut came that late, at the second's restart
    assert "rolling restart stopped: " in output and f"restarted so far: {first.name};" in output, output
    assert any(
        f"{second.name}{why}" in output
        for why in (": its Patroni does not answer", " did not restart", ": it is no longer listed")
    ), output
    after = start_times(lab, (leader, first.name))  # the second is powered off
    assert after[leader] == before[leader] and after[first.name] != before[first.name]
    assert netlab.leader_among([m for m in lab.nodes if m is not second], API_PORT) == leader

    second.boot()
    lab.wait_minions()
    netlab.wait_until(f"{second.name} back", lambda: netlab.health(lab.nodes, API_PORT) == (leader, timeline), 180)
    code, steps, driven = rolling_restart(lab)  # the next run finishes the job
    assert code == 0, failures(steps)
    assert live(lab, "shared_buffers") == wanted["shared_buffers"] and pending(lab) == []
