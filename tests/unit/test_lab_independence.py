"""Order dependence cannot creep back into the machines' tier: every test there states its starting point.

A dry collection of tests/systemd_machines (no lab is started) lists each test's fixtures. A test that uses the
lab must reach it through a starting point (a fixture made by ``starting_points.starting_point``, which makes
its state from a clean slate unless the lab is verifiably in it), never through ``machine_lab`` itself, and no
fixture between the two may outlive a test (module or session scope would carry one test's state into the
next). So each test passes alone, with ``-k``, in any order.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = textwrap.dedent(
    """
    import json, os

    def pytest_collection_finish(session):
        found = {}
        for item in session.items:
            info = item._fixtureinfo
            fixtures = {}
            for name in item.fixturenames:
                defs = info.name2fixturedefs.get(name)
                if defs:
                    fixturedef = defs[-1]
                    fixtures[name] = {
                        "scope": fixturedef.scope,
                        "starting_point": getattr(fixturedef.func, "starting_point", None),
                        "ours": fixturedef.baseid.startswith("tests/"),
                    }
            params = dict(item.callspec.params) if hasattr(item, "callspec") else {}
            found[item.nodeid] = {
                "arguments": list(info.argnames),
                "fixtures": fixtures,
                "params": list(params),
                "release": params.get("machine_lab"),
            }
        with open(os.environ["DUMP"], "w") as stream:
            json.dump(found, stream)
    """
)


def collected(tmp_path):
    (tmp_path / "fixture_dump.py").write_text(PLUGIN)
    dump = tmp_path / "items.json"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "DUMP": str(dump), "PATRONI_DEBIAN_RELEASES": "bookworm"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "fixture_dump", "-p", "no:cacheprovider"]
        + [os.path.join(TESTS, "systemd_machines")],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(TESTS),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(dump.read_text())


def test_every_test_of_the_machines_states_its_starting_point(tmp_path):
    items = collected(tmp_path)
    assert len(items) > 30, sorted(items)  # the tier was collected, not skipped
    problems = []
    for nodeid, item in items.items():
        fixtures = item["fixtures"]
        unknown = [name for name in item["arguments"] if name not in fixtures and name not in item["params"]]
        if unknown:
            problems.append(f"{nodeid}: no fixture {unknown}")
        if "machine_lab" not in fixtures:
            continue  # no lab of the session: the README's and the demo's own labs, or none
        if "machine_lab" in item["arguments"]:
            problems.append(f"{nodeid}: asks for machine_lab itself")
        if not any(f["starting_point"] for f in fixtures.values()):
            problems.append(f"{nodeid}: no starting point among {sorted(fixtures)}")
        lasting = [
            name
            for name, f in fixtures.items()
            if f["ours"] and f["scope"] != "function" and name not in ("machine_lab", "timings")
        ]
        if lasting:
            problems.append(f"{nodeid}: fixtures that outlive a test: {lasting}")
    assert problems == []


def test_each_release_s_machine_tests_share_one_worker_and_the_rest_another(tmp_path):
    """make test's workers: every machine test of a release in that release's share (one lab per release per
    run) but those of the files given a lab of their own (a share per release and file), every other test in the
    third; decided from the test's id, as xdist's scheduler sees it."""
    spec = importlib.util.spec_from_file_location("tests_root_conftest", os.path.join(TESTS, "conftest.py"))
    root = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root)
    shares = {}
    for nodeid, item in collected(tmp_path).items():
        wanted = "the other tiers"
        if "machine_lab" in item["fixtures"]:
            path = nodeid.split("::")[0]
            wanted = f"machines {item['release']}" + (f", {path}" if path in root.OWN_LAB else "")
        shares.setdefault(root.group(nodeid), set()).add(nodeid)
        assert root.group(nodeid) == wanted, nodeid
    own = {f"machines bookworm, {path}" for path in root.OWN_LAB}
    # the collection above is bookworm's; a file of OWN_LAB without tests would leave its share out
    assert set(shares) == {"machines bookworm", "the other tiers"} | own
    assert root.group("tests/sandboxed/test_bad_input.py::test_x[trixie-case]") == "the other tiers"
    assert root.group("tests/systemd_machines/test_x.py::test_y[trixie-orch.patroni-{}]") == "machines trixie"
