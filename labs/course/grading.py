"""Grade a class: run every submitted notebook with nbval and report checks passed.

Layout of a submissions folder: one sub-folder per learner, holding that
learner's notebooks under their lab names::

    submissions/
      ada/00_start_here.ipynb
      ada/02_race_conditions.ipynb
      grace/00_start_here.ipynb

What a submission can and cannot do is in ``docs/grading.md`` (the threat
model). In short, for each submitted notebook:

* **Canonical cells.** The grader starts from the canonical learner notebook and
  takes only the cells tagged ``answer`` from the submission (by cell id, then
  by position). Setup, prose and check cells come from the canonical copy.
* **Answers bind names; they do not act.** Of an answer cell, only what binds a
  name is kept: imports, ``def``/``class``, and assignments to plain names.
  Any other top-level statement (an assignment to ``labs.checking._find``, a
  write to a file, a ``%sql`` magic) is not run, and the report says so.
* **Signed verdicts.** ``labs.check`` signs each verdict it records with a key
  it reads (and deletes) when the kernel imports ``labs``, before any answer
  cell runs; the grader counts only lines whose signature holds, once each.
* **A database role of its own.** The kernel connects as a non-superuser role
  made for this learner, which owns only this learner's databases (cloned from
  a template of its own): it cannot drop, read or change another learner's.
* **Flags.** Answer code that reaches for the lab's internals, ``sys.modules``,
  builtins, the environment, files, other databases or the reference solutions
  is listed for the instructor, whatever its score.
* **Limits and cleanup.** Each cell and each notebook has a time limit, reported
  as "timed out in cell N after S s"; learners are graded in parallel (``jobs``,
  bounded by the machine); every database, template and role made for grading
  is dropped afterwards unless ``keep`` is set.
"""

from __future__ import annotations

import ast
import csv
import importlib
import hashlib
import hmac
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import nbformat
import psycopg
from psycopg import sql

from ..data.dataset import ensure_template, template_name
from ..runtime.config import NOTEBOOKS_DIR, ROOT, current_scale
from ..runtime.server import Server, ensure_server
from .checking import checks_of
from .learner import ANSWER_TAG, strict_copy, topic_of

GRADE_PREFIX = "lab_grade_"  # every database and role grading makes starts with this


@dataclass
class Row:
    learner: str
    notebook: str
    passed: int
    total: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reflections: list[tuple[str, str]] = field(default_factory=list)  # (question, answer)


@dataclass
class Report:
    rows: list[Row]
    errors: list[str] = field(default_factory=list)  # grading itself failed (not the learners)

    def markdown(self) -> str:
        lines = ["| learner | challenge | checks passed | failures | flags for review |",
                 "|---|---|---|---|---|"]
        for row in self.rows:
            failures = "<br>".join(f"{cid}: {msg}" for cid, msg in row.failures) or "—"
            if row.note:
                failures = f"{row.note}<br>{failures}" if row.failures else row.note
            failures = failures.replace("|", "\\|").replace("\n", " ")
            flags = "<br>".join(row.flags).replace("|", "\\|").replace("\n", " ") or "—"
            lines.append(f"| {row.learner} | {row.notebook} | {row.passed}/{row.total} | "
                         f"{failures} | {flags} |")
        if self.errors:
            lines += ["", "**Grading errors** (the grader, not the learners):", ""]
            lines += [f"* {e}" for e in self.errors]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "report.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["learner", "challenge", "check", "passed", "message", "flags"])
            for row in self.rows:
                failed = dict(row.failures)
                ids = checks_of(topic_of(row.notebook)) if row.total else []
                for check_id in ids:
                    ok = check_id not in failed
                    writer.writerow([row.learner, row.notebook, check_id, int(ok),
                                     "" if ok else failed[check_id], "; ".join(row.flags)])
        (out_dir / "report.md").write_text("# Grading report\n\n" + self.markdown())
        # nothing checks a reflection: they are collected for the instructor to read
        lines = ["# Reflections", ""]
        for row in self.rows:
            if row.reflections:
                lines += [f"## {row.learner} · {row.notebook}", ""]
                for question, answer in row.reflections:
                    lines += [f"> {question}".replace("\n", "\n> "), "", answer, ""]
        (out_dir / "reflections.md").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------
# what a submission may bring: names bound by answer cells


_BINDING = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def answer_bindings(source: str) -> tuple[str, list[str]]:
    """The binding statements of an answer cell, and a description of what was left out.

    Kept: imports, function and class definitions, assignments whose targets
    are plain names. Everything else at top level (expressions, loops, ``with``,
    assignments to attributes or items, IPython magics) is left out: answers
    bind names that the canonical check cells pass to the checks.
    """
    lines = source.splitlines()
    magics = [i for i, line in enumerate(lines) if line.lstrip().startswith(("%", "!"))]
    # a magic line inside a triple-quoted string is text, not a magic: only drop it
    # when the source does not parse with it
    code = source
    try:
        tree = ast.parse(code)
    except SyntaxError:
        code = "\n".join("" if i in magics else line for i, line in enumerate(lines))
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            return "", [f"the answer does not parse ({exc.msg}, line {exc.lineno})"]
        dropped = [f"IPython magic `{lines[i].strip()[:40]}`" for i in magics]
    else:
        dropped = []
    code_lines = code.splitlines()
    kept: list[str] = []
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        text = "\n".join(code_lines[first - 1:node.end_lineno])
        if isinstance(node, _BINDING) or (
                isinstance(node, (ast.Assign, ast.AnnAssign))
                and all(isinstance(t, ast.Name) for t in
                        (node.targets if isinstance(node, ast.Assign) else [node.target]))):
            kept.append(text)
        else:
            dropped.append(f"`{ast.unparse(node).splitlines()[0][:60]}` (line {node.lineno})")
    return "\n\n".join(kept) + ("\n" if kept else ""), dropped


# Reaching for these is never needed by an answer; each match is listed for review.
_FLAG_NAMES = {
    "sys": "the interpreter (sys)", "builtins": "builtins", "__builtins__": "builtins",
    "importlib": "the import system", "__import__": "the import system",
    "exec": "exec/eval", "eval": "exec/eval", "compile": "exec/eval",
    "globals": "other code's namespace", "vars": "other code's namespace",
    "setattr": "setattr on objects it did not make", "inspect": "frames (inspect)",
    "gc": "the garbage collector", "ctypes": "ctypes", "subprocess": "subprocesses",
    "open": "files", "environ": "the environment", "getenv": "the environment",
    "putenv": "the environment", "RESULTS": "the verdicts", "_record": "the verdicts",
    "_find": "the check lookup", "f_back": "frames", "f_globals": "frames",
    "_getframe": "frames", "modules": "sys.modules",
}
_FLAG_TEXT = [
    (re.compile(r"LAB_RESULTS|results\.jsonl|LAB_REVEAL", re.I), "the results channel"),
    (re.compile(r"solutions/|labs/checks|\.ipynb|reference_answer|labs\.solution", re.I),
     "the reference solutions or the checks' source"),
    (re.compile(r"\b(DROP|ALTER|CREATE)\s+(DATABASE|ROLE|USER)\b|pg_terminate_backend|"
                r"pg_cancel_backend\s*\(\s*\d|\bdbname\s*=|postgres(ql)?://", re.I),
     "other databases, roles or sessions"),
]
_LAB_PUBLIC = {"setup", "check", "check_all", "hint", "TODO", "require", "stress", "sessions",
               "explain", "feeds", "loading", "workload", "dataset", "migrations_alembic",
               "migrations_probe", "retry", "interleave", "run_stress", "Sessions", "run_script",
               "table_checksum", "query_checksum", "current_scale", "compare_results"}


def flags_in(source: str) -> list[str]:
    """What an answer reaches for that no answer needs (for the instructor to review)."""
    found: dict[str, str] = {}
    try:
        tree = ast.parse("\n".join(l for l in source.splitlines()
                                   if not l.lstrip().startswith(("%", "!"))))
    except SyntaxError:
        tree = None
    for node in ast.walk(tree) if tree else []:
        name = (node.id if isinstance(node, ast.Name) else node.attr
                if isinstance(node, ast.Attribute) else
                node.names[0].name.split(".")[0] if isinstance(node, (ast.Import,))
                else (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom)
                else None)
        if name in _FLAG_NAMES:
            found.setdefault(_FLAG_NAMES[name], f"`{name}` (line {node.lineno})")
        # labs.<anything not public>: internals such as labs.course.checking
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "labs" and node.attr not in _LAB_PUBLIC:
            found.setdefault("the lab's internals", f"`labs.{node.attr}` (line {node.lineno})")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("labs") and (
                node.module.split(".")[1:2] in (["course"], ["checks"], ["runtime"])
                or any(a.name.startswith("_") for a in node.names)):
            found.setdefault("the lab's internals", f"`from {node.module} import …` "
                                                    f"(line {node.lineno})")
    for pattern, what in _FLAG_TEXT:
        match = pattern.search(source)
        if match:
            found.setdefault(what, f"`{match.group(0)}`")
    return [f"reaches for {what}: {where}" for what, where in found.items()]


REFLECTION_TAG = "reflection"
_UNANSWERED = re.compile(r"^\s*\*?Your answer:\*?\s*$", re.S)


def reflections_in(submission: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(question, answer) for each reflection cell the learner wrote something in."""
    found = []
    for index, cell in enumerate(submission.cells):
        if REFLECTION_TAG not in cell.metadata.get("tags", []) or _UNANSWERED.match(cell.source):
            continue
        question = next((c.source for c in reversed(submission.cells[:index])
                         if c.cell_type == "markdown"
                         and REFLECTION_TAG not in c.metadata.get("tags", [])), "")
        answer = re.sub(r"^\s*\*Your answer:\*\s*", "", cell.source).strip()
        found.append((question.strip(), answer))
    return found


def assemble(canonical: nbformat.NotebookNode,
             submission: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, str, list[str]]:
    """The canonical notebook with the submission's answers put in: (notebook, note, flags)."""
    # the learner copy lets Run All pass a failing check; a graded run must not
    graded = strict_copy(canonical)
    by_id = {cell.get("id"): cell for cell in submission.cells}
    submitted_answers = [c for c in submission.cells if ANSWER_TAG in c.metadata.get("tags", [])]
    notes: list[str] = []
    flags: list[str] = []
    position = 0
    for index, cell in enumerate(graded.cells):
        if ANSWER_TAG not in cell.metadata.get("tags", []):
            continue
        theirs = by_id.get(cell.get("id"))
        if theirs is None and position < len(submitted_answers):
            theirs = submitted_answers[position]
        position += 1
        if theirs is None or theirs.cell_type != cell.cell_type:
            notes.append("an answer cell is missing from the submission")
            continue
        if cell.cell_type != "code":
            cell.source = theirs.source
            continue
        flags += [f"cell {index}: {f}" for f in flags_in(theirs.source)]
        cell.source, dropped = answer_bindings(theirs.source)
        if dropped:
            notes.append(f"cell {index}: not run in grading (answers only bind names): "
                         + ", ".join(dropped[:3]) + (" …" if len(dropped) > 3 else ""))
    return graded, "; ".join(dict.fromkeys(notes)), flags


# --------------------------------------------------------------------------
# signed verdicts


def sign(key: bytes, verdict: dict) -> str:
    payload = json.dumps({k: v for k, v in verdict.items() if k != "sig"}, sort_keys=True)
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def read_verdicts(path: Path, key: bytes) -> tuple[dict[str, dict], int]:
    """Signed verdicts by check id (the last one of each), and how many lines were forged."""
    verdicts: dict[str, dict] = {}
    forged = 0
    if not path.exists():
        return verdicts, 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            verdict = json.loads(line)
            ok = isinstance(verdict, dict) and hmac.compare_digest(
                str(verdict.get("sig", "")), sign(key, verdict))
        except (ValueError, TypeError):
            ok = False
        if not ok:
            forged += 1
            continue
        verdicts[verdict["check_id"]] = verdict
    return verdicts, forged


# --------------------------------------------------------------------------
# a database role and template per learner


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", text.lower())[:24].strip("_") or "learner"


@dataclass
class Isolation:
    """A non-superuser role for one graded notebook, and its own template to clone from."""

    server: Server
    role: str
    password: str
    template: str
    namespace: str
    # roles a challenge needs beside the learner's (12's owner and app roles), made here
    # because the learner's role may not create roles; LOGIN ones get passwords derived
    # from role_secret, which only this learner's kernel is given
    challenge_roles: list[str] = field(default_factory=list)
    # replication slots a check needs and the learner's role may not create (REPLICATION
    # would also let it stream every learner's data): made here, dropped in release()
    challenge_slots: list[str] = field(default_factory=list)
    role_secret: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    # the lab's PgBouncer and replica, given to the kernel with this role in the URLs
    # (LAB_POOLER_URL, LAB_REPLICA_URL) when the challenge uses them
    satellite_env: dict[str, str] = field(default_factory=dict)

    def as_role(self, url: str) -> str:
        """``url`` with this role's credentials, on the same host, port and database."""
        parts = urlsplit(url)
        netloc = f"{quote(self.role)}:{quote(self.password)}@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))

    def url(self) -> str:
        """The server's URL with this role's credentials (database ``postgres``)."""
        return self.as_role(self.server.url_for("postgres"))


def _give_dataset_to(conn: psycopg.Connection, role: sql.Identifier) -> None:
    """Make ``role`` the owner of the dataset's own objects in this database.

    (``REASSIGN OWNED`` cannot be used: the bootstrap superuser owns them, and
    PostgreSQL refuses to reassign what the system itself needs.) Identity and
    serial sequences follow their tables.
    """
    kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE",
             "f": "FOREIGN TABLE"}
    rows = conn.execute("""
        SELECT c.relkind, n.nspname, c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%%'
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype IN ('a', 'i', 'e'))""").fetchall()
    for kind, schema, name in rows:
        conn.execute(sql.SQL("ALTER {} {}.{} OWNER TO {}").format(
            sql.SQL(kinds[kind]), sql.Identifier(schema), sql.Identifier(name), role))
    conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(role))


def isolate(server: Server, learner: str, topic: str, scale_template: str) -> Isolation:
    """Make the role, its template (owned by it, with the extensions a superuser must
    create), and the grants a check needs; the role owns nothing else."""
    tag = f"{_slug(learner)}_{_slug(topic)[:12]}_{secrets.token_hex(3)}"
    iso = Isolation(server, f"{GRADE_PREFIX}{tag}", secrets.token_urlsafe(18),
                    f"{GRADE_PREFIX}tpl_{tag}", f"grade_{tag}_")
    try:
        _make(iso, scale_template)
        _make_challenge_roles(iso, topic)
        _give_satellites(iso, topic)
    except BaseException:
        release(iso)  # a half-made role or template is dropped, not left on the server
        raise
    return iso


def _make(iso: Isolation, scale_template: str) -> None:
    server = iso.server
    role = sql.Identifier(iso.role)
    with psycopg.connect(server.url, autocommit=True) as admin:
        with admin.transaction():
            # the first GRANT SET ON PARAMETER inserts a shared catalogue row: two graders
            # doing it at once collide (23505 on pg_parameter_acl), so one at a time
            admin.execute("SELECT pg_advisory_xact_lock(hashtext('lab grading roles'))")
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER CREATEDB NOCREATEROLE "
                                  "PASSWORD {}").format(role, sql.Literal(iso.password)))
            admin.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(role))
            # checks remove their own planted rows past triggers (versioned data), and detect
            # the deadlocks they force within a fraction of a second (race conditions)
            admin.execute(sql.SQL("GRANT SET ON PARAMETER session_replication_role, "
                                  "deadlock_timeout TO {}").format(role))
        comment = admin.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                "WHERE datname = %s", [scale_template]).fetchone()
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY = FILE_COPY OWNER {}")
                      .format(sql.Identifier(iso.template), sql.Identifier(scale_template), role))
        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(iso.template), sql.Literal(comment[0] if comment else None)))
        admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
            sql.Identifier(iso.template)))
    with psycopg.connect(server.url_for(iso.template), autocommit=True) as conn:
        # an untrusted extension only a superuser may create (the slow-query challenge); its
        # views go to the role, since the slow-query check plants its own statistics in
        # their place inside a transaction it rolls back
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for (view,) in conn.execute("""
                SELECT c.oid::regclass::text FROM pg_class c JOIN pg_depend d ON d.objid = c.oid
                JOIN pg_extension e ON e.oid = d.refobjid
                WHERE e.extname = 'pg_stat_statements' AND c.relkind = 'v'""").fetchall():
            conn.execute(sql.SQL("ALTER VIEW {} OWNER TO {}").format(sql.SQL(view), role))
        _give_dataset_to(conn, role)
        # by name, without argument types: each has one signature, and that signature
        # differs between versions (18 added a boolean to pg_stat_statements_reset)
        for function in ("pg_stat_statements_reset", "pg_stat_reset"):
            conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
                sql.SQL(function), role))


def _make_challenge_roles(iso: Isolation, topic: str) -> None:
    """The roles the challenge's check module says the grader makes (``GRADER_MAKES_ROLES``:
    the challenge database's name -> [(role, can log in)]), granted to the learner's role so
    that it may own through them, SET ROLE to them and reset what they own; and the
    replication slots it says the grader makes (``GRADER_MAKES_SLOTS``: name -> [slot])."""
    try:
        module = importlib.import_module(f"labs.checks.{topic}")
    except ImportError:
        return
    make = getattr(module, "GRADER_MAKES_ROLES", None)
    if make is None and not hasattr(module, "GRADER_MAKES_SLOTS"):
        return
    from ..tools.roles import password as role_password

    dbname = f"lab_{iso.namespace}{topic}"  # labs.setup(topic) under LAB_DB_NAMESPACE
    with psycopg.connect(iso.server.url, autocommit=True) as admin:
        # outside grading the lab connects as a superuser, which row-level security does not
        # apply to, and the checks read the truth through that connection; the learner's
        # answers are still judged as the challenge's own roles, which do not bypass it
        admin.execute(sql.SQL("ALTER ROLE {} BYPASSRLS").format(sql.Identifier(iso.role)))
        for name, login in make(dbname) if make else []:
            iso.challenge_roles.append(name)
            admin.execute(sql.SQL("CREATE ROLE {} {} NOSUPERUSER NOBYPASSRLS NOCREATEDB "
                                  "NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(name), sql.SQL("LOGIN" if login else "NOLOGIN"),
                sql.Literal(role_password(name, iso.role_secret))))
            admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(name),
                                                           sql.Identifier(iso.role)))
        for slot in getattr(module, "GRADER_MAKES_SLOTS", lambda _: [])(dbname):
            iso.challenge_slots.append(slot)
            admin.execute("SELECT pg_create_physical_replication_slot(%s, true)", [slot])


def _give_satellites(iso: Isolation, topic: str) -> None:
    """For a challenge whose check module says ``USES_SATELLITES`` (15's PgBouncer and
    replica): start the lab's pair, let the role through PgBouncer, let it hold a replica
    delay (``ALTER SYSTEM`` on that one parameter, ``pg_reload_conf()``), and wait until
    the replica knows the role. The kernel is given both with the role in their URLs."""
    try:
        module = importlib.import_module(f"labs.checks.{topic}")
    except ImportError:
        return
    if not getattr(module, "USES_SATELLITES", False):
        return
    from ..runtime import satellites

    pooler, replica = satellites.pooler_url("postgres"), satellites.replica_url("postgres")
    role = sql.Identifier(iso.role)
    with psycopg.connect(iso.server.url, autocommit=True) as admin:
        with admin.transaction():
            admin.execute("SELECT pg_advisory_xact_lock(hashtext('lab grading roles'))")
            admin.execute(sql.SQL("GRANT ALTER SYSTEM ON PARAMETER recovery_min_apply_delay "
                                  "TO {}").format(role))
        # in the replica's postgres database, where the delay is set; DROP OWNED BY in
        # release() takes it back
        admin.execute(sql.SQL("GRANT EXECUTE ON FUNCTION pg_reload_conf() TO {}").format(role))
        lsn = admin.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    satellites.admit(iso.role, iso.password)
    iso.satellite_env = {satellites.GIVEN_POOLER: iso.as_role(pooler),
                         satellites.GIVEN_REPLICA: iso.as_role(replica)}
    # another notebook may hold a replica delay (a minute in 15's checks)
    if not satellites.wait_for_replay(lsn, timeout=180):
        raise RuntimeError("the lab's replica did not replay the graded role within 180 s")


def release(iso: Isolation) -> list[str]:
    """Drop every database the role owns, its template, and the role. Returns what failed."""
    problems = []
    if iso.challenge_slots:
        with psycopg.connect(iso.server.url, autocommit=True) as admin:
            admin.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                          "WHERE slot_name = ANY(%s)", [iso.challenge_slots])
    if iso.satellite_env:
        from ..runtime import satellites

        try:
            satellites.dismiss(iso.role)
        except Exception as exc:  # PgBouncer gone: nothing to take back
            problems.append(f"could not take {iso.role} out of PgBouncer: {exc}")
    with psycopg.connect(iso.server.url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [iso.role]).fetchone() \
                is None and admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                          [iso.template]).fetchone() is None \
                and not iso.challenge_roles:
            return problems  # never made
        owned = [r[0] for r in admin.execute(
            "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles "
            "WHERE rolname = %s) OR datname = %s", [iso.role, iso.template]).fetchall()]
        for name in owned:
            try:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))
            except psycopg.Error as exc:
                problems.append(f"could not drop {name}: {exc}")
        try:
            with admin.transaction():
                # dropping the role deletes its pg_parameter_acl grant: same lock as granting
                admin.execute("SELECT pg_advisory_xact_lock(hashtext('lab grading roles'))")
                for role in [*iso.challenge_roles, iso.role]:
                    if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                     [role]).fetchone():
                        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        except psycopg.Error as exc:
            problems.append(f"could not drop role {iso.role}: {exc}")
    return problems


def leftovers(server: Server) -> list[str]:
    """Databases and roles that grading made and did not drop."""
    with psycopg.connect(server.url, autocommit=True) as admin:
        dbs = [r[0] for r in admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s OR datname LIKE 'lab_grade%%'",
            [f"{GRADE_PREFIX}%"]).fetchall()]
        roles = [r[0] for r in admin.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", [f"{GRADE_PREFIX}%"]).fetchall()]
    return dbs + roles


# --------------------------------------------------------------------------
# running one notebook


def _cell_outcomes(junit: Path, nb: nbformat.NotebookNode) -> list[tuple[int, float, str]]:
    """(notebook cell index, seconds, failure message) for each cell nbval ran."""
    if not junit.exists():
        return []
    # nbval numbers code cells only; the report names cells as the notebook does
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        m = re.search(r"Cell (\d+)", case.get("name", ""))
        if not m or int(m.group(1)) >= len(code_cells):
            continue
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        text = "" if failure is None else (failure.get("message", "") + " " + (failure.text or ""))
        out.append((code_cells[int(m.group(1))], float(case.get("time", 0) or 0), text))
    return out


def _run_nbval(notebook: Path, nb: nbformat.NotebookNode, workdir: Path, env: dict[str, str],
               cell_timeout: int, notebook_timeout: int) -> tuple[str, list[tuple[int, float, str]]]:
    junit = workdir / "cells.xml"
    cmd = [sys.executable, "-m", "pytest", str(notebook), "-q", "-p", "no:cacheprovider",
           "-p", "no:xdist", "-o", "addopts=", "--nbval-lax", "--nbval-current-env",
           f"--nbval-cell-timeout={cell_timeout}", "--rootdir", str(notebook.parent),
           f"--junitxml={junit}"]
    started = time.monotonic()
    try:
        subprocess.run(cmd, cwd=notebook.parent, env=env, capture_output=True, text=True,
                       check=False, timeout=notebook_timeout, start_new_session=True)
        timed_out = ""
    except subprocess.TimeoutExpired:
        timed_out = f"notebook time limit: stopped after {time.monotonic() - started:.0f} s"
    return timed_out, _cell_outcomes(junit, nb)


def grade_one(learner: str, submitted: Path, cell_timeout: int = 600,
              notebook_timeout: int = 900, keep: bool = False,
              server: Server | None = None) -> Row:
    started = time.monotonic()
    canonical_path = NOTEBOOKS_DIR / submitted.name
    topic = topic_of(submitted)
    if not canonical_path.exists():
        return Row(learner, submitted.name, 0, 0, note="not a notebook of this lab")
    expected = checks_of(topic)
    try:
        submission = nbformat.read(submitted, as_version=4)
    except Exception as exc:  # an unreadable file is a grade, not a crash
        return Row(learner, submitted.name, 0, len(expected),
                   [(c, "notebook could not be read") for c in expected],
                   note=f"not a readable notebook: {str(exc)[:160]}")
    graded, note, flags = assemble(nbformat.read(canonical_path, as_version=4), submission)
    server = server or ensure_server(verbose=False)
    iso = isolate(server, learner, topic, template_name(current_scale()))
    try:
        with tempfile.TemporaryDirectory(prefix="lab-grade-") as tmp:
            work = Path(tmp)
            path = work / submitted.name
            nbformat.write(graded, path)
            key = secrets.token_bytes(32)
            key_file = work / "verdict.key"
            key_file.write_bytes(key)
            results = work / "results.jsonl"
            env = dict(os.environ, LAB_RESULTS_FILE=str(results),
                       LAB_RESULTS_KEY_FILE=str(key_file), LAB_DB_NAMESPACE=iso.namespace,
                       LAB_TEMPLATE=iso.template, DATABASE_URL=iso.url(),
                       LAB_ROLE_SECRET=iso.role_secret, **iso.satellite_env,
                       PLOOMBER_STATS_ENABLED="false", LAB_REVEAL_SOLUTIONS="0",
                       LAB_PROGRESS="off", PYTHONPATH=str(ROOT))
            timed_out, cells = _run_nbval(path, graded, work, env, cell_timeout,
                                          notebook_timeout)
            verdicts, forged = read_verdicts(results, key)
    finally:
        if not keep:
            problems = release(iso)
            if problems:
                note = "; ".join(filter(None, [note] + problems))
    if forged:
        flags.append(f"{forged} verdict line(s) not written by the checks (forged or altered)")
    slow = [(i, s) for i, s, text in cells if "Timeout" in text or "timeout" in text.lower()
            and "exceeded" in text]
    for index, seconds in slow:
        note = "; ".join(filter(None, [note, f"timed out in cell {index} after {seconds:.0f} s"]))
    if timed_out:
        last = cells[-1][0] + 1 if cells else 0
        note = "; ".join(filter(None, [note, f"timed out in cell {last} ({timed_out})"]))
    failures = []
    for check_id in expected:
        verdict = verdicts.get(check_id)
        if verdict is None:
            failures.append((check_id, "did not run (an earlier cell failed or timed out)"))
        elif not verdict["passed"]:
            failures.append((check_id, verdict["message"]))
    return Row(learner, submitted.name, len(expected) - len(failures), len(expected), failures,
               note, flags, time.monotonic() - started, reflections_in(submission))


# (seconds a cell, seconds a notebook): an honest notebook needs well under a minute at
# tiny scale and a few minutes at small; a cell that runs past these is stuck, not slow
LIMITS = {"tiny": (120, 300), "small": (300, 480), "production": (1800, 3600)}


def grade(submissions: str | Path, out_dir: str | Path = "grading-report",
          cell_timeout: int | None = None, notebook_timeout: int | None = None, jobs: int = 1,
          keep: bool = False, progress: bool = False) -> Report:
    scale = current_scale()
    default_cell, default_notebook = LIMITS.get(scale.name, LIMITS["production"])
    cell_timeout = cell_timeout or default_cell
    notebook_timeout = notebook_timeout or max(default_notebook, cell_timeout)
    base = Path(submissions)
    if not base.is_dir():
        raise SystemExit(f"{base} is not a folder of submissions (one sub-folder per learner).")
    work = [(learner_dir.name, submitted)
            for learner_dir in sorted(p for p in base.iterdir() if p.is_dir())
            for submitted in sorted(learner_dir.glob("*.ipynb"))]
    server = ensure_server(verbose=False)
    # a missing dataset is the instructor's to build (DatasetMissing says how), not N errors
    ensure_template(server, scale, build_if_missing=scale.name == "tiny")
    # each notebook runs a kernel and a PostgreSQL backend or more: one per core at most
    jobs = max(1, min(jobs, os.cpu_count() or 1, len(work) or 1))
    errors: list[str] = []

    def one(item: tuple[str, Path]) -> Row:
        learner, submitted = item
        try:
            return grade_one(learner, submitted, cell_timeout, notebook_timeout, keep, server)
        except Exception as exc:  # the grader's failure, reported apart from the learners'
            errors.append(f"{learner}/{submitted.name}: {type(exc).__name__}: {exc}")
            return Row(learner, submitted.name, 0, len(checks_of(topic_of(submitted)))
                       if (NOTEBOOKS_DIR / submitted.name).exists() else 0,
                       note="not graded: the grader failed (see grading errors)")

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(work), unit="notebook", desc="grading")
    rows: list[Row] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(one, work):
            rows.append(row)
            if bar:
                bar.update(1)
                bar.set_postfix_str(f"{row.learner}: {row.passed}/{row.total}")
    if bar:
        bar.close()
    report = Report(rows, errors)
    report.write(Path(out_dir) if Path(out_dir).is_absolute() else ROOT / out_dir)
    return report
