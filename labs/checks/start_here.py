"""Checks for 00_start_here: the tour's two small exercises."""

from __future__ import annotations

import psycopg

from ..checking import CheckFailed, compare_results, require


def _run(lab, sql: str, what: str, params=None) -> tuple[list[str], list[tuple]]:
    with lab.connect(autocommit=True) as conn, conn.cursor() as cur:
        try:
            cur.execute(sql, params)
        except psycopg.Error as exc:
            raise CheckFailed(f"PostgreSQL rejected {what}: {exc.diag.message_primary or exc}",
                              f"SQLSTATE {exc.sqlstate}") from None
        if cur.description is None:
            raise CheckFailed(f"{what} returned no result set; it should be a SELECT.")
        return [c.name for c in cur.description], cur.fetchall()


def q1(lab, newest_sql: str) -> str:
    """Five newest customers still active: id, email, created_at; newest first, ties by id desc."""
    require(newest_sql)
    columns, rows = _run(lab, newest_sql, "your query")
    _, want = _run(lab, """
        SELECT id, email, created_at FROM customers
        WHERE deleted_at IS NULL
        ORDER BY created_at DESC, id DESC LIMIT 5""", "the reference query")
    deleted = set()
    if rows and "id" in [c.lower() for c in columns]:
        idx = [c.lower() for c in columns].index("id")
        ids = [r[idx] for r in rows]
        _, found = _run(lab, "SELECT id FROM customers WHERE deleted_at IS NOT NULL "
                             "AND id = ANY(%s)", "a lookup", [ids])
        deleted = {r[0] for r in found}
    if deleted:
        raise CheckFailed(
            f"Your result includes soft-deleted customers (ids {sorted(deleted)}): they have "
            "deleted_at set. Add WHERE deleted_at IS NULL.")
    compare_results(columns, rows, ["id", "email", "created_at"], want, ordered=True,
                    what="your query")
    return "the five newest active customers, in the right order"


def q2(lab, collisions_sql: str) -> str:
    """How many customers share their email with another customer once case is ignored."""
    require(collisions_sql)
    columns, rows = _run(lab, collisions_sql, "your query")
    if len(rows) != 1 or len(rows[0]) != 1:
        raise CheckFailed(f"Your query should return one row with one column (n); it returned "
                          f"{len(rows)} row(s) of {len(columns)} column(s).")
    _, want = _run(lab, """
        SELECT count(*) FROM customers c
        WHERE EXISTS (SELECT 1 FROM customers o
                      WHERE lower(o.email) = lower(c.email) AND o.id <> c.id)""",
                   "the reference query")
    got, expected = rows[0][0], want[0][0]
    if got == 0 and expected:
        raise CheckFailed("Your query found no collisions. `email` is unique as stored, so the "
                          "duplicates only appear when you compare lower(email).")
    if got != expected:
        hint = ""
        if expected and got == expected // 2:
            hint = " It looks like you counted pairs or addresses; count the customers involved."
        raise CheckFailed(f"Your query says {got}; that is not the number of customers whose "
                          f"email collides with another's when case is ignored.{hint}")
    return f"{got} customers share an email with someone else once case is ignored"


HINTS = {
    "q1": [
        "Soft-deleted customers still have rows; deleted_at tells them apart.",
        "Sort by created_at, newest first, and break ties with id (highest first); keep 5 rows.",
    ],
    "q2": [
        "A unique index on email compares bytes: 'Ann@x.com' and 'ann@x.com' are different.",
        "Compare lower(email) of each customer with every other customer's (EXISTS, or "
        "GROUP BY lower(email) HAVING count(*) > 1 and sum the counts).",
    ],
}
