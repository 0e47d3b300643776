"""Adversarial data for checks: seeded per run, printed on failure, hard on almost-right answers.

A check that plants the same three rows every time is tuned to the wrong answers
its author thought of. The method (``docs/authoring.md``, "Checks that wrong
answers cannot pass") is to run the reference and the learner's answer on the
same planted data, made from a seed that changes every run, with the cases that
separate right from almost right always present:

* ties on every non-key sort column, arranged so that any other tiebreak
  (email, name, insertion order) sorts them differently from the asked one;
* LIKE metacharacters (``_ % \\``) and case variants in text that is compared;
* NULLs where a column allows them;
* instants at and around every boundary, fractional seconds included
  (:func:`instants_around`, :func:`day_edges`);
* sizes that are not round (:func:`non_round`), so a loader that never flushes
  its last partial batch, or an off-by-one in paging, shows;
* several customers, ordinary and skewed, never one planted favourite;
* a session whose ``TimeZone`` is not UTC (:func:`non_utc_zone`).

``labs.check`` picks the seed (or takes ``seed=N`` to replay one), and every
failure message ends with it. Inside a check, :func:`rng` is that run's
``random.Random``.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import os
import random
import secrets
from typing import Iterator, Sequence

# (seed, generator) of the check being run
_RUN: contextvars.ContextVar[tuple[int, random.Random] | None] = contextvars.ContextVar(
    "lab_check_run", default=None)


def new_seed() -> int:
    """A seed for one check run: ``LAB_CHECK_SEED`` when set (to replay), else fresh."""
    fixed = os.environ.get("LAB_CHECK_SEED", "").strip()
    return int(fixed) if fixed else secrets.randbelow(900_000) + 100_000


# The run in progress, for threads a check starts (interleave, run_stress): a new
# thread does not inherit context variables, and must not invent a seed of its own.
_RUNNING: tuple[int, random.Random] | None = None


def begin(seed: int) -> contextvars.Token:
    """Make ``seed`` the current check run's seed (``labs.check`` calls this)."""
    global _RUNNING
    _RUNNING = (seed, random.Random(seed))
    return _RUN.set(_RUNNING)


def end(token: contextvars.Token) -> None:
    global _RUNNING
    _RUN.reset(token)
    _RUNNING = _RUN.get()


def _current() -> tuple[int, random.Random]:
    run = _RUN.get() or _RUNNING  # a thread of the running check has only the global
    if run is None:  # outside labs.check (a check called directly): choose a seed now
        begin(new_seed())
        run = _RUN.get()
    return run  # type: ignore[return-value]


def current_seed() -> int:
    """The seed of the check being run; outside ``labs.check``, one is chosen now."""
    return _current()[0]


def rng() -> random.Random:
    """This check run's random generator (seeded by :func:`current_seed`)."""
    return _current()[1]


def replay_note(seed: int) -> str:
    """The sentence every failure ends with."""
    return f"(seed {seed}: add seed={seed} to this check call to replay the same data)"


# --------------------------------------------------------------------------
# sizes


def non_round(around: int, *, rand: random.Random | None = None, spread: float = 0.3) -> int:
    """An integer near ``around`` that no batch size divides: not a multiple of 2, 3, 5 or 7.

    A stream of this length ends in a partial batch whatever batch size the
    learner picked (a power of two, a round thousand), so a loader that forgets
    to flush it loses rows.
    """
    r = rand or rng()
    low = max(11, int(around * (1 - spread)))
    high = max(low + 50, int(around * (1 + spread)))
    while True:
        n = r.randint(low, high)
        if all(n % p for p in (2, 3, 5, 7)):
            return n


# --------------------------------------------------------------------------
# text


LIKE_METACHARACTERS = ("_", "%", "\\")


def case_variants(text: str, *, rand: random.Random | None = None) -> list[str]:
    """Three spellings of ``text`` that are equal only when case is ignored."""
    r = rand or rng()
    mixed = "".join(c.upper() if r.random() < 0.5 else c.lower() for c in text)
    if mixed in (text.lower(), text.upper()):
        mixed = text[:1].upper() + text[1:].lower()
    return [text.lower(), text.upper(), mixed]


def like_traps(*, rand: random.Random | None = None, domain: str = "example.org") -> list[tuple[str, str]]:
    """Pairs (address with a LIKE metacharacter, a different address its pattern matches).

    ``'ann_lee@x'`` used as a LIKE/ILIKE pattern matches ``'annxlee@x'``; an
    answer that compares addresses with LIKE instead of ``=`` joins them.
    """
    r = rand or rng()
    tag = r.randint(1000, 9999)
    a, b = f"trap{tag}", f"{r.choice('kmpqz')}{tag}"
    return [
        (f"{a}_{b}@{domain}", f"{a}{r.choice('xyw')}{b}@{domain}"),
        (f"{a}%{b}@{domain}", f"{a}-and-more-{b}@{domain}"),
        (f"{a}\\{b}@{domain}", f"{a}{b}@{domain}"),
    ]


# --------------------------------------------------------------------------
# time


NON_UTC_ZONES = ("America/St_Johns", "Asia/Kathmandu", "Pacific/Chatham", "Australia/Adelaide")


def non_utc_zone(*, rand: random.Random | None = None) -> str:
    """A session TimeZone far from UTC with a non-whole-hour offset (e.g. -03:30, +05:45)."""
    return (rand or rng()).choice(NON_UTC_ZONES)


def instants_around(boundary: dt.datetime) -> list[dt.datetime]:
    """The instants that separate ``<`` from ``<=`` and whole seconds from fractions."""
    us = dt.timedelta(microseconds=1)
    return [boundary - dt.timedelta(seconds=1), boundary - dt.timedelta(milliseconds=500),
            boundary - us, boundary, boundary + us, boundary + dt.timedelta(milliseconds=500)]


def day_edges(day: dt.date, tz: dt.tzinfo = dt.timezone.utc) -> list[dt.datetime]:
    """A day's first instant, its last whole second, a fraction after it, its last
    microsecond, and the next midnight (which belongs to the next day)."""
    start = dt.datetime.combine(day, dt.time(0), tz)
    nxt = start + dt.timedelta(days=1)
    return [start, start + dt.timedelta(microseconds=1), nxt - dt.timedelta(seconds=1),
            nxt - dt.timedelta(milliseconds=500), nxt - dt.timedelta(microseconds=1), nxt]


# --------------------------------------------------------------------------
# ties


def tie_order(n: int, *, rand: random.Random | None = None) -> list[int]:
    """A permutation of ``range(n)`` that is neither ascending nor descending.

    Give tied rows their secondary attributes (email, name, insertion order) in
    this order, and their ids in another, so that only the asked tiebreak sorts
    them as the reference does.
    """
    r = rand or rng()
    if n < 3:
        return list(range(n))[::-1]
    while True:
        order = list(range(n))
        r.shuffle(order)
        if order not in (list(range(n)), list(range(n))[::-1]):
            return order


def spread(items: Sequence[object], k: int, *, rand: random.Random | None = None) -> list[object]:
    """``k`` distinct items chosen at random (several customers, not one favourite)."""
    return (rand or rng()).sample(list(items), k)


def chunks(seq: Sequence[object], size: int) -> Iterator[Sequence[object]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]
