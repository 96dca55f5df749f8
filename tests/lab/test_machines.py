"""Lab tier C: Debian machines booting systemd, each with a salt-minion under systemd, and a master on the bridge.

The Debian way by hand, through Salt: patroni_debian.createconfig on each machine, then systemctl start
patroni@15-main; then a power cut of the leader machine and its boot.
"""

import json
import time

import machines
import netlab
import pytest

pytestmark = pytest.mark.lab

DCS = {"etcd3": {"hosts": [netlab.ETCD]}}
AUTHENTICATION = {"replication": {"password": "lab-replication"}}
FAST = {"ttl": 20, "loop_wait": 5, "retry_timeout": 5}
API_PORT = 8008


@pytest.fixture
def lab(machine_lab):
    return machine_lab


def test_every_minion_answers_and_systemd_runs(lab):
    assert lab.salt("*", "test.ping") == {"pg1": True, "pg2": True, "pg3": True}
    states = lab.salt("*", "cmd.run", "systemctl is-system-running")
    assert states == {"pg1": "running", "pg2": "running", "pg3": "running"}
    names = lab.salt("*", "grains.get", "host")
    assert names == {"pg1": "pg1", "pg2": "pg2", "pg3": "pg3"}


def test_targeting_by_role_reaches_only_that_role(lab):
    assert set(lab.salt("patroni_role:replica", "test.ping", tgt_type="grain")) == {"pg2", "pg3"}
    assert set(lab.salt("patroni_role:bootstrap", "test.ping", tgt_type="grain")) == {"pg1"}


def test_reset_brings_a_machine_back_to_its_image(lab, timings):
    machine = lab.nodes[2]
    machine.run(["touch", "/var/lib/postgresql/left-behind"])
    started = time.monotonic()
    machine.reset()
    timings["lab C: reset one machine to its image"] = time.monotonic() - started
    assert machine.run(["test", "-e", "/var/lib/postgresql/left-behind"], check=False).returncode == 1
    assert machine.run(["systemctl", "is-system-running"], check=False).stdout.strip() == "running"
    lab.wait_minions()  # the same minion key: it is still accepted
    # back to the image means the synced modules are gone too, until the next sync
    assert "is not available" in lab.salt(machine.name, "patroni_debian.render_config", "15", "main")[machine.name]
    assert "modules.patroni_debian" in lab.salt(machine.name, "saltutil.sync_all")[machine.name]["modules"]


def test_debian_way_by_hand_through_salt(fresh_machines, timings):
    """createconfig through Salt on every machine, then systemctl start: 1 leader, 2 streaming replicas."""
    lab = fresh_machines
    started = time.monotonic()
    try:
        created, (leader, timeline) = machines.debian_way(lab, DCS, AUTHENTICATION, FAST)
    except TimeoutError:
        logs = lab.salt("*", "cmd.run", "journalctl -u patroni@15-main --no-pager -n 30")
        pytest.fail("15-main never became healthy:\n" + json.dumps(logs, indent=1))
    timings["lab C: Debian way by hand via Salt → healthy (floor for the rollout)"] = time.monotonic() - started
    assert {name: result["written"] for name, result in created.items()} == {
        name: ["/etc/patroni/15-main.yml"] for name in ("pg1", "pg2", "pg3")
    }, created
    assert all(not any("not installed" in w for w in result["warnings"]) for result in created.values())
    assert timeline == 1
    units = lab.salt("*", "cmd.run", "systemctl is-enabled patroni@15-main; systemctl is-active patroni@15-main")
    assert set(units.values()) == {"enabled\nactive"}
    psql = 'psql -X -q -At -c "CREATE TABLE IF NOT EXISTS lab AS SELECT 7 AS seven; SELECT seven FROM lab"'
    assert lab.salt(leader, "cmd.run", psql, "runas=postgres")[leader] == "7"


def test_power_cut_leader_fails_over_and_boots_back_as_replica(lab, timings):
    state = netlab.health(lab.nodes, API_PORT)
    assert state, "runs after test_debian_way_by_hand_through_salt, on the healthy cluster it leaves"
    leader_name, old_timeline = state
    leader = next(machine for machine in lab.nodes if machine.name == leader_name)
    others = [machine for machine in lab.nodes if machine is not leader]
    cut = time.monotonic()
    leader.power_cut()
    new_leader = netlab.wait_until("a new leader", lambda: netlab.leader_among(others, API_PORT), timeout=120)
    timings["lab C: leader machine power cut → new leader"] = time.monotonic() - cut
    assert new_leader != leader_name

    booted = time.monotonic()
    leader.boot()  # same disk: patroni@15-main is enabled, so it starts with the machine
    healthy = netlab.wait_until("old leader back as replica", lambda: netlab.health(lab.nodes, API_PORT), 180)
    timings["lab C: boot of the old leader → streaming replica"] = time.monotonic() - booted
    assert healthy[0] == new_leader and healthy[1] > old_timeline
