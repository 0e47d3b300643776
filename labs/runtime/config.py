"""Where the lab keeps things and how big its data is.

One place decides the repository root, the state folder, and the data scale, so
that every notebook, test and command reads them the same way.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # labs/runtime/config.py -> the repository
STATE_DIR = Path(os.environ.get("LAB_STATE_DIR", ROOT / ".lab"))
DATASETS_DIR = ROOT / "datasets"
SOLUTIONS_DIR = ROOT / "solutions"
NOTEBOOKS_DIR = ROOT / "notebooks"

# Oldest server the lab supports: MERGE, STRATEGY = FILE_COPY and
# pg_stat_statements' current columns all need 15.
MIN_SERVER_VERSION = 150000


@dataclass(frozen=True)
class Scale:
    """Row counts of the shared dataset at one scale."""

    name: str
    customers: int
    products: int
    orders: int
    items_per_order: float  # mean; order_items = orders * items_per_order
    accounts: int
    users: int

    @property
    def order_items(self) -> int:
        return int(self.orders * self.items_per_order)

    @property
    def largest_table_rows(self) -> int:
        return max(self.customers, self.orders, self.order_items, self.users)


# tiny keeps the test suite fast; production puts 10 million rows in the
# largest tables (order_items, users), which is where plans and locks change.
SCALES: dict[str, Scale] = {
    "tiny": Scale("tiny", customers=5_000, products=1_000, orders=20_000,
                  items_per_order=2.5, accounts=1_000, users=5_000),
    "small": Scale("small", customers=100_000, products=10_000, orders=400_000,
                   items_per_order=2.5, accounts=10_000, users=200_000),
    "production": Scale("production", customers=1_000_000, products=100_000,
                        orders=4_000_000, items_per_order=2.5, accounts=100_000,
                        users=10_000_000),
}
DEFAULT_SCALE = "small"


def scale_from_rows(rows: int) -> Scale:
    """A custom scale whose largest table has about ``rows`` rows."""
    if rows < 1_000:
        raise ValueError("LAB_SCALE as a row count must be at least 1000")
    orders = max(rows * 2 // 5, 400)
    return Scale(
        f"rows{rows}",
        customers=max(rows // 10, 100),
        products=max(rows // 100, 100),
        orders=orders,
        items_per_order=2.5,
        accounts=max(rows // 100, 100),
        users=rows,
    )


def current_scale(value: str | None = None) -> Scale:
    """The scale chosen by ``value``, else ``$LAB_SCALE``, else the default.

    Accepts a name (tiny, small, production) or a row count such as ``2000000``
    or ``2m`` for the largest table.
    """
    raw = (value or os.environ.get("LAB_SCALE") or DEFAULT_SCALE).strip().lower()
    if raw in SCALES:
        return SCALES[raw]
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([km]?)", raw.replace("_", ""))
    if match:
        factor = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2)]
        return scale_from_rows(int(float(match.group(1)) * factor))
    raise ValueError(
        f"LAB_SCALE={raw!r} is not a scale. Use one of {', '.join(SCALES)} "
        "or a row count for the largest table, e.g. LAB_SCALE=2m."
    )


def namespace() -> str:
    """Prefix for database names, so parallel test workers never share one."""
    return re.sub(r"[^a-z0-9_]", "_", os.environ.get("LAB_DB_NAMESPACE", "").lower())
