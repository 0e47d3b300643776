"""Errors the lab raises on purpose, each written for the learner first.

Every error here carries a one-line summary that names the fix, followed by the
technical detail. Notebooks and the command line print them without a traceback
from deep inside the package (see ``labs.challenge.setup`` and ``labs.__main__``).
"""

from __future__ import annotations


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
