"""The package's layout rules, checked on its source: the layers import only downward, there is no
import cycle (imports inside functions count), and the library core is importable without the
tracking and tuning libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "forecast"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in its body (top level, functions, TYPE_CHECKING)."""
    me = module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != me and not me.startswith(name + "."):  # a package's __init__ is not a dependency
                found.add(name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def import_graph() -> dict[str, set[str]]:
    files = list(PACKAGE.rglob("*.py"))
    known = {module_name(f) for f in files}
    return {module_name(f): imported_modules(f, known) for f in files}


# The layers, bottom first (docs/layout.md): a module may import its own layer and the ones below it.
# The top-level modules not listed (api, pipeline, tuning, cli) are the verbs, above everything.
LAYERS = ["core", "data", "models", "evaluation", "outputs", "tracking"]
VERBS = len(LAYERS)


def layer_of(module: str) -> int:
    """A module's layer: its folder under ``forecast/``; a top-level module is a verb."""
    top = module.split(".")[1]
    return LAYERS.index(top) if top in LAYERS else VERBS


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, deps in graph.items() for b in deps
                  if b != "forecast" and a != "forecast" and layer_of(b) > layer_of(a))


def test_every_module_sits_in_a_layer_folder_or_is_a_verb():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS)
    verbs = {p.stem for p in PACKAGE.glob("*.py")}
    assert verbs == {"__init__", "__main__", "api", "cli", "pipeline", "tuning"}


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports(import_graph()) == []


def test_the_layer_check_finds_an_upward_import():
    graph = {"forecast.evaluation.combination": {"forecast.tracking.runs", "forecast.models.base"},
             "forecast.data.panel": {"forecast.core.config"}, "forecast.cli": {"forecast.tracking.runs"}}
    assert upward_imports(graph) == [("forecast.evaluation.combination", "forecast.tracking.runs")]


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_importing_the_package_loads_neither_torch_mlflow_nor_optuna():
    code = "import sys, forecast; print(sorted(m for m in ('torch', 'mlflow', 'optuna') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
