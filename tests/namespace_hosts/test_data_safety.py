"""createcluster and clone refuse whatever would lose data, and leave that data exactly as it was.

Real pg-common clusters on one lab node (tests/netlab.py); the program door is run as postgres, the way
Patroni runs it, and the Salt door as root.
"""

import netlab
import pytest
import sandbox


REFUSED = 3


@pytest.fixture(scope="module")
def node():
    with netlab.Lab(nodes=1) as lab:
        yield lab.nodes[0]


def fingerprint(node, *paths, folder_times=True):
    """Every file under ``paths`` with its size, mode, owner and modification time.

    ``folder_times=False`` leaves out the times of folders: postgres (Patroni's user) may not set them back
    on the root-owned folders it adds files to.
    """
    proc = node.run(["find", *paths, "-printf", "%p %s %m %u %y %T@\n"], check=False)
    lines = proc.stdout.splitlines()
    if not folder_times:
        lines = [line.rsplit(" ", 1)[0] if line.split()[-2] == "d" else line for line in lines]
    return sorted(lines) + [f"exit {proc.returncode}"]


def door(node, *args):
    """The program door, as postgres: what Patroni runs."""
    return node.run(["/usr/bin/python3", str(node.lab.program), *args], user="postgres", check=False)


def assert_refused(proc, *words):
    assert proc.returncode == REFUSED, proc.stdout + proc.stderr
    assert "refused" in proc.stderr
    for word in words:
        assert word in proc.stderr


@pytest.fixture(scope="module")
def safe(node):
    """Cluster 15/safe, created through the Salt door and running, with a table in it."""
    result = node.module("createcluster", "15", "safe")
    assert result["datadir"] == "/var/lib/postgresql/15/safe"
    node.run(["pg_ctlcluster", "15", "safe", "start"])
    port = node.run(["pg_conftool", "-s", "15", "safe", "show", "port"]).stdout.strip()
    node.psql("CREATE TABLE precious AS SELECT 42 AS answer", port=port)
    return port


def test_createcluster_refuses_an_existing_cluster(node, safe):
    before = fingerprint(node, "/var/lib/postgresql/15/safe", "/etc/postgresql/15/safe")
    proc = door(node, "createcluster", "--scope=15-safe", "--datadir=/var/lib/postgresql/15/safe")
    assert_refused(proc, "15/safe already exists")
    assert fingerprint(node, "/var/lib/postgresql/15/safe", "/etc/postgresql/15/safe") == before
    assert node.psql("SELECT answer FROM precious", port=safe) == "42"


@pytest.fixture
def non_empty(node):
    """/var/lib/postgresql/15/other: postgres's, holding a file that is no cluster's."""
    node.run(["install", "-d", "-o", "postgres", "-g", "postgres", "/var/lib/postgresql/15/other"])
    node.run(["sh", "-c", "echo keep > /var/lib/postgresql/15/other/data"])


def test_createcluster_refuses_a_non_empty_data_directory(node, non_empty):
    before = fingerprint(node, "/var/lib/postgresql/15/other")
    assert_refused(
        door(node, "createcluster", "--scope=15-other", "--datadir=/var/lib/postgresql/15/other"), "not empty"
    )
    assert fingerprint(node, "/var/lib/postgresql/15/other") == before
    assert node.run(["test", "-e", "/etc/postgresql/15/other"], check=False).returncode == 1


def test_clone_refuses_a_data_directory_in_use_by_a_running_server(node, safe):
    before = fingerprint(node, "/var/lib/postgresql/15/safe")[-1:]  # a running server's files change on their own
    proc = door(
        node,
        "clone",
        "--scope=15-thief",
        "--role=replica",
        "--datadir=/var/lib/postgresql/15/safe",
        f"--connstring=host=127.0.0.1 port={safe}",
    )
    assert_refused(proc, "in use by a running server")
    assert fingerprint(node, "/var/lib/postgresql/15/safe")[-1:] == before
    assert node.psql("SELECT answer FROM precious", port=safe) == "42"
    assert node.run(["test", "-e", "/etc/postgresql/15/thief"], check=False).returncode == 1


def test_clone_refuses_a_non_empty_data_directory(node, non_empty):
    before = fingerprint(node, "/var/lib/postgresql/15/other")
    proc = door(
        node, "clone", "--scope=15-other", "--datadir=/var/lib/postgresql/15/other", "--connstring=host=127.0.0.1"
    )
    assert_refused(proc, "not empty")
    assert fingerprint(node, "/var/lib/postgresql/15/other") == before


def test_restore_in_place_refuses_a_running_server_s_data_directory(node, safe):
    """A replica from the repository keeps its data for pgBackRest's --delta: never another running cluster's."""
    before = fingerprint(node, "/var/lib/postgresql/15/safe")[-1:]  # a running server's files change on their own
    proc = door(node, "restore", "--scope=15-thief", "--datadir=/var/lib/postgresql/15/safe", "--stanza=15-thief")
    assert_refused(proc, "in use by a running server")
    assert fingerprint(node, "/var/lib/postgresql/15/safe")[-1:] == before
    assert node.psql("SELECT answer FROM precious", port=safe) == "42"


def test_restore_in_place_refuses_data_that_is_not_the_cluster_s(node, non_empty):
    before = fingerprint(node, "/var/lib/postgresql/15/other")
    proc = door(node, "restore", "--scope=15-other", "--datadir=/var/lib/postgresql/15/other", "--stanza=15-other")
    assert_refused(proc, "not cluster 15/other's in pg-common")
    assert fingerprint(node, "/var/lib/postgresql/15/other") == before
    assert node.run(["test", "-e", "/etc/postgresql/15/other"], check=False).returncode == 1


def test_clone_refuses_to_drop_its_cluster_while_it_runs(node, safe):
    before = fingerprint(node, "/etc/postgresql/15/safe")
    proc = door(
        node, "clone", "--scope=15-safe", "--datadir=/var/lib/postgresql/15/fresh", "--connstring=host=127.0.0.1"
    )
    assert_refused(proc, "15/safe is running")
    assert fingerprint(node, "/etc/postgresql/15/safe") == before
    assert node.psql("SELECT answer FROM precious", port=safe) == "42"


def test_clone_refuses_to_drop_its_cluster_that_keeps_data_elsewhere(node, safe):
    node.run(["pg_ctlcluster", "15", "safe", "stop"])
    try:
        before = fingerprint(node, "/var/lib/postgresql/15/safe", "/etc/postgresql/15/safe")
        proc = door(
            node, "clone", "--scope=15-safe", "--datadir=/var/lib/postgresql/15/fresh", "--connstring=host=127.0.0.1"
        )
        assert_refused(proc, "keeps its data in /var/lib/postgresql/15/safe")
        assert fingerprint(node, "/var/lib/postgresql/15/safe", "/etc/postgresql/15/safe") == before
    finally:
        node.run(["pg_ctlcluster", "15", "safe", "start"])
    assert node.psql("SELECT answer FROM precious", port=safe) == "42"


def test_clone_refuses_the_emptied_data_directory_of_another_cluster(node):
    node.module("createcluster", "15", "emptied")
    node.run(["find", "/var/lib/postgresql/15/emptied", "-mindepth", "1", "-delete"])
    before = fingerprint(node, "/etc/postgresql/15/emptied")
    proc = door(
        node, "clone", "--scope=15-thief", "--datadir=/var/lib/postgresql/15/emptied", "--connstring=host=127.0.0.1"
    )
    assert_refused(proc, "belongs to cluster 15/emptied")
    assert fingerprint(node, "/etc/postgresql/15/emptied") == before


def test_bad_arguments_exit_2_and_touch_nothing(node):
    before = fingerprint(node, "/etc/postgresql", "/var/lib/postgresql")
    for args in (
        ["clone"],
        ["createcluster", "--scope=main"],
        ["createcluster", "--scope=15-a/b"],
        ["nonsense"],
        ["clone", "--scope=15-x", "--datadir=relative", "--connstring=host=a"],
        ["createcluster", "15", "main"],
    ):
        proc = door(node, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert fingerprint(node, "/etc/postgresql", "/var/lib/postgresql") == before


def test_clone_through_salt_door_copies_a_running_cluster_with_a_password(node, safe):
    """A real pg_basebackup as postgres, authenticated through a private pgpass file that is gone afterwards.
    Run by root (as Salt runs it), the data directory's new parent folders are postgres's all the same, or
    Patroni could never remove or rename the data directory to re-clone it (reinit, a failed rewind). The source
    checkpoints at once for it, as its log says (PostgreSQL logs checkpoints by default from 15)."""
    node.psql("ALTER ROLE postgres PASSWORD 'Cl0ne-secret'", port=safe)
    # dirty buffers, which a spread checkpoint would pace
    node.psql("CREATE TABLE IF NOT EXISTS ballast AS SELECT generate_series(1, 1000) AS n", port=safe)
    private = ["find", "/tmp", "-maxdepth", "1", "-name", "patroni-debian-*"]  # its folder for the pgpass file
    before = set(node.run(private).stdout.split())
    source_log = "/var/log/postgresql/postgresql-15-safe.log"
    logged = len(node.run(["cat", source_log]).stdout)
    result = node.module(
        "clone",
        "15",
        "copy",
        "/var/lib/postgresql/clones/15/copy",
        f"host=127.0.0.1 port={safe} user=postgres password=Cl0ne-secret",
    )
    checkpoints = [
        line for line in node.run(["cat", source_log]).stdout[logged:].splitlines() if "checkpoint starting" in line
    ]
    assert checkpoints and all("immediate" in line for line in checkpoints), checkpoints
    parents = node.run(["stat", "-c", "%U %a", "/var/lib/postgresql/clones", "/var/lib/postgresql/clones/15"])
    assert parents.stdout.split("\n")[:2] == ["postgres 755", "postgres 755"], parents.stdout
    assert result["source"] == f"user=postgres host=127.0.0.1 port={safe}"  # the password stays out
    listing = node.run(["pg_lsclusters", "-h"]).stdout
    assert any(line.split()[:2] == ["15", "copy"] for line in listing.splitlines())
    owner = node.run(["stat", "-c", "%U", "/var/lib/postgresql/clones/15/copy/PG_VERSION"]).stdout.strip()
    assert owner == "postgres"
    node.run(["pg_ctlcluster", "15", "copy", "start"])
    copy_port = node.run(["pg_conftool", "-s", "15", "copy", "show", "port"]).stdout.strip()
    assert node.psql("SELECT answer FROM precious", port=copy_port) == "42"
    assert set(node.run(private).stdout.split()) == before  # the private pgpass file is gone, with its folder
    plaintext = node.run(["grep", "-rl", "Cl0ne-secret", "/var/lib/postgresql", "/var/log/postgresql"], check=False)
    assert plaintext.returncode == 1, plaintext.stdout  # in no data file and no log, on source or copy


def test_createcluster_refuses_the_emptied_data_directory_of_another_cluster(node):
    """pg_dropcluster of either cluster would remove the other's data: refused, as clone refuses it."""
    node.module("createcluster", "15", "emptied2")
    node.run(["find", "/var/lib/postgresql/15/emptied2", "-mindepth", "1", "-delete"])
    before = fingerprint(node, "/etc/postgresql", "/var/lib/postgresql")
    proc = door(node, "createcluster", "--scope=15-thief2", "--datadir=/var/lib/postgresql/15/emptied2")
    assert_refused(proc, "belongs to cluster 15/emptied2")
    assert fingerprint(node, "/etc/postgresql", "/var/lib/postgresql") == before


def test_two_createclusters_at_once_on_one_data_directory_have_one_winner(node):
    calls = " & ".join(
        f"/usr/bin/python3 {node.lab.program} createcluster --scope=15-race{n} --datadir=/var/lib/postgresql/15/race"
        f" 2> /tmp/race{n}; echo $? > /tmp/race{n}.exit"
        for n in (1, 2)
    )
    node.run(["sh", "-c", f"({calls}) ; wait"], user="postgres")
    exits = sorted(node.run(["cat", f"/tmp/race{n}.exit"]).stdout.strip() for n in (1, 2))
    assert exits == ["0", str(REFUSED)], [node.run(["cat", f"/tmp/race{n}"]).stdout for n in (1, 2)]
    owners = [
        line.split()[1]
        for line in node.run(["pg_lsclusters", "-h"]).stdout.splitlines()
        if line.split()[5] == "/var/lib/postgresql/15/race"
    ]
    assert len(owners) == 1, owners


@pytest.fixture
def quiet(node):
    """No server of another test's running while this one compares the host before and after: a running server
    rewrites its postmaster.pid and log on its own time. They run again afterwards."""
    clusters = [line.split() for line in node.run(["pg_lsclusters", "-h"]).stdout.splitlines()]
    online = [fields[:2] for fields in clusters if fields[3].startswith("online")]
    for version, name in online:
        node.run(["pg_ctlcluster", version, name, "stop"])
    yield
    for version, name in online:
        node.run(["pg_ctlcluster", version, name, "start"])


def test_a_failed_clone_leaves_the_host_as_it_found_it(node, quiet):
    """pg_basebackup cannot reach its source: the cluster pg_createcluster registered is gone again."""
    watched = ("/etc/postgresql", "/var/lib/postgresql", "/var/log/postgresql")
    before = fingerprint(node, *watched, folder_times=False)
    proc = door(
        node,
        "clone",
        "--scope=15-orphan",
        "--datadir=/var/lib/postgresql/15/orphan",
        "--connstring=host=127.0.0.1 port=1 user=replicator connect_timeout=2",
    )
    assert proc.returncode == 1 and "failed" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert fingerprint(node, *watched, folder_times=False) == before
    assert "orphan" not in node.run(["pg_lsclusters", "-h"]).stdout


def test_a_failed_createcluster_leaves_the_host_as_it_found_it(node, quiet):
    """initdb runs out of space on a 1 MiB file system: folders, config and log made on the way are removed."""
    node.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", "/srv"])
    node.run(["install", "-d", "-o", "postgres", "-g", "postgres", "/srv/pg"])
    try:
        watched = ("/etc/postgresql", "/srv", "/var/log/postgresql")
        before = fingerprint(node, *watched)
        proc = node.run(
            [
                "/usr/bin/python3",
                str(node.lab.program),
                "createcluster",
                "--scope=15-tiny",
                "--datadir=/srv/pg/15/tiny",
            ],
            check=False,
        )
        assert proc.returncode == 1 and "failed" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert fingerprint(node, *watched) == before
        assert "tiny" not in node.run(["pg_lsclusters", "-h"]).stdout
    finally:
        node.run(["umount", "/srv"])


def test_the_door_as_postgres_on_a_data_directory_it_cannot_read_says_so(node):
    node.run(["install", "-d", "-m", "0700", "/var/lib/postgresql/15/locked"])
    node.run(["touch", "/var/lib/postgresql/15/locked/PG_VERSION"])
    for action in (["createcluster", "--scope=15-locked"], ["clone", "--scope=15-locked", "--connstring=host=a"]):
        proc = door(node, *action, "--datadir=/var/lib/postgresql/15/locked")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "/var/lib/postgresql/15/locked cannot be read as postgres" in proc.stderr


@pytest.fixture
def basebackup_spy(node):
    """The real pg_basebackup, behind a wrapper that records its arguments (bind-mounted in the node only)."""
    real = node.lab.root / "real-pg_basebackup"
    record = node.lab.root / "pg_basebackup.argv"
    wrapper = node.lab.root / "pg_basebackup-spy"
    node.run(["cp", "/usr/lib/postgresql/15/bin/pg_basebackup", str(real)])
    record.write_text("")
    record.chmod(0o666)
    wrapper.write_text(f'#!/bin/sh\nprintf \'%s\\n\' "$@" >> {record}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    node.run(["mount", "--bind", str(wrapper), "/usr/lib/postgresql/15/bin/pg_basebackup"])
    yield record
    node.run(["umount", "/usr/lib/postgresql/15/bin/pg_basebackup"])


@pytest.mark.parametrize(
    "name,connstring",
    [
        ("uri", "postgresql://postgres:{password}@127.0.0.1:{port}/postgres?sslpassword={sslpassword}&sslmode=disable"),
        ("keyvalue", "host=127.0.0.1 port={port} user=postgres password='{password}' sslpassword={sslpassword}"),
    ],
)
def test_clone_keeps_secrets_of_every_syntax_out_of_arguments_and_messages(
    node, safe, basebackup_spy, name, connstring
):
    """A real pg_basebackup against a real server, authenticated by the password the connstring carried."""
    password, sslpassword = "Uri-Pw-7f3e", "Ssl-Pw-91ab"
    node.psql(f"ALTER ROLE postgres PASSWORD '{password}'", port=safe)
    given = connstring.format(password=password, sslpassword=sslpassword, port=safe)
    proc = node.run(sandbox.module_argv("clone", "15", f"spy-{name}", f"/var/lib/postgresql/15/spy-{name}", given))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recorded = basebackup_spy.read_text()
    # the spy saw the real call, into a folder beside the data directory while initdb ran; that folder moved in
    assert f"--pgdata\n/var/lib/postgresql/15/.spy-{name}.clone-" in recorded
    beside = node.run(["find", "/var/lib/postgresql/15", "-maxdepth", "1", "-name", "*.clone-*"]).stdout
    assert beside == ""
    for secret in (password, sslpassword):
        assert secret not in recorded and secret not in proc.stdout + proc.stderr
    assert node.run(["test", "-f", f"/var/lib/postgresql/15/spy-{name}/PG_VERSION"]).returncode == 0
    leftovers = node.run(["find", "/tmp", "-maxdepth", "1", "-name", "patroni-debian-*"]).stdout
    assert leftovers.strip() == ""


@pytest.mark.parametrize("where", ["mounted", "lockedparent"])
def test_clone_where_no_folder_beside_can_be_had_copies_into_the_data_directory(node, safe, basebackup_spy, where):
    """The copy runs beside initdb, into a folder next to the data directory that then moves in. Where no such
    folder can be had, the data directory a mount point (no rename crosses into it) or its parent not writable
    by postgres (who runs the program under Patroni), pg_basebackup copies into the data directory after
    initdb, as Debian's script does; nothing is left beside it either way."""
    parent = f"/var/lib/postgresql/{where}/15"
    datadir = f"{parent}/main"
    node.run(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", datadir])
    if where == "mounted":
        uid, gid = node.run(["id", "-u", "postgres"]).stdout.strip(), node.run(["id", "-g", "postgres"]).stdout.strip()
        node.run(["mount", "-t", "tmpfs", "-o", f"size=256m,mode=0700,uid={uid},gid={gid}", "tmpfs", datadir])
    else:
        node.run(["chown", "root:root", parent])
    try:
        proc = door(
            node,
            "clone",
            f"--scope=15-{where}",
            f"--datadir={datadir}",
            f"--connstring=host=/var/run/postgresql port={safe} user=postgres",
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"--pgdata\n{datadir}\n" in basebackup_spy.read_text()
        assert node.run(["ls", "-A", parent]).stdout.split() == ["main"]
        copied = node.run(["ls", datadir]).stdout.split()
        assert "PG_VERSION" in copied and "backup_label" in copied, copied  # a base backup's, not initdb's
        assert any(line.split()[:2] == ["15", where] for line in node.run(["pg_lsclusters", "-h"]).stdout.splitlines())
    finally:
        node.run(["pg_dropcluster", "15", where], check=False)
        if where == "mounted":
            node.run(["umount", datadir])
