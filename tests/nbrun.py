"""Run a notebook in a fresh kernel and collect each check's verdict.

Used by the contract tests (learner copies, decoys) and by grading. The
verdicts come from ``LAB_RESULTS_FILE``, written by ``labs.course.checking.check``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from labs.runtime.config import NOTEBOOKS_DIR


@dataclass
class Run:
    verdicts: dict[str, dict] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)  # cell index -> error name + value
    notebook: nbformat.NotebookNode | None = None


def execute(nb: nbformat.NotebookNode, *, stop_after: int | None = None,
            timeout: int = 600) -> Run:
    """Execute ``nb`` (optionally only up to cell ``stop_after``) with errors allowed."""
    nb = nbformat.from_dict(nb)
    if stop_after is not None:
        nb.cells = nb.cells[: stop_after + 1]
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.jsonl"
        old = os.environ.get("LAB_RESULTS_FILE")
        os.environ["LAB_RESULTS_FILE"] = str(results)
        try:
            for attempt in range(3):
                client = NotebookClient(nb, timeout=timeout, allow_errors=True,
                                        kernel_name="python3",
                                        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
                try:
                    client.execute()
                    break
                except RuntimeError as exc:
                    # the kernel never started: it picks its TCP ports, then binds them, and on
                    # a busy machine another process (a PostgreSQL client's ephemeral port) can
                    # take one in between ("Address already in use"); no cell has run, so a
                    # fresh kernel is the same run
                    if attempt == 2 or not str(exc).startswith(("Kernel didn't respond",
                                                                 "Kernel died before")):
                        raise
        finally:
            if old is None:
                os.environ.pop("LAB_RESULTS_FILE", None)
            else:
                os.environ["LAB_RESULTS_FILE"] = old
        run = Run(notebook=nb)
        if results.exists():
            for line in results.read_text().splitlines():
                verdict = json.loads(line)
                run.verdicts[verdict["check_id"]] = verdict
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                run.errors[index] = f"{output['ename']}: {output['evalue']}"
    return run
