"""The package layers: no module imports from a package above its own, and no two modules import each other."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "contrafeat"
LAYERS = [
    {"errors", "io_utils", "paths", "resumable", "devices", "options", "checks", "console"},
    {"gan"},
    {"shapes3d"},
    {"zoo"},
    {"features"},
    {"discovery"},
    {"evaluation"},
    {"viz"},
    {"runs"},
    {"experiments"},
    {"editing"},
    {"ui"},
    {"commands"},
    {"cli", "cli_reference", "__main__", "__init__"},
]
"""Lowest first: a module may import from its own layer's package and from the layers below."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every contrafeat module the file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "contrafeat":
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if (PACKAGE.parent / child.replace(".", "/")).with_suffix(".py").is_file() else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "contrafeat"}
    return found


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return next(index for index, names in enumerate(LAYERS) if top in names)


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): imported_modules(path) for path in PACKAGE.rglob("*.py")}


def test_every_package_has_a_layer() -> None:
    tops = {path.stem if path.parent == PACKAGE else path.relative_to(PACKAGE).parts[0] for path in PACKAGE.rglob("*.py")}
    assert tops <= set().union(*LAYERS)


def test_no_import_runs_up_a_layer() -> None:
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if target != "contrafeat" and layer_of(target) > layer_of(module)
    )
    assert upward == []


def test_no_two_modules_import_each_other() -> None:
    graph = import_graph()
    pairs = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph.get(b, set()) and a != b})
    assert pairs == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text("from contrafeat.viz import images\n\ndef late():\n    from contrafeat.discovery.run import train_run\n")
    assert imported_modules(module) == {"contrafeat.viz.images", "contrafeat.discovery.run"}
    assert layer_of("contrafeat.viz.images") > layer_of("contrafeat.gan.stylegan2")
