"""The course map: each challenge, what it needs first, how hard and how long.

One list, read by ``labs.course_map()`` (00 shows it), ``python -m labs map``,
``labs.progress()`` (which suggests the next challenge whose prerequisites are
done) and ``tests/test_course.py`` (which keeps the README's table equal to it).
Times are for a first attempt at the small scale, prose read and exercises
solved, measured by the authors against themselves; they are estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..runtime.config import NOTEBOOKS_DIR

LEVELS = {1: "introductory", 2: "intermediate", 3: "advanced"}


@dataclass(frozen=True)
class Challenge:
    number: str
    topic: str
    title: str
    practise: str
    needs: tuple[str, ...]
    level: int
    minutes: int

    @property
    def notebook(self) -> str:
        return f"notebooks/{self.number}_{self.topic}.ipynb"


COURSE: tuple[Challenge, ...] = (
    Challenge("00", "start_here", "Start here",
              "how the lab works: setup, exercises, checks, hints, reset, scale",
              (), 1, 20),
    Challenge("01", "large_datasets", "Boundary testing with large datasets",
              "generating and loading millions of rows: insertion strategies measured, "
              "memory, keys after the load, ANALYZE and VACUUM",
              ("start_here",), 2, 90),
    Challenge("02", "race_conditions", "Race conditions in money transfers",
              "double spending: lost updates, four fixes compared, isolation levels, "
              "deadlocks, retries that apply exactly once",
              ("start_here",), 3, 120),
    Challenge("03", "indexing", "Indexing",
              "which index serves which query, proved with the plan; what each index "
              "costs on writes",
              ("start_here",), 2, 90),
    Challenge("04", "slow_query", "The slow-query ticket",
              'the "50 ms became 8 s" ticket: diagnose with EXPLAIN and '
              "pg_stat_statements, fix it",
              ("indexing",), 2, 60),
    Challenge("05", "migrations", "Schema evolution and migrations",
              "zero-downtime schema changes under live traffic: lock queues, "
              "expand/backfill/contract, Alembic, squawk",
              ("indexing", "race_conditions"), 3, 120),
    Challenge("06", "upserts", "Idempotent upserts",
              "idempotent upserts from racing vendor feeds: ON CONFLICT, MERGE, "
              "idempotency keys, bulk loads",
              ("race_conditions",), 3, 90),
    Challenge("07", "soft_delete", "Soft delete and archival",
              "soft delete that order history survives, restore, and archiving old orders "
              "in batches proven by counts and checksums",
              ("indexing", "race_conditions"), 2, 75),
    Challenge("08", "versioned_data", "Versioned data",
              "a history table kept by a trigger, AS OF queries on half-open periods, an "
              "exclusion constraint, time that stays monotonic when transactions commit "
              "out of order",
              ("race_conditions", "migrations"), 3, 90),
    Challenge("09", "large_binary", "Large binary data",
              "images and documents in bytea, large objects and a content-addressed file "
              "store, measured; streaming reads with bounded memory, crash-safe uploads, "
              "orphans swept with a grace period",
              ("start_here", "race_conditions"), 2, 90),
    Challenge("10", "model_boundaries", "Model boundaries",
              "the ORM stays inside the service layer: response and request DTOs over a "
              "FastAPI app, mass assignment refused, lazy loads that raise, N+1 against "
              "eager loading under a statement budget",
              ("start_here",), 2, 75),
    Challenge("11", "schema_first", "Schema first",
              "a DBA-owned legacy schema: clean models mapped onto quoted names (TypeDecorator, "
              "composite keys), a mapping document from the catalogue, drift detected with "
              "Alembic, autogenerate's rename reviewed",
              ("migrations", "model_boundaries"), 2, 75),
    Challenge("12", "multi_tenant", "Multi-tenant data",
              "row-level security that no query, role or pooled connection gets around: "
              "USING and WITH CHECK policies, FORCE for the owner, a security_invoker view, "
              "the tenant set per transaction on a pool, an index under the policy",
              ("indexing", "race_conditions"), 3, 75),
    Challenge("13", "mvcc_bloat", "MVCC and bloat",
              "dead rows, long transactions and the xmin horizon: HOT updates, who holds the "
              "horizon back, idle transactions ended by role timeouts, autovacuum per table",
              ("race_conditions", "soft_delete"), 3, 60),
    Challenge("14", "partitioning", "Partitioning",
              "tables that outgrow one heap: orders converted to monthly range partitions "
              "online, pruning proved in plans, a year retired by DETACH and DROP, not DELETE",
              ("indexing", "soft_delete"), 3, 75),
    Challenge("15", "pooling_replicas", "Pooling and replicas",
              "a real PgBouncer and a real streaming replica: a pool sized from a measured "
              "curve, request state kept per transaction behind PgBouncer, reads routed to a "
              "lagging replica by LSN",
              ("race_conditions", "multi_tenant"), 3, 60),
    Challenge("16", "outbox", "The transactional outbox",
              "an order and its event in one transaction, a relay of SKIP LOCKED workers that "
              "survives kills, an idempotent consumer, an audit trigger no client can skip",
              ("upserts", "race_conditions"), 3, 90),
)

BY_TOPIC = {c.topic: c for c in COURSE}


def challenge(topic: str) -> Challenge:
    try:
        return BY_TOPIC[topic]
    except KeyError:
        raise ValueError(f"there is no challenge {topic!r}; the course has "
                         f"{', '.join(BY_TOPIC)}") from None


def builds_on_me(topic: str) -> list[Challenge]:
    """The challenges that list ``topic`` as a prerequisite."""
    return [c for c in COURSE if topic in c.needs]


def markdown_table() -> str:
    """The course map as the README shows it."""
    rows = ["| # | notebook | what you practise | needs first | level | time |",
            "|---|---|---|---|---|---|"]
    for c in COURSE:
        needs = ", ".join(BY_TOPIC[n].number for n in c.needs) or "—"
        rows.append(f"| {c.number} | `{c.number}_{c.topic}` | {c.practise} | {needs} | "
                    f"{LEVELS[c.level]} | {_duration(c.minutes)} |")
    return "\n".join(rows)


def _duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" + (f" {rest} min" if rest else "")


def text_map() -> str:
    """The course map as a notebook or a terminal shows it."""
    lines = []
    for c in COURSE:
        needs = ", ".join(BY_TOPIC[n].number for n in c.needs) or "nothing"
        missing = "" if (NOTEBOOKS_DIR / f"{c.number}_{c.topic}.ipynb").exists() else " (missing)"
        lines.append(f"{c.number}  {c.title}{missing}")
        lines.append(f"    {LEVELS[c.level]}, about {_duration(c.minutes)}; needs {needs}")
        lines.append(f"    {c.practise}")
    lines.append("")
    lines.append("Any order that respects 'needs' works; 02 and 03 open most of the course.")
    return "\n".join(lines)


def course_map() -> None:
    """Print the course map (what each challenge needs first, its level and time)."""
    print(text_map())
