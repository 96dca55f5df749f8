"""A real 3-member cluster the Debian way (lab tier B): configs from createconfig, the Debian package's Patroni
run as postgres, bootstrap through createcluster and replicas through clone.

Healthy means one leader and every other member streaming from it on the leader's timeline, as the leader's
REST API reports it; never judged by "running", which a replica reports before it streams.
"""

import time

import netlab
import pytest


FAST = {"ttl": 20, "loop_wait": 5, "retry_timeout": 5}  # the fast timing profile of test-lab.md


class Cluster:
    """One Patroni cluster across the lab's nodes."""

    def __init__(self, lab, name, **createconfig):
        self.lab, self.name, self.scope = lab, name, f"15-{name}"
        self.patroni = {}
        results = [
            node.module(
                "createconfig", "15", name, dcs=lab.dcs(), program=str(lab.program), dynamic=FAST, **createconfig
            )
            for node in lab.nodes
        ]
        self.port = results[0]["port"]
        self.api_port = results[0]["restapi_port"]
        assert all((r["port"], r["restapi_port"]) == (self.port, self.api_port) for r in results)

    def node(self, name):
        return next(node for node in self.lab.nodes if node.name == name)

    def start(self, node):
        log = node.root / f"patroni-{self.scope}.log"
        self.patroni[node.name] = node.spawn(["/usr/bin/patroni", f"/etc/patroni/{self.scope}.yml"], "postgres", log)

    def healthy(self):
        return netlab.health(self.lab.nodes, self.api_port)

    def wait_healthy(self, timeout=120):
        return netlab.wait_until(f"{self.scope} healthy", self.healthy, timeout)

    def logs(self):
        return "\n".join(
            f"===== {node.name}\n" + (node.root / f"patroni-{self.scope}.log").read_text()[-3000:]
            for node in self.lab.nodes
            if (node.root / f"patroni-{self.scope}.log").exists()
        )

    def wait_rows(self, node, table, expected, timeout=60):
        def probe():
            return node.psql(f"SELECT count(*) FROM {table}", port=self.port) == str(expected)

        netlab.wait_until(f"{expected} rows of {table} on {node.name}", probe, timeout)


@pytest.fixture(scope="module")
def lab():
    with netlab.Lab(nodes=3) as lab:
        yield lab


@pytest.fixture(scope="module")
def started_cluster(lab, timings):
    cluster = Cluster(lab, "main", authentication={"replication": {"password": "lab-replication"}})
    started = time.monotonic()
    for node in lab.nodes:
        cluster.start(node)
    try:
        cluster.wait_healthy()
    except TimeoutError:
        pytest.fail(f"15-main never became healthy\n{cluster.logs()}")
    timings["15-main: start to healthy (3 members, streaming)"] = time.monotonic() - started
    return cluster


@pytest.fixture
def main_cluster(started_cluster):
    """15-main with every member streaming, whatever an earlier test did to it (each test brings its own rows)."""
    started_cluster.wait_healthy(timeout=180)
    return started_cluster


def test_bootstrap_and_clone_give_streaming_replicas_with_the_rows(main_cluster):
    leader_name, timeline = main_cluster.healthy()
    leader = main_cluster.node(leader_name)
    start_conf = leader.run(["cat", "/etc/postgresql/15/main/start.conf"]).stdout.splitlines()
    assert [line for line in start_conf if line.strip() and not line.startswith("#")] == ["manual"]
    leader.psql("CREATE TABLE lab_rows AS SELECT g AS id FROM generate_series(1, 1000) AS g", port=main_cluster.port)
    for node in main_cluster.lab.nodes:
        main_cluster.wait_rows(node, "lab_rows", 1000)
        listing = node.run(["pg_lsclusters", "-h"]).stdout.split()
        assert listing[:3] == ["15", "main", str(main_cluster.port)], listing  # pg-common knows every member
    assert timeline == 1


def test_dashed_cluster_name(lab, main_cluster, timings):
    """15-my-app next to 15-main: version 15, cluster my-app, on the next port, in both methods."""
    cluster = Cluster(lab, "my-app", authentication={"replication": {"password": "lab-replication-2"}})
    assert (cluster.port, cluster.api_port) == (main_cluster.port + 1, main_cluster.api_port + 1)
    started = time.monotonic()
    for node in lab.nodes:
        cluster.start(node)
    try:
        leader_name, _ = cluster.wait_healthy()
    except TimeoutError:
        pytest.fail(f"15-my-app never became healthy\n{cluster.logs()}")
    timings["15-my-app: start to healthy"] = time.monotonic() - started
    leader = cluster.node(leader_name)
    leader.psql("CREATE TABLE app_rows AS SELECT 1 AS id", port=cluster.port)
    for node in lab.nodes:
        cluster.wait_rows(node, "app_rows", 1)
        assert node.run(["test", "-f", "/etc/postgresql/15/my-app/postgresql.conf"], check=False).returncode == 0
        assert node.run(["test", "-e", "/etc/postgresql/15/app"], check=False).returncode == 1  # Debian's bug
    for node in lab.nodes:
        cluster.patroni[node.name].terminate()  # frees CPU for the failover timings below
    for node in lab.nodes:
        cluster.patroni[node.name].wait(timeout=60)


def test_crashed_leader_is_replaced_and_rejoins_unattended(main_cluster, timings):
    old_leader_name, old_timeline = main_cluster.healthy()
    old_leader = main_cluster.node(old_leader_name)
    others = [node for node in main_cluster.lab.nodes if node is not old_leader]
    rows = "DROP TABLE IF EXISTS crash_rows; CREATE TABLE crash_rows AS SELECT g AS id FROM generate_series(1, 2000) g"
    old_leader.psql(rows, port=main_cluster.port)
    for node in others:
        main_cluster.wait_rows(node, "crash_rows", 2000)

    crashed = time.monotonic()
    old_leader.kill_all()  # SIGKILL of Patroni and every postgres process

    new_leader_name = netlab.wait_until(
        "a new leader", lambda: netlab.leader_among(others, main_cluster.api_port), timeout=90
    )
    timings["failover: leader SIGKILL to new leader"] = time.monotonic() - crashed
    new_leader = main_cluster.node(new_leader_name)
    new_leader.psql("INSERT INTO crash_rows SELECT g FROM generate_series(2001, 2500) AS g", port=main_cluster.port)

    restarted = time.monotonic()
    main_cluster.start(old_leader)
    try:
        leader_name, timeline = main_cluster.wait_healthy(timeout=180)
    except TimeoutError:
        pytest.fail(f"the old leader did not rejoin\n{main_cluster.logs()}")
    timings["rejoin: old leader restart to streaming on new timeline"] = time.monotonic() - restarted
    assert leader_name == new_leader_name and timeline > old_timeline
    main_cluster.wait_rows(old_leader, "crash_rows", 2500)


def test_wiped_replica_reclones_by_itself(main_cluster, timings):
    """A replica whose data is gone (a replaced disk) is cloned again by Patroni, through clone, unattended.

    The member is stopped first: wiping under a running server races it, and the files it writes meanwhile
    leave a directory that is neither empty nor valid, which Patroni 3.0.2 never re-clones.
    """
    leader_name, timeline = main_cluster.healthy()
    leader = main_cluster.node(leader_name)
    rows = "DROP TABLE IF EXISTS wipe_rows; CREATE TABLE wipe_rows AS SELECT g AS id FROM generate_series(1, 500) g"
    leader.psql(rows, port=main_cluster.port)
    replica = next(node for node in main_cluster.lab.nodes if node.name != leader_name)
    main_cluster.wait_rows(replica, "wipe_rows", 500)
    main_cluster.patroni[replica.name].terminate()  # Patroni stops its postgres cleanly
    main_cluster.patroni[replica.name].wait(timeout=60)
    data_dir = "/var/lib/postgresql/15/main"
    replica.run(["find", data_dir, "-mindepth", "1", "-delete"])
    assert replica.run(["find", data_dir, "-mindepth", "1", "-maxdepth", "1"]).stdout.strip() == ""
    log = replica.root / "patroni-15-main.log"
    clones_before = log.read_text().count("clone 15-main: done")
    wiped = time.monotonic()
    main_cluster.start(replica)
    try:
        assert main_cluster.wait_healthy(timeout=180) == (leader_name, timeline)
    except TimeoutError:
        pytest.fail(f"the wiped replica did not re-clone\n{main_cluster.logs()}")
    timings["wiped replica: start to streaming again"] = time.monotonic() - wiped
    main_cluster.wait_rows(replica, "wipe_rows", 500)
    assert log.read_text().count("clone 15-main: done") == clones_before + 1
