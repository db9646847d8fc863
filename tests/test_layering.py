"""The one-way dependencies of docs ARCHITECTURE.md, checked on the source (an AST walk; nothing is imported).

Every import counts: module level and inside functions (lazy), `from styleclip import x`, relative imports and
`importlib.import_module("styleclip....")` with a literal name. A violation is reported as
`file:line imports X (rule)`.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "styleclip"

BASE = {"util", "types", "errors"}  # plumbing that knows no model: importable from everywhere

# component -> the components it may import (besides itself and BASE). A component is a subpackage
# (styleclip/<name>/) or a top-level module (styleclip/<name>.py).
ALLOWED: dict[str, set[str]] = {
    "util": set(), "types": set(), "errors": set(),  # only each other
    "nets": set(),
    "encoders": {"nets"},
    "losses": {"encoders", "nets"},
    "sources": {"nets"},
    "stylespace": {"encoders", "nets"},  # S-space math: no store, no files found or cached
    "editors": {"stylespace", "encoders", "nets", "losses"},  # engines take built modules and data
    "training": {"editors", "stylespace", "encoders", "nets", "losses", "store"},  # trainers write mapper files
    "photo": {"encoders", "nets", "store", "losses"},
    "video": {"photo", "encoders", "nets", "store", "losses"},
    # the store knows paths: it reads weights into nets, and finds, reads or computes (with stylespace) the
    # S-space files of a generator
    "store": {"nets", "stylespace"},
    "models": {"store"},  # names only (no torch: see test_models_import_no_torch)
    "toy": {"nets", "encoders", "losses", "store"},
    "factory": {"models", "store", "nets", "encoders", "editors", "stylespace", "toy", "sources", "losses"},
    "pipelines": {"factory", "models", "photo", "video", "editors", "sources"},
    "cli": {"pipelines", "factory", "models", "sources", "app"},
    "app": {"pipelines", "factory", "models", "sources"},
    "styleclip": None,  # the package root (lazy public API) and __main__: anything
    "__main__": None,
}

# Front ends still reaching past pipelines/factory today: (file, component) pairs, to shrink to nothing as the
# edit plan takes the work over. An entry that is no longer needed fails the test, so the list only shrinks.
FRONT_END_EXCEPTIONS: set[tuple[str, str]] = {
    ("styleclip/app/actions.py", "editors"),
    ("styleclip/app/actions.py", "photo"),
    ("styleclip/app/actions.py", "store"),
    ("styleclip/app/actions.py", "stylespace"),
    ("styleclip/cli/common.py", "store"),
    ("styleclip/cli/generator.py", "store"),
    ("styleclip/cli/photo.py", "photo"),
    ("styleclip/cli/stylespace.py", "photo"),
    ("styleclip/cli/stylespace.py", "store"),
    ("styleclip/cli/stylespace.py", "stylespace"),
    ("styleclip/cli/toy.py", "store"),
    ("styleclip/cli/toy.py", "stylespace"),
    ("styleclip/cli/toy.py", "toy"),
    ("styleclip/cli/train.py", "training"),
    ("styleclip/cli/weights.py", "store"),
}

# Engines never import each other; these editor modules are shared by all of them.
EDITOR_SHARED = {"base", "auto_strength"}

# third-party front-end libraries: only in their front end
ONLY_IN = {"typer": "cli", "gradio": "app"}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _component(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "styleclip":
        return None
    return parts[1] if len(parts) > 1 else "styleclip"


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, at any depth."""
    module = _module_name(path, root)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name in ("styleclip", "styleclip.editors", "styleclip.stylespace") or not node.module:
                # `from styleclip import stylespace`: the names may be submodules
                found += [(node.lineno, f"{name}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, name))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == \
                "import_module" and node.args and isinstance(node.args[0], ast.Constant) and \
                isinstance(node.args[0].value, str):
            found.append((node.lineno, node.args[0].value))
    return found


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _edges():
    """(file, line, source component, target module, target component) for every styleclip import."""
    for path in _sources():
        src = _component(_module_name(path))
        for line, name in imports(path):
            dst = _component(name)
            if dst is not None:
                yield path, line, src, name, dst


def test_every_component_has_a_rule():
    unknown = sorted({src for _, _, src, _, _ in _edges()} - set(ALLOWED))
    assert not unknown, f"components without a layering rule in tests/test_layering.py: {unknown}"


def test_imports_only_go_down():
    problems, used = [], set()
    for path, line, src, name, dst in _edges():
        allowed = ALLOWED.get(src)
        if allowed is None or dst == src or dst in BASE:
            continue
        if src in BASE and dst not in BASE:
            problems.append(f"{_rel(path)}:{line} imports {name} (util/types/errors import only each other)")
        elif dst not in allowed:
            if (_rel(path), dst) in FRONT_END_EXCEPTIONS:
                used.add((_rel(path), dst))
                continue
            problems.append(f"{_rel(path)}:{line} imports {name} ({src} may import only "
                            f"{', '.join(sorted(allowed | BASE))})")
    assert not problems, "upward or sideways imports:\n" + "\n".join(problems)
    stale = sorted(FRONT_END_EXCEPTIONS - used)
    assert not stale, f"FRONT_END_EXCEPTIONS entries no longer needed (remove them): {stale}"


def test_engines_never_import_each_other():
    problems = []
    for path, line, src, name, dst in _edges():
        if src != "editors" or dst != "editors" or path.name in ("__init__.py",):
            continue
        parts = name.split(".")
        own = _module_name(path).split(".")[-1]
        target = parts[2] if len(parts) > 2 else None
        if target is not None and target != own and target not in EDITOR_SHARED:
            problems.append(f"{_rel(path)}:{line} imports {name} (engines import only "
                            f"{', '.join(sorted(EDITOR_SHARED))} of editors/)")
    assert not problems, "\n".join(problems)


def test_front_end_libraries_stay_in_their_front_end():
    problems = []
    for path in _sources():
        src = _component(_module_name(path))
        for line, name in imports(path):
            lib = name.split(".")[0]
            if lib in ONLY_IN and src != ONLY_IN[lib]:
                problems.append(f"{_rel(path)}:{line} imports {name} ({lib} only in styleclip/{ONLY_IN[lib]}/)")
    assert not problems, "\n".join(problems)


def test_models_import_no_torch():
    problems = [f"{_rel(p)}:{line} imports {name} (models are names only: no torch)"
                for p in _sources() if _component(_module_name(p)) == "models"
                for line, name in imports(p) if name.split(".")[0] == "torch"]
    assert not problems, "\n".join(problems)


def test_no_import_cycles_between_components():
    graph: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], str] = {}
    for path, line, src, name, dst in _edges():
        if src != dst and ALLOWED.get(src, set()) is not None:
            graph[src].add(dst)
            where.setdefault((src, dst), f"{_rel(path)}:{line} imports {name}")
    cycles = []
    for start in sorted(graph):  # a path back to `start` is a cycle
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    cycles.append(trail + [start])
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
    assert not cycles, "import cycles between components:\n" + "\n".join(
        " -> ".join(c) + ": " + "; ".join(where[(a, b)] for a, b in zip(c, c[1:])) for c in cycles)


def test_the_checker_sees_lazy_relative_and_dynamic_imports(tmp_path):
    """The walk itself: a function-level import, a relative import and import_module are all found."""
    pkg = tmp_path / "styleclip" / "nets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text("import os\n\ndef f():\n    from styleclip.store import registry\n"
                              "    from ..editors import base\n    import importlib\n"
                              "    importlib.import_module('styleclip.cli.edit')\n")
    names = [n for _, n in imports(pkg / "x.py", tmp_path)]
    assert {"styleclip.store", "styleclip.editors.base", "styleclip.cli.edit"} <= set(names)
