"""The shop dataset generator: Faker pools combined by numpy into COPY streams.

Faker is far too slow to call once per row at ten million rows (tens of
microseconds per value), so it is called only a few thousand times, with a
fixed seed, to fill *pools* of realistic values (names per locale, cities per
country, vendors, colours ...). numpy then draws indices into those pools,
vectorised, with realistic shapes: Zipf-like orders per customer, seasonal and
weekly timestamps, NULLs where real data has them, a few case-only duplicate
e-mails, a load-test customer that owns a share of the orders.

Encoding is vectorised too. Every field of a chunk becomes a fixed-width block
of bytes (pool entries padded with NUL, integers as right-aligned digits with
NUL instead of leading zeros); the blocks are laid side by side in one
``(rows, width)`` uint8 matrix and the padding is squeezed out with one boolean
mask. Text never contains NUL, so in text format the mask is simply
``matrix != 0``; in binary format the columns that hold binary integers are
always kept. No Python code runs per row, except for the small products table.

Determinism: every chunk draws from its own ``np.random.Generator(PCG64)``
seeded by ``(seed, table, chunk number)``, the pools come from a seeded Faker,
and all dates are relative to the fixed ``DATASET_NOW``; so the same seed, the
same Faker version and the same scale give byte-identical streams, and
``Table.checksum`` (sha256 of the encoded COPY stream) proves it.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterator

import faker
import numpy as np

from ..runtime.config import Scale

# All timestamps are relative to this instant, not to the wall clock, so that a
# rebuild next month is byte-identical. "The last three years" ends here.
DATASET_NOW = np.datetime64("2026-11-01T00:00:00", "s")
HISTORY_DAYS = 3 * 365
CHUNK_ROWS = 250_000  # rows per encoded chunk: bounds memory at any scale
FORMATS = ("text", "binary")
DEFAULT_FORMAT = "binary"  # measured faster (bench/results/load.md)
FAKER_VERSION = faker.VERSION

_EPOCH_2000 = 946_684_800  # PostgreSQL's binary timestamps count from 2000-01-01
_NOW_S = int(DATASET_NOW.astype("int64"))
_START_S = _NOW_S - HISTORY_DAYS * 86_400
# customers signed up at most two years before the order history starts; the
# text encoder's pool of dates reaches back further, with a margin
_POOL_DAY0 = _START_S // 86_400 - 3 * 365

# (locale, country code, share of customers): the shop sells mostly in the US.
LOCALES: list[tuple[str, str, float]] = [
    ("en_US", "US", 0.40), ("en_GB", "GB", 0.12), ("de_DE", "DE", 0.12),
    ("fr_FR", "FR", 0.09), ("es_ES", "ES", 0.06), ("it_IT", "IT", 0.06),
    ("nl_NL", "NL", 0.05), ("pl_PL", "PL", 0.04), ("en_CA", "CA", 0.04),
    ("en_AU", "AU", 0.02),
]
PHONE_PREFIX = {"US": "+1", "GB": "+44", "DE": "+49", "FR": "+33", "ES": "+34",
                "IT": "+39", "NL": "+31", "PL": "+48", "CA": "+1", "AU": "+61"}
EMAIL_DOMAINS = [("gmail.com", 30), ("yahoo.com", 8), ("hotmail.com", 7), ("outlook.com", 7),
                 ("icloud.com", 5), ("gmx.de", 3), ("web.de", 2), ("orange.fr", 2),
                 ("free.fr", 1), ("libero.it", 1), ("proton.me", 1)]

CATEGORIES: dict[str, list[str]] = {
    "electronics": ["Headphones", "Speaker", "Charger", "Keyboard", "Mouse", "Monitor",
                    "Webcam", "Router", "Power Bank", "Smartwatch", "Tablet", "Cable"],
    "clothing": ["T-Shirt", "Hoodie", "Jacket", "Jeans", "Dress", "Sweater", "Scarf",
                 "Socks", "Shirt", "Coat", "Shorts", "Cap"],
    "home": ["Mug", "Lamp", "Pillow", "Blanket", "Vase", "Frying Pan", "Knife Set",
             "Cutting Board", "Towel", "Clock", "Rug", "Candle"],
    "books": ["Novel", "Cookbook", "Atlas", "Notebook", "Journal", "Guide", "Anthology",
              "Biography", "Comic", "Dictionary"],
    "sports": ["Yoga Mat", "Dumbbell", "Water Bottle", "Backpack", "Tent", "Bicycle Helmet",
               "Running Shoes", "Tennis Racket", "Football", "Jump Rope"],
    "toys": ["Puzzle", "Board Game", "Teddy Bear", "Building Blocks", "Kite", "Doll",
             "Toy Car", "Train Set"],
    "beauty": ["Shampoo", "Face Cream", "Perfume", "Lipstick", "Hair Brush", "Soap",
               "Sunscreen", "Nail Polish"],
    "garden": ["Planter", "Garden Hose", "Shovel", "Seed Kit", "Bird Feeder", "Lantern",
               "Watering Can", "Pruning Shears"],
}
CATEGORY_WEIGHTS = [0.22, 0.24, 0.18, 0.08, 0.1, 0.06, 0.07, 0.05]
CATEGORY_PRICE = {  # (median price, lognormal sigma)
    "electronics": (59.0, 0.9), "clothing": (34.0, 0.6), "home": (24.0, 0.7),
    "books": (16.0, 0.4), "sports": (39.0, 0.8), "toys": (22.0, 0.6),
    "beauty": (14.0, 0.6), "garden": (27.0, 0.7),
}
ADJECTIVES = ["Classic", "Modern", "Compact", "Deluxe", "Eco", "Premium", "Vintage", "Rustic",
              "Ultra", "Smart", "Portable", "Heavy-Duty", "Lightweight", "Ergonomic", "Organic",
              "Handmade", "Slim", "Wireless", "Soft", "Sturdy", "Elegant", "Essential"]
MATERIALS = ["Cotton", "Wool", "Leather", "Steel", "Aluminium", "Bamboo", "Oak", "Ceramic",
             "Glass", "Silicone", "Linen", "Recycled Plastic", "Copper", "Marble", "Denim"]
SIZES = ["XS", "S", "M", "L", "XL", "XXL"]
TAGS = ["bestseller", "new", "sale", "gift", "eco", "limited", "bundle", "clearance",
        "staff-pick", "back-in-stock", "handmade", "imported"]
NOTES = ["Leave at the door", "Gift wrap, please", "Ring the bell twice", "Deliver after 5pm",
         "Call before delivery", "Fragile - handle with care", "Leave with neighbour",
         "Please use recyclable packaging", "Birthday present - no invoice in the box",
         "Back door, not the front"]
CURRENCIES = [("USD", 0.55), ("EUR", 0.3), ("GBP", 0.1), ("PLN", 0.03), ("AUD", 0.02)]
STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"]
# status probabilities by order age: young orders are still moving, old ones settled
STATUS_BY_AGE: list[tuple[float, list[float]]] = [
    (1.0,     [0.55, 0.35, 0.00, 0.00, 0.10, 0.00]),
    (3.0,     [0.10, 0.55, 0.28, 0.00, 0.07, 0.00]),
    (14.0,    [0.01, 0.07, 0.45, 0.40, 0.05, 0.02]),
    (60.0,    [0.00, 0.00, 0.03, 0.87, 0.05, 0.05]),
    (1e9,     [0.00, 0.00, 0.00, 0.90, 0.05, 0.05]),
]


# --------------------------------------------------------------------------
# pools: a few thousand realistic values per kind, from a seeded Faker


def _ascii_word(text: str) -> str:
    """Lower-case a-z only, for the local part of e-mail addresses."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if "a" <= ch <= "z") or "user"


@dataclass
class Pools:
    """Realistic values from Faker, grouped so numpy can index them."""

    first: list[str]
    last: list[str]
    first_start: np.ndarray  # per locale: where its first names begin in ``first``
    first_count: np.ndarray
    last_start: np.ndarray
    last_count: np.ndarray
    cities: list[str]
    city_start: np.ndarray
    city_count: np.ndarray
    companies: list[str]
    colours: list[str]


def _stable_order(fake: faker.Faker) -> None:
    """it_IT builds its city list from a set, so its order (and what a seeded
    draw returns) changes with PYTHONHASHSEED; sort such lists on the instance."""
    for provider in fake.get_providers():
        cities = getattr(provider, "cities", None)
        if isinstance(cities, list):
            provider.cities = sorted(cities)


@lru_cache(maxsize=4)
def make_pools(seed: int, per_locale: int = 400) -> Pools:
    """Faker, seeded, called a few thousand times; the result is cached per seed."""
    first: list[str] = []
    last: list[str] = []
    cities: list[str] = []
    fs, fc, ls, lc, cs, cc = [], [], [], [], [], []
    for i, (locale, _country, _share) in enumerate(LOCALES):
        fake = faker.Faker(locale)
        _stable_order(fake)
        fake.seed_instance(seed * 1000 + i)
        # dict.fromkeys dedups while keeping Faker's (seeded) order
        names_f = list(dict.fromkeys(fake.first_name() for _ in range(per_locale)))
        names_l = list(dict.fromkeys(fake.last_name() for _ in range(per_locale)))
        towns = list(dict.fromkeys(fake.city() for _ in range(per_locale // 2)))
        for start, count, values, target in ((fs, fc, names_f, first), (ls, lc, names_l, last),
                                             (cs, cc, towns, cities)):
            start.append(len(target))
            count.append(len(values))
            target.extend(values)
    fake = faker.Faker("en_US")
    fake.seed_instance(seed)
    companies = list(dict.fromkeys(fake.company() for _ in range(2000)))
    colours = list(dict.fromkeys(fake.color_name() for _ in range(400)))
    arr = lambda xs: np.asarray(xs, dtype=np.int64)  # noqa: E731
    return Pools(first, last, arr(fs), arr(fc), arr(ls), arr(lc), cities, arr(cs), arr(cc),
                 companies, colours)


# --------------------------------------------------------------------------
# vectorised encoding


def _escape_copy_text(value: str) -> str:
    """COPY text format escapes (Faker values have none, but stay correct)."""
    return (value.replace("\\", "\\\\").replace("\t", "\\t")
            .replace("\n", "\\n").replace("\r", "\\r"))


def pool_matrix(values: list[str] | list[bytes]) -> np.ndarray:
    """Pool entries as a NUL-padded (entries, width) uint8 matrix, COPY-escaped."""
    encoded = [v if isinstance(v, bytes) else _escape_copy_text(v).encode() for v in values]
    width = max(1, max(len(v) for v in encoded))
    return np.array(encoded, dtype=f"S{width}").view(np.uint8).reshape(len(encoded), width)


def digits(values: np.ndarray, width: int, zero_pad: bool = False) -> np.ndarray:
    """Non-negative integers as ASCII digits, right-aligned; NUL for leading zeros."""
    v = values.astype(np.int64, copy=True)
    out = np.empty((len(v), width), dtype=np.uint8)
    for k in range(width - 1, -1, -1):
        out[:, k] = (v % 10).astype(np.uint8) + 48
        v //= 10
    if not zero_pad and width > 1:
        powers = 10 ** np.arange(width - 1, 0, -1, dtype=np.int64)
        out[:, :-1][values[:, None] < powers[None, :]] = 0
    return out


def _be(values: np.ndarray, dtype: str) -> np.ndarray:
    """Big-endian bytes of each value as an (n, size) uint8 matrix."""
    a = np.ascontiguousarray(values.astype(dtype))
    return a.view(np.uint8).reshape(len(a), a.dtype.itemsize)


@lru_cache(maxsize=1)
def _time_pools() -> tuple[np.ndarray, np.ndarray]:
    """'YYYY-MM-DD ' for every day of the history (and a margin), 'HH:MM:SS+00' per second."""
    days = np.arange(_POOL_DAY0, _NOW_S // 86400 + 2).astype("datetime64[D]")
    day_pool = pool_matrix([f"{d} " for d in days.astype(str)])
    secs = np.arange(86400)
    hms = np.stack([secs // 3600, secs // 60 % 60, secs % 60], axis=1)
    tod = np.full((86400, 11), ord(":"), dtype=np.uint8)
    tod[:, 0:2] = digits(hms[:, 0], 2, True)
    tod[:, 3:5] = digits(hms[:, 1], 2, True)
    tod[:, 6:8] = digits(hms[:, 2], 2, True)
    tod[:, 8:11] = np.frombuffer(b"+00", dtype=np.uint8)
    return day_pool, tod


@dataclass
class Col:
    """One column of a chunk, before encoding.

    kind is one of text, int8, int4, numeric (values in cents), ts (epoch
    seconds), bool, jsonb. Text-like kinds carry ``segs``: NUL-padded uint8
    matrices whose concatenation is the value; numeric kinds carry ``values``.
    """

    kind: str
    segs: list[np.ndarray] = field(default_factory=list)
    values: np.ndarray | None = None
    null: np.ndarray | None = None  # bool mask of NULL rows


def text_col(*segs: np.ndarray, null: np.ndarray | None = None, kind: str = "text") -> Col:
    return Col(kind, segs=list(segs), null=null)


def pool_take(pool: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return pool[idx]


def _const(n: int, text: bytes) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text, dtype=np.uint8), (n, len(text)))


def _numeric_text(cents: np.ndarray, width: int) -> list[np.ndarray]:
    n = len(cents)
    return [digits(cents // 100, width), _const(n, b"."), digits(cents % 100, 2, True)]


def _numeric_binary(cents: np.ndarray) -> np.ndarray:
    """numeric in PostgreSQL's binary form, fixed width: 4 base-10000 digits, weight 2.

    numeric_recv strips the leading zero digits itself, so a fixed layout is fine
    for values below 10^12.
    """
    n = len(cents)
    whole = cents // 100
    groups = np.stack([whole // 100_000_000 % 10_000, whole // 10_000 % 10_000, whole % 10_000,
                       (cents % 100) * 100], axis=1)
    head = np.array([4, 2, 0, 2], dtype=">i2")  # ndigits, weight, sign (+), dscale
    out = np.empty((n, 16), dtype=np.uint8)
    out[:, :8] = head.view(np.uint8)
    out[:, 8:] = groups.astype(">i2").view(np.uint8).reshape(n, 8)
    return out


def _encode_text(cols: list[Col], n: int) -> np.ndarray:
    parts: list[np.ndarray] = []
    day_pool, tod = _time_pools()
    for i, c in enumerate(cols):
        if c.kind in ("text", "jsonb"):
            segs = c.segs
        elif c.kind in ("int8", "int4"):
            segs = [digits(c.values, _width_needed(c.values))]
        elif c.kind == "numeric":
            segs = _numeric_text(c.values, _width_needed(c.values // 100))
        elif c.kind == "ts":
            s = c.values
            segs = [day_pool[s // 86400 - _POOL_DAY0], tod[s % 86400]]
        elif c.kind == "bool":
            segs = [np.where(c.values, np.uint8(ord("t")), np.uint8(ord("f")))[:, None]]
        else:
            raise ValueError(c.kind)
        if c.null is not None:
            # a NULL is \N: blank the value, write \N in a slot of its own
            segs = [np.where(c.null[:, None], np.uint8(0), s) for s in segs]
            segs.append(np.where(c.null[:, None], np.frombuffer(b"\\N", np.uint8), np.uint8(0)))
        parts.extend(segs)
        parts.append(_const(n, b"\n" if i == len(cols) - 1 else b"\t"))
    mat = _hstack(parts, n)
    return mat[mat != 0]


def _width_needed(values: np.ndarray) -> int:
    top = int(values.max()) if len(values) else 0
    return max(1, len(str(top)))


def _hstack(parts: list[np.ndarray], n: int) -> np.ndarray:
    width = sum(p.shape[1] for p in parts)
    mat = np.empty((n, width), dtype=np.uint8)
    at = 0
    for p in parts:
        mat[:, at:at + p.shape[1]] = p
        at += p.shape[1]
    return mat


def _encode_binary(cols: list[Col], n: int) -> np.ndarray:
    # each block: (matrix, keep) where keep is True (every byte is data, zeros
    # included), False (NUL padding to drop: text) or a NULL mask (drop the
    # fixed-width payload of NULL rows)
    blocks: list[tuple[np.ndarray, bool | np.ndarray]] = [
        (_const(n, struct.pack(">h", len(cols))), True)]
    for c in cols:
        if c.kind in ("text", "jsonb"):
            segs = list(c.segs)
            if c.kind == "jsonb":
                segs.insert(0, _const(n, b"\x01"))  # jsonb binary format version
            if c.null is not None:
                segs = [np.where(c.null[:, None], np.uint8(0), s) for s in segs]
            length = sum(np.count_nonzero(s, axis=1) for s in segs).astype(np.int32)
            if c.null is not None:
                length[c.null] = -1
            blocks.append((_be(length, ">i4"), True))
            blocks.extend((s, False) for s in segs)
            continue
        if c.kind == "int8":
            payload = _be(c.values, ">i8")
        elif c.kind == "int4":
            payload = _be(c.values, ">i4")
        elif c.kind == "numeric":
            payload = _numeric_binary(c.values)
        elif c.kind == "ts":
            payload = _be((c.values - _EPOCH_2000) * 1_000_000, ">i8")
        elif c.kind == "bool":
            payload = c.values.astype(np.uint8)[:, None]
        else:
            raise ValueError(c.kind)
        length = np.full(n, payload.shape[1], dtype=np.int32)
        if c.null is not None:
            length[c.null] = -1
        blocks.append((_be(length, ">i4"), True))
        blocks.append((payload, True if c.null is None else ~c.null))
    mat = _hstack([b for b, _ in blocks], n)
    keep_cols = np.concatenate([np.full(b.shape[1], k is True) for b, k in blocks])
    keep = mat != 0
    keep |= keep_cols
    at = 0
    for b, k in blocks:
        if isinstance(k, np.ndarray):
            keep[:, at:at + b.shape[1]] = k[:, None]
        at += b.shape[1]
    return mat[keep]


BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
BINARY_TRAILER = struct.pack(">h", -1)


def encode(cols: list[Col], n: int, fmt: str) -> np.ndarray:
    """One chunk of rows as a COPY payload (uint8 array), in text or binary format."""
    return _encode_text(cols, n) if fmt == "text" else _encode_binary(cols, n)


# --------------------------------------------------------------------------
# shapes


def _rng(seed: int, table: str, chunk: int) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256(table.encode()).digest()[:4], "big")
    return np.random.Generator(np.random.PCG64([seed, key, chunk]))


@lru_cache(maxsize=1)
def _day_weights() -> np.ndarray:
    """Relative order volume per day of the history: growth, season, weekday."""
    days = np.arange(_START_S // 86400, _NOW_S // 86400)
    dt = days.astype("datetime64[D]")
    month = (dt.astype("datetime64[M]").astype(int) % 12) + 1
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    season = np.array([0.8, 0.75, 0.85, 0.9, 0.95, 0.9, 0.9, 0.95, 1.0, 1.05, 1.6, 1.9])[month - 1]
    week = np.array([1.05, 1.0, 1.0, 1.0, 1.05, 0.85, 0.95])[weekday]
    growth = np.linspace(0.6, 1.4, len(days))  # the shop grows
    # Black Friday and the week before Christmas
    dom = (dt - dt.astype("datetime64[M]")).astype(int) + 1
    peak = np.where((month == 11) & (dom >= 24) & (dom <= 30), 2.0, 1.0)
    peak = np.where((month == 12) & (dom >= 10) & (dom <= 20), 1.5 * peak, peak)
    w = season * week * growth * peak
    return np.cumsum(w / w.sum())


_HOUR_W = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 7, 6, 6, 6, 6, 7, 8, 9, 10, 9, 7, 4],
                   dtype=float)
_HOUR_CDF = np.cumsum(_HOUR_W / _HOUR_W.sum())


def seasonal_times(rng: np.random.Generator, n: int, u: np.ndarray | None = None) -> np.ndarray:
    """Epoch seconds over the history: busier Nov/Dec, weekdays and evenings.

    ``u`` (uniform in [0, 1)) picks the day; sorted slices of it give
    time-ordered chunks.
    """
    u = rng.random(n) if u is None else u
    day = np.minimum(np.searchsorted(_day_weights(), u, side="right"), HISTORY_DAYS - 1)
    hour = np.searchsorted(_HOUR_CDF, rng.random(n), side="right")
    sec = rng.integers(0, 3600, n)
    return _START_S + day * 86400 + hour * 3600 + sec


def uniform_times(rng: np.random.Generator, n: int, lo: np.ndarray | int,
                  hi: np.ndarray | int) -> np.ndarray:
    return (lo + (rng.random(n) * (np.asarray(hi) - lo)).astype(np.int64)).astype(np.int64)


def _cdf(weights: list[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return np.cumsum(w / w.sum())


def _pick(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)


# --------------------------------------------------------------------------
# tables


@dataclass
class Table:
    """A table's rows as a stream of encoded chunks."""

    name: str
    columns: list[str]
    rows: int
    n_chunks: int
    chunk: Callable[[int, str], tuple[int, np.ndarray]]  # (number, fmt) -> (rows, payload)

    def chunks(self, fmt: str) -> Iterator[tuple[int, np.ndarray]]:
        """Every chunk in order; each one is independent of the others."""
        for no in range(self.n_chunks):
            yield self.chunk(no, fmt)

    def copy_sql(self, fmt: str) -> str:
        opts = " (FORMAT BINARY)" if fmt == "binary" else ""
        return f"COPY {self.name} ({', '.join(self.columns)}) FROM STDIN{opts}"


class ShopGenerator:
    """Generates the shop dataset for one scale and seed, table by table."""

    def __init__(self, scale: Scale, seed: int = 42, load_test_share: float = 0.05,
                 chunk_rows: int = CHUNK_ROWS) -> None:
        if not 0 <= load_test_share < 1:
            raise ValueError("load_test_share must be in [0, 1)")
        self.scale = scale
        self.seed = seed
        self.load_test_share = load_test_share
        self.chunk_rows = chunk_rows
        self.pools = make_pools(seed)
        self.max_chunk_bytes = 0  # largest encoded chunk so far, for the memory test
        self._tables: list[Table] | None = None
        self._prepare_pools()
        self._prepare_shared()

    # ---- pools as matrices -------------------------------------------
    def _prepare_pools(self) -> None:
        p = self.pools
        self.m_first = pool_matrix(p.first)
        self.m_last = pool_matrix(p.last)
        self.m_efirst = pool_matrix([_ascii_word(x) for x in p.first])
        self.m_efirst_cap = pool_matrix([_ascii_word(x).capitalize() for x in p.first])
        self.m_elast = pool_matrix([_ascii_word(x) for x in p.last])
        self.m_city = pool_matrix(p.cities)
        self.m_country = pool_matrix([c for _, c, _ in LOCALES])
        self.m_phone_prefix = pool_matrix([PHONE_PREFIX[c] + " " for _, c, _ in LOCALES])
        self.m_domain = pool_matrix(["@" + d for d, _ in EMAIL_DOMAINS])
        self.cdf_domain = _cdf([w for _, w in EMAIL_DOMAINS])
        self.m_email_sep = pool_matrix([".", "_", "", "-"])
        self.cdf_email_sep = _cdf([0.55, 0.15, 0.25, 0.05])
        self.cdf_locale = _cdf([s for _, _, s in LOCALES])
        self.m_status = pool_matrix(STATUSES)
        self.m_note = pool_matrix(NOTES)
        self.m_currency = pool_matrix([c for c, _ in CURRENCIES])
        self.cdf_currency = _cdf([w for _, w in CURRENCIES])

    def _prepare_shared(self) -> None:
        """State other tables depend on: customer countries and sign-up times,
        product prices and popularity, the customer popularity of orders."""
        s = self.scale
        rng = _rng(self.seed, "shared", 0)
        n = s.customers
        self.cust_locale = _pick(rng, self.cdf_locale, n)
        # sign-ups: a long tail of old customers, more recent ones as the shop grows
        self.cust_created = seasonal_times(rng, n) - rng.integers(0, 400 * 86400, n)
        self.cust_created = np.maximum(self.cust_created, _START_S - 2 * 365 * 86400)
        self.cust_created.sort()  # ids follow sign-up time, as with a sequence
        # the load-test account is an old one, so that it can own orders of any age
        self.load_test_id = (int(rng.integers(1, max(2, n // 100) + 1))
                             if self.load_test_share > 0 else 0)
        # Zipf-like: customer of rank k is picked with weight 1/(k+50)^0.9, ranks shuffled
        ranks = rng.permutation(n)
        w = 1.0 / (ranks + 50.0) ** 0.9
        if self.load_test_id:
            w[self.load_test_id - 1] = 0.0  # its share is assigned explicitly
        self.cust_cdf = np.cumsum(w / w.sum())
        # products: price per product, popularity skew
        m = s.products
        self.prod_category = _pick(rng, _cdf(CATEGORY_WEIGHTS), m)
        med = np.array([CATEGORY_PRICE[c][0] for c in CATEGORIES])[self.prod_category]
        sig = np.array([CATEGORY_PRICE[c][1] for c in CATEGORIES])[self.prod_category]
        price = med * np.exp(rng.normal(0, 1, m) * sig)
        # prices end in .99 / .49 / .00 like real price tags
        ending = np.array([99, 49, 0, 95])[_pick(rng, _cdf([0.6, 0.15, 0.15, 0.1]), m)]
        self.prod_price = np.maximum(np.floor(price).astype(np.int64), 1) * 100 - 100 + ending
        self.prod_price = np.maximum(self.prod_price, 99)
        pw = 1.0 / (rng.permutation(m) + 5.0) ** 0.9
        self.prod_cdf = np.cumsum(pw / pw.sum())

    # ---- helpers -------------------------------------------------------
    def _table(self, name: str, columns: list[str], total: int,
               make: Callable[[np.random.Generator, int, int], list[Col]],
               chunk_rows: int | None = None) -> Table:
        size = chunk_rows or self.chunk_rows

        def one(no: int, fmt: str) -> tuple[int, np.ndarray]:
            lo = no * size
            n = min(size, total - lo)
            payload = encode(make(_rng(self.seed, name, no), lo, n), n, fmt)
            self.max_chunk_bytes = max(self.max_chunk_bytes, payload.nbytes)
            return n, payload
        return Table(name, columns, total, -(-total // size), one)

    def _names(self, rng: np.random.Generator, loc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.pools
        n = len(loc)
        fi = p.first_start[loc] + (rng.random(n) * p.first_count[loc]).astype(np.int64)
        li = p.last_start[loc] + (rng.random(n) * p.last_count[loc]).astype(np.int64)
        return fi, li

    # ---- tables ----------------------------------------------------------
    def customers(self) -> Table:
        s = self.scale
        dup_rate = 0.001

        def make(rng: np.random.Generator, lo: int, n: int) -> list[Col]:
            ids = np.arange(lo + 1, lo + n + 1, dtype=np.int64)
            loc = self.cust_locale[lo:lo + n]
            fi, li = self._names(rng, loc)
            sep = _pick(rng, self.cdf_email_sep, n)
            dom = _pick(rng, self.cdf_domain, n)
            number = ids.copy()  # the id keeps every e-mail unique case-sensitively
            cap = np.zeros(n, dtype=bool)
            # ~0.1%: the same address as an earlier customer of this chunk, but
            # capitalised: 'Anna.smith12@..' next to 'anna.smith12@..'
            k = int(n * dup_rate)
            if k and n > 4 * k:
                picks = rng.choice(n, 2 * k, replace=False)
                dups, srcs = picks[:k], picks[k:]
                fi[dups], li[dups], sep[dups], dom[dups] = fi[srcs], li[srcs], sep[srcs], dom[srcs]
                number[dups] = number[srcs]
                cap[dups] = True
            efirst = np.where(cap[:, None], self.m_efirst_cap[fi], self.m_efirst[fi])
            email = [efirst, self.m_email_sep[sep], self.m_elast[li], digits(number, len(str(s.customers))),
                     self.m_domain[dom]]
            is_lt = ids == self.load_test_id
            if is_lt.any():
                # a recognisable address: loadtest@example.com
                j = int(np.flatnonzero(is_lt)[0])
                for seg in email[1:4]:
                    seg[j] = 0
                email[0] = _fit(email[0], j, b"loadtest")
                email[-1] = _fit(email[-1], j, b"@example.com")
            phone_null = rng.random(n) < 0.20
            phone = [self.m_phone_prefix[loc], digits(rng.integers(200_000_000, 999_999_999, n), 9)]
            city_idx = self.pools.city_start[loc] + (
                rng.random(n) * self.pools.city_count[loc]).astype(np.int64)
            created = self.cust_created[lo:lo + n]
            deleted_null = rng.random(n) >= 0.02
            deleted = uniform_times(rng, n, created, _NOW_S)
            return [
                Col("int8", values=ids),
                text_col(*email),
                text_col(self.m_first[fi], _const(n, b" "), self.m_last[li]),
                text_col(*phone, null=phone_null),
                text_col(self.m_country[loc]),
                text_col(self.m_city[city_idx], null=rng.random(n) < 0.03),
                Col("ts", values=created),
                Col("ts", values=deleted, null=deleted_null),
                Col("bool", values=is_lt),
            ]
        return self._table("customers", ["id", "email", "full_name", "phone", "country", "city",
                                         "created_at", "deleted_at", "is_load_test"],
                           s.customers, make)

    def users(self) -> Table:
        s = self.scale

        def make(rng: np.random.Generator, lo: int, n: int) -> list[Col]:
            loc = _pick(rng, self.cdf_locale, n)
            fi, li = self._names(rng, loc)
            return [Col("int8", values=np.arange(lo + 1, lo + n + 1, dtype=np.int64)),
                    text_col(self.m_first[fi], _const(n, b" "), self.m_last[li])]
        return self._table("users", ["id", "name"], s.users, make)

    def accounts(self) -> Table:
        s = self.scale

        def make(rng: np.random.Generator, lo: int, n: int) -> list[Col]:
            cust = rng.integers(1, s.customers + 1, n)
            # balances: positive, log-normal, most under a few hundred
            bal = np.maximum((np.exp(rng.normal(4.5, 1.4, n)) * 100).astype(np.int64), 1)
            version = rng.geometric(0.35, n).astype(np.int64) - 1
            updated = uniform_times(rng, n, self.cust_created[cust - 1], _NOW_S)
            return [Col("int8", values=np.arange(lo + 1, lo + n + 1, dtype=np.int64)),
                    Col("int8", values=cust),
                    text_col(self.m_currency[_pick(rng, self.cdf_currency, n)]),
                    Col("numeric", values=bal),
                    Col("int4", values=version),
                    Col("ts", values=updated)]
        return self._table("accounts", ["id", "customer_id", "currency", "balance", "version",
                                        "updated_at"], s.accounts, make)

    def products(self) -> Table:
        """Small (a tenth of customers at most): built row by row for the JSON."""
        s = self.scale
        cats = list(CATEGORIES)

        def make(rng: np.random.Generator, lo: int, n: int) -> list[Col]:
            r = random.Random(self.seed * 7919 + lo)
            ids = np.arange(lo + 1, lo + n + 1, dtype=np.int64)
            cat = self.prod_category[lo:lo + n]
            names, attrs, skus = [], [], []
            colours, companies = self.pools.colours, self.pools.companies
            vendor = rng.integers(0, min(len(companies), max(20, s.products // 50)), n)
            for i in range(n):
                c = cats[cat[i]]
                material = r.choice(MATERIALS)
                noun = r.choice(CATEGORIES[c])
                names.append(f"{r.choice(ADJECTIVES)} {material} {noun}")
                a: dict = {"colour": r.choice(colours), "material": material,
                           "tags": r.sample(TAGS, r.choice((0, 1, 1, 2, 3)))}
                if c in ("clothing", "sports"):
                    a["size"] = r.choice(SIZES)
                if c == "electronics":
                    a["warranty_months"] = r.choice((12, 12, 24, 36))
                    a["wireless"] = r.random() < 0.5
                elif c == "clothing":
                    a["fit"] = r.choice(("slim", "regular", "relaxed"))
                elif c == "books":
                    a["pages"] = r.randint(80, 900)
                    a["language"] = r.choice(("en", "en", "de", "fr", "es"))
                elif c == "toys":
                    a["min_age"] = r.choice((3, 6, 8, 12))
                elif c in ("home", "garden"):
                    a["weight_kg"] = round(r.uniform(0.1, 12), 2)
                attrs.append(json.dumps(a, separators=(", ", ": ")))
                skus.append(f"{c[:3].upper()}-{int(ids[i]):07d}")
            updated = uniform_times(rng, n, _START_S, _NOW_S)
            return [Col("int8", values=ids),
                    text_col(pool_matrix(skus)),
                    text_col(pool_matrix(names)),
                    text_col(pool_matrix(cats)[cat]),
                    text_col(pool_matrix(companies)[vendor]),
                    Col("numeric", values=self.prod_price[lo:lo + n]),
                    text_col(pool_matrix(attrs), kind="jsonb"),
                    Col("int4", values=rng.geometric(0.6, n).astype(np.int64)),
                    Col("ts", values=updated),
                    Col("ts", values=uniform_times(rng, n, updated, _NOW_S),
                        null=rng.random(n) >= 0.03)]
        return self._table("products", ["id", "sku", "name", "category", "vendor", "price",
                                        "attributes", "version", "updated_at", "deleted_at"],
                           s.products, make, 50_000)

    def orders_and_items(self) -> tuple[Table, Table]:
        """Orders and their items come from the same draws, so that each
        order's total is the sum of its items. Both tables stream chunk by
        chunk; the items of orders chunk k are items chunk k."""
        s = self.scale
        per_chunk = max(1, int(self.chunk_rows / (1 + s.items_per_order)))
        n_chunks = -(-s.orders // per_chunk)
        total_items = s.order_items
        # items per chunk, so the table has exactly s.order_items rows
        bounds = [min(s.orders, k * per_chunk) for k in range(n_chunks + 1)]
        item_bounds = [int(round(b * total_items / s.orders)) for b in bounds]
        last: dict[int, tuple[list[Col], list[Col]]] = {}

        def draw(no: int) -> tuple[list[Col], list[Col]]:
            # streams consumed in lock-step (one connection each) share a draw
            if no not in last:
                last.clear()
                last[no] = _draw(no)
            return last[no]

        def _draw(no: int) -> tuple[list[Col], list[Col]]:
            rng = _rng(self.seed, "orders", no)
            lo, hi = bounds[no], bounds[no + 1]
            n = hi - lo
            m = item_bounds[no + 1] - item_bounds[no]
            ids = np.arange(lo + 1, hi + 1, dtype=np.int64)
            # chunk k covers the k-th slice of time, so ids follow time overall
            u = np.sort(lo + rng.random(n) * n) / s.orders
            created = seasonal_times(rng, n, u)
            created.sort()  # ids follow time, as with a sequence
            cust = np.searchsorted(self.cust_cdf, rng.random(n), side="right") + 1
            cust = np.minimum(cust, s.customers)
            # no order before its customer signed up: give those orders to a
            # customer who existed by then (ids follow sign-up time)
            early = created < self.cust_created[cust - 1]
            if early.any():
                known = np.maximum(np.searchsorted(self.cust_created, created[early]), 1)
                cust[early] = 1 + (rng.random(int(early.sum())) * known).astype(np.int64)
            if self.load_test_id:
                cust[rng.random(n) < self.load_test_share] = self.load_test_id
            # status by age
            age_days = (_NOW_S - created) / 86400.0
            status = np.empty(n, dtype=np.int64)
            lower = -1.0
            u = rng.random(n)
            for upper, probs in STATUS_BY_AGE:
                sel = (age_days > lower) & (age_days <= upper)
                status[sel] = np.minimum(np.searchsorted(_cdf(probs), u[sel], side="right"), 5)
                lower = upper
            # items per order: 1 + Poisson, then nudged to the exact item count
            count = 1 + rng.poisson(max(m / n - 1, 0), n)
            diff = m - int(count.sum())
            while diff != 0:
                if diff > 0:
                    idx = rng.choice(n, min(diff, n), replace=False)
                    count[idx] += 1
                else:
                    cand = np.flatnonzero(count > 1)
                    idx = rng.choice(cand, min(-diff, len(cand)), replace=False)
                    count[idx] -= 1
                diff = m - int(count.sum())
            order_of_item = np.repeat(np.arange(n), count)
            product = np.minimum(np.searchsorted(self.prod_cdf, rng.random(m), side="right"),
                                 s.products - 1)
            qty = 1 + _pick(rng, _cdf([0.72, 0.17, 0.06, 0.03, 0.02]), m)
            # the price paid: today's price give or take a few percent, sometimes a sale
            factor = 1 + rng.normal(0, 0.03, m)
            factor = np.where(rng.random(m) < 0.1, factor * 0.8, factor)
            unit = np.maximum(np.round(self.prod_price[product] * factor).astype(np.int64), 1)
            line = unit * qty
            starts = np.concatenate(([0], np.cumsum(count)[:-1]))
            total = np.add.reduceat(line, starts)
            cc = self.cust_locale[cust - 1]
            ship = np.where(rng.random(n) < 0.95, cc, _pick(rng, self.cdf_locale, n))
            note_null = rng.random(n) >= 0.04
            orders_cols = [Col("int8", values=ids), Col("int8", values=cust.astype(np.int64)),
                           text_col(self.m_status[status]), Col("ts", values=created),
                           Col("numeric", values=total), text_col(self.m_country[ship]),
                           text_col(self.m_note[rng.integers(0, len(NOTES), n)], null=note_null)]
            item_cols = [Col("int8", values=np.arange(item_bounds[no] + 1, item_bounds[no + 1] + 1,
                                                      dtype=np.int64)),
                         Col("int8", values=ids[order_of_item]),
                         Col("int8", values=(product + 1).astype(np.int64)),
                         Col("int4", values=qty.astype(np.int64)),
                         Col("numeric", values=unit)]
            return orders_cols, item_cols

        def stream(which: int) -> Callable[[int, str], tuple[int, np.ndarray]]:
            def one(no: int, fmt: str) -> tuple[int, np.ndarray]:
                cols = draw(no)[which]
                n = len(cols[0].values)
                payload = encode(cols, n, fmt)
                self.max_chunk_bytes = max(self.max_chunk_bytes, payload.nbytes)
                return n, payload
            return one

        orders = Table("orders", ["id", "customer_id", "status", "created_at", "total",
                                  "shipping_country", "note"], s.orders, n_chunks, stream(0))
        items = Table("order_items", ["id", "order_id", "product_id", "quantity", "unit_price"],
                      total_items, n_chunks, stream(1))
        return orders, items

    def tables(self) -> list[Table]:
        """All tables in load order (referenced tables first); cached, so that
        orders and order_items share their draws."""
        if self._tables is None:
            orders, items = self.orders_and_items()
            self._tables = [self.customers(), self.products(), orders, items, self.accounts(),
                            self.users()]
        return self._tables

    def table(self, name: str) -> Table:
        return next(t for t in self.tables() if t.name == name)


def _fit(seg: np.ndarray, row: int, text: bytes) -> np.ndarray:
    """Widen a segment matrix if needed and put ``text`` in ``row``."""
    if seg.shape[1] < len(text):
        wider = np.zeros((seg.shape[0], len(text)), dtype=np.uint8)
        wider[:, len(text) - seg.shape[1]:] = seg  # right-aligned: NULs are dropped anyway
        seg = wider
    seg[row] = 0
    seg[row, :len(text)] = np.frombuffer(text, dtype=np.uint8)
    return seg


def stream_checksum(chunks: Iterator[tuple[int, np.ndarray]]) -> tuple[int, str]:
    """Rows and sha256 of a table's encoded stream, without a database."""
    h = hashlib.sha256()
    rows = 0
    for n, payload in chunks:
        h.update(memoryview(payload))
        rows += n
    return rows, h.hexdigest()
