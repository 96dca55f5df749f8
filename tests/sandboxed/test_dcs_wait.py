"""``patroni_debian.dcs_reachable`` with ``wait``: the etcd of pillar etcd on hosts of its own may start beside the
run that asks for it (orch.patroni starts it there while the Patroni members' formula runs), so a member asks for
it until it answers; any other DCS is asked once. On sandboxed hosts (tests/sandbox.py): eth0 10.0.0.11/24, and
10.0.0.5 added for an etcd member that starts listening 1.5 s after the question."""

import json

import sandbox

ASK = """
import json, socket, subprocess, sys, threading, time
sys.path.insert(0, sys.argv[1])
import patroni_debian as module
import patroni_debian_config as config
import patroni_debian_render as render
render.DCS_CONNECT_TIMEOUT = 0.2
subprocess.run(["ip", "address", "add", "10.0.0.5/24", "dev", "eth0"], check=True)
listening = []

def listen_later():
    time.sleep(1.5)
    sock = socket.socket()
    sock.bind(("10.0.0.5", 2379))
    sock.listen()
    listening.append(sock)

said = {}
for case, pillar, wait, later in json.loads(sys.argv[2]):
    config.__pillar__ = pillar
    starter = threading.Thread(target=listen_later)
    if later:
        starter.start()
    try:
        said[case] = config.dcs_reachable("15", "main", wait=wait)
    except (module.CommandExecutionError, module.SaltInvocationError) as exc:
        said[case] = str(exc)
    if later:
        starter.join()
    while listening:
        listening.pop().close()
print(json.dumps(said))
"""

CLUSTERS = {"15-main": {"authentication": {"replication": {"password": "a-long-secret"}}}}
ETCD = {"cluster": "dcs", "members": {"e1": "10.0.0.5", "e2": "10.0.0.6", "e3": "10.0.0.7"}}
PILLAR_ETCD = {"patroni": {"clusters": CLUSTERS}, "etcd": ETCD}
PATRONI_DCS = {"patroni": {"clusters": CLUSTERS, "dcs": {"etcd3": {"hosts": ["10.0.0.5:2379"]}}}, "etcd": ETCD}


def test_the_etcd_of_pillar_etcd_is_asked_for_until_it_answers_and_another_dcs_once(tmp_path):
    cases = [
        ("pillar etcd, starting beside the run", PILLAR_ETCD, 20, True),
        ("pillar etcd, never answering", PILLAR_ETCD, 2, False),
        ("pillar etcd, no wait asked", PILLAR_ETCD, 0, True),
        ("patroni:dcs, starting later", PATRONI_DCS, 20, True),
        ("pillar etcd, a wait that is no number of seconds", PILLAR_ETCD, "soon", False),
    ]
    argv = [sandbox.sys.executable, "-c", ASK, str(sandbox.REPO / "_modules"), json.dumps(cases)]
    outcome = sandbox.run(sandbox.Host(dcs_yml=None), tmp_path, argv)
    assert outcome.returncode == 0 and "Traceback" not in outcome.stderr, outcome.stderr
    said = json.loads(outcome.stdout)
    answered = said["pillar etcd, starting beside the run"]
    assert answered["dcs"] == "etcd3" and answered["endpoint"] == "10.0.0.5:2379" and answered["waited"] >= 1, said
    never = said["pillar etcd, never answering"]
    assert "the DCS (etcd3) does not answer at 10.0.0.5:2379" in never and never.endswith("(asked for 2 s)"), never
    for once in ("pillar etcd, no wait asked", "patroni:dcs, starting later"):
        assert said[once].startswith("15-main: the DCS (etcd3) does not answer at 10.0.0.5:2379"), said[once]
        assert "asked for" not in said[once], said[once]
    assert "wait" in said["pillar etcd, a wait that is no number of seconds"], said
    assert outcome.files == {}
