"""The package's shape: imports go one way (cli → runner → methods/data → evaluation/artefacts/checkpoints → nets/
errors), so no module imports a module that imports it back, directly or through others — function-level imports
included."""

import ast
from pathlib import Path

import adrun

PACKAGE = Path(adrun.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every adrun module and the adrun modules it imports anywhere in its body."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("adrun"):
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("adrun")]
            else:
                continue
            found |= {t for t in targets if t in modules and t != "adrun"}
        graph[name] = found - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import circles, each as the path that closes it."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_module_imports_one_that_imports_it_back():
    graph = imports()
    assert {"adrun.cli", "adrun.runner", "adrun.evaluation", "adrun.artefacts", "adrun.checkpoints"} <= set(graph)
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_the_layers_point_down():
    graph = imports()
    assert graph["adrun.ddp"] == set() and graph["adrun.atomic"] == set(), "ddp and atomic are leaves"
    assert not {"adrun.evaluation", "adrun.visual"} & graph["adrun.methods.base"]
    entries = {"adrun.cli", "adrun.api", "adrun.__main__"}  # the command line and Python: both prepare, then execute
    assert "adrun.runner" not in set().union(*(deps for name, deps in graph.items() if name not in entries))
    assert not {"adrun.cli", "adrun.api"} & set().union(*(graph[name] for name in graph if name not in entries))
    for low in ("adrun.errors", "adrun.scores", "adrun.artefacts"):
        assert not graph[low] - {"adrun.errors", "adrun.atomic"}, f"{low} is at the bottom"


def test_the_sweep_callback_loads_without_torch():
    import subprocess
    import sys

    code = "import sys, adrun.sweep; assert 'torch' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
