"""Checks: how a learner's answer is judged and how the verdict is told.

A notebook calls ``check("topic.qN", *answers)``. The function ``qN`` in
``labs.checks.topic`` judges the answer by its *property* (the rows it
returns, the plan it produces, the invariant it keeps) and either returns a
short success line or raises :class:`CheckFailed` with a message written for
the learner first and the technical detail after it.

Stubs in learner notebooks bind answers to :data:`TODO` (or leave an empty SQL
string); checks call :func:`require` first, so an unsolved exercise reports
"not attempted yet" rather than a confusing error.

``check`` raises on failure so that nbval (and instructors' grading) marks
the cell as failed, and the failure shows its verdict once, without the
checker's traceback. Learner copies tag check cells ``raises-exception``, so
JupyterLab's Run All goes on to the next cell and shows every verdict; ``check_all("topic")`` ends each notebook with
"N/M checks passed" and names what failed. When ``LAB_RESULTS_FILE`` is set,
every verdict is also appended there as a JSON line, which is how
``labs.course.grading`` builds its report.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import inspect
import json
import math
import os
import re
import sys
import sysconfig
import traceback
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..runtime.errors import PLACEHOLDER_FIX, CheckFailed, NotAttempted, placeholder_only
from . import adversarial, progress


class _Todo:
    """The stub value of an unanswered exercise. Calling it fails politely too."""

    def __repr__(self) -> str:
        return "TODO"

    def __bool__(self) -> bool:
        return False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # TODO() stands for a function body the learner has not written yet
        caller = sys._getframe(1).f_code.co_name
        if caller.isidentifier() and not caller.startswith("<"):
            raise NotAttempted(PLACEHOLDER_FIX["function"].format(name=caller))
        raise NotAttempted()


TODO: Any = _Todo()


@dataclass
class Verdict:
    check_id: str
    passed: bool
    message: str
    attempted: bool = True


# verdicts of this kernel, by check id (a re-run replaces the earlier verdict)
RESULTS: dict[str, Verdict] = {}


_sql_is_empty = placeholder_only


def require(*answers: Any, what: str = "") -> None:
    """Raise NotAttempted when any answer is still a stub (TODO, None, empty SQL)."""
    for answer in answers:
        if answer is TODO or answer is None or answer is Ellipsis:
            raise NotAttempted(what)
        if isinstance(answer, str) and _sql_is_empty(answer):
            raise NotAttempted(what or PLACEHOLDER_FIX["sql"])


def call_answer(fn: Callable[..., Any], *args: Any, who: str,
                advice: dict[str, str] | None = None,
                passing: tuple[type[BaseException], ...] = ()) -> Any:
    """Call the learner's function; a PostgreSQL error it raises becomes a verdict with its
    SQLSTATE and, where ``advice`` knows that SQLSTATE, the likely fix. ``passing`` are the
    check's own exceptions (a probe's interruption) that go through untouched."""
    import psycopg

    try:
        return fn(*args)
    except (NotAttempted, CheckFailed, *passing):
        raise
    except psycopg.Error as exc:
        fix = (advice or {}).get(exc.sqlstate or "", "")
        raise CheckFailed(f"{who} raised SQLSTATE {exc.sqlstate}: "
                          f"{exc.diag.message_primary or exc}.{fix}") from None


def _find(check_id: str) -> Callable[..., Any]:
    topic, _, case = check_id.partition(".")
    if not topic or not case:
        raise ValueError(f"check ids look like 'topic.q1', not {check_id!r}")
    module = importlib.import_module(f"labs.checks.{topic}")
    try:
        return getattr(module, case)
    except AttributeError:
        raise ValueError(f"there is no check {case!r} in labs.checks.{topic}") from None


def _read_key() -> bytes | None:
    """The grader's verdict key: read once, when ``labs`` is imported, and the file deleted.

    The setup cell imports ``labs`` before any answer cell runs, so no answer
    can read the key from disk; verdict lines without a valid signature are not
    counted by ``labs.course.grading``.
    """
    path = os.environ.get("LAB_RESULTS_KEY_FILE")
    if not path:
        return None
    try:
        key = Path(path).read_bytes()
        os.unlink(path)
    except OSError:
        return None
    return key


_KEY = _read_key()


def _record(verdict: Verdict) -> None:
    RESULTS[verdict.check_id] = verdict
    progress.record(verdict.check_id, verdict.passed, verdict.attempted)
    path = os.environ.get("LAB_RESULTS_FILE")
    if path:
        line = dict(verdict.__dict__)
        if _KEY is not None:
            payload = json.dumps(line, sort_keys=True)
            line["sig"] = hmac.new(_KEY, payload.encode(), hashlib.sha256).hexdigest()
        with open(path, "a") as fh:
            fh.write(json.dumps(line) + "\n")


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(";").lower()


def _failed_query(exc: BaseException) -> str | None:
    """The SQL of the psycopg call that raised, read from the innermost execute frame."""
    tb, query = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_name in ("execute", "executemany", "copy"):
            candidate = tb.tb_frame.f_locals.get("query", tb.tb_frame.f_locals.get("statement"))
            if candidate is not None:
                query = candidate
        tb = tb.tb_next
    if query is None:
        return None
    if hasattr(query, "as_string"):
        try:
            return query.as_string(None)
        except Exception:
            return None
    return query.decode(errors="replace") if isinstance(query, bytes) else str(query)


def _blame(exc: BaseException, answers: Sequence[Any] = ()) -> str:
    """Whose code raised: "learner" (a frame outside the lab and its libraries),
    "postgres" (the server rejected SQL of the answer that the check ran), or "check"."""
    frames = traceback.extract_tb(exc.__traceback__)
    lab_dir = str(Path(__file__).resolve().parents[1])
    libraries = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                 sysconfig.get_paths()["platlib"])
    for frame in frames:
        name = frame.filename
        if name.startswith(lab_dir) or name.startswith(libraries):
            continue
        # a notebook cell (ipykernel writes them as /tmp/ipykernel_*/N.py) or a module of
        # the learner's own; not a compiled library's frame (psycopg_binary/….pyx, <frozen …>)
        if (name.endswith(".py") and os.path.isabs(name)) or name.startswith("<ipython-input"):
            return "learner"
    if getattr(exc, "sqlstate", None):
        query = _failed_query(exc)
        texts = [_squash(a) for a in answers if isinstance(a, str) and a.strip()]
        if query is None or not texts:
            return "postgres"
        q = _squash(query)
        # the check ran the answer's SQL, whole or one statement of it, perhaps wrapped
        # (EXPLAIN …, a CTE): either text contains the other
        if any(q and (q in a or a in q) for a in texts):
            return "postgres"
        return "check"
    return "check"


def check(check_id: str, *answers: Any, seed: int | None = None, **kwargs: Any) -> None:
    """Judge one exercise; print one line on success, raise CheckFailed otherwise.

    The check's planted data comes from a seed that changes every run; a failure
    names it, and ``seed=N`` replays exactly that run.
    """
    func = _find(check_id)
    seed = adversarial.new_seed() if seed is None else int(seed)
    token = adversarial.begin(seed)
    try:
        result = func(*answers, **kwargs)
    except NotAttempted as exc:
        _record(Verdict(check_id, False, exc.message, attempted=False))
        exc.verdict_lines = [f"✗ {check_id}: {exc.message}", _way_forward(check_id)]
        raise
    except CheckFailed as exc:
        exc.message = f"{exc.message} {adversarial.replay_note(seed)}"
        exc.args = (exc.message + (f"\n  Detail: {exc.detail}" if exc.detail else ""),)
        _record(Verdict(check_id, False, exc.message))
        exc.verdict_lines = ([f"✗ {check_id}: {exc.message}"]
                             + ([f"  Detail: {exc.detail}"] if exc.detail else [])
                             + [_way_forward(check_id)])
        raise
    except Exception as exc:
        who = _blame(exc, answers)
        text = f"{type(exc).__name__}: {exc}".strip()
        if who == "learner":  # the learner's code raised: say so in their terms
            message = f"your answer raised {text}"
        elif who == "postgres":
            message = (f"PostgreSQL rejected what your answer asked for: {text.splitlines()[0]} "
                       f"(SQLSTATE {exc.sqlstate})")
        else:  # the checker itself tripped: never blame the learner for it
            message = (f"the check could not judge your answer: it stumbled on what the answer "
                       f"left behind ({text.splitlines()[0] if text else type(exc).__name__}). "
                       "Look for a state the task rules out, or report this check")
        message = f"{message} {adversarial.replay_note(seed)}"
        _record(Verdict(check_id, False, message))
        failed = CheckFailed(message)
        failed.verdict_lines = [f"✗ {check_id}: {message}", _way_forward(check_id)]
        raise failed from exc
    finally:
        adversarial.end(token)
    message = result if isinstance(result, str) else "correct"
    _record(Verdict(check_id, True, message))
    print(f"✓ {check_id}: {message}")


def checks_of(topic: str) -> list[str]:
    """Every check id of a topic, in q-number order."""
    module = importlib.import_module(f"labs.checks.{topic}")
    names = [name for name, obj in inspect.getmembers(module, inspect.isfunction)
             if re.fullmatch(r"q\d+[a-z]?", name) and obj.__module__ == module.__name__]
    names.sort(key=lambda n: (int(re.sub(r"\D", "", n)), n))
    return [f"{topic}.{name}" for name in names]


def check_all(topic: str) -> None:
    """Summarise this notebook's checks: "N/M checks passed" and what failed.

    Returns nothing, so the cell shows the summary and no stray value.
    """
    ids = checks_of(topic)
    passed = [i for i in ids if i in RESULTS and RESULTS[i].passed]
    print(f"{len(passed)}/{len(ids)} checks passed")
    for check_id in ids:
        verdict = RESULTS.get(check_id)
        if verdict is None:
            print(f"  ✗ {check_id}: not run (run its check cell)")
        elif not verdict.attempted:  # its cell said what to do; once is enough
            print(f"  ✗ {check_id}: not attempted yet")
        elif not verdict.passed:
            print(f"  ✗ {check_id}: {verdict.message}")
    if len(passed) == len(ids):
        print("Success! Every check of this challenge passes.")
    after = progress.next_step_line(topic)
    if after:
        print(after)


_hints_shown: dict[str, int] = {}


def _hints_of(check_id: str) -> list[str]:
    topic, _, case = check_id.partition(".")
    try:
        module = importlib.import_module(f"labs.checks.{topic}")
    except ImportError:
        return []
    return list(getattr(module, "HINTS", {}).get(case, []))


def reveal_allowed() -> bool:
    """Whether ``solution()`` may show reference answers (graders set LAB_REVEAL_SOLUTIONS=0)."""
    return os.environ.get("LAB_REVEAL_SOLUTIONS", "1").strip().lower() not in ("0", "no", "false",
                                                                                "off")


def _way_forward(check_id: str) -> str:
    """The line under a failed check: the next hint, or after the last one, the solution."""
    hints = _hints_of(check_id)
    shown = _hints_shown.get(check_id, 0)
    if shown < len(hints):
        return (f'  Next: hint("{check_id}") gives hint {shown + 1} of {len(hints)}.')
    if reveal_allowed():
        return (f'  Next: labs.solution("{check_id}") shows the reference answer, to study '
                "and compare with yours.")
    return "  Next: read the task again; reference answers are turned off for this course."


def solution(check_id: str) -> None:
    """Print the reference answer of an exercise, for self-study (graders can turn it off)."""
    if not reveal_allowed():
        print(f"Reference answers are turned off here (LAB_REVEAL_SOLUTIONS=0); "
              f'hint("{check_id}") still works.')
        return
    from .learner import reference_answer

    hints = _hints_of(check_id)
    if _hints_shown.get(check_id, 0) < len(hints):
        print(f"(You have seen {_hints_shown.get(check_id, 0)} of {len(hints)} hints; "
              f'hint("{check_id}") may be enough.)\n')
    print(f"Reference answer for {check_id}:\n")
    print(reference_answer(check_id))


def hint(check_id: str) -> None:
    """Print the next hint for an exercise (each call reveals one more).

    Hints live beside the checks, in the module's ``HINTS`` dict:
    ``HINTS = {"q1": ["first nudge", "stronger nudge", ...]}``.
    """
    topic, _, case = check_id.partition(".")
    module = importlib.import_module(f"labs.checks.{topic}")
    hints = getattr(module, "HINTS", {}).get(case, [])
    if not hints:
        print(f"No hints for {check_id}.")
        return
    shown = min(_hints_shown.get(check_id, 0) + 1, len(hints))
    _hints_shown[check_id] = shown
    for number, text in enumerate(hints[:shown], start=1):
        print(f"Hint {number}/{len(hints)}: {text}")


# --------------------------------------------------------------------------
# result-set comparison


def _normalise(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else value
    if isinstance(value, Decimal):
        return round(float(value), 6)
    return value


def _sortable(row: Sequence[Any]) -> tuple:
    return tuple((v is None, str(type(v)), v if v is not None else 0) for v in row)


def compare_results(
    got_columns: Sequence[str],
    got_rows: Iterable[Sequence[Any]],
    want_columns: Sequence[str],
    want_rows: Iterable[Sequence[Any]],
    *,
    ordered: bool = False,
    what: str = "your query",
) -> None:
    """Compare two result sets: columns, then row count, then values.

    Order matters only when ``ordered`` is true (the task asked for ORDER BY).
    Raises CheckFailed with the first difference, explained.
    """
    got_columns = [c.lower() for c in got_columns]
    want_columns = [c.lower() for c in want_columns]
    if got_columns != want_columns:
        missing = [c for c in want_columns if c not in got_columns]
        extra = [c for c in got_columns if c not in want_columns]
        hint = []
        if missing:
            hint.append(f"missing {missing}")
        if extra:
            hint.append(f"unexpected {extra}")
        if not missing and not extra:
            hint.append("same columns, different order")
        raise CheckFailed(
            f"{what} returns the columns {got_columns}; the task asks for {want_columns} "
            f"({'; '.join(hint)}).")
    got = [tuple(_normalise(v) for v in row) for row in got_rows]
    want = [tuple(_normalise(v) for v in row) for row in want_rows]
    if len(got) != len(want):
        raise CheckFailed(f"{what} returns {len(got)} rows; the task expects {len(want)}.")
    if ordered:
        for i, (g, w) in enumerate(zip(got, want)):
            if g != w:
                if sorted(got, key=_sortable) == sorted(want, key=_sortable):
                    raise CheckFailed(f"{what} returns the right rows in the wrong order "
                                      f"(first difference at row {i + 1}); check the ORDER BY.",
                                      f"row {i + 1}: got {g}, expected {w}")
                raise CheckFailed(f"Row {i + 1} of {what} differs from the expected result.",
                                  f"got {g}, expected {w}")
        return
    got_sorted, want_sorted = sorted(got, key=_sortable), sorted(want, key=_sortable)
    if got_sorted != want_sorted:
        unexpected = [r for r in got_sorted if r not in want_sorted][:3]
        missing = [r for r in want_sorted if r not in got_sorted][:3]
        raise CheckFailed(f"{what} returns the right number of rows, but not the right rows.",
                          f"unexpected rows such as {unexpected}; missing rows such as {missing}")
