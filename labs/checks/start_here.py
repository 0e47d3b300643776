"""Checks for 00_start_here: the tour's two small exercises.

Both checks run the learner's query inside a transaction that first adds a few
rows designed to tell right from almost-right (a deleted customer newer than
everyone, a tie on created_at, a three-way email collision), then roll back.
The dataset alone might not contain such cases at every scale; the property
must hold whatever the data.
"""

from __future__ import annotations

import psycopg

from ..course.checking import CheckFailed, compare_results, require


def _run(cur: psycopg.Cursor, sql: str, what: str, params=None) -> tuple[list[str], list[tuple]]:
    try:
        cur.execute("SAVEPOINT attempt")
        cur.execute(sql, params)
    except psycopg.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT attempt")
        raise CheckFailed(f"PostgreSQL rejected {what}: {exc.diag.message_primary or exc}",
                          f"SQLSTATE {exc.sqlstate}") from None
    if cur.description is None:
        raise CheckFailed(f"{what} returned no result set; it should be a SELECT.")
    return [c.name for c in cur.description], cur.fetchall()


_TRICKY_CUSTOMERS = """
    INSERT INTO customers (email, full_name, country, created_at, deleted_at)
    VALUES ('gone.newest@example.org', 'Gone Newest', 'DE', now() + interval '2 days', now()),
           ('tie.low@example.org',  'Tie Low',  'FR', now() + interval '1 day', NULL),
           ('tie.high@example.org', 'Tie High', 'FR', now() + interval '1 day', NULL)
"""


def q1(lab, newest_sql: str) -> str:
    """Five newest customers still active: id, email, created_at; newest first, ties by id desc."""
    require(newest_sql)
    with lab.connect() as conn, conn.cursor() as cur:
        cur.execute(_TRICKY_CUSTOMERS)
        columns, rows = _run(cur, newest_sql, "your query")
        _, want = _run(cur, """
            SELECT id, email, created_at FROM customers
            WHERE deleted_at IS NULL
            ORDER BY created_at DESC, id DESC LIMIT 5""", "the reference query")
        lowered = [c.lower() for c in columns]
        if "id" in lowered and rows:
            ids = [r[lowered.index("id")] for r in rows]
            _, found = _run(cur, "SELECT id FROM customers WHERE deleted_at IS NOT NULL "
                                 "AND id = ANY(%s::bigint[])", "a lookup", [ids])
            if found:
                raise CheckFailed(
                    "Your result includes soft-deleted customers (their deleted_at is set). "
                    "Add WHERE deleted_at IS NULL.", f"deleted ids: {sorted(r[0] for r in found)}")
        conn.rollback()
    compare_results(columns, rows, ["id", "email", "created_at"], want, ordered=True,
                    what="your query")
    return "the five newest active customers, in the right order"


_TRIPLE_COLLISION = """
    INSERT INTO customers (email, full_name, country, created_at)
    VALUES ('Same.Person@Example.org', 'Same Person', 'US', now()),
           ('same.person@example.org', 'Same Person', 'US', now()),
           ('SAME.PERSON@EXAMPLE.ORG', 'Same Person', 'US', now())
"""


def q2(lab, collisions_sql: str) -> str:
    """How many customers share their email with another customer once case is ignored."""
    require(collisions_sql)
    with lab.connect() as conn, conn.cursor() as cur:
        cur.execute(_TRIPLE_COLLISION)
        columns, rows = _run(cur, collisions_sql, "your query")
        _, want = _run(cur, """
            SELECT count(*) FROM customers c
            WHERE EXISTS (SELECT 1 FROM customers o
                          WHERE lower(o.email) = lower(c.email) AND o.id <> c.id)""",
                       "the reference query")
        conn.rollback()
    if len(rows) != 1 or len(rows[0]) != 1:
        raise CheckFailed(f"Your query should return one row with one column (n); it returned "
                          f"{len(rows)} row(s) of {len(columns)} column(s).")
    got, expected = rows[0][0], want[0][0]
    if got == 0:
        raise CheckFailed("Your query found no collisions. `email` is unique as stored, so the "
                          "duplicates only appear when you compare lower(email).")
    if got != expected:
        raise CheckFailed(f"Your query says {got}; that is not the number of customers whose "
                          "email collides with another's once case is ignored. Count customers, "
                          "not addresses or pairs.")
    return f"{got - 3} customers share an email with someone else once case is ignored"


HINTS = {
    "q1": [
        "Soft-deleted customers still have rows; deleted_at tells them apart.",
        "Sort by created_at, newest first, and break ties with id (highest first); keep 5 rows.",
    ],
    "q2": [
        "A unique index on email compares bytes: 'Ann@x.com' and 'ann@x.com' are different.",
        "Compare lower(email) of each customer with every other customer's (EXISTS), or "
        "GROUP BY lower(email) HAVING count(*) > 1 and sum the group sizes.",
    ],
}
