"""The course map, lasting progress, and the learner copy's Run All."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from labs.course import catalogue, checking, progress
from labs.course.learner import (GO_ON_TAG, answer_names, is_check_cell, learner_version,
                                 strict_copy, uses_answer)
from labs.runtime.config import NOTEBOOKS_DIR, ROOT, SOLUTIONS_DIR


def test_the_course_map_names_every_notebook_and_only_them():
    """Each challenge in the map has its solution and learner notebook; each notebook is mapped."""
    mapped = {f"{c.number}_{c.topic}.ipynb" for c in catalogue.COURSE}
    assert mapped == {p.name for p in SOLUTIONS_DIR.glob("*.ipynb")}
    assert mapped == {p.name for p in NOTEBOOKS_DIR.glob("*.ipynb")}
    for c in catalogue.COURSE:
        assert all(catalogue.BY_TOPIC[n].number < c.number for n in c.needs), (
            f"{c.topic} needs a challenge that comes after it")


def test_the_readme_shows_the_course_map():
    """The README's table is the map's own (regenerate it from labs.course.catalogue)."""
    readme = (ROOT / "README.md").read_text()
    assert catalogue.markdown_table() in readme, (
        "README.md's course map differs from labs/course/catalogue.py: paste "
        "`python -c 'from labs.course.catalogue import markdown_table; print(markdown_table())'`")


def test_progress_outlives_the_kernel_and_says_what_is_next(tmp_path, monkeypatch):
    """Verdicts land in the learner's file; a new reader sees them and names the next check."""
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv("LAB_PROGRESS_FILE", str(path))
    monkeypatch.delenv("LAB_PROGRESS", raising=False)
    assert "00_start_here" in progress.next_step()
    progress.record("start_here.q1", True, True)
    progress.record("start_here.q2", False, True)
    with open(path, "a") as fh:
        fh.write('{"check": "start_here.q2", "pass')  # a line cut short by a crash
    records = progress.load()
    assert records["start_here.q1"].ever_passed and not records["start_here.q2"].ever_passed
    assert progress.next_step() == ("Next: notebooks/00_start_here.ipynb, check start_here.q2 "
                                    "(last run: failed); 1/2 of its checks passed so far.")
    progress.record("start_here.q2", True, True)
    assert "00 start_here" in progress.table() and "2/2" in progress.table()
    # 00 done: the next is the first challenge whose prerequisites are done
    assert "01_large_datasets" in progress.next_step_line("start_here")


def test_progress_can_be_turned_off_and_never_fails_a_check(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAB_PROGRESS", "off")
    progress.record("start_here.q1", True, True)
    progress.show()
    assert "off" in capsys.readouterr().out
    monkeypatch.delenv("LAB_PROGRESS")
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("LAB_PROGRESS_FILE", str(blocked / "progress.jsonl"))  # not a directory
    progress.record("start_here.q1", True, True)  # no exception


def test_check_records_progress(tmp_path, monkeypatch):
    path = tmp_path / "p.jsonl"
    monkeypatch.setenv("LAB_PROGRESS_FILE", str(path))
    monkeypatch.setattr(checking, "RESULTS", {})
    monkeypatch.setattr(checking, "_find", lambda cid: lambda: "fine")
    checking.check("start_here.q1")
    line = json.loads(path.read_text().splitlines()[-1])
    assert line["check"] == "start_here.q1" and line["passed"] is True


@pytest.mark.parametrize("solution", sorted(SOLUTIONS_DIR.glob("*.ipynb")), ids=lambda p: p.stem)
def test_learner_run_all_goes_past_cells_that_use_answers_and_strict_copies_do_not(solution):
    """Learner copies tag every check cell raises-exception (JupyterLab's Run All goes on),
    and no cell that leaves the answers alone; strict copies, for nbval and grading, tag none."""
    learner = learner_version(nbformat.read(solution, as_version=4))
    names = answer_names(learner)
    checks = [c for c in learner.cells if is_check_cell(c)]
    assert checks and names, "a challenge notebook without check or answer cells"
    assert all(GO_ON_TAG in c.metadata.get("tags", []) for c in checks)
    assert not [c for c in learner.cells if GO_ON_TAG in c.metadata.get("tags", [])
                and not uses_answer(c, names)], "only cells that use answers may let Run All go on"
    strict = strict_copy(learner)
    assert not [c for c in strict.cells if GO_ON_TAG in c.metadata.get("tags", [])]


def test_nbval_on_a_learner_copy_still_fails_its_check_cells(pytester):
    """An instructor's `pytest --nbval-lax notebooks/…` fails unsolved check cells: the
    repository's conftest ignores the Run-All tag on check cells."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("def check(*a):\n    raise AssertionError('unsolved')",
                                          metadata={"tags": ["answer"]}),
                nbformat.v4.new_code_cell('check("x.q1")', metadata={"tags": [GO_ON_TAG]}),
                nbformat.v4.new_code_cell("raise ValueError('expected')",
                                          metadata={"tags": [GO_ON_TAG]})]
    (pytester.path / "n.ipynb").write_text(nbformat.writes(nb))
    (pytester.path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    result = pytester.runpytest_subprocess("--nbval-lax", "--nbval-current-env", "-p", "nbval",
                                           "n.ipynb", "-q")
    # the check cell fails; a deliberate raises-exception cell that is no check still passes
    result.assert_outcomes(failed=1, passed=2)
    assert re.search(r"unsolved", result.stdout.str())
