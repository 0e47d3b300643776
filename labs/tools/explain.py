"""Query plans: run EXPLAIN safely, read it as a tree, draw it, and assert on it.

``explain(lab, sql)`` runs ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` inside a
transaction that is always rolled back. The PostgreSQL manual warns that with
ANALYZE "the statement is actually executed, so any side effects of the statement
will happen as usual"; rolling back makes an ``EXPLAIN ANALYZE DELETE ...`` as
harmless as a SELECT, and lets ``settings={"work_mem": "64kB"}`` act as
``SET LOCAL`` for this one statement.

The JSON is parsed into a :class:`Plan` of :class:`PlanNode` objects that carry
what a person reads a plan for: node type, relation, index, estimated vs actual
rows, loops, self and total time, shared buffers hit/read, sort method and
space, workers. Three ways to look at it:

* ``plan.text()``: an indented rendering close to PostgreSQL's text format,
  with timings masked by default (``time=T``) so a notebook output stays the
  same from run to run;
* ``draw(plan)``: a matplotlib tree whose box colour and bar show each node's
  share of *self* time, with misestimated row counts outlined in red;
* ``draw_before_after(before, after)``: two plans side by side with the speed-up.

Checks judge plans with the ``assert_*`` functions at the end of this module;
each raises :class:`~labs.course.checking.CheckFailed` with a message for the learner
and the masked text plan as detail.

Parsing needs no database, so the unit tests run on recorded JSON plans.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from ..runtime.errors import PLACEHOLDER_FIX, CheckFailed, NotAttempted, placeholder_only

# Nodes that read through an index; "Bitmap Index Scan" only builds a bitmap,
# its heap is read by the "Bitmap Heap Scan" above it.
INDEX_NODE_TYPES = ("Index Scan", "Index Only Scan", "Bitmap Index Scan")
SCAN_NODE_TYPES = ("Seq Scan", "Parallel Seq Scan", "Index Scan", "Index Only Scan",
                   "Bitmap Heap Scan", "Bitmap Index Scan", "Tid Scan", "Tid Range Scan")
# A node below one of these may stop before reading all the rows it was
# estimated to return (LIMIT, EXISTS, a semi join): fewer actual rows than
# estimated is then early termination, not a misestimate.
_EARLY_STOP_PARENTS = ("Limit",)
_EARLY_STOP_JOINS = ("Semi", "Anti")
BLOCK_SIZE_KB = 8  # default PostgreSQL block size; buffers are counted in blocks


@dataclass
class PlanNode:
    """One node of an EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) plan.

    Times are inclusive of children and multiplied by loops (PostgreSQL reports
    per-loop averages); ``self_ms`` subtracts the children's total time.
    Buffer counts are inclusive too, as in PostgreSQL's output; ``self_hit``
    and ``self_read`` are this node's own share.
    """

    node_type: str
    relation: str | None = None
    alias: str | None = None
    index: str | None = None
    parent_relationship: str | None = None
    join_type: str | None = None
    est_rows: float = 0.0  # per loop, the planner's estimate
    actual_rows: float | None = None  # per loop; None without ANALYZE
    loops: int | None = None
    startup_ms: float | None = None  # per loop
    total_ms: float | None = None  # all loops, inclusive of children
    self_ms: float | None = None
    shared_hit: int = 0
    shared_read: int = 0
    temp_read: int = 0
    temp_written: int = 0
    sort_key: list[str] = field(default_factory=list)
    sort_method: str | None = None
    sort_space_kb: int | None = None
    sort_space_type: str | None = None  # "Memory" or "Disk"
    workers_planned: int | None = None
    workers_launched: int | None = None
    index_cond: str | None = None
    recheck_cond: str | None = None
    filter: str | None = None
    rows_removed_by_filter: float = 0.0  # all loops
    rows_removed_by_recheck: float = 0.0
    heap_fetches: int | None = None  # Index Only Scan: rows the visibility map could not vouch for
    join_cond: str | None = None
    hash_batches: int | None = None
    total_cost: float = 0.0
    children: list["PlanNode"] = field(default_factory=list)
    parent: "PlanNode | None" = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- derived facts ---------------------------------------------------

    @property
    def executed(self) -> bool:
        """False for "(never executed)" nodes and for plans without ANALYZE."""
        return bool(self.loops)

    @property
    def actual_total_rows(self) -> float | None:
        return None if self.actual_rows is None or self.loops is None else self.actual_rows * self.loops

    @property
    def self_hit(self) -> int:
        return max(self.shared_hit - sum(c.shared_hit for c in self.children), 0)

    @property
    def self_read(self) -> int:
        return max(self.shared_read - sum(c.shared_read for c in self.children), 0)

    @property
    def sort_on_disk(self) -> bool:
        return self.sort_space_type == "Disk" or (self.sort_method or "").startswith("external")

    @property
    def may_stop_early(self) -> bool:
        """True when an ancestor may stop pulling rows before this node is done."""
        node, parent = self, self.parent
        while parent is not None:
            if parent.node_type in _EARLY_STOP_PARENTS:
                return True
            if parent.join_type in _EARLY_STOP_JOINS and node.parent_relationship == "Inner":
                return True
            if parent.node_type == "Merge Join":  # a merge join stops when one side runs out
                return True
            node, parent = parent, parent.parent
        return False

    @property
    def misestimate(self) -> float:
        """How far the row estimate was off: max(est, actual) / min(est, actual), at least 1.

        Both sides are floored at one row (PostgreSQL never estimates fewer),
        and an actual count below the estimate does not count when an ancestor
        (LIMIT, a semi join, a merge join) may have stopped this node early.
        """
        if not self.executed or self.actual_rows is None:
            return 1.0
        est, act = max(self.est_rows, 1.0), max(self.actual_rows, 1.0)
        if act < est and self.may_stop_early:
            return 1.0
        return max(est, act) / min(est, act)

    @property
    def label(self) -> str:
        """'Seq Scan on order_items oi', 'Index Scan using orders_pkey on orders o'."""
        text = self.node_type
        if self.join_type and self.node_type.endswith(("Join", "Loop")) and self.join_type != "Inner":
            text = f"{self.node_type} ({self.join_type})"
        if self.index and self.node_type == "Bitmap Index Scan":
            return f"{text} on {self.index}"
        if self.index:
            text += f" using {self.index}"
        if self.relation and self.node_type != "Bitmap Index Scan":
            text += f" on {self.relation}"
            if self.alias and self.alias != self.relation:
                text += f" {self.alias}"
        return text

    def walk(self) -> Iterator["PlanNode"]:
        """This node and every node below it, depth first, parents before children."""
        yield self
        for child in self.children:
            yield from child.walk()

    def matches(self, node_type: str | Sequence[str] | None = None,
                relation: str | None = None, index: str | None = None) -> bool:
        """Whether this node is of ``node_type`` (one or several) on ``relation`` (name or alias)."""
        if node_type is not None:
            types = (node_type,) if isinstance(node_type, str) else tuple(node_type)
            if self.node_type not in types:
                return False
        if relation is not None and relation not in (self.relation, self.alias):
            return False
        if index is not None and self.index != index:
            return False
        return True


@dataclass
class Plan:
    """A parsed plan: the root node plus the statement-level numbers."""

    root: PlanNode
    planning_ms: float | None = None
    execution_ms: float | None = None
    sql: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    raw: Any = field(default=None, repr=False)

    # -- finding nodes ---------------------------------------------------

    def nodes(self) -> list[PlanNode]:
        return list(self.root.walk())

    def find(self, node_type: str | Sequence[str] | None = None, relation: str | None = None,
             index: str | None = None) -> list[PlanNode]:
        return [n for n in self.root.walk() if n.matches(node_type, relation, index)]

    def has(self, node_type: str | Sequence[str], relation: str | None = None) -> bool:
        """Whether any node is of ``node_type`` on ``relation`` ("Seq Scan", "order_items")."""
        return bool(self.find(node_type, relation))

    def index_scans(self, relation: str | None = None, index: str | None = None) -> list[PlanNode]:
        """Index Scan, Index Only Scan and Bitmap Index Scan nodes on a relation or index."""
        return self.find(INDEX_NODE_TYPES, relation, index)

    def uses_index(self, index: str | None = None, relation: str | None = None) -> bool:
        return bool(self.index_scans(relation, index))

    def scans(self, relation: str | None = None) -> list[PlanNode]:
        return self.find(SCAN_NODE_TYPES, relation)

    @property
    def sorts(self) -> list[PlanNode]:
        return [n for n in self.root.walk() if n.sort_method is not None]

    @property
    def sorts_on_disk(self) -> list[PlanNode]:
        return [n for n in self.sorts if n.sort_on_disk]

    # -- totals ----------------------------------------------------------

    @property
    def shared_hit(self) -> int:
        return self.root.shared_hit

    @property
    def shared_read(self) -> int:
        return self.root.shared_read

    @property
    def buffers(self) -> int:
        """Shared buffers touched (hit + read) by the whole statement: work that
        does not depend on what happens to be cached."""
        return self.root.shared_hit + self.root.shared_read

    @property
    def temp_written(self) -> int:
        return self.root.temp_written

    def rows_removed(self, relation: str | None = None) -> float:
        """Rows read and thrown away by Filter (and bitmap recheck) on ``relation``."""
        return sum(n.rows_removed_by_filter + n.rows_removed_by_recheck
                   for n in self.scans(relation))

    def worst_misestimate(self) -> tuple[float, PlanNode | None]:
        """The largest estimate-vs-actual factor and the node that has it."""
        worst, where = 1.0, None
        for node in self.root.walk():
            if node.misestimate > worst:
                worst, where = node.misestimate, node
        return worst, where

    # -- rendering -------------------------------------------------------

    def text(self, *, timings: bool = False, buffers: bool = False, costs: bool = False) -> str:
        """An indented plan, like PostgreSQL's text format but stable by default.

        Timings, buffer counts and sort space change from run to run (caches,
        the machine's load, parallel workers), so they are masked unless asked
        for: ``time=T``, ``Memory: NkB``. Row counts,
        loops, sort methods and conditions are deterministic for fixed data.
        """
        lines: list[str] = []
        self._render(self.root, 0, lines, timings=timings, buffers=buffers, costs=costs)
        if self.execution_ms is not None:
            if timings:
                lines.append(f"Execution Time: {self.execution_ms:.3f} ms")
            else:
                # said under every masked plan, so no reader takes T for a unit or a bug
                lines.append("Execution Time: T ms  (times masked as T so that this output is "
                             "the same on every run; .text(timings=True) shows them)")
        return "\n".join(lines)

    def _render(self, node: PlanNode, depth: int, lines: list[str], **opts: bool) -> None:
        # PostgreSQL's own layout: "->  " six columns further per level
        pad = "" if depth == 0 else " " * (6 * depth - 4) + "->  "
        body = " " * (6 * depth + 2)
        stats = f"rows est={_num(node.est_rows)}"
        if opts["costs"]:
            stats = f"cost={node.total_cost:.2f} " + stats
        if node.actual_rows is not None:
            if node.executed:
                stats += f" actual={_num(node.actual_rows)} loops={node.loops}"
                if opts["timings"] and node.total_ms is not None:
                    stats += f" time={node.total_ms:.3f} ms (self {node.self_ms:.3f} ms)"
                else:
                    stats += " time=T"
            else:
                stats += " (never executed)"
        lines.append(f"{pad}{node.label}  ({stats})")
        details: list[str] = []
        for name, value in (("Index Cond", node.index_cond), ("Recheck Cond", node.recheck_cond),
                            ("Join Cond", node.join_cond), ("Filter", node.filter)):
            if value:
                details.append(f"{name}: {value}")
        if node.rows_removed_by_filter:
            details.append(f"Rows Removed by Filter: {_num(node.rows_removed_by_filter)}")
        if node.heap_fetches is not None:
            details.append(f"Heap Fetches: {node.heap_fetches}")
        if node.sort_key:
            details.append("Sort Key: " + ", ".join(node.sort_key))
        if node.sort_method:
            # the space used varies with how rows fell to parallel workers: masked like buffers
            kb = node.sort_space_kb if opts["buffers"] else "N"
            space = f"  {node.sort_space_type or 'Space'}: {kb}kB" \
                if node.sort_space_kb is not None else ""
            details.append(f"Sort Method: {node.sort_method}{space}")
        if node.hash_batches and node.hash_batches > 1:
            details.append(f"Hash Batches: {node.hash_batches} (spilled to disk)")
        if node.workers_planned is not None:
            details.append(f"Workers Planned: {node.workers_planned}")
        if opts["buffers"] and (node.shared_hit or node.shared_read):
            details.append(f"Buffers: shared hit={node.shared_hit} read={node.shared_read}")
        for detail in details:
            lines.append(f"{body}{detail}")
        for child in node.children:
            self._render(child, depth + 1, lines, **opts)

    def __str__(self) -> str:
        return self.text()

    def summary(self) -> str:
        """One line: execution time, buffers, the worst misestimate."""
        factor, node = self.worst_misestimate()
        parts = []
        if self.execution_ms is not None:
            parts.append(f"{_ms(self.execution_ms)}")
        parts.append(f"{self.buffers:,} buffers ({self.shared_read:,} read)")
        if self.sorts_on_disk:
            parts.append("sort on disk")
        if node is not None and factor >= 10:
            parts.append(f"worst misestimate ×{factor:,.0f} at {node.label}")
        return ", ".join(parts)


def _num(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"


def _ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 10:
        return f"{value:.0f} ms"
    return f"{value:.2f} ms"


# --------------------------------------------------------------------------
# parsing


def _node_from_json(data: Mapping[str, Any], parent: PlanNode | None) -> PlanNode:
    loops = data.get("Actual Loops")
    node_type = data["Node Type"]
    if node_type == "ModifyTable":  # PostgreSQL's text format says "Delete on t", so do we
        node_type = data.get("Operation", node_type)
    node = PlanNode(
        node_type=node_type,
        relation=data.get("Relation Name"),
        alias=data.get("Alias"),
        index=data.get("Index Name"),
        parent_relationship=data.get("Parent Relationship"),
        join_type=data.get("Join Type"),
        est_rows=float(data.get("Plan Rows", 0)),
        actual_rows=float(data["Actual Rows"]) if "Actual Rows" in data else None,
        loops=int(loops) if loops is not None else None,
        startup_ms=data.get("Actual Startup Time"),
        total_ms=(data["Actual Total Time"] * (loops or 0)) if "Actual Total Time" in data else None,
        shared_hit=int(data.get("Shared Hit Blocks", 0)),
        shared_read=int(data.get("Shared Read Blocks", 0)),
        temp_read=int(data.get("Temp Read Blocks", 0)),
        temp_written=int(data.get("Temp Written Blocks", 0)),
        sort_key=list(data.get("Sort Key", []) or data.get("Presorted Key", [])),
        sort_method=data.get("Sort Method"),
        sort_space_kb=data.get("Sort Space Used"),
        sort_space_type=data.get("Sort Space Type"),
        workers_planned=data.get("Workers Planned"),
        workers_launched=data.get("Workers Launched"),
        index_cond=data.get("Index Cond"),
        recheck_cond=data.get("Recheck Cond"),
        filter=data.get("Filter"),
        rows_removed_by_filter=float(data.get("Rows Removed by Filter", 0)) * max(loops or 1, 1),
        rows_removed_by_recheck=float(data.get("Rows Removed by Index Recheck", 0)) * max(loops or 1, 1),
        heap_fetches=data.get("Heap Fetches"),
        join_cond=data.get("Hash Cond") or data.get("Merge Cond") or data.get("Join Filter"),
        hash_batches=data.get("Hash Batches"),
        total_cost=float(data.get("Total Cost", 0.0)),
        parent=parent,
        raw=dict(data),
    )
    # Parallel workers sort on their own: the node is on disk if any worker was.
    if node.sort_method is None and data.get("Workers"):
        for worker in data["Workers"]:
            if "Sort Method" in worker:
                node.sort_method = worker["Sort Method"]
                node.sort_space_kb = worker.get("Sort Space Used")
                node.sort_space_type = worker.get("Sort Space Type")
                break
    for worker in data.get("Workers", []) or []:
        if worker.get("Sort Space Type") == "Disk":
            node.sort_method = worker.get("Sort Method", node.sort_method)
            node.sort_space_type = "Disk"
            node.sort_space_kb = max(node.sort_space_kb or 0, worker.get("Sort Space Used", 0))
    # Incremental Sort reports per group kind instead of one method.
    if node.node_type == "Incremental Sort" and node.sort_method is None:
        groups = [data.get(k) for k in ("Full-sort Groups", "Pre-sorted Groups") if data.get(k)]
        methods = [m for g in groups for m in g.get("Sort Methods Used", [])]
        node.sort_method = ", ".join(methods) or None
        on_disk = any("Sort Space Disk" in g for g in groups)
        node.sort_space_type = "Disk" if on_disk else "Memory"
        space = [g.get("Sort Space Disk" if on_disk else "Sort Space Memory", {}) for g in groups]
        node.sort_space_kb = max((s.get("Peak Sort Space Used", 0) for s in space), default=None)
    node.children = [_node_from_json(child, node) for child in data.get("Plans", [])]
    # A Bitmap Index Scan names only its index; its table is the heap scan's above it.
    if node.node_type == "Bitmap Heap Scan":
        for below in node.walk():
            if below.node_type == "Bitmap Index Scan" and below.relation is None:
                below.relation, below.alias = node.relation, node.alias
    if node.total_ms is not None:
        node.self_ms = max(node.total_ms - sum(c.total_ms or 0.0 for c in node.children), 0.0)
    return node


def parse(doc: str | bytes | Sequence[Any] | Mapping[str, Any], sql: str = "",
          settings: Mapping[str, str] | None = None) -> Plan:
    """Parse EXPLAIN (FORMAT JSON) output: the JSON text, the list psycopg
    returns, or the single ``{"Plan": ...}`` object inside it."""
    if isinstance(doc, (str, bytes)):
        doc = json.loads(doc)
    top = doc[0] if isinstance(doc, Sequence) and not isinstance(doc, Mapping) else doc
    if "Plan" not in top:
        raise ValueError("not an EXPLAIN (FORMAT JSON) document: no 'Plan' key")
    return Plan(root=_node_from_json(top["Plan"], None),
                planning_ms=top.get("Planning Time"),
                execution_ms=top.get("Execution Time"),
                sql=sql, settings=dict(settings or {}), raw=doc)


def load(path: "str | os.PathLike[str]") -> Plan:
    """A plan saved by :meth:`Plan.save` (or a bare EXPLAIN JSON file)."""
    from pathlib import Path

    doc = json.loads(Path(path).read_text())
    if isinstance(doc, Mapping) and "explain" in doc:
        return parse(doc["explain"], sql=doc.get("sql", ""), settings=doc.get("settings"))
    return parse(doc)


def save(plan: Plan, path: "str | os.PathLike[str]", **meta: Any) -> None:
    """Write a plan's raw EXPLAIN JSON with its SQL and settings (for tests and reports)."""
    from pathlib import Path

    Path(path).write_text(json.dumps({"sql": plan.sql, "settings": plan.settings, **meta,
                                      "explain": plan.raw}, indent=1) + "\n")


# --------------------------------------------------------------------------
# running EXPLAIN


def _connection(target: Any):
    """(connection, whether we opened it) for a Lab, a psycopg connection or a URL."""
    import psycopg

    if isinstance(target, psycopg.Connection):
        return target, False
    url = getattr(target, "url", target)
    if not isinstance(url, str):
        raise TypeError("explain() needs a Lab, a psycopg connection or a connection URL")
    return psycopg.connect(url, autocommit=True), True


def explain(target: Any, sql: str, params: Any = None, *, analyze: bool = True,
            buffers: bool = True, settings: Mapping[str, str] | None = None) -> Plan:
    """Run EXPLAIN on ``sql`` and return the parsed plan, changing nothing.

    ``target`` is a Lab, a psycopg connection or a URL. The statement runs in
    a transaction (a savepoint when the connection is already inside one)
    that is always rolled back, so INSERT, UPDATE and DELETE leave no trace.
    ``settings`` are applied with ``set_config(name, value, is_local => true)``,
    which is ``SET LOCAL``: they end with that transaction.
    """
    if placeholder_only(sql):  # a demo of the learner's answer, run before it is written
        raise NotAttempted(PLACEHOLDER_FIX["demo"])
    options = ["FORMAT JSON"]
    if analyze:
        # said either way: PostgreSQL 18 turns BUFFERS on with ANALYZE by default,
        # 15 to 17 leave it off, and the same call must mean the same on both
        options[:0] = ["ANALYZE", "BUFFERS" if buffers else "BUFFERS FALSE"]
    statement = sql.strip().rstrip(";")
    conn, owned = _connection(target)
    try:
        with conn.transaction(force_rollback=True):
            for name, value in (settings or {}).items():
                conn.execute("SELECT set_config(%s, %s, true)", (name, str(value)))
            row = conn.execute(f"EXPLAIN ({', '.join(options)}) {statement}", params).fetchone()
    finally:
        if owned:
            conn.close()
    return parse(row[0], sql=statement, settings={k: str(v) for k, v in (settings or {}).items()})


def best_of(target: Any, sql: str, params: Any = None, *, runs: int = 3,
            settings: Mapping[str, str] | None = None) -> Plan:
    """The fastest of ``runs`` EXPLAIN ANALYZE executions (the first warms the cache).

    Minimum, not mean: noise from other processes only ever adds time.
    """
    plans = [explain(target, sql, params, settings=settings) for _ in range(max(runs, 1))]
    return min(plans, key=lambda p: p.execution_ms or math.inf)


def speedup(before: Plan, after: Plan) -> float:
    """How many times faster ``after`` executed than ``before``."""
    if not before.execution_ms or not after.execution_ms:
        raise ValueError("speed-up needs two EXPLAIN ANALYZE plans")
    return before.execution_ms / max(after.execution_ms, 1e-3)


# --------------------------------------------------------------------------
# drawing

MISESTIMATE_HIGHLIGHT = 10.0  # PostgreSQL's planner shrugs off 2×; 10× changes join choices


def _layout(root: PlanNode) -> dict[int, tuple[float, int]]:
    """x (leaf order; parents centred over children) and depth of every node."""
    positions: dict[int, tuple[float, int]] = {}
    next_leaf = [0.0]

    def place(node: PlanNode, depth: int) -> float:
        if not node.children:
            x = next_leaf[0]
            next_leaf[0] += 1.0
        else:
            xs = [place(child, depth + 1) for child in node.children]
            x = (xs[0] + xs[-1]) / 2
        positions[id(node)] = (x, depth)
        return x

    place(root, 0)
    return positions


def _node_lines(node: PlanNode, total_ms: float | None) -> list[str]:
    head = node.node_type
    if node.join_type not in (None, "Inner") and node.node_type.endswith(("Join", "Loop")):
        head += f" ({node.join_type})"
    lines = [head]
    if node.node_type == "Bitmap Index Scan" and node.index:
        lines.append(_short(node.index, 30))
    else:
        if node.relation:
            lines.append(_short(node.relation + (f" {node.alias}" if node.alias and node.alias != node.relation else ""), 30))
        if node.index:
            lines.append("using " + _short(node.index, 24))
    if node.actual_rows is not None:
        if node.executed:
            lines.append(f"rows {_num(node.actual_rows)} (est {_num(node.est_rows)})"
                         + (f" ×{node.loops:,}" if node.loops and node.loops > 1 else ""))
        else:
            lines.append("never executed")
    else:
        lines.append(f"est rows {_num(node.est_rows)}")
    if node.self_ms is not None and total_ms:
        lines.append(f"self {_ms(node.self_ms)} ({100 * node.self_ms / total_ms:.0f}%)")
    if node.sort_method:
        space = f" {node.sort_space_kb:,} kB" if node.sort_space_kb is not None else ""
        where = "DISK" if node.sort_on_disk else "memory"
        lines.append(f"{node.sort_method}: {where}{space}")
    if node.self_hit or node.self_read:
        lines.append(f"buffers {node.self_hit + node.self_read:,} (read {node.self_read:,})")
    return lines


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# layout units: one box is BOX_W × BOX_H units; one unit is INCH inches on paper
BOX_W, BOX_H, GAP_X, GAP_Y, INCH = 3.3, 1.75, 0.45, 0.6, 0.62


def _extent(plan: Plan) -> tuple[float, int]:
    """(number of leaf columns, number of levels) of a plan's tree."""
    positions = _layout(plan.root)
    return max(x for x, _ in positions.values()) + 1, max(d for _, d in positions.values()) + 1


def _time_base(plan: Plan) -> float | None:
    """What self-time shares are shares of: the sum of every node's self time.

    Not the execution time: parallel workers' times add up across processes,
    and their sum is the work the plan did.
    """
    total = sum(n.self_ms or 0.0 for n in plan.root.walk())
    return total or None


def _draw_on(ax: Any, plan: Plan, title: str | None, levels: int, highlight: float) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch, Rectangle

    positions = _layout(plan.root)
    columns, _ = _extent(plan)
    total = _time_base(plan)
    cmap = plt.colormaps["OrRd"]

    def centre(node: PlanNode) -> tuple[float, float]:
        x, d = positions[id(node)]
        return x * (BOX_W + GAP_X), -d * (BOX_H + GAP_Y)

    for node in plan.root.walk():
        cx, cy = centre(node)
        for child in node.children:
            kx, ky = centre(child)
            rows = child.actual_total_rows if child.actual_total_rows is not None else child.est_rows
            width = 0.8 + 3.0 * math.log10(max(rows, 1)) / 7  # thicker edge: more rows flow up
            ax.plot([cx, kx], [cy - BOX_H / 2, ky + BOX_H / 2], color="#8a8a8a",
                    linewidth=width, zorder=1, solid_capstyle="round")
        share = (node.self_ms / total) if (total and node.self_ms is not None) else 0.0
        bad = node.misestimate >= highlight
        ax.add_patch(FancyBboxPatch((cx - BOX_W / 2, cy - BOX_H / 2), BOX_W, BOX_H,
                                    boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor=cmap(0.04 + 0.86 * min(share, 1.0)),
                                    edgecolor="#d00000" if bad else "#555555",
                                    linewidth=3.2 if bad else 0.9, zorder=2))
        # the self-time bar along the bottom of the box
        ax.add_patch(Rectangle((cx - BOX_W / 2 + 0.08, cy - BOX_H / 2 + 0.07),
                               (BOX_W - 0.16) * min(share, 1.0), 0.12, facecolor="#5c0000",
                               edgecolor="none", zorder=3))
        lines = _node_lines(node, total)
        dark = share > 0.55
        colour = "white" if dark else "black"
        ax.text(cx, cy + BOX_H / 2 - 0.12, lines[0], ha="center", va="top", fontsize=9,
                fontweight="bold", color=colour, zorder=4)
        ax.text(cx, cy + BOX_H / 2 - 0.45, "\n".join(lines[1:]), ha="center", va="top",
                fontsize=7.5, linespacing=1.3, color=colour, zorder=4)
        if bad:
            direction = "more" if (node.actual_rows or 0) > node.est_rows else "fewer"
            ax.text(cx, cy - BOX_H / 2 - 0.06, f"rows misestimated ×{node.misestimate:,.0f} "
                    f"({direction} than expected)", ha="center", va="top", fontsize=7.5,
                    color="#d00000", fontweight="bold", zorder=4,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    ax.set_xlim(-BOX_W / 2 - 0.2, (columns - 1) * (BOX_W + GAP_X) + BOX_W / 2 + 0.2)
    ax.set_ylim(-(levels - 1) * (BOX_H + GAP_Y) - BOX_H / 2 - 0.3, BOX_H / 2 + 0.1)
    ax.axis("off")
    heading = title or "Plan"
    if plan.execution_ms is not None:
        heading += "\n" + plan.summary()
    ax.set_title(heading, fontsize=10.5, loc="left")


def draw(plan: Plan, ax: Any = None, title: str | None = None,
         highlight: float = MISESTIMATE_HIGHLIGHT):
    """Draw the plan as a tree: one box per node, root at the top.

    Box colour (white → dark red) and the bar at its bottom show the node's
    share of *self* time, so the hot spot stands out; edge width grows with
    the rows passed up; a thick red outline and a red note mark nodes whose
    actual rows differ from the estimate by ``highlight``× or more.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    columns, levels = _extent(plan)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.5, columns * (BOX_W + GAP_X) * INCH),
                                      levels * (BOX_H + GAP_Y) * INCH + 0.9))
    _draw_on(ax, plan, title, levels, highlight)
    ax.figure.tight_layout()
    return ax.figure


def draw_before_after(before: Plan, after: Plan, titles: tuple[str, str] = ("Before", "After"),
                      suptitle: str | None = None, highlight: float = MISESTIMATE_HIGHLIGHT):
    """Two plans side by side at the same scale, with the speed-up on top."""
    import matplotlib.pyplot as plt

    (w1, d1), (w2, d2) = _extent(before), _extent(after)
    w1, w2 = max(w1, 1.4), max(w2, 1.4)  # room for the panel titles
    levels = max(d1, d2)
    fig, axes = plt.subplots(1, 2, figsize=((w1 + w2) * (BOX_W + GAP_X) * INCH + 0.6,
                                            levels * (BOX_H + GAP_Y) * INCH + 1.6),
                             gridspec_kw={"width_ratios": [w1, w2]})
    _draw_on(axes[0], before, titles[0], levels, highlight)
    _draw_on(axes[1], after, titles[1], levels, highlight)
    parts = []
    if before.execution_ms and after.execution_ms:
        parts.append(f"{_ms(before.execution_ms)} → {_ms(after.execution_ms)}: "
                     f"{speedup(before, after):,.0f}× faster")
    if before.buffers and after.buffers:
        parts.append(f"buffers {before.buffers:,} → {after.buffers:,}")
    head = suptitle or ""
    if parts:
        head = (head + "\n" if head else "") + ";  ".join(parts)
    if head:
        fig.suptitle(head, fontsize=13, fontweight="bold")
    fig.text(0.5, 0.005, "box colour and bar: share of self time  ·  edge width: rows passed up"
             f"  ·  red outline: rows misestimated ≥{highlight:.0f}×", ha="center", va="bottom",
             fontsize=8.5, color="#444444")
    fig.tight_layout(rect=(0, 0.02, 1, 0.98))
    return fig


# --------------------------------------------------------------------------
# assertions for checks


def _fail(message: str, plan: Plan, extra: str = "") -> CheckFailed:
    detail = (extra + "\n" if extra else "") + "the plan:\n" + plan.text()
    return CheckFailed(message, detail)


def _where(node_type: str | Sequence[str], relation: str | None) -> str:
    kind = node_type if isinstance(node_type, str) else " / ".join(node_type)
    return kind + (f" on {relation}" if relation else "")


def assert_has_node(plan: Plan, node_type: str | Sequence[str], relation: str | None = None,
                    message: str | None = None) -> list[PlanNode]:
    """The plan has a ``node_type`` node (on ``relation``); returns the nodes found."""
    found = plan.find(node_type, relation)
    if not found:
        raise _fail(message or f"The plan has no {_where(node_type, relation)}.", plan)
    return found


def assert_no_node(plan: Plan, node_type: str | Sequence[str], relation: str | None = None,
                   message: str | None = None) -> None:
    """The plan has no ``node_type`` node (on ``relation``)."""
    found = plan.find(node_type, relation)
    if found:
        raise _fail(message or f"The plan still shows {found[0].label}.", plan)


def assert_uses_index(plan: Plan, relation: str | None = None, index: str | None = None, *,
                      index_only: bool = False, message: str | None = None) -> list[PlanNode]:
    """Some node reads ``relation`` through ``index`` (any index when None).

    With ``index_only`` it must be an Index Only Scan.
    """
    kinds = ("Index Only Scan",) if index_only else INDEX_NODE_TYPES
    found = plan.find(kinds, relation, index)
    if not found:
        what = "an Index Only Scan" if index_only else "an index scan"
        on = f" of {relation}" if relation else ""
        via = f" using {index}" if index else ""
        scans = ", ".join(n.label for n in plan.scans(relation)) or "nothing"
        raise _fail(message or f"The plan does not use {what}{on}{via}; it reads it with {scans}.",
                    plan)
    return found


def assert_sort_in_memory(plan: Plan, message: str | None = None) -> None:
    """No sort spilled to disk ("external merge" / "external sort", Disk: ... kB)."""
    spilled = plan.sorts_on_disk
    if spilled:
        node = spilled[0]
        raise _fail(message or (f"A sort still spills to disk: Sort Method: {node.sort_method}  "
                                f"Disk: {node.sort_space_kb}kB. Sort fewer rows, or give this "
                                "one query more work_mem (SET LOCAL)."), plan)


def assert_buffers_under(plan: Plan, budget: int, message: str | None = None) -> None:
    """The statement touched fewer than ``budget`` shared buffers (hit + read, 8 kB each)."""
    if plan.buffers >= budget:
        raise _fail(message or (f"The query touched {plan.buffers:,} buffers "
                                f"({plan.buffers * BLOCK_SIZE_KB // 1024:,} MB of pages); "
                                f"the budget is {budget:,}."), plan)


def assert_misestimate_under(plan: Plan, factor: float, message: str | None = None) -> None:
    """Every node's actual rows are within ``factor``× of the planner's estimate."""
    worst, node = plan.worst_misestimate()
    if node is not None and worst >= factor:
        raise _fail(message or (f"The planner misestimated {node.label}: it expected "
                                f"{_num(node.est_rows)} rows and got {_num(node.actual_rows or 0)} "
                                f"(×{worst:,.0f}). Fresh statistics (ANALYZE) or extended "
                                "statistics usually fix that."), plan)


def index_cond_columns(node: PlanNode) -> set[str]:
    """Column names that appear in a node's Index Cond (what the index really narrowed)."""
    return set(re.findall(r"\(?([a-z_][a-z0-9_]*)\s*(?:=|<|>|<=|>=|~~|@>|\?)",
                          (node.index_cond or "") + " " + (node.recheck_cond or "")))
