"""The package reads top-down: every import points down the layers, and no module imports itself back.

The layers, bottom first (a module may import its own layer's modules and anything below):
`tokenizer` (its own package, which imports nothing of llm_lit), `errors`, `data`, `model`/`optim`,
`interop`/`generation`, `training`, `evals`, `run`, `commands`. Every import counts, the ones inside
functions too: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The rank of each top-level part of `llm_lit` (a module may import ranks lower than or equal to its own).
LAYERS = {
    "errors": 0,
    "data": 1,
    "model": 2, "optim": 2,
    "interop": 3, "generation": 3,
    "training": 4,
    "evals": 5,
    "run": 6,
    "serving": 7,
    "commands": 8,
}
#: Same-rank packages that may not import each other (the layer is two independent parts).
INDEPENDENT = {frozenset({"model", "optim"}), frozenset({"interop", "generation"})}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    files = [*sorted((ROOT / "llm_lit").rglob("*.py")), *sorted((ROOT / "tokenizer").rglob("*.py"))]
    return {_module_name(f): f for f in files}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` (module `name`) imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import submodule` runs the package's __init__ on the way, but the arrow that counts
            # is to the submodule: counting the package too would make every re-exporting __init__ a cycle.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _part(module: str) -> str:
    """`tokenizer`, a key of LAYERS, or `top` (llm_lit itself, __main__)."""
    parts = module.split(".")
    if parts[0] == "tokenizer":
        return "tokenizer"
    if len(parts) == 1 or parts[1] == "__main__":
        return "top"
    return parts[1]


def test_every_part_of_llm_lit_has_a_layer():
    unknown = {_part(m) for m in _modules()} - set(LAYERS) - {"tokenizer", "top"}
    assert not unknown, f"give these parts of llm_lit a layer in tests/test_import_layers.py: {sorted(unknown)}"


def test_imports_point_down_only():
    upward = []
    for module, targets in _graph().items():
        for target in targets:
            src, dst = _part(module), _part(target)
            if src == dst or dst == "top" and src == "top":
                continue
            if src == "tokenizer":
                upward.append(f"{module} -> {target} (tokenizer imports nothing of llm_lit)")
            elif dst == "tokenizer" or src == "top":
                continue
            elif dst == "top":
                upward.append(f"{module} -> {target}")
            elif LAYERS[dst] > LAYERS[src] or frozenset({src, dst}) in INDEPENDENT:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up (or sideways between independent parts):\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_sizing_never_loads_lightning():
    module = "llm_lit.commands.accounting"
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]", result.stdout
