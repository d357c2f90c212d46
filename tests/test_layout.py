"""The package layout: every module imports on its own, and no import circles (see docs/ARCHITECTURE.md).

Two checks. Statically, the graph of module-level imports (``import`` / ``from ... import`` outside
function bodies, read with :mod:`ast`) has no cycle. Dynamically, each module is imported first in a
fresh interpreter state (every ``musetag`` module dropped from ``sys.modules`` before it), which is
where a circle shows up as "partially initialized module".
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "musetag"

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _all_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _module_level_imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Names of the modules imported when ``module`` is executed (function bodies are not run)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in child.names)
            else:
                visit(child)

    visit(tree)
    return found


def _import_graph() -> dict[str, set[str]]:
    modules = _all_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = _module_level_imports(tree, name, path.name == "__init__.py")
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_module_level_imports_form_no_cycle():
    graph = _import_graph()
    assert "musetag.inference.embed" in graph and graph["musetag.inference.embed"], "the import graph was not read"
    cycle = _find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def _imports_anywhere(module: str) -> set[str]:
    """Every musetag module ``module`` imports, function bodies included."""
    path = _all_modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("musetag")}


def test_the_two_old_circles_are_gone_even_through_lazy_imports():
    # embed -> shard -> tag/batch -> shard, and models/registry <-> models/timm_models
    shard = _imports_anywhere("musetag.tag.shard")
    assert not shard & {"musetag.tag.batch", "musetag.inference.embed"}, shard
    assert "musetag.models.timm_models" not in _imports_anywhere("musetag.models.registry")


_ISOLATED = r"""
import importlib, json, sys, traceback
results = {}
for name in json.loads(sys.argv[1]):
    for m in [m for m in sys.modules if m == "musetag" or m.startswith("musetag.")]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
        results[name] = "ok"
    except ModuleNotFoundError as exc:
        # an optional dependency that is not installed is not a layout problem
        results[name] = "ok" if exc.name and not exc.name.startswith("musetag") else traceback.format_exc()
    except BaseException:
        results[name] = traceback.format_exc()
print(json.dumps(results))
"""


def test_every_module_imports_on_its_own():
    names = sorted(n for n in _all_modules() if not n.endswith("__main__"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _ISOLATED, json.dumps(names)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    failed = {n: r for n, r in results.items() if r != "ok"}
    assert not failed, "\n\n".join(f"{n}:\n{r}" for n, r in failed.items())
    assert set(results) == set(names)


# Imports that go right of the importer's stage, inside functions only, each with its reason
# (docs/ARCHITECTURE.md lists them). Anything else pointing rightwards is a layering error.
STAGES = ["audio", "features", "data", "models", "inference", "training", "evaluate", "tag", "serve", "commands"]
RIGHTWARD_ALLOWED = {
    # interim, while the inference layer is being cut out (issue 26): the next commits remove these
    ("musetag.data.embed_features", "musetag.inference.embed"),
    ("musetag.data.embed_features", "musetag.inference.hub"),
    ("musetag.inference.embed", "musetag.tag.shard"),
    ("musetag.inference.embed", "musetag.tag.writers"),
    ("musetag.inference.frontend", "musetag.training.data"),
    ("musetag.inference.tagger", "musetag.tag.export"),
    ("musetag.inference.tagger", "musetag.training.data"),
    ("musetag.inference.upstream", "musetag.training.transfer"),
    ("musetag.training.transfer", "musetag.tag.package_from_run"),
}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _rightward_imports() -> set[tuple[str, str]]:
    found = set()
    for module in _all_modules():
        stage = _stage(module)
        if stage is None:
            continue
        for target in _imports_anywhere(module):
            other = _stage(target)
            if other and STAGES.index(other) > STAGES.index(stage):
                found.add((module, target.rsplit(".", 1)[0] if target not in _all_modules() else target))
    return found


def test_no_stage_imports_a_later_stage_even_inside_functions():
    found = _rightward_imports()
    assert ("musetag.inference.tagger", "musetag.tag.export") in found, "the import scan found nothing"
    unexpected = {pair for pair in found if pair not in RIGHTWARD_ALLOWED}
    assert not unexpected, "a stage imports a later one (move the code, or add a documented exception): " + \
        ", ".join(f"{a} -> {b}" for a, b in sorted(unexpected))


def test_long_modules_say_why_they_are_one_file():
    # the house rule: a module past ~500 lines is split, unless it is one cohesive thing that says why at its top
    long = {}
    for name, path in _all_modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 520:
            long[name] = ast.get_docstring(ast.parse(text)) or ""
    assert long, "no long module found: the scan read nothing"
    unexplained = sorted(name for name, doc in long.items() if "One file on purpose" not in doc)
    assert not unexplained, "split these modules or say at their top why they are one file: " + ", ".join(unexplained)
