"""Lasting progress: every verdict recorded outside the kernel, and what to do next.

``labs.check`` appends one JSON line per verdict to a small file of the
learner's own (no network, no server): ``$LAB_PROGRESS_FILE`` if set, else
``$XDG_DATA_HOME/postgres-lab/progress.jsonl`` (``~/.local/share/…``), so a
restarted kernel, another notebook or ``python -m labs progress`` all see the
same record. ``LAB_PROGRESS=off`` turns recording off (grading does; the test
suite points the file at a temporary directory). Recording never fails a
check: a file that cannot be written is skipped without a word.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import catalogue


def progress_file() -> Path | None:
    """Where verdicts are kept, or None when recording is off."""
    if os.environ.get("LAB_PROGRESS", "on").strip().lower() in ("0", "off", "no", "false"):
        return None
    explicit = os.environ.get("LAB_PROGRESS_FILE")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "postgres-lab" / "progress.jsonl"


def record(check_id: str, passed: bool, attempted: bool) -> None:
    path = progress_file()
    if path is None:
        return
    line = {"check": check_id, "passed": passed, "attempted": attempted,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab+") as fh:
            fh.seek(0, os.SEEK_END)
            # a line cut short by a crash stays on its own line, unread, not glued to this one
            if fh.tell() and (fh.seek(-1, os.SEEK_END), fh.read(1))[1] != b"\n":
                fh.write(b"\n")
            fh.write((json.dumps(line) + "\n").encode())
    except OSError:
        pass  # progress is a convenience; a read-only home must not fail a check


@dataclass
class CheckRecord:
    ever_passed: bool = False
    last_passed: bool = False
    last_attempted: bool = False
    last_at: str = ""


def load(path: Path | None = None) -> dict[str, CheckRecord]:
    """Each check's record, by check id, from the progress file (empty when none)."""
    path = path or progress_file()
    records: dict[str, CheckRecord] = {}
    if path is None or not path.exists():
        return records
    for raw in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
            check_id = str(line["check"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash: skip it, keep the rest
        rec = records.setdefault(check_id, CheckRecord())
        rec.ever_passed |= bool(line.get("passed"))
        rec.last_passed = bool(line.get("passed"))
        rec.last_attempted = bool(line.get("attempted"))
        rec.last_at = str(line.get("at", ""))
    return records


def _checks_of(topic: str) -> list[str]:
    from .checking import checks_of  # the check modules import this module's caller

    return checks_of(topic)


@dataclass
class ChallengeProgress:
    challenge: catalogue.Challenge
    checks: list[str]
    passed: list[str]
    last_at: str

    @property
    def done(self) -> bool:
        return bool(self.checks) and len(self.passed) == len(self.checks)

    @property
    def started(self) -> bool:
        return bool(self.last_at)


def summary(records: dict[str, CheckRecord] | None = None) -> list[ChallengeProgress]:
    records = load() if records is None else records
    rows = []
    for c in catalogue.COURSE:
        checks = _checks_of(c.topic)
        passed = [i for i in checks if i in records and records[i].ever_passed]
        last = max((records[i].last_at for i in checks if i in records), default="")
        rows.append(ChallengeProgress(c, checks, passed, last))
    return rows


def next_step(rows: list[ChallengeProgress] | None = None,
              records: dict[str, CheckRecord] | None = None) -> str:
    """One sentence: the check to work on next, or the challenge to open next."""
    records = load() if records is None else records
    rows = summary(records) if rows is None else rows
    done = {r.challenge.topic for r in rows if r.done}
    # finish what was started first, then the first challenge whose prerequisites are done
    started = [r for r in rows if r.started and not r.done]
    ready = [r for r in rows if not r.done and all(n in done for n in r.challenge.needs)]
    for row in started + ready:
        todo = [i for i in row.checks if i not in row.passed]
        first = todo[0] if todo else None
        rec = records.get(first) if first else None
        said = ""
        if rec is not None:
            said = (" (last run: passed)" if rec.last_passed else
                    " (last run: not attempted yet)" if not rec.last_attempted else
                    " (last run: failed)")
        return (f"Next: {row.challenge.notebook}, check {first}{said}; "
                f"{len(row.passed)}/{len(row.checks)} of its checks passed so far.")
    if rows and all(r.done for r in rows):
        return "Every check of every challenge has passed. Try a larger LAB_SCALE next."
    return "Next: notebooks/00_start_here.ipynb."


def next_step_line(topic: str) -> str:
    """The line ``check_all`` ends with: where this learner goes after this notebook."""
    if progress_file() is None:
        return ""
    records = load()
    rows = summary(records)
    mine = next((r for r in rows if r.challenge.topic == topic), None)
    if mine is None:
        return ""
    if not mine.done:
        return "Progress is kept between sessions: labs.progress() shows the whole course."
    return next_step(rows, records)


def table(rows: list[ChallengeProgress] | None = None) -> str:
    rows = summary() if rows is None else rows
    done = {r.challenge.topic for r in rows if r.done}
    out = [f"{'challenge':<24} {'checks':>7}  {'last attempt (UTC)':<20} status"]
    for r in rows:
        status = ("done" if r.done else "in progress" if r.started else
                  "ready" if all(n in done for n in r.challenge.needs) else
                  "needs " + ", ".join(catalogue.BY_TOPIC[n].number for n in r.challenge.needs))
        when = r.last_at[:16].replace("T", " ") if r.last_at else "—"
        out.append(f"{r.challenge.number} {r.challenge.topic:<21} "
                   f"{len(r.passed):>3}/{len(r.checks):<3}  {when:<20} {status}")
    return "\n".join(out)


def show() -> None:
    """Print this learner's progress through the course and what to do next."""
    path = progress_file()
    if path is None:
        print("Progress recording is off here (LAB_PROGRESS=off).")
        return
    rows = summary()
    print(table(rows))
    print()
    print(next_step(rows))
    print(f"(kept in {path})")
