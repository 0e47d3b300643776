"""Checks for 15_pooling_replicas: a pool size on the plateau, a request handler that is
correct behind a real PgBouncer, and a read-your-writes router on a real lagging replica.

* q1 takes the pool curve measured in the notebook (same run, same clients) and the
  learner's pool size: it must be a measured size whose throughput reaches 85% of the
  best measured, and at most twice the smallest size within 90% of it (the knee): past
  it, more connections buy no throughput on this machine's cores, only memory per
  backend, contention and a share of ``max_connections``. Only ratios of one run.
* q2 runs the learner's ``handle_request(conn, user_id, work)`` through the lab's
  PgBouncer (transaction pooling, server connections handed out round robin) on client
  connections in autocommit: two clients on the same user, the second started while
  the first holds its read (``work`` waits for the other to read too, up to a timeout):
  both updates must count (the advisory lock serialises them); every audit row must
  name its own user (``app.user_id`` set inside the request's transaction); a request of
  another user runs while one holds its lock (a constant key or a table lock serialises
  every request); a request whose work raises, in Python or with a database error (an
  aborted transaction, where cleanup statements fail), must pass that exception on; and
  afterwards every server connection of the pool is inspected: no ``app.user_id`` left
  on any (a session ``SET``), no other session setting, ``LISTEN``, temporary table or
  prepared statement (``PREPARE``) that was not there before, no advisory lock held by any backend of the database (a
  session advisory lock, whose unlock ran on another server connection or never); the
  client connection is idle and still in autocommit.
* q3 runs the learner's ``write``/``caught_up``/``read`` on :class:`routing.Session`
  objects: ``caught_up`` is asked about LSNs just below and far above the replica's
  replay position, picked so that comparing their text gets some of them wrong; then,
  under a ``recovery_min_apply_delay`` seeded between 0.6 and 0.9 s, sessions write and
  read back at once (must not be stale), wait until the replica has replayed, and read
  again (most reads must come from the replica: ``pg_is_in_recovery()`` in the read
  says where it ran); finally with replay held back for a minute, a write then a read
  must still be fresh (a router that sleeps a fixed time reads stale, whatever the
  sleep), and again later than any read of the delayed round came after its write (a
  router that trusts the replica some fixed time after a write reads stale then). After
  each write, ``session.last_lsn`` must be at or past the end of the write's COMMIT
  record, read from the WAL with ``pg_walinspect`` (an LSN taken before the commit is
  stale only when the commit is the next record to replay: timing alone cannot show it).
  Every read must return within READ_LIMIT (5 s), whatever the lag: a router that waits
  for the replica to catch up hangs as long as the replica is behind. A ``caught_up`` that
  says True for an LSN the replica has received but not replayed is told so.
  The delay is a lease (``satellites.replica_delay``) released in ``finally``.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Sequence

import psycopg
from psycopg import pq

from ..course import adversarial as adv
from ..course.checking import require
from ..runtime import satellites
from ..runtime.errors import CheckFailed
from ..tools import routing

# the grader gives a graded kernel the lab's PgBouncer and replica (labs.course.grading)
USES_SATELLITES = True

SETTING = "app.user_id"
READ_SQL = "SELECT bio, pg_is_in_recovery() FROM profiles WHERE user_id = %s"
WRITE_SQL = "UPDATE profiles SET bio = %s, version = version + 1 WHERE user_id = %s"


# --------------------------------------------------------------------------
# q1: pool size


def q1(lab: Any, curve: Sequence[routing.CurvePoint], pool_size: Any) -> str:
    require(pool_size)
    if not curve or not all(isinstance(p, routing.CurvePoint) for p in curve):
        raise CheckFailed("Pass the curve measured above (routing.pool_curve(...)) as `curve`.")
    if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 1:
        raise CheckFailed(f"pool_size is {pool_size!r}; it should be a whole number of "
                          "connections, one of the sizes measured above.")
    by_size = {p.size: p for p in curve}
    top = max(p.throughput for p in curve)
    knee = routing.plateau(curve, 0.9)  # the smallest size within 90% of the best
    measured = ", ".join(f"{p.size}: {p.throughput:.0f}/s" for p in curve)
    if pool_size not in by_size:
        raise CheckFailed(
            f"pool_size = {pool_size} was not measured, so nothing says it is on the plateau: "
            f"the curve above flattens at {knee} connections. A pool past the plateau adds "
            "backends that compete for the same cores (each with its own memory and a slot of "
            "max_connections) and buys no throughput; pick a measured size from the knee up.",
            f"measured {measured}")
    point = by_size[pool_size]
    if point.throughput < 0.85 * top:
        raise CheckFailed(
            f"pool_size = {pool_size} is below the plateau: it served {point.throughput:.0f} "
            f"requests/s against {top:.0f}/s at the best size (under 85%). Pick a size from "
            f"the knee of the curve ({knee}) up.", f"measured {measured}")
    # twice the knee leaves room for a noisy curve; a pool of one connection per client
    # thread (16 here), the usual default, is past it whenever the cores are the limit
    if pool_size > 2 * knee:
        raise CheckFailed(
            f"pool_size = {pool_size} is past the plateau: throughput stopped growing at "
            f"{knee} connections on this machine, so the extra {pool_size - knee} backends only "
            "queue for the same cores and hold memory and max_connections slots. Pick a size "
            f"between {knee} and {2 * knee}.", f"measured {measured}")
    return (f"pool_size = {pool_size}: on the plateau ({point.throughput / top:.0%} of the best "
            f"throughput; the knee is at {knee}).")


# --------------------------------------------------------------------------
# q2: a request handler behind PgBouncer


def _pooled(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, prepare_threshold=None)


# parameters PgBouncer itself tracks per client and puts back on every server connection
TRACKED = ["client_encoding", "datestyle", "timezone", "intervalstyle",
           "standard_conforming_strings", "application_name"]


def _server_state(url: str) -> list[tuple[int, Any, int, list[str], list[str], int, list[str]]]:
    """(pid, app.user_id, advisory locks, other session settings, LISTEN channels, temporary
    tables) of every server connection PgBouncer lends for ``url``'s database: POOL_SIZE
    client transactions held open at once, so each is served by a different one."""
    conns = [psycopg.connect(url, autocommit=False, prepare_threshold=None)
             for _ in range(satellites.POOL_SIZE)]
    try:
        return [conn.execute(
            """SELECT pg_backend_pid(), current_setting(%s, true),
                      (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
                       AND pid = pg_backend_pid())::int,
                      ARRAY(SELECT name || ' = ' || setting FROM pg_settings
                            WHERE source = 'session' AND lower(name) <> ALL(%s)
                              AND name <> %s ORDER BY name),
                      ARRAY(SELECT pg_listening_channels()),
                      (SELECT count(*) FROM pg_class
                       WHERE relnamespace = pg_my_temp_schema())::int,
                      ARRAY(SELECT name FROM pg_prepared_statements ORDER BY name)""",
            [SETTING, TRACKED, SETTING]).fetchone() for conn in conns]
    finally:
        for conn in conns:
            conn.rollback()
            conn.close()


def _leftovers(lab: Any, url: str, when: str,
               baseline: dict[str, list] | None = None) -> dict[str, list]:
    """Fail when a server connection of the pool keeps what a request left on it; returns
    the session state seen (the baseline of a later call: what was there before)."""
    state = _server_state(url)
    seen = [s[:3] for s in state]
    with psycopg.connect(lab.url, autocommit=True) as mon:
        held = mon.execute("""SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                              WHERE l.locktype = 'advisory' AND d.datname = current_database()"""
                           ).fetchone()[0]
    if held:
        raise CheckFailed(
            f"{when}, {held} advisory lock(s) were still held by a server connection of the "
            "pool: a session advisory lock (pg_advisory_lock) belongs to the server connection, "
            "not to your client. Behind PgBouncer in transaction mode its unlock runs on "
            "whichever server connection the next transaction gets (or never, when the request "
            "fails: in a transaction aborted by an error no statement runs until ROLLBACK, and "
            "ROLLBACK does not release a session lock), so the lock stays behind and blocks "
            "every later request for that user. Use pg_advisory_xact_lock inside the request's "
            "transaction: COMMIT or ROLLBACK releases it.",
            f"server connections (pid, {SETTING}, advisory locks): {seen}")
    dirty = [s for s in seen if s[1] not in (None, "")]
    if dirty:
        raise CheckFailed(
            f"{when}, a server connection of the pool still had {SETTING} = {dirty[0][1]!r}: "
            "a session-level SET (or set_config(..., false)) outlives the transaction, and "
            "PgBouncer hands that server connection to the next client, whose request then runs "
            "as the wrong user. Use SET LOCAL, or set_config(%s, %s, true), inside the request's "
            "transaction.", f"server connections (pid, {SETTING}, advisory locks): {seen}")
    found = {"settings": sorted({x for s in state for x in s[3]}),
             "channels": sorted({x for s in state for x in s[4]}),
             "temp": [s[5] for s in state if s[5]],
             "prepared": sorted({x for s in state for x in s[6]})}
    if baseline is not None:
        new = sorted(set(found["settings"]) - set(baseline["settings"]))
        if new:
            raise CheckFailed(
                f"{when}, a server connection of the pool kept the session setting {new[0]} "
                "that a request set: a session SET outlives the request's transaction, and "
                "PgBouncer hands that server connection (and the setting) to the next client. "
                "Use SET LOCAL (or set_config(name, value, true)) inside the request's "
                "transaction: it ends with COMMIT or ROLLBACK.", f"all new: {new}")
        prepared = sorted(set(found["prepared"]) - set(baseline.get("prepared", [])))
        if prepared:
            raise CheckFailed(
                f"{when}, a server connection of the pool kept the prepared statement "
                f"{prepared[0]!r} that a request created: a prepared statement (PREPARE, or a "
                "driver's prepare=True) belongs to the server connection. Behind PgBouncer in "
                "transaction mode the next client gets that server connection and fails with "
                "'prepared statement … already exists', or executes on another one where it "
                "does not exist. Do not prepare statements through a transaction pooler (or "
                "DEALLOCATE in the same transaction).", f"all new: {prepared}")
        if set(found["channels"]) - set(baseline["channels"]) or \
                sum(found["temp"]) > sum(baseline["temp"]):
            raise CheckFailed(
                f"{when}, a server connection of the pool still listened on "
                f"{found['channels']} or held {sum(found['temp'])} temporary table(s): session "
                "state that PgBouncer hands to the next client. Keep the request's state in "
                "its transaction (CREATE TEMP TABLE … ON COMMIT DROP), and LISTEN on a direct "
                "connection.")
    return found


def _idle(conn: psycopg.Connection, what: str) -> None:
    if not conn.autocommit:
        raise CheckFailed(
            f"After {what}, the client connection was left with autocommit off: the next "
            "request on it runs every statement inside an implicit transaction that nobody "
            "commits, which pins a PgBouncer server connection (idle in transaction) and "
            "loses its writes. Leave the connection as it came (use with conn.transaction(): "
            "…, or put conn.autocommit back in a finally).")
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise CheckFailed(f"After {what}, the client connection was left inside a transaction "
                          f"({conn.info.transaction_status.name}): handle_request must end the "
                          "transaction it opened (with conn.transaction(): ...).")


OTHER_USER_WAIT = 3.0  # seconds a request holds its lock while another user's request runs


def _other_user(url: str, handle_request: Callable[..., Any], holder: int, other: int) -> None:
    """A request for ``other`` must not wait for one of ``holder`` that is still working."""
    held, other_done = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}
    errors: list[BaseException] = []

    def hold(conn: psycopg.Connection) -> Any:
        conn.execute("SELECT version FROM profiles WHERE user_id = %s", [holder]).fetchone()
        held.set()
        outcome["in_time"] = other_done.wait(OTHER_USER_WAIT)
        return "held"

    def quick(conn: psycopg.Connection) -> Any:
        return conn.execute("SELECT version FROM profiles WHERE user_id = %s",
                            [other]).fetchone()[0]

    def client(uid: int, work: Callable, done: threading.Event | None) -> None:
        try:
            with _pooled(url) as conn:
                handle_request(conn, uid, work)
                _idle(conn, "handle_request")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            if done is not None:
                done.set()

    t1 = threading.Thread(target=client, args=(holder, hold, None), daemon=True)
    t1.start()
    if not held.wait(10):
        t1.join(10)
        if errors:
            raise errors[0]
        raise CheckFailed("handle_request never called work(conn) within 10 s.")
    t2 = threading.Thread(target=client, args=(other, quick, other_done), daemon=True)
    t2.start()
    t1.join(30)
    t2.join(30)
    if errors:
        raise errors[0]
    if not outcome.get("in_time"):
        raise CheckFailed(
            f"A request for user {other} waited for the request of user {holder} to finish: "
            "the lock serialises every request, not the requests of one user (a constant "
            "advisory lock key, or a table lock), so the whole application handles one profile "
            "request at a time. Key the lock on the user: pg_advisory_xact_lock(user_id).")


def q2(lab: Any, handle_request: Callable[..., Any]) -> str:
    require(handle_request)
    rng = adv.rng()
    url = satellites.pooler_url(lab.dbname)
    users = lab.query("SELECT user_id FROM profiles ORDER BY user_id")["user_id"].tolist()
    a_user, b_user = rng.sample(users[: len(users) // 2], 2)
    routing.warm_pool(url)
    baseline = _leftovers(lab, url, "Before your handler ran (a leftover of an earlier run?)")

    def versions(uid: int) -> int:
        return lab.scalar("SELECT version FROM profiles WHERE user_id = %s", [uid])

    # 1. two clients on the same user, interleaved: the second starts after the first read
    for uid in (a_user, b_user):
        before = versions(uid)
        first_read, second_read = threading.Event(), threading.Event()
        errors: list[BaseException] = []
        results: dict[str, Any] = {}

        def work_for(name: str, mine: threading.Event, other: threading.Event,
                     uid: int = uid) -> Callable[[psycopg.Connection], Any]:
            def work(conn: psycopg.Connection) -> Any:
                v = conn.execute("SELECT version FROM profiles WHERE user_id = %s",
                                 [uid]).fetchone()[0]
                mine.set()
                other.wait(0.8)  # the other request reads now, unless a lock holds it back
                conn.execute("UPDATE profiles SET version = %s, bio = %s WHERE user_id = %s",
                             [v + 1, f"{name} {uuid.uuid4().hex[:6]}", uid])
                return f"{name}-{v + 1}"
            return work

        def client(name: str, mine: threading.Event, other: threading.Event) -> None:
            try:
                with _pooled(url) as conn:
                    results[name] = handle_request(conn, uid, work_for(name, mine, other))
                    _idle(conn, "handle_request")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        t1 = threading.Thread(target=client, args=("first", first_read, second_read))
        t1.start()
        if not first_read.wait(10):
            t1.join(10)
            if errors:
                raise errors[0]
            raise CheckFailed("handle_request never called work(conn) within 10 s.")
        t2 = threading.Thread(target=client, args=("second", second_read, first_read))
        t2.start()
        t1.join(30)
        t2.join(30)
        if errors:
            if isinstance(errors[0], CheckFailed):
                raise errors[0]
            raise errors[0]
        after = versions(uid)
        if after != before + 2:
            raise CheckFailed(
                f"Two requests for user {uid} each added 1 to its version, but it went from "
                f"{before} to {after}: a lost update. Both read the version before either wrote, "
                "so the per-user advisory lock did not serialise them. Take "
                "pg_advisory_xact_lock(user_id) inside the request's transaction, before work.")
        if sorted(results.values()) != sorted([f"first-{before + 1}", f"second-{before + 2}"]):
            raise CheckFailed(f"handle_request should return what work(conn) returned; it "
                              f"returned {sorted(map(repr, results.values()))}.")
    wrong = lab.query("SELECT user_id, version, actor FROM profile_audit "
                      "WHERE user_id IN (%s, %s) AND actor IS DISTINCT FROM user_id::text",
                      [a_user, b_user])
    if len(wrong):
        r = wrong.iloc[0]
        raise CheckFailed(
            f"The audit row of user {r.user_id}'s version {r.version} names the actor "
            f"{r.actor!r}: the trigger reads {SETTING}, which must be set inside the same "
            "transaction as the update (set_config(%s, %s, true) or SET LOCAL).")
    _leftovers(lab, url, "After the requests", baseline)
    _other_user(url, handle_request, rng.choice(users[len(users) // 2:]), a_user)

    # 2. a request whose work raises, in Python or in the database: the exception reaches
    # the caller, nothing stays behind
    class Boom(Exception):
        pass

    def failing(conn: psycopg.Connection) -> Any:
        conn.execute("UPDATE profiles SET version = version + 1 WHERE user_id = %s", [a_user])
        raise Boom("the request failed half-way")

    def failing_in_sql(conn: psycopg.Connection) -> Any:
        conn.execute("UPDATE profiles SET version = version + 1 WHERE user_id = %s", [a_user])
        conn.execute("UPDATE profiles SET bio = repeat('x', 201) WHERE user_id = %s",
                     [a_user])  # violates the CHECK on bio: the transaction is aborted

    kinds = [(failing, Boom, "raised"),
             (failing_in_sql, psycopg.errors.CheckViolation, "failed with a database error")]
    for work, expected_exc, how in rng.sample(kinds, 2):
        before = versions(a_user)
        with _pooled(url) as conn:
            try:
                handle_request(conn, a_user, work)
            except expected_exc:
                pass
            except BaseException as exc:  # noqa: BLE001 - judged below
                _leftovers(lab, url, f"After a request whose work {how}", baseline)
                raise CheckFailed(f"A request whose work {how} ({expected_exc.__name__}) ended "
                                  f"with {type(exc).__name__} ({exc}) instead of passing the "
                                  "work's own exception on.") from None
            else:
                raise CheckFailed(f"A request whose work {how} returned normally: "
                                  "handle_request must let the exception reach its caller "
                                  "(after rolling back).")
            _idle(conn, f"a request whose work {how}")
        _leftovers(lab, url, f"After a request whose work {how}", baseline)
        if versions(a_user) != before:
            raise CheckFailed(f"A request whose work {how} still changed the profile: its "
                              "transaction must roll back.")
    return ("Correct through PgBouncer: concurrent requests serialised per user, every audit "
            "row names its user, and no setting or advisory lock stayed on a server connection.")


# --------------------------------------------------------------------------
# q3: read-your-writes router


def _lsn_text(v: int) -> str:
    return f"{v >> 32:X}/{v & 0xFFFFFFFF:X}"


def _lsn_value(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def _probes(replayed: int) -> list[tuple[str, bool]]:
    """(LSN text, replayed?) around ``replayed``: several whose text order is wrong."""
    hi, lo = replayed >> 32, replayed & 0xFFFFFFFF
    values = {replayed: True, max(replayed - 1, 0): True, replayed + (1 << 24): False,
              replayed + (1 << 32): False}
    for k in range(1, 8):  # 'H/F', 'H/FF', ...: smaller, but longer text sorts higher
        v = (hi << 32) | (16 ** k - 1)
        if v <= replayed:
            values[v] = True
        v = (hi << 32) | (16 ** k)  # 'H/10', 'H/100', ...
        if v > replayed:
            values[v] = False
    if hi:
        values[((hi - 1) << 32) | 0xFFFFFFFF] = True
    values[(16 ** len(f"{hi:X}")) << 32] = False  # '10/0' after '9/...'
    return [(_lsn_text(v), ok) for v, ok in sorted(values.items())]


def _commit_end(lab: Any, uid: int, since: str) -> str | None:
    """The LSN where the COMMIT record of the last write to ``uid``'s profile ends (read
    from the WAL with pg_walinspect), or None when the server does not offer it."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            row = conn.execute("""
                SELECT w.end_lsn::text
                FROM pg_get_wal_records_info(%s::pg_lsn, pg_current_wal_flush_lsn()) w
                WHERE w.resource_manager = 'Transaction' AND w.record_type LIKE 'COMMIT%%'
                  AND w.xid::text = (SELECT xmin::text FROM profiles WHERE user_id = %s)
                ORDER BY w.start_lsn DESC LIMIT 1""", [since, uid]).fetchone()
        except psycopg.Error:
            return None
    return row[0] if row else None


def _remembered(lab: Any, s: routing.Session, uid: int, since: str) -> None:
    """session.last_lsn after write() is at or after the end of the write's COMMIT record."""
    end = _commit_end(lab, uid, since)
    if end is None:
        return
    last = s.last_lsn
    try:
        value = _lsn_value(str(last))
    except ValueError:
        raise CheckFailed(f"After write(), session.last_lsn is {last!r}; it should be the LSN "
                          "after the write, as text (SELECT pg_current_wal_lsn()::text on the "
                          "primary once the write has committed).") from None
    if value < _lsn_value(end):
        raise CheckFailed(
            f"After write(), session.last_lsn is {last}, but the write's COMMIT record ends at "
            f"{end} in the WAL: the LSN was taken before the write committed (before the "
            "statement, or inside its transaction). A replica that has replayed up to it has "
            "not replayed the commit, so a read routed by it can be stale whenever the commit "
            "record is the next one to replay. Run the write (autocommit, or commit it), then "
            "read pg_current_wal_lsn().")


READ_LIMIT = 5.0  # s a read may take, whatever the replica's lag


def _timed_read(read: Callable[..., Any], s: routing.Session, uid: int, when: str) -> Any:
    """read(s, READ_SQL, [uid]), which must answer within READ_LIMIT: a router that waits
    for the replica to catch up makes every read after a write as slow as the lag."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["rows"] = read(s, READ_SQL, [uid])
        except BaseException as exc:  # noqa: BLE001 - raised below, in the check's thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    t0 = time.monotonic()
    worker.start()
    worker.join(READ_LIMIT)
    if worker.is_alive():
        raise CheckFailed(
            f"A read {when} had not returned after {READ_LIMIT:g} s: read() waits for the "
            "replica to catch up, so every read after a write takes as long as the replica's "
            "lag, and lag has no upper bound (a bulk load, a replica paused: minutes). When "
            "the replica has not replayed the session's last write, read from the primary "
            "at once.")
    if "error" in box:
        raise box["error"]
    box["seconds"] = time.monotonic() - t0
    return box["rows"]


def _verdict_of(fn: Callable[..., Any], *args: Any) -> bool:
    value = fn(*args)
    if not isinstance(value, bool):
        raise CheckFailed(f"caught_up returned {value!r}; it should return True or False.")
    return value


def q3(lab: Any, write: Callable[..., Any], caught_up: Callable[..., Any],
       read: Callable[..., Any]) -> str:
    require(write, caught_up, read)
    rng = adv.rng()
    users = lab.query("SELECT user_id FROM profiles ORDER BY user_id")["user_id"].tolist()
    picked = rng.sample(users, 8)
    writers, bystanders = picked[:4], picked[4:]
    expected = dict(lab.query("SELECT user_id, bio FROM profiles WHERE user_id = ANY(%s)",
                              [picked]).values.tolist())
    delay = rng.randint(600, 900)
    sessions = [routing.Session.open(lab) for _ in writers]
    tally = {"replica": 0, "primary": 0}

    lag = {"now": f"recovery_min_apply_delay = {delay} ms"}

    def read_back(s: routing.Session, uid: int, when: str) -> None:
        rows = _timed_read(read, s, uid, f"{when} ({lag['now']})")
        if not rows or len(rows[0]) != 2:
            raise CheckFailed(f"read(session, sql, params) returned {rows!r}; it should return "
                              "the rows of the query (cursor.fetchall()).")
        bio, on_replica = rows[0]
        tally["replica" if on_replica else "primary"] += 1
        if bio != expected[uid]:
            raise CheckFailed(
                f"A stale read {when}: user {uid}'s session wrote {expected[uid]!r}, then read "
                f"{bio!r} from the {'replica' if on_replica else 'primary'}, which had not "
                f"replayed the write yet ({lag['now']}). Read from the "
                "replica only when pg_last_wal_replay_lsn() there has reached the LSN of the "
                "session's last write (pg_current_wal_lsn() on the primary after the commit); "
                "otherwise read from the primary. A fixed sleep is a guess about the lag, and "
                "lag has no upper bound.")

    try:
        # 0. caught_up on LSNs around the replay position
        with psycopg.connect(satellites.replica_url(lab.dbname), autocommit=True) as rep:
            s0 = sessions[0]
            with satellites.replica_delay(60_000):
                replayed = _lsn_value(rep.execute("SELECT pg_last_wal_replay_lsn()").fetchone()[0])
                for text, ok in _probes(replayed):
                    said = _verdict_of(caught_up, s0.replica, text)
                    as_text = _lsn_text(replayed) >= text  # what comparing strings says
                    if said != ok and said != as_text:
                        raise CheckFailed(
                            f"caught_up(replica, {text!r}) said {said} while the replica had "
                            f"replayed up to {_lsn_text(replayed)}"
                            + (": an LSN the replica has not applied yet, though it may have "
                               "received it (pg_last_wal_receive_lsn() is WAL received, not "
                               "replayed), so a read there does not see the write. "
                               if said else ": ")
                            + "Compare the LSN with the position the replica has replayed: "
                            "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn.")
                    if said != ok:
                        raise CheckFailed(
                            f"caught_up(replica, {text!r}) said {said} while the replica had "
                            f"replayed up to {_lsn_text(replayed)}: compare LSNs as pg_lsn in "
                            "SQL (pg_last_wal_replay_lsn() >= %s::pg_lsn) or as numbers, never "
                            f"as text: as strings {text!r} "
                            f"{'>' if text > _lsn_text(replayed) else '<'} "
                            f"{_lsn_text(replayed)!r}, which is the wrong way round.")
        # 1. under a delay: write, read back at once, wait for replay, read again
        with satellites.replica_delay(delay):
            first_write = time.monotonic()
            for s, uid in zip(sessions, writers):
                new = f"bio {uuid.uuid4().hex[:10]} of {uid}"
                since = lab.scalar("SELECT pg_current_wal_insert_lsn()::text")
                write(s, WRITE_SQL, [new, uid])
                expected[uid] = new
                _remembered(lab, s, uid, since)  # first: what timing alone may not show
                read_back(s, uid, "right after the write")
            mark = lab.scalar("SELECT pg_current_wal_lsn()::text")
            if not satellites.wait_for_replay(mark, timeout=30):
                raise CheckFailed("The replica did not replay the writes within 30 s: the check "
                                  "could not judge (is the replica running?).")
            for s, uid in zip(sessions, writers):
                for other in [uid, *bystanders, uid]:
                    read_back(s, other, "after the replica had replayed the write")
            span = time.monotonic() - first_write  # from a write to a read the replica served
        share = tally["replica"] / sum(tally.values())
        if share < 0.6:
            raise CheckFailed(
                f"Only {tally['replica']} of {sum(tally.values())} reads went to the replica, "
                "although most came after it had replayed the session's writes: the router "
                "sends reads to the primary it could serve from the replica, and the primary "
                "carries the read load the replica exists for. Read from the replica whenever it "
                "has replayed the session's last write LSN.")
        # 2. replay held back: a write, then a read, must still be fresh
        lag["now"] = "replay held back for a minute"
        with satellites.replica_delay(60_000):
            s, uid = sessions[0], writers[0]
            new = f"bio {uuid.uuid4().hex[:10]} of {uid}"
            write(s, WRITE_SQL, [new, uid])
            written = time.monotonic()
            expected[uid] = new
            read_back(s, uid, "while the replica held replay back")
            # a router that trusts the replica some fixed time after a write (a "sticky
            # primary" window) reads stale once that time has passed: read again later than
            # any read of step 1 came after its write
            time.sleep(max(0.0, 1.25 * span + 0.25 - (time.monotonic() - written)))
            lag["now"] = (f"replay held back for a minute, {time.monotonic() - written:.1f} s "
                          "after the write")
            read_back(s, uid, "a while after the write, the replica still holding replay back")
    finally:
        for s in sessions:
            s.close()
    return (f"Read-your-writes: no stale read under a {delay} ms apply delay or a held-back "
            f"replay, and {tally['replica']} of {sum(tally.values())} reads served by the replica.")


HINTS = {
    "q1": ["routing.plateau(curve) is the smallest size within 90% of the best throughput: "
           "pool_size = routing.plateau(curve)."],
    "q2": ["with conn.transaction(): set_config('app.user_id', %s, true); "
           "SELECT pg_advisory_xact_lock(%s); return work(conn)"],
    "q3": ["write: execute on session.primary, then session.last_lsn = "
           "SELECT pg_current_wal_lsn()::text.",
           "caught_up: SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn on the replica.",
           "read: the replica when session.last_lsn is None or caught_up(...), else the primary."],
}
