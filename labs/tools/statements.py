"""Count the SQL statements an ORM call sends: the N+1 detector.

An N+1 loop is invisible in the code (``order.items`` looks like an attribute) and in
a test database of twenty rows; it shows as one statement per row. Counting the
statements a block of code sends makes it visible, and makes a *query budget* an
assertion::

    from labs.statements import count_statements

    with count_statements(lab.engine) as sent:
        orders = list_orders_with_items(session, customer_id=42, limit=20)
    assert sent.count <= 3, sent.report()

The counter listens to SQLAlchemy's ``before_cursor_execute`` and
``after_cursor_execute`` events on one engine (every connection of its pool, every
thread), for the duration of the ``with`` block only. An ``executemany`` (one call with
many parameter sets) counts as one statement, as it is one round trip's worth of
work for the driver.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event


@dataclass
class Statement:
    """One statement as the driver received it, and how long the cursor call took."""

    sql: str
    parameters: Any
    seconds: float = 0.0
    rows: int = 0  # rows the statement returned (0 for a statement without a result)

    def one_line(self, width: int = 100) -> str:
        text = " ".join(self.sql.split())
        return text if len(text) <= width else text[:width - 1] + "…"


@dataclass
class StatementCounter:
    """The statements one engine sent while the counter was active (a context manager)."""

    engine: Any
    statements: list[Statement] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _active: bool = field(default=False, repr=False)

    # ---- the events
    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any,
                context: Any, executemany: bool) -> None:
        # a stack per connection: statements on one connection never overlap
        conn.info.setdefault("lab_statement_started", []).append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any,
               context: Any, executemany: bool) -> None:
        started = conn.info.get("lab_statement_started") or [time.perf_counter()]
        seconds = time.perf_counter() - started.pop()
        rows = 0
        if getattr(cursor, "description", None) is not None:
            rows = max(getattr(cursor, "rowcount", 0) or 0, 0)
        with self._lock:
            self.statements.append(Statement(statement, parameters, seconds, rows))

    # ---- the context manager
    def __enter__(self) -> "StatementCounter":
        if self._active:
            raise RuntimeError("this counter is already counting")
        self.statements = []
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        self._active = True
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)
        self._active = False

    # ---- what it saw
    @property
    def count(self) -> int:
        """How many statements were sent (a statement that failed is not counted)."""
        return len(self.statements)

    @property
    def rows(self) -> int:
        """How many rows the statements returned, together (what the driver fetched)."""
        return sum(s.rows for s in self.statements)

    @property
    def seconds(self) -> float:
        """The total time spent in the driver's cursor calls (the database's share)."""
        return sum(s.seconds for s in self.statements)

    def sql(self) -> list[str]:
        """The statements' text, in the order they were sent."""
        return [s.sql for s in self.statements]

    def report(self, limit: int = 5) -> str:
        """A short account for a message: the count, the time, the first statements."""
        lines = [f"{self.count} statement(s), {self.seconds * 1000:.1f} ms in the database"]
        lines += [f"  {i + 1}. {s.one_line()}" for i, s in enumerate(self.statements[:limit])]
        if self.count > limit:
            lines.append(f"  … and {self.count - limit} more")
        return "\n".join(lines)


def count_statements(engine: Any) -> StatementCounter:
    """A context manager that records every statement ``engine`` sends inside the block.

    ``engine`` is a SQLAlchemy ``Engine`` (``lab.engine``); a ``Session`` bound to it,
    a ``Connection`` from it, pandas' ``read_sql`` on it: all are counted.
    """
    return StatementCounter(getattr(engine, "engine", engine))
