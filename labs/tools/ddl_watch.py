"""Notice every DDL statement a SQLAlchemy engine sends, from any engine in this process.

In a schema-first shop the application never changes the schema: the DBA team does. An
application that calls ``Base.metadata.create_all(engine)`` "just in case" (or a model
whose table name does not match, so that ``create_all`` finds nothing and creates a
look-alike) quietly breaks that rule. :func:`install` registers one listener on SQLAlchemy's
``Engine`` class, so it hears every engine, also those created after it; each CREATE,
ALTER, DROP, COMMENT, TRUNCATE or RENAME statement is recorded with the database it went
to. :func:`seen` lists what went to one database since :func:`install` (or :func:`clear`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|COMMENT|TRUNCATE|RENAME)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    database: str
    text: str


RECORDED: list[Statement] = []
_installed = False


def _listener(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
    if _DDL.match(statement or ""):
        RECORDED.append(Statement(conn.engine.url.database or "", " ".join(statement.split())))


def install() -> None:
    """Start recording DDL from every SQLAlchemy engine in this process (idempotent)."""
    global _installed
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not _installed:
        event.listen(Engine, "before_cursor_execute", _listener)
        _installed = True


def installed() -> bool:
    return _installed


def seen(database: str) -> list[str]:
    """The DDL statements sent to ``database`` since install() or clear()."""
    return [s.text for s in RECORDED if s.database == database]


def clear(database: str | None = None) -> None:
    """Forget what was recorded (for one database, or all)."""
    RECORDED[:] = [s for s in RECORDED if database is not None and s.database != database]
