"""Checks for 02_race_conditions: the learner's ``transfer(conn, src, dst, amount)``.

The contract (stated in the notebook): move ``amount`` from account ``src`` to
``dst`` in one transaction, record it once in ``transfers`` and return the new
``transfers.id``; return ``None`` and change nothing when ``src`` cannot cover
it. ``conn`` is a psycopg connection with autocommit off, at READ COMMITTED.

Races are judged deterministically: instead of hoping that a stress run hits
the bad interleaving, each check *forces* every interleaving of two transfers
that matters (``labs.tools.stress.interleave``: hold the first after its k-th
statement, run the second until it finishes or the lock manager says it waits,
then resume the first), for every k. The stress run only confirms the
invariants at volume. A lost COMMIT acknowledgement is simulated by
``labs.tools.stress.HookedConnection``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

import psycopg

from ..course.checking import CheckFailed, require
from ..tools.stress import HookedConnection, count_statements, interleave, run_stress

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


def _accounts(lab: Any, n: int) -> list[int]:
    """n accounts of the most common currency, lowest ids first (the check's test bed)."""
    rows = lab.query("""
        SELECT id FROM accounts
        WHERE currency = (SELECT currency FROM accounts GROUP BY currency
                          ORDER BY count(*) DESC, currency LIMIT 1)
        ORDER BY id LIMIT %s""", [n])
    return [int(i) for i in rows["id"]]


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
    return CheckFailed(f"Your transfer raised {type(exc).__name__}: {text} {when}.",
                       f"SQLSTATE {sqlstate}" if sqlstate else "")


def _verify(lab: Any, accounts: list[int], since: int, before: dict[int, Decimal],
            calls: list[tuple[tuple, Any]], when: str) -> None:
    """Every invariant of a set of completed calls ((src, dst, amount), returned value)."""
    after, ledger = _state(lab, accounts, since)
    total_before, total_after = sum(before.values()), sum(after.values())
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
            raise CheckFailed(f"transfer({src}, {dst}, {amount}) returned {r!r} {when}, which is "
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
               balances: dict[int, int], what: str) -> int:
    """Force every interleaving of each pair of transfers and verify the invariants."""
    accounts = list(balances)
    forced = 0
    for first_args, second_args in pairs:
        _prepare(lab, balances)
        steps = count_statements(lab, lambda c: transfer(c, *first_args))
        for k in range(1, max(steps, 1) + 1):
            since = _prepare(lab, balances)
            before, _ = _state(lab, accounts, since)
            run = interleave(lab, lambda c: transfer(c, *first_args),
                             lambda c: transfer(c, *second_args), pause_after=k,
                             settings=FAST_DEADLOCKS)
            forced += 1
            when = (f"when transfer{second_args} ran while transfer{first_args} was held after "
                    f"its statement {k}")
            for exc in run.errors:
                raise _explain_error(exc, when)
            results = [(first_args, run.first_result), (second_args, run.second_result)]
            _verify(lab, accounts, since, before, results, when)
            expect = what == "funds" and 1 or 2
            got = sum(r is not None for _, r in results)
            if got != expect:
                raise CheckFailed(
                    f"{got} of the two transfers succeeded {when}; {expect} should have "
                    f"({'only one can be covered by the balance' if expect == 1 else 'both were covered'}). "
                    "Return the new transfers.id on success and None only for insufficient funds.")
    return forced


def q1(lab: Any, transfer: Callable) -> str:
    """No lost update, no overdraft: forced interleavings on one account, then a stress run."""
    require(transfer)
    a, b, c, *others = _accounts(lab, 8)
    # two debits of one account: both covered (100 >= 30 + 30) ...
    n = _scenarios(transfer, lab, [((a, b, 30), (a, c, 30))], {a: 100, b: 100, c: 100}, "both")
    # ... and only one covered (50 < 30 + 30): exactly one must succeed
    n += _scenarios(transfer, lab, [((a, b, 30), (a, c, 30))], {a: 50, b: 100, c: 100}, "funds")
    # volume: hot accounts, several workers, every transfer checked against the ledger
    hot = [a, b, c] + others[:3]
    balances = {acct: 100 for acct in hot}
    since = _prepare(lab, balances)
    before, _ = _state(lab, hot, since)
    ops = 40 if lab.scale.name == "tiny" else 200

    def pick(rng):
        src, dst = rng.sample(hot, 2)
        return (src, dst, rng.randint(1, 60))

    result = run_stress(lab, transfer, workers=4, operations=ops, args=pick,
                        sample_every=None, settings=FAST_DEADLOCKS)
    failed = result.errors()
    if failed:
        first = failed[0]
        raise CheckFailed(
            f"Under load, {len(failed)} of {len(result.records)} transfers raised "
            f"({dict((k, v) for k, v in result.outcomes.items() if k != 'ok')}); the first: "
            f"{first.error or first.status}. A transfer must retry 40001/40P01 itself.")
    _verify(lab, hot, since, before, [(r.args, r.result) for r in result.records],
            f"under load ({result.workers} workers × {ops} transfers on {len(hot)} hot accounts)")
    return (f"no lost update or overdraft in {n} forced interleavings and "
            f"{len(result.records)} concurrent transfers; every one recorded once")


def q2(lab: Any, transfer: Callable) -> str:
    """Opposite-direction transfers, forced into every interleaving: no deadlock escapes."""
    require(transfer)
    a, b = _accounts(lab, 2)
    n = _scenarios(transfer, lab, [((a, b, 10), (b, a, 20)), ((b, a, 20), (a, b, 10))],
                   {a: 100, b: 100}, "both")
    return f"opposite transfers survived {n} forced interleavings, each applied exactly once"


def q3(lab: Any, transfer: Callable) -> str:
    """A lost COMMIT acknowledgement: the transfer is applied (and recorded) exactly once."""
    require(transfer)
    a, b = _accounts(lab, 2)
    balances = {a: 100, b: 100}
    since = _prepare(lab, balances)
    before, _ = _state(lab, [a, b], since)
    with psycopg.connect(lab.url) as conn:
        flaky = HookedConnection(conn, lose_commit_acks=1)
        try:
            returned = transfer(flaky, a, b, 25)
        except psycopg.OperationalError as exc:
            raise CheckFailed(
                "The COMMIT's reply was lost and your transfer let the error escape. The caller "
                "cannot tell whether money moved, and will retry: a double spend. After an "
                "ambiguous failure, look the transfer up by its request id and return its id "
                "if it committed (retry only if it did not).", str(exc)) from None
        if not flaky.lost_acks:
            raise CheckFailed("Your transfer never committed through the connection it was given "
                              "(use conn.commit(), conn.execute('commit') or conn.transaction()).")
    after, ledger = _state(lab, [a, b], since)
    if after[a] == before[a] - 50:
        raise CheckFailed(
            "The transfer was applied twice: its first COMMIT succeeded but the reply was lost, "
            "and the retry ran it again. Generate one request id per transfer (not per attempt), "
            "insert it into transfers.request_id (UNIQUE) in the same transaction, and after an "
            "ambiguous error check whether that request id is already there.",
            f"account {a}: {before[a]} → {after[a]}; ledger rows {ledger}")
    _verify(lab, [a, b], since, before, [((a, b, 25), returned)], "after a lost COMMIT ack")
    if returned is None:
        raise CheckFailed("After the lost acknowledgement your transfer returned None, but the "
                          "transfer had committed: return its transfers.id.")
    return "a lost COMMIT acknowledgement did not make the transfer happen twice"


HINTS = {
    "q1": [
        "Reading a balance into Python and writing back balance_read - amount overwrites any "
        "debit that committed in between: a lost update.",
        "Lock the rows first (SELECT … FOR UPDATE), or let one UPDATE do the check and the "
        "arithmetic: UPDATE accounts SET balance = balance - %s WHERE id = %s AND balance >= %s.",
        "If you use REPEATABLE READ or SERIALIZABLE, PostgreSQL raises 40001 instead of losing "
        "the update: catch it, roll back, and run the whole transaction again.",
    ],
    "q2": [
        "transfer(a, b) locks a then b; transfer(b, a) locks b then a: a cycle, 40P01.",
        "Lock both accounts in id order: SELECT id FROM accounts WHERE id IN (%s, %s) "
        "ORDER BY id FOR UPDATE. Keep the retry on 40P01/40001 as a safety net.",
    ],
    "q3": [
        "An OperationalError on COMMIT means 'unknown', not 'failed': the transaction may have "
        "committed.",
        "Make a uuid once per call (before the retry loop), store it in transfers.request_id, "
        "and after an ambiguous error SELECT id FROM transfers WHERE request_id = %s.",
    ],
}
