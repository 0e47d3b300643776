"""Generate learner notebooks from the reference solutions (the single source).

In ``solutions/NN_topic.ipynb`` an answer sits between markers:

* Python: ``### BEGIN SOLUTION`` … ``### END SOLUTION``. At top level the region
  becomes ``name = TODO`` for every name it binds (so the check cell still runs
  and reports "not attempted yet"); inside a function body it becomes
  ``TODO()``, which raises NotAttempted when the check calls the function.
* SQL inside a Python string: ``-- BEGIN SOLUTION`` … ``-- END SOLUTION``
  becomes ``-- YOUR SQL HERE``; an empty statement is "not attempted".
* Markdown: ``<!-- BEGIN SOLUTION -->`` … ``<!-- END SOLUTION -->``.

Cells that held a region are tagged ``answer``; grading takes only those cells
from a submission and everything else (checks included) from the canonical
learner notebook. Outputs are cleared.

Cells that use an answer (check cells, try-it cells, demos of the learner's
function) are tagged ``raises-exception`` in the learner copy: JupyterLab's Run
All then goes past an unsolved or failing one (it sends such a cell with
``stop_on_error`` off), so a newcomer sees every demo, plot and verdict of the
notebook. Grading and the repository's conftest ignore the tag on those cells
(``strict_copy``), so under nbval a failing check still fails its cell.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import nbformat

from ..runtime.config import NOTEBOOKS_DIR, SOLUTIONS_DIR

PY_REGION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*### END SOLUTION[^\n]*(\n|$)",
                       re.M | re.S)
SQL_REGION = re.compile(r"^([ \t]*)-- BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*-- END SOLUTION[^\n]*(\n|$)",
                        re.M | re.S)
MD_REGION = re.compile(r"<!-- BEGIN SOLUTION -->.*?<!-- END SOLUTION -->", re.S)
ANSWER_TAG = "answer"
GO_ON_TAG = "raises-exception"  # JupyterLab and nbval both read this tag


def is_check_cell(cell: nbformat.NotebookNode) -> bool:
    """A code cell that calls ``check(...)``."""
    return cell.cell_type == "code" and any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "check"
        for node in ast.walk(_parse(cell.source)))


def _parse(source: str) -> ast.AST:
    try:
        return ast.parse(source)
    except SyntaxError:  # IPython magics (%sql …): no Python to read
        return ast.Module(body=[], type_ignores=[])


def answer_names(nb: nbformat.NotebookNode) -> set[str]:
    """The names the learner's answer cells bind (cells tagged ``answer``)."""
    return {name for cell in nb.cells if cell.cell_type == "code"
            and ANSWER_TAG in cell.metadata.get("tags", []) for name in _bound_names(cell.source)}


def uses_answer(cell: nbformat.NotebookNode, names: set[str]) -> bool:
    """A check cell, or another cell that reads a name an answer cell binds (a try-it cell, a
    demo of the learner's function): the cells a learner's Run All may go past."""
    if cell.cell_type != "code" or ANSWER_TAG in cell.metadata.get("tags", []):
        return False
    return is_check_cell(cell) or any(
        isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in names
        for node in ast.walk(_parse(cell.source)))


def strict_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with the Run-All tag taken off the cells that use answers, for nbval and grading."""
    nb = nbformat.from_dict(copy.deepcopy(dict(nb)))
    names = answer_names(nb)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if GO_ON_TAG in tags and uses_answer(cell, names):
            cell.metadata["tags"] = [t for t in tags if t != GO_ON_TAG]
            if not cell.metadata["tags"]:
                cell.metadata.pop("tags")
    return nb


def _bound_names(code: str) -> list[str]:
    """Top-level names a region binds, in order of first binding."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names: list[str] = []

    def add(target: ast.AST) -> None:
        if isinstance(target, ast.Name) and target.id not in names:
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                add(elt)

    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                add(target)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            add(node.target)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name not in names:
                names.append(node.name)
    return names


def _function_stub(node: ast.FunctionDef | ast.AsyncFunctionDef, source: str) -> str:
    """The function's signature and docstring as written, with ``TODO()`` for a body.

    The signature and docstring are the contract the check relies on (what the
    function receives, returns and must leave behind), so the learner keeps
    them; decorators are part of the answer (a retry wrapper) and go.
    """
    lines = source.splitlines()
    first = node.body[0]
    keep_to = first.end_lineno if ast.get_docstring(node) is not None else first.lineno - 1
    header = lines[node.lineno - 1:keep_to]
    indent = " " * first.col_offset
    return "\n".join(header + [f"{indent}# YOUR ANSWER HERE: replace the next line",
                               f"{indent}TODO()"])


def _py_stub(match: re.Match) -> str:
    indent, body, newline = match.group(1), match.group(2), match.group(3)
    if indent:
        return f"{indent}# YOUR ANSWER HERE: replace the next line\n{indent}TODO(){newline}"
    try:
        tree = ast.parse(body)
    except SyntaxError:
        tree = None
    functions = [n for n in (tree.body if tree else [])
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    others = [name for name in _bound_names(body) if name not in {f.name for f in functions}]
    blocks = []
    if others or not functions:
        blocks.append("\n".join(["# YOUR ANSWER HERE"] + [f"{name} = TODO" for name in others]))
    blocks += [_function_stub(f, body) for f in functions]
    return "\n\n".join(blocks) + newline


def _sql_stub(match: re.Match) -> str:
    return f"{match.group(1)}-- YOUR SQL HERE{match.group(3)}"


def strip_solutions(source: str, cell_type: str) -> tuple[str, bool]:
    """The learner version of one cell's source, and whether it held an answer."""
    if cell_type == "markdown":
        new = MD_REGION.sub("_Your answer here._", source)
        return new, new != source
    new = SQL_REGION.sub(_sql_stub, source)
    new = PY_REGION.sub(_py_stub, new)
    return new, new != source


def learner_version(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = copy.deepcopy(solution)
    for cell in nb.cells:
        source, is_answer = strip_solutions(cell.source, cell.cell_type)
        cell.source = source
        tags = [t for t in cell.metadata.get("tags", []) if t not in (ANSWER_TAG, GO_ON_TAG)]
        if is_answer:
            tags.append(ANSWER_TAG)
        cell.metadata["tags"] = tags
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    names = answer_names(nb)
    for cell in nb.cells:
        if uses_answer(cell, names):
            cell.metadata["tags"].append(GO_ON_TAG)
        if not cell.metadata["tags"]:
            cell.metadata.pop("tags")
    nb.metadata.pop("widgets", None)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def expected_learner_text(solution_path: Path) -> str:
    return render(learner_version(nbformat.read(solution_path, as_version=4)))


PINNED = "# NBVAL_CHECK_OUTPUT"  # the only cells whose output a solution keeps in git


def clean_solution(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The solution as committed: outputs only on cells nbval compares (``# NBVAL_CHECK_OUTPUT``).

    Every other output is one run's measurement (a timing, a plot, a table): it would go
    stale in git, so it lives in the site that ``make site`` builds, not here.
    """
    nb = copy.deepcopy(solution)
    for cell in nb.cells:
        if cell.cell_type == "code" and PINNED not in cell.source and cell.get("outputs"):
            cell.outputs = []
            cell.execution_count = None
    return nb


def clean_solution_text(solution_path: Path) -> str:
    return render(clean_solution(nbformat.read(solution_path, as_version=4)))


def generate_all(check_only: bool = False) -> list[Path]:
    """Write (or, with check_only, list the stale) learner notebooks, and clear the
    solutions' unpinned outputs (:func:`clean_solution`)."""
    stale: list[Path] = []
    NOTEBOOKS_DIR.mkdir(exist_ok=True)
    for solution_path in sorted(SOLUTIONS_DIR.glob("*.ipynb")):
        clean = clean_solution_text(solution_path)
        if solution_path.read_text() != clean:
            stale.append(solution_path)
            if not check_only:
                solution_path.write_text(clean)
        target = NOTEBOOKS_DIR / solution_path.name
        text = expected_learner_text(solution_path)
        if not target.exists() or target.read_text() != text:
            stale.append(target)
            if not check_only:
                target.write_text(text)
    return stale


def topic_of(notebook: Path | str) -> str:
    """'02_race_conditions.ipynb' → 'race_conditions' (the check module's name)."""
    return re.sub(r"^\d+_", "", Path(notebook).stem)


def _check_arguments(source: str, check_id: str) -> list[str] | None:
    """The names a cell passes to ``check(check_id, ...)``, or None if it does not call it."""
    try:
        tree = ast.parse("\n".join(line for line in source.splitlines()
                                   if not line.lstrip().startswith(("%", "!"))))
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", ""))
                == "check" and node.args and isinstance(node.args[0], ast.Constant)
                and node.args[0].value == check_id):
            return [a.id for a in node.args[1:] if isinstance(a, ast.Name)]
    return None


def reference_answer(check_id: str) -> str:
    """The reference solution's answer cells for one check, as the learner would type them."""
    topic = check_id.partition(".")[0]
    paths = [p for p in sorted(SOLUTIONS_DIR.glob("*.ipynb")) if topic_of(p) == topic]
    if not paths:
        raise ValueError(f"no solution notebook for {topic!r}")
    solution = nbformat.read(paths[0], as_version=4)
    learner = learner_version(solution)
    names = next((found for cell in solution.cells if cell.cell_type == "code"
                  for found in [_check_arguments(cell.source, check_id)] if found is not None), None)
    if names is None:
        raise ValueError(f"{paths[0].name} has no cell that runs check({check_id!r}, ...)")
    pieces = []
    for index, cell in enumerate(learner.cells):
        if ANSWER_TAG not in cell.metadata.get("tags", []) or cell.cell_type != "code":
            continue
        original = solution.cells[index].source
        original = "\n".join(line for line in original.splitlines()
                             if not re.match(r"\s*(###|--) (BEGIN|END) SOLUTION", line))
        if set(_bound_names(original)) & set(names) or any(
                re.search(rf"^\s*def {re.escape(n)}\b", original, re.M) for n in names):
            pieces.append(original)
    return "\n\n# ----\n\n".join(pieces)
