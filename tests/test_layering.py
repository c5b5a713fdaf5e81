"""The arrows of ../shared/ARCHITECTURE.md, read from the source (ast, every import, also inside functions).

cli -> jobs -> everything else; the core (`model/`, `data/`, `train/`, `evaluation/`) never imports mlflow,
optuna or the tracking code; nothing but cli imports the jobs, nothing imports cli; no import circle; mlflow
only in the tracking package and the pyfunc flavour a logged model imports. No exceptions are listed: the
house move of issue 23 left none.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
CORE = ("bertcls.model", "bertcls.data", "bertcls.train", "bertcls.evaluation")
TRACKING = ("bertcls.tracking",)  # the package that speaks to MLflow
# The pyfunc flavour: the class a logged model builds, and the code file MLflow executes to build it.
MLFLOW_HOMES = (
    "bertcls.tracking",
    "bertcls.serving.pyfunc",
    "bertcls.serving.pyfunc_model",
    "bertcls.serving.pyfunc_params",
    "bertcls.serving.onnx_pyfunc",
    "bertcls.serving.onnx_pyfunc_model",
)


def modules(root: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the bertcls package."""
    found = {}
    for path in sorted((root / "bertcls").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """Every module `path` imports: `from a.b import c` is a.b.c when that is a module, else a.b."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return out


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports_of(path, name, known) for name, path in known.items()}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module among bertcls's own (Tarjan)."""
    internal = {m: {i for i in deps if i in graph and i != m} for m, deps in graph.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(internal[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(internal):
        if module not in index:
            visit(module)
    return sorted(found)


def violations(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Each rule -> the offending `module -> import` pairs."""
    found: dict[str, list[str]] = {"core": [], "jobs": [], "cli": [], "mlflow": []}
    for module, deps in sorted(graph.items()):
        for dep in sorted(deps):
            top = dep.split(".")[0]
            if within(module, CORE) and (top in ("mlflow", "optuna") or within(dep, TRACKING)):
                found["core"].append(f"{module} -> {dep}")
            if within(dep, ("bertcls.jobs",)) and not within(module, ("bertcls.jobs", "bertcls.cli")):
                found["jobs"].append(f"{module} -> {dep}")
            if within(dep, ("bertcls.cli",)) and module != "bertcls.cli":
                found["cli"].append(f"{module} -> {dep}")
        if any(d.split(".")[0] == "mlflow" for d in deps) and not within(module, MLFLOW_HOMES):
            found["mlflow"].append(module)
    return found


def test_the_core_imports_no_tracking_and_nothing_imports_the_jobs_or_the_cli():
    found = violations(import_graph())
    assert found["core"] == [], "model/, data/, train/, evaluation/ must not import mlflow, optuna or tracking"
    assert found["jobs"] == [], "only cli imports the jobs"
    assert found["cli"] == [], "nothing imports cli"


def test_mlflow_is_imported_only_by_the_tracking_package_and_the_pyfunc_flavour():
    assert violations(import_graph())["mlflow"] == []


def test_no_import_circle():
    assert circles(import_graph()) == []


@pytest.mark.parametrize("planted", ["import mlflow", "from bertcls import tracking", "import optuna"])
def test_a_planted_tracking_import_in_the_core_is_caught(tmp_path, planted):
    """The checker on a copy of the tree with one line added to train/loop.py (inside a function, too)."""
    import shutil

    shutil.copytree(SRC / "bertcls", tmp_path / "bertcls", ignore=shutil.ignore_patterns("__pycache__"))
    loop = tmp_path / "bertcls" / "train" / "loop.py"
    loop.write_text(loop.read_text(encoding="utf-8") + f"\n\ndef _planted():\n    {planted}\n", encoding="utf-8")
    assert [v for v in violations(import_graph(tmp_path))["core"] if v.startswith("bertcls.train.loop ")]


def test_a_planted_circle_is_caught(tmp_path):
    import shutil

    shutil.copytree(SRC / "bertcls", tmp_path / "bertcls", ignore=shutil.ignore_patterns("__pycache__"))
    errors = tmp_path / "bertcls" / "errors.py"
    errors.write_text(
        errors.read_text(encoding="utf-8") + "\nfrom bertcls.evaluation import metrics  # noqa\n", encoding="utf-8"
    )
    assert any(
        {"bertcls.errors", "bertcls.evaluation.metrics"} <= set(group) for group in circles(import_graph(tmp_path))
    )
