"""
House rules of the code base, checked on its source (see ``docs/dev/design.rst``).

* No function is longer than 80 lines, its docstring not counted (numpydoc docstrings of public
  functions are long by design; the code is what a reader must hold in their head).
* The package's modules import each other without a cycle (the layering of the design notes).
* ``import sunpy_superres`` stays light: it imports neither torch, diffusers nor OpenCV (rule 8).
"""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

# networkx is a dependency of scikit-image, itself a dependency of the package.
import networkx as nx

PACKAGE = "sunpy_superres"
# The source that is tested, found without importing (and so without running) the package.
PACKAGE_DIR = Path(importlib.util.find_spec(PACKAGE).submodule_search_locations[0])
MAX_FUNCTION_LINES = 80
HEAVY_IMPORTS = ("torch", "cv2", "diffusers")


def _sources():
    """``(module name, path)`` of every module of the package; a package is its ``__init__``."""
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _parse(path):
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_no_function_longer_than_80_lines():
    too_long = []
    for _, path in _sources():
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if ast.get_docstring(node, clean=False) is not None:
                    length -= node.body[0].end_lineno - node.body[0].lineno + 1
                if length > MAX_FUNCTION_LINES:
                    where = path.relative_to(PACKAGE_DIR.parent)
                    too_long.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    assert not too_long, f"functions longer than {MAX_FUNCTION_LINES} lines:\n" + "\n".join(too_long)


def _imported_modules(module, path, modules):
    """
    The package's modules that ``module`` imports, at top level or inside functions.

    ``from X import name`` imports the module ``X.name`` when there is one, else ``X`` (for a
    package, its ``__init__``). The parent packages that Python initialises on the way (importing
    ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first) are left out: every submodule of a
    package whose ``__init__`` imports it would otherwise be in a cycle with it.
    """
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative: level 1 is the module's own package (for an __init__, the package itself).
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {name for name in found if name in modules and name != module}


def test_no_import_cycle():
    sources = dict(_sources())
    graph = nx.DiGraph()
    graph.add_nodes_from(sources)
    for module, path in sources.items():
        graph.add_edges_from((module, target) for target in _imported_modules(module, path, sources))
    assert graph.number_of_edges(), "no import between the package's modules was found: is the parser broken?"
    cycles = sorted(
        (" -> ".join([*cycle, cycle[0]]) for cycle in nx.simple_cycles(graph)),
        key=lambda c: (c.count("->"), c),
    )
    assert not cycles, f"{len(cycles)} import cycle(s) between the package's modules:\n" + "\n".join(
        cycles[:30]
    )


def _modules_imported_by(code):
    """The modules a fresh interpreter imports to run ``code``."""
    # -X importtime writes one stderr line per module imported: "import time: self | cumulative | name".
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
    )
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }


def test_import_is_light():
    imported = _modules_imported_by(f"import {PACKAGE}")
    heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY_IMPORTS)
    tops = sorted({name.split(".")[0] for name in heavy})
    assert not heavy, f"import {PACKAGE} imports {', '.join(tops)} ({len(heavy)} modules, e.g. {heavy[:5]})"


def test_loading_the_default_model_skips_sunpy_map():
    # Loading a model costs torch (issue 18; diffusers comes with the first sampler,
    # tests/models/test_network.py), not sunpy's Map machinery, which the first superresolve call
    # imports (its caller has a Map, so has paid for it already).
    imported = _modules_imported_by("from sunpy_superres.models import load_model; load_model('default')")
    assert "torch" in imported and "safetensors" in imported  # the parser sees the imports
    assert not {"sunpy.map", "sunpy.coordinates", "matplotlib", "diffusers"} & imported
