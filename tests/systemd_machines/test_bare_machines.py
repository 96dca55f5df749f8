"""From nothing: machines with no PostgreSQL, Patroni, etcd client library or vip-manager installed (only a local
apt repository of their packages, since the lab has no uplink) become a healthy cluster by one highstate: the
formula installs the packages, with Debian's automatic main cluster turned off before postgresql-<version> arrives;
on each release of $PATRONI_DEBIAN_RELEASES. Each test starts from the session's machines reset to the bare image
(``bare_machines``).
"""

import time

import pytest
from highstate import highstate, outcomes
from starting_points import arrived, make_tls_cluster, tls_streaming


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
    """With TLS and etcd from pillar too: the CA, the keys and the certificates, etcd's packages and members are
    predicted, though the CA server has made nothing and no etcd runs."""
    lab = bare_lab  # given tls_pillar
    before = fingerprint(lab)
    failed, changed, undecided = outcomes(highstate(lab, test=True))
    assert not failed, failed
    for name in ("pg1", "pg2", "pg3"):
        for state in (
            "etcd's server and client are installed",
            f"etcd member {name}'s TLS key exists",
            f"etcd member {name}'s certificate is current",
            f"etcd member {name} runs and its cluster is whole",
            "PostgreSQL, Patroni and the DCS client are installed",
            "The program Patroni runs is installed",
            "The member's TLS key exists",
            "The member's certificate is current",
            "The cluster CA's certificate exists" if name == "pg1" else "The cluster CA's certificate is here",
            f"Patroni {lab.version}-main is configured",
            f"Patroni {lab.version}-main is running and healthy",
        ):
            assert f"{name}: {state}" in changed and f"{name}: {state}" in undecided, (state, changed)
        # the DCS this run would start cannot answer the dry run: left undecided, not failed
        assert f"{name}: The DCS of {lab.version}-main answers" in undecided, undecided
    assert installed(lab) == {"pg1": [], "pg2": [], "pg3": []}
    assert fingerprint(lab) == before


def test_one_highstate_takes_bare_machines_to_a_healthy_cluster_with_tls(bare_lab, timings):
    """From the bare image to a healthy cluster by one highstate on all three machines at once, with pillar
    patroni:tls and pillar etcd over TLS: pg1 makes the cluster's CA while the others wait for it to sign their
    certificates, etcd's package is installed (its install starts its own one-member cluster), then one etcd
    cluster of the three starts, then Patroni on it. The lab is then where ``tls_cluster`` starts (test_tls.py
    checks the TLS, test_etcd.py the etcd)."""
    lab = bare_lab
    assert installed(lab) == {"pg1": [], "pg2": [], "pg3": []}
    started = time.monotonic()
    returns = make_tls_cluster(lab)
    what = "formula: bare machines → etcd and a healthy cluster, both over TLS (packages installed by highstate)"
    timings[f"{what} ({lab.release})"] = time.monotonic() - started
    _, changed, _ = outcomes(returns)
    assert all(
        f"{name}: PostgreSQL, Patroni and the DCS client are installed" in changed for name in ("pg1", "pg2", "pg3")
    )
    assert installed(lab) == {name: packages(lab) for name in ("pg1", "pg2", "pg3")}
    # the etcd package's install started its own member, which made its folder; the formula's replaced it
    started = lab.salt("*", "cmd.run", "test -d /var/lib/etcd/default/member && echo started")
    assert set(started.values()) == {"started"}, started
    status = lab.salt("pg1", "patroni_debian.status", lab.version, "main")["pg1"]
    assert status["timeline"] == 1 and not status["problems"], status
    # the only cluster is Patroni's: Debian created none of its own
    listings = lab.salt("*", "cmd.run", "pg_lsclusters -h")
    assert all(
        [line.split()[:2] for line in text.splitlines()] == [[lab.version, "main"]] for text in listings.values()
    )
    returns = highstate(lab)
    failed, changed, _ = outcomes(returns)
    shown = {
        minion: {key: state["changes"] for key, state in states.items() if state["changes"]}
        for minion, states in returns.items()
    }
    assert (failed, changed) == ([], []), (failed, shown)
    arrived(lab, "tls_cluster", tls_streaming)
