"""Checks for 00_start_here: the tour's two small exercises.

Both checks run the learner's query and the reference on the same data, in one
transaction that is rolled back: the dataset plus rows planted from this check
run's seed (``labs.course.adversarial``) to tell right from almost right.

* q1 plants soft-deleted customers newer than everyone (one with a deleted_at
  still ahead), and two groups of active customers tied on ``created_at`` whose
  mixed-case emails, names, countries and physical order each follow a
  permutation that is neither the ids' order nor its reverse: only
  ``ORDER BY created_at DESC, id DESC`` sorts them as asked, and the fifth row
  falls inside a tie, so the tiebreak also decides *which* rows are returned.
  The two instants are a few microseconds apart, in one millisecond whose digits
  are all below 5: rounding or truncating created_at to any coarser precision
  (``::timestamptz(0)``, ``date_trunc``) merges the groups, and the newer one
  then sorts below the older one's higher ids. The newest-id customer of the
  older group that is among the five has an email equal, once case is ignored,
  to one in the newer group: two customers, both returned (a ``DISTINCT ON
  (lower(email))`` drops one). An answer that returns the right five is run again
  after the customers tied at the fifth place are rewritten in other physical
  orders (ascending ids, seeded permutations): a cut made without the id tiebreak
  (``row_number() OVER (ORDER BY created_at DESC)``, a LIMIT over created_at alone,
  sorted by id only afterwards) then returns others. The groups sign up in the hour the
  session's zone repeats when its clocks go back, after an older customer who
  signed up at a later wall-clock time in the first pass of that hour: a sort
  by local time (``created_at::timestamp``) puts that customer first.
* q2 plants several groups of case variants, of different sizes (load-test and
  soft-deleted customers in some), one mailbox name on two domains, and
  addresses with LIKE and regular-expression metacharacters (``_ % \\ .``)
  next to addresses their pattern matches: counting addresses, pairs, local
  parts, only active or only real customers, or pattern matches gives a number
  other than the number of customers. Near-miss pairs (a stray space, a ``+tag``,
  é composed and decomposed, JOSÉ/josé, σ/ς, the Kelvin sign and k), in seeded
  numbers, make trim(), dropping the tag, NFKC, ``COLLATE "C"`` and upper() each
  count otherwise than ``lower(email)`` equality, the task's rule.

Both run on a session whose TimeZone is not UTC, with the rest of
``customers`` watched (``untouched``).
"""

from __future__ import annotations

import datetime as dt
import random
import string
from zoneinfo import ZoneInfo

import psycopg
from psycopg import pq

from ..course import adversarial as adv
from ..course.checking import CheckFailed, compare_results, require
from ..course.left_behind import untouched

PLANTED_DOMAIN = "planted.example.org"


def _run(cur: psycopg.Cursor, sql: str, what: str, params=None) -> tuple[list[str], list[tuple]]:
    try:
        cur.execute("SAVEPOINT attempt")
        cur.execute(sql, params)
    except psycopg.Error as exc:
        if cur.connection.info.transaction_status == pq.TransactionStatus.INERROR:
            cur.execute("ROLLBACK TO SAVEPOINT attempt")
        raise CheckFailed(f"PostgreSQL rejected {what}: {exc.diag.message_primary or exc}",
                          f"SQLSTATE {exc.sqlstate}") from None
    if cur.connection.info.transaction_status != pq.TransactionStatus.INTRANS:
        raise _ended_transaction(what)
    if cur.description is None:
        raise CheckFailed(f"{what} returned no result set; it should be one SELECT.")
    return [c.name for c in cur.description], cur.fetchall()


class _EndedTransaction(CheckFailed):
    pass


def _ended_transaction(what: str) -> CheckFailed:
    return _EndedTransaction(
        f"{what} ended the transaction the check runs it in (a COMMIT or ROLLBACK inside the "
        "SQL). Hand in one SELECT, nothing else.")


def _session(lab, zone: str) -> psycopg.Connection:
    """A connection (autocommit off) on a non-UTC session, read-only after the planting."""
    conn = lab.connect()
    conn.execute("SELECT set_config('TimeZone', %s, false)", [zone])
    conn.commit()
    return conn


def _read_only(cur: psycopg.Cursor) -> None:
    # After the planting: the answer is a query, it has no business writing.
    cur.execute("SET LOCAL transaction_read_only = on")


def _cleanup(lab, emails: list[str]) -> None:
    """Remove planted rows that an answer's COMMIT made permanent."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute("DELETE FROM customers WHERE email = ANY(%s)", [emails])


def _letters(n: int, rand: random.Random) -> list[str]:
    """n distinct lowercase letters, ascending."""
    return sorted(rand.sample(string.ascii_lowercase, n))


# -- q1: newest active customers, ties by id desc ---------------------------------


def _fall_back(tz: dt.tzinfo, after: dt.datetime) -> tuple[dt.datetime, dt.timedelta] | None:
    """The first instant after ``after`` when the clocks of ``tz`` go back, and by how much
    (the wall-clock times of the ``gap`` before it happen again in the ``gap`` after it)."""
    at = after.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    for _ in range(2 * 366 * 24):
        nxt = at + dt.timedelta(hours=1)
        gap = at.astimezone(tz).utcoffset() - nxt.astimezone(tz).utcoffset()
        if gap > dt.timedelta(0):
            while (nxt - dt.timedelta(minutes=1)).astimezone(tz).utcoffset() != \
                    at.astimezone(tz).utcoffset():  # transitions fall on a whole minute
                nxt -= dt.timedelta(minutes=1)
            return nxt, gap
        at = nxt
    return None


def _newest_zone(lab, rand: random.Random) -> str:
    """A non-UTC zone whose clocks go back after the newest sign-up (all but Kathmandu)."""
    base = lab.scalar("SELECT max(created_at) FROM customers") or dt.datetime(
        2026, 1, 1, tzinfo=dt.timezone.utc)
    zones = [z for z in adv.NON_UTC_ZONES
             if _fall_back(ZoneInfo(z), base + dt.timedelta(days=1)) is not None]
    return rand.choice(zones) if zones else adv.non_utc_zone(rand=rand)


def _plant_newest(cur: psycopg.Cursor, rand: random.Random, zone: str) -> list[str]:
    """Plant deleted-newest rows and two tied groups; return the planted emails."""
    cur.execute("SELECT max(created_at), now() FROM customers")
    base, now = cur.fetchone()
    base = base or dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    # The tied groups sign up in the hour the session's zone repeats when its clocks go
    # back, on its second pass; one older active customer signed up on the first pass, at
    # a later wall-clock time. Sorting by a local timestamp (created_at::timestamp, AT TIME
    # ZONE) puts that older customer first.
    change, gap = _fall_back(ZoneInfo(zone), base + dt.timedelta(days=1)) or (
        base + dt.timedelta(days=rand.randint(1, 3)), None)
    seconds = int(gap.total_seconds()) if gap else 3600
    # T1 and T2 are 1 to 4 microseconds apart, in one millisecond whose every digit is below
    # 5 (e.g. .231002 and .231000): rounding them to any coarser precision (timestamptz(0) to
    # timestamptz(5)) or truncating them (date_trunc('second'), ::timestamptz(3)...) gives
    # both the same value, so a sort by it merges the two groups.
    millis = 100 * rand.randint(1, 4) + 10 * rand.randint(0, 4) + rand.randint(0, 4)
    micros = rand.randint(1, 4)
    t1 = (change + dt.timedelta(seconds=rand.randint(seconds // 4, seconds // 2))).replace(
        microsecond=millis * 1000 + micros)
    t2 = t1 - dt.timedelta(microseconds=rand.randint(1, micros))
    # first pass: t1's wall-clock time plus 1 to 29 minutes, an instant before the change
    first_pass = t1 - dt.timedelta(seconds=seconds - rand.randint(60, seconds // 2 - 60)) \
        if gap else None
    tag = rand.randint(10_000, 99_999)
    countries = ["AT", "BE", "CH", "DE", "ES", "FR", "IT", "NL", "PL", "SE"]
    planted: list[str] = []

    def insert(email: str, name: str, country: str, created: dt.datetime,
               deleted: dt.datetime | None) -> int:
        cur.execute("""INSERT INTO customers (email, full_name, country, created_at, deleted_at)
                       VALUES (%s, %s, %s, %s, %s) RETURNING id""",
                    [email, name, country, created, deleted])
        planted.append(email)
        return cur.fetchone()[0]

    def deletion() -> dt.datetime:
        """A deleted_at in the past, or one still ahead (a deletion with a date to come)."""
        if rand.random() < 0.5:
            return base - dt.timedelta(days=rand.randint(0, 30), seconds=rand.randint(1, 86_000))
        return now + dt.timedelta(days=rand.randint(1, 60), seconds=rand.randint(1, 86_000))

    # Soft-deleted customers newer than everyone (one of them tied with group A): the
    # newest has a deleted_at still ahead, the next one in the past.
    for k in range(rand.randint(2, 3)):
        deleted = (now + dt.timedelta(days=rand.randint(1, 60)) if k == 0 else
                   base - dt.timedelta(days=rand.randint(0, 30)) if k == 1 else deletion())
        insert(f"Gone{k}.{tag}@{PLANTED_DOMAIN}", f"Gone {k}", rand.choice(countries),
               t1 + dt.timedelta(hours=k + 1, microseconds=rand.randint(1, 999_999)), deleted)
    if first_pass:
        insert(f"e.Early{tag}@{PLANTED_DOMAIN}", "Early Bird", rand.choice(countries),
               first_pass, None)
    sizes = {"a": rand.choice([3, 4]), "b": rand.randint(3, 5)}
    deleted_at = rand.randint(0, sizes["a"] - 1)
    newer_emails: list[str] = []
    # one address of the newest group ends with a stray space, as some sign-up forms store it:
    # returned as stored, it keeps the space (trim() or any cleaning returns another value)
    spaced = rand.randrange(sizes["a"])
    for group, created in (("a", t1), ("b", t2)):
        n = sizes[group]
        email_rank, name_rank, country_rank, update_order = (
            adv.tie_order(n, rand=rand) for _ in range(4))
        letters = _letters(n, rand)
        names = _letters(n, rand)
        codes = sorted(rand.sample(countries, n))
        ids = []
        for i in range(n):  # ids ascend in insertion order
            if group == "a" and i == deleted_at:
                insert(f"gone.Tied.{tag}@{PLANTED_DOMAIN}", "Gone Tied", "DE", created,
                       deletion())
            # The address as typed, in mixed case (the first letter, lowercase, orders them)
            email = f"{letters[email_rank[i]]}.Tie{group.upper()}{tag}@{PLANTED_DOMAIN}"
            if group == "b" and i == n - 1:
                # the older group's highest id, always among the five: a case-twin of an
                # address of the newer group (another customer, equal once case is ignored)
                email = rand.choice(newer_emails).swapcase()
            elif group == "a":
                if i == spaced:
                    email += " "
                newer_emails.append(email)
            ids.append(insert(email, f"{names[name_rank[i]].upper()}. Tied",
                              codes[country_rank[i]], created, None))
        # Physical order (what a sort without a tiebreak tends to return): a no-op UPDATE
        # writes a new row version, at the end of the table, in this permutation's order.
        for i in update_order:
            cur.execute("UPDATE customers SET city = city WHERE id = %s", [ids[i]])
    return planted


def _to_second(times: list) -> list:
    return [t.replace(microsecond=0) for t in times]


def _dropped_twin(rows: list[tuple], want6: list[tuple]) -> str:
    """The email of a customer the reference returns and the answer does not, when the
    answer is otherwise the reference's rows in its order (one skipped) and returns a
    customer with the same email once case is ignored; "" otherwise."""
    got_ids = [r[0] for r in rows]
    skipped = [r for r in want6 if r[0] not in got_ids]
    if [r[0] for r in want6 if r[0] in got_ids] != got_ids or len(skipped) != 1:
        return ""
    twins = [r[1] for r in rows if isinstance(r[1], str) and isinstance(skipped[0][1], str)
             and r[1].lower() == skipped[0][1].lower()]
    return f"{skipped[0][1]} and {twins[0]}" if twins else ""


NEWEST_REFERENCE = """SELECT id, email, created_at FROM customers
                      WHERE deleted_at IS NULL
                      ORDER BY created_at DESC, id DESC LIMIT 5"""


def q1(lab, newest_sql: str) -> str:
    """Five newest customers still active: id, email, created_at; newest first, ties by id desc."""
    require(newest_sql)
    rand = adv.rng()
    zone = _newest_zone(lab, rand)
    planted: list[str] = []
    with untouched(lab, ["customers"]), _session(lab, zone) as conn, conn.cursor() as cur:
        try:
            planted = _plant_newest(cur, rand, zone)
            cur.execute("SAVEPOINT planted")  # read-only from here until rolled back to it
            _read_only(cur)
            columns, rows = _run(cur, newest_sql, "your query")
            _, want6 = _run(cur, NEWEST_REFERENCE.replace("LIMIT 5", "LIMIT 6"),
                            "the reference query")
            want = want6[:5]
            reordered = _rerun_reordered(cur, newest_sql, columns, rows, want, rand)
            # what a sort by created_at to the second returns (rounded or truncated: on the
            # planted rows, the same), to name that mistake
            _, coarse = _run(cur, NEWEST_REFERENCE.replace(
                "ORDER BY created_at DESC", "ORDER BY date_trunc('second', created_at) DESC"),
                "the reference query")
            lowered = [c.lower() for c in columns]
            if "id" in lowered and rows:
                ids = [r[lowered.index("id")] for r in rows]
                _, found = _run(cur, "SELECT id FROM customers WHERE deleted_at IS NOT NULL "
                                     "AND id = ANY(%s::bigint[])", "a lookup", [ids])
                if found:
                    raise CheckFailed(
                        "Your result includes soft-deleted customers (their deleted_at is "
                        "set; for some it is a date still ahead, and a customer with any "
                        "deleted_at is deleted). Add WHERE deleted_at IS NULL.",
                        f"deleted ids: {sorted(r[0] for r in found)}")
        except _EndedTransaction:
            _cleanup(lab, planted)
            raise
        finally:
            if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
                conn.rollback()
    try:
        compare_results(columns, rows, ["id", "email", "created_at"], want, ordered=True,
                        what="your query")
    except CheckFailed as exc:
        if [c.lower() for c in columns] == ["id", "email", "created_at"] and len(rows) == 5:
            got_times = [r[2] for r in rows]
            aware = all(isinstance(t, dt.datetime) and t.tzinfo for t in got_times)
            # Instants in UTC (Python compares two datetimes of one zone by their wall-clock
            # times, whatever their fold), and the session zone's wall-clock times.
            wall = [t.astimezone(ZoneInfo(zone)).replace(tzinfo=None) for t in got_times] \
                if aware else None
            got_times = [t.astimezone(dt.timezone.utc) for t in got_times] if aware else got_times
            want_times = [r[2].astimezone(dt.timezone.utc) for r in want]  # (PEP 495: an
            # instant of a repeated hour never equals one of another zone)
            if ([r[0] for r in rows] == [r[0] for r in want] and got_times == want_times
                    and [r[1] for r in rows] != [r[1] for r in want]):
                exc.message = ("Your ids and times are right, but not the emails: return email "
                               "as stored (lower(), upper() or trim() changes the address, and "
                               "the check plants mixed-case ones and one stored with a trailing "
                               "space). " + exc.message)
            elif not aware:
                exc.message = ("Your created_at is not the column as stored (a timestamp with "
                               "time zone): return created_at itself. " + exc.message)
            elif sorted(got_times, reverse=True) != got_times and \
                    sorted(wall, reverse=True) == wall:
                exc.message = (f"Your rows are in local wall-clock order ({zone}), not newest "
                               "first: in the hour that repeats when the clocks go back, a "
                               "customer who signed up at (say) 01:10 the second time round is "
                               "newer than one at 01:50 the first time. Sort by created_at itself (a "
                               "timestamptz, an instant), not by created_at::timestamp or AT "
                               "TIME ZONE. " + exc.message)
            elif [r[0] for r in rows] == [r[0] for r in coarse] or (
                    sorted(got_times, reverse=True) != got_times and
                    _to_second(got_times) == sorted(_to_second(got_times), reverse=True)):
                exc.message = ("Your rows are newest first only to the second: customers who "
                               "signed up a few microseconds apart, within one second, come out "
                               "in the wrong order (ranked by id). Sort by created_at itself, to "
                               "the microsecond, not by a rounded or truncated value "
                               "(::timestamptz(0), date_trunc). " + exc.message)
            elif sorted(got_times, reverse=True) != got_times:
                exc.message = ("Your rows are not newest first: sort by created_at DESC. "
                               + exc.message)
            elif _dropped_twin(rows, want6):
                # The same rows come from an answer that picks the tied customers at the
                # cutoff without the id tiebreak (row_number() OVER (ORDER BY created_at
                # DESC), a LIMIT over created_at alone, then a sort by id): name both.
                skipped = [r for r in want6 if r[0] not in [g[0] for g in rows]][0]
                tied = len(want6) == 6 and want6[5][0] in [g[0] for g in rows] and \
                    want6[5][2] == skipped[2]
                exc.message = ("Your result leaves out a customer whose email equals another "
                               "returned customer's once case is ignored "
                               f"({_dropped_twin(rows, want6)}): they are two customers, two "
                               "rows, and the task asks for every active one (DISTINCT ON "
                               "(lower(email)) or GROUP BY keeps one of them)"
                               + (f"; or, with neither in your query: customer {skipped[0]} "
                                  f"was tied on created_at with customer {want6[5][0]}, who "
                                  "took its place, so your query chose which tied customers "
                                  "make the five without the id tiebreak (a row_number() or "
                                  "a LIMIT over created_at alone, sorted by id only after "
                                  "the cut): put id DESC in the ORDER BY that decides the cut"
                                  if tied else "") + ". " + exc.message)
            elif got_times == want_times:
                exc.message = ("Customers who signed up at the same instant are not broken by "
                               "id, highest first: add id DESC after created_at DESC (another "
                               "column, or none, sorts ties differently). " + exc.message)
            exc.args = (exc.message + (f"\n  Detail: {exc.detail}" if exc.detail else ""),)
        raise
    if reordered:
        raise CheckFailed(
            "Customers who signed up at the same instant are not broken by id, highest first, "
            "where the five are cut: your query returned the right five this time, but after "
            "the customers tied at the fifth place were rewritten in another physical order "
            "(as an UPDATE or VACUUM does) it returned others. Which tied rows make the cut "
            "must be decided by id DESC in the same ORDER BY (a row_number() or LIMIT over "
            "created_at alone, sorted by id only afterwards, leaves it to the plan): ORDER BY "
            "created_at DESC, id DESC LIMIT 5.", reordered)
    return "the five newest active customers, ties broken by id, in the right order"


def _rerun_reordered(cur: psycopg.Cursor, sql: str, columns: list[str], rows: list[tuple],
                     want: list[tuple], rand: random.Random) -> str:
    """When the answer returned the right rows, run it again after the customers tied at
    the fifth place are rewritten in other physical orders (ascending ids, then seeded
    permutations): a cut made without the id tiebreak then picks other customers. Returns
    what differed ("" if nothing)."""
    lowered = [c.lower() for c in columns]
    if "id" not in lowered or len(want) < 5 or \
            [r[lowered.index("id")] for r in rows] != [w[0] for w in want]:
        return ""
    cur.execute("SELECT id FROM customers WHERE deleted_at IS NULL AND created_at = %s "
                "ORDER BY id", [want[4][2]])
    tied = [r[0] for r in cur.fetchall()]
    if len(tied) < 2:
        return ""
    orders = [tied] + [rand.sample(tied, len(tied)) for _ in range(2)]
    for order in orders:
        cur.execute("ROLLBACK TO SAVEPOINT planted")  # writable again, read-only undone
        for customer in order:  # a no-op UPDATE writes a new row version at the table's end
            cur.execute("UPDATE customers SET city = city WHERE id = %s", [customer])
        _read_only(cur)
        again_columns, again = _run(cur, sql, "your query")
        ids = [r[[c.lower() for c in again_columns].index("id")] for r in again] \
            if "id" in [c.lower() for c in again_columns] else []
        if ids != [w[0] for w in want]:
            return (f"tied customers {tied} written in the order {order}: your ids {ids}, "
                    f"expected {[w[0] for w in want]}")
    return ""


# -- q2: emails that collide once case is ignored -----------------------------------


def _spellings(text: str, k: int, rand: random.Random) -> list[str]:
    """k distinct spellings of text, equal once case is ignored."""
    found = list(dict.fromkeys(adv.case_variants(text, rand=rand)))
    while len(found) < k:
        mixed = "".join(c.upper() if rand.random() < 0.5 else c.lower() for c in text)
        if mixed not in found:
            found.append(mixed)
    return found[:k]


def _plant_collisions(cur: psycopg.Cursor, rand: random.Random) -> tuple[list[str], list[int]]:
    """Case-variant groups of different sizes (with load-test and soft-deleted customers in
    some), addresses that share only the part before the @, and LIKE traps; returns
    (emails, group sizes)."""
    tag = rand.randint(10_000, 99_999)
    while True:
        sizes = [rand.choice([2, 3, 4, 5]) for _ in range(rand.randint(2, 4))]
        if max(sizes) >= 3 and len(set(sizes)) > 1:
            break
    # (email, is_load_test, deleted)
    rows: list[tuple[str, bool, bool]] = []
    load_group, deleted_group = rand.sample(range(len(sizes)), 2)
    for g, k in enumerate(sizes):
        # some groups carry a '_' themselves: ann_lee and ANN_LEE are one mailbox
        sep = rand.choice(["_", ".", "-"])
        local = f"{rand.choice(['ann', 'bo', 'cy', 'dee'])}{sep}g{g}x{tag}"
        group = _spellings(f"{local}@{PLANTED_DOMAIN}", k, rand)
        # load-test customers and soft-deleted ones are customers too
        marked = set(rand.sample(range(k), rand.randint(1, k - 1)))
        rows += [(e, g == load_group and i in marked, g == deleted_group and i in marked)
                 for i, e in enumerate(group)]
    # The same mailbox name on other domains is another mailbox: not a collision.
    for p in range(rand.randint(1, 3)):
        local = f"{rand.choice(['eve', 'flo', 'gus'])}.p{p}x{tag}"
        names = _spellings(local, 2, rand)
        rows += [(f"{names[0]}@mail-a.{PLANTED_DOMAIN}", False, False),
                 (f"{names[1]}@mail-b.{PLANTED_DOMAIN}", False, False)]
    # '.' and '+' are metacharacters to a regular expression too: ann.lee@x matches annqlee@x.
    for r in range(rand.randint(1, 2)):
        first, last = rand.choice(["ann", "bo", "cy"]), rand.choice(["lee", "ray", "sun"])
        other = f"{first}{rand.choice(string.ascii_lowercase)}{last}.r{r}x{tag}@{PLANTED_DOMAIN}"
        rows += [(f"{first}.{last}.r{r}x{tag}@{PLANTED_DOMAIN}", False, False),
                 (other.upper() if rand.random() < 0.5 else other, False, False)]
    # Addresses with LIKE metacharacters, each next to a different address its pattern
    # matches (and in a random case, so ILIKE matches them too).
    for trap, other in adv.like_traps(rand=rand, domain=PLANTED_DOMAIN):
        rows += [(trap, False, False), (other.upper() if rand.random() < 0.5 else other,
                                        False, False)]
    # Near-misses that only another "normalisation" than lower() joins or splits, so that
    # trim(), dropping a +tag, NFKC, COLLATE "C" and upper() each give a count of their own:
    # a stray space; a +tag; é composed and decomposed (lower() leaves both as they are);
    # JOSÉ and josé (lower() folds non-ASCII letters too, COLLATE "C" only ASCII ones); σ and
    # final ς (one letter to upper(), two to lower()); the Kelvin sign K and k (one to
    # lower(), two to upper()). The counts differ, so that each measure gives a number of
    # its own: 1, 2 and 3 pairs that trim(), the tag and NFKC add, and more Kelvin pairs
    # than sigma ones (upper() loses more than it adds).
    ws, plus, nfd = rand.sample([1, 2, 3], 3)
    near = {"ws": ws, "plus": plus, "nfd": nfd, "accent": rand.randint(1, 2), "sigma": 1,
            "kelvin": rand.randint(2, 3)}
    for kind, count in near.items():
        for n in range(count):
            stem = f"{rand.choice(['ann', 'bo', 'cy'])}.{kind}{n}x{tag}"
            pair = {
                "ws": (f"{stem}@{PLANTED_DOMAIN}", rand.choice(
                    [f" {stem}@{PLANTED_DOMAIN}", f"{stem}@{PLANTED_DOMAIN} "])),
                "plus": (f"{stem}@{PLANTED_DOMAIN}", f"{stem}+news@{PLANTED_DOMAIN}"),
                "nfd": (f"jos\u00e9.{stem}@{PLANTED_DOMAIN}",
                        f"jose\u0301.{stem}@{PLANTED_DOMAIN}"),
                "accent": (f"jos\u00e9.{stem}@{PLANTED_DOMAIN}",
                           f"JOS\u00c9.{stem.upper()}@{PLANTED_DOMAIN}"),
                "sigma": (f"{stem}.ma\u03c3@{PLANTED_DOMAIN}", f"{stem}.ma\u03c2@{PLANTED_DOMAIN}"),
                "kelvin": (f"\u212a.{stem}@{PLANTED_DOMAIN}", f"k.{stem}@{PLANTED_DOMAIN}"),
            }[kind]
            rows += [(e, False, False) for e in pair]
    rand.shuffle(rows)
    for email, load_test, deleted in rows:
        cur.execute("INSERT INTO customers (email, full_name, country, created_at, "
                    "is_load_test, deleted_at) VALUES (%s, 'Planted Collision', 'US', now(), "
                    "%s, CASE WHEN %s THEN now() END)", [email, load_test, deleted])
    return [r[0] for r in rows], sizes


def _shadow_customers(cur: psycopg.Cursor, rand: random.Random) -> int:
    """A temporary ``customers`` (it shadows public.customers for this transaction): every
    customer whose address collides, a seeded sample of addresses with LIKE metacharacters
    and of the others. Small, so that an answer comparing with LIKE (a pattern join,
    quadratic) is judged in seconds rather than minutes, on the same rows as the reference."""
    salt = rand.randint(0, 2**31)
    cur.execute("CREATE TEMP TABLE customers (LIKE public.customers INCLUDING ALL) "
                "ON COMMIT DROP")
    cur.execute("""
        INSERT INTO pg_temp.customers
        SELECT * FROM public.customers WHERE lower(email) IN (
            SELECT lower(email) FROM public.customers GROUP BY 1 HAVING count(*) > 1)
        UNION
        (SELECT * FROM public.customers WHERE email ~ '[_%%]' OR strpos(email, chr(92)) > 0
         ORDER BY hashint8(id + %(salt)s) LIMIT %(meta)s)
        UNION
        (SELECT * FROM public.customers ORDER BY hashint8(id - %(salt)s) LIMIT %(other)s)""",
                {"salt": salt, "meta": adv.non_round(150, rand=rand),
                 "other": adv.non_round(250, rand=rand)})
    copied = cur.rowcount
    # planted rows take ids after the real table's, as they would there
    cur.execute("SELECT setval(pg_get_serial_sequence('pg_temp.customers', 'id'), "
                "(SELECT max(id) FROM public.customers))")
    return copied


def _public_scans(cur: psycopg.Cursor) -> tuple:
    cur.execute("SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables "
                "WHERE relid = 'public.customers'::regclass")
    return tuple(cur.fetchone() or ())


# Numbers an almost-right answer returns instead of the customers' count.
COLLISION_MEASURES = {
    "right": """SELECT count(*) FROM customers c WHERE EXISTS (
                    SELECT 1 FROM customers o WHERE lower(o.email) = lower(c.email)
                    AND o.id <> c.id)""",
    "addresses": """SELECT count(*) FROM (SELECT 1 FROM customers GROUP BY lower(email)
                    HAVING count(*) > 1) d""",
    "pairs": """SELECT count(*) FROM customers c JOIN customers o
                ON lower(o.email) = lower(c.email) AND o.id < c.id""",
    "ordered pairs": """SELECT count(*) FROM customers c JOIN customers o
                        ON lower(o.email) = lower(c.email) AND o.id <> c.id""",
    "extra in the group": """SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n
                             FROM customers GROUP BY lower(email) HAVING count(*) > 1) d""",
    "like": """SELECT count(*) FROM customers c WHERE EXISTS (
                   SELECT 1 FROM customers o WHERE o.email ILIKE c.email AND o.id <> c.id)""",
    "active only": """SELECT count(*) FROM customers c WHERE deleted_at IS NULL AND EXISTS (
                    SELECT 1 FROM customers o WHERE lower(o.email) = lower(c.email)
                    AND o.id <> c.id AND o.deleted_at IS NULL)""",
    "no load tests": """SELECT count(*) FROM customers c WHERE NOT is_load_test AND EXISTS (
                    SELECT 1 FROM customers o WHERE lower(o.email) = lower(c.email)
                    AND o.id <> c.id AND NOT o.is_load_test)""",
    "local part": """SELECT count(*) FROM customers c WHERE EXISTS (
                    SELECT 1 FROM customers o WHERE o.id <> c.id AND
                    lower(split_part(o.email, '@', 1)) = lower(split_part(c.email, '@', 1)))""",
    "trimmed": """SELECT count(*) FROM customers c WHERE EXISTS (
                    SELECT 1 FROM customers o WHERE lower(trim(o.email)) = lower(trim(c.email))
                    AND o.id <> c.id)""",
    "plus tag": """SELECT count(*) FROM customers c WHERE EXISTS (
                    SELECT 1 FROM customers o WHERE o.id <> c.id AND
                    regexp_replace(lower(o.email), '[+][^@]*@', '@')
                    = regexp_replace(lower(c.email), '[+][^@]*@', '@'))""",
    "normalized": """SELECT count(*) FROM customers c WHERE EXISTS (
                    SELECT 1 FROM customers o WHERE o.id <> c.id AND
                    normalize(lower(o.email), NFKC) = normalize(lower(c.email), NFKC))""",
    "collate C": """SELECT count(*) FROM customers c WHERE EXISTS (
                    SELECT 1 FROM customers o WHERE o.id <> c.id AND
                    lower(o.email COLLATE "C") = lower(c.email COLLATE "C"))""",
    "upper": """SELECT count(*) FROM customers c WHERE EXISTS (
                    SELECT 1 FROM customers o WHERE upper(o.email) = upper(c.email)
                    AND o.id <> c.id)""",
}

MISTAKES = {
    "addresses": "that is the number of colliding addresses (groups), not of customers. Count "
                 "customers: every customer in a group of k counts, so the group adds k",
    "pairs": "that is the number of colliding pairs, not of customers (a group of three is "
             "three pairs but three customers). Count customers, not pairs",
    "ordered pairs": "that counts each customer once per other customer sharing the address "
                     "(a join, not EXISTS). Count customers, not pairs",
    "extra in the group": "that counts only the duplicates beyond the first of each address. "
                          "Count customers: every customer of a group counts",
    "like": "LIKE/ILIKE treats `_` and `%` in an address as wildcards (real addresses contain "
            "`_`), so 'ann_lee@x' matches 'annxlee@x'. Compare lower(email) with =, not a "
            "LIKE wildcard pattern",
    "active only": "that leaves soft-deleted customers out; the task counts every customer "
                   "(a soft-deleted row still holds its email in the unique index)",
    "no load tests": "that leaves load-test customers (is_load_test) out; the task counts every "
                     "customer, and their rows hold their emails in the unique index too",
    "local part": "that compares only the part before the @: ann@one.org and ANN@two.org are "
                  "two mailboxes. Compare the whole address, lower(email)",
    "trimmed": "trim() makes 'ann@x.org ' and 'ann@x.org' one address, but they are two values "
               "that differ by more than case (a unique index on lower(email) accepts both). "
               "Compare lower(email) as stored, nothing else cleaned",
    "plus tag": "dropping the +tag makes 'bo+news@x.org' and 'bo@x.org' one address: that is "
                "a mail provider's rule, not case. Compare lower(email) as stored",
    "normalized": "Unicode normalisation (NFKC) makes differently encoded letters (é composed "
                  "and e + combining accent) one address: that is more than ignoring case, and "
                  "a unique index on lower(email) accepts both. Compare lower(email) as stored",
    "collate C": "under COLLATE \"C\" lower() folds only ASCII letters, so JOSÉ@x and josé@x stay "
                 "apart. Compare lower(email) in the database's own collation",
    "upper": "upper() folds case differently from lower() outside ASCII: σ and final ς are one "
             "letter to upper() and two to lower(), the Kelvin sign K is k to lower() but stays "
             "K to upper(). The task's rule is lower(email) equality (what a unique index on "
             "lower(email) enforces)",
}


def q2(lab, collisions_sql: str) -> str:
    """How many customers share their email with another customer once case is ignored."""
    require(collisions_sql)
    rand = adv.rng()
    zone = adv.non_utc_zone(rand=rand)
    planted: list[str] = []
    with untouched(lab, ["customers"]), _session(lab, zone) as conn, conn.cursor() as cur:
        try:
            base = _shadow_customers(cur, rand)
            # Plant until every almost-right measure gives another number (and, if the dice
            # allow, each a number of its own, so that the verdict names the mistake).
            for attempt in range(30):
                cur.execute("SAVEPOINT plant")
                planted, sizes = _plant_collisions(cur, rand)
                measures = {}
                for name, sql in COLLISION_MEASURES.items():
                    cur.execute(sql)
                    measures[name] = cur.fetchone()[0]
                wrong = [v for k, v in measures.items() if k in MISTAKES]
                if measures["right"] not in wrong and (len(set(wrong)) == len(wrong)
                                                       or attempt >= 20):
                    break
                cur.execute("ROLLBACK TO SAVEPOINT plant")
            else:
                raise RuntimeError("could not plant collisions that separate the measures")
            _read_only(cur)
            before = _public_scans(cur)
            columns, rows = _run(cur, collisions_sql, "your query")
            if _public_scans(cur) != before:
                raise CheckFailed(
                    "Your query reads public.customers by its schema-qualified name; write "
                    "`customers` (the check runs your query on a copy of the table with "
                    "planted collisions, and the schema-qualified name bypasses it).")
        except _EndedTransaction:
            _cleanup(lab, planted)
            raise
        finally:
            if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
                conn.rollback()
    if len(rows) != 1 or len(rows[0]) != 1:
        raise CheckFailed(f"Your query should return one row with one column (n); it returned "
                          f"{len(rows)} row(s) of {len(columns)} column(s).")
    got, expected = rows[0][0], measures["right"]
    detail = (f"planted: case-variant groups of sizes {sizes} (with load-test and soft-deleted "
              f"customers), one name on two domains, addresses with LIKE and regular-expression "
              f"metacharacters, near-misses (a stray space, a +tag, é composed and decomposed, "
              f"JOSÉ/josé, σ/ς, the Kelvin sign/k); "
              + ", ".join(f"{k}: {v}" for k, v in measures.items()))
    if got == 0:
        raise CheckFailed("Your query found no collisions. `email` is unique as stored, so the "
                          "duplicates only appear when you compare lower(email).", detail)
    if got != expected:
        named = [k for k, v in measures.items() if v == got and k in MISTAKES]
        # the planting separates the measures when the dice allow; when two mistakes still
        # give this number, name both rather than guess which one the query makes
        why = (MISTAKES[named[0]] if len(named) == 1 else
               "that is the number more than one mistake gives, so yours is one of these: "
               + "; or ".join(MISTAKES[k] for k in named) if named else
               "that is not the number of customers whose email equals another customer's "
               "once case is ignored. Compare lower(email) with = (not LIKE, ILIKE or a "
               "regular expression: `_`, `%` and `.` in an address are wildcards to them) and "
               "count customers, not addresses or pairs")
        raise CheckFailed(f"Your query says {got}, the right count is {expected}: {why}.",
                          detail)
    return (f"{got} customers share an email with someone else once case is ignored "
            f"({base:,} of the dataset's customers, every collision among them, plus "
            f"{len(planted)} planted addresses)")


HINTS = {
    "q1": [
        "Soft-deleted customers still have rows; deleted_at tells them apart.",
        "Sort by created_at, newest first, and break ties with id (highest first); keep 5 rows.",
    ],
    "q2": [
        "A unique index on email compares bytes: 'Ann@x.com' and 'ann@x.com' are different.",
        "Compare lower(email) of each customer with every other customer's (EXISTS), or "
        "GROUP BY lower(email) HAVING count(*) > 1 and sum the group sizes.",
        "Compare with =, not LIKE or ILIKE: `_` and `%` inside an address are wildcards to them.",
    ],
}
