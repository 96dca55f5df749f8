"""What the formula's lab tests share: the pillar they give, highstate through the lab's master, its outcome."""

import netlab

DCS = {"etcd3": {"hosts": [netlab.ETCD]}}
PASSWORD = "Formula-Repl-5e2b"
FAST = {"ttl": 20, "loop_wait": 5, "retry_timeout": 5}
API_PORT = 8008


def config_path(version):
    return f"/etc/patroni/{version}-main.yml"


def pillar(version, dynamic=None, password=PASSWORD, more=()):
    """<version>-main (and the clusters named in ``more``) with the fast timing profile."""
    clusters = {}
    for scope in (f"{version}-main", *more):
        clusters[scope] = {"dynamic": {**FAST, **(dynamic or {})}}
        if password:
            clusters[scope]["authentication"] = {"replication": {"password": password}}
    return {"patroni": {"dcs": DCS, "clusters": clusters}}


def highstate(lab, target="*", test=False):
    returns = lab.salt(target, "state.highstate", *(["test=True"] if test else []), timeout=400)
    assert returns and all(isinstance(states, dict) for states in returns.values()), returns
    return returns


def outcomes(returns):
    """``(failed, changed, undecided)``: state ids by minion whose result is False, whose changes are not empty,
    and whose result is None."""
    failed, changed, undecided = [], [], []
    for minion, states in returns.items():
        for key, state in states.items():
            label = f"{minion}: {state.get('__id__', key)}"
            if state["result"] is False:
                failed.append(f"{label}: {state['comment']}")
            if state["changes"]:
                changed.append(label)
            if state["result"] is None:
                undecided.append(label)
    return failed, changed, undecided
