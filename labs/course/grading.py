"""Grade a class: run every submitted notebook with nbval and report checks passed.

Layout of a submissions folder: one sub-folder per learner, holding that
learner's notebooks under their lab names::

    submissions/
      ada/00_start_here.ipynb
      ada/02_race_conditions.ipynb
      grace/00_start_here.ipynb

For each submission the grader starts from the *canonical* learner notebook and
takes only the cells tagged ``answer`` from the submission (matched by cell id,
then by position among answer cells). Check cells, setup and prose come from
the canonical copy, so an edited or deleted check earns nothing. The notebook
then runs under ``pytest --nbval-lax`` with a per-cell timeout, each learner in
its own database namespace, and every check's verdict is collected from
``LAB_RESULTS_FILE``. A check that never ran (an earlier cell failed or timed
out) counts as failed, with that reason.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .checking import checks_of
from ..runtime.config import NOTEBOOKS_DIR, ROOT
from .learner import ANSWER_TAG, topic_of


@dataclass
class Row:
    learner: str
    notebook: str
    passed: int
    total: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""


@dataclass
class Report:
    rows: list[Row]

    def markdown(self) -> str:
        lines = ["| learner | challenge | checks passed | failures |", "|---|---|---|---|"]
        for row in self.rows:
            failures = "<br>".join(f"{cid}: {msg}" for cid, msg in row.failures) or "—"
            if row.note:
                failures = f"{row.note}<br>{failures}" if row.failures else row.note
            failures = failures.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {row.learner} | {row.notebook} | {row.passed}/{row.total} | "
                         f"{failures} |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "report.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["learner", "challenge", "check", "passed", "message"])
            for row in self.rows:
                failed = dict(row.failures)
                for check_id in checks_of(topic_of(row.notebook)):
                    ok = check_id not in failed
                    writer.writerow([row.learner, row.notebook, check_id, int(ok),
                                     "" if ok else failed[check_id]])
        (out_dir / "report.md").write_text("# Grading report\n\n" + self.markdown())


def assemble(canonical: nbformat.NotebookNode,
             submission: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, str]:
    """The canonical notebook with the submission's answer cells put in."""
    graded = nbformat.from_dict(canonical)
    by_id = {cell.get("id"): cell for cell in submission.cells}
    submitted_answers = [c for c in submission.cells if ANSWER_TAG in c.metadata.get("tags", [])]
    notes = []
    position = 0
    for cell in graded.cells:
        if ANSWER_TAG not in cell.metadata.get("tags", []):
            continue
        theirs = by_id.get(cell.get("id"))
        if theirs is None and position < len(submitted_answers):
            theirs = submitted_answers[position]
        position += 1
        if theirs is None or theirs.cell_type != cell.cell_type:
            notes.append("an answer cell is missing from the submission")
            continue
        cell.source = theirs.source
    return graded, "; ".join(sorted(set(notes)))


def _run_nbval(notebook: Path, results: Path, namespace: str, cell_timeout: int) -> str:
    env = dict(os.environ, LAB_RESULTS_FILE=str(results), LAB_DB_NAMESPACE=namespace,
               PLOOMBER_STATS_ENABLED="false", LAB_REVEAL_SOLUTIONS="0")
    cmd = [sys.executable, "-m", "pytest", str(notebook), "-q", "-p", "no:cacheprovider",
           "-p", "no:xdist", "-o", "addopts=", "--nbval-lax", "--nbval-current-env",
           f"--nbval-cell-timeout={cell_timeout}", "--rootdir", str(notebook.parent)]
    proc = subprocess.run(cmd, cwd=notebook.parent, env=env, capture_output=True, text=True,
                          check=False)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    return tail[0]


def grade_one(learner: str, submitted: Path, cell_timeout: int) -> Row:
    canonical_path = NOTEBOOKS_DIR / submitted.name
    topic = topic_of(submitted)
    expected = checks_of(topic)
    if not canonical_path.exists():
        return Row(learner, submitted.name, 0, 0, note="not a notebook of this lab")
    try:
        submission = nbformat.read(submitted, as_version=4)
    except Exception as exc:  # an unreadable file is a grade, not a crash
        return Row(learner, submitted.name, 0, len(expected),
                   [(c, "notebook could not be read") for c in expected], note=str(exc)[:200])
    graded, note = assemble(nbformat.read(canonical_path, as_version=4), submission)
    with tempfile.TemporaryDirectory() as tmp:
        # the kernel must import labs from this checkout whatever its cwd
        path = Path(tmp) / submitted.name
        nbformat.write(graded, path)
        results = Path(tmp) / "results.jsonl"
        namespace = "grade_" + re.sub(r"[^a-z0-9]", "_", learner.lower())[:20] + "_"
        _run_nbval(path, results, namespace, cell_timeout)
        verdicts: dict[str, dict] = {}
        if results.exists():
            for line in results.read_text().splitlines():
                verdict = json.loads(line)
                verdicts[verdict["check_id"]] = verdict
    failures = []
    for check_id in expected:
        verdict = verdicts.get(check_id)
        if verdict is None:
            failures.append((check_id, "did not run (an earlier cell failed or timed out)"))
        elif not verdict["passed"]:
            failures.append((check_id, verdict["message"]))
    return Row(learner, submitted.name, len(expected) - len(failures), len(expected), failures,
               note)


def grade(submissions: str | Path, out_dir: str | Path = "grading-report",
          cell_timeout: int = 600) -> Report:
    base = Path(submissions)
    if not base.is_dir():
        raise SystemExit(f"{base} is not a folder of submissions (one sub-folder per learner).")
    rows: list[Row] = []
    for learner_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for submitted in sorted(learner_dir.glob("*.ipynb")):
            rows.append(grade_one(learner_dir.name, submitted, cell_timeout))
    report = Report(rows)
    report.write(Path(out_dir) if Path(out_dir).is_absolute() else ROOT / out_dir)
    return report
