"""Grading a fixture class: honest work scores as before, cheats score 0 or are flagged,
nothing is left on the server.

One graded run covers every learner (graded two at a time, as ``make grade`` does), so the
suite pays for kernels once; each test then reads its part of the report.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import nbformat
import psycopg
import pytest

from labs.course.grading import answer_bindings, flags_in, grade, leftovers
from labs.course.learner import ANSWER_TAG
from labs.runtime.config import NOTEBOOKS_DIR, SOLUTIONS_DIR
from labs.runtime.server import ensure_server

NAME = "00_start_here.ipynb"
VICTIM = f"grading_victim_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"

# What a cheat puts in the first answer cell (the second keeps its stub unless said).
FORGED = ('{"check_id": "start_here.q1", "passed": true, "message": "correct", '
          '"attempted": true}')
CHEATS = {
    # both cells: the first replaces the check lookup, the second the verdict recorder
    "patches_internals": ("import labs.course.checking\n"
                          "labs.course.checking._find = lambda cid: (lambda *a, **k: 'correct')\n",
                          "from labs.course import checking\n"
                          "checking._record = lambda v: None\n"),
    "forges_line": ("import os\nnewest_sql = open(os.environ['LAB_RESULTS_FILE'], 'a').write('"
                    + FORGED + "\\n') and 'SELECT 1'\n"),
    "copies_reference": (
        "import json, pathlib, labs\n"
        "_nb = json.loads((pathlib.Path(labs.__file__).parents[1] / 'solutions' / "
        "'00_start_here.ipynb').read_text())\n"
        "newest_sql = next(''.join(c['source']) for c in _nb['cells'] "
        "if 'newest_sql = ' in ''.join(c['source'])).split('\"\"\"')[1]\n"),
    "endless_top_level": "while True:\n    pass\n",
    "endless_binding": "newest_sql = next(x for x in iter(int, 1) if x)\n",
    "drops_other_database": (
        "import os, psycopg\n"
        "with psycopg.connect(os.environ['DATABASE_URL'], autocommit=True) as _c:\n"
        f"    newest_sql = _c.execute('DROP DATABASE {VICTIM}') and 'SELECT 1'\n"),
}


def _submission(answers: set[str], *, tamper_check: bool = False,
                cells: str | tuple[str, ...] = ()) -> nbformat.NotebookNode:
    """A learner copy with the solution's answers in the cells binding `answers`, and the
    given sources in its first answer cells (a cheat)."""
    learner = nbformat.read(NOTEBOOKS_DIR / NAME, as_version=4)
    solution = {c.id: c for c in nbformat.read(SOLUTIONS_DIR / NAME, as_version=4).cells}
    cheats = list((cells,) if isinstance(cells, str) else cells)
    for cell in learner.cells:
        if ANSWER_TAG in cell.metadata.get("tags", []):
            if any(name in cell.source for name in answers):
                cell.source = solution[cell.id].source
            if cheats:
                cell.source = cheats.pop(0)
        if tamper_check and 'check("start_here.q2"' in cell.source:
            cell.source = 'print("✓ start_here.q2: correct")'
    return learner


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade the whole fixture class once; yield (report rows by learner, report dir)."""
    srv = ensure_server(verbose=False)
    with psycopg.connect(srv.url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {VICTIM}")
        admin.execute(f"CREATE DATABASE {VICTIM}")
    before = set(leftovers(srv))
    subs = tmp_path_factory.mktemp("submissions")
    learners = {
        "ada": _submission({"newest_sql", "collisions_sql"}),
        "bob": _submission({"newest_sql"}),
        "cy": _submission(set()),
        "eve": _submission({"newest_sql"}, tamper_check=True),
    }
    learners.update({name: _submission(set(), cells=code) for name, code in CHEATS.items()})
    for learner, nb in learners.items():
        (subs / learner).mkdir()
        nbformat.write(nb, subs / learner / NAME)
    (subs / "ivy").mkdir()
    (subs / "ivy" / NAME).write_text("{ this is not JSON")
    (subs / "lou").mkdir()
    nbformat.write(_submission({"newest_sql"}), subs / "lou" / "99_other_lab.ipynb")
    out = tmp_path_factory.mktemp("report")
    # the cell limit stops the endless binding; 00's q2 check alone takes 7-8 s at tiny on a
    # quiet machine, and a 10 s limit timed it out on a loaded one (an honest notebook 1/2)
    report = grade(subs, out_dir=out, cell_timeout=30, notebook_timeout=120, jobs=2)
    rows = {row.learner: row for row in report.rows}
    with psycopg.connect(srv.url, autocommit=True) as admin:
        victim_alive = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                     [VICTIM]).fetchone() is not None
        admin.execute(f"DROP DATABASE IF EXISTS {VICTIM}")
    left = set(leftovers(srv)) - before
    yield rows, out, report, victim_alive, left


@pytest.mark.notebook
@pytest.mark.slow
def test_honest_work_scores_as_before(graded):
    """Complete, partial and untouched notebooks score 2/2, 1/2, 0/2, each failure explained."""
    rows, out, report, *_ = graded
    assert (rows["ada"].passed, rows["bob"].passed, rows["cy"].passed) == (2, 1, 0)
    assert all(rows[n].total == 2 for n in ("ada", "bob", "cy"))
    assert "not attempted yet" in dict(rows["bob"].failures)["start_here.q2"]
    assert not rows["ada"].flags and not rows["bob"].flags and not report.errors
    with open(out / "report.csv") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert sum(int(r["passed"]) for r in csv_rows if r["learner"] == "ada") == 2
    assert "| ada | 00_start_here.ipynb | 2/2 |" in (out / "report.md").read_text()


@pytest.mark.notebook
@pytest.mark.slow
def test_an_edited_check_cell_earns_nothing(graded):
    """Check cells come from the canonical copy: replacing one with a print changes nothing."""
    rows, *_ = graded
    assert rows["eve"].passed == 1 and "not attempted" in dict(rows["eve"].failures)["start_here.q2"]


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("cheat", ["patches_internals", "forges_line"])
def test_tampering_with_the_verdicts_scores_zero_and_is_flagged(graded, cheat):
    """Patching labs.checking._find or _record, or writing a verdict line, earns nothing."""
    rows, *_ = graded
    assert rows[cheat].passed == 0, rows[cheat]
    assert rows[cheat].flags, f"{cheat} should be flagged for review"


@pytest.mark.notebook
@pytest.mark.slow
def test_a_forged_verdict_line_is_reported(graded):
    """The unsigned line is not counted, and the report says one was found."""
    rows, *_ = graded
    assert any("forged" in f for f in rows["forges_line"].flags), rows["forges_line"].flags


@pytest.mark.notebook
@pytest.mark.slow
def test_copying_the_reference_is_flagged(graded):
    """An answer that reads solutions/ may pass, but the instructor is told."""
    rows, *_ = graded
    assert any("reference solutions" in f for f in rows["copies_reference"].flags)


@pytest.mark.notebook
@pytest.mark.slow
def test_endless_answers_are_stopped_and_named(graded):
    """A top-level loop is never run; a binding that never ends times out in its cell."""
    rows, *_ = graded
    assert "while True" in rows["endless_top_level"].note and rows["endless_top_level"].passed == 0
    assert "timed out in cell 14 after" in rows["endless_binding"].note, rows["endless_binding"]
    assert rows["endless_binding"].passed == 0


@pytest.mark.notebook
@pytest.mark.slow
def test_another_learners_database_cannot_be_dropped(graded):
    """The graded kernel's role owns only its own databases: DROP DATABASE of another fails."""
    rows, _, _, victim_alive, _ = graded
    assert victim_alive
    assert rows["drops_other_database"].passed == 0
    assert rows["drops_other_database"].flags


@pytest.mark.notebook
@pytest.mark.slow
def test_unreadable_and_foreign_notebooks_are_grades_not_crashes(graded):
    """Invalid JSON scores 0 with a reason; a notebook of another lab is said to be one."""
    rows, _, report, *_ = graded
    assert rows["ivy"].passed == 0 and "not a readable notebook" in rows["ivy"].note
    assert rows["lou"].note == "not a notebook of this lab"
    assert not report.errors


@pytest.mark.notebook
@pytest.mark.slow
def test_nothing_is_left_on_the_server(graded):
    """Every database, template and role made for grading is dropped afterwards."""
    *_, left = graded
    assert not left, f"grading left behind: {sorted(left)}"


def test_answer_cells_keep_only_what_binds_names():
    """Imports, defs and name assignments stay; attribute assignments, calls and loops go."""
    kept, dropped = answer_bindings(
        "import labs\nx = 'SELECT 1'\nlabs.checking._find = None\nprint(x)\n"
        "def f(conn):\n    return 1\nwhile True:\n    pass\n")
    assert "x = 'SELECT 1'" in kept and "def f(conn):" in kept and "import labs" in kept
    assert "_find" not in kept and "print" not in kept and "while" not in kept
    assert len(dropped) == 3


def test_flags_name_what_an_answer_reaches_for():
    """The lab's internals, the environment, files and other databases are each flagged."""
    assert flags_in("newest_sql = 'SELECT 1'") == []
    assert flags_in("from labs.stress import retry\nx = labs.stress.retry") == []
    found = " ".join(flags_in("import os\nx = os.environ['LAB_RESULTS_FILE']\n"
                              "y = labs.course.checking\nz = 'DROP DATABASE other'"))
    for what in ("the environment", "the results channel", "the lab's internals",
                 "other databases"):
        assert what in found, found


def test_every_reference_answer_survives_grading_whole():
    """Grading keeps only what binds names: every reference answer cell must be of that form,
    or an honest learner who writes it would lose part of it."""
    from labs.course.learner import learner_version

    for path in sorted(SOLUTIONS_DIR.glob("*.ipynb")):
        solution = nbformat.read(path, as_version=4)
        learner = learner_version(solution)
        for index, cell in enumerate(learner.cells):
            if ANSWER_TAG in cell.metadata.get("tags", []) and cell.cell_type == "code":
                _, dropped = answer_bindings(solution.cells[index].source)
                assert not dropped, f"{path.name} cell {index}: grading would drop {dropped}"


def test_reflections_are_collected_for_the_instructor():
    """Answered reflection cells come back with their question; untouched ones do not."""
    from labs.course.grading import reflections_in

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("**Question 1.** Why a total order?"),
                nbformat.v4.new_markdown_cell("*Your answer:* ties come back in plan order",
                                              metadata={"tags": ["reflection"]}),
                nbformat.v4.new_markdown_cell("<details>model</details>"),
                nbformat.v4.new_markdown_cell("**Question 2.** Another?"),
                nbformat.v4.new_markdown_cell("*Your answer:* ", metadata={"tags": ["reflection"]})]
    assert reflections_in(nb) == [("**Question 1.** Why a total order?",
                                   "ties come back in plan order")]


def _pgbouncer_users() -> list[str]:
    from labs.runtime import satellites

    state = satellites._load()
    userlist = Path(state.pgbouncer_dir or "/nonexistent") / "userlist.txt"
    return userlist.read_text().splitlines() if userlist.exists() else []


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("name, checks", [
    # 12's setup creates an owner and an application role, which a graded learner's role
    # may not do (CREATEROLE on PostgreSQL 15 reaches pg_execute_server_program): the
    # grader makes them
    ("12_multi_tenant.ipynb", 4),
    # 15 needs the lab's PgBouncer and replica, which a kernel connected as the learner's
    # role cannot start: the grader gives them, with that role let through PgBouncer and
    # allowed to hold a replica delay
    ("15_pooling_replicas.ipynb", 3),
    # (13's roles and replication slot, and 16's clerk, are made the same way as 12's roles:
    # the sweep below, which CI runs, grades them)
])
def test_a_challenge_that_needs_the_server_s_help_can_be_graded(tmp_path, name, checks):
    """The reference scores full marks as the learner's role, and no role, database or
    PgBouncer login is left behind."""
    srv = ensure_server(verbose=False)
    before = set(leftovers(srv))
    (tmp_path / "subs" / "zed").mkdir(parents=True)
    learner = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    solution = {c.id: c for c in nbformat.read(SOLUTIONS_DIR / name, as_version=4).cells}
    for cell in learner.cells:
        if ANSWER_TAG in cell.metadata.get("tags", []):
            cell.source = solution[cell.id].source
    nbformat.write(learner, tmp_path / "subs" / "zed" / name)
    report = grade(tmp_path / "subs", out_dir=tmp_path / "report", jobs=1)
    row, = report.rows
    assert (row.passed, row.total) == (checks, checks), row.failures
    assert set(leftovers(srv)) - before == set()
    assert not [line for line in _pgbouncer_users() if line.startswith('"lab_grade')]
    with psycopg.connect(srv.url) as conn:
        assert not conn.execute("SELECT slot_name FROM pg_replication_slots "
                                "WHERE slot_name LIKE 'lab_grade%%'").fetchall()


@pytest.mark.notebook
@pytest.mark.grading_sweep
def test_every_reference_scores_full_marks_when_graded(tmp_path):
    """Every challenge can be graded: each reference, submitted as a learner's answers and
    run as a graded learner's role (no superuser, no CREATEROLE), passes every check, and
    the grader leaves nothing behind. CI runs it (make test-grading): a check that needs a
    privilege the learner's role lacks shows here, not in an instructor's report."""
    srv = ensure_server(verbose=False)
    before = set(leftovers(srv))
    (tmp_path / "subs" / "reference").mkdir(parents=True)
    for path in sorted(SOLUTIONS_DIR.glob("*.ipynb")):
        learner = nbformat.read(NOTEBOOKS_DIR / path.name, as_version=4)
        solution = {c.id: c for c in nbformat.read(path, as_version=4).cells}
        for cell in learner.cells:
            if ANSWER_TAG in cell.metadata.get("tags", []):
                cell.source = solution[cell.id].source
        nbformat.write(learner, tmp_path / "subs" / "reference" / path.name)
    report = grade(tmp_path / "subs", out_dir=tmp_path / "report", jobs=2)
    short = {row.notebook: row.failures or row.note for row in report.rows
             if row.passed != row.total}
    assert not short, short
    assert len(report.rows) == len(list(SOLUTIONS_DIR.glob("*.ipynb")))
    assert set(leftovers(srv)) - before == set()
