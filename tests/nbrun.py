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
from nbclient.util import run_sync

from labs.runtime.config import NOTEBOOKS_DIR


@dataclass
class Run:
    verdicts: dict[str, dict] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)  # cell index -> error name + value
    notebook: nbformat.NotebookNode | None = None


def _collected(nb: nbformat.NotebookNode, results: Path) -> Run:
    """The verdicts the checks recorded in ``results`` and the errors of the executed ``nb``."""
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
        return _collected(nb, results)


class Kernel:
    """One kernel for several runs of one challenge's notebook, as a learner runs it: Run All
    again in the same kernel (which every notebook supports: its setup cell resets the
    database), the user namespace cleared between runs. Modules stay imported, which is
    what saves the time: a fresh kernel and the lab's imports cost about 1.5 s a run, most
    of a decoy's run at tiny scale."""

    def __init__(self) -> None:
        self.km = None
        self.kc = None

    def _client(self, nb: nbformat.NotebookNode, timeout: int, km=None) -> NotebookClient:
        # given a kernel manager, the client does not own it and leaves the kernel running
        return NotebookClient(nb, km=km, timeout=timeout, allow_errors=True,
                              kernel_name="python3",
                              resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})

    def _start(self) -> None:
        for attempt in range(3):
            client = self._client(nbformat.v4.new_notebook(), 60)
            try:
                client.km = client.create_kernel_manager()
                client.start_new_kernel()
                client.start_new_kernel_client()
                self.km, self.kc = client.km, client.kc
                return
            except RuntimeError as exc:  # the TCP port race: see execute()
                if client.km is not None and client.km.has_kernel:
                    run_sync(client.km.shutdown_kernel)(now=True)
                if attempt == 2 or not str(exc).startswith(("Kernel didn't respond",
                                                             "Kernel died before")):
                    raise

    def close(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None and self.km.has_kernel:
            run_sync(self.km.shutdown_kernel)(now=True)  # an AsyncKernelManager's
        self.km = self.kc = None

    def execute(self, nb: nbformat.NotebookNode, *, stop_after: int | None = None,
                timeout: int = 600) -> Run:
        """Like :func:`execute`, in this kernel (started on first use). A run that fails as a
        whole (a cell timed out, the kernel died) closes the kernel: the next run starts a
        fresh one."""
        nb = nbformat.from_dict(nb)
        if stop_after is not None:
            nb.cells = nb.cells[: stop_after + 1]
        if self.km is None or not run_sync(self.km.is_alive)():
            self.close()
            self._start()
        with tempfile.TemporaryDirectory() as tmp:
            results = Path(tmp) / "results.jsonl"
            # the verdicts of this run go to a file of its own; names of the last run go
            preamble = nbformat.v4.new_code_cell(
                f"%reset -f\nimport os as _os\n_os.environ['LAB_RESULTS_FILE'] = {str(results)!r}"
                "\ndel _os")
            nb.cells.insert(0, preamble)
            client = self._client(nb, timeout, km=self.km)
            client.kc = self.kc
            try:
                client.execute()
            except BaseException:
                self.close()
                raise
            finally:
                nb.cells.pop(0)
            if preamble.get("outputs") and any(o.get("output_type") == "error"
                                               for o in preamble.outputs):
                self.close()
                raise RuntimeError(f"the kernel could not be reset: {preamble.outputs}")
            return _collected(nb, results)
