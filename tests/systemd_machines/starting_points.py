"""Starting points: how a test of the machines' tier says what it starts from (see conftest.py)."""

import json
import time

import machines
import netlab
import pytest

API_PORT = 8008


def clean_slate(lab, timings, bare=False, provision=True):
    """Every machine back to the image (``bare``: the one without PostgreSQL, Patroni, etcd or vip-manager),
    etcd emptied, the pillar root back to the lab's default, and with ``provision`` (never on the bare image) this
    checkout's modules and program in place before the minions start."""
    started = time.monotonic()
    lab.starting_point, lab.converged, lab.api_ca = None, None, None
    lab.reset_all(bare=bare, provision=provision and not bare)
    _add(timings, f"machines ({lab.label}): clean slates (3 machines reset, modules in place, minions back)", started)


def starting_point(name, make, check, bare=False, provision=True, adopts=()):
    """A function-scoped fixture ``name`` giving the session's lab in that starting point.

    ``make(lab)`` makes it from a clean slate and returns what the tests get besides the lab (or None);
    ``check(lab)`` returns something comparable that must be the same as when the starting point was made for it
    to be kept (and true: a check that returns None or False says the starting point is gone). ``adopts``: the
    starting points made the same way, with a stricter check (a lab in one of them is taken as it is when
    ``check`` passes).
    """

    def fixture(machine_lab, timings, request):
        lab = machine_lab
        if lab.starting_point in adopts and check(lab):
            lab.starting_point, lab.checked = name, check(lab)
        if lab.starting_point != name or not _still(lab, check):
            clean_slate(lab, timings, bare=bare, provision=provision)
            started = time.monotonic()
            lab.made = make(lab)
            lab.starting_point, lab.checked = name, check(lab)
            _add(timings, f"machines ({lab.label}): starting point '{name}' made", started)
            assert lab.checked, f"starting point {name}: its check fails right after it was made"
        failed = request.session.testsfailed
        yield lab
        if request.session.testsfailed != failed:
            lab.starting_point = None  # a failure may leave anything behind

    fixture.__doc__ = f"Starting point '{name}': {make.__doc__}"
    fixture.starting_point = name  # how tests/unit/test_lab_independence.py knows one
    return pytest.fixture(name=name)(fixture)


_COUNTS = {}


def _add(timings, what, started):
    """Seconds since ``started`` added to the run's total for ``what``, whose line says how many times."""
    times = _COUNTS.get(what, 0)
    total = timings.pop(f"{what}, {times} times", 0.0)
    _COUNTS[what] = times + 1
    timings[f"{what}, {times + 1} times"] = total + time.monotonic() - started


def arrived(lab, name, check):
    """A test that has just made what starting point ``name`` makes says so: the next test may start from it."""
    lab.starting_point, lab.checked, lab.made = name, check(lab), None


def _still(lab, check):
    try:
        return check(lab) == lab.checked
    except Exception:  # noqa: BLE001 - a check that cannot run says the starting point is gone
        return False


def pillar_files(lab):
    """The text of every file of the master's pillar root: a test that changed the pillar must put it back."""
    return machines.files(lab.pillar_root)


def streaming(lab, api_port=API_PORT):
    """Every member streaming from one leader on its timeline (any leader, any timeline), with the same pillar
    and the same live settings in the DCS."""
    if not netlab.health(lab.nodes, api_port):
        return None
    return json.loads(lab.nodes[0].http("/config", port=api_port)), pillar_files(lab)


def untouched(lab):
    """What a test may not change on machines fresh from the image: their clusters, configs, units, data."""
    script = (
        "ls -A /etc/patroni /etc/postgresql /var/lib/postgresql; "
        "systemctl list-units --all --no-legend 'patroni*' 'postgresql@*' 'vip-manager*'; systemctl is-system-running"
    )
    return json.dumps(lab.salt("*", "cmd.run", script), sort_keys=True), pillar_files(lab)


def _fresh(lab):
    """Every machine as its image is (packages installed, nothing configured), etcd empty, modules in place."""


fresh_machines = starting_point("fresh_machines", _fresh, untouched)


def _bare(lab):
    """Machines of the bare image: no PostgreSQL, Patroni, etcd or vip-manager installed (a local apt repository
    of their packages only), given ``tls_pillar`` (the formula's pillar with TLS and etcd from pillar)."""
    lab.set_pillar(tls_pillar(lab))


bare_machines = starting_point("bare_machines", _bare, untouched, bare=True)


def make_orchestrated(lab):
    """Cluster <version>-main rolled out by ``salt-run state.orchestrate orch.patroni`` with the formula's pillar
    (highstate.pillar: fast timing), every member streaming."""
    import highstate

    lab.set_pillar(highstate.pillar(lab))
    code, steps, _ = highstate.orchestrate(lab, "orch.patroni")
    assert code == 0, highstate.failures(steps)
    netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, API_PORT), 120)


orchestrated = starting_point("orchestrated", make_orchestrated, streaming)


def tls_streaming(lab):
    """Every member healthy as the project's own client sees it over https, verified against the cluster's CA
    (``patroni_debian.status`` on pg1: one leader, no problem), with the same pillar."""
    answer = lab.salt("pg1", "patroni_debian.status", lab.version, "main").get("pg1")
    if not isinstance(answer, dict) or answer.get("problems") or not answer.get("leader"):
        return None
    return sorted(answer["members"]), pillar_files(lab)


def tls_pillar(lab, more=()):
    """The formula's pillar with patroni:tls (pg1 the CA server) and the REST API's role, a VIP for
    <version>-main, which every member's certificate names, and no patroni:dcs: the DCS is etcd cluster ``lab`` of
    pillar etcd on the three machines themselves, over TLS with certificates of the same CA, with etcd's v2 API on
    bookworm, whose vip-manager 1.0.2 follows only that (vip-manager2 on trixie follows etcd3)."""
    import highstate

    wanted = highstate.pillar(lab, tls={"ca_server": "pg1"}, more=more)
    del wanted["patroni"]["dcs"]
    wanted["patroni"]["clusters"][f"{lab.version}-main"]["vip"] = lab.slot.vip
    members = {node.name: node.address for node in lab.nodes}
    wanted["etcd"] = {"cluster": "lab", "members": members, "tls": True, "v2": lab.release == "bookworm"}
    return wanted


def make_tls_cluster(lab):
    """Machines of the bare image given ``tls_pillar``, then one highstate on all three at once: the etcd
    package's own member started by its install, then replaced by one etcd cluster of the three over TLS, and on
    it a cluster whose REST API, replication and pg_rewind use TLS, with a VIP. Returns the highstate's returns."""
    import highstate

    lab.set_pillar(tls_pillar(lab))
    returns = highstate.highstate(lab)
    failed, _, _ = highstate.outcomes(returns)
    assert not failed, failed
    trust_cluster_ca(lab)
    netlab.wait_until("every member healthy over https", lambda: tls_streaming(lab), 120)
    return returns


def trust_cluster_ca(lab):
    """The cluster CA's certificate (pillar patroni:tls, made on pg1) copied to this host: the lab's REST API
    calls (``node.http``, ``netlab.health``) go over https, verified against it, until the next clean slate."""
    path = lab.root / "cluster-ca.crt"
    path.write_text(lab.nodes[0].run(["cat", "/etc/patroni/tls/ca.crt"]).stdout)
    lab.api_ca = str(path)


tls_cluster = starting_point("tls_cluster", make_tls_cluster, tls_streaming, bare=True)


def etcd_pillar(lab, **etcd):
    """``tls_pillar`` with the keys of pillar etcd that ``etcd`` gives overridden."""
    wanted = tls_pillar(lab)
    wanted["etcd"].update(etcd)
    return wanted


def etcd_whole(lab):
    """Every member streaming from one leader (as the project's own status says over https), as the members' etcd
    cluster of pillar etcd says is whole (the project's own etcd_status on pg1: its three members, one cluster ID,
    no problem), with the same pillar."""
    answer = lab.salt("pg1", "patroni_debian.etcd_status").get("pg1")
    if not isinstance(answer, dict) or answer.get("problems") or not answer.get("cluster_id"):
        return None
    if not tls_streaming(lab) or not netlab.health(lab.nodes, API_PORT):  # over https: the lab trusts the CA
        return None
    return answer["cluster_id"], sorted(answer["members"]), pillar_files(lab)
