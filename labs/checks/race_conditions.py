"""Checks for 02_race_conditions: the learner's ``transfer(conn, src, dst, amount, request_id)``.

The contract (stated in the notebook): move ``amount`` from account ``src`` to
``dst`` in one transaction, record it once in ``transfers`` under the caller's
``request_id`` (the client's idempotency key) and return the new ``transfers.id``;
a request whose ``request_id`` is already in the ledger is answered with that
transfer's id and changes nothing; return ``None`` and change nothing when ``src``
cannot cover it. ``conn`` is a psycopg connection with autocommit off, at READ
COMMITTED. q1 and q2 give every call a new request id.

Races are judged deterministically: instead of hoping that a stress run hits
the bad interleaving, each check *forces* every interleaving of two transfers
that matters (``labs.tools.stress.interleave``: hold the first after its k-th
statement, run the second until it finishes or the lock manager says it waits,
then resume the first), for every k. The stress run only confirms the
invariants at volume. q3 sends a request again with its id, as a client that timed out
does, and kills the connection at the first COMMIT, either after the server committed
(the reply is lost) or before the COMMIT arrived (nothing committed): the same error,
and a dead connection, in both cases (:class:`_DiesAtCommit`); the client then sends the
request again on a new connection. An earlier transfer with the same src, dst and amount
is in the ledger: only the request id tells the two transfers apart.

Beyond the invariants (no money created or destroyed, no overdraft, one ledger
row per success), every check follows the authoring method:

* the accounts, balances and amounts come from this run's seed
  (``labs.course.adversarial``): several accounts, never the same favourites, and
  sums with cents that no round-number test would hit;
* the success path is asked at its boundary: a transfer of *exactly* the
  balance must succeed (one cent more must be refused), and two concurrent
  debits that exactly empty the account must both succeed;
* after every call, single, interleaved or under load, the connection the
  transfer was given must be idle (no open or aborted transaction), hold no
  lock, and keep the caller's settings (which are not the defaults, with a
  non-UTC ``TimeZone``) and its client-side state (autocommit, isolation level);
* while a transfer is held after each of its statements, a session that writes
  only other accounts must not wait for it (no table lock);
* accounts the check did not pick, and the ledger's earlier rows, must not change;
* a row held past a short caller lock_timeout must make the transfer raise after about one
  wait (55P03 is the caller's bound, not a transient error to retry), and a transfer that
  succeeded must have run with a durable synchronous_commit (read inside its transaction);
* q2 adds two opposite transfers queued behind another writer of one account (the first
  waits for that row, the second starts while it waits, then the writer commits): a lock
  order that follows the arguments (src first, or dst first) deadlocks there, also inside
  one statement (data-modifying CTEs), where no forced interleaving can pause; and a short
  load of opposite transfers between two accounts;
* a refused transfer is asked in both id directions (dst below src too: a transfer that
  writes in id order has credited dst before it finds src short, and must roll that back);
* while a transfer is held after each of its statements, another session reads the committed
  balances and ledger in one snapshot: each account changed by exactly its committed ledger
  rows (no debit committed apart from its credit and ledger row); the other session's
  transfer between other accounts must finish (one queued on a lock outside PostgreSQL, a
  Python lock, is named as such, not timed out);
* a single call's ledger row carries the instant of the call (created_at between its start
  and end on the server's clock: a naive datetime passed on a non-UTC session is hours off);
* q3 also sends a request again while the original is held after each of its statements
  (both answer with one id, applied once), and reuses a request id with other fields
  (nothing changes); a request that moved the whole balance is sent again and must answer
  with its id (a funds check run before the request-id lookup answers None).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Callable, Iterator

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

from ..course import adversarial as adv
from ..course.checking import CheckFailed, require
from ..course.left_behind import Caller, Watched, caller_settings
from ..data.dataset import query_checksum
from ..tools.stress import (HookedConnection, LostAck, is_commit, count_statements,
                            in_transaction, interleave, run_stress)

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS transfers (
    id         bigint        GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id uuid          NOT NULL UNIQUE,
    src        bigint        NOT NULL REFERENCES accounts (id),
    dst        bigint        NOT NULL REFERENCES accounts (id),
    amount     numeric(14,2) NOT NULL CHECK (amount > 0),
    created_at timestamptz   NOT NULL DEFAULT now()
)"""

# Deadlocks are broken after deadlock_timeout; the checks shorten it so that a
# correct transfer that retries after 40P01 is judged in milliseconds, not seconds.
FAST_DEADLOCKS = {"deadlock_timeout": "100ms"}
CENT = Decimal("0.01")
# Settings that belong to the transaction, not the session: pg_settings shows them
# as the session's defaults again once the transaction ended.
def _session_settings() -> dict[str, str]:
    """The settings of the sessions the checks hand out: a caller's (non-default
    timeouts, a non-UTC TimeZone), with deadlocks broken fast. Drawn in the check's
    thread (the seed lives there)."""
    return dict(caller_settings(), **FAST_DEADLOCKS)


def _call(args: tuple) -> str:
    """``transfer(3, 7, 12.34)``: a call as the learner would write it."""
    return "transfer(" + ", ".join(str(a) for a in args) + ")"


def _money(rng: Any, low: int, high: int) -> Decimal:
    """An amount in [low, high] with cents that are not round (never .00, .50 or x0)."""
    while True:
        cents = rng.randint(low * 100, high * 100)
        if cents % 10:
            return Decimal(cents) / 100


def _accounts(lab: Any, n: int) -> list[int]:
    """n accounts of the most common currency, picked by this run's seed, sorted by id."""
    rows = lab.query("""
        SELECT id FROM accounts
        WHERE currency = (SELECT currency FROM accounts GROUP BY currency
                          ORDER BY count(*) DESC, currency LIMIT 1)
        ORDER BY id""")
    ids = [int(i) for i in rows["id"]]
    if len(ids) < n:
        raise CheckFailed(f"The accounts table holds only {len(ids)} accounts of its main "
                          f"currency; the check needs {n}. Run the notebook's setup again "
                          "(labs.setup resets the database).")
    return sorted(adv.spread(ids, n))


def _prepare(lab: Any, balances: dict[int, Decimal | int]) -> int:
    """Set the test accounts' balances; return the ledger's high-water mark."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
        for account, balance in balances.items():
            conn.execute("UPDATE accounts SET balance = %s WHERE id = %s", [balance, account])
        return conn.execute("SELECT coalesce(max(id), 0) FROM transfers").fetchone()[0]


def _state(lab: Any, accounts: list[int], since: int) -> tuple[dict[int, Decimal], list[tuple]]:
    with psycopg.connect(lab.url, autocommit=True) as conn:
        balances = dict(conn.execute("SELECT id, balance FROM accounts WHERE id = ANY(%s)",
                                     [accounts]).fetchall())
        ledger = conn.execute("SELECT id, src, dst, amount FROM transfers WHERE id > %s "
                              "ORDER BY id", [since]).fetchall()
    return balances, ledger


@contextmanager
def _rest_untouched(lab: Any, accounts: list[int]) -> Iterator[None]:
    """Fail if the transfer changed an account the check did not pick, or a ledger row
    that existed before the check (``left_behind.untouched`` watches whole tables; here
    the picked accounts and the new ledger rows are meant to change)."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
        since = conn.execute("SELECT coalesce(max(id), 0) FROM transfers").fetchone()[0]
    queries = {
        "the other accounts": ("SELECT * FROM accounts WHERE id <> ALL(%s)", [accounts]),
        "the ledger's earlier rows": ("SELECT * FROM transfers WHERE id <= %s", [since]),
    }

    def snapshot() -> dict[str, tuple[int, str]]:
        with psycopg.connect(lab.url, autocommit=True) as conn:
            return {what: query_checksum(conn, q, p) for what, (q, p) in queries.items()}

    before = snapshot()
    yield
    after = snapshot()
    changed = [what for what in queries if before[what] != after[what]]
    if changed:
        raise CheckFailed(
            f"Your transfer changed {' and '.join(changed)}, which no transfer between the "
            "check's accounts may touch. Update only the rows of src and dst (by id), and only "
            "insert into transfers.",
            "; ".join(f"{w}: {before[w][0]} rows → {after[w][0]}" for w in changed))


def _explain_error(exc: BaseException, when: str) -> CheckFailed:
    sqlstate = getattr(exc, "sqlstate", None)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if sqlstate == "40001":
        return CheckFailed(
            f"Your transfer raised `{text}` (SQLSTATE 40001) {when}. A serialization failure "
            "means PostgreSQL rolled the transaction back to keep it correct; the transfer must "
            "retry the whole transaction (bounded, with backoff), not give up.",
            f"{type(exc).__name__}: {text}")
    if sqlstate == "40P01":
        return CheckFailed(
            f"Your transfer raised `deadlock detected` (SQLSTATE 40P01) {when}. Two transfers "
            "in opposite directions locked the same two rows in opposite orders. Lock both "
            "accounts in one consistent order (e.g. SELECT … ORDER BY id FOR UPDATE), and retry "
            "on 40P01 anyway.", f"{type(exc).__name__}: {text}")
    if sqlstate == "23505":
        return CheckFailed(
            f"Your transfer raised `{text}` (SQLSTATE 23505) {when}. A request whose "
            "request_id is already in `transfers` is one the caller sent again (it timed out, "
            "or lost the COMMIT's reply): look the request id up first, inside the "
            "transaction, and return that transfer's id without changing anything.",
            f"{type(exc).__name__}: {text}")
    return CheckFailed(f"Your transfer raised {type(exc).__name__}: {text} {when}.",
                       f"SQLSTATE {sqlstate}" if sqlstate else "")


def _verify(lab: Any, accounts: list[int], since: int, before: dict[int, Decimal],
            calls: list[tuple[tuple, Any]], when: str) -> None:
    """Every invariant of a set of completed calls ((src, dst, amount), returned value)."""
    after, ledger = _state(lab, accounts, since)
    total_before, total_after = sum(before.values()), sum(after.values())
    if calls and all(r is None for _, r in calls) and after != before:
        changed = {x: f"{before[x]} → {after[x]}" for x in accounts if after[x] != before[x]}
        raise CheckFailed(
            f"Your transfer returned None (insufficient funds) {when}, yet it changed balances "
            f"({changed}): part of it was committed. A transfer that writes in id order credits "
            "dst first when dst has the lower id, then finds src short; ending that transaction "
            "with COMMIT keeps the credit, money from nothing. On the None path, ROLLBACK.",
            f"new ledger rows {ledger}")
    if total_after != total_before:
        kind = "created" if total_after > total_before else "destroyed"
        raise CheckFailed(
            f"Money was {kind} {when}: the test accounts held {total_before} before and "
            f"{total_after} after. That is a lost update: a transfer wrote a balance computed "
            "from a value another transfer had already changed. Let the database do the "
            "arithmetic (balance = balance - %s) on a row you have locked.",
            f"balances before {before}, after {after}")
    negative = {a: b for a, b in after.items() if b < 0}
    if negative:
        raise CheckFailed(f"An account went negative {when} ({negative}): the funds check must "
                          "see the balance as it is after any concurrent debit (a locked row, "
                          "or a conditional UPDATE … WHERE balance >= amount).")
    returned = [r for _, r in calls if r is not None]
    by_id = {row[0]: row for row in ledger}
    if len(ledger) != len(returned):
        raise CheckFailed(
            f"{len(returned)} transfers reported success {when}, but `transfers` gained "
            f"{len(ledger)} rows. Every committed transfer must be recorded exactly once, in the "
            "same transaction as the balance changes.",
            f"returned ids {returned[:10]}, new ledger ids {list(by_id)[:10]}")
    for (src, dst, amount), r in calls:
        if r is None:
            continue
        row = by_id.get(r)
        if row is None or (row[1], row[2], Decimal(row[3])) != (src, dst, Decimal(amount)):
            raise CheckFailed(f"{_call((src, dst, amount))} returned {r!r} {when}, which is "
                              "not the id of its own row in `transfers`.", f"ledger row {row}")
    for account in accounts:
        moved = sum(Decimal(a) for _, s, d, a in ledger if d == account) - \
            sum(Decimal(a) for _, s, d, a in ledger if s == account)
        if after[account] - before[account] != moved:
            raise CheckFailed(
                f"Account {account} changed by {after[account] - before[account]} {when}, but "
                f"its rows in `transfers` add up to {moved}: a transfer was applied without "
                "being recorded, or recorded without being applied.")


def _scenarios(transfer: Callable, lab: Any, pairs: list[tuple[tuple, tuple]],
               balances: dict[int, Decimal], expect: int, why: str) -> int:
    """Force every interleaving of each pair of transfers; verify the invariants, the
    number of successes (``expect``) and what every call left on its connection."""
    accounts = list(balances)
    settings = _session_settings()
    forced = 0
    for first_args, second_args in pairs:
        _prepare(lab, balances)
        steps = count_statements(lab, lambda c: transfer(c, *first_args))
        for k in range(1, max(steps, 1) + 1):
            since = _prepare(lab, balances)
            before, _ = _state(lab, accounts, since)
            with Watched(lab, transfer, _call) as watched:
                run = interleave(lab, lambda c: watched(c, *first_args),
                                 lambda c: watched(c, *second_args), pause_after=k,
                                 settings=settings)
                forced += 1
                when = (f"when {_call(second_args)} ran while {_call(first_args)} was held "
                        f"after its statement {k}")
                for exc in run.errors:
                    raise _explain_error(exc, when)
                watched.verify(when)
            results = [(first_args, run.first_result), (second_args, run.second_result)]
            _verify(lab, accounts, since, before, results, when)
            got = sum(r is not None for _, r in results)
            if got != expect:
                raise CheckFailed(
                    f"{got} of the two transfers succeeded {when}; {expect} should have "
                    f"({why}). Return the new transfers.id on success and None only for "
                    "insufficient funds (balance < amount: an account may be emptied).",
                    f"balances before {dict(before)}")
    return forced


def _bystanders(transfer: Callable, lab: Any, args: tuple, bystander: int, beside: tuple,
                balances: dict[int, Decimal]) -> int:
    """The transfer held after each of its statements while another session writes rows it
    does not touch: an UPDATE of the account ``bystander``, then a transfer ``beside`` between
    two other accounts. Neither may wait for it (a LOCK TABLE, in any mode that blocks writers,
    makes every payment of the bank queue behind each one)."""
    accounts = list(balances)
    settings = _session_settings()
    _prepare(lab, balances)
    steps = count_statements(lab, lambda c: transfer(c, *args))
    for k in range(1, max(steps, 1) + 1):
        since = _prepare(lab, balances)
        before, _ = _state(lab, accounts, since)

        seen: list[list[tuple]] = []

        def other(conn: Any) -> Any:
            # what every other session sees meanwhile: the committed balances and ledger, in
            # one statement (one snapshot)
            seen.append(conn.execute(LEDGER_VS_BALANCES, [since, accounts]).fetchall())
            conn.execute("UPDATE accounts SET balance = balance WHERE id = %s", [bystander])
            conn.commit()
            return _within(BESIDE_SECONDS, lambda: watched(conn, *beside))

        with Watched(lab, transfer, _call) as watched:
            run = interleave(lab, lambda c: watched(c, *args), other, pause_after=k,
                             settings=settings)
            when = (f"while {_call(args)} was held after its statement {k} and another session "
                    f"wrote other accounts")
            if isinstance(run.second_error, _Stuck):
                raise CheckFailed(
                    f"While {_call(args)} was held after its statement {k}, {_call(beside)}, "
                    f"a transfer between two other accounts, did not finish in "
                    f"{BESIDE_SECONDS:.0f} s, and PostgreSQL's lock manager shows it waiting "
                    "for no lock: it waited outside the database, for a lock of your program's "
                    "(a threading.Lock around transfer, a global mutex). Every payment of the "
                    "process then queues behind each transfer, whatever its accounts, and the "
                    "other processes of the application are not held back at all. Lock only "
                    "the two accounts' rows, in PostgreSQL (SELECT … ORDER BY id FOR UPDATE, "
                    "or the conditional UPDATE itself).")
            for exc in run.errors:
                raise _explain_error(exc, when)
            _atomic(seen, before, k, args)
            if run.second_blocked:
                raise CheckFailed(
                    f"While {_call(args)} was held after its statement {k}, another session "
                    f"that wrote only other accounts (an UPDATE of account {bystander}, then "
                    f"{_call(beside)}) had to wait for it, although they share no row: your "
                    "transfer locks more than the rows of src and dst (LOCK TABLE, or a lock on "
                    "the whole ledger), so every payment and every other writer of accounts "
                    "queues behind each transfer. Lock only the two accounts' rows (SELECT … "
                    "ORDER BY id FOR UPDATE, or the conditional UPDATE itself).",
                    "pg_blocking_pids showed the other session waiting")
            watched.verify(when)
        results = [(args, run.first_result), (beside, run.second_result)]
        _verify(lab, accounts, since, before, results, when)
        if any(r is None for _, r in results):
            raise CheckFailed(f"A covered transfer returned None {when}; both were covered.",
                              f"balances before {dict(before)}")
    return max(steps, 1)


# One statement, one snapshot: per test account, its committed balance and the net of the
# ledger rows written since the scenario began. A transfer that commits part of its work in a
# transaction of its own (the debit, then the credit and the ledger row) shows here.
LEDGER_VS_BALANCES = """
    SELECT a.id, a.balance,
           coalesce(sum(CASE WHEN t.dst = a.id THEN t.amount ELSE 0 END)
                    - sum(CASE WHEN t.src = a.id THEN t.amount ELSE 0 END), 0)
    FROM accounts a
    LEFT JOIN transfers t ON t.id > %s AND a.id IN (t.src, t.dst)
    WHERE a.id = ANY(%s)
    GROUP BY a.id, a.balance ORDER BY a.id"""

# How long a transfer between two other accounts may take while the learner's is held: it
# needs milliseconds; one that waits outside PostgreSQL (a Python lock) never finishes.
BESIDE_SECONDS = 5.0


class _Stuck(Exception):
    """The other session's transfer did not finish, and waited for no lock of PostgreSQL's."""


def _within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()`` in a thread of its own; _Stuck when it has not returned after ``seconds``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _Stuck()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _atomic(seen: list[list[tuple]], before: dict[int, Decimal], k: int, args: tuple) -> None:
    """What another session saw while the transfer was held after its statement ``k``: every
    account changed by exactly what its committed ledger rows say (nothing half done)."""
    for rows in seen:
        for account, balance, moved in rows:
            if account in before and balance - before[account] != moved:
                raise CheckFailed(
                    f"While {_call(args)} was held after its statement {k}, another session saw "
                    f"account {account} changed by {balance - before[account]} but its committed "
                    f"rows in `transfers` add up to {moved}: part of the transfer was committed "
                    "without the rest (a COMMIT between the debit, the credit and the ledger "
                    "row). Between the two commits the money is nowhere: a crash, a killed "
                    "worker or a lost connection there loses it for good, and every report or "
                    "reconciliation run meanwhile is wrong. Debit, credit and ledger row belong "
                    "to ONE transaction: commit once, at the end.",
                    f"seen: {rows}; balances before {dict(before)}")


def _single(lab: Any, transfer: Callable, caller: Caller, args: tuple, accounts: list[int],
            what: str) -> Any:
    """One call on the caller's connection: the invariants and what it left behind."""
    since = _prepare(lab, {})
    before, _ = _state(lab, accounts, since)
    probe = _TimeoutProbe(caller.conn)
    started = _server_now(lab)
    try:
        returned = transfer(probe, *args)
    except psycopg.Error as exc:
        caller.clean()
        raise _explain_error(exc, what) from None
    ended = _server_now(lab)
    caller.verify(f"{_call(args)} {what}")
    if returned is not None:
        _durable(probe, f"In {_call(args)} {what}")
    _verify(lab, accounts, since, before, [(args, returned)], what)
    _stamped(lab, since, started, ended, caller.zone, f"{_call(args)} {what}")
    return returned


def _server_now(lab: Any) -> Any:
    with psycopg.connect(lab.url, autocommit=True) as conn:
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]


# slack around the call for created_at (the server's clock on both sides: no drift)
STAMP_SLACK = dt.timedelta(seconds=2)


def _stamped(lab: Any, since: int, started: Any, ended: Any, zone: str, what: str) -> None:
    """The ledger rows a call wrote carry the instant of the transfer: created_at between the
    call's start and end, read on the server's clock. A naive datetime (utcnow(), now()) the
    transfer passes itself is read in the caller's TimeZone, which is not UTC: hours off."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        rows = conn.execute("SELECT id, created_at FROM transfers WHERE id > %s ORDER BY id",
                            [since]).fetchall()
    for row_id, created in rows:
        if not started - STAMP_SLACK <= created <= ended + STAMP_SLACK:
            off = created - started if created < started else created - ended
            raise CheckFailed(
                f"After {what}, its row in `transfers` (id {row_id}) has created_at "
                f"{created.isoformat()}, {'before' if created < started else 'after'} the call, "
                f"by {abs(off)}, although it ran from {started.isoformat()} to "
                f"{ended.isoformat()}. The caller's session has TimeZone {zone!r}: a naive "
                "datetime (datetime.utcnow(), datetime.now()) sent as a parameter is read as "
                "wall-clock time in that zone, another instant. Finance totals transfers per "
                "day by created_at: leave it to the column's DEFAULT now(), or pass an aware "
                "datetime (datetime.now(timezone.utc)).")


def _boundary(lab: Any, transfer: Callable, a: int, b: int, c: int) -> None:
    """The success path at its edge, one call at a time on a caller's connection: one
    cent more than the balance is refused, exactly the balance succeeds and empties the
    account, an ordinary amount succeeds."""
    rng = adv.rng()
    balance = _money(rng, 40, 900)
    other = _money(rng, 40, 900)
    _prepare(lab, {a: balance, b: other, c: other})
    accounts = [a, b, c]
    with Caller(lab) as caller:
        # one cent short, both ways round: one of the two refusals has dst < src, so a
        # transfer that writes in id order has credited dst before it finds src short
        for src, dst, held in ((a, b, balance), (b, a, other)):
            over = held + CENT
            got = _single(lab, transfer, caller, (src, dst, over), accounts,
                          f"(one cent more than the balance {held})")
            if got is not None:
                raise CheckFailed(
                    f"transfer({src}, {dst}, {over}) out of an account holding {held} returned "
                    f"{got!r}; with insufficient funds it must change nothing and return None.")
        got = _single(lab, transfer, caller, (a, b, balance), accounts,
                      f"(exactly the balance, {balance})")
        if got is None:
            raise CheckFailed(
                f"A transfer of exactly the balance was refused: transfer({a}, {b}, {balance}) "
                f"out of an account holding {balance} returned None. Insufficient funds means "
                "balance < amount; an account may be emptied, not overdrawn (the condition is "
                "balance >= amount).")
        left = _state(lab, [a], 0)[0][a]
        if left != 0:
            raise CheckFailed(f"After a transfer of exactly the balance ({balance}), account {a} "
                              f"holds {left}, not 0.00.")
        amount = _money(rng, 1, int(other) - 1)
        got = _single(lab, transfer, caller, (b, c, amount), accounts,
                      f"(an ordinary transfer of {amount} out of {other})")
        if got is None:
            raise CheckFailed(f"transfer({b}, {c}, {amount}) out of an account holding {other} "
                              "returned None; it is covered and must succeed.")

# How long another transaction holds the accounts' rows while a covered transfer waits for
# them, counted from the moment the transfer's backend started waiting (pg_locks.waitstart):
# past the transfer's own lock_timeout/statement_timeout when it lowered them (read from its
# own transaction, see _TimeoutProbe), else this margin; a transfer that never waits in the
# lock manager (it polls with NOWAIT, sleeps, retries) is given POLL_SECONDS to give up.
HOLD_MARGIN = 0.4
POLL_SECONDS = 2.5
HOLD_CAP = 30.0


def _ms(setting: str) -> float:
    """A timeout setting as current_setting() shows it ('1s', '500ms', '5min', '0') in ms."""
    units = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
    text = setting.strip()
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[:-len(unit)].strip().replace(".", "", 1).isdigit():
            return float(text[:-len(unit)]) * units[unit]
    return float(text) if text.replace(".", "", 1).isdigit() else 0.0


class _TimeoutProbe(HookedConnection):
    """The caller's connection, asked after each of the transfer's statements (inside its
    own transaction, where SET LOCAL shows) how long a lock wait may last: the shortest
    lock_timeout/statement_timeout (0 = none) the transfer ran under, in ms."""

    def __init__(self, conn: psycopg.Connection) -> None:
        super().__init__(conn, after_statement=self._probe)
        self._shortest = 0.0
        self.unsafe_commit: str | None = None  # a synchronous_commit that loses commits

    @property
    def shortest_ms(self) -> float:
        return self._shortest

    def _probe(self, n: int, sql: Any) -> None:
        raw = self._conn
        status = raw.info.transaction_status
        if not (status == pq.TransactionStatus.INTRANS
                or (status == pq.TransactionStatus.IDLE and raw.autocommit)):
            return  # never open a transaction the transfer did not open
        with raw.cursor(row_factory=tuple_row) as cur:
            row = cur.execute("SELECT current_setting('lock_timeout'), "
                              "current_setting('statement_timeout'), "
                              "current_setting('synchronous_commit')").fetchone()
        if row[2] in UNSAFE_COMMIT and self.unsafe_commit is None:
            self.unsafe_commit = row[2]
        for value in map(_ms, row[:2]):
            if value and (not self._shortest or value < self._shortest):
                self._shortest = value


# synchronous_commit values under which COMMIT may return before the commit is safe: 'off'
# (the WAL is not flushed: a server crash loses the last commits) and 'local' (a synchronous
# standby is not waited for: a failover loses them).
UNSAFE_COMMIT = ("off", "local")
UNSAFE_WHY = {"off": "the WAL is not flushed to disk",
              "local": "a synchronous standby is not waited for"}


def _durable(probe: _TimeoutProbe, what: str) -> None:
    """The transfer ran its transaction with the caller's (durable) synchronous_commit."""
    if probe.unsafe_commit:
        raise CheckFailed(
            f"{what}, your transfer's transaction ran with synchronous_commit = "
            f"{probe.unsafe_commit}: its COMMIT returns before the commit is durable "
            f"({UNSAFE_WHY[probe.unsafe_commit]}), "
            "so after a server crash (or a failover) a transfer whose id you returned is gone, "
            "balances and ledger row both, and no resend will ever come: the customer was told "
            "it succeeded. A payment's COMMIT must be durable: leave synchronous_commit as the "
            "caller has it (no SET LOCAL synchronous_commit).")


def _waiting_for(monitor: psycopg.Connection, pid: int, holder: int) -> float | None:
    """Seconds the backend ``pid`` has waited for a lock the ``holder`` holds (None: not)."""
    row = monitor.execute(
        "SELECT %s = ANY(pg_blocking_pids(%s)), "
        "(SELECT extract(epoch FROM clock_timestamp() - min(waitstart)) FROM pg_locks "
        " WHERE pid = %s AND NOT granted)", [holder, pid, pid]).fetchone()
    return float(row[1] or 0) if row[0] else None


def _behind_writer(lab: Any, transfer: Callable, a: int, b: int, rng: Any) -> None:
    """Another writer of accounts (a deposit: not a transfer, it takes no lock of the
    learner's choosing) holds uncommitted updates of both rows while a covered transfer
    starts, then commits. The transfer must wait for the rows (not give up with None) and
    then apply on top of the deposit (not write back a balance read before it committed).

    The rows are held past any lock_timeout or statement_timeout the transfer set for
    itself, counted from when it started waiting, so a transfer that turns a busy row into
    None is seen doing it; a transfer that just waits is released after HOLD_MARGIN."""
    amount = _money(rng, 5, 60)
    deposits = {a: _money(rng, 5, 60), b: _money(rng, 5, 60)}
    since = _prepare(lab, {a: amount + _money(rng, 5, 200), b: _money(rng, 5, 200)})
    before, _ = _state(lab, [a, b], since)
    args = (a, b, amount)
    box: dict[str, Any] = {}
    with psycopg.connect(lab.url) as holder, Caller(lab, settings=_session_settings()) as caller, \
            psycopg.connect(lab.url, autocommit=True) as monitor:
        for account, deposit in deposits.items():
            holder.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s",
                           [deposit, account])
        probe = _TimeoutProbe(caller.conn)
        # the caller's own bound on a wait; only a shorter one is the transfer's doing
        callers = min(_ms(caller.settings_applied[name]) or float("inf")
                      for name in ("lock_timeout", "statement_timeout"))

        def run() -> None:
            try:
                box["result"] = transfer(probe, *args)
            except BaseException as exc:  # reported below, in the check's thread
                box["error"] = exc

        worker = threading.Thread(target=run, daemon=True)
        started = time.monotonic()
        worker.start()
        held = 0.0
        while worker.is_alive():
            waited = _waiting_for(monitor, caller.pid, holder.info.backend_pid)
            elapsed = time.monotonic() - started
            if waited is None:  # not (yet) waiting for the rows: it may be polling
                if elapsed > POLL_SECONDS:
                    break
            elif waited > (min(HOLD_CAP, probe.shortest_ms / 1000 + HOLD_MARGIN)
                           if 0 < probe.shortest_ms < callers else HOLD_MARGIN):
                break
            held = elapsed
            worker.join(0.02)
        early = not worker.is_alive()
        holder.commit()
        when = (f"while another transaction (a plain UPDATE accounts SET balance = balance + … "
                f"of accounts {a} and {b}, no transfer) held both rows for {held:.1f} s, then "
                "committed")
        worker.join(60)
        if worker.is_alive():
            raise CheckFailed(f"{_call(args)} was still running 60 s after the other "
                              f"transaction committed ({when}).")
        if "error" in box:
            caller.clean()
            raise _explain_error(box["error"], when)
        returned = box.get("result")
        if returned is None:
            raise CheckFailed(
                f"{_call(args)} returned None {when}, although account {a} covered {amount} "
                f"{'before' if early else 'all along'}: a covered payment was declined "
                f"{'because its row was busy' if early else ''}. None means insufficient "
                "funds only: a transfer waits for the rows it needs (the caller's lock_timeout "
                "decides how long, not yours: no NOWAIT, SKIP LOCKED or short SET LOCAL "
                "lock_timeout that turns a busy account into a refusal).",
                f"returned {'before' if early else 'after'} the other transaction committed")
        caller.verify(f"{_call(args)} {when}")
        _durable(probe, f"In {_call(args)} {when}")
    after, ledger = _state(lab, [a, b], since)
    expected = {a: before[a] + deposits[a] - amount, b: before[b] + deposits[b] + amount}
    if after != expected:
        lost = [x for x in (a, b) if after[x] != expected[x]]
        raise CheckFailed(
            f"A deposit was lost {when}: account {lost[0]} holds {after[lost[0]]}, but the "
            f"deposit of {deposits[lost[0]]} and the transfer of {amount} should have left "
            f"{expected[lost[0]]}. Your transfer wrote back a balance it had read before the "
            "other transaction committed (a lost update). Locks that only transfers take "
            "(pg_advisory_lock, a Python lock) do not stop other writers of accounts: lock "
            "the rows themselves (SELECT … FOR UPDATE before reading) or let the UPDATE do "
            "the arithmetic (balance = balance - %s).",
            f"balances before {before}, deposits {deposits}, after {after}")
    if len(ledger) != 1 or ledger[0][0] != returned:
        raise CheckFailed(f"{_call(args)} returned {returned!r} {when}, which is not the id of "
                          "its own, single new row in `transfers`.", f"new ledger rows {ledger}")


# The caller's own bound on a wait for a busy row, in the scenario where the row stays busy
# longer: the transfer must give up (raise 55P03) after one wait of that length, not retry it.
CALLER_LOCK_TIMEOUT_MS = 300
BUSY_SECONDS = 3.0


def _busy_past_lock_timeout(lab: Any, transfer: Callable, a: int, b: int, rng: Any) -> None:
    """Another transaction holds src's row longer than the caller's lock_timeout (a short one,
    CALLER_LOCK_TIMEOUT_MS): the transfer must raise (lock_timeout, 55P03) after about one
    such wait. Retrying 55P03 (or 57014) multiplies the bound the caller set on how long a
    payment may hang; returning None calls a busy row 'insufficient funds'."""
    amount = _money(rng, 5, 60)
    since = _prepare(lab, {a: amount + _money(rng, 5, 200), b: _money(rng, 5, 200)})
    before, _ = _state(lab, [a, b], since)
    args = (a, b, amount)
    limit = CALLER_LOCK_TIMEOUT_MS / 1000
    settings = dict(_session_settings(), lock_timeout=f"{CALLER_LOCK_TIMEOUT_MS}ms")
    box: dict[str, Any] = {}
    with psycopg.connect(lab.url) as holder, Caller(lab, settings=settings) as caller:
        holder.execute("UPDATE accounts SET balance = balance WHERE id = %s", [a])

        def run() -> None:
            started = time.monotonic()
            try:
                box["result"] = transfer(caller.conn, *args)
            except BaseException as exc:  # judged below, in the check's thread
                box["error"] = exc
            box["took"] = time.monotonic() - started

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(BUSY_SECONDS)
        holder.rollback()
        worker.join(60)
        took = box.get("took", BUSY_SECONDS)
        when = (f"while another transaction held account {a}'s row for {BUSY_SECONDS:.0f} s, on "
                f"a connection whose lock_timeout is {CALLER_LOCK_TIMEOUT_MS}ms (the caller's "
                "bound on how long a payment may wait for a busy account)")
        if "error" not in box:
            returned = box.get("result")
            if returned is None:
                raise CheckFailed(
                    f"{_call(args)} returned None {when}, although account {a} covered "
                    f"{amount}: a busy row is not insufficient funds. When the caller's "
                    "lock_timeout expires (SQLSTATE 55P03), raise it: the caller decides what "
                    "to do with a payment that could not get its rows in time.")
            raise CheckFailed(
                f"{_call(args)} {when} did not give up: it returned {returned!r} "
                f"{took:.1f} s after it started, once the other transaction had let go. "
                "Waiting past the caller's lock_timeout means your transfer lengthened it "
                "(SET LOCAL lock_timeout, or retrying 55P03): when lock_timeout expires, raise.")
        caller.clean()
        if took > 2 * limit + 0.4:
            raise CheckFailed(
                f"{_call(args)} {when} raised only after {took:.1f} s, "
                f"{took / limit:.0f} times the caller's lock_timeout: it retried the lock "
                "timeout (55P03, or a statement_timeout, 57014) as if it were a deadlock or a "
                "serialization failure. 40001 and 40P01 mean PostgreSQL rolled the transaction "
                "back to keep it correct, and a retry can succeed; 55P03 and 57014 mean the "
                "caller's time limit is up: raise them at once, so the payment fails within the "
                "bound the caller set.", f"raised {type(box['error']).__name__}: {box['error']}")
    _verify(lab, [a, b], since, before, [(args, None)], when)


def _fresh_keys(transfer: Callable) -> Callable:
    """The learner's transfer as q1 and q2 call it: every call a new request, with its own
    idempotency key (a client makes one per payment, and reuses it only to retry it)."""
    def call(conn: Any, src: int, dst: int, amount: Decimal) -> Any:
        return transfer(conn, src, dst, amount, uuid.uuid4())
    return call


def q1(lab: Any, transfer: Callable) -> str:
    """No lost update, no overdraft, the whole balance may go: single calls at the boundary,
    forced interleavings on one account, then a stress run; nothing left behind."""
    require(transfer)
    transfer = _fresh_keys(transfer)
    rng = adv.rng()
    picked = _accounts(lab, 6)
    a, b, c = adv.spread(picked, 3)
    others = [x for x in picked if x not in (a, b, c)]
    with _rest_untouched(lab, picked):
        _boundary(lab, transfer, a, b, c)
        # a transfer must lock its two rows, not the table: others' writes never wait for it
        d, e, f = others
        spare = {acct: _money(rng, 80, 400) for acct in picked}
        n = _bystanders(transfer, lab, (a, b, _money(rng, 5, 60)), d, (e, f, _money(rng, 5, 60)),
                        spare)
        # a writer that is not a transfer holds both rows: wait for it, then apply on top of it
        _behind_writer(lab, transfer, a, b, rng)
        # ... and when the row stays busy past the caller's lock_timeout: raise, at once
        _busy_past_lock_timeout(lab, transfer, a, b, rng)
        # two debits of one account that together empty it exactly: both covered ...
        x, y = _money(rng, 5, 60), _money(rng, 5, 60)
        full = {a: x + y, b: _money(rng, 50, 500), c: _money(rng, 50, 500)}
        n += _scenarios(transfer, lab, [((a, b, x), (a, c, y))], full, 2,
                       f"the balance {x + y} covers {x} + {y} exactly")
        # ... and one cent short: exactly one must succeed
        short = {**full, a: x + y - CENT}
        n += _scenarios(transfer, lab, [((a, b, x), (a, c, y))], short, 1,
                        f"the balance {x + y - CENT} covers {x} or {y}, not both")
        # volume: hot accounts, several workers, every transfer checked against the ledger
        # (every transfer is covered, whatever ran before it: any None is a payment declined)
        hot = [a, b, c] + others
        ops = 40 if lab.scale.name == "tiny" else 200
        workers = 4
        balances = {acct: _money(rng, 61 * workers * ops, 80 * workers * ops) for acct in hot}
        since = _prepare(lab, balances)
        before, _ = _state(lab, hot, since)

        def pick(r):
            src, dst = r.sample(hot, 2)
            return (src, dst, Decimal(r.randint(100, 6000)) / 100)

        with Watched(lab, transfer, _call) as watched:
            result = run_stress(lab, watched, workers=workers, operations=ops, args=pick,
                                seed=rng.randrange(10**6), sample_every=None,
                                settings=_session_settings())
            failed = result.errors()
            if failed:
                first = failed[0]
                raise CheckFailed(
                    f"Under load, {len(failed)} of {len(result.records)} transfers raised "
                    f"({dict((k, v) for k, v in result.outcomes.items() if k != 'ok')}); the "
                    f"first: {first.error or first.status}. A transfer must retry 40001/40P01 "
                    "itself.")
            when = f"under load ({result.workers} workers × {ops} transfers on {len(hot)} hot accounts)"
            watched.verify(when)
            declined = [r for r in result.records if r.result is None]
            if declined:
                raise CheckFailed(
                    f"Under load, {len(declined)} of {len(result.records)} transfers returned "
                    f"None (the first: {_call(declined[0].args)}), although every source "
                    f"account held more than all the transfers of the run together "
                    f"({workers * ops} × at most 60.00): covered payments were declined. None "
                    "means insufficient funds only; a transfer that loses a race (40001/40P01, "
                    "a busy row) retries or waits, and if it ever gives up it raises, it does not "
                    "report 'no funds'.",
                    f"balances before {dict(before)}")
        _verify(lab, hot, since, before, [(r.args, r.result) for r in result.records], when)
    return (f"the whole balance may go, one cent more may not; no lost update or overdraft in "
            f"{n} forced interleavings and {len(result.records)} concurrent transfers; writers of "
            "other accounts never wait for it; every one recorded once, nothing left behind")


def q2(lab: Any, transfer: Callable) -> str:
    """Opposite-direction transfers, forced into every interleaving: no deadlock escapes."""
    require(transfer)
    transfer = _fresh_keys(transfer)
    rng = adv.rng()
    a, b = _accounts(lab, 2)
    x, y = _money(rng, 5, 60), _money(rng, 5, 60)
    balances = {a: x + _money(rng, 1, 50), b: y + _money(rng, 1, 50)}
    with _rest_untouched(lab, [a, b]):
        n = _scenarios(transfer, lab, [((a, b, x), (b, a, y)), ((b, a, y), (a, b, x))],
                       balances, 2, "both were covered")
        # inside one statement: queued behind another writer, so that the lock order shows
        for held in (b, a):
            _crossed_behind_writer(lab, transfer, a, b, held, rng)
        n += 2
        m = _opposite_load(lab, transfer, a, b, rng)
    return (f"opposite transfers survived {n} forced interleavings and {m} concurrent "
            "transfers back and forth, each applied exactly once")


# How long each transfer of the crossed scenario is given to reach its wait
CROSS_WAIT_SECONDS = 3.0


def _blocked(monitor: psycopg.Connection, pid: int) -> list[int]:
    return monitor.execute("SELECT pg_blocking_pids(%s)", [pid]).fetchone()[0]


def _crossed_behind_writer(lab: Any, transfer: Callable, a: int, b: int, held: int,
                           rng: Any) -> None:
    """Two opposite transfers, both queued behind another writer of one account (``held``):
    transfer(b, a) starts first and waits for that row; transfer(a, b) starts while it waits,
    and takes what its lock order lets it take before it waits too; then the writer commits.
    A transfer that locks the two rows in one global order (by id) queues behind the other
    one; one whose order follows its arguments (src first, or dst first) already holds the
    other row, and the two deadlock. This shows the lock order of a single statement
    (data-modifying CTEs, where no forced interleaving can pause between the rows) as well
    as of several."""
    x, y = _money(rng, 5, 60), _money(rng, 5, 60)
    since = _prepare(lab, {a: x + _money(rng, 1, 50), b: y + _money(rng, 1, 50)})
    before, _ = _state(lab, [a, b], since)
    first_args, then_args = (b, a, y), (a, b, x)
    settings = _session_settings()
    when = (f"when {_call(first_args)} and then {_call(then_args)} both waited for another "
            f"transaction (a plain UPDATE of account {held}, no transfer) that then committed")
    box: dict[str, dict[str, Any]] = {"first": {}, "then": {}}
    conns = {}
    with psycopg.connect(lab.url) as holder, \
            psycopg.connect(lab.url, autocommit=True) as monitor, \
            Watched(lab, transfer, _call) as watched:
        try:
            for who in box:
                conns[who] = psycopg.connect(lab.url, application_name=f"lab check {who}")
                for name, value in settings.items():
                    conns[who].execute("SELECT set_config(%s, %s, false)", [name, value])
                conns[who].commit()
            holder.execute("UPDATE accounts SET balance = balance WHERE id = %s", [held])

            def start(who: str, args: tuple) -> threading.Thread:
                def run() -> None:
                    try:
                        box[who]["result"] = watched(conns[who], *args)
                    except BaseException as exc:  # judged below, in the check's thread
                        box[who]["error"] = exc
                worker = threading.Thread(target=run, daemon=True)
                worker.start()
                return worker

            workers = []
            for who, args in (("first", first_args), ("then", then_args)):
                workers.append(start(who, args))
                pid = conns[who].info.backend_pid
                deadline = time.monotonic() + CROSS_WAIT_SECONDS
                while workers[-1].is_alive() and time.monotonic() < deadline \
                        and not _blocked(monitor, pid):
                    workers[-1].join(0.005)
            holder.commit()
            for worker in workers:
                worker.join(60)
            if any(w.is_alive() for w in workers):
                raise CheckFailed(f"A transfer was still running 60 s after the other "
                                  f"transaction committed ({when}).")
        finally:
            holder.rollback()
            for conn in conns.values():
                conn.close()
        for who in box:
            exc = box[who].get("error")
            if exc is None:
                continue
            if getattr(exc, "sqlstate", None) == "40P01":
                raise CheckFailed(
                    f"Your transfer raised `deadlock detected` (SQLSTATE 40P01) {when}. While "
                    f"{_call(first_args)} waited for the row of account {held}, "
                    f"{_call(then_args)} locked the other account's row and then waited too: "
                    "the two transfers took the two rows in opposite orders. Your lock order "
                    "follows the arguments (src first, or dst first), also when one statement "
                    "(data-modifying CTEs, one after the other) updates both rows. Lock both "
                    "accounts first, in one global order (SELECT … WHERE id IN (…) ORDER BY id "
                    "FOR UPDATE), and retry 40P01/40001 anyway.", str(exc).splitlines()[0])
            raise _explain_error(exc, when)
        watched.verify(when)
    results = [(first_args, box["first"].get("result")), (then_args, box["then"].get("result"))]
    _verify(lab, [a, b], since, before, results, when)
    if any(r is None for _, r in results):
        raise CheckFailed(f"A covered transfer returned None {when}; both were covered (None "
                          "means insufficient funds only).", f"balances before {dict(before)}")


def _opposite_load(lab: Any, transfer: Callable, a: int, b: int, rng: Any) -> int:
    """Transfers a → b and b → a at once, from several workers. A forced interleaving pauses
    only between statements: one statement that locks src then dst (a data-modifying CTE, an
    UPDATE … WHERE id IN (src, dst) in no order) deadlocks inside itself, and only
    concurrent runs of it show that."""
    workers, ops = 4, (60 if lab.scale.name == "tiny" else 150)
    balances = {acct: _money(rng, 61 * workers * ops, 80 * workers * ops) for acct in (a, b)}
    since = _prepare(lab, balances)
    before, _ = _state(lab, [a, b], since)

    def pick(r: Any) -> tuple:
        src, dst = r.sample([a, b], 2)
        return (src, dst, Decimal(r.randint(100, 6000)) / 100)

    when = (f"under load ({workers} workers × {ops} transfers between accounts {a} and {b}, "
            "in both directions at once)")
    with Watched(lab, transfer, _call) as watched:
        result = run_stress(lab, watched, workers=workers, operations=ops, args=pick,
                            seed=rng.randrange(10**6), sample_every=None,
                            settings=_session_settings())
        failed = result.errors()
        if failed:
            first = failed[0]
            deadlocks = len(result.errors("40P01"))
            if deadlocks:
                raise CheckFailed(
                    f"{when.capitalize()}, {deadlocks} of {len(result.records)} transfers "
                    "raised `deadlock detected` (SQLSTATE 40P01) to the caller. Two opposite "
                    "transfers locked the same two rows in opposite orders; a single statement "
                    "(data-modifying CTEs, UPDATE … WHERE id IN (src, dst)) takes its row locks "
                    "in an order you do not choose, so it deadlocks inside itself. Lock both "
                    "accounts first, in id order (SELECT … WHERE id IN (…) ORDER BY id FOR "
                    "UPDATE), and retry 40P01/40001 anyway.", f"the first: {first.error}")
            raise CheckFailed(
                f"{when.capitalize()}, {len(failed)} of {len(result.records)} transfers raised "
                f"({dict((k, v) for k, v in result.outcomes.items() if k != 'ok')}); the first: "
                f"{first.error or first.status}. Two opposite transfers that lock their rows in "
                "opposite orders deadlock (40P01), also inside one statement: lock both rows "
                "in id order first (SELECT … ORDER BY id FOR UPDATE), and retry 40P01/40001.")
        watched.verify(when)
        declined = [r for r in result.records if r.result is None]
        if declined:
            raise CheckFailed(
                f"{when.capitalize()}, {len(declined)} of {len(result.records)} transfers "
                f"returned None (the first: {_call(declined[0].args)}), although both accounts "
                "held more than all the transfers of the run together: None means "
                "insufficient funds only.", f"balances before {dict(before)}")
    _verify(lab, [a, b], since, before, [(r.args, r.result) for r in result.records], when)
    return len(result.records)


LOST = ("server closed the connection unexpectedly (the COMMIT's reply was lost; the "
        "transaction may or may not have committed)")


class _DiesAtCommit(HookedConnection):
    """A connection that dies at the transfer's first COMMIT, as a real one does when the
    network drops: with ``committed`` the server committed and only its reply was lost,
    without it the COMMIT never reached the server (nothing committed). Either way the
    client sees the same OperationalError (:class:`LostAck`) and the connection is closed:
    nothing more can be asked on it. Only the ledger, read on another connection, knows."""

    def __init__(self, conn: psycopg.Connection, committed: bool) -> None:
        super().__init__(conn)
        self._committed = committed
        self._died = False

    @property
    def died(self) -> bool:
        return self._died

    def _due(self) -> bool:
        return not self._died and not self._conn.closed and in_transaction(self._conn)

    def _die(self) -> None:
        if self._committed:
            self._conn.commit()
        self._conn.close()  # the server rolls back whatever was not committed
        self._died = True
        raise LostAck(LOST)

    def commit(self) -> None:
        if self._due():
            self._die()
        super().commit()

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if is_commit(query) and self._due():
            self._die()
        return super().execute(query, params, **kwargs)

    def _statement(self, call: Callable[[], Any], query: Any, cursor: Any) -> None:
        if is_commit(query) and self._due():
            self._die()
        super()._statement(call, query, cursor)

    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        return _DyingTransaction(self, *args, **kwargs)


class _DyingTransaction:
    """``conn.transaction()`` whose outermost block, instead of committing, dies as
    :class:`_DiesAtCommit` does (after committing, or before)."""

    def __init__(self, owner: _DiesAtCommit, *args: Any, **kwargs: Any) -> None:
        self._owner = owner
        self._tx = owner._conn.transaction(*args, **kwargs)
        self._outer = False

    def __enter__(self) -> Any:
        self._outer = not in_transaction(self._owner._conn)
        return self._tx.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        owner = self._owner
        if exc[0] is None and self._outer and not owner._died:
            if owner._committed:
                self._tx.__exit__(None, None, None)
            else:
                self._tx.__exit__(psycopg.Rollback, psycopg.Rollback(), None)
            owner._conn.close()
            owner._died = True
            raise LostAck(LOST)
        return self._tx.__exit__(*exc)


def _plant_twin(lab: Any, src: int, dst: int, amount: Decimal) -> int:
    """An earlier transfer with the same src, dst and amount (a customer paying the same bill
    twice is two transfers); returns its id. Written with its own balance changes, so the
    books stay consistent."""
    with psycopg.connect(lab.url) as conn:
        conn.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", [amount, src])
        conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", [amount, dst])
        (twin,) = conn.execute(
            "INSERT INTO transfers (request_id, src, dst, amount) VALUES (gen_random_uuid(), "
            "%s, %s, %s) RETURNING id", [src, dst, amount]).fetchone()
        conn.commit()
    return twin


def _key_rows(lab: Any, key: uuid.UUID) -> list[tuple]:
    with psycopg.connect(lab.url, autocommit=True) as conn:
        return conn.execute("SELECT id, src, dst, amount FROM transfers WHERE request_id = %s",
                            [key]).fetchall()


def _call_k(args: tuple, key: uuid.UUID) -> str:
    return _call(args)[:-1] + f", request_id={str(key)[:8]}…)"


def _call_once(lab: Any, transfer: Callable, args: tuple, key: uuid.UUID, what: str) -> Any:
    """One whole call on a caller's fresh connection, as a client sends (or resends) the
    request: it must raise nothing and leave the connection as found."""
    with Caller(lab) as caller:
        try:
            returned = transfer(caller.conn, *args, key)
        except psycopg.Error as exc:
            caller.clean()
            raise _explain_error(exc, what) from None
        caller.verify(f"{_call_k(args, key)} {what}")
    return returned


def _applied_once(lab: Any, a: int, b: int, args: tuple, key: uuid.UUID, before: dict,
                  since: int, returned: Any, what: str, retry: str) -> None:
    """After the whole exchange (``what``), the request ``key`` is in the ledger once,
    applied once, and the call that answered last (``retry``) returned its id."""
    after, ledger = _state(lab, [a, b], since)
    mine = _key_rows(lab, key)
    amount = args[2]
    if after[a] <= before[a] - 2 * amount or len(mine) > 1 or len(ledger) > 1:
        raise CheckFailed(
            f"The transfer was applied twice {what}: the caller sent the same request again "
            f"(the same request_id), and your transfer ran it again instead of recognising it. "
            "The request id is the client's idempotency key: take it as the parameter (never "
            "make one inside transfer), record it in transfers.request_id (UNIQUE) in the same "
            "transaction, and when it is already there return that transfer's id, changing "
            "nothing.", f"account {a}: {before[a]} → {after[a]}; new ledger rows {ledger}")
    if not mine:
        raise CheckFailed(
            f"{what.capitalize()}, the request with this request_id is not in `transfers`"
            + (f" ({len(ledger)} new row(s) under another request id)" if ledger else "")
            + ": record the caller's request_id (the parameter), not one of your own.",
            f"new ledger rows {ledger}")
    if returned is None:
        raise CheckFailed(
            f"{what.capitalize()}, {retry} returned None, but the transfer had committed "
            f"(transfers.id {mine[0][0]}): a request already in the ledger answers with its "
            "transfers.id (None means insufficient funds, and the client would tell the "
            "customer the payment failed).", f"ledger row {mine[0]}")
    if returned != mine[0][0]:
        raise CheckFailed(
            f"{what.capitalize()}, {retry} returned {returned!r}, but this request's row in "
            f"`transfers` has id {mine[0][0]}: return the id of the transfer made under this "
            "request_id.", f"ledger rows {ledger}")
    _verify(lab, [a, b], since, before, [(args, returned)], what)


def q3(lab: Any, transfer: Callable) -> str:
    """The request id is the client's idempotency key: a request sent again (the client timed
    out) is answered with the transfer it made, a second request with the same fields is a
    second transfer; after a connection that died at COMMIT (the reply lost after the server
    committed, or the COMMIT never arrived), the client sends the request again on a new
    connection: applied and recorded exactly once, its own id returned."""
    require(transfer)
    rng = adv.rng()
    a, b = _accounts(lab, 2)
    with _rest_untouched(lab, [a, b]):
        _resent(lab, transfer, a, b, rng)
        _resent_after_emptied(lab, transfer, a, b, rng)
        n = _resend_races(lab, transfer, a, b, rng)
        _lost_ack(lab, transfer, a, b, rng)
        _commit_never_arrived(lab, transfer, a, b, rng)
    return ("a request sent again got its transfer's id back without running twice (also "
            f"while the original still ran, in {n} forced interleavings, and with other "
            "fields), a new request with the same fields ran; after a COMMIT whose reply was "
            "lost, and one that never reached the server, the retried request was applied "
            "exactly once and answered with its own id")


def _resent(lab: Any, transfer: Callable, a: int, b: int, rng: Any) -> None:
    """A request that succeeded is sent again with its key (the client timed out waiting for
    the answer): the same id, nothing changed. Then a new request (a new key) with the same
    src, dst and amount (the same bill paid twice): a second transfer."""
    amount = _money(rng, 5, 60)
    since = _prepare(lab, {a: 3 * amount + _money(rng, 1, 50), b: _money(rng, 5, 200)})
    before, _ = _state(lab, [a, b], since)
    args, key = (a, b, amount), uuid.uuid4()
    first = _call_once(lab, transfer, args, key, "(a first request)")
    if first is None:
        raise CheckFailed(f"{_call_k(args, key)} returned None, although account {a} covers "
                          f"{amount}: it must succeed.")
    what = "when a request that had succeeded was sent again with the same request_id"
    again = _call_once(lab, transfer, args, key, what)
    _applied_once(lab, a, b, args, key, before, since, again, what, "the repeated call")
    if again != first:
        raise CheckFailed(f"{what}, your transfer returned {again!r} the second time and "
                          f"{first!r} the first: the same request has one answer.")
    other = uuid.uuid4()
    second = _call_once(lab, transfer, args, other,
                        "(a new request with the same src, dst and amount)")
    _, ledger = _state(lab, [a, b], since)
    if second is None or second == first or len(ledger) != 2:
        raise CheckFailed(
            f"A new request (another request_id) with the same src, dst and amount as an "
            f"earlier transfer returned {second!r} and `transfers` holds {len(ledger)} new "
            "row(s): it was taken for the earlier transfer with the same src, dst and amount. "
            "A customer may pay the same bill twice; only the request_id says whether a "
            "request is new: look requests up by request_id, never by their fields.",
            f"first request → {first}, new ledger rows {ledger}")
    # the first request's id again, with other fields (a client bug, or a key reused for
    # another payment): a known request_id changes nothing, whatever the fields say
    c = b if rng.random() < 0.5 else a
    changed = (b, a, amount) if c == a else (a, b, amount + _money(rng, 1, 9))
    since = _prepare(lab, {})
    before, _ = _state(lab, [a, b], since)
    what = (f"when the first request's request_id came again with other fields "
            f"({_call(changed)})")
    with Caller(lab) as caller:
        try:
            reused = transfer(caller.conn, *changed, key)
            raised = None
        except Exception as exc:  # noqa: BLE001 - refusing a mismatched key is allowed
            caller.clean()
            reused, raised = None, exc
        if raised is None:
            caller.verify(f"{_call_k(changed, key)} {what}")
    after, ledger = _state(lab, [a, b], since)
    if ledger or after != before or (raised is None and reused != first):
        raise CheckFailed(
            f"{what.capitalize()}, your transfer returned {reused!r} and `transfers` gained "
            f"{len(ledger)} row(s): it ran as a new payment. A request_id already in the "
            f"ledger has been done (transfers.id {first}): change nothing and return that id, "
            "whatever src, dst and amount say (or refuse it with an error); never make a new "
            "request id inside transfer: every resend of that payment would run again.",
            f"balances {before} → {after}; new ledger rows {ledger}")


def _resent_after_emptied(lab: Any, transfer: Callable, a: int, b: int, rng: Any) -> None:
    """A request that moved the whole balance is sent again (the client timed out): the
    account no longer covers it, yet the request has been done, so the resend answers with
    its id. A transfer that runs its funds check (the conditional UPDATE) before it looks the
    request id up answers None: 'insufficient funds' for a payment that went through."""
    amount = _money(rng, 5, 60)
    since = _prepare(lab, {a: amount, b: _money(rng, 5, 200)})
    before, _ = _state(lab, [a, b], since)
    args, key = (a, b, amount), uuid.uuid4()
    first = _call_once(lab, transfer, args, key, f"(exactly the balance, {amount})")
    if first is None:
        raise CheckFailed(f"{_call_k(args, key)} out of an account holding exactly {amount} "
                          "returned None: a transfer of the whole balance must succeed.")
    what = ("when a request that had moved the whole balance (the account now holds 0.00) was "
            "sent again with the same request_id")
    again = _call_once(lab, transfer, args, key, what)
    if again is None:
        raise CheckFailed(
            f"{what.capitalize()}, your transfer returned None: it ran the funds check before "
            f"it looked the request id up, and told the client 'insufficient funds' for a "
            f"payment that went through (transfers.id {first}). The customer is told the "
            "payment failed, and pays again under a new request id. After locking the rows, "
            "look the request id up FIRST (SELECT id FROM transfers WHERE request_id = %s): "
            "found, roll back and return that id; only a new request checks the funds.",
            f"first call → {first}; ledger rows for this request: {_key_rows(lab, key)}")
    _applied_once(lab, a, b, args, key, before, since, again, what, "the repeated call")
    if again != first:
        raise CheckFailed(f"{what.capitalize()}, your transfer returned {again!r} the second "
                          f"time and {first!r} the first: the same request has one answer.")


def _resend_races(lab: Any, transfer: Callable, a: int, b: int, rng: Any) -> int:
    """The client timed out while its request still ran and sent it again: the resend (same
    request_id) runs while the original is held after each of its statements in turn. Both
    must answer with the one transfer's id, applied once: a lookup made before the rows are
    locked misses the original, which has not committed yet."""
    amount = _money(rng, 5, 60)
    # the balance covers the transfer twice, so that a resend that re-applies it shows
    balances = {a: 2 * amount + _money(rng, 1, 50), b: _money(rng, 5, 200)}
    args = (a, b, amount)
    _prepare(lab, balances)
    steps = count_statements(lab, lambda c: transfer(c, *args, uuid.uuid4()))
    settings = _session_settings()
    for k in range(1, max(steps, 1) + 1):
        since = _prepare(lab, balances)
        before, _ = _state(lab, [a, b], since)
        key = uuid.uuid4()
        what = (f"when the same request (one request_id) was sent again while the original "
                f"was still running, held after its statement {k}")
        with Watched(lab, lambda c, *x: transfer(c, *x, key), _call) as watched:
            run = interleave(lab, lambda c: watched(c, *args), lambda c: watched(c, *args),
                             pause_after=k, settings=settings)
            for exc in run.errors:
                raise _explain_error(exc, what)
            watched.verify(what)
        for returned, who in ((run.second_result, "the resend"),
                              (run.first_result, "the original request")):
            _applied_once(lab, a, b, args, key, before, since, returned, what, who)
        if run.first_result != run.second_result:
            raise CheckFailed(f"{what.capitalize()}, the original returned "
                              f"{run.first_result!r} and the resend {run.second_result!r}: the "
                              "same request has one answer, the id of its transfer.")
    return max(steps, 1)


def _died_call(lab: Any, transfer: Callable, args: tuple, key: uuid.UUID,
               committed: bool) -> tuple[Any, bool]:
    """The call whose connection dies at COMMIT: (what it returned, whether it raised).
    Raising is what a transfer can do there (the connection is gone): the caller resends."""
    with Caller(lab) as caller:
        dying = _DiesAtCommit(caller.conn, committed)
        try:
            returned, raised = transfer(dying, *args, key), False
        except Exception:  # noqa: BLE001 - any error leaves the outcome unknown: resend
            returned, raised = None, True
        if not dying.died:
            if raised:
                caller.clean()
            raise CheckFailed("Your transfer never committed through the connection it was "
                              "given (use conn.commit(), conn.execute('commit') or "
                              "conn.transaction()).")
    return returned, raised


def _lost_ack(lab: Any, transfer: Callable, a: int, b: int, rng: Any) -> None:
    """The reply to a COMMIT that did commit is lost, and the connection with it; the client
    sends the request again, same key, on a new connection: applied once, its id returned."""
    amount = _money(rng, 5, 60)
    # the balance covers the transfer twice, so that a resend that re-applies it shows
    since = _prepare(lab, {a: 2 * amount + _money(rng, 1, 50), b: _money(rng, 5, 200)})
    before, _ = _state(lab, [a, b], since)
    args, key = (a, b, amount), uuid.uuid4()
    what = ("after the COMMIT's reply was lost (the server had committed, the connection "
            "died) and the caller sent the same request again on a new connection")
    returned, raised = _died_call(lab, transfer, args, key, committed=True)
    mine = _key_rows(lab, key)
    if not raised:
        if returned is None:
            raise CheckFailed(
                "The connection died as the COMMIT's reply was lost; the transfer had "
                f"committed (transfers.id {mine[0][0] if mine else '?'}) and your transfer "
                "returned None, which tells the customer the payment failed. When the outcome "
                "is unknown, raise (the caller resends the request with the same request_id) "
                "or find it out on a new connection.", f"ledger rows {mine}")
        if not mine or returned != mine[0][0]:
            raise CheckFailed(
                f"The connection died as the COMMIT's reply was lost and your transfer "
                f"returned {returned!r}, which is not the id of its row in `transfers` "
                f"({mine[0][0] if mine else 'none'}).", f"ledger rows {mine}")
    again = _call_once(lab, transfer, args, key, what)
    _applied_once(lab, a, b, args, key, before, since, again, what, "the resent request")


def _commit_never_arrived(lab: Any, transfer: Callable, a: int, b: int, rng: Any) -> None:
    """The connection dies before the COMMIT reaches the server: nothing committed, the
    same error as a lost reply. An earlier transfer with the same src, dst and amount is in
    the ledger: only the request id tells this transfer from it. The client resends with the
    same key on a new connection: the transfer runs, once, and answers with its own id."""
    amount = _money(rng, 5, 60)
    _prepare(lab, {a: 3 * amount + _money(rng, 1, 50), b: _money(rng, 5, 200)})
    twin = _plant_twin(lab, a, b, amount)
    since = _prepare(lab, {})
    before, _ = _state(lab, [a, b], since)
    args, key = (a, b, amount), uuid.uuid4()
    what = ("after the connection died before its COMMIT reached the server (nothing "
            "committed) and the caller sent the same request again on a new connection")
    returned, raised = _died_call(lab, transfer, args, key, committed=False)
    if not raised:
        mine = _key_rows(lab, key)
        if returned == twin:
            raise CheckFailed(
                f"The connection died before the COMMIT reached the server, so nothing "
                f"committed; your transfer returned {twin}, the id of an earlier transfer with "
                "the same src, dst and amount (a customer may pay the same bill twice). Look "
                "a request up by its own request_id, never by its fields.",
                f"ledger rows for this request: {mine}")
        if returned is None:
            raise CheckFailed(
                "The connection died before the COMMIT reached the server (nothing committed) "
                f"and your transfer returned None, although {a} covers {amount}: None tells "
                "the customer the funds were short, and the payment is lost. When the outcome "
                "is unknown, raise (the caller resends the request with the same request_id).")
        if not any(row[0] == returned for row in mine):
            raise CheckFailed(
                f"The connection died before the COMMIT reached the server, so the transfer "
                f"never committed, yet your transfer returned {returned!r}, the id of a row "
                "that does not exist. An OperationalError on COMMIT does not mean it "
                "committed: raise, and let the caller resend the request with its request_id.",
                f"ledger rows for this request: {mine}")
    again = _call_once(lab, transfer, args, key, what)
    if again == twin:
        raise CheckFailed(
            f"{what.capitalize()}, your transfer returned {twin}, the id of an earlier "
            "transfer with the same src, dst and amount (a customer may pay the same bill "
            "twice), and did not run: look a request up by its own request_id, never by its "
            "fields; when it is not there, it did not commit: run it.",
            f"ledger rows for this request: {_key_rows(lab, key)}")
    _applied_once(lab, a, b, args, key, before, since, again, what, "the resent request")


HINTS = {
    "q1": [
        "Reading a balance into Python and writing back balance_read - amount overwrites any "
        "debit that committed in between: a lost update.",
        "Lock the rows first (SELECT … FOR UPDATE), or let one UPDATE do the check and the "
        "arithmetic: UPDATE accounts SET balance = balance - %s WHERE id = %s AND balance >= %s.",
        "If you use REPEATABLE READ or SERIALIZABLE, PostgreSQL raises 40001 instead of losing "
        "the update: catch it, roll back, and run the whole transaction again.",
        "Insufficient funds is balance < amount: emptying an account is allowed. On the None "
        "path roll back before returning, so no transaction (and no row lock) is left open; "
        "don't change session settings (or put the caller's value back: RESET is not that).",
    ],
    "q2": [
        "transfer(a, b) locks a then b; transfer(b, a) locks b then a: a cycle, 40P01.",
        "Lock both accounts in id order: SELECT id FROM accounts WHERE id IN (%s, %s) "
        "ORDER BY id FOR UPDATE. Keep the retry on 40P01/40001 as a safety net.",
    ],
    "q3": [
        "The client makes the request id (one per payment) and sends it with every attempt: "
        "transfer takes it as a parameter. A uuid made inside transfer is new on every call, "
        "so a resent request runs again.",
        "Inside the transaction, after locking the rows: SELECT id FROM transfers WHERE "
        "request_id = %s. Found: roll back and return that id (a resend). Not found: do the "
        "transfer and insert the request id with it.",
        "An OperationalError on COMMIT means 'unknown', and the connection is gone: raise it. "
        "The caller sends the same request again on a new connection, and the lookup by "
        "request id answers it.",
    ],
}
