"""Hostile hosts: links, special files, odd bytes, umask, full and read-only disks, two runs at once, and secrets
in every syntax. Each gets a clear error or the right result, never a traceback, a hang or a changed file elsewhere.

Runs createconfig and render_config on sandboxed hosts (tests/sandbox.py), as root, the way Salt runs them.
"""

import json
import os
import shlex
import stat
import sys

import pytest
import sandbox


ETCD3 = {"etcd3": {"hosts": ["10.0.0.5:2379"]}}
ETCD2 = {"etcd": {"host": "10.0.0.5:2379"}}


def createconfig(host, tmp_path, function="createconfig", **kwargs):
    kwargs.setdefault("dcs", ETCD3)
    return sandbox.run(host, tmp_path, sandbox.module_argv(function, "15", "main", **kwargs))


def assert_clean_error(outcome, *words):
    text = outcome.stdout + outcome.stderr
    assert outcome.returncode == 1 and outcome.stdout.startswith("Error: "), text
    assert "Traceback" not in text, text
    for word in words:
        assert word in outcome.stdout, text


def result_of(outcome):
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    return json.loads(outcome.stdout)


def fingerprint(path):
    status = os.lstat(path)
    return path.read_bytes(), status.st_uid, status.st_gid, status.st_mode


# -- links at the config's own path ------------------------------------------------------------------


def secret_target(root):
    target = root / "root-only.conf"
    target.write_text("scope: 15-main\npassword: t0p-secret\n")
    target.chmod(0o600)
    return target


@pytest.mark.parametrize("function", ["createconfig", "render_config"])
def test_a_link_at_the_config_path_is_refused_and_its_target_untouched(function, tmp_path):
    target = secret_target(tmp_path)
    before = fingerprint(target)
    host = sandbox.Host(prepare=lambda etc: (etc / "15-main.yml").symlink_to(target))
    outcome = createconfig(host, tmp_path / "case", function)
    assert_clean_error(outcome, "symbolic link", "force=True")
    assert "t0p-secret" not in outcome.stdout + outcome.stderr  # the target's content is never shown
    assert fingerprint(target) == before
    assert outcome.files == {}


def test_force_replaces_the_link_itself_never_its_target(tmp_path):
    target = secret_target(tmp_path)
    before = fingerprint(target)
    host = sandbox.Host(prepare=lambda etc: (etc / "15-main.yml").symlink_to(target))
    outcome = createconfig(host, tmp_path / "case", force=True)
    assert result_of(outcome)["written"] == ["/etc/patroni/15-main.yml"]
    text, owner, group, mode = outcome.files["15-main.yml"]
    assert text.startswith("# Patroni configuration") and (owner, group, mode) == ("postgres", "postgres", 0o660)
    assert fingerprint(target) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_repair_never_follows_a_link_swapped_in_after_the_check(tmp_path, monkeypatch):
    """Read and repair are separate steps: a link put in between is refused, its target keeps owner and mode."""
    sys.path.insert(0, str(sandbox.REPO / "_modules"))
    import patroni_debian as pd  # noqa: PLC0415 - the module under test, loaded as the tests of pure helpers do
    import patroni_debian_config as config  # noqa: PLC0415
    import patroni_debian_render as render  # noqa: PLC0415

    target = secret_target(tmp_path)
    before = fingerprint(target)
    link = tmp_path / "15-main.yml"
    link.symlink_to(target)
    with pytest.raises(pd.CommandExecutionError, match="changed while being repaired"):
        config._repair(pd._Target(str(link), {}, "", render._read_own_yaml, "postgres", "postgres", 0o660))
    assert fingerprint(target) == before


# -- odd files -------------------------------------------------------------------------------------------------


def non_utf8(path):
    path.write_bytes(b"scope: 15-x\npostgresql: {listen: '*:5450'}\n# caf\xe9\n")


def directory(path):
    path.mkdir()


def fifo(path):
    os.mkfifo(path)


def link_to_dev_zero(path):
    path.symlink_to("/dev/zero")


def dangling_link(path):
    path.symlink_to("/nonexistent/file.yml")


def huge(path):
    path.write_bytes(b"#" * (2 << 20))


def not_yaml(path):
    path.write_text("scope: [unclosed\n")


def yaml_bomb(path):
    """Under 1 kB of YAML whose aliases expand to 10⁹ nodes: postgres may write its own config (issue 18, class 10)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 9)]
    path.write_text("\n".join(lines) + "\npostgresql: {listen: '*:5440'}\n")


ODD_FILES = [non_utf8, directory, fifo, link_to_dev_zero, dangling_link, huge, not_yaml, yaml_bomb]


@pytest.mark.parametrize("make", ODD_FILES, ids=[make.__name__ for make in ODD_FILES])
def test_an_odd_neighbour_config_never_breaks_another_cluster(make, tmp_path):
    host = sandbox.Host(prepare=lambda etc: make(etc / "15-other.yml"))
    outcome = createconfig(host, tmp_path)
    result = result_of(outcome)
    assert result["written"] == ["/etc/patroni/15-main.yml"] and result["port"] == 5432
    if make is not dangling_link:
        assert any("15-other.yml" in warning and "passed over" in warning for warning in result["warnings"]), result
    assert set(outcome.files) == {"15-main.yml"}


@pytest.mark.parametrize(
    "make", [non_utf8, not_yaml, huge, yaml_bomb], ids=["non_utf8", "not_yaml", "huge", "yaml_bomb"]
)
def test_an_unreadable_own_config_is_replaced_with_force_only(make, tmp_path):
    host = sandbox.Host(prepare=lambda etc: make(etc / "15-main.yml"))
    refused = createconfig(host, tmp_path / "refused")
    assert_clean_error(refused, "/etc/patroni/15-main.yml", "force=True")
    assert refused.files == {}
    replaced = createconfig(host, tmp_path / "forced", force=True)
    assert result_of(replaced)["written"] == ["/etc/patroni/15-main.yml"]
    assert replaced.files["15-main.yml"][0].startswith("# Patroni configuration")


@pytest.mark.parametrize("make,kind", [(directory, "a directory"), (fifo, "a FIFO")], ids=["directory", "fifo"])
@pytest.mark.parametrize("force", [False, True])
def test_a_special_file_at_the_config_path_is_refused_even_with_force(make, kind, force, tmp_path):
    host = sandbox.Host(prepare=lambda etc: make(etc / "15-main.yml"))
    outcome = createconfig(host, tmp_path, force=force)
    assert_clean_error(outcome, kind, "move it away")
    assert outcome.files == {}


def test_a_special_dcs_yml_is_an_error_not_a_hang(tmp_path):
    host = sandbox.Host(dcs_yml=None, prepare=lambda etc: fifo(etc / "dcs.yml"))
    outcome = sandbox.run(host, tmp_path, sandbox.module_argv("createconfig", "15", "main"))
    assert_clean_error(outcome, "/etc/patroni/dcs.yml", "FIFO")
    assert outcome.files == {}


def test_a_special_createcluster_conf_is_an_error_not_a_hang(tmp_path):
    host = sandbox.Host(setup=("mkfifo /etc/postgresql-common/createcluster.conf",))
    assert_clean_error(createconfig(host, tmp_path), "createcluster.conf", "FIFO")


# -- the host's conditions -------------------------------------------------------------------------------


def test_missing_patroni_dir_is_made_0755_whatever_the_umask(tmp_path):
    host = sandbox.Host(patroni_dir=False, umask=0o077)
    outcome = createconfig(host, tmp_path)
    assert result_of(outcome)["written"] == ["/etc/patroni/15-main.yml"]
    assert stat.S_IMODE(os.stat(tmp_path / "etc_upper" / "patroni").st_mode) == 0o755
    assert outcome.files["15-main.yml"][1:] == ("postgres", "postgres", 0o660)


def test_a_patroni_dir_postgres_cannot_enter_is_an_error_before_writing(tmp_path):
    host = sandbox.Host(prepare=lambda etc: etc.chmod(0o700))
    outcome = createconfig(host, tmp_path)
    assert_clean_error(outcome, "/etc/patroni", "0700", "postgres", "chmod 0755")
    assert outcome.files == {}


def test_read_only_patroni_dir_is_a_clear_error(tmp_path):
    host = sandbox.Host(setup=("mount -o remount,bind,ro /etc/patroni",))
    assert_clean_error(createconfig(host, tmp_path), "/etc/patroni", "Read-only file system")


def test_a_full_disk_writes_neither_the_config_nor_the_vip_file(tmp_path):
    """A tmpfs with one free page: the config's staged copy fits, the VIP file's does not. Nothing is left."""
    fill = "dd if=/dev/zero of=/etc/patroni/filler bs=4096 count=3 2>/dev/null"
    host = sandbox.Host(setup=("mount -t tmpfs -o size=16k,mode=0755 tmpfs /etc/patroni", fill))
    call = shlex.join(sandbox.module_argv("createconfig", "15", "main", dcs=ETCD2, vip="10.0.0.100"))
    outcome = sandbox.run(host, tmp_path, ["sh", "-c", f'{call}; echo "exit $?"; ls -A /etc/patroni'])
    assert outcome.stdout.startswith("Error: ") and "No space left on device" in outcome.stdout, outcome.stdout
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.stdout.splitlines()[-2:] == ["exit 1", "filler"]


def test_a_file_that_cannot_be_replaced_leaves_the_pair_as_it_was_and_no_copy_behind(tmp_path):
    """An immutable VIP file (chattr +i): the config beside it is not replaced alone, and no staged copy (which
    holds the passwords) is left in /etc/patroni, however often it is tried (issue 18, class 11)."""
    old = {"15-main.yml": "scope: 15-main\nby: hand\n", "15-main.vip": 'VIP_IP="10.0.0.99"\n'}
    host = sandbox.Host(files=old, setup=("chattr +i /etc/patroni/15-main.vip",))
    call = shlex.join(sandbox.module_argv("createconfig", "15", "main", dcs=ETCD2, vip="10.0.0.100", force=True))
    try:
        outcome = sandbox.run(host, tmp_path, ["sh", "-c", f"{call}; {call}; ls -A /etc/patroni"])
    finally:
        sandbox.run_plain(["chattr", "-i", str(tmp_path / "etc_patroni" / "15-main.vip")])
    lines = outcome.stdout.splitlines()
    assert lines[0].startswith("Error: ") and "Operation not permitted" in lines[0], outcome.stdout
    assert lines[1] == lines[0] and "Traceback" not in outcome.stderr, outcome.stdout + outcome.stderr
    assert sorted(lines[2:]) == ["15-main.vip", "15-main.yml", "config.yml.in", "dcs.yml", "vip.in"], lines
    assert (tmp_path / "etc_patroni" / "15-main.yml").read_text() == old["15-main.yml"]


def test_a_neighbour_s_rest_api_port_is_never_chosen_nor_given(tmp_path):
    """16-x listens on 5432 with its REST API on 5433, where one past the highest port would land (issue 18,
    class 8): the next free pair is chosen; asking for 5433 is refused naming the REST API."""
    neighbour = "postgresql:\n  listen: '*:5432'\n  data_dir: /srv/x\nrestapi:\n  listen: 10.0.0.11:5433\n"
    host = sandbox.Host(files={"16-x.yml": neighbour})
    assert result_of(createconfig(host, tmp_path / "a", "render_config"))["port"] == 5434
    host = sandbox.Host(files={"16-x.yml": neighbour})
    assert_clean_error(createconfig(host, tmp_path / "b", port=5433), "5433", "the REST API of Patroni config")


@pytest.mark.parametrize("data_dir", ["/srv/x", "/srv/x/data/inner", "/srv/x/data"])
def test_a_data_dir_overlapping_a_neighbour_s_is_refused(data_dir, tmp_path):
    neighbour = "postgresql:\n  listen: '*:5440'\n  data_dir: /srv/x/data\n"
    host = sandbox.Host(files={"16-x.yml": neighbour})
    outcome = createconfig(host, tmp_path, config={"postgresql": {"data_dir": data_dir}})
    assert_clean_error(outcome, f"data_dir {data_dir}", "Patroni config /etc/patroni/16-x.yml")
    assert outcome.files == {}


# -- two runs at once -----------------------------------------------------------------------------------------


def at_once(tmp_path, calls, rounds):
    """Run each round's calls in parallel, rounds one after another, on one host; their outputs by round."""
    out = tmp_path / "out"
    lines = [f"mkdir -p {out}"]
    for number in range(rounds):
        started = [f"{shlex.join(call(number))} > {out}/{number}-{index} &" for index, call in enumerate(calls)]
        lines += started + ["wait"]
    outcome = sandbox.run(sandbox.Host(), tmp_path / "host", ["sh", "-c", "\n".join(lines)])
    assert outcome.returncode == 0, outcome.stderr
    return [[(out / f"{number}-{index}").read_text() for index in range(len(calls))] for number in range(rounds)]


def test_new_clusters_created_at_once_get_different_ports(tmp_path):
    calls = [
        lambda n, letter=letter: sandbox.module_argv("createconfig", "15", f"{letter}{n}", dcs=ETCD3)
        for letter in "abc"
    ]
    rounds = at_once(tmp_path, calls, rounds=5)
    ports = [json.loads(text)["port"] for outputs in rounds for text in outputs]
    assert sorted(ports) == list(range(5432, 5432 + 15)), ports


def test_one_cluster_configured_twice_at_once_with_different_ports_has_one_winner(tmp_path):
    calls = [
        lambda n, offset=offset: sandbox.module_argv(
            "createconfig", "15", f"c{n}", dcs=ETCD3, port=5500 + 2 * n + offset
        )
        for offset in (0, 1)
    ]
    for outputs in at_once(tmp_path, calls, rounds=5):
        written = [json.loads(text) for text in outputs if not text.startswith("Error: ")]
        refused = [text for text in outputs if text.startswith("Error: ")]
        assert len(written) == 1 and len(refused) == 1, outputs
        assert "already exists with other content" in refused[0] and "postgresql.listen" in refused[0]


# -- secrets in every syntax ----------------------------------------------------------------------------------


SECRET = "Pw-8c1d"


@pytest.mark.parametrize(
    "case",
    [
        {"dcs": ETCD2, "endpoint": f"http://root:{SECRET}@10.0.0.5:2379"},
        {"dcs": {"etcd": {"url": f"http://root:{SECRET}@10.0.0.5:2379"}}},
        {"dcs": {"etcd": {"host": "10.0.0.5:2379", "username": "root", "password": SECRET}}},
    ],
    ids=["endpoint URL", "etcd url", "etcd password"],
)
def test_dcs_credentials_reach_only_a_private_vip_file(case, tmp_path):
    outcome = createconfig(sandbox.Host(), tmp_path, vip="10.0.0.100", **case)
    result_of(outcome)
    assert SECRET not in outcome.stdout + outcome.stderr
    text, owner, group, mode = outcome.files["15-main.vip"]
    assert (owner, group, mode) == ("root", "root", 0o600)
    assert f'VIP_ETCD_PASSWORD="{SECRET}"' in text and 'VIP_ETCD_USER="root"' in text
    assert 'VIP_DCS_ENDPOINTS="http://10.0.0.5:2379"' in text  # no credentials inside a URL


@pytest.mark.parametrize("function", ["createconfig", "render_config"])
def test_a_password_inside_a_value_is_masked_in_the_result_and_diff(function, tmp_path):
    inside = {"postgresql": {"parameters": {"restore_command": f"fetch 'host=a password={SECRET}' %f %p"}}}
    etcd = {"etcd": {"url": f"http://root:{SECRET}@10.0.0.5:2379"}}
    first = shlex.join(sandbox.module_argv("createconfig", "15", "main", dcs=etcd, config=inside))
    changed = {"postgresql": {"parameters": {"restore_command": "fetch 'host=a password=Other-2' %f %p"}}}
    second = shlex.join(sandbox.module_argv(function, "15", "main", dcs=etcd, config=changed, force=True))
    outcome = sandbox.run(sandbox.Host(), tmp_path, ["sh", "-c", f"{first} > /dev/null && {second}"])
    result = result_of(outcome)
    assert SECRET not in outcome.stdout and "Other-2" not in outcome.stdout
    change = result["changes"]["/etc/patroni/15-main.yml"]["diff"]["postgresql.parameters.restore_command"]
    assert change == {"old": "fetch 'host=a password=********' %f %p", "new": "fetch 'host=a password=********' %f %p"}


def test_the_returned_config_never_carries_a_dcs_url_password(tmp_path):
    outcome = createconfig(
        sandbox.Host(), tmp_path, "render_config", dcs={"etcd3": {"url": f"https://u:{SECRET}@h:2379"}}
    )
    assert SECRET not in outcome.stdout and "https://u:********@h:2379" in outcome.stdout


def test_a_newline_in_a_dcs_value_cannot_inject_a_vip_setting(tmp_path):
    dcs = {"etcd": {"host": "10.0.0.5:2379", "username": "root\nVIP_IP=10.0.0.1"}}
    outcome = createconfig(sandbox.Host(), tmp_path, vip="10.0.0.100", dcs=dcs)
    assert_clean_error(outcome, "VIP_ETCD_USER", "line break")
    assert outcome.files == {}


def test_a_config_naming_a_program_that_is_not_installed_says_how_to_install_it(tmp_path):
    result = result_of(
        createconfig(sandbox.Host(), tmp_path, "render_config", program="/nonexistent/patroni_debian.py")
    )
    assert any(
        "/nonexistent/patroni_debian.py is not installed" in w and "install_program" in w for w in result["warnings"]
    )


def test_a_case_takes_its_host_lock_in_a_run_postgresql_of_its_own(tmp_path):
    """The sandbox keeps the host's /run/postgresql (and its patroni-debian.lock) out of every case: a run in a
    case finds its own, empty and postgres's, and what it leaves there never reaches the host."""
    probe = f"sandbox-probe-{os.getpid()}"
    script = f"ls -A /run/postgresql; stat -c '%U %a' /run/postgresql; touch /run/postgresql/{probe}"
    outcome = sandbox.run(sandbox.Host(), tmp_path / "case", ["sh", "-c", script])
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout.split() == ["postgres", "2775"], outcome.stdout  # empty: not the host's lock
    assert not os.path.exists(f"/run/postgresql/{probe}")

    created = sandbox.run(sandbox.Host(), tmp_path / "module", sandbox.module_argv("createconfig", "15", "main"))
    assert created.returncode == 0, created.stdout + created.stderr
    assert "15-main.yml" in created.files  # it ran, and took its lock inside its own /run/postgresql
