"""A DBA-owned legacy schema beside the shop dataset, for the schema-first challenge.

The shape is the one applications meet in companies where the schema belongs to a DBA
team: quoted mixed-case and upper-case identifiers (``"tblCUST"."CUST_NM"``), a column
named with a reserved word (``"user"``), ``char(1)`` Y/N flags, a check constraint used as
an enum, a composite primary key and the composite foreign key that points at it, a view,
and comments on tables and columns. :func:`create` builds it in the challenge's database
and fills it from the shop's own tables, so its size follows the chosen scale (every
customer, order and order line becomes a legacy row).
"""

from __future__ import annotations

from typing import Any

import psycopg

TABLES = ("tblCUST", "ORD_HDR", "ORD_LN")
VIEW = "vwCUST_ORD_TOT"

LEGACY_SQL = '''
CREATE TABLE "tblCUST" (
    "CUST_ID"    bigint       NOT NULL,
    "CUST_NM"    varchar(80)  NOT NULL,
    "EMAIL_ADDR" varchar(120) NOT NULL,
    "ACTV_FLG"   char(1)      NOT NULL DEFAULT 'Y',
    "CUST_TYP"   char(1)      NOT NULL,
    "user"       varchar(30)  NOT NULL,
    "CRT_TS"     timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT "PK_tblCUST" PRIMARY KEY ("CUST_ID"),
    CONSTRAINT "CK_tblCUST_ACTV" CHECK ("ACTV_FLG" IN ('Y', 'N')),
    CONSTRAINT "CK_tblCUST_TYP" CHECK ("CUST_TYP" IN ('R', 'W', 'S'))
);
COMMENT ON TABLE "tblCUST" IS 'Customer master (owned by the DBA team)';
COMMENT ON COLUMN "tblCUST"."CUST_ID" IS 'Customer number';
COMMENT ON COLUMN "tblCUST"."CUST_NM" IS 'Display name';
COMMENT ON COLUMN "tblCUST"."EMAIL_ADDR" IS 'Contact e-mail';
COMMENT ON COLUMN "tblCUST"."ACTV_FLG" IS 'Y = active, N = closed';
COMMENT ON COLUMN "tblCUST"."CUST_TYP" IS 'R = retail, W = wholesale, S = staff';
COMMENT ON COLUMN "tblCUST"."user" IS 'Login of the account manager';
COMMENT ON COLUMN "tblCUST"."CRT_TS" IS 'When the customer was created';

CREATE TABLE "ORD_HDR" (
    "CUST_ID"  bigint  NOT NULL,
    "ORD_NO"   integer NOT NULL,
    "ORD_DT"   date    NOT NULL,
    "STAT_CD"  char(1) NOT NULL,
    "GIFT_FLG" char(1),
    CONSTRAINT "PK_ORD_HDR" PRIMARY KEY ("CUST_ID", "ORD_NO"),
    CONSTRAINT "CK_ORD_HDR_STAT" CHECK ("STAT_CD" IN ('O', 'P', 'S', 'X')),
    CONSTRAINT "CK_ORD_HDR_GIFT" CHECK ("GIFT_FLG" IN ('Y', 'N'))
);
CREATE INDEX "IX_ORD_HDR_DT" ON "ORD_HDR" ("ORD_DT");
COMMENT ON TABLE "ORD_HDR" IS 'Order header; orders are numbered per customer';
COMMENT ON COLUMN "ORD_HDR"."CUST_ID" IS 'Customer number';
COMMENT ON COLUMN "ORD_HDR"."ORD_NO" IS 'Order number within the customer';
COMMENT ON COLUMN "ORD_HDR"."ORD_DT" IS 'Order date';
COMMENT ON COLUMN "ORD_HDR"."STAT_CD" IS 'O = open, P = paid, S = shipped, X = cancelled';
COMMENT ON COLUMN "ORD_HDR"."GIFT_FLG" IS 'Y = gift wrap, N = none, NULL = not asked';

CREATE TABLE "ORD_LN" (
    "CUST_ID"  bigint        NOT NULL,
    "ORD_NO"   integer       NOT NULL,
    "LN_NO"    smallint      NOT NULL,
    "SKU"      varchar(40)   NOT NULL,
    "QTY"      integer       NOT NULL,
    "UNIT_PRC" numeric(10,2) NOT NULL,
    CONSTRAINT "PK_ORD_LN" PRIMARY KEY ("CUST_ID", "ORD_NO", "LN_NO")
);
COMMENT ON TABLE "ORD_LN" IS 'Order lines';
COMMENT ON COLUMN "ORD_LN"."CUST_ID" IS 'Customer number';
COMMENT ON COLUMN "ORD_LN"."ORD_NO" IS 'Order number within the customer';
COMMENT ON COLUMN "ORD_LN"."LN_NO" IS 'Line number within the order';
COMMENT ON COLUMN "ORD_LN"."SKU" IS 'Stock keeping unit';
COMMENT ON COLUMN "ORD_LN"."QTY" IS 'Quantity';
COMMENT ON COLUMN "ORD_LN"."UNIT_PRC" IS 'Unit price paid';

CREATE VIEW "vwCUST_ORD_TOT" AS
SELECT h."CUST_ID", h."ORD_NO", h."ORD_DT", sum(l."QTY" * l."UNIT_PRC") AS "ORD_TOT"
FROM "ORD_HDR" h JOIN "ORD_LN" l USING ("CUST_ID", "ORD_NO")
GROUP BY h."CUST_ID", h."ORD_NO", h."ORD_DT";
COMMENT ON VIEW "vwCUST_ORD_TOT" IS 'Order totals, for the finance reports';
'''

# the foreign keys, added after the fill: one validating join instead of a check per row
FOREIGN_KEYS_SQL = '''
ALTER TABLE "ORD_HDR" ADD CONSTRAINT "FK_ORD_HDR_CUST"
    FOREIGN KEY ("CUST_ID") REFERENCES "tblCUST" ("CUST_ID");
ALTER TABLE "ORD_LN" ADD CONSTRAINT "FK_ORD_LN_HDR"
    FOREIGN KEY ("CUST_ID", "ORD_NO") REFERENCES "ORD_HDR" ("CUST_ID", "ORD_NO");
'''

# the shop's rows, in the legacy shape
FILL_SQL = '''
INSERT INTO "tblCUST"
SELECT id, left(full_name, 80), left(email, 120),
       CASE WHEN deleted_at IS NULL THEN 'Y' ELSE 'N' END,
       (ARRAY['R', 'R', 'R', 'W', 'S'])[1 + id % 5],
       'am_' || (id % 7), created_at
FROM customers;

CREATE TEMP TABLE legacy_order_no ON COMMIT DROP AS
SELECT id, customer_id,
       row_number() OVER (PARTITION BY customer_id ORDER BY created_at, id)::int AS ord_no
FROM orders;
CREATE UNIQUE INDEX ON legacy_order_no (id);
ANALYZE legacy_order_no;

INSERT INTO "ORD_HDR"
SELECT n.customer_id, n.ord_no, (o.created_at AT TIME ZONE 'UTC')::date,
       CASE o.status WHEN 'pending' THEN 'O' WHEN 'paid' THEN 'P'
                     WHEN 'cancelled' THEN 'X' WHEN 'refunded' THEN 'X' ELSE 'S' END,
       CASE WHEN o.note IS NULL THEN NULL WHEN o.id % 2 = 0 THEN 'Y' ELSE 'N' END
FROM orders o JOIN legacy_order_no n ON n.id = o.id;

INSERT INTO "ORD_LN"
SELECT n.customer_id, n.ord_no,
       row_number() OVER (PARTITION BY i.order_id ORDER BY i.id)::smallint,
       left(p.sku, 40), i.quantity, i.unit_price
FROM order_items i JOIN legacy_order_no n ON n.id = i.order_id
JOIN products p ON p.id = i.product_id;
'''


def create(url: str) -> dict[str, int]:
    """Create the legacy schema in the database at ``url`` (dropping an earlier copy) and fill
    it from the shop's tables (the foreign keys come last, as after any bulk load); returns the row count of each legacy table."""
    with psycopg.connect(url) as conn:
        conn.execute(f'DROP VIEW IF EXISTS "{VIEW}"; '
                     + " ".join(f'DROP TABLE IF EXISTS "{t}" CASCADE;' for t in reversed(TABLES)))
        conn.execute(LEGACY_SQL)
        conn.execute(FILL_SQL)
        conn.execute(FOREIGN_KEYS_SQL)
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in TABLES}
        conn.execute('ANALYZE "tblCUST", "ORD_HDR", "ORD_LN"')
    return counts


def catalogue(conn: Any) -> list[tuple[str, str, str, bool, str | None, bool]]:
    """The legacy tables' columns as PostgreSQL's catalogue has them: (table, column,
    format_type, nullable, comment, has a default), in table and column order."""
    rows = conn.execute('''
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
               col_description(c.oid, a.attnum), a.atthasdef
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY array_position(%s, c.relname::text), a.attnum''', (list(TABLES), list(TABLES)))
    return [tuple(r) for r in rows]
