"""From nothing: machines with no PostgreSQL, Patroni, etcd client library or vip-manager installed (only a local
apt repository of their packages, since the lab has no uplink) become a healthy cluster by one highstate: the
formula installs the packages, with Debian's automatic main cluster turned off before postgresql-<version> arrives;
on each release of $PATRONI_DEBIAN_RELEASES. Each test starts from the session's machines reset to the bare image
(``bare_machines``).
"""

import time

import pytest
from highstate import highstate, outcomes
from starting_points import arrived, make_tls_cluster, tls_pillar, tls_streaming


def packages(lab):
    return sorted((f"postgresql-{lab.version}", "patroni", "python3-etcd"))


@pytest.fixture
def bare_lab(bare_machines):
    return bare_machines


def installed(lab):
    query = "dpkg-query -W -f='${Package} ${Status}\\n' " + " ".join(packages(lab)) + " 2>/dev/null || true"
    return {
        minion: sorted(line.split()[0] for line in text.splitlines() if line.endswith("install ok installed"))
        for minion, text in lab.salt("*", "cmd.run", query).items()
    }


def fingerprint(lab):
    # /var/lib/apt/lists too: an apt-get update, which a dry run must not run (issue 18), renews its entries
    script = "find /etc/patroni /etc/postgresql /etc/postgresql-common /var/lib/postgresql /usr/share/patroni-debian "
    script += "/var/lib/apt/lists "
    script += "-printf '%p %s %m %T@\\n' 2>/dev/null | sort; systemctl list-units --all --no-legend 'patroni*'"
    return lab.salt("*", "cmd.run", script)


def test_a_dry_run_on_bare_machines_predicts_everything_and_changes_nothing(bare_lab):
    """With TLS too: the CA, the keys and the certificates are predicted, though the CA server has made nothing."""
    lab = bare_lab
    lab.set_pillar(tls_pillar(lab))
    before = fingerprint(lab)
    failed, changed, undecided = outcomes(highstate(lab, test=True))
    assert not failed, failed
    for name in ("pg1", "pg2", "pg3"):
        for state in (
            "PostgreSQL, Patroni and the DCS client are installed",
            "The program Patroni runs is installed",
            "The member's TLS key exists",
            "The member's certificate is current",
            "The cluster CA's certificate exists" if name == "pg1" else "The cluster CA's certificate is here",
            f"Patroni {lab.version}-main is configured",
            f"Patroni {lab.version}-main is running and healthy",
        ):
            assert f"{name}: {state}" in changed and f"{name}: {state}" in undecided, (state, changed)
    assert installed(lab) == {"pg1": [], "pg2": [], "pg3": []}
    assert fingerprint(lab) == before


def test_one_highstate_takes_bare_machines_to_a_healthy_cluster_with_tls(bare_lab, timings):
    """From the bare image to a healthy cluster by one highstate on all three machines at once, with pillar
    patroni:tls: pg1 makes the cluster's CA while the others wait for it to sign their certificates. The lab is then
    where ``tls_cluster`` starts (test_tls.py checks the TLS)."""
    lab = bare_lab
    assert installed(lab) == {"pg1": [], "pg2": [], "pg3": []}
    started = time.monotonic()
    returns = make_tls_cluster(lab)
    timings[f"formula: bare machines → healthy cluster with TLS (packages installed by highstate) ({lab.release})"] = (
        time.monotonic() - started
    )
    _, changed, _ = outcomes(returns)
    assert all(
        f"{name}: PostgreSQL, Patroni and the DCS client are installed" in changed for name in ("pg1", "pg2", "pg3")
    )
    assert installed(lab) == {name: packages(lab) for name in ("pg1", "pg2", "pg3")}
    status = lab.salt("pg1", "patroni_debian.status", lab.version, "main")["pg1"]
    assert status["timeline"] == 1 and not status["problems"], status
    # the only cluster is Patroni's: Debian created none of its own
    listings = lab.salt("*", "cmd.run", "pg_lsclusters -h")
    assert all(
        [line.split()[:2] for line in text.splitlines()] == [[lab.version, "main"]] for text in listings.values()
    )
    failed, changed, _ = outcomes(highstate(lab))
    assert (failed, changed) == ([], [])
    arrived(lab, "tls_cluster", tls_streaming)
