"""The package's import graph: acyclic, and the commands at the top of it.

Read from the installed package's source with `ast` (every import, at the top of a module or in a
function, counts: a lazy import is still a dependency), so a cycle shows here before it shows
as an ImportError in some order of imports.
"""
import ast
from pathlib import Path

import microgpt

COMMANDS = {"microgpt.cli", "microgpt.hydra_cli"}      # parse flags and wire; nothing imports them


def module_graph():
    """{module: the microgpt modules it imports}, for every module of the installed package."""
    root = Path(microgpt.__file__).parent
    graph = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        graph[name] = {m for m in imported if m == "microgpt" or m.startswith("microgpt.")}
    return graph


def cycle(graph):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_import_graph_is_acyclic():
    graph = module_graph()
    assert {"microgpt.hydra.engine", "microgpt.store", "microgpt.report.page"} <= set(graph)
    assert cycle(graph) is None, " -> ".join(cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_nothing_but_a_command_imports_a_command():
    graph = module_graph()
    for module, imported in graph.items():
        if module not in COMMANDS:
            assert not imported & COMMANDS, f"{module} imports {imported & COMMANDS}"
