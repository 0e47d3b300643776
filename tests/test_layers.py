"""The package's layers: runtime < data < tools < course < checks, and no import points up.

Every import statement in ``labs/`` (top-level or inside a function) is resolved
to the module it names; a module may import from its own layer and the layers
below it. ``labs/__init__.py`` and ``labs/__main__.py`` sit above every layer.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import labs

LABS = Path(__file__).resolve().parents[1] / "labs"
ORDER = ["runtime", "data", "tools", "course", "checks"]
SHORT_NAMES = labs._SHORT_NAMES  # the short names notebooks use, and their layers


def _module_name(path: Path, root: Path = LABS) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the file."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from ..tools import explain`` imports labs.tools.explain
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
            found.append((node.lineno, module))
    return [(line, m) for line, m in found if m == "labs" or m.startswith("labs.")]


def layer_of(module: str) -> str | None:
    """The layer a module belongs to, or None for the package's own top files."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] in ORDER:
        return parts[1]
    return SHORT_NAMES.get(parts[1])


def upward_imports(root: Path = LABS) -> list[str]:
    """Every import in ``root`` that points to a higher layer than its own file's."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        own = layer_of(_module_name(path, root))
        if own is None:
            continue
        reported: set[int] = set()
        for line, module in _imported(path, root):
            target = layer_of(module)
            if target is not None and ORDER.index(target) > ORDER.index(own) and line not in reported:
                reported.add(line)
                problems.append(f"{path.relative_to(root.parent)}:{line} ({own}) imports "
                                f"{module} ({target})")
    return problems


def test_every_module_lives_in_a_layer() -> None:
    """Besides __init__ and __main__, every module of labs/ sits in one of the five layers."""
    stray = [p.name for p in LABS.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert not stray, f"modules outside the layers: {stray}; move them into {ORDER}"
    assert sorted(p.name for p in LABS.iterdir() if (p / "__init__.py").exists()) == sorted(ORDER)


def test_no_layer_imports_a_higher_one() -> None:
    """runtime < data < tools < course < checks: no import points up."""
    problems = upward_imports()
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_the_test_catches_an_upward_import(tmp_path: Path) -> None:
    """A deliberate upward import (runtime importing the course machinery) is reported."""
    fake = tmp_path / "labs"
    for layer in ORDER:
        (fake / layer).mkdir(parents=True)
        (fake / layer / "__init__.py").write_text("")
    (fake / "runtime" / "server.py").write_text(
        "def f():\n    from ..course.checking import CheckFailed\n    from labs import sessions\n")
    problems = upward_imports(fake)
    assert len(problems) == 2 and "course" in problems[0] and "tools" in problems[1], problems


@pytest.mark.parametrize("short", sorted(SHORT_NAMES))
def test_short_names_are_the_same_modules(short: str) -> None:
    """labs.<short> (what notebooks import) is the very module labs.<layer>.<short>."""
    alias = importlib.import_module(f"labs.{short}")
    real = importlib.import_module(f"labs.{SHORT_NAMES[short]}.{short}")
    assert alias is real and getattr(labs, short) is real
