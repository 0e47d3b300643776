"""The statement counter (labs.tools.statements): counts, texts, times, and only inside its block."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import StaticPool

from labs.tools.statements import count_statements


@pytest.fixture()
def engine():
    # SQLite in memory: the counter is about SQLAlchemy's events, not about PostgreSQL
    eng = create_engine("sqlite://", poolclass=StaticPool,
                        connect_args={"check_same_thread": False})
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE t (id integer PRIMARY KEY, v text)"))
    yield eng
    eng.dispose()


def test_counts_each_statement_with_its_text_and_time(engine):
    """Three statements in the block are three, in order, each with a time."""
    with count_statements(engine) as sent, engine.connect() as conn:
        for i in range(3):
            conn.execute(text("SELECT :i"), {"i": i})
    assert sent.count == 3
    assert all("SELECT" in s for s in sent.sql())
    assert sent.seconds >= 0 and all(s.seconds >= 0 for s in sent.statements)
    assert "3 statement(s)" in sent.report()


def test_counts_nothing_outside_its_block(engine):
    """Statements before and after the block are not counted, and the listeners are removed."""
    counter = count_statements(engine)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        with counter:
            conn.execute(text("SELECT 2"))
        conn.execute(text("SELECT 3"))
    assert counter.count == 1


def test_executemany_is_one_statement(engine):
    """One call with many parameter sets counts once."""
    with count_statements(engine) as sent, engine.begin() as conn:
        conn.execute(text("INSERT INTO t (id, v) VALUES (:id, :v)"),
                     [{"id": i, "v": str(i)} for i in range(10)])
    assert sent.count == 1


def test_counts_statements_of_other_threads(engine):
    """A request handled in another thread (a TestClient's) is counted too."""
    def work():
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    with count_statements(engine) as sent:
        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert sent.count == 1


def test_a_counter_cannot_be_entered_twice(engine):
    """Nesting the same counter is a mistake, said at once."""
    counter = count_statements(engine)
    with counter:
        with pytest.raises(RuntimeError):
            counter.__enter__()


def test_rows_are_what_the_driver_reports_for_results_only(engine):
    """A statement's rows are its cursor's rowcount when it has a result, else 0 (and an
    unknown count, -1 as SQLite reports for a SELECT, is 0, never negative)."""
    class Cursor:
        def __init__(self, description, rowcount):
            self.description, self.rowcount = description, rowcount

    class Conn:
        info: dict = {}

    counter = count_statements(engine)
    for cursor in (Cursor([("id",)], 7), Cursor(None, 5), Cursor([("id",)], -1)):
        counter._after(Conn(), cursor, "SELECT", {}, None, False)
    assert [s.rows for s in counter.statements] == [7, 0, 0]
    assert counter.rows == 7
    with count_statements(engine) as sent, engine.connect() as conn:
        conn.execute(text("SELECT 1")).fetchall()
    assert sent.rows >= 0
