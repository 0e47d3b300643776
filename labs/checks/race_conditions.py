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
``labs.tools.stress.HookedConnection``, and a connection that breaks before the COMMIT
reaches the server (nothing committed, the same error) by :class:`_CommitNeverArrives`,
with an earlier transfer of the same src, dst and amount in the ledger: only the request
id tells the two cases, and the two transfers, apart.

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
* accounts the check did not pick, and the ledger's earlier rows, must not change.
"""

from __future__ import annotations

from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Callable, Iterator

import psycopg

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

        def other(conn: Any) -> Any:
            conn.execute("UPDATE accounts SET balance = balance WHERE id = %s", [bystander])
            conn.commit()
            return watched(conn, *beside)

        with Watched(lab, transfer, _call) as watched:
            run = interleave(lab, lambda c: watched(c, *args), other, pause_after=k,
                             settings=settings)
            when = (f"while {_call(args)} was held after its statement {k} and another session "
                    f"wrote other accounts")
            for exc in run.errors:
                raise _explain_error(exc, when)
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


def _single(lab: Any, transfer: Callable, caller: Caller, args: tuple, accounts: list[int],
            what: str) -> Any:
    """One call on the caller's connection: the invariants and what it left behind."""
    since = _prepare(lab, {})
    before, _ = _state(lab, accounts, since)
    try:
        returned = transfer(caller.conn, *args)
    except psycopg.Error as exc:
        caller.clean()
        raise _explain_error(exc, what) from None
    caller.verify(f"{_call(args)} {what}")
    _verify(lab, accounts, since, before, [(args, returned)], what)
    return returned


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
        over = balance + CENT
        got = _single(lab, transfer, caller, (a, b, over), accounts,
                      f"(one cent more than the balance {balance})")
        if got is not None:
            raise CheckFailed(
                f"transfer({a}, {b}, {over}) out of an account holding {balance} returned "
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


def q1(lab: Any, transfer: Callable) -> str:
    """No lost update, no overdraft, the whole balance may go: single calls at the boundary,
    forced interleavings on one account, then a stress run; nothing left behind."""
    require(transfer)
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
        hot = [a, b, c] + others
        balances = {acct: _money(rng, 60, 200) for acct in hot}
        since = _prepare(lab, balances)
        before, _ = _state(lab, hot, since)
        ops = 40 if lab.scale.name == "tiny" else 200

        def pick(r):
            src, dst = r.sample(hot, 2)
            return (src, dst, Decimal(r.randint(100, 6000)) / 100)

        with Watched(lab, transfer, _call) as watched:
            result = run_stress(lab, watched, workers=4, operations=ops, args=pick,
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
        _verify(lab, hot, since, before, [(r.args, r.result) for r in result.records], when)
    return (f"the whole balance may go, one cent more may not; no lost update or overdraft in "
            f"{n} forced interleavings and {len(result.records)} concurrent transfers; writers of "
            "other accounts never wait for it; every one recorded once, nothing left behind")


def q2(lab: Any, transfer: Callable) -> str:
    """Opposite-direction transfers, forced into every interleaving: no deadlock escapes."""
    require(transfer)
    rng = adv.rng()
    a, b = _accounts(lab, 2)
    x, y = _money(rng, 5, 60), _money(rng, 5, 60)
    balances = {a: x + _money(rng, 1, 50), b: y + _money(rng, 1, 50)}
    with _rest_untouched(lab, [a, b]):
        n = _scenarios(transfer, lab, [((a, b, x), (b, a, y)), ((b, a, y), (a, b, x))],
                       balances, 2, "both were covered")
    return f"opposite transfers survived {n} forced interleavings, each applied exactly once"


class _CommitNeverArrives(HookedConnection):
    """A connection that breaks while the first COMMIT is on its way: the server never gets
    it, so the transaction is rolled back, and the client sees the same OperationalError
    (:class:`LostAck`, same words) as when the reply to a COMMIT that did commit is lost. The
    two cases look alike to the client on purpose: only the ledger can tell them apart."""

    def __init__(self, conn: psycopg.Connection, drops: int = 1) -> None:
        super().__init__(conn)
        self._drops = drops
        self.dropped = 0

    def _breaks(self) -> bool:
        return self.dropped < self._drops and in_transaction(self._conn)

    def _break(self) -> None:
        self._conn.rollback()
        self.dropped += 1
        raise LostAck("server closed the connection unexpectedly (the COMMIT's reply was "
                      "lost; the transaction may or may not have committed)")

    def commit(self) -> None:
        if self._breaks():
            self._break()
        super().commit()

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if is_commit(query) and self._breaks():
            self._break()
        return super().execute(query, params, **kwargs)

    def _statement(self, call: Callable[[], Any], query: Any, cursor: Any) -> None:
        if is_commit(query) and self._breaks():
            self._break()
        super()._statement(call, query, cursor)

    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        return _BreakingTransaction(self, *args, **kwargs)


class _BreakingTransaction:
    """``conn.transaction()`` whose outermost block, instead of committing, rolls back and
    raises as :class:`_CommitNeverArrives` does."""

    def __init__(self, owner: _CommitNeverArrives, *args: Any, **kwargs: Any) -> None:
        self._owner = owner
        self._tx = owner._conn.transaction(*args, **kwargs)
        self._outer = False

    def __enter__(self) -> Any:
        self._outer = not in_transaction(self._owner._conn)
        return self._tx.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        if exc[0] is None and self._outer and self._owner.dropped < self._owner._drops:
            self._tx.__exit__(psycopg.Rollback, psycopg.Rollback(), None)
            self._owner.dropped += 1
            raise LostAck("server closed the connection unexpectedly (the COMMIT's reply was "
                          "lost; the transaction may or may not have committed)")
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


def q3(lab: Any, transfer: Callable) -> str:
    """An ambiguous COMMIT failure, both ways: the reply to a COMMIT that committed is lost
    (the transfer must not run again), and the connection breaks before the COMMIT arrives
    (nothing committed: the transfer must run again). Applied and recorded exactly once,
    its own id returned, in both cases."""
    require(transfer)
    rng = adv.rng()
    a, b = _accounts(lab, 2)
    amount = _money(rng, 5, 60)
    with _rest_untouched(lab, [a, b]):
        _lost_ack(lab, transfer, a, b, amount, rng)
        _commit_never_arrived(lab, transfer, a, b, amount, rng)
    return ("a COMMIT whose reply was lost did not run twice, and one that never reached the "
            "server ran again, once; each time the transfer's own id was returned")


def _ambiguous_error(exc: psycopg.OperationalError) -> CheckFailed:
    return CheckFailed(
        "The COMMIT failed with an OperationalError (the connection broke) and your transfer "
        "let the error escape. The caller cannot tell whether money moved, and will retry: a "
        "double spend. After an ambiguous failure, look the transfer up by its request id: "
        "return its id if it committed, run it again if it did not.", str(exc))


def _lost_ack(lab: Any, transfer: Callable, a: int, b: int, amount: Decimal, rng: Any) -> None:
    """The reply to a COMMIT that did commit is lost: applied once, its id returned."""
    # the balance covers the transfer twice, so that a retry that re-applies it shows as such
    balances = {a: 2 * amount + _money(rng, 1, 50), b: _money(rng, 5, 200)}
    since = _prepare(lab, balances)
    before, _ = _state(lab, [a, b], since)
    with Caller(lab) as caller:
        flaky = HookedConnection(caller.conn, lose_commit_acks=1)
        try:
            returned = transfer(flaky, a, b, amount)
        except psycopg.OperationalError as exc:
            raise _ambiguous_error(exc) from None
        if not flaky.lost_acks:
            raise CheckFailed("Your transfer never committed through the connection it was "
                              "given (use conn.commit(), conn.execute('commit') or "
                              "conn.transaction()).")
        after, ledger = _state(lab, [a, b], since)
        if after[a] == before[a] - 2 * amount:
            raise CheckFailed(
                "The transfer was applied twice: its first COMMIT succeeded but the reply "
                "was lost, and the retry ran it again. Generate one request id per transfer "
                "(not per attempt), insert it into transfers.request_id (UNIQUE) in the same "
                "transaction, and after an ambiguous error check whether that request id is "
                "already there.", f"account {a}: {before[a]} → {after[a]}; ledger rows {ledger}")
        caller.verify(f"transfer({a}, {b}, {amount}) with its COMMIT acknowledgement lost")
    if returned is None and len(ledger) == 1:
        raise CheckFailed("After the lost acknowledgement your transfer returned None, but "
                          "the transfer had committed: return its transfers.id.")
    _verify(lab, [a, b], since, before, [((a, b, amount), returned)],
            "after a lost COMMIT ack")


def _commit_never_arrived(lab: Any, transfer: Callable, a: int, b: int, amount: Decimal,
                          rng: Any) -> None:
    """The connection breaks before the COMMIT reaches the server: nothing committed, the
    same error as a lost ack. An earlier transfer with the same src, dst and amount is in
    the ledger: only the request id tells this transfer from it."""
    balances = {a: 3 * amount + _money(rng, 1, 50), b: _money(rng, 5, 200)}
    _prepare(lab, balances)
    twin = _plant_twin(lab, a, b, amount)
    since = _prepare(lab, {})
    before, _ = _state(lab, [a, b], since)
    when = "after the connection broke before its COMMIT reached the server"
    with Caller(lab) as caller:
        flaky = _CommitNeverArrives(caller.conn)
        try:
            returned = transfer(flaky, a, b, amount)
        except psycopg.OperationalError as exc:
            raise _ambiguous_error(exc) from None
        if not flaky.dropped:
            raise CheckFailed("Your transfer never committed through the connection it was "
                              "given (use conn.commit(), conn.execute('commit') or "
                              "conn.transaction()).")
        after, ledger = _state(lab, [a, b], since)
        caller.verify(f"transfer({a}, {b}, {amount}) {when}")
    mine = [row for row in ledger if row[0] == returned]
    if returned == twin:
        raise CheckFailed(
            f"The connection broke before the COMMIT reached the server, so nothing committed; "
            f"your transfer returned {twin}, the id of an earlier transfer with the same src, "
            "dst and amount (a customer may pay the same bill twice). Look the transfer up by "
            "its own request_id, never by its fields; when it is not there, it did not commit: "
            "run it again.", f"ledger rows after: {ledger}")
    if returned is not None and not mine:
        raise CheckFailed(
            f"The connection broke before the COMMIT reached the server, so the transfer never "
            f"committed, yet your transfer returned {returned!r}, the id of a row that does not "
            "exist. An OperationalError on COMMIT does not mean it committed: look the transfer "
            "up by its request_id, and run it again when it is not there.",
            f"account {a}: {before[a]} → {after[a]}; new ledger rows {ledger}")
    if returned is None:
        raise CheckFailed(
            f"The connection broke before the COMMIT reached the server (nothing committed) and "
            f"your transfer returned None, although {a} covers {amount}: the payment was lost. "
            "When the request id is not in the ledger, the transfer did not commit: run it "
            "again.", f"new ledger rows {ledger}")
    _verify(lab, [a, b], since, before, [((a, b, amount), returned)], when)


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
        "An OperationalError on COMMIT means 'unknown', not 'failed': the transaction may have "
        "committed, or not.",
        "Make a uuid once per call (before the retry loop), store it in transfers.request_id, "
        "and after an ambiguous error SELECT id FROM transfers WHERE request_id = %s: a row "
        "means it committed (return its id), none means it did not (run it again).",
    ],
}
