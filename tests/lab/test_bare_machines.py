"""From nothing: machines with no PostgreSQL, Patroni, etcd client library or vip-manager installed (only a local
apt repository of their packages, since the lab has no uplink) become a healthy cluster by one highstate: the
formula installs the packages, with Debian's automatic main cluster turned off before postgresql-15 arrives.
"""

import time

import machines
import netlab
import pytest
from highstate import API_PORT, highstate, outcomes, pillar

pytestmark = pytest.mark.lab

PACKAGES = ("postgresql-15", "patroni", "python3-etcd")


@pytest.fixture(scope="module")
def bare_lab():
    with machines.MachineLab(machines=3, bare=True) as lab:
        lab.wait_minions()
        yield lab


def installed(lab):
    query = "dpkg-query -W -f='${Package} ${Status}\\n' " + " ".join(PACKAGES) + " 2>/dev/null || true"
    return {
        minion: sorted(line.split()[0] for line in text.splitlines() if line.endswith("install ok installed"))
        for minion, text in lab.salt("*", "cmd.run", query).items()
    }


def test_one_highstate_takes_bare_machines_to_a_healthy_cluster(bare_lab, timings):
    lab = bare_lab
    assert installed(lab) == {"pg1": [], "pg2": [], "pg3": []}
    lab.set_pillar(pillar())
    started = time.monotonic()
    returns = highstate(lab)
    timings["formula: bare machines → healthy cluster (packages installed by highstate)"] = time.monotonic() - started
    failed, changed, _ = outcomes(returns)
    assert not failed, failed
    assert all(
        f"{name}: PostgreSQL, Patroni and the DCS client are installed" in changed for name in ("pg1", "pg2", "pg3")
    )
    assert installed(lab) == {name: sorted(PACKAGES) for name in ("pg1", "pg2", "pg3")}
    leader, timeline = netlab.health(lab.nodes, API_PORT)
    assert timeline == 1
    # the only cluster is Patroni's: Debian created none of its own
    listings = lab.salt("*", "cmd.run", "pg_lsclusters -h")
    assert all([line.split()[:2] for line in text.splitlines()] == [["15", "main"]] for text in listings.values())
    failed, changed, _ = outcomes(highstate(lab))
    assert (failed, changed) == ([], [])
