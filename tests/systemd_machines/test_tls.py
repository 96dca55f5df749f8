"""Issue 21 on real machines: a cluster the formula made from bare machines with pillar patroni:tls (pg1 the CA
server, every member's certificate signed through Salt's x509 module). Its REST API is https only and refuses
the unsafe endpoints without the REST API's credentials; patronictl works with no flag; replication is TLS,
verified against the CA; a network login without TLS is refused; no key or password shows anywhere.

Each test starts from that cluster (``tls_cluster``, which test_bare_machines.py reaches on its way), but the
move of a cluster to TLS and back, which starts from the rollout's cluster without TLS (``orchestrated``).
"""

import json
import shutil
import subprocess

import highstate as formula
import netlab
import pytest
from highstate import CA_FILE, PASSWORD, RESTAPI_PASSWORD, failures, highstate, machine, outcomes, pillar
from starting_points import streaming, tls_pillar

API_PORT = 8008

# A client on a member: one HTTP call, verified against the cluster's CA for https; Basic credentials from the
# environment (never an argument). Prints [status or None, body or the error].
CLIENT = r"""
import base64, json, os, ssl, sys, urllib.error, urllib.request
url, method = sys.argv[1], sys.argv[2]
body = os.environ.get("API_BODY", "{}").encode()
request = urllib.request.Request(url, method=method, data=None if method == "GET" else body)
if os.environ.get("API_AUTH"):
    request.add_header("Authorization", "Basic " + base64.b64encode(os.environ["API_AUTH"].encode()).decode())
context = ssl.create_default_context(cafile=sys.argv[3]) if url.startswith("https") else None
try:
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        print(json.dumps([response.status, response.read().decode()]))
except urllib.error.HTTPError as error:
    print(json.dumps([error.code, error.read().decode()]))
except Exception as error:
    print(json.dumps([None, f"{type(error).__name__}: {error}"]))
"""


def call(client, url, method="GET", auth=None, body=None):
    env = {**({"API_AUTH": auth} if auth else {}), **({"API_BODY": json.dumps(body)} if body is not None else {})}
    return json.loads(client.run(["python3", "-c", CLIENT, url, method, CA_FILE], env=env).stdout)


def roles(lab):
    status = lab.salt("pg1", "patroni_debian.status", lab.version, "main")["pg1"]
    assert not status["problems"], status
    return status["leader"], sorted(name for name in status["members"] if name != status["leader"])


def start_time(client, member):
    status, body = call(client, f"https://{member.address}:{API_PORT}/patroni")
    assert status == 200, body
    return json.loads(body)["postmaster_start_time"]


def test_the_rest_api_is_https_only_and_its_unsafe_endpoints_need_the_credentials(tls_cluster):
    lab = tls_cluster
    leader, replicas = roles(lab)
    client, replica = machine(lab, replicas[0]), machine(lab, replicas[1])
    status, body = call(client, f"https://{machine(lab, leader).address}:{API_PORT}/patroni")
    assert status == 200 and json.loads(body)["role"] in ("master", "primary"), body
    status, body = call(client, f"http://{machine(lab, leader).address}:{API_PORT}/patroni")
    assert status is None, (status, body)  # a plain http request gets no answer from a TLS socket
    before = start_time(client, replica)
    status, body = call(client, f"https://{replica.address}:{API_PORT}/restart", "POST")
    assert status == 401, (status, body)
    status, body = call(client, f"https://{replica.address}:{API_PORT}/restart", "POST", "patroni:wrong")
    assert status == 401, (status, body)
    assert start_time(client, replica) == before
    status, body = call(client, f"https://{replica.address}:{API_PORT}/restart", "POST", f"patroni:{RESTAPI_PASSWORD}")
    assert status == 200, (status, body)
    netlab.wait_until("the replica restarted", lambda: start_time(client, replica) != before, 60)
    netlab.wait_until("every member healthy again", lambda: roles(lab), 60)


def test_patronictl_on_a_member_lists_and_switches_over_with_no_flag(tls_cluster):
    lab = tls_cluster
    leader, replicas = roles(lab)
    config = ["patronictl", "-c", f"/etc/patroni/{lab.version}-main.yml"]
    member = machine(lab, replicas[0])
    listed = json.loads(member.run([*config, "list", "-f", "json"]).stdout)
    assert sorted(row["Member"] for row in listed) == sorted(node.name for node in lab.nodes), listed
    member.run([*config, "switchover", "--leader", leader, "--candidate", replicas[0], "--force"])
    netlab.wait_until(
        f"{replicas[0]} leads, every member healthy",
        lambda: _led_by(lab, replicas[0]),
        90,
    )


def _led_by(lab, name):
    try:
        return roles(lab)[0] == name
    except AssertionError:
        return False


def sql(node, statement):
    argv = ["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-q", "-c", statement]
    return node.run(argv).stdout.strip()


def test_replication_is_tls_verified_and_a_network_login_without_tls_is_refused(tls_cluster):
    lab = tls_cluster
    leader, replicas = roles(lab)
    primary = machine(lab, leader)
    walsenders = sql(
        primary,
        "SELECT count(*) || ' ' || bool_and(s.ssl) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)",
    )
    assert walsenders == "2 true", walsenders
    for name in replicas:
        verified = sql(machine(lab, name), "SELECT current_setting('primary_conninfo') LIKE '%sslmode=verify-full%'")
        assert verified == "t", name
    assert sql(primary, "SHOW password_encryption") == "scram-sha-256"
    stored = sql(primary, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'replicator'")
    assert stored == "t"
    rules = sql(
        primary,
        "SELECT string_agg(DISTINCT type || ' ' || auth_method, ',') FROM pg_hba_file_rules "
        "WHERE address IS NOT NULL AND address NOT IN ('127.0.0.1', '::1')",
    )
    assert rules == "hostssl scram-sha-256", rules

    # a client of the network: the rewind role may log into database postgres from the members' network
    client = machine(lab, replicas[0])
    target = f"host={primary.address} port=5432 dbname=postgres user=replicator sslrootcert={CA_FILE}"
    env = {"PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "5"}
    query = ["psql", "-X", "-A", "-t", "-q", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"]
    verified = client.run(["psql", f"{target} sslmode=verify-full", *query[1:]], env=env)
    assert verified.stdout.strip() == "t", verified
    # by the VIP too, which the leader holds and every member's certificate names
    by_vip = target.replace(f"host={primary.address}", f"host={lab.slot.vip}")
    netlab.wait_until(
        "the VIP answers with a certificate it names",
        lambda: (
            client.run(["psql", f"{by_vip} sslmode=verify-full", *query[1:]], env=env, check=False).stdout.strip()
            == "t"
        ),
        30,
    )
    plain = client.run(["psql", f"{target} sslmode=disable", *query[1:]], env=env, check=False)
    assert plain.returncode != 0 and "no pg_hba.conf entry" in plain.stderr and "no encryption" in plain.stderr, plain


def test_no_key_or_password_shows_in_output_logs_arguments_or_readable_files(tls_cluster):
    lab = tls_cluster
    returns = highstate(lab)
    failed, changed, _ = outcomes(returns)
    assert (failed, changed) == ([], []), (failed, changed)
    out = json.dumps(returns)
    for secret in (PASSWORD, RESTAPI_PASSWORD, "PRIVATE KEY"):
        assert secret not in out, secret
    for node in lab.nodes:
        lines = node.run(["sh", "-c", SCAN], env={"S1": PASSWORD, "S2": RESTAPI_PASSWORD}).stdout.splitlines()
        keys = {line.split()[-1]: line.split()[:2] for line in lines if line.startswith(("root:", "postgres:"))}
        assert keys["/etc/patroni/tls/member.key"] == ["root:postgres", "640"], (node.name, keys)
        assert keys["/etc/etcd/tls/member.key"] == ["root:etcd", "640"], (node.name, keys)  # etcd's own
        assert keys["/etc/patroni/tls/member.crt"][1] == "644" and keys["/etc/patroni/tls/ca.crt"][1] == "644"
        assert ("/etc/patroni/tls/ca.key" in keys) == (node.name == "pg1"), (node.name, keys)
        if node.name == "pg1":
            assert keys["/etc/patroni/tls/ca.key"] == ["root:root", "600"], keys
        assert not [line for line in lines if line.startswith("KEY IN ")], (node.name, lines)
        # the secrets live only in files nobody but their owners may read (the Patroni config, the pgpass)
        readable = [line for line in lines if line.startswith("SECRET IN ") and int(line.split()[2][-1]) & 4]
        assert not readable, (node.name, readable)
        assert "ARGUMENTS 0" in lines, (node.name, lines)


# What a member holds of its TLS files, and where its secrets are: the files' owners and modes; a line of each
# private key's body found in a log, a config or any file outside the key itself; the files holding a password
# ($S1, $S2, given in the environment, kept in a 0600 file for grep: never an argument); the processes whose
# arguments hold one.
SCAN = r"""
set -e
stat -c '%U:%G %a %n' /etc/patroni/tls/* /etc/etcd/tls/*
umask 077
printf '%s\n' "$S1" "$S2" > /root/.secrets
for key in /etc/patroni/tls/*.key /etc/etcd/tls/*.key; do
    sed -n 2p "$key" > /root/.keyline
    grep -rlF -f /root/.keyline /var/log /etc /var/lib/postgresql /tmp /var/tmp 2>/dev/null | grep -vx "$key" \
        | sed 's/^/KEY IN /' || true
done
grep -rlF -f /root/.secrets /var/log /etc /var/lib/postgresql /var/cache /tmp /var/tmp 2>/dev/null \
    | xargs -r stat -c 'SECRET IN %a %n' || true
count=0
for pid in $(ls /proc | grep -x '[0-9]*'); do
    if tr '\0' '\n' < /proc/$pid/cmdline 2>/dev/null | grep -qF -f /root/.secrets; then count=$((count + 1)); fi
done
echo "ARGUMENTS $count"
rm -f /root/.secrets /root/.keyline
"""


# The serial of the certificate a member serves on port $1 (the REST API) or $2 (PostgreSQL, which starts TLS
# inside its own protocol), verified against the cluster's CA.
SERVED = r"""
for port in "$1" "$2"; do
    starttls=""; [ "$port" = "$2" ] && starttls="-starttls postgres"
    openssl s_client $starttls -connect "$0:$port" -CAfile /etc/patroni/tls/ca.crt -verify_return_error </dev/null \
        2>/dev/null | openssl x509 -noout -serial
done
"""


def served(client, member):
    """The serials ``member``'s REST API and PostgreSQL serve, as ``client`` sees them."""
    lines = client.run(["sh", "-c", SERVED, member.address, str(API_PORT), "5432"]).stdout.split()
    assert len(lines) == 2 and all(line.startswith("serial=") for line in lines), lines
    return lines


def test_a_certificate_near_its_end_is_renewed_by_a_run_and_taken_by_a_reload(tls_cluster):
    """Issue 21, behaviour 3: a member certificate with two days left (issued here by the same CA and policy) is
    renewed by the next highstate (days_remaining 30); Patroni's REST API and PostgreSQL serve the new one after
    the reload, no postmaster restarts; the next run changes nothing."""
    lab = tls_cluster
    leader, replicas = roles(lab)
    member, client = machine(lab, replicas[0]), machine(lab, leader)
    names = lab.salt(member.name, "patroni_debian.formula_clusters")[member.name]["tls"]["subjectAltName"]
    issued = lab.salt(
        member.name,
        "x509.create_certificate",
        "ca_server=pg1",
        "signing_policy=patroni_debian",
        "private_key=/etc/patroni/tls/member.key",
        f"CN={member.name}",
        f"subjectAltName={names}",
        "days_valid=2",
        "path=/etc/patroni/tls/member.crt",
    )
    assert "written" in str(issued[member.name]), issued
    member.run(["systemctl", "reload", f"patroni@{lab.version}-main"])
    short = member.run(["openssl", "x509", "-in", "/etc/patroni/tls/member.crt", "-noout", "-serial"]).stdout.split()
    netlab.wait_until("the short-lived certificate served", lambda: served(client, member) == short * 2, 30)
    started = start_time(client, member)

    failed, changed, _ = outcomes(highstate(lab))
    assert not failed, failed
    assert f"{member.name}: The member's certificate is current" in changed, changed
    renewed = member.run(["openssl", "x509", "-in", "/etc/patroni/tls/member.crt", "-noout", "-serial"]).stdout.split()
    assert renewed != short
    netlab.wait_until("the renewed certificate served", lambda: served(client, member) == renewed * 2, 30)
    assert start_time(client, member) == started
    failed, changed, _ = outcomes(highstate(lab))
    assert (failed, changed) == ([], []), (failed, changed)


WRITTEN = "/var/tmp/acknowledged"


def start_writes(node, table):
    """Inserts on ``node`` through its socket, one at a time, each number written down once its commit was
    acknowledged; they go on until the file /var/tmp/stop-writes appears."""
    sql(node, f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (n int primary key)")
    writer = (
        "n=0; while [ ! -e /var/tmp/stop-writes ]; do n=$((n + 1)); "
        f'runuser -u postgres -- psql -X -q -c "INSERT INTO {table} VALUES ($n)" 2>/dev/null && echo $n; done '
        f"> {WRITTEN}"
    )
    node.run(["sh", "-c", f"rm -f /var/tmp/stop-writes; ({writer}) >/dev/null 2>&1 &"])


def stop_writes(node, table):
    """``(acknowledged, stored)``: the numbers the writer wrote down, those the table holds."""
    node.run(["sh", "-c", "touch /var/tmp/stop-writes; sleep 1"])
    acknowledged = {int(n) for n in node.run(["cat", WRITTEN]).stdout.split()}
    stored = {int(n) for n in sql(node, f"SELECT n FROM {table}").split()}
    return acknowledged, stored


def orchestrate(lab):
    code, steps, _ = formula.orchestrate(lab, "orch.patroni")
    assert code == 0, failures(steps)


def postmasters(lab):
    """Each member's postmaster start time, read on the member: a restart would change it."""
    return {node.name: sql(node, "SELECT pg_postmaster_start_time()") for node in lab.nodes}


def test_a_running_cluster_moves_to_tls_and_back_by_pillar_and_orchestration_without_a_restart(orchestrated):
    """Issue 21, behaviour 4: pillar patroni:tls added to a cluster the rollout made, then taken away, each followed
    by orch.patroni, under a write load on the leader: no member restarts (so none is ever down), the leader stays,
    every acknowledged row is stored; with TLS the walsenders are TLS and the network's rules hostssl, without it
    the rules are Debian's again. The cluster is left as the rollout made it (TLS's password_encryption, which
    the formula leaves in the DCS when TLS goes, is taken out here), so the next test keeps its starting point."""
    lab = orchestrated
    leader, _ = netlab.health(lab.nodes, API_PORT)
    primary = machine(lab, leader)
    before = postmasters(lab)
    start_writes(primary, "moving")
    try:
        lab.set_pillar(pillar(lab, tls={"ca_server": "pg1"}))
        orchestrate(lab)
        assert roles(lab)[0] == leader
        netlab.wait_until(
            "every walsender over TLS",
            lambda: (
                sql(
                    primary,
                    "SELECT count(*) FILTER (WHERE s.ssl) FROM pg_stat_replication r JOIN pg_stat_ssl s "
                    "USING (pid) WHERE r.state = 'streaming'",
                )
                == "2"
            ),
            60,
        )
        assert "hostssl" in sql(primary, "SELECT string_agg(DISTINCT type, ',') FROM pg_hba_file_rules")
        lab.set_pillar(pillar(lab))
        orchestrate(lab)
        netlab.wait_until("every member streaming over http", lambda: netlab.health(lab.nodes, API_PORT), 60)
        assert netlab.health(lab.nodes, API_PORT)[0] == leader
        assert "hostssl" not in sql(primary, "SELECT string_agg(DISTINCT type, ',') FROM pg_hba_file_rules")
        # each member renders the network's rules with its own address (10.0.0.12/24 for 10.0.0.0/24, as Debian
        # does): the same rules to PostgreSQL, another text to the starting point's check, which the rollout's made
        made = lab.checked[0]["postgresql"]["pg_hba"]
        unset = {"postgresql": {"parameters": {"password_encryption": None}, "pg_hba": made}}
        status, body = call(primary, f"http://{primary.address}:{API_PORT}/config", "PATCH", body=unset)
        assert status == 200, (status, body)
    finally:
        acknowledged, stored = stop_writes(primary, "moving")
    assert len(acknowledged) > 50 and acknowledged <= stored, sorted(acknowledged - stored)[:10]
    assert postmasters(lab) == before
    # the starting point kept for the next test, once every member's view of the DCS has the patch
    try:
        netlab.wait_until("the rollout's cluster as it was", lambda: streaming(lab) == lab.checked, 30)
    except TimeoutError:
        now = streaming(lab)
        live, made = (now or [{}])[0], lab.checked[0]
        differ = {
            key: (made.get(key), live.get(key)) for key in set(live) | set(made) if live.get(key) != made.get(key)
        }
        raise AssertionError(f"the live settings differ from the rollout's: {differ}") from None


def etcdctl(lab, endpoint, files, *args, certificate=True):
    """``etcdctl`` from the lab's switch against the etcd at ``endpoint``, trusting the cluster's CA; with
    ``certificate``, as pg1 (its member certificate and key)."""
    argv = ["ip", "netns", "exec", lab.switch, "etcdctl", f"--endpoints=https://{endpoint}", f"--cacert={files}/ca.crt"]
    if certificate:
        argv += [f"--cert={files}/member.crt", f"--key={files}/member.key"]
    return subprocess.run(argv + ["--dial-timeout=3s", *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.spoils
def test_a_cluster_on_an_etcd_that_takes_only_certificates_runs_on_the_members_own(tls_cluster):
    """Issue 21, the DCS client: a second cluster whose pillar DCS is an etcd served over https that takes only
    clients with a certificate of the cluster's CA (--client-cert-auth). With pillar patroni:tls, each member's
    etcd3 section gets the CA and its own certificate and key: the cluster bootstraps and streams, its leader key
    is in that etcd, and a client without a certificate is refused."""
    lab = tls_cluster
    ca_server = machine(lab, "pg1")
    files = lab.root / "etcd-tls-files"
    files.mkdir(exist_ok=True)
    key, cert = "/root/etcd-server.key", "/root/etcd-server.crt"
    lab.salt("pg1", "x509.create_private_key", f"path={key}", "algo=ec", "keysize=256")
    issued = lab.salt(
        "pg1",
        "x509.create_certificate",
        "signing_private_key=/etc/patroni/tls/ca.key",
        f"signing_cert={CA_FILE}",
        f"private_key={key}",
        "CN=etcd",
        f"subjectAltName=IP:{lab.slot.gateway}",
        "extendedKeyUsage=serverAuth, clientAuth",  # etcd calls itself with it (its gateway)
        "days_valid=2",
        f"path={cert}",
    )
    assert "written" in str(issued["pg1"]), issued
    for source, name in ((key, "etcd.key"), (cert, "etcd.crt"), (CA_FILE, "ca.crt")):
        shutil.copy(ca_server.merged / source.lstrip("/"), files / name)
    for name in ("member.crt", "member.key"):
        shutil.copy(ca_server.merged / "etc/patroni/tls" / name, files / name)
    endpoint = lab.start_tls_etcd(files / "ca.crt", files / "etcd.crt", files / "etcd.key")
    try:
        netlab.wait_until(
            "the TLS etcd healthy", lambda: etcdctl(lab, endpoint, files, "endpoint", "health").returncode == 0, 30
        )
        secure = f"{lab.version}-secure"
        wanted = tls_pillar(lab, more=(secure,))
        wanted["patroni"]["clusters"][secure].update(
            port=5433, dcs={"etcd3": {"hosts": [endpoint], "protocol": "https"}}
        )
        lab.set_pillar(wanted)
        failed, _, _ = outcomes(highstate(lab))
        assert not failed, failed
        status = lab.salt("pg1", "patroni_debian.status", lab.version, "secure")["pg1"]
        assert status["leader"] and not status["problems"] and len(status["members"]) == 3, status
        leader = etcdctl(lab, endpoint, files, "get", "--print-value-only", f"/postgresql-common/{secure}/leader")
        assert leader.stdout.strip() == status["leader"], leader
        refused = etcdctl(lab, endpoint, files, "get", f"/postgresql-common/{secure}/leader", certificate=False)
        assert refused.returncode != 0, refused
    finally:
        lab.stop_tls_etcd()
