"""Errors the lab raises on purpose, each written for the learner first.

Every error here carries a one-line summary that names the fix, followed by the
technical detail. Notebooks and the command line print them without a traceback
from deep inside the package (see ``labs.course.challenge.setup`` and ``labs.__main__``).
"""

from __future__ import annotations

import re
import traceback


class LabError(Exception):
    """A problem with the learner's environment that the learner can fix.

    ``summary`` is the learner-facing sentence (what is wrong and what to do);
    ``detail`` is the technical evidence (the URL tried, the server's words).
    """

    def __init__(self, summary: str, detail: str = "") -> None:
        self.summary = summary
        self.detail = detail
        super().__init__(self.render())

    def render(self) -> str:
        text = self.summary
        if self.detail:
            text += "\n\nDetails: " + self.detail
        return text

    # IPython shows ``_render_traceback_`` instead of a full traceback, so a
    # learner sees the message that names the fix, not twenty frames of psycopg.
    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self.render()}"]


class ServerUnavailable(LabError):
    """No PostgreSQL could be reached or started."""


class BadDatabaseUrl(LabError):
    """DATABASE_URL is set but unusable (syntax, host, credentials, database)."""


class PortBusy(LabError):
    """The port the lab wanted is taken by another program."""


class DatasetMissing(LabError):
    """The template database for the chosen scale has not been built yet."""


class RunningAsRoot(LabError):
    """PostgreSQL refuses root and no unprivileged user could be arranged."""


# The two verdict errors live here, in the lowest layer, because tools below the
# course machinery (``labs.tools.explain``'s plan assertions) raise them too;
# ``labs.course.checking`` re-exports them.
class CheckFailed(AssertionError):
    """A wrong answer: ``message`` for the learner, ``detail`` for the curious."""

    def __init__(self, message: str, detail: str = "") -> None:
        self.message = message
        self.detail = detail
        super().__init__(message + (f"\n  Detail: {detail}" if detail else ""))

    # What a notebook shows for a failed check, set by ``labs.course.checking.check``:
    # the verdict line, its detail and the way forward, said once.
    verdict_lines: list[str] | None = None

    # IPython shows this instead of a traceback through the lab's internals: the
    # learner needs the verdict and, when their own code raised, their own
    # traceback, not the checker's frames.
    def _render_traceback_(self) -> list[str]:
        lines = list(self.verdict_lines or [f"CheckFailed: {self.message}"])
        if self.__cause__ is not None:
            lines += ["", "Your code raised this:"]
            lines += "".join(traceback.format_exception(self.__cause__)).splitlines()
        return lines


# What to do about an unanswered exercise, in the terms of the placeholder it has.
PLACEHOLDER_FIX = {
    "python": "replace TODO in the answer cell above with your code (keep the names it "
              "binds), run that cell, then this check",
    "sql": "write your SQL where the answer cell above says -- YOUR SQL HERE, run that "
           "cell, then this check",
    "demo": "this cell runs your answer, which still says -- YOUR SQL HERE: write it in its "
            "answer cell, run that cell, then this one",
    "function": "the function {name}() still has TODO() in its body: write the body in the "
                "answer cell above (keep its name and parameters), run that cell, then this "
                "check",
}


def placeholder_only(sql: object) -> bool:
    """SQL with nothing but comments and blanks: an answer still at ``-- YOUR SQL HERE``."""
    if not isinstance(sql, str):
        return False
    without_comments = re.sub(r"--[^\n]*", "", re.sub(r"/\*.*?\*/", "", sql, flags=re.S))
    return not without_comments.strip(" \n\t;")


class NotAttempted(CheckFailed):
    def __init__(self, what: str = "") -> None:
        super().__init__("not attempted yet: " + (what or PLACEHOLDER_FIX["python"]))
