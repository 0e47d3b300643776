"""The DDL watcher hears every SQLAlchemy engine, records only DDL, and forgets on clear."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from labs.tools import ddl_watch


def test_records_ddl_from_an_engine_created_after_install():
    """CREATE and DROP from a new engine are recorded for its database; SELECT is not."""
    ddl_watch.install()
    ddl_watch.clear()
    engine = create_engine("sqlite:///:memory:")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id integer)"))
        conn.execute(text("SELECT * FROM t"))
        conn.execute(text("  drop TABLE t"))
    seen = ddl_watch.seen(":memory:")
    assert seen == ["CREATE TABLE t (id integer)", "drop TABLE t"]
    ddl_watch.clear(":memory:")
    assert ddl_watch.seen(":memory:") == []


def test_install_is_idempotent():
    """Installing twice records each statement once."""
    ddl_watch.install()
    ddl_watch.install()
    ddl_watch.clear()
    with create_engine("sqlite:///:memory:").begin() as conn:
        conn.execute(text("CREATE TABLE u (id integer)"))
    assert len(ddl_watch.seen(":memory:")) == 1
