"""What the formula's lab tests share: the pillar they give, highstate and orchestrations through the lab's master,
their outcome."""

import json

import netlab

PASSWORD = "Formula-Repl-5e2b"
RESTAPI_PASSWORD = "Formula-Api-9c4d"
API_PORT = 8008
CA_FILE = "/etc/patroni/tls/ca.crt"
# orch.patroni's first step (salt/patroni/rollout.sls on every minion concerned)
PREPARE = (
    "Every minion has this release and a fresh pillar, checks the arguments and leaves what pillar no longer declares"
)

# the CA server's signing policy, as the README's Security section shows it
SIGNING_POLICY = {
    "patroni_debian": [
        {"minions": "pg*"},
        {"signing_private_key": "/etc/patroni/tls/ca.key"},
        {"signing_cert": CA_FILE},
        {"basicConstraints": "critical, CA:false"},
        {"keyUsage": "critical, digitalSignature, keyEncipherment"},
        {"extendedKeyUsage": "serverAuth, clientAuth"},
        {"subjectKeyIdentifier": "hash"},
        {"authorityKeyIdentifier": "keyid:always"},
    ]
}


def backup_pillars(lab, repository):
    """The members' pillar (the formula's with TLS, and ``patroni:backup``) and the repository host's."""
    backup = {"repository": {repository.name: repository.address}}
    members = pillar(lab, tls={"ca_server": "pg1"})
    members["patroni"]["backup"] = backup
    own = {"patroni": {"role": "backup", "tls": {"ca_server": "pg1"}, "backup": backup}}
    return members, own


def write_pillars(lab, members, own, repository, only=None):
    """The members' pillar, the repository host's, and ``only``'s keys on the one member it names (``{minion:
    pillar}``, merged over the members' by Salt)."""
    (lab.pillar_root / "lab.sls").write_text(json.dumps(members))
    (lab.pillar_root / "repository.sls").write_text(json.dumps(own))
    top = f"base:\n  'L@pg1,pg2,pg3':\n    - match: compound\n    - lab\n  '{repository.name}':\n    - repository\n"
    for minion, more in (only or {}).items():
        (lab.pillar_root / f"only-{minion}.sls").write_text(json.dumps(more))
        top += f"  '{minion}':\n    - only-{minion}\n"
    (lab.pillar_root / "top.sls").write_text(top)
    assert all(lab.salt("*", "saltutil.refresh_pillar", "wait=True").values())


def config_path(version):
    return f"/etc/patroni/{version}-main.yml"


def pillar(lab, dynamic=None, password=PASSWORD, more=(), tls=None):
    """<version>-main (and the clusters named in ``more``) with the fast timing profile, on the lab's etcd. With
    ``tls`` (pillar patroni:tls, e.g. ``{"ca_server": "pg1"}``), the REST API's role too, and the CA server's
    signing policy."""
    clusters = {}
    for scope in (f"{lab.version}-main", *more):
        clusters[scope] = {"timing": "fast", **({"dynamic": dynamic} if dynamic else {})}
        if password:
            clusters[scope]["authentication"] = {"replication": {"password": password}}
        if tls:
            restapi = {"username": "patroni", "password": RESTAPI_PASSWORD}
            clusters[scope].setdefault("authentication", {})["restapi"] = restapi
    if not tls:
        return {"patroni": {"dcs": lab.dcs(), "clusters": clusters}}
    return {"patroni": {"dcs": lab.dcs(), "clusters": clusters, "tls": tls}, "x509_signing_policies": SIGNING_POLICY}


def machine(lab, name):
    """The lab machine named ``name`` (pg1, pg2, …)."""
    return next(node for node in lab.nodes if node.name == name)


def start_times(lab, names=None):
    """Each member's postmaster start time (of ``names`` only, when given): a restart would change it. Every member
    asked for must answer."""
    statuses = netlab.member_statuses(lab.nodes, API_PORT)
    return {name: statuses[name]["postmaster_start_time"] for name in names or statuses}


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


def orchestrate(lab, sls, *args):
    """``(exit code, {step id: its state result}, output)`` of one ``salt-run state.orchestrate <sls>``."""
    code, output = lab.salt_run("state.orchestrate", sls, "--out=json", *args)
    data = json.JSONDecoder().raw_decode(output[output.index("{") :])[0]
    steps = next(iter(data["data"].values()))
    return code, {state["__id__"]: state for state in steps.values()}, output


def prepared(steps, minion):
    """What ``minion`` said in orch.patroni's first step: its state ``rollout_prepared`` (comment, changes)."""
    states = steps[PREPARE]["changes"]["ret"][minion]
    return next(state for state in states.values() if state["__id__"] == "This minion is ready for the rollout")


def failures(steps):
    """Each failed step's comment and the comments of its minions' failed states: what a person would read."""
    lines = []
    for step in steps.values():
        if step["result"] is False:
            lines.append(f"{step['__id__']}: {step['comment']}")
            for minion, states in (step["changes"].get("ret") or {}).items():
                if isinstance(states, str):  # a function's error
                    lines.append(f"  {minion}: {states}")
                if isinstance(states, list):  # what Salt says when it runs no state (a pillar that failed to render)
                    lines.append(f"  {minion}: {' '.join(map(str, states))}")
                if isinstance(states, dict):
                    for state in states.values():
                        if isinstance(state, dict) and state.get("result") is False:
                            lines.append(f"  {minion}: {state.get('comment')}")
    return "\n".join(lines)


def peers_unanswered(lab, minutes=3):
    """Each member's Patroni's recent warnings that a peer's REST API did not answer, for a failure's message:
    Patroni refuses a switchover as 'no good candidates' when its one look at every candidate's REST API
    (Patroni 3.0.2: 2 s, no retry) failed, and only its log says why."""
    said, unit = {}, f"patroni@{lab.version}-main"
    for node in lab.nodes:
        journal = ["journalctl", "-q", "-o", "short-precise", "--since", f"-{minutes}min", "-u", unit]
        shown = node.run(journal, check=False)
        said[node.name] = [line for line in shown.stdout.splitlines() if "Request failed to" in line][-10:]
    return json.dumps(said, indent=1)
