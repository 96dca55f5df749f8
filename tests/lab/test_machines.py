"""Lab tier C: Debian machines booting systemd, each with a salt-minion under systemd, and a master on the bridge.

The Debian way by hand, through Salt: patroni_debian.createconfig on each machine, then systemctl start
patroni@<version>-main; then a power cut of the leader machine and its boot.
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
    timings[f"lab C: reset one machine to its image ({lab.release})"] = time.monotonic() - started
    assert machine.run(["test", "-e", "/var/lib/postgresql/left-behind"], check=False).returncode == 1
    assert machine.run(["systemctl", "is-system-running"], check=False).stdout.strip() == "running"
    lab.wait_minions()  # the same minion key: it is still accepted
    # back to the image means the synced modules are gone too, until the next sync
    assert (
        "is not available" in lab.salt(machine.name, "patroni_debian.render_config", lab.version, "main")[machine.name]
    )
    assert "modules.patroni_debian" in lab.salt(machine.name, "saltutil.sync_all")[machine.name]["modules"]


def test_debian_way_by_hand_through_salt(fresh_machines, timings):
    """createconfig through Salt on every machine, then systemctl start: 1 leader, 2 streaming replicas."""
    lab = fresh_machines
    started = time.monotonic()
    try:
        created, (leader, timeline) = machines.debian_way(lab, DCS, AUTHENTICATION, FAST)
    except TimeoutError:
        logs = lab.salt("*", "cmd.run", f"journalctl -u patroni@{lab.version}-main --no-pager -n 30")
        pytest.fail(f"{lab.version}-main never became healthy:\n" + json.dumps(logs, indent=1))
    timings[f"lab C: Debian way by hand via Salt → healthy (floor for the rollout) ({lab.release})"] = (
        time.monotonic() - started
    )
    assert {name: result["written"] for name, result in created.items()} == {
        name: [f"/etc/patroni/{lab.version}-main.yml"] for name in ("pg1", "pg2", "pg3")
    }, created
    assert all(not any("not installed" in w for w in result["warnings"]) for result in created.values())
    assert timeline == 1
    units = lab.salt(
        "*",
        "cmd.run",
        f"systemctl is-enabled patroni@{lab.version}-main; systemctl is-active patroni@{lab.version}-main",
    )
    assert set(units.values()) == {"enabled\nactive"}
    psql = 'psql -X -q -At -c "CREATE TABLE IF NOT EXISTS lab AS SELECT 7 AS seven; SELECT seven FROM lab"'
    assert lab.salt(leader, "cmd.run", psql, "runas=postgres")[leader] == "7"


# What Patroni 3.0.2's validator says of any config without the two keys its schema requires (Patroni 4 does not;
# its maintainers advise against bootstrap.pg_hba): README, Differences from Debian
PATRONI_3_0_2_SCHEMA = "bootstrap.pg_hba  is not defined.\nbootstrap.initdb  is not defined."


def test_a_generated_config_passes_the_installed_patronis_own_validation(lab):
    """``patroni --validate-config`` of Patroni 4.0.7 finds nothing in a config that createconfig writes (it
    reports two problems in Debian's own template); Patroni 3.0.2's reports only its schema's two required keys.
    A cluster not started yet: the validation also says a running cluster's ports are in use."""
    config = f"/etc/patroni/{lab.version}-check.yml"
    expected = (1, "", PATRONI_3_0_2_SCHEMA) if lab.release == "bookworm" else (0, "", "")
    try:
        created = lab.salt("*", "patroni_debian.createconfig", lab.version, "check", f"dcs={json.dumps(DCS)}")
        assert all(result["written"] == [config] for result in created.values()), created
        validated = lab.salt("*", "cmd.run_all", f"patroni --validate-config {config}")
        for name, result in validated.items():
            assert (result["retcode"], result["stdout"], result["stderr"]) == expected, (name, result)
    finally:
        lab.salt("*", "file.remove", config)


def test_power_cut_leader_fails_over_and_boots_back_as_replica(lab, timings):
    state = netlab.health(lab.nodes, API_PORT)
    assert state, "runs after test_debian_way_by_hand_through_salt, on the healthy cluster it leaves"
    leader_name, old_timeline = state
    leader = next(machine for machine in lab.nodes if machine.name == leader_name)
    others = [machine for machine in lab.nodes if machine is not leader]
    cut = time.monotonic()
    leader.power_cut()
    new_leader = netlab.wait_until("a new leader", lambda: netlab.leader_among(others, API_PORT), timeout=120)
    timings[f"lab C: leader machine power cut → new leader ({lab.release})"] = time.monotonic() - cut
    assert new_leader != leader_name

    booted = time.monotonic()
    leader.boot()  # same disk: patroni@<version>-main is enabled, so it starts with the machine
    healthy = netlab.wait_until("old leader back as replica", lambda: netlab.health(lab.nodes, API_PORT), 180)
    timings[f"lab C: boot of the old leader → streaming replica ({lab.release})"] = time.monotonic() - booted
    assert healthy[0] == new_leader and healthy[1] > old_timeline


def test_vip_manager_1_places_the_vip_on_the_leader_and_moves_it_with_the_leader(lab, timings):
    """The Debian way with a VIP: createconfig writes the VIP file, ``vip-manager@`` (the release's vip-manager
    1.0.2, reading etcd's v2 API, which the lab's etcd serves) holds the VIP on the leader only; the leader's
    Patroni stopped, the VIP follows the new leader."""
    scope, vip = f"{lab.version}-vip", "10.77.0.100"
    created = lab.salt(
        "*",
        "patroni_debian.createconfig",
        lab.version,
        "vip",
        f"vip={vip}",
        f"dcs={json.dumps({'etcd': {'host': netlab.ETCD}})}",
        f"authentication={json.dumps(AUTHENTICATION)}",
        f"dynamic={json.dumps(FAST)}",
    )
    assert all(result["written"][-1] == f"/etc/patroni/{scope}.vip" for result in created.values()), created
    lab.salt("*", "cmd.run", f"systemctl enable --now patroni@{scope} vip-manager@{scope}")
    api = API_PORT + 1  # the second cluster's REST port

    def vip_on_the_leader_only():
        state = netlab.health(lab.nodes, api)
        holders = [m.name for m in lab.nodes if f"{vip}/24" in m.run(["ip", "-o", "address", "show"]).stdout]
        return state and holders == [state[0]] and state[0]

    leader = netlab.wait_until(f"the VIP on the leader of {scope} only", vip_on_the_leader_only, 120)
    stopped = time.monotonic()
    lab.salt(leader, "service.stop", f"patroni@{scope}")
    others = [machine for machine in lab.nodes if machine.name != leader]

    def vip_on_a_new_leader():
        new = netlab.leader_among(others, api)
        holders = [m.name for m in lab.nodes if f"{vip}/24" in m.run(["ip", "-o", "address", "show"]).stdout]
        return new and holders == [new] and new

    new_leader = netlab.wait_until("the VIP on the new leader only", vip_on_a_new_leader, 120)
    timings[f"lab C: leader's Patroni stopped → VIP on the new leader ({lab.release})"] = time.monotonic() - stopped
    assert new_leader != leader
    versions = lab.salt("*", "cmd.run", "dpkg-query -W -f='${Version}' vip-manager")
    assert all(version.startswith("1.0.2") for version in versions.values()), versions
