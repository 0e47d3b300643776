"""Grading a small fixture class: one complete, one partial, one with a tampered check."""

from __future__ import annotations

import csv

import nbformat
import pytest

from labs.runtime.config import NOTEBOOKS_DIR, SOLUTIONS_DIR
from labs.course.grading import grade
from labs.course.learner import ANSWER_TAG

NAME = "00_start_here.ipynb"


def _submission(answers: set[str], tamper: bool = False) -> nbformat.NotebookNode:
    """A learner copy with the solution's answers filled into the cells binding `answers`."""
    learner = nbformat.read(NOTEBOOKS_DIR / NAME, as_version=4)
    solution = {c.id: c for c in nbformat.read(SOLUTIONS_DIR / NAME, as_version=4).cells}
    for cell in learner.cells:
        if ANSWER_TAG in cell.metadata.get("tags", []):
            if any(name in cell.source for name in answers):
                cell.source = solution[cell.id].source
            elif tamper:
                cell.source = 'collisions_sql = "SELECT 0 AS n"'
        if tamper and 'check("start_here.q2"' in cell.source:
            cell.source = 'print("✓ start_here.q2: correct")'
    return learner


@pytest.mark.notebook
@pytest.mark.slow
def test_fixture_class_is_graded_right(tmp_path):
    """The report gives 2/2, 1/2 and 1/2, and says why each failure failed."""
    subs = tmp_path / "submissions"
    for learner, nb in {
        "ada": _submission({"newest_sql", "collisions_sql"}),
        "bob": _submission({"newest_sql"}),
        "eve": _submission({"newest_sql"}, tamper=True),
    }.items():
        (subs / learner).mkdir(parents=True)
        nbformat.write(nb, subs / learner / NAME)
    report = grade(subs, out_dir=tmp_path / "report", cell_timeout=300)
    scores = {row.learner: (row.passed, row.total) for row in report.rows}
    assert scores == {"ada": (2, 2), "bob": (1, 2), "eve": (1, 2)}
    failures = {row.learner: dict(row.failures) for row in report.rows}
    assert "not attempted yet" in failures["bob"]["start_here.q2"]
    assert "not attempted" not in failures["eve"]["start_here.q2"]
    with open(tmp_path / "report" / "report.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and sum(int(r["passed"]) for r in rows) == 4
    assert "| eve | 00_start_here.ipynb | 1/2 |" in (tmp_path / "report" / "report.md").read_text()
