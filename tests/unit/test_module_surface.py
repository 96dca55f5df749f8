"""The module's surface as Salt shows it: every public function documented with a CLI example, in one file only;
the program door importing nothing but the standard library (and Salt's exceptions when Salt loads it)."""

import ast
import re
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
FILES = sorted((REPO / "_modules").glob("patroni_debian*.py")) + sorted((REPO / "_states").glob("*.py"))
DOOR = REPO / "_modules" / "patroni_debian.py"


def public_functions(path):
    tree = ast.parse(path.read_text())
    return {
        node.name: ast.get_docstring(node) or ""
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    }


def test_every_public_function_has_a_cli_example_and_one_home():
    home = {}
    for path in FILES:
        for name, doc in public_functions(path).items():
            if path.parent.name == "_modules":
                assert "CLI Example:" in doc, f"{path.name}: {name} has no CLI Example"
            else:
                assert "code-block:: yaml" in doc, f"{path.name}: state {name} has no example"
            assert home.setdefault((path.parent.name, name), path.name) == path.name, f"{name} twice"


def test_the_program_door_imports_nothing_of_ours():
    tree = ast.parse(DOOR.read_text())
    roots = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    roots |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert roots <= set(sys.stdlib_module_names) | {"salt"}, roots  # salt's exceptions, when Salt loads it


def test_salt_lists_no_main():
    assert "main" not in public_functions(DOOR)


def test_program_help_is_usage_on_stdout_and_success():
    """Run as Patroni runs it, with no module but the standard library importable (-I -S: no site folders)."""
    proc = subprocess.run(["python3", "-I", "-S", str(DOOR), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: patroni_debian.py createcluster") and not proc.stderr


def test_createconfig_names_its_options_for_sys_argspec():
    import inspect  # noqa: PLC0415

    sys.path.insert(0, str(REPO / "_modules"))
    import patroni_debian_config  # noqa: PLC0415

    for function in (patroni_debian_config.createconfig, patroni_debian_config.render_config):
        parameters = inspect.signature(function).parameters
        for option in patroni_debian_config.OPTIONS + ("force",):
            assert parameters[option].kind is inspect.Parameter.KEYWORD_ONLY, option


PLUMBING_MARK = "Plumbing: the formula and the orchestrations call it"


def test_the_readme_and_sys_doc_tell_the_two_groups_apart():
    """Every public execution function is in the README: in the table for people, or in the plumbing list, as
    its docstring (what sys.doc shows) says; none in both, none missing."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Execution functions", 1)[1].split("\n## ", 1)[0]
    table, plumbing_text = section.split("Plumbing, called by", 1)
    functions = {}
    for path in FILES:
        if path.parent.name == "_modules":
            functions.update(public_functions(path))
    plumbing = {name for name, doc in functions.items() if doc.startswith(PLUMBING_MARK)}
    listed_plumbing = set(re.findall(r"`([a-z_]+)`", plumbing_text.split("```", 1)[0]))
    assert listed_plumbing == plumbing, listed_plumbing ^ plumbing
    in_table = {name for name in functions if re.search(rf"`{name}\b", table)}
    assert in_table == set(functions) - plumbing, sorted(set(functions) - plumbing - in_table)
