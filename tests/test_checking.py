"""Unit tests for verdicts, stubs and result-set comparison."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from decimal import Decimal

import pytest

from labs.course import checking
from labs.course.checking import TODO, CheckFailed, NotAttempted, compare_results, require


def test_require_treats_stubs_as_not_attempted():
    """TODO, None and SQL made only of comments are all 'not attempted yet'."""
    for stub in (TODO, None, "", "\n-- YOUR SQL HERE\n", "/* later */ ;"):
        with pytest.raises(NotAttempted, match="not attempted yet"):
            require(stub)
    require("SELECT 1", 42)


def test_calling_the_todo_stub_is_not_attempted():
    """A stub function body (TODO()) reports 'not attempted yet' when the check calls it."""
    with pytest.raises(NotAttempted):
        TODO()


def test_not_attempted_names_the_placeholder_the_answer_has():
    """A Python stub says TODO, an empty SQL answer says -- YOUR SQL HERE, a stub body names
    its function: never the other kind's placeholder."""
    with pytest.raises(NotAttempted) as python:
        require(TODO)
    with pytest.raises(NotAttempted) as sql:
        require("\n    -- YOUR SQL HERE\n")

    def transfer(conn, src, dst, amount):
        TODO()

    with pytest.raises(NotAttempted) as body:
        transfer(None, 1, 2, 3)
    assert "TODO" in python.value.message and "YOUR SQL HERE" not in python.value.message
    assert "-- YOUR SQL HERE" in sql.value.message and "TODO" not in sql.value.message
    assert "transfer()" in body.value.message


def test_compare_ignores_order_unless_asked():
    """Unordered comparison accepts any order; ordered names the order problem."""
    cols = ["id", "name"]
    compare_results(cols, [(2, "b"), (1, "a")], cols, [(1, "a"), (2, "b")])
    with pytest.raises(CheckFailed, match="wrong order"):
        compare_results(cols, [(2, "b"), (1, "a")], cols, [(1, "a"), (2, "b")], ordered=True)


def test_compare_reports_columns_then_counts_then_values():
    """The first difference found is the one a learner should fix first."""
    with pytest.raises(CheckFailed, match="missing"):
        compare_results(["id"], [(1,)], ["id", "name"], [(1, "a")])
    with pytest.raises(CheckFailed, match="3 rows; the task expects 2"):
        compare_results(["id"], [(1,), (2,), (3,)], ["id"], [(1,), (2,)])
    with pytest.raises(CheckFailed, match="not the right rows"):
        compare_results(["id"], [(1,), (3,)], ["id"], [(1,), (2,)])


def test_compare_treats_numeric_and_float_alike():
    """numeric columns arrive as Decimal; equal values compare equal."""
    compare_results(["x"], [(Decimal("1.50"),)], ["x"], [(1.5,)])


def test_check_records_verdicts_and_summarises(tmp_path, monkeypatch, capsys):
    """check() prints one line, records a verdict, and check_all counts them."""
    results = tmp_path / "r.jsonl"
    monkeypatch.setenv("LAB_RESULTS_FILE", str(results))
    monkeypatch.setattr(checking, "RESULTS", {})

    class FakeModule:
        @staticmethod
        def q1(answer):
            require(answer)
            if answer != 42:
                raise CheckFailed("The answer is a number between 41 and 43.")
            return "right"

    monkeypatch.setattr(checking, "_find", lambda cid: getattr(FakeModule, cid.split(".")[1]))
    checking.check("demo.q1", 42)
    with pytest.raises(NotAttempted) as unsolved:
        checking.check("demo.q1", TODO)
    with pytest.raises(CheckFailed) as wrong:
        checking.check("demo.q1", 7)
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert [(v["passed"], v["attempted"]) for v in lines] == [(True, True), (False, False),
                                                                (False, True)]
    out = capsys.readouterr().out
    assert "✓ demo.q1: right" in out
    # a failure is said once: by the exception as a notebook renders it, not also printed
    assert "✗" not in out
    assert unsolved.value._render_traceback_()[0].startswith("✗ demo.q1: not attempted yet")
    rendered = unsolved.value._render_traceback_() + wrong.value._render_traceback_()
    assert sum("The answer is a number between 41 and 43" in line for line in rendered) == 1
    monkeypatch.setattr(checking, "checks_of", lambda topic: ["demo.q1"])
    assert checking.check_all("demo") is None  # no stray (passed, total) under the summary


def test_learner_code_raising_is_reported_as_a_failed_check(monkeypatch):
    """An exception from the learner's code becomes a CheckFailed that names it."""
    monkeypatch.setattr(checking, "RESULTS", {})
    monkeypatch.setattr(checking, "_find", lambda cid: lambda: 1 / 0)
    with pytest.raises(CheckFailed, match="ZeroDivisionError"):
        checking.check("demo.q9")


def test_checks_of_lists_cases_in_number_order():
    """check_all's list comes from the module's q-functions, numerically sorted."""
    assert checking.checks_of("start_here") == ["start_here.q1", "start_here.q2"]


def test_failed_check_renders_without_the_checkers_traceback():
    """In a notebook a failed check shows its message, plus the learner's own traceback if any."""
    plain = CheckFailed("The plan still shows Seq Scan on orders.")
    assert plain._render_traceback_() == ["CheckFailed: The plan still shows Seq Scan on orders."]
    try:
        try:
            {}["missing"]
        except KeyError as exc:
            raise CheckFailed("your answer raised KeyError: 'missing'") from exc
    except CheckFailed as failed:
        rendered = "\n".join(failed._render_traceback_())
    assert "Your code raised this:" in rendered and "KeyError" in rendered


def test_every_failure_names_its_seed_and_the_seed_replays_the_data(monkeypatch, capsys):
    """A failed check ends with its seed; seed=N gives the check the same random data again."""
    from labs.course import adversarial

    monkeypatch.setattr(checking, "RESULTS", {})
    drawn = []

    def q1(answer):
        drawn.append(adversarial.rng().random())
        raise CheckFailed("wrong")

    monkeypatch.setattr(checking, "_find", lambda cid: q1)
    with pytest.raises(CheckFailed) as first:
        checking.check("demo.q1", 1)
    assert "seed " in first.value.message and "add seed=" in first.value.message
    number = int(first.value.message.split("seed=")[1].split()[0])
    with pytest.raises(CheckFailed):
        checking.check("demo.q1", 1, seed=number)
    assert drawn[0] == drawn[1]
    with pytest.raises(CheckFailed):
        checking.check("demo.q1", 1, seed=number + 1)
    assert drawn[2] != drawn[0]


def test_a_crash_inside_the_checker_is_not_blamed_on_the_learner(monkeypatch):
    """The checker's own TypeError says the check could not judge; a learner's says 'your answer'."""
    monkeypatch.setattr(checking, "RESULTS", {})
    from labs.checks import start_here  # any module under labs/: frames there are the checker's

    # None has no .execute: a crash whose every frame is the lab's own
    checker_bug = functools.partial(start_here._run, None, "SELECT 1", "x")
    monkeypatch.setattr(checking, "_find", lambda cid: checker_bug)
    with pytest.raises(CheckFailed) as failed:
        checking.check("demo.q1")
    assert "could not judge your answer" in failed.value.message
    assert "your answer raised" not in failed.value.message


def test_a_failed_check_names_the_way_forward(monkeypatch, capsys):
    """Under a failure: the next hint while hints remain, then labs.solution(), unless turned off."""
    monkeypatch.setattr(checking, "RESULTS", {})
    monkeypatch.setattr(checking, "_hints_shown", {})
    monkeypatch.setattr(checking, "_find", lambda cid: lambda: (_ for _ in ()).throw(
        CheckFailed("wrong")))
    with pytest.raises(CheckFailed) as first:
        checking.check("start_here.q1")
    assert 'Next: hint("start_here.q1") gives hint 1 of 2' in first.value._render_traceback_()[-1]
    checking.hint("start_here.q1")
    checking.hint("start_here.q1")
    with pytest.raises(CheckFailed) as again:
        checking.check("start_here.q1")
    assert 'labs.solution("start_here.q1")' in again.value._render_traceback_()[-1]
    monkeypatch.setenv("LAB_REVEAL_SOLUTIONS", "0")
    checking.solution("start_here.q1")
    out = capsys.readouterr().out
    assert "turned off" in out and "SELECT" not in out


def test_a_failing_statement_of_the_checker_is_not_blamed_on_the_answer(monkeypatch):
    """SQL the check sends for itself failing says 'could not judge'; the answer's SQL failing
    says PostgreSQL rejected it."""
    import psycopg

    from labs.runtime.server import ensure_server

    import labs

    # two checks, compiled as if they lived in labs/checks/: the checker's own frames
    namespace: dict = {}
    exec(compile("def own_sql(conn, answer):\n    conn.execute('SELECT 1/0')\n"
                 "def answer_sql(conn, answer):\n    conn.execute(answer)\n",
                 str(Path(labs.__file__).parent / "checks" / "demo.py"), "exec"), namespace)
    monkeypatch.setattr(checking, "RESULTS", {})
    with psycopg.connect(ensure_server(verbose=False).url, autocommit=True) as conn:
        monkeypatch.setattr(checking, "_find", lambda cid: namespace["own_sql"])
        with pytest.raises(CheckFailed) as own:
            checking.check("demo.q1", conn, "SELECT count(*) FROM customers")
        monkeypatch.setattr(checking, "_find", lambda cid: namespace["answer_sql"])
        with pytest.raises(CheckFailed) as theirs:
            checking.check("demo.q1", conn, "SELEC 1")
    assert "could not judge" in own.value.message
    assert "PostgreSQL rejected" in theirs.value.message
