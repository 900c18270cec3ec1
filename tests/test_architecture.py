"""The package's shape: data flows one way, no import cycles, no oversized modules.

DESIGN.md's flow is io → atlas → synth → data → train → infer → metrics → study, with shared
helpers (geometry, masks, jobs, organs, sizes, errors) at the bottom and the CLI on top. These
tests read the source (no import), so a violation names the file and the import that breaks it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "tumorscale"

# Rank of each top-level module or package: an import may only go to a lower rank (or within the
# same package). Equal ranks are siblings that must not import each other.
LAYERS: dict[str, int] = {
    "errors": 0,
    "__init__": 1, "organs": 1, "sizes": 1, "geometry": 1, "masks": 1, "user_cache": 1,
    "preprocessing": 1,
    "workers": 2,
    "io": 3,
    "jobs": 4,
    "atlas": 5, "datasets": 5,
    "phantom": 6,
    "synth": 7, "export": 7,
    "data": 8,
    "models": 9,
    "train": 10,
    "infer": 11,
    "metrics": 12,
    "study": 13,
    "cli": 14, "__main__": 15,
}

# Modules allowed past the size limit, each with the reason it stays whole.
SIZE_LIMIT_LINES = 500
OVERSIZED: dict[str, str] = {}


def _modules() -> list[Path]:
    return sorted(PACKAGE_ROOT.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["tumorscale", *parts])


def _imported_modules(path: Path) -> list[str]:
    """Absolute tumorscale module names imported by one file (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names if alias.name.startswith("tumorscale")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("tumorscale"):
                names.append(module)
                # `from tumorscale.x import y` may import the submodule tumorscale.x.y
                names += [f"{module}.{alias.name}" for alias in node.names]
    return names


def _top_level(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_top_level_module_has_a_layer() -> None:
    unknown = sorted({_top_level(_module_name(path)) for path in _modules()} - set(LAYERS))
    assert not unknown, f"add these to LAYERS in {__file__}: {unknown}"


def test_no_import_reaches_up_the_data_flow() -> None:
    violations = []
    for path in _modules():
        source = _top_level(_module_name(path))
        for module in _imported_modules(path):
            target = _top_level(module)
            if target == source or target not in LAYERS:
                continue
            if LAYERS[target] >= LAYERS[source]:
                violations.append(f"{path.relative_to(PACKAGE_ROOT)} imports tumorscale.{target}")
    assert not violations, "imports against the data flow:\n" + "\n".join(sorted(set(violations)))


def _import_graph() -> dict[str, set[str]]:
    known = {_module_name(path) for path in _modules()}
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _modules():
        source = _module_name(path)
        for module in _imported_modules(path):
            if module in known and module != source:
                graph[source].add(module)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return [*path[path.index(child):], child]
            if child not in state and (cycle := visit(child)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_between_modules() -> None:
    graph = _import_graph()
    # A package's __init__ re-exports its modules; an edge into an __init__ from its own
    # submodule is how a module reaches a sibling, not a cycle of logic.
    pruned = {
        source: {t for t in targets if not source.startswith(t + ".")}
        for source, targets in graph.items()
    }
    cycle = _find_cycle(pruned)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_modules_are_short_enough_to_read() -> None:
    too_long = []
    for path in _modules():
        relative = str(path.relative_to(PACKAGE_ROOT))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > SIZE_LIMIT_LINES and relative not in OVERSIZED:
            too_long.append(f"{relative}: {lines} lines")
    assert not too_long, (
        f"modules over {SIZE_LIMIT_LINES} lines (split them by concept, or add them to OVERSIZED "
        "with the reason they stay whole):\n" + "\n".join(too_long)
    )


def test_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}}) is None
