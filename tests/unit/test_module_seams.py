"""The seams between the module's files: Salt gives its dunders (``__pillar__``, ``__salt__``, …) only to the files
it loads, never to the plain copies the files import of each other. A function a sibling reaches must therefore
not read one, or it would silently read nothing (``rolling_restart`` once reported success having restarted
nothing). And the files import each other in one chain, no circle: backup → etcd → day2 → ops → config → render →
door."""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
MODULES = {path.stem: path for path in sorted((REPO / "_modules").glob("patroni_debian*.py"))}
DUNDERS = {"__pillar__", "__salt__", "__opts__", "__grains__", "__context__", "__utils__", "__states__"}
CHAIN = [f"patroni_debian{part}" for part in ("_backup", "_etcd", "_day2", "_ops", "_config", "_render", "")]


class File:
    def __init__(self, path):
        self.tree = ast.parse(path.read_text())
        self.top = {}
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                self.top[node.name] = node
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            self.top[name.id] = node

    def names_in(self, node):
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
            n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
        }

    def reached(self, name):
        """``name`` and every top-level definition of this file it reaches."""
        seen, todo = set(), [name]
        while todo:
            current = todo.pop()
            if current in seen or current not in self.top:
                continue
            seen.add(current)
            todo.extend(self.names_in(self.top[current]) & set(self.top))
        return seen

    def reads_a_dunder(self, name):
        node = self.top[name]
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        calls_globals = any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "globals" for n in ast.walk(node)
        )
        return bool(names & DUNDERS) or calls_globals

    def sibling_uses(self):
        """{sibling module: names of it this file uses}."""
        uses = {}
        aliases = {}
        for node in self.tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES:
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module in MODULES:
                uses.setdefault(node.module, set()).update(alias.name for alias in node.names)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                uses.setdefault(aliases[node.value.id], set()).add(node.attr)
        return uses


FILES = {name: File(path) for name, path in MODULES.items()}


def test_no_function_a_sibling_reaches_reads_a_dunder():
    offenders = []
    for user, file in FILES.items():
        for sibling, names in file.sibling_uses().items():
            for name in sorted(names):
                assert name in FILES[sibling].top, f"{user} uses {sibling}.{name}, which it does not define"
                for reached in sorted(FILES[sibling].reached(name)):
                    if FILES[sibling].reads_a_dunder(reached):
                        offenders.append(f"{user} → {sibling}.{name} → {reached}")
    assert not offenders, offenders


def test_the_files_import_each_other_in_one_chain():
    for user, file in FILES.items():
        for sibling in file.sibling_uses():
            assert CHAIN.index(sibling) > CHAIN.index(user), f"{user} imports {sibling}: against the chain {CHAIN}"


def test_the_check_reads_what_it_claims():
    """The two rules above can fail: a made-up file that reaches a dunder and imports against the chain."""
    made_up = File.__new__(File)
    made_up.tree = ast.parse("def _f():\n    return __pillar__\n\ndef _g():\n    return _f()\n")
    made_up.top = {node.name: node for node in made_up.tree.body}
    assert made_up.reached("_g") == {"_f", "_g"} and made_up.reads_a_dunder("_f") and not made_up.reads_a_dunder("_g")
