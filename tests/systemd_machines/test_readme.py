"""The README and the docs are tested: every command they show runs, exactly as written and in their order, in
the lab they describe.

The pages form one walkthrough (WALKTHROUGH, in that order): the lab is brought up by the first page's own
command, gets the members' pillar from its own YAML block, and goes down by the last page's; nothing else is set
up. A ``salt …`` or ``salt-run …`` command runs with the lab master's program (the master listens on the lab's
private bridge only, as the pages say). ``tests/README.md``'s commands run on their own.
"""

import os
import re
import shlex
import subprocess
import types

import machines
import netlab


REPO = netlab.REPO
WALKTHROUGH = [
    REPO / "docs" / "by-hand.md",
    REPO / "README.md",
    REPO / "docs" / "functions.md",
    REPO / "docs" / "orchestration.md",
    REPO / "docs" / "development.md",
]
# Pages with no command of their own to replay; a command on one would fail test_every_page_is_replayed.
NO_COMMANDS = [REPO / "docs" / "differences.md", REPO / "docs" / "backups.md", REPO / "bench" / "README.md"]
# The commands not replayed here, and why.
EXEMPT = {
    "make test": "the command CI runs, of which this test is a part",
    "make demo": "run end to end, with its output checked, by tests/systemd_machines/test_demo.py",
    "make demo-down": "run after make demo by tests/systemd_machines/test_demo.py, which checks that nothing is left",
}
FAILURE_WORDS = ("ERROR", "Traceback", "Minion did not return", "is not available", "Passed invalid arguments")
UP = ".venv/bin/python tests/machines.py up"
PEOPLE = netlab.Slot(0)  # the lab of the commands for people, whose addresses the README shows
DOWN = ".venv/bin/python tests/machines.py down"


def blocks(path, language):
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)


def commands(path):
    """Each command of the file's bash blocks: continuation lines joined, comment lines left out."""
    found = []
    for block in blocks(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append(line)
    return found


def lab_master_config():
    return machines._lab_config(PEOPLE)


def run(command):
    argv = shlex.split(command, comments=True)
    if argv[0] == "salt":
        argv = machines.salt_cli(PEOPLE.switch, lab_master_config()) + argv[1:]
    elif argv[0] == "salt-run":
        argv = machines.salt_run_cli(PEOPLE.switch, lab_master_config()) + argv[1:]
    else:
        argv = ["bash", "-c", command]
    # a pytest it starts is a run of its own, not a worker of this one's
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900, check=False, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"`{command}` exited {proc.returncode}:\n{output}"
    failures = [word for word in FAILURE_WORDS if word in output]
    assert not failures, f"`{command}` said {failures}:\n{output}"
    return output


def give_pillar(yaml_text):
    """The members' pillar, as the README shows it, on the lab's master, for every minion."""
    root = lab_master_config() / "pillar"
    (root / "patroni.sls").write_text(yaml_text)
    (root / "top.sls").write_text("base:\n  'pg*':\n    - patroni\n")


def wait_healthy(timeout=180):
    switch = netlab.Lab(slot=PEOPLE)
    members = [
        types.SimpleNamespace(
            name=f"pg{n}", http=lambda path, port, n=n: switch.http(f"http://{PEOPLE.subnet}.{10 + n}:{port}{path}")
        )
        for n in (1, 2, 3)
    ]
    return netlab.wait_until("15-main healthy", lambda: netlab.health(members, 8008), timeout)


def test_every_command_of_the_walkthrough_runs_as_written(timings):
    shown = [command for page in WALKTHROUGH for command in commands(page) if command not in EXEMPT]
    assert shown[0] == UP and shown[-1] == DOWN, "the walkthrough brings its lab up first and down last"
    pillar = next(block for block in blocks(WALKTHROUGH[0], "yaml") if block.startswith("# the lab's pillar"))
    assert "patroni:" in pillar and "15-main" in pillar and PEOPLE.etcd in pillar
    replayed = []
    try:
        for command in shown:
            if command == DOWN:
                leader, timeline = wait_healthy()  # what the README promises before the lab goes
                assert leader in ("pg1", "pg2", "pg3") and timeline >= 1
            run(command)
            replayed.append(command)
            if command == UP:
                give_pillar(pillar)
            if command == "salt 'pg[23]' service.start patroni@15-main":
                wait_healthy()  # the quick start's promise: one leader, two streaming replicas
    finally:
        netlab.remove_stale(PEOPLE)
    assert len(replayed) == len(shown)


def test_every_command_of_the_labs_readme_runs_as_written():
    shown = commands(REPO / "tests" / "README.md")
    assert shown, "tests/README.md shows its lab commands"
    try:
        for command in shown:
            run(command)
    finally:
        netlab.remove_stale(PEOPLE)


def test_every_page_is_replayed():
    """Every Markdown page of the repository is in the walkthrough, is tests/README.md, or shows no command."""
    pages = {path for path in REPO.glob("**/*.md") if not {".venv", ".git", "build", ".pytest_cache"} & set(path.parts)}
    pages = {path for path in pages if "egg-info" not in str(path)}
    assert pages == set(WALKTHROUGH) | set(NO_COMMANDS) | {REPO / "tests" / "README.md"}, sorted(map(str, pages))
    for page in NO_COMMANDS:
        assert not commands(page), page


def test_every_command_is_replayed_or_exempt_with_a_reason():
    """A new kind of command on a page must be replayable here, or be named in EXEMPT with its reason."""
    for command in [command for page in WALKTHROUGH for command in commands(page)] + commands(
        REPO / "tests" / "README.md"
    ):
        words = [word for word in shlex.split(command) if not re.match(r"^[A-Z_]+=", word)]  # after VAR=value
        replayable = words[0] in ("salt", "salt-run", ".venv/bin/python", ".venv/bin/pytest")
        replayable = replayable or words[:2] == ["make", "test"]
        assert command in EXEMPT or replayable, command
