"""The lab itself: Debian machines booting systemd, each with a salt-minion under systemd, a master on the bridge,
targeting by role, a reset to the image; and a config createconfig writes passes the installed Patroni's own
validation. Each test starts from machines fresh from the image (``fresh_machines``).
"""

import json
import time

import pytest


@pytest.fixture
def lab(fresh_machines):
    return fresh_machines


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
    installed = lab.salt(machine.name, "patroni_debian.install_program")[machine.name]  # as on fresh machines
    assert installed["path"] == "/usr/share/patroni-debian/patroni_debian.py", installed


# What Patroni 3.0.2's validator says of any config without the two keys its schema requires (Patroni 4 does not;
# its maintainers advise against bootstrap.pg_hba): docs/differences.md
PATRONI_3_0_2_SCHEMA = "bootstrap.pg_hba  is not defined.\nbootstrap.initdb  is not defined."


def test_a_generated_config_passes_the_installed_patronis_own_validation(lab):
    """``patroni --validate-config`` of Patroni 4.0.7 finds nothing in a config that createconfig writes (it
    reports two problems in Debian's own template); Patroni 3.0.2's reports only its schema's two required keys.
    A cluster not started yet: the validation also says a running cluster's ports are in use."""
    config = f"/etc/patroni/{lab.version}-check.yml"
    expected = (1, "", PATRONI_3_0_2_SCHEMA) if lab.release == "bookworm" else (0, "", "")
    try:
        created = lab.salt("*", "patroni_debian.createconfig", lab.version, "check", f"dcs={json.dumps(lab.dcs())}")
        assert all(result["written"] == [config] for result in created.values()), created
        validated = lab.salt("*", "cmd.run_all", f"patroni --validate-config {config}")
        for name, result in validated.items():
            assert (result["retcode"], result["stdout"], result["stderr"]) == expected, (name, result)
    finally:
        lab.salt("*", "file.remove", config)
