"""The three-way contract: learner copies fail every check as "not attempted yet",
decoys are rejected by the named check, and learner copies are never stale.

(The third way, solutions passing, is nbval's job: `pytest` collects
`solutions/*.ipynb` with --nbval-lax.)

Each learner notebook gets its own test class, and each challenge's decoys one class
sharing one kernel, so that pytest-xdist's loadscope spreads them over the workers.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import nbformat
import pytest

from labs.course.checking import checks_of
from labs.runtime.config import NOTEBOOKS_DIR, SOLUTIONS_DIR
from labs.course.learner import (ANSWER_TAG, GO_ON_TAG, answer_names, generate_all,
                                 is_check_cell, learner_version, topic_of, uses_answer)

from .nbrun import Kernel, execute

DECOYS_DIR = Path(__file__).parent / "decoys"
# Cells tagged "demo" measure or draw something for the reader and feed no later
# check; "# try it" cells let the learner run their own answer before its check.
# nbval runs both in the solutions; learner and decoy runs skip them, which is what
# keeps the default suite inside its time budget.
DEMO_TAG = "demo"


def _skippable(cell: nbformat.NotebookNode, try_it: bool = True) -> bool:
    """A demo cell, or a learner's "try it" cell: nothing a later check needs."""
    return (DEMO_TAG in cell.metadata.get("tags", [])
            or (try_it and cell.cell_type == "code"
                and cell.source.lstrip().lower().startswith("# try it")))


def _without_demos(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without demo cells and "try it" cells."""
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if not _skippable(c)]
    return nb


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell binds, names it reads) — IPython magics are left out."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%"))
    tree = ast.parse(code)
    bound, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store) else read).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return bound, read


def test_learner_notebooks_are_up_to_date():
    """Every committed learner notebook equals what `make notebooks` would write."""
    stale = generate_all(check_only=True)
    assert not stale, (f"stale learner copies, or solutions with unpinned outputs; run `make "
                       f"notebooks`: {[str(p) for p in stale]}")


def test_every_solution_has_a_learner_copy_and_checks():
    """Each solution has its learner copy, a check module, and at least one decoy."""
    for solution in sorted(SOLUTIONS_DIR.glob("*.ipynb")):
        assert (NOTEBOOKS_DIR / solution.name).exists()
        topic = topic_of(solution)
        assert checks_of(topic), f"labs/checks/{topic}.py defines no q1, q2, ..."
        assert list((DECOYS_DIR / topic).glob("*.py")), f"no decoys in tests/decoys/{topic}/"


def test_demo_cells_feed_no_later_cell_that_runs_without_them():
    """A name bound only by demo cells is never read by a cell the contract runs execute."""
    for solution in sorted(SOLUTIONS_DIR.glob("*.ipynb")):
        nb = nbformat.read(solution, as_version=4)
        demo_only: dict[str, int] = {}
        kept: set[str] = set()
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            bound, read = _names(cell.source)
            if _skippable(cell):
                demo_only.update({name: index for name in bound - kept})
                continue
            leaked = {name: demo_only[name] for name in read - bound if name in demo_only}
            assert not leaked, (f"{solution.name} cell {index} reads {sorted(leaked)} bound only "
                                f"by demo cell(s) {sorted(set(leaked.values()))}")
            kept |= bound
            for name in bound:
                demo_only.pop(name, None)


class LearnerCopy:
    notebook: Path

    @pytest.mark.notebook
    def test_every_check_reports_not_attempted(self):
        """Executed as shipped (Run All), the learner notebook reaches its last cell and fails
        each check with 'not attempted yet'."""
        # try-it cells and the demos of the learner's own functions stay: one that crashes on the
        # stub would stop Run All. Other demos go (they are the solution's, run under nbval).
        shipped = nbformat.read(self.notebook, as_version=4)
        names = answer_names(shipped)
        nb = nbformat.from_dict(shipped)
        nb.cells = [c for c in nb.cells if not _skippable(c, False) or uses_answer(c, names)]
        run = execute(nb)
        topic = topic_of(self.notebook)
        for check_id in checks_of(topic):
            verdict = run.verdicts.get(check_id)
            assert verdict is not None, f"{check_id} never ran in the learner notebook"
            assert not verdict["passed"], f"{check_id} passes on the unsolved stub"
            assert not verdict["attempted"], (
                f"{check_id} should say 'not attempted yet', said: {verdict['message']}")
        # Only cells that use an answer may fail, each tagged so that Run All goes past it,
        # and only because the answer is a stub: anything else greets the learner with a
        # traceback before they wrote anything.
        for index, error in run.errors.items():
            cell = run.notebook.cells[index]
            assert GO_ON_TAG in cell.metadata.get("tags", []), (
                f"cell {index} fails on the unsolved notebook and stops Run All: {error}")
            assert error.startswith("NotAttempted"), (
                f"cell {index} fails on the unsolved notebook for another reason: {error}")


def _answer_cell_binding(nb: nbformat.NotebookNode, name: str) -> int:
    learner = learner_version(nb)
    for index, cell in enumerate(learner.cells):
        if ANSWER_TAG not in cell.metadata.get("tags", []):
            continue
        tree = ast.parse(nb.cells[index].source)
        for node in tree.body:
            targets = []
            if isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                targets = [node.name]
            if name in targets:
                return index
    raise AssertionError(f"no answer cell binds {name!r}")


def _check_cell(nb: nbformat.NotebookNode, check_id: str) -> int:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (f'check("{check_id}"' in cell.source
                                         or f"check('{check_id}'" in cell.source):
            return index
    raise AssertionError(f"no cell runs check {check_id!r}")


class Decoys:
    """One challenge's decoys, each a test; they share one kernel (Run All again, with the
    next decoy's answer), so that the whole class runs on one xdist worker."""

    solution: Path

    @pytest.fixture(scope="class")
    def kernel(self):
        kernel = Kernel()
        yield kernel
        kernel.close()

    def reject(self, decoy: Path, kernel: Kernel) -> None:
        """The decoy's wrong answer, put in the solution notebook, fails the named check."""
        spec = importlib.util.spec_from_file_location(decoy.stem, decoy)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        nb = _without_demos(nbformat.read(self.solution, as_version=4))
        for name, source in getattr(module, "REPLACE", {}).items():
            nb.cells[_answer_cell_binding(nb, name)].source = source
        # EDIT: the reference answer with a few exact substitutions, the decoy's whole point
        for name, edits in getattr(module, "EDIT", {}).items():
            cell = nb.cells[_answer_cell_binding(nb, name)]
            for old, new in edits:
                assert old in cell.source, f"{decoy.name}: {old!r} is not in the reference"
                cell.source = cell.source.replace(old, new)
        stop = _check_cell(nb, module.CHECK)
        # the other exercises' check cells bind nothing and leave the database as found:
        # running them would only judge the decoy's answer again, at a cost of seconds each;
        # a challenge whose checks build on the earlier checks' work says so in its module
        checks = importlib.import_module(f"labs.checks.{module.CHECK.split('.')[0]}")
        builds_on = getattr(checks, "CHECKS_BUILD_ON_EARLIER", False)
        if builds_on is not True:
            # a dict names, per check, the earlier checks whose cells build what it reads
            kept = {stop} | {_check_cell(nb, earlier)
                             for earlier in (builds_on or {}).get(module.CHECK, ())}
            nb.cells = [c for i, c in enumerate(nb.cells[: stop + 1])
                        if i in kept or not is_check_cell(c)]
        run = kernel.execute(nb, stop_after=stop)
        verdict = run.verdicts.get(module.CHECK)
        assert verdict is not None, (
            f"{module.CHECK} never ran; errors before it: {run.errors}")
        assert not verdict["passed"], f"decoy {decoy.name} passed {module.CHECK}"
        assert verdict["attempted"], f"decoy {decoy.name} was judged 'not attempted'"
        # rejected for the right reason, not because something else broke on the way; a
        # tuple lists reasons that are all right, of which the seeded data shows one first
        expected = module.EXPECT if isinstance(module.EXPECT, tuple) else (module.EXPECT,)
        assert any(words in verdict["message"] for words in expected), (
            f"decoy {decoy.name} failed {module.CHECK} for another reason than "
            f"{module.EXPECT!r}: {verdict['message']}")


def _decoy_test(decoy: Path):
    @pytest.mark.notebook
    def test(self, kernel):
        self.reject(decoy, kernel)
    test.__doc__ = (decoy.read_text().split('"""')[1].strip() if '"""' in decoy.read_text()
                    else f"decoy {decoy.stem}")
    return test


for _nb in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
    _name = f"TestLearner_{topic_of(_nb)}"
    globals()[_name] = type(_name, (LearnerCopy,), {"notebook": _nb})

for _topic_dir in sorted(p for p in DECOYS_DIR.iterdir() if p.is_dir()):
    _solutions = [s for s in SOLUTIONS_DIR.glob("*.ipynb") if topic_of(s) == _topic_dir.name]
    if _solutions:
        _name = f"TestDecoys_{_topic_dir.name}"
        globals()[_name] = type(_name, (Decoys,), {
            "solution": _solutions[0],
            **{f"test_{d.stem}": _decoy_test(d) for d in sorted(_topic_dir.glob("*.py"))}})
