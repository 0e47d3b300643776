"""Checks for 05_migrations: adding users.created_at with zero downtime.

Every check runs the learner's code for real, on the challenge database, while
a live workload (``labs.tools.workload``: readers and writers at a steady rate)
keeps querying ``users``, and asserts that no workload query waited longer than
:data:`BUDGET_S` for a lock. That budget is wide on purpose: a zero-downtime
migration keeps lock waits to the lock_timeout it chose (a few hundred ms at
most), while the outage it prevents lasts as long as the longest transaction
or the table rewrite (seconds to minutes at 10 million rows).

The verdicts do not hang on that timing, though: at 5,000 rows a naive
migration is fast too. What tells right from wrong is deterministic evidence:

* q1 (lock_timeout + retries): a reader holds ACCESS SHARE in an open
  transaction; the learner's ``run_ddl`` must fail with ``55P03`` (PostgreSQL:
  ``canceling statement due to lock timeout``) and retry, rather than queue
  (and queue everyone behind it) for as long as the reader lives.
* q2, q3 (expand, backfill, contract): ``labs.tools.migrations_probe.probe_steps``
  runs each statement while a writer holds ROW EXCLUSIVE, reads the lock it
  queued for from ``pg_locks``, and reads PostgreSQL's DEBUG1 account of
  whether it scanned or rewrote the table; the backfill runs on a recording
  connection that counts rows per committed transaction and crashes it on
  purpose after a few batches.
* q4 (Alembic): catalogue snapshots compared with ``==``.
* q5 (squawk): the linter's findings, by rule.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

import psycopg

from ..course.checking import CheckFailed, require
from ..tools.migrations_probe import (LEGACY_TABLE, Interrupted, RecordingConnection, catalog_snapshot,
                                evidence_table, migration_script, original_rows_checksum,
                                prepare, probe_steps, relfilenode, reset_migration, run_in_thread,
                                snapshot_diff, squawk, validation)
from ..tools.sessions import Sessions
from ..tools.workload import WRITER_ID_BASE, Workload

BUDGET_S = 1.0  # no workload query may wait longer than this for a lock
PATIENCE_S = 3.0  # how long q1 lets a DDL statement queue before calling it an outage
COLUMN = "created_at"
PROBE_DDL = "ALTER TABLE users ADD COLUMN lock_probe integer"
# The application signs a user up and logs the event in one transaction, so
# now() is the same in both rows: the backfill can be checked on every row.
SIGNUP_WRITES = ("INSERT INTO users (id, name) VALUES (%(id)s, %(name)s)",
                 f"INSERT INTO {LEGACY_TABLE} (user_id, signed_up_at) VALUES (%(id)s, now())")
# Findings of squawk that are about locks and rewrites: fix them, never explain them away.
LOCK_RULES = {"require-lock-timeout", "adding-not-nullable-field", "adding-required-field",
              "adding-field-with-default", "require-concurrent-index-creation",
              "require-concurrent-index-deletion", "constraint-missing-not-valid",
              "changing-column-type", "ban-concurrent-index-creation-in-transaction",
              "disallowed-unique-constraint", "adding-foreign-key-constraint",
              "adding-primary-key-constraint"}

HINTS = {
    "q1": ["Before the ALTER TABLE, run SET lock_timeout = '200ms' on the same connection.",
           "Catch psycopg.errors.LockNotAvailable (SQLSTATE 55P03), sleep a little (more each "
           "time, with jitter) and try again; give up after a bounded number of attempts."],
    "q2": ["Expand with one ALTER TABLE: ADD COLUMN created_at timestamptz (nullable, no "
           "default for existing rows), ALTER COLUMN created_at SET DEFAULT now() for new ones.",
           "Backfill in keyset batches: pick the next batch_size ids after the last one done "
           "whose created_at IS NULL, UPDATE them from signup_events, commit, sleep(pause).",
           "Store the last id done in a progress table in the same transaction as the batch, "
           "and start from it: a crash then loses nothing and redoes nothing."],
    "q3": ["ALTER TABLE users ADD CONSTRAINT ... CHECK (created_at IS NOT NULL) NOT VALID, then "
           "VALIDATE CONSTRAINT (scans without blocking writes), then SET NOT NULL (PostgreSQL 12+ "
           "uses the validated CHECK and skips its own scan), then drop the CHECK.",
           "CREATE INDEX CONCURRENTLY users_created_at_idx ON users (created_at)."],
    "q4": ["downgrade_steps['contract'] undoes the contract steps (DROP INDEX CONCURRENTLY IF "
           "EXISTS, ALTER COLUMN ... DROP NOT NULL); downgrade_steps['expand'] drops the column."],
    "q5": ["Run lint(...) in the cell above and read each finding: fix the ones about locks; "
           "for the others, write one sentence each in squawk_explained saying why it is fine."],
}


# --------------------------------------------------------------------------
# helpers


def live_workload(lab: Any) -> Workload:
    """The challenge's workload: two readers, one signing-up writer, 50 queries/s each."""
    return Workload(lab, readers=2, writers=1, rate=50, writes=SIGNUP_WRITES)


def _budget(wl: Workload, what: str) -> float:
    waited = wl.max_lock_wait()
    if waited >= BUDGET_S:
        queued = sum(r.lock_wait > 0 for r in wl.records)
        raise CheckFailed(
            f"While {what} ran, a workload query waited {waited:.2f} s for a lock (budget "
            f"{BUDGET_S:.0f} s): {queued} queries queued behind your migration. Every statement "
            "that takes a strong lock needs a short lock_timeout and retries.", wl.summary())
    return waited


def _column_state(conn: psycopg.Connection) -> tuple[bool, bool]:
    row = conn.execute("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass "
                       "AND attname = %s AND NOT attisdropped", [COLUMN]).fetchone()
    return (row is not None, bool(row and row[0]))


def _outages(evidence: list, what: str) -> None:
    for ev in evidence:
        if ev.error:
            raise CheckFailed(f"PostgreSQL rejected a statement of your {what}: {ev.error}",
                              ev.sql)
    for ev in evidence:
        if ev.outage:
            mode = ev.lock_awaited
            blocked = "every query on users" if ev.blocks_reads else "every INSERT/UPDATE/DELETE"
            fix = ("Build the index with CREATE INDEX CONCURRENTLY." if mode == "ShareLock" else
                   "Make SET NOT NULL provable without a scan: add CHECK (... IS NOT NULL) NOT "
                   "VALID, VALIDATE CONSTRAINT, then SET NOT NULL." if ev.scanned else
                   "Avoid the rewrite: add the column without a volatile default and backfill.")
            raise CheckFailed(
                f"`{' '.join(ev.sql.split())}` takes {mode} on users and then reads the whole "
                f"table under it: {blocked} waits for the full scan (minutes at 10 million rows). "
                + fix, evidence_table(evidence))


def backfill_kwargs(rows: int) -> dict[str, Any]:
    """Batch size and pause the checks use: about 10 batches at tiny scale, 20k rows at most."""
    return {"batch_size": min(max(rows // 10, 100), 20_000), "pause": 0.005}


# --------------------------------------------------------------------------
# q1: the lock queue, prevented


def q1(lab: Any, run_ddl: Callable[..., Any]) -> str:
    """run_ddl(conn, statement) gives up on a lock within the budget and retries until it succeeds."""
    require(run_ddl)
    with lab.connect(autocommit=True) as c:
        c.execute("ALTER TABLE users DROP COLUMN IF EXISTS lock_probe")
    wl = live_workload(lab)
    raw = lab.connect(autocommit=True)
    conn = RecordingConnection(raw)
    settings_before = session_settings(raw)
    with wl, Sessions(lab, "reader", application_name="lab check") as s:
        s.reader("BEGIN")
        s.reader("SELECT count(*) FROM users WHERE id < 100")  # holds ACCESS SHARE on users
        with wl.step("run_ddl while a reader holds ACCESS SHARE", raw):
            thread, box = run_in_thread(run_ddl, conn, PROBE_DDL)
            deadline = time.monotonic() + PATIENCE_S
            while (thread.is_alive() and len(conn.errors("55P03")) < 2
                   and time.monotonic() < deadline):
                time.sleep(0.01)
            timeouts = len(conn.errors("55P03"))
            still_waiting = thread.is_alive()
            wl.mark("reader commits")
            s.reader("COMMIT")
            thread.join(60)
    settings_after = session_settings(raw) if not thread.is_alive() else settings_before
    raw.close()
    with lab.connect(autocommit=True) as c:
        added = c.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass "
                          "AND attname = 'lock_probe' AND NOT attisdropped").fetchone()[0]
        c.execute("ALTER TABLE users DROP COLUMN IF EXISTS lock_probe")
    if timeouts == 0 and still_waiting:
        raise CheckFailed(
            f"Your ALTER TABLE queued behind a reader's open transaction for {PATIENCE_S:.0f} s "
            "without giving up (it would wait as long as that transaction lasts), and every "
            "query on users queued behind it: the lock-queue outage. SET lock_timeout before "
            "the DDL, so it fails with 'canceling statement due to lock timeout', and retry.",
            wl.summary())
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, psycopg.Error) and exc.sqlstate == "55P03":
            raise CheckFailed(
                f"Your run_ddl gave up after {timeouts} lock timeout(s); it must retry (with a "
                "pause) until the lock is free, so the migration completes once the reader "
                "commits.", str(exc).splitlines()[0])
        raise CheckFailed(f"Your run_ddl raised {type(exc).__name__}: {exc}")
    if thread.is_alive():
        raise CheckFailed("Your run_ddl did not finish within 60 s of the reader committing.")
    if not added:
        raise CheckFailed("run_ddl returned, but the column it was given to add does not exist: "
                          "it must run the statement it is given (and succeed).")
    leaked = {name: value for name, value in settings_after.items()
              if settings_before.get(name) != value}
    if leaked:
        raise CheckFailed(
            "run_ddl left " + ", ".join(f"{k} = {v}" for k, v in sorted(leaked.items())) +
            " on the connection. SET lasts for the whole session, and Alembic runs every "
            "revision on one connection: the backfill after your expand step would inherit it "
            "(its VACUUM then times out behind an autovacuum). Save the old values with "
            "current_setting() and restore them with set_config() in a finally.",
            "before: " + ", ".join(f"{k} = {settings_before.get(k, 'default')}"
                                   for k in sorted(leaked)))
    waited = _budget(wl, "run_ddl")
    return (f"gave up {timeouts} times with 55P03 while the reader held its lock, then "
            f"succeeded; longest workload lock wait {waited * 1000:.0f} ms")


# --------------------------------------------------------------------------
# q2: expand and backfill


def q2(lab: Any, expand_steps: list[str], backfill: Callable[..., Any]) -> str:
    """Expand without a rewrite or a scan; backfill in committed, throttled, resumable batches."""
    require(expand_steps, backfill)
    prepare(lab)
    reset_migration(lab, COLUMN)
    with lab.connect(autocommit=True) as c:
        before = original_rows_checksum(c)
        node = relfilenode(c)
    kwargs = backfill_kwargs(before[0])
    wl = live_workload(lab)
    with wl:
        with wl.step("expand"):
            evidence = probe_steps(lab, expand_steps)
        _outages(evidence, "expand steps")
        with lab.connect(autocommit=True) as c:
            exists, notnull = _column_state(c)
            if not exists:
                raise CheckFailed(f"After your expand steps users has no column {COLUMN}.")
            if relfilenode(c) != node:
                raise CheckFailed("Your expand steps rewrote users (its relfilenode changed): "
                                  "a volatile default, or a type change, copies every row under "
                                  "ACCESS EXCLUSIVE.", evidence_table(evidence))
            stamped = c.execute(f"SELECT count(*) FROM users WHERE id < {WRITER_ID_BASE} "
                                f"AND {COLUMN} IS NOT NULL").fetchone()[0]
            if stamped or notnull:
                raise CheckFailed(
                    f"Your expand step gave the {before[0]:,} existing users a value"
                    + (" and made the column NOT NULL" if notnull else "")
                    + ": a default in ADD COLUMN is evaluated once, at ALTER time, so every "
                    "existing user 'signed up' at the migration's moment. Add the column "
                    "nullable, SET DEFAULT now() for new rows, backfill the old ones from "
                    f"{LEGACY_TABLE}, and add NOT NULL only after the backfill (q3).",
                    f"{stamped} existing rows have {COLUMN} set")
            c.execute("BEGIN")
            c.execute("INSERT INTO users (id, name) VALUES (%s, 'check')", [WRITER_ID_BASE - 1])
            default_ok = c.execute(f"SELECT {COLUMN} = now() FROM users WHERE id = %s",
                                   [WRITER_ID_BASE - 1]).fetchone()[0]
            c.execute("ROLLBACK")
            if not default_ok:
                raise CheckFailed(f"A user inserted without {COLUMN} does not get now(): new "
                                  "rows need ALTER COLUMN created_at SET DEFAULT now().")
        # first run, interrupted after three committed batches: a crash or a deploy
        first = RecordingConnection(lab.connect(autocommit=True), interrupt_after_commits=3)
        t0 = time.perf_counter()
        with wl.step("backfill (crashes)", first.raw):
            try:
                backfill(first, **kwargs)
            except Interrupted:
                pass
        first_seconds = time.perf_counter() - t0
        with lab.connect(autocommit=True) as c:
            done_xmin = dict(c.execute(f"SELECT id, xmin::text FROM users WHERE id < "
                                       f"{WRITER_ID_BASE} AND {COLUMN} IS NOT NULL").fetchall())
        second = RecordingConnection(lab.connect(autocommit=True))
        t0 = time.perf_counter()
        with wl.step("backfill (resumed)", second.raw):
            backfill(second, **kwargs)
        second_seconds = time.perf_counter() - t0
    first.raw.close()
    second.raw.close()
    batch = kwargs["batch_size"]
    sizes = first.txn_rows + second.txn_rows
    if not sizes or max(sizes) > 2 * batch + 10:
        raise CheckFailed(
            f"Your backfill changed {max(sizes, default=0):,} rows in one transaction (asked for "
            f"batches of {batch:,}): one giant UPDATE holds row locks on all of them until it "
            "commits, bloats the table and WAL at once, and loses everything on a crash. Commit "
            "after each batch.", f"rows per committed transaction: {sizes[:10]}")
    with lab.connect(autocommit=True) as c:
        v = validation(c, COLUMN)
        after = original_rows_checksum(c)
        redone = sum(1 for i, x in c.execute(
            "SELECT id, xmin::text FROM users WHERE id = ANY(%s)", [list(done_xmin)]).fetchall()
            if done_xmin[i] != x)
    if v["nulls"] or v["wrong_backfill"]:
        raise CheckFailed(
            f"After the interrupted backfill and its resumption, {v['nulls']:,} users still have "
            f"{COLUMN} NULL and {v['wrong_backfill']:,} differ from {LEGACY_TABLE}.signed_up_at: "
            "a second run must pick up what the first left undone.", str(v))
    if after != before:
        raise CheckFailed("The backfill changed the id or name of existing users (their checksum "
                          "differs); it must only set created_at.", f"{before} → {after}")
    if redone:
        raise CheckFailed(f"The resumed backfill rewrote {redone:,} rows the first run had "
                          "already done: resume from where it stopped (a progress row "
                          "committed with each batch, or WHERE created_at IS NULL).")
    commits = first.commits + second.commits
    floor = (commits - 2) * kwargs["pause"]
    if first_seconds + second_seconds < floor:
        raise CheckFailed(f"Your backfill committed {commits} batches in "
                          f"{first_seconds + second_seconds:.3f} s: it must sleep `pause` "
                          "seconds between batches, so vacuum and replicas keep up.")
    waited = _budget(wl, "the expand and backfill")
    return (f"expand without rewrite or scan; {commits} batches of ≤ {batch:,} rows, resumed "
            f"after a crash without redoing work; longest workload lock wait "
            f"{waited * 1000:.0f} ms")


# --------------------------------------------------------------------------
# q3: contract


def undo_contract(lab: Any) -> None:
    """Back to the state after the backfill, so q3 can run again (all instant)."""
    reset_index = """
        SELECT i.indexrelid::regclass::text FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = 'users'::regclass AND a.attname = %s"""
    with lab.connect(autocommit=True) as c:
        for (name,) in c.execute(reset_index, [COLUMN]).fetchall():
            c.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        for (name,) in c.execute("""SELECT quote_ident(conname) FROM pg_constraint
                WHERE conrelid = 'users'::regclass AND contype = 'c'
                AND pg_get_constraintdef(oid) LIKE %s""", [f"%{COLUMN}%"]).fetchall():
            c.execute(f"ALTER TABLE users DROP CONSTRAINT {name}")
        c.execute(f"ALTER TABLE users ALTER COLUMN {COLUMN} DROP NOT NULL")


def q3(lab: Any, contract_steps: list[str]) -> str:
    """NOT NULL and the index without a long lock: each step blocks writers only for an instant."""
    require(contract_steps)
    with lab.connect(autocommit=True) as c:
        exists, _ = _column_state(c)
        nulls = c.execute(f"SELECT count(*) FROM users WHERE {COLUMN} IS NULL").fetchone()[0] \
            if exists else None
    if not exists or nulls:
        raise CheckFailed("The contract needs the expanded and backfilled column: run the check "
                          "of exercise 2 first (it runs your expand and backfill).",
                          f"column exists: {exists}; NULLs: {nulls}")
    undo_contract(lab)
    wl = live_workload(lab)
    with wl:
        with wl.step("contract"):
            evidence = probe_steps(lab, contract_steps)
    _outages(evidence, "contract steps")
    with lab.connect(autocommit=True) as c:
        _, notnull = _column_state(c)
        v = validation(c, COLUMN)
        indexed = c.execute("""
            SELECT count(*) FROM pg_index i JOIN pg_attribute a
              ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = 'users'::regclass AND a.attname = %s AND i.indisvalid""",
                            [COLUMN]).fetchone()[0]
    if not notnull:
        raise CheckFailed(f"After your contract steps users.{COLUMN} is still nullable "
                          "(pg_attribute.attnotnull is false): finish with SET NOT NULL.")
    if v["unvalidated_constraints"]:
        raise CheckFailed("A constraint on users is still NOT VALID (pg_constraint.convalidated "
                          "is false): run ALTER TABLE users VALIDATE CONSTRAINT.",
                          str(v["unvalidated_constraints"]))
    if v["invalid_indexes"]:
        raise CheckFailed("An index on users is INVALID (pg_index.indisvalid is false), left by "
                          "a failed concurrent build: drop it concurrently and build it again.",
                          str(v["invalid_indexes"]))
    if not indexed:
        raise CheckFailed(f"No valid index on users starts with {COLUMN}: add "
                          "CREATE INDEX CONCURRENTLY users_created_at_idx ON users (created_at).")
    if not any(ev.proved_not_null for ev in evidence):
        raise CheckFailed("SET NOT NULL did not use a validated CHECK constraint to skip its "
                          "scan.", evidence_table(evidence))
    waited = _budget(wl, "the contract steps")
    return (f"NOT NULL proved from a validated CHECK, index built concurrently, nothing "
            f"scanned under a write-blocking lock; longest workload lock wait "
            f"{waited * 1000:.0f} ms")


# --------------------------------------------------------------------------
# q4: Alembic, upgrade → downgrade → upgrade


def q4(lab: Any, run_ddl: Callable[..., Any], expand_steps: list[str],
       backfill: Callable[..., Any], contract_steps: list[str],
       downgrade_steps: dict[str, list[str]]) -> str:
    """Alembic upgrade → downgrade → upgrade under the workload; catalogue and data as expected."""
    require(run_ddl, expand_steps, backfill, contract_steps, downgrade_steps)
    from ..tools.migrations_alembic import Plan, downgrade, upgrade

    if not isinstance(downgrade_steps, dict) or set(downgrade_steps) != {"expand", "contract"}:
        raise CheckFailed("downgrade_steps must be a dict with the keys 'contract' and 'expand' "
                          "(the statements that undo each revision).")
    prepare(lab)
    reset_migration(lab, COLUMN)
    with lab.connect(autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS alembic_version")
        base = catalog_snapshot(c)
        before = original_rows_checksum(c)
    plan = Plan(run_ddl, expand_steps, backfill, contract_steps, downgrade_steps,
                backfill_kwargs(before[0]))
    wl = live_workload(lab)
    with wl:
        with wl.step("alembic upgrade head"):
            upgrade(lab, plan)
        with lab.connect(autocommit=True) as c:
            head = catalog_snapshot(c)
            v_head = validation(c, COLUMN)
        with wl.step("alembic downgrade base"):
            downgrade(lab, plan)
        with lab.connect(autocommit=True) as c:
            down = catalog_snapshot(c)
        with wl.step("alembic upgrade head again"):
            upgrade(lab, plan)
        with lab.connect(autocommit=True) as c:
            again = catalog_snapshot(c)
            v_again = validation(c, COLUMN)
            after = original_rows_checksum(c)
    if down != base:
        raise CheckFailed("`alembic downgrade base` does not restore the schema users had "
                          "before the upgrade.", "; ".join(snapshot_diff(base, down)))
    if again != head:
        raise CheckFailed("Upgrading again after the downgrade gives a different schema than the "
                          "first upgrade.", "; ".join(snapshot_diff(head, again)))
    for v in (v_head, v_again):
        if v.get("nulls") or v.get("wrong_backfill") or v["unvalidated_constraints"] \
                or v["invalid_indexes"]:
            raise CheckFailed("After `alembic upgrade head` the data does not validate.", str(v))
        if v.get("nulls") is None:
            raise CheckFailed(f"After `alembic upgrade head` users has no column {COLUMN}.")
    if after != before:
        raise CheckFailed("The migration changed the id or name of existing users.",
                          f"{before} → {after}")
    if not any(r[2] for r in head["columns"] if r[0] == COLUMN):
        raise CheckFailed(f"After `alembic upgrade head` users.{COLUMN} is nullable.")
    waited = _budget(wl, "the Alembic upgrade, downgrade and upgrade")
    return (f"upgrade → downgrade → upgrade: catalogue restored and identical, data valid; "
            f"longest workload lock wait {waited * 1000:.0f} ms")


# --------------------------------------------------------------------------
# q5: squawk


def session_settings(conn: Any) -> dict[str, str]:
    """Every setting's effective value in this session, by name (to spot a leaked SET)."""
    return dict(conn.execute("SELECT name, setting FROM pg_settings").fetchall())


def preamble_of(lab: Any, run_ddl: Callable[..., Any]) -> list[str]:
    """The SETs run_ddl sends before the one statement it was given, recorded live."""
    marker = "SELECT 'run_ddl marker'"
    with lab.connect(autocommit=True) as raw:
        conn = RecordingConnection(raw)
        run_ddl(conn, marker)
    texts = [s.sql for s in conn.statements]
    before = texts[:texts.index(marker)] if marker in texts else []
    return [t for t in before if re.match(r"\s*SET\b", t, re.IGNORECASE)]


def lint(lab: Any, run_ddl: Callable[..., Any], expand_steps: list[str],
         contract_steps: list[str], downgrade_steps: dict[str, list[str]]) -> tuple[str, list]:
    """The migration as one SQL file (run_ddl's settings first) and squawk's findings on it."""
    statements = list(expand_steps) + list(contract_steps)
    if isinstance(downgrade_steps, dict):
        statements += list(downgrade_steps.get("contract", [])) + list(
            downgrade_steps.get("expand", []))
    script = migration_script(statements, preamble_of(lab, run_ddl))
    return script, squawk(script)


def q5(lab: Any, run_ddl: Callable[..., Any], expand_steps: list[str],
       contract_steps: list[str], downgrade_steps: dict[str, list[str]],
       squawk_explained: dict[str, str]) -> str:
    """squawk finds nothing about locks, and every other finding is explained."""
    require(run_ddl, expand_steps, contract_steps, downgrade_steps, squawk_explained)
    script, findings = lint(lab, run_ddl, expand_steps, contract_steps, downgrade_steps)
    locking = [f for f in findings if f.rule in LOCK_RULES]
    if locking:
        f = locking[0]
        raise CheckFailed(f"squawk: {f.message} [{f.rule}] at `{f.statement}`. That finding is "
                          "about locks or rewrites: fix the migration, do not explain it away.",
                          "\n".join(str(x) for x in locking))
    explained = {k: v for k, v in squawk_explained.items() if isinstance(v, str) and
                 len(v.split()) >= 5}
    missing = sorted({f.rule for f in findings} - set(explained))
    if missing:
        raise CheckFailed(f"squawk reports {', '.join(missing)}, which squawk_explained does not "
                          "explain (one sentence each, at least five words, saying why it is "
                          "acceptable here).", "\n".join(str(f) for f in findings))
    return (f"squawk: no lock or rewrite findings; {len(findings)} other findings, each explained")
