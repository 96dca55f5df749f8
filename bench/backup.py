#!/usr/bin/env python3
"""Backup and restore throughput with pgBackRest through the repository host, against the size of the data, beside
``pg_basebackup`` of the same data as the floor (issue 23).

One lab of the release: three machines and a fourth, the repository host; cluster <version>-main rolled out by
``orch.patroni`` with TLS and pillar ``patroni:backup`` (archiving from the bootstrap on). Then for each size (GB,
default 0.1 1 5): ``pgbench -i`` at the scale that makes it, a checkpoint, and once each:
  archive  the WAL the load wrote archived (``pg_stat_archiver`` reaches the segment of a ``pg_switch_wal()``);
  backup   ``salt <repository> patroni_debian.backup <v> main``: a full backup, read from a replica
           (``from_replica``) by the repository host, with the formula's settings (zstd); and, beside it, the same
           full backup by hand with pgBackRest's default compression, gzip (``--compress-type=gz``);
  restore  ``pgbackrest restore`` of each of the two into an empty folder on a replica's machine, as the
           program's restore does for a restore or a replica made from the repository;
  floor    ``pg_basebackup -X stream`` of the leader into an empty folder on the same machine, as ``clone`` does.
Prints a line per size on stderr and one JSON line on stdout: seconds, MB/s (of the database's size) and each
against the floor.

Usage (root, after `make test` has built .venv and the images):
    .venv/bin/python bench/backup.py [GB ...] [--release bookworm|trixie]   (default 0.1 1 5, this host's release)
"""

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "systemd_machines"))
import highstate  # noqa: E402
import machines  # noqa: E402
import netlab  # noqa: E402
from starting_points import trust_cluster_ca  # noqa: E402

MB_PER_SCALE = 15.6  # pgbench: one unit of scale is about this much database
SCRATCH = "/var/lib/postgresql/bench-copy"


def psql(node, statement):
    argv = ["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-q", "-c", statement]
    return node.run(argv, timeout=3600).stdout.strip()


def timed(run):
    started = time.monotonic()
    run()
    return time.monotonic() - started


def empty_scratch(node):
    node.run(["rm", "-rf", SCRATCH])
    node.run(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", SCRATCH])


def one_size(lab, repository, gigabytes):
    leader, _ = netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, highstate.API_PORT), 600)
    primary = highstate.machine(lab, leader)
    replica = next(node for node in lab.nodes if node.name != leader)
    scale = max(1, round(gigabytes * 1024 / MB_PER_SCALE))
    pgbench = f"/usr/lib/postgresql/{lab.version}/bin/pgbench"
    primary.run(["runuser", "-u", "postgres", "--", pgbench, "-i", "-q", "-I", "dtGvp", "-s", str(scale)], timeout=3600)
    psql(primary, "CHECKPOINT")
    size = int(psql(primary, "SELECT pg_database_size('postgres')"))
    last = psql(primary, "SELECT pg_walfile_name(pg_switch_wal())")
    archived = "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"
    archive_s = timed(lambda: netlab.wait_until("WAL archived", lambda: psql(primary, archived) >= last, 3600, 0.5))
    netlab.wait_until("every member streaming", lambda: netlab.health(lab.nodes, highstate.API_PORT), 600)

    labels = []

    def backup():
        taken = lab.salt(repository.name, "patroni_debian.backup", lab.version, "main", timeout=3600)
        assert isinstance(taken[repository.name], dict), taken
        labels.append(taken[repository.name]["label"])

    stanza = f"{lab.version}-main"
    restore_argv = ["runuser", "-u", "postgres", "--", "pgbackrest", f"--stanza={stanza}", f"--pg1-path={SCRATCH}"]
    floor_argv = ["runuser", "-u", "postgres", "--", f"/usr/lib/postgresql/{lab.version}/bin/pg_basebackup"]
    source = f"host={primary.address} user=replicator sslmode=verify-full sslrootcert={highstate.CA_FILE}"
    backup_s = timed(backup)
    gzip_argv = ["runuser", "-u", "postgres", "--", "pgbackrest", f"--stanza={stanza}", "--type=full"]
    gzip_s = timed(lambda: repository.run([*gzip_argv, "--compress-type=gz", "backup"], timeout=3600))
    empty_scratch(replica)
    restore_argv += ["--type=none"]
    restore_s = timed(lambda: replica.run([*restore_argv, f"--set={labels[0]}", "restore"], timeout=3600))
    empty_scratch(replica)
    restore_gzip_s = timed(lambda: replica.run([*restore_argv, "restore"], timeout=3600))  # the newest: gzip's
    empty_scratch(replica)
    floor_s = timed(
        lambda: replica.run(
            [*floor_argv, "-D", SCRATCH, "-X", "stream", "-d", source],
            env={"PGPASSWORD": highstate.PASSWORD},
            timeout=3600,
        )
    )
    replica.run(["rm", "-rf", SCRATCH])
    megabytes = size / 1e6
    result = {
        "gigabytes": gigabytes,
        "scale": scale,
        "database_bytes": size,
        "archive_catch_up_s": round(archive_s, 1),
        "backup_s": round(backup_s, 1),
        "backup_gzip_s": round(gzip_s, 1),
        "restore_s": round(restore_s, 1),
        "restore_gzip_s": round(restore_gzip_s, 1),
        "pg_basebackup_s": round(floor_s, 1),
        "backup_mb_s": round(megabytes / backup_s, 1),
        "backup_gzip_mb_s": round(megabytes / gzip_s, 1),
        "restore_mb_s": round(megabytes / restore_s, 1),
        "restore_gzip_mb_s": round(megabytes / restore_gzip_s, 1),
        "pg_basebackup_mb_s": round(megabytes / floor_s, 1),
        "backup_vs_floor": round(backup_s / floor_s, 2),
        "restore_vs_floor": round(restore_s / floor_s, 2),
    }
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def main(argv):
    release = argv[argv.index("--release") + 1] if "--release" in argv else machines.host_release()
    sizes = [float(value) for value in argv if value.replace(".", "", 1).isdigit()] or [0.1, 1.0, 5.0]
    with machines.MachineLab(machines=3, release=release) as lab:
        lab.wait_minions()
        lab.provision()
        with lab.extra_machines(1) as (repository,):
            members, own = highstate.backup_pillars(lab, repository)
            highstate.write_pillars(lab, members, own, repository)
            code, steps, _ = highstate.orchestrate(lab, "orch.patroni")
            if code:
                raise SystemExit(f"the rollout failed:\n{highstate.failures(steps)}")
            trust_cluster_ca(lab)
            results = [one_size(lab, repository, gigabytes) for gigabytes in sizes]
    print(json.dumps({"benchmark": "backup", "release": release, "sizes": results}))


if __name__ == "__main__":
    main(sys.argv[1:])
