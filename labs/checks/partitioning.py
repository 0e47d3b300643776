"""Checks for 14_partitioning: monthly range partitions, an online conversion, pruning, retention.

The performance seed's "a table that grows by millions of rows a month": ``orders``
becomes range-partitioned by month, queries touch only the months they ask for, and
a year of old orders leaves as a file, not as a million dead rows. The checks judge by
evidence, on data planted from the run's seed (``labs.course.adversarial``):

* q1 hands ``create_month_partitions`` a caller's connection (``left_behind.Caller``,
  a non-UTC ``TimeZone``) and a fresh partitioned table of its own, then plants rows
  (rolled back) at and around every UTC month start, on every month's last day (its
  last microsecond included) and before/after the range: each month's rows must land
  together in one partition of their own, bounded exactly by that UTC month
  (``[start, next start)``), the rest in the one default partition. A gap (an
  inclusive-looking upper bound), bounds written as local dates (the session's
  TimeZone moves them) or no default partition (an out-of-range row is refused) fail;
  each partition is named ``{table}_YYYY_MM`` after the UTC month it holds (``_default``).
* q2 starts ``orders`` afresh (``lab.reset()``), deletes a few orders (ids with gaps:
  an identity set from ``count(*)`` instead of ``max(id)`` collides), plants orders at month boundaries and
  outside the partitioned range, and runs ``convert_orders`` on a caller's connection;
  once it reads orders another session inserts orders (they must not wait for a lock),
  one before each later transaction of the learner starts (a max(id) read before the
  swap's lock misses it, and the identity collides), and one more before any statement of a learner transaction that has read orders
  without a lock that stops writers (the swap's race: catch-up, then rename, unlocked);
  all must reach the converted table. Orders share their created_at across every batch
  edge (a keyset on created_at alone skips the rest of a tie). Once the smallest order has
  been copied into orders_new, the shop deletes it from orders before the learner's next
  transaction (a copy paged with OFFSET then skips a row; the deleted order may stay in
  the new table or not). No id may be held by two orders (an identity set after the swap
  committed hands out old ids to the orders placed in between). Then: ``orders`` is partitioned, its
  primary key includes ``created_at``, counts and checksums of every order equal the
  state before (plus the orders inserted meanwhile), every row is in the partition
  whose bounds hold it (judged on each partition's first and last rows and the default's
  rows: PostgreSQL keeps the rest between them; row by row was minutes at small), the copy was committed in batches (rows grouped by ``xmin``: no
  transaction wrote more than a batch), orders_old kept with its rows, indexes leading
  with customer_id and created_at, and a new order with an item can be inserted with an
  id no order has (identity continued), no foreign key left pointing at the old table,
  while an unknown customer (foreign key) and an unknown status (CHECK) are refused.
* q3 runs the learner's month query against the reference on planted boundary rows in
  a session whose TimeZone has daylight saving (adding ``interval '1 month'`` to a
  timestamptz there shifts an hour at a change), then reads plans: with the month's
  value known, one partition planned; as a prepared statement under
  ``plan_cache_mode = force_generic_plan``, ``Subplans Removed`` and one partition run;
  no Limit node (a capped report fits a tiny month only).
* q4 plants rows around a seeded cutoff (a microsecond before it, at it, after it) and
  in the default partition (old and future), runs ``drop_months_before`` on a caller's
  connection first while a report holds ACCESS SHARE on orders (once it queues, an
  INSERT may wait at most QUEUE_LIMIT behind it: a short lock_timeout; giving up with
  55P03 is right, and it is called again once the report ended), and wants exactly the rows at or after the cutoff left (count and checksum),
  the old months' partitions gone from the catalogue (dropped, not only detached, not
  emptied by ``DELETE``), the others and the default still attached, and the returned
  count equal to the partitions dropped. A row trigger of the check's own on orders
  counts deleted rows (in a sequence, dropped afterwards): no more than the default
  partition's old rows may be deleted (a DELETE of the old months before dropping them
  leaves the same end state at the full cost). Then it is run again with the same cutoff
  (the nightly job on a night nothing is due, a retry): it must return 0 and change nothing
  (one DROP TABLE built from an empty list is a syntax error).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import threading
import time
from typing import Any, Callable
from zoneinfo import ZoneInfo

import psycopg

from ..course import adversarial as adv
from ..course.checking import CheckFailed, call_answer, compare_results, require
from ..course.left_behind import Caller, caller_settings, untouched
from ..data.dataset import query_checksum
from ..tools.migrations_probe import Interrupted, RecordingConnection
from ..tools.partitions import (UTC, _walk, add_months, is_partitioned, month_start, month_starts,
                                partition_bounds, scanned_partitions)

CHECK_TABLE = "pt_check_events"
ORDER_COLUMNS = "id, customer_id, status, created_at, total, shipping_country, note"
FUTURE_MONTHS = 3  # partitions created ahead of the newest order
DST_ZONES = ("America/St_Johns", "Pacific/Chatham", "Australia/Adelaide")
OTHER_TABLES = ["customers", "products"]
WRITER_BLOCKING = {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}
SHOP_WINDOW_ORDERS = 12  # q2: orders the shop places inside the learner's transactions, at most
SHOP_BETWEEN_ORDERS = 40  # q2: orders placed before a learner's transaction starts, at most


class _BeforeEach:
    """The learner's connection, with ``before()`` called ahead of every statement."""

    def __init__(self, inner: Any, before: Callable[[], None]) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_before", before)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self._before()
        return self._inner.execute(*args, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return _BeforeEach(self._inner.cursor(*args, **kwargs), self._before)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._inner.__exit__(*exc)


# --------------------------------------------------------------------------
# helpers


# SQLSTATEs a learner's function here is likely to meet, and the fix each points at
_ADVICE = {
    "23514": " A row fits no partition: a month is missing, or there is no DEFAULT "
             "partition for the rows outside the months (CREATE TABLE … PARTITION OF … "
             "DEFAULT).",
    "42P17": " Two partitions overlap: FROM is inclusive and TO exclusive, so a month "
             "is FROM (its first instant) TO (the next month's first instant).",
    "0A000": " A primary key or unique constraint of a partitioned table must include "
             "the partition key (PRIMARY KEY (id, created_at)).",
    "55000": " DETACH PARTITION … CONCURRENTLY is refused while the table has a "
             "default partition: use a plain DETACH under a short lock_timeout.",
    "25001": " DETACH PARTITION … CONCURRENTLY cannot run inside a transaction block: "
             "run it with conn.autocommit = True (and put autocommit back afterwards).",
}

_call = functools.partial(call_answer, advice=_ADVICE, passing=(Interrupted,))


def _verify(caller: Caller, what: str) -> None:
    caller.verify(what)
    if caller.conn.autocommit:
        raise CheckFailed(f"After {what}, the caller's connection was left in autocommit mode: "
                          "put conn.autocommit back to what it was before returning.")
    if caller.conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        caller.conn.rollback()


def _local(instant: dt.datetime, zone: str) -> str:
    return f"{instant.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M:%S.%f%z}"


def _utc(instant: dt.datetime) -> str:
    return f"{instant.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f} UTC"


def boundary_instants(months: list[dt.datetime]) -> list[dt.datetime]:
    """Instants at and around each month start, and on each month's last day."""
    out: list[dt.datetime] = []
    for m in months:
        out += adv.instants_around(m)
        out += adv.day_edges((m - dt.timedelta(days=1)).date())
    return sorted(set(out))


# --------------------------------------------------------------------------
# reference answers (for the notebook's catch-up cell and the checks' comparisons)


def reference_create_month_partitions(conn: Any, table: str, first_month: dt.datetime,
                                      last_month: dt.datetime) -> None:
    with conn.transaction():
        for m in month_starts(first_month, last_month):
            n = add_months(m, 1)
            conn.execute(f"CREATE TABLE {table}_{m:%Y_%m} PARTITION OF {table} "
                         f"FOR VALUES FROM ('{m.isoformat()}') TO ('{n.isoformat()}')")
        conn.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")


def reference_convert_orders(conn: Any, first_month: dt.datetime, last_month: dt.datetime,
                             batch_size: int = 5_000) -> int:
    with conn.transaction():
        conn.execute("""CREATE TABLE orders_new (
                            LIKE orders INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                                        INCLUDING IDENTITY,
                            PRIMARY KEY (id, created_at)
                        ) PARTITION BY RANGE (created_at)""")
        conn.execute("CREATE INDEX ON orders_new (customer_id)")
        conn.execute("CREATE INDEX ON orders_new (created_at)")
        # LIKE copies CHECK constraints, not foreign keys: orders → customers is added again
        conn.execute("ALTER TABLE orders_new ADD FOREIGN KEY (customer_id) REFERENCES customers (id)")
    reference_create_month_partitions(conn, "orders_new", first_month, last_month)
    last_id, copied = 0, 0
    while True:
        with conn.transaction():
            row = conn.execute("""WITH batch AS (
                                      INSERT INTO orders_new
                                      SELECT * FROM orders WHERE id > %s ORDER BY id LIMIT %s
                                      RETURNING id)
                                  SELECT count(*), max(id) FROM batch""",
                               [last_id, batch_size]).fetchone()
        if row[0] == 0:
            break
        copied, last_id = copied + row[0], row[1]
    with conn.transaction():
        conn.execute("LOCK TABLE orders IN EXCLUSIVE MODE")  # readers go on, writers wait
        copied += conn.execute("INSERT INTO orders_new SELECT * FROM orders WHERE id > %s",
                               [last_id]).rowcount
        conn.execute("ALTER TABLE order_items DROP CONSTRAINT IF EXISTS "
                     "order_items_order_id_fkey")
        conn.execute("ALTER TABLE orders RENAME TO orders_old")
        conn.execute("ALTER TABLE orders_new RENAME TO orders")
        for p in partition_bounds(conn, "orders"):  # orders_new_2024_01 → orders_2024_01
            conn.execute(f"ALTER TABLE {p.name} RENAME TO {p.name.replace('orders_new_', 'orders_', 1)}")
        conn.execute("SELECT setval(pg_get_serial_sequence('orders', 'id'), "
                     "(SELECT max(id) FROM orders))")
    return copied


def data_months(conn: psycopg.Connection) -> tuple[dt.datetime, dt.datetime]:
    """The first partitioned month (the earliest order's) and the last (newest + 3)."""
    lo, hi = conn.execute("SELECT min(created_at), max(created_at) FROM orders").fetchone()
    return month_start(lo), add_months(month_start(hi), FUTURE_MONTHS)


def ensure_partitioned(lab: Any) -> str:
    """Make ``orders`` monthly partitioned (with the reference conversion) unless it is already."""
    with psycopg.connect(lab.url) as conn:
        if is_partitioned(conn, "orders"):
            conn.rollback()
            return "orders is already partitioned: nothing to do"
        conn.execute("DROP TABLE IF EXISTS orders_new CASCADE")
        conn.commit()
        first, last = data_months(conn)
        conn.rollback()
        reference_convert_orders(conn, first, last)
    return "orders converted with the reference conversion, so that you can go on"


# --------------------------------------------------------------------------
# q1: monthly partitions with a default


def _fresh_check_table(lab: Any) -> None:
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {CHECK_TABLE} CASCADE")
        for (name,) in conn.execute("SELECT relname FROM pg_class WHERE relname LIKE %s "
                                    "AND relkind IN ('r', 'p')",
                                    [CHECK_TABLE.replace("_", r"\_") + r"\_%"]).fetchall():
            conn.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')
        conn.execute(f"CREATE TABLE {CHECK_TABLE} (id bigint NOT NULL, "
                     "created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)")


def judge_placement(conn: psycopg.Connection, table: str, months: list[dt.datetime],
                    zone: str, rows: list[tuple[int, dt.datetime]], who: str) -> None:
    """Every row of a month in that month's own partition, bounded by the UTC month; the
    rest in the default partition. ``rows`` are (id, created_at) already in ``table``."""
    end = add_months(months[-1], 1)
    parts = partition_bounds(conn, table)
    defaults = [p for p in parts if p.is_default]
    if not defaults:
        raise CheckFailed(f"{table} has no default partition: a row outside the months (an "
                          "order dated years back by an import, or beyond the months created "
                          "ahead) is refused with 'no partition of relation found for row'. "
                          f"Add one: CREATE TABLE {table}_default PARTITION OF {table} DEFAULT.")
    tz = ZoneInfo(zone)
    for p in parts:
        if p.is_default or p.lower is None:
            continue
        local = p.lower.astimezone(tz)
        if p.lower != month_start(p.lower) and (local.day, local.hour, local.minute) == (1, 0, 0):
            raise CheckFailed(
                f"{who}: partition {p.name} starts at {_utc(p.lower)}, which is local midnight "
                f"in the session's TimeZone ({zone}), not the UTC month start: a bound written "
                "as a date or timestamp without an offset ('2024-01-01') is read in the "
                "session's TimeZone. Write the instant with its offset ('2024-01-01 "
                "00:00:00+00', or datetime.isoformat() of a UTC datetime).")
        if (p.lower == month_start(p.lower) and p.upper is not None
                and p.upper != add_months(p.lower, 1)):
            short = p.upper < add_months(p.lower, 1)
            raise CheckFailed(
                f"{who}: partition {p.name} runs from {_utc(p.lower)} to {_utc(p.upper)}"
                + (": a gap until the next month's start, where rows of the month's last "
                   "moments fall into the default partition. FROM is inclusive and TO "
                   "exclusive: a month is FROM (its first instant) TO (the next month's first "
                   "instant), not TO its last second or day." if short else
                   ": more than one month. Each month is FROM its first instant (UTC) TO the "
                   "next month's first instant."))
    where = dict(conn.execute(f"SELECT id, tableoid::regclass::text FROM {table} "
                              "WHERE id = ANY(%s)", [[i for i, _ in rows]]).fetchall())
    by_name = {p.name: p for p in parts}
    home: dict[dt.datetime, str] = {}
    for rid, at in rows:
        got = where.get(rid)
        inside = months[0] <= at < end
        if not inside:
            if got not in {d.name for d in defaults}:
                raise CheckFailed(
                    f"{who}: a row at {_utc(at)} (outside the months {months[0]:%Y-%m} to "
                    f"{months[-1]:%Y-%m}) landed in {got}, not in the default partition: a "
                    "partition reaches beyond its month.")
            continue
        m = month_start(at)
        p = by_name.get(got)
        if p is None or p.is_default:
            near_end = add_months(m, 1) - at <= dt.timedelta(seconds=1)
            raise CheckFailed(
                f"{who}: a row at {_utc(at)} (local time {_local(at, zone)}, month {m:%Y-%m}) "
                f"landed in the default partition: no monthly partition holds it, a gap "
                + ("at the end of the month. FROM is inclusive and TO exclusive: a month is "
                   "FROM (its first instant) TO (the next month's first instant), not TO its "
                   "last second or day." if near_end else
                   "between the partitions' bounds. Each month is FROM its first instant (UTC) "
                   "TO the next month's first instant."))
        if home.setdefault(m, got) != got:
            raise CheckFailed(f"{who}: rows of the month {m:%Y-%m} landed in two partitions "
                              f"({home[m]} and {got}): a month needs one partition, bounded by "
                              "its UTC start and the next month's.")
        if not (p.lower == m and p.upper == add_months(m, 1)):
            raise CheckFailed(
                f"{who}: a row at {_utc(at)} (month {m:%Y-%m}) landed in {got}, bounded "
                f"[{_utc(p.lower) if p.lower else 'MINVALUE'}, "
                f"{_utc(p.upper) if p.upper else 'MAXVALUE'}): a month's partition must be "
                "exactly FROM its first instant (UTC) TO the next month's.")
    monthly = [p for p in parts if not p.is_default]
    if len(monthly) != len(months):
        raise CheckFailed(f"{table} has {len(monthly)} monthly partitions for the "
                          f"{len(months)} months {months[0]:%Y-%m} to {months[-1]:%Y-%m}: one "
                          "partition per month, each month from first to last included.")


def q1(lab: Any, create_month_partitions: Callable[..., Any]) -> str:
    """Monthly partitions bounded by UTC months, no gap, and a default partition."""
    require(create_month_partitions)
    r = adv.rng()
    _fresh_check_table(lab)
    first = dt.datetime(2023, r.choice([10, 11, 12]), 1, tzinfo=UTC)
    last = dt.datetime(2024, r.choice([3, 4, 5]), 1, tzinfo=UTC)  # across a year, a leap February
    months = month_starts(first, last)
    with Caller(lab) as caller:
        zone = caller.zone
        _call(create_month_partitions, caller.conn, CHECK_TABLE, first, last,
              who="create_month_partitions")
        _verify(caller, f"create_month_partitions(conn, {CHECK_TABLE!r}, …)")
    instants = boundary_instants(months + [add_months(last, 1)])
    instants += [first - dt.timedelta(days=r.randint(40, 400)),
                 add_months(last, 1) + dt.timedelta(days=r.randint(40, 400))]
    rows = list(enumerate(instants, start=1))
    with psycopg.connect(lab.url) as conn:
        conn.execute("SELECT set_config('TimeZone', %s, false)", [zone])
        try:
            with conn.transaction(force_rollback=True):
                for rid, at in rows:
                    try:
                        with conn.transaction():
                            conn.execute(f"INSERT INTO {CHECK_TABLE} VALUES (%s, %s)", [rid, at])
                    except psycopg.errors.CheckViolation:
                        if not any(p.is_default for p in partition_bounds(conn, CHECK_TABLE)):
                            raise CheckFailed(
                                f"Inserting a row at {_utc(at)} failed with 'no partition of "
                                f"relation found for row': {CHECK_TABLE} has no default "
                                "partition, so every row outside the months is refused (an "
                                "import of old orders, a clock set wrong, a month not created "
                                f"in time). Add one: CREATE TABLE {{table}}_default PARTITION "
                                "OF {table} DEFAULT.") from None
                        raise CheckFailed(
                            f"Inserting a row at {_utc(at)} failed with 'no partition of "
                            "relation found for row', though a default partition exists.")
                judge_placement(conn, CHECK_TABLE, months, zone, rows,
                                f"After create_month_partitions on a session in {zone}")
                misnamed = [(p.name, "DEFAULT" if p.is_default else f"{month_start(p.lower):%Y-%m}")
                            for p in partition_bounds(conn, CHECK_TABLE)
                            if p.name != (f"{CHECK_TABLE}_default" if p.is_default
                                          else f"{CHECK_TABLE}_{month_start(p.lower):%Y_%m}")]
                if misnamed:
                    name, holds = misnamed[0]
                    raise CheckFailed(
                        f"Partition {name} holds {holds}, so its name should be "
                        + (f"{CHECK_TABLE}_default" if holds == "DEFAULT" else
                           f"{CHECK_TABLE}_{holds.replace('-', '_')}")
                        + ": retention scripts, monitoring and the next person find a month "
                        "by its name ({table}_YYYY_MM for the UTC month it holds, "
                        "{table}_default), and one named after another month gets that "
                        "month dropped.")
        finally:
            conn.rollback()
    return (f"{len(months)} monthly partitions bounded by UTC months ({len(rows)} rows at and "
            "around every boundary each in its month) and a default partition for the rest")


# --------------------------------------------------------------------------
# q2: the online conversion


def _plant_orders(conn: psycopg.Connection, r: Any, first: dt.datetime,
                  last: dt.datetime) -> int:
    """Orders at month boundaries inside the range, and outside it (old and future)."""
    customers = [row[0] for row in conn.execute(
        "SELECT id FROM customers ORDER BY id LIMIT 200").fetchall()]
    months = month_starts(first, last)
    chosen = r.sample(months[1:], min(4, len(months) - 1))
    instants = boundary_instants(chosen)
    instants += [first - dt.timedelta(days=r.randint(400, 900), microseconds=r.randint(1, 999)),
                 first - dt.timedelta(microseconds=1),
                 add_months(last, 1), add_months(last, 1) + dt.timedelta(days=r.randint(40, 700))]
    for at in instants:
        conn.execute("INSERT INTO orders (customer_id, status, created_at, total, "
                     "shipping_country, note) VALUES (%s, %s, %s, %s, %s, %s)",
                     [r.choice(customers), r.choice(["paid", "delivered", "shipped"]), at,
                      f"{r.randint(100, 99999) / 100:.2f}", r.choice(["DE", "NP", "AU"]),
                      r.choice([None, "check: boundary", "gift_%"])])
    return len(instants)


def _ties_at_batch_edges(conn: psycopg.Connection, batch: int) -> None:
    """Orders that share their created_at across every edge a batch of ``batch`` rows in
    created_at order would have (as orders written by one transaction share now()): a
    keyset on created_at alone (created_at > last) skips the rest of a tie."""
    # the rows just before, at and after each edge, numbered in one pass; joining the
    # numbered rows to themselves instead is quadratic (minutes at small scale)
    rows = conn.execute("""
        SELECT n, id, created_at FROM (
            SELECT id, created_at, row_number() OVER (ORDER BY created_at, id) AS n
            FROM orders) ranked
        WHERE n %% %(b)s IN (0, 1, %(b)s - 1) ORDER BY n""", {"b": batch}).fetchall()
    at = {n: (order_id, created_at) for n, order_id, created_at in rows}
    ties = [(at[n - 1][1], at[m][0]) for n in at if n % batch == 0 and n - 1 in at
            for m in (n, n + 1) if m in at]
    with conn.cursor() as cur:
        cur.executemany("UPDATE orders SET created_at = %s WHERE id = %s", ties)


def _witnesses(conn: psycopg.Connection, months: list[dt.datetime]) -> list:
    """The rows whose partition tells where every row is: each partition's first and last
    (PostgreSQL keeps every other row between them), and rows of the default partition,
    inside the months (a gap) and outside. Judging all rows one by one is minutes at scale."""
    defaults = [p.name for p in partition_bounds(conn, "orders") if p.is_default]
    return conn.execute("""
        (SELECT id, created_at FROM orders WHERE tableoid = ANY(%(d)s::regclass[])
           AND created_at >= %(lo)s AND created_at < %(hi)s ORDER BY created_at LIMIT 50)
        UNION (SELECT id, created_at FROM orders WHERE tableoid = ANY(%(d)s::regclass[])
           AND NOT (created_at >= %(lo)s AND created_at < %(hi)s) ORDER BY created_at LIMIT 50)
        UNION (SELECT DISTINCT ON (tableoid) id, created_at FROM orders
               ORDER BY tableoid, created_at, id)
        UNION (SELECT DISTINCT ON (tableoid) id, created_at FROM orders
               ORDER BY tableoid, created_at DESC, id)""",
                        {"d": defaults, "lo": months[0],
                         "hi": add_months(months[-1], 1)}).fetchall()


def q2(lab: Any, convert_orders: Callable[..., Any],
       create_month_partitions: Callable[..., Any] | None = None) -> str:
    """orders partitioned online, in committed batches, every row kept and in its month."""
    require(convert_orders)
    r = adv.rng()
    lab.reset()  # orders as the dataset has it, whatever an earlier attempt left
    with psycopg.connect(lab.url, autocommit=True) as conn:
        # ids with gaps, as any table that lives has (deleted orders, rolled-back inserts):
        # the new identity must continue from max(id), which is not count(*)
        gone = conn.execute("SELECT id FROM orders ORDER BY id LIMIT 200").fetchall()
        gone = [g[0] for g in r.sample(gone[1:], min(len(gone) - 1, r.randint(3, 9)))]
        conn.execute("DELETE FROM order_items WHERE order_id = ANY(%s)", [gone])
        conn.execute("DELETE FROM orders WHERE id = ANY(%s)", [gone])
        first, last = data_months(conn)
        planted = _plant_orders(conn, r, first, last)
        total = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        batch = adv.non_round(max(50, total // 6), rand=r)
        _ties_at_batch_edges(conn, batch)
        # an order the shop deletes once the conversion has copied it (an erasure request,
        # a test order cleaned up): rows before the copy's position move, and a copy that
        # pages with OFFSET skips one; it may or may not stay in the converted table
        victim = conn.execute("SELECT min(id) FROM orders").fetchone()[0]
    zone = r.choice(DST_ZONES)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute("SELECT set_config('TimeZone', %s, false)", [zone])
        before = query_checksum(conn, f"SELECT {ORDER_COLUMNS} FROM orders WHERE id <> %s",
                                [victim])
    box: dict[str, Any] = {"inserted": [], "window": 0, "window_txns": set(), "between": 0,
                           "start_txns": set(), "victim_txns": set()}
    writer = psycopg.connect(lab.url, autocommit=True, application_name="lab check shop")
    writer.execute("SET lock_timeout = '3s'")
    orders_oid = writer.execute("SELECT 'orders'::regclass::oid").fetchone()[0]

    def shop_order(k: int) -> int:
        return writer.execute(
            "INSERT INTO orders (customer_id, status, created_at, total, "
            "shipping_country) SELECT min(id), 'pending', now() - %s * interval '1 s', "
            "12.34, 'DE' FROM customers RETURNING id", [k]).fetchone()[0]

    def shop_writes(_st: Any) -> None:
        if "read" not in box and learner_locks_on_orders():
            box["read"] = True  # the conversion has read orders: the copy has begun
        # once the conversion has started reading orders (a lock on it, in a transaction of
        # its own) or committed something; the copy's batches use a CTE whose command tag
        # is SELECT, so waiting for a counted commit alone could wait for ever
        if "tried" in box or (rec.commits < 1 and not learner_locks_on_orders()):
            return
        box["tried"] = True
        try:
            for k in range(3):
                box["inserted"].append(shop_order(k))
        except psycopg.errors.LockNotAvailable:
            box["blocked"] = True

    def learner_locks_on_orders() -> set[str]:
        return {m for (m,) in writer.execute(
            "SELECT mode FROM pg_locks WHERE pid = %s AND granted AND locktype = 'relation' "
            "AND relation = %s", [caller.pid, orders_oid]).fetchall()}

    def delete_copied(txn: int) -> None:
        """At the start of a transaction of the learner's, once the victim has been copied
        into orders_new (and the learner holds no lock on orders): the shop deletes it."""
        if "victim_gone" in box or txn in box["victim_txns"]:
            return
        box["victim_txns"].add(txn)
        if learner_locks_on_orders() or not writer.execute(
                "SELECT to_regclass('orders_new') IS NOT NULL").fetchone()[0]:
            return
        if not writer.execute("SELECT EXISTS (SELECT 1 FROM orders_new WHERE id = %s)",
                              [victim]).fetchone()[0]:
            return
        box["victim_gone"] = True
        try:
            with writer.transaction():
                writer.execute("DELETE FROM order_items WHERE order_id = %s", [victim])
                writer.execute("DELETE FROM orders WHERE id = %s", [victim])
        except psycopg.errors.LockNotAvailable:
            box["blocked"] = True

    def shop_in_the_window() -> None:
        """Before each statement of a transaction that has read orders without stopping its
        writers: an order placed now must reach the converted table (the swap's catch-up
        and renames need a lock that stops writers from before the catch-up reads)."""
        txn = len(rec.ended_at)
        delete_copied(txn)
        if ("read" in box and box["between"] < SHOP_BETWEEN_ORDERS
                and txn not in box["start_txns"]):
            # orders keep coming between the conversion's transactions too: one placed just
            # before the swap starts must reach the new table and stay below its identity.
            # Never before three transactions in a row: a copy loop that stops at its first
            # empty batch must get one, not chase the shop's orders for ever
            box["start_txns"].add(txn)
            placed = box.setdefault("placed", set())
            if not learner_locks_on_orders() and not {txn - 1, txn - 2} <= placed:
                placed.add(txn)
                box["between"] += 1
                try:
                    box["inserted"].append(shop_order(0))
                except psycopg.errors.LockNotAvailable:
                    box["blocked"] = True
                return
        if (box["window"] >= SHOP_WINDOW_ORDERS or caller.conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS):
            return
        if txn in box["window_txns"]:
            return
        held = learner_locks_on_orders()
        if not held or held & WRITER_BLOCKING:
            return
        box["window_txns"].add(txn)
        box["window"] += 1
        try:
            box["inserted"].append(shop_order(0))
        except psycopg.errors.LockNotAvailable:
            box["blocked"] = True

    try:
        with untouched(lab, OTHER_TABLES, why="the conversion moves orders only"):
            with Caller(lab, settings=caller_settings(zone)) as caller:
                rec = RecordingConnection(caller.conn, on_statement=shop_writes)
                _call(convert_orders, _BeforeEach(rec, shop_in_the_window), first, last, batch,
                      who="convert_orders")
                _verify(caller, f"convert_orders(conn, {first:%Y-%m-%d}, {last:%Y-%m-%d}, "
                                f"batch_size={batch})")
    finally:
        writer.close()
    if box.get("blocked"):
        raise CheckFailed(
            "While your conversion was copying (after its first committed batch), an ordinary "
            "INSERT INTO orders waited for a lock for 3 s: the copy blocked the shop's writes. "
            "Copy in batches that only read orders (INSERT INTO orders_new SELECT … FROM orders "
            "… LIMIT n, committed one by one); take a stronger lock only for the final, short "
            "swap.")
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute("SELECT set_config('TimeZone', %s, false)", [zone])
        if not is_partitioned(conn, "orders"):
            raise CheckFailed("After convert_orders, orders is still a plain table: the "
                              "partitioned copy must take its name (ALTER TABLE orders RENAME "
                              "TO orders_old; ALTER TABLE orders_new RENAME TO orders, in the "
                              "swap's transaction).")
        pk = conn.execute("""SELECT array_agg(a.attname::text ORDER BY a.attname)
                             FROM pg_constraint c JOIN pg_attribute a
                               ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
                             WHERE c.conrelid = 'orders'::regclass AND c.contype = 'p'
                             """).fetchone()[0]
        if not pk or "id" not in pk:
            raise CheckFailed("The partitioned orders has no primary key on (id, created_at): "
                              "every order must stay unique by id (a partitioned table's "
                              "primary key includes the partition key).")
        twice = conn.execute("SELECT id, count(*) FROM orders GROUP BY id HAVING count(*) > 1 "
                             "ORDER BY id LIMIT 1").fetchone()
        if twice:
            late = twice[0] in box["inserted"]
            raise CheckFailed(
                f"After the conversion, {twice[1]} orders have the id {twice[0]}"
                + (": one of them is an order the shop placed while your conversion ran, "
                   "which got an id the new table's identity gave out again. "
                   if late else ". ")
                + "Every order must keep a unique id: the new table's identity must continue "
                "after the highest id before orders takes the new table's name, so setval it "
                "in the swap's own transaction, after its catch-up copy (setval(pg_get_serial_"
                "sequence('orders', 'id'), (SELECT max(id) FROM orders))). Done in a later "
                "transaction, every order placed in between gets the id of an old one (the "
                "primary key (id, created_at) does not stop it); batches that overlap copy "
                "an order twice.")
        after = query_checksum(conn, f"SELECT {ORDER_COLUMNS} FROM orders WHERE id <> ALL(%s)",
                               [box["inserted"] + [victim]])
        if after != before:
            lost = before[0] - after[0]
            raise CheckFailed(
                f"The orders that existed before the conversion are not all there, unchanged: "
                f"{before[0]:,} rows before, {after[0]:,} after (the checksums differ too)"
                + (f"; {lost:,} missing: a last partial batch not copied, or a batch skipped "
                   "at its boundary (keyset: id > the last id copied; a keyset on a column "
                   "with ties, created_at > last, skips the rest of a tie: orders written by "
                   "one transaction share now(); paging with OFFSET skips a row whenever an "
                   "order already copied is deleted"
                   + (f", as the shop deleted order {victim} during your copy"
                      if "victim_gone" in box else "") + ")" if lost > 0 else
                   "; some copied twice") + ".")
        missing = [i for i in box["inserted"] if not conn.execute(
            "SELECT 1 FROM orders WHERE id = %s", [i]).fetchone()]
        if missing:
            raise CheckFailed(
                f"Orders {missing} were inserted by the shop while your conversion was copying "
                "or swapping (into the old table: it was still orders), and they are not in the "
                "converted orders: the swap must copy what arrived since the last batch (id > "
                "the last id copied), in the same transaction as the renames, under a lock that "
                "stops writers taken before that copy reads (LOCK TABLE orders IN EXCLUSIVE "
                "MODE first): otherwise an order committed between the copy and the rename "
                "stays behind in orders_old.")
        months = month_starts(first, last)
        judge_placement(conn, "orders", months, zone, _witnesses(conn, months),
                        "After convert_orders")
        groups = conn.execute("SELECT count(*) FROM orders GROUP BY xmin::text "
                              "ORDER BY 1 DESC").fetchall()
        biggest = groups[0][0] if groups else 0
        allowed = batch + len(box["inserted"]) + planted
        if biggest > allowed or len(groups) < math.ceil(total / batch):
            raise CheckFailed(
                f"One transaction of your conversion wrote {biggest:,} of the {total:,} orders "
                f"(batch_size was {batch:,}; {len(groups)} transaction(s) in all): the copy was "
                "not done in committed batches. One INSERT … SELECT of the whole table (or a "
                "loop inside one transaction) holds back VACUUM for the whole copy, writes "
                "it to WAL as one burst the replicas must swallow, and is lost entirely on a "
                "crash. Commit each batch (with conn.transaction(): … per batch).")
        old = conn.execute("SELECT count(*) FROM orders_old WHERE id <> ALL(%s)",
                           [box["inserted"] + [victim]]).fetchone()[0] if conn.execute(
            "SELECT to_regclass('orders_old') IS NOT NULL").fetchone()[0] else None
        if old != total - 1:
            raise CheckFailed(
                "The old table is not there as orders_old with its rows "
                f"({'missing' if old is None else f'{old:,} rows of {total - 1:,}'}): keep it "
                "(ALTER TABLE orders RENAME TO orders_old) until the new one has run in "
                "production for a while; it is the way back if something is wrong.")
        leading = {r[0] for r in conn.execute(
            """SELECT a.attname::text FROM pg_index i JOIN pg_attribute a
                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
               WHERE i.indrelid = 'orders'::regclass""").fetchall()}
        lacking = [c for c in ("customer_id", "created_at") if c not in leading]
        if lacking:
            raise CheckFailed(
                f"The partitioned orders has no index on {' nor on '.join(lacking)}: every "
                "customer's order history (WHERE customer_id = …) now reads every row of "
                "every month. Create the indexes on orders_new before the copy "
                "(CREATE INDEX ON orders_new (customer_id); … (created_at)): an index on "
                "a partitioned table is created on every partition.")
        try:
            with conn.transaction(force_rollback=True):
                oid = conn.execute(
                    "INSERT INTO orders (customer_id, status, created_at, total, "
                    "shipping_country) SELECT min(id), 'paid', now(), 1.00, 'DE' FROM customers "
                    "RETURNING id").fetchone()[0]
                conn.execute("INSERT INTO order_items (order_id, product_id, quantity, "
                             "unit_price) SELECT %s, min(id), 1, 1.00 FROM products", [oid])
                same_id = conn.execute("SELECT count(*) FROM orders WHERE id = %s",
                                       [oid]).fetchone()[0]
                if same_id != 1:
                    raise CheckFailed(
                        f"After the conversion, the shop's next order got id {oid}, which "
                        f"{same_id - 1} existing order(s) already have: the new table's identity "
                        "does not continue after the highest id (LIKE … INCLUDING IDENTITY "
                        "creates a new sequence starting at 1; count(*) is not max(id) when ids "
                        "have gaps; a max(id) read before the swap misses the orders placed "
                        "since), and the primary key (id, created_at) does not stop a repeated "
                        "id. In the swap, after the catch-up: setval(pg_get_serial_sequence("
                        "'orders', 'id'), (SELECT max(id) FROM orders)).")
            for label, bad, state, fix in (
                    ("an order for a customer that does not exist", "(SELECT max(id) + 1000 FROM customers), 'paid'",
                     "23503", "the foreign key orders.customer_id → customers: LIKE does not "
                     "copy foreign keys; ALTER TABLE orders_new ADD FOREIGN KEY (customer_id) "
                     "REFERENCES customers (id) (a foreign key from a partitioned table to a "
                     "plain one is allowed)"),
                    ("an order with status 'lost in space'", "(SELECT min(id) FROM customers), 'lost in space'",
                     "23514", "the CHECK constraint on status: LIKE orders INCLUDING "
                     "CONSTRAINTS")):
                try:
                    with conn.transaction(force_rollback=True):
                        conn.execute("INSERT INTO orders (customer_id, status, created_at, total, "
                                     f"shipping_country) SELECT {bad}, now(), 1.00, 'DE'")
                except psycopg.Error as exc:
                    if exc.sqlstate == state:
                        continue
                    raise
                raise CheckFailed(f"After the conversion, orders accepts {label}: the converted "
                                  f"table lost {fix}.")
        except psycopg.Error as exc:
            advice = {
                "23505": "the identity of orders.id restarted below the copied ids: setval the "
                         "new table's sequence to max(id) in the swap",
                "23503": "a foreign key still points order_items at the old table (a rename "
                         "keeps the reference): drop order_items_order_id_fkey in the swap, "
                         "since orders(id) alone is no longer unique in a partitioned table",
                "23502": "orders.id has no default any more: create orders_new with LIKE "
                         "orders INCLUDING IDENTITY (and setval it)",
            }.get(exc.sqlstate or "", "it must simply work")
            raise CheckFailed(f"After the conversion, the shop's next order (an INSERT INTO "
                              f"orders without an id, then its order_items row) failed with "
                              f"SQLSTATE {exc.sqlstate} ({exc.diag.message_primary}): {advice}.")
    return (f"orders partitioned by month ({total:,} orders, counts and checksums equal, each "
            f"in its month or the default), copied in {len(groups)} committed batches while the "
            "shop kept writing, and new orders with items still go in")


# --------------------------------------------------------------------------
# q3: pruning


REFERENCE_MONTH_SQL = """
SELECT id, customer_id, created_at, total FROM orders
WHERE created_at >= %(month)s
  AND created_at < ((%(month)s::timestamptz AT TIME ZONE 'UTC') + interval '1 month')
                   AT TIME ZONE 'UTC'
"""


def _prepared(sql: str) -> str:
    return sql.replace("%(month)s", "$1").replace("%%", "%")


def q3(lab: Any, month_orders_sql: str) -> str:
    """The month's orders, exactly; one partition planned, and pruned at execution time."""
    require(month_orders_sql)
    if "%(month)s" not in month_orders_sql:
        raise CheckFailed("Your query has no %(month)s parameter: the month comes from the "
                          "caller (the report's month picker), as %(month)s.")
    ensure_partitioned(lab)
    r = adv.rng()
    zone = r.choice(DST_ZONES)
    with psycopg.connect(lab.url) as conn:
        parts = [p for p in partition_bounds(conn, "orders") if not p.is_default]
        conn.rollback()
        if len(parts) < 6:
            raise CheckFailed("orders has fewer than 6 monthly partitions: run exercise 2 (or "
                              "the catch-up cell after it) first.")
        months = [p.lower for p in parts if p.lower is not None]
        asked = sorted(r.sample(months[1:-1], 5) + [months[0]])
        with conn.transaction(force_rollback=True):
            conn.execute("SELECT set_config('TimeZone', %s, true)", [zone])
            # a month whose end crosses this zone's daylight-saving change, if the range has one
            for m in months:
                n = add_months(m, 1)
                if (m.astimezone(ZoneInfo(zone)).utcoffset()
                        != n.astimezone(ZoneInfo(zone)).utcoffset()) and m not in asked:
                    asked.append(m)
                    break
            customers = [row[0] for row in conn.execute(
                "SELECT id FROM customers ORDER BY id LIMIT 50").fetchall()]
            for at in boundary_instants([add_months(m, 1) for m in asked] + asked):
                conn.execute("INSERT INTO orders (customer_id, status, created_at, total, "
                             "shipping_country) VALUES (%s, 'paid', %s, 9.99, 'NP')",
                             [r.choice(customers), at])
            for m in asked:
                planned = scanned_partitions(conn, month_orders_sql, {"month": m}, analyze=False)
                if 1 < len(planned.planned) <= 3:
                    raise CheckFailed(
                        f"For the month {m:%Y-%m} (session TimeZone {zone}), the plan of your "
                        f"query scans {len(planned.planned)} partitions "
                        f"({', '.join(planned.planned)}) where the month needs one: the end of "
                        "your range reaches into the next month. The end is the next month's "
                        "first instant in UTC, exclusive (<): not a fixed number of days "
                        "(months have 28 to 31), not BETWEEN (inclusive), and not timestamptz "
                        "+ interval '1 month' in this zone, which adds a local month (an hour "
                        "shifts at a daylight-saving change): compute the end in UTC.")
                if len(planned.planned) != 1:
                    raise CheckFailed(
                        f"For the month {m:%Y-%m}, the plan of your query scans "
                        f"{len(planned.planned)} partitions of orders ({', '.join(planned.planned[:4])}"
                        f"{', …' if len(planned.planned) > 4 else ''}): no partition pruning. "
                        "The planner prunes only on comparisons of the partition key itself "
                        "with values (created_at >= … AND created_at < …); a function of the "
                        "key (date_trunc('month', created_at) = …, created_at::date, extract) "
                        "hides it, and every partition is read.")
                try:
                    with conn.transaction(force_rollback=True):
                        cur = conn.execute(month_orders_sql, {"month": m})
                        got_cols = [c.name for c in cur.description or []]
                        got_rows = cur.fetchall()
                    cur = conn.execute(REFERENCE_MONTH_SQL, {"month": m})
                    compare_results(got_cols, got_rows, [c.name for c in cur.description],
                                    cur.fetchall(), what="your query")
                except CheckFailed as exc:
                    raise CheckFailed(
                        f"For the month starting {_utc(m)}, on a session whose TimeZone is "
                        f"{zone}, your query's rows differ from the month's orders: "
                        f"{exc.message} The month is a UTC month: [its first instant, the next "
                        "month's first instant). In this zone, date_trunc and "
                        "timestamptz + interval '1 month' work in local time (an hour shifts "
                        "at a daylight-saving change): compute the end in UTC, "
                        "((%(month)s::timestamptz AT TIME ZONE 'UTC') + interval '1 month') AT "
                        "TIME ZONE 'UTC'.", exc.detail) from None
            with psycopg.ClientCursor(conn) as cur:
                shape = cur.execute(f"EXPLAIN (FORMAT JSON) {month_orders_sql}",
                                    {"month": asked[0]}).fetchone()[0]
            if any(n.get("Node Type") == "Limit" for n in _walk(shape[0]["Plan"])):
                raise CheckFailed(
                    "Your query stops after a fixed number of rows (LIMIT): at this scale a "
                    "month fits under it, in production a month has hundreds of thousands of "
                    "orders and the report would silently leave most of them out. Return "
                    "every order of the month.")
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            conn.execute(f"PREPARE pt_month(timestamptz) AS {_prepared(month_orders_sql)}")
            m = r.choice(asked)
            with psycopg.ClientCursor(conn) as cur:
                doc = cur.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) "
                                  "EXECUTE pt_month(%s)", [m]).fetchone()[0]
            conn.execute("DEALLOCATE pt_month")
    nodes = list(_walk(doc[0]["Plan"]))
    removed = sum(int(n.get("Subplans Removed", 0)) for n in nodes)
    ran = [n["Relation Name"] for n in nodes if n.get("Relation Name") and n.get("Actual Loops")]
    if removed == 0 or len(ran) != 1:
        raise CheckFailed(
            f"As a prepared statement with a generic plan (plan_cache_mode = "
            f"force_generic_plan, the month as $1), your query ran on {len(ran)} partitions "
            f"and the executor removed {removed} subplans: no pruning at execution time. "
            "Compare created_at itself with expressions of the parameter that PostgreSQL can "
            "evaluate once per execution (no volatile function, no function of created_at).")
    return (f"the month's orders exactly (session in {zone}); one partition planned, and with "
            f"a generic plan {removed} subplans removed at execution time")


# --------------------------------------------------------------------------
# q4: retention


DELETES_SEQ = "pt_check_deleted_orders"


def _count_deletes(lab: Any, drop: bool = False) -> None:
    """A row trigger on orders (cloned onto every partition) counting deleted rows in a
    sequence: non-transactional, so it counts what the learner's function deleted."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER IF EXISTS pt_check_count_deletes ON orders")
        conn.execute("DROP FUNCTION IF EXISTS pt_check_count_deletes()")
        conn.execute(f"DROP SEQUENCE IF EXISTS {DELETES_SEQ}")
        if drop:
            return
        conn.execute(f"CREATE SEQUENCE {DELETES_SEQ}")
        conn.execute(f"""CREATE FUNCTION pt_check_count_deletes() RETURNS trigger
                         LANGUAGE plpgsql AS $$ BEGIN PERFORM nextval('{DELETES_SEQ}');
                         RETURN NULL; END $$""")
        conn.execute("CREATE TRIGGER pt_check_count_deletes AFTER DELETE ON orders "
                     "FOR EACH ROW EXECUTE FUNCTION pt_check_count_deletes()")


def _deletes_counted(lab: Any) -> int:
    with psycopg.connect(lab.url, autocommit=True) as conn:
        value, called = conn.execute(f"SELECT last_value, is_called FROM {DELETES_SEQ}").fetchone()
    return int(value) if called else 0


def q4(lab: Any, drop_months_before: Callable[..., Any]) -> str:
    """Old months dropped as partitions; exactly the rows at or after the cutoff left."""
    require(drop_months_before)
    ensure_partitioned(lab)
    r = adv.rng()
    with psycopg.connect(lab.url, autocommit=True) as conn:
        parts = [p for p in partition_bounds(conn, "orders") if not p.is_default]
        if len(parts) < 8:
            raise CheckFailed("orders has fewer than 8 monthly partitions: run exercise 2 (or "
                              "the catch-up cell after it) again first.")
        cutoff = parts[r.randint(3, min(14, len(parts) - 4))].lower
        customers = [row[0] for row in conn.execute(
            "SELECT id FROM customers ORDER BY id LIMIT 50").fetchall()]
        for at in (adv.instants_around(cutoff) + [cutoff + dt.timedelta(microseconds=1),
                   parts[0].lower - dt.timedelta(days=r.randint(30, 900)),
                   parts[-1].upper + dt.timedelta(days=r.randint(1, 900))]):
            conn.execute("INSERT INTO orders (customer_id, status, created_at, total, "
                         "shipping_country) VALUES (%s, 'delivered', %s, 5.55, 'AU')",
                         [r.choice(customers), at])
        zone = adv.non_utc_zone(rand=r)
        conn.execute("SELECT set_config('TimeZone', %s, false)", [zone])
        kept = query_checksum(conn, f"SELECT {ORDER_COLUMNS} FROM orders "
                                    "WHERE created_at >= %s", [cutoff])
        old = [p for p in parts if p.upper is not None and p.upper <= cutoff]
        young = [p for p in parts if p not in old]
        default = [p.name for p in partition_bounds(conn, "orders") if p.is_default]
    with psycopg.connect(lab.url, autocommit=True) as conn:
        may_delete = conn.execute(
            "SELECT count(*) FROM orders WHERE created_at < %s AND tableoid = ANY(%s::regclass[])",
            [cutoff, default]).fetchone()[0]
    _count_deletes(lab)
    try:
        with untouched(lab, OTHER_TABLES, why="retention drops old orders only"):
            with Caller(lab) as caller:
                what = f"drop_months_before(conn, {cutoff:%Y-%m-%d})"
                gave_up, got = _retention_behind_a_report(lab, caller, drop_months_before, cutoff)
                _verify(caller, what + " (while a report was reading orders)")
                with psycopg.connect(lab.url, autocommit=True) as conn:
                    attached = {p.name for p in partition_bounds(conn, "orders")}
                if gave_up or any(p.name in attached for p in old):
                    # it gave up under its lock_timeout, as it should: the report is gone now
                    got = _call(drop_months_before, caller.conn, cutoff, who="drop_months_before")
                    _verify(caller, what)
        deleted = _deletes_counted(lab)
    finally:
        _count_deletes(lab, drop=True)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute("SELECT set_config('TimeZone', %s, false)", [zone])
        now_parts = {p.name: p for p in partition_bounds(conn, "orders")}
        attached_old = [p.name for p in old if p.name in now_parts]
        if attached_old:
            empty = all(conn.execute(f'SELECT NOT EXISTS (SELECT 1 FROM "{n}")').fetchone()[0]
                        for n in attached_old)
            raise CheckFailed(
                f"The partitions of the months before {cutoff:%Y-%m} are still attached to "
                f"orders ({', '.join(attached_old[:3])}{', …' if len(attached_old) > 3 else ''})"
                + (", emptied: retention by DELETE. A DELETE rewrites every old row as a dead "
                   "tuple (WAL for each, then VACUUM's work, the files keep their size); "
                   if empty else ". ")
                + "detach each old month (ALTER TABLE orders DETACH PARTITION …) and DROP it: "
                "a catalogue change, whatever the month's size.")
        still = [p.name for p in old if conn.execute("SELECT to_regclass(%s)",
                                                     [p.name]).fetchone()[0] is not None]
        if still:
            raise CheckFailed(f"Partitions {still[:3]} were detached but not dropped: their "
                              "rows still take their space on disk (and in every backup). "
                              "DROP TABLE each one once it is detached.")
        gone = [p.name for p in young if p.name not in now_parts]
        if gone or not any(p.is_default for p in now_parts.values()):
            raise CheckFailed(f"Partitions that hold months at or after the cutoff are gone "
                              f"({gone[:3]}), or the default partition {default} is: only "
                              "months wholly before the cutoff (upper bound ≤ cutoff) go.")
        left_old = conn.execute("SELECT count(*) FROM orders WHERE created_at < %s",
                                [cutoff]).fetchone()[0]
        if left_old:
            raise CheckFailed(
                f"{left_old} orders created before the cutoff ({_utc(cutoff)}) are still in "
                "orders: those in the default partition (dated before the partitioned months) "
                "must go too: a DELETE … WHERE created_at < cutoff, which after the detaches "
                "touches only the default partition.")
        now_kept = query_checksum(conn, f"SELECT {ORDER_COLUMNS} FROM orders "
                                        "WHERE created_at >= %s", [cutoff])
        if now_kept != kept:
            raise CheckFailed(
                f"The orders at or after the cutoff changed: {kept[0]:,} before, "
                f"{now_kept[0]:,} after (checksums {'equal' if kept[1] == now_kept[1] else 'differ'}"
                f"). The order created exactly at the cutoff ({_utc(cutoff)}) stays.")
    if deleted > may_delete:
        raise CheckFailed(
            f"Your function deleted {deleted:,} orders row by row, where only the "
            f"{may_delete:,} old orders of the default partition needed a DELETE: the old months "
            "were emptied by DELETE before their partitions were dropped. That DELETE is the "
            "cost partitioning exists to avoid (a dead tuple and WAL for each row, one long "
            "transaction, VACUUM's work), and dropping the emptied partitions afterwards saves "
            "none of it. Detach and drop each old month first (a catalogue change), then DELETE "
            "… WHERE created_at < cutoff, which then touches only the default partition.")
    if got != len(old):
        raise CheckFailed(f"drop_months_before dropped {len(old)} partitions but returned "
                          f"{got!r}: return the number of partitions dropped.")
    _nothing_to_drop(lab, drop_months_before, cutoff, kept, zone)
    return (f"{len(old)} old months dropped as partitions (the default's old rows deleted), "
            f"{kept[0]:,} orders at or after {cutoff:%Y-%m-%d} left exactly")


def _nothing_to_drop(lab: Any, drop_months_before: Callable[..., Any], cutoff: dt.datetime,
                     kept: tuple, zone: str) -> None:
    """Run again with the same cutoff (the nightly job on a night no month is due, or a
    retry after a failure): nothing to drop, return 0, every row and partition stays."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        parts = {p.name for p in partition_bounds(conn, "orders")}
    with Caller(lab) as caller:
        what = f"drop_months_before(conn, {cutoff:%Y-%m-%d}) run again"
        try:
            again = drop_months_before(caller.conn, cutoff)
        except Exception as exc:  # noqa: BLE001 - the learner's error, said with its fix
            raise CheckFailed(
                f"Run again with the same cutoff, when no month is left to drop (the nightly "
                f"job on the 29 nights a month that no month is due, or a retry), "
                f"drop_months_before raised {type(exc).__name__}: {str(exc).strip()[:200]}. "
                "With nothing to drop it must do nothing and return 0: build each statement "
                "per partition (or skip the statement when the list is empty).") from None
        _verify(caller, what)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute("SELECT set_config('TimeZone', %s, false)", [zone])  # as kept was read
        now = {p.name for p in partition_bounds(conn, "orders")}
        rows = query_checksum(conn, f"SELECT {ORDER_COLUMNS} FROM orders "
                                    "WHERE created_at >= %s", [cutoff])
    if now != parts or rows != kept:
        raise CheckFailed(
            f"Run again with the same cutoff, with no month left before it, drop_months_before "
            f"still changed orders ({len(parts - now)} partition(s) dropped, orders at or after "
            "the cutoff " + ("unchanged" if rows == kept else "changed") + "): only partitions "
            "wholly before the cutoff (upper bound ≤ cutoff) go.")
    if again != 0:
        raise CheckFailed(f"Run again with the same cutoff, with no month left before it, "
                          f"drop_months_before returned {again!r}: it dropped nothing, so it "
                          "returns 0.")


QUEUE_LIMIT = 3.5  # q4: s an order may wait behind the retention's DETACH


def _retention_behind_a_report(lab: Any, caller: Caller, drop_months_before: Callable[..., Any],
                               cutoff: dt.datetime) -> tuple[bool, Any]:
    """Run the learner's retention while a report holds ACCESS SHARE on orders; once it
    queues for a lock, the shop inserts an order (rolled back), which must not wait more
    than QUEUE_LIMIT. Returns (gave up with lock_timeout, returned value)."""
    report = psycopg.connect(lab.url, application_name="lab check report")
    report.execute("SELECT count(*) FROM orders")  # ACCESS SHARE on orders, until rollback
    done = threading.Event()
    outcome: dict[str, float] = {}

    def shop() -> None:
        try:
            with psycopg.connect(lab.url, autocommit=True) as mon, \
                    psycopg.connect(lab.url, application_name="lab check shop") as shopper:
                while not done.is_set():
                    if mon.execute("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted",
                                   [caller.pid]).fetchone():
                        break
                    time.sleep(0.02)
                else:
                    return
                t0 = time.monotonic()
                try:
                    shopper.execute("SELECT set_config('lock_timeout', %s, true)",
                                    [f"{int(QUEUE_LIMIT * 1000)}ms"])
                    shopper.execute("INSERT INTO orders (customer_id, status, created_at, "
                                    "total, shipping_country) SELECT min(id), 'pending', now(), "
                                    "1.00, 'DE' FROM customers")
                except psycopg.errors.LockNotAvailable:
                    outcome["blocked"] = time.monotonic() - t0
                finally:
                    shopper.rollback()
        finally:
            report.rollback()

    watcher = threading.Thread(target=shop, daemon=True)
    watcher.start()

    def attempt() -> tuple[bool, Any]:
        try:
            return False, drop_months_before(caller.conn, cutoff)
        except psycopg.errors.LockNotAvailable:
            return True, None

    try:
        result = _call(attempt, who="drop_months_before")
    finally:
        done.set()
        watcher.join(timeout=30)
        report.close()
    if "blocked" in outcome:
        raise CheckFailed(
            "While a report was reading orders, your DETACH PARTITION queued for its ACCESS "
            f"EXCLUSIVE lock, and an ordinary INSERT INTO orders queued behind it for "
            f"{QUEUE_LIMIT:g} s and gave up: without a short lock_timeout the whole shop "
            "waits for the longest report. SET LOCAL lock_timeout = '2s' in each detach's "
            "transaction (and retry later when it gives up).")
    return result


HINTS = {
    "q1": ["One CREATE TABLE {table}_{YYYY_MM} PARTITION OF {table} FOR VALUES FROM (…) TO (…) "
           "per month, then CREATE TABLE {table}_default PARTITION OF {table} DEFAULT; commit.",
           "Write each bound as an instant with its offset: f\"'{m.isoformat()}'\" for a UTC "
           "datetime m gives '2024-01-01T00:00:00+00:00'; TO is the next month's start "
           "(exclusive)."],
    "q2": ["CREATE TABLE orders_new (LIKE orders INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
           "INCLUDING IDENTITY, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at); "
           "then create_month_partitions(conn, 'orders_new', first_month, last_month).",
           "Batches by keyset: INSERT INTO orders_new SELECT * FROM orders WHERE id > %s ORDER BY "
           "id LIMIT %s RETURNING id, one committed transaction each.",
           "The swap, one transaction: LOCK TABLE orders IN EXCLUSIVE MODE; copy id > last; "
           "drop order_items_order_id_fkey; rename both tables; setval the sequence."],
    "q3": ["created_at >= %(month)s AND created_at < <the next month's start>: the key itself, "
           "compared with values.",
           "The next month's start in UTC, whatever the session's TimeZone: "
           "((%(month)s::timestamptz AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'."],
    "q4": ["partitions.partition_bounds(conn, 'orders') lists each partition with its bounds; "
           "the old ones are those whose upper bound is ≤ cutoff.",
           "Per partition, in a transaction with SET LOCAL lock_timeout = '2s': ALTER TABLE "
           "orders DETACH PARTITION …; DROP TABLE …; then DELETE FROM orders WHERE created_at < "
           "cutoff (only the default partition still has such rows)."],
}

# q3 and q4 read the partitioned orders that exercise 2 leaves (or the catch-up cell makes)
CHECKS_BUILD_ON_EARLIER = False
