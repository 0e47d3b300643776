"""Checks for 11_schema_first: models mapped onto a DBA-owned legacy schema, and its drift.

The seed's "Schema-First vs Code-First" challenge. The legacy schema
(``labs.data.legacy_schema``: ``"tblCUST"``, ``"ORD_HDR"``, ``"ORD_LN"``) belongs to the DBA
team; the application adapts to it and never changes it. Every check judges by effect:

* q1 reads the learner's models against the catalogue: each class maps the legacy table by
  its exact (quoted) name, every catalogue column is mapped or excluded with a reason (a NOT
  NULL column without a default can never be excluded: every insert would fail); Y/N flags
  read back as ``True``/``False`` (a seeded choice of stored 'Y' and 'N' rows); then an ORM
  round trip on a non-UTC session (insert a seeded customer with text that quotes, LIKE
  metacharacters and non-ASCII, two orders whose numbers other customers use too, lines on
  the composite key; read through the composite key; update) must equal what raw SQL sees
  in the legacy columns; a second customer inserted without a creation time must get the
  insert's instant (a naive Python default such as datetime.utcnow is read in the session's
  TimeZone); a seeded price no float holds must read back as that Decimal; NULL flags read back as None, a flag given a string ('N') is
  refused, every relationship between Order and OrderLine loads exactly the order's lines
  (a composite foreign key, as the table has); no DDL may have reached the database
  (``labs.tools.ddl_watch`` hears every engine in the process), no relation may exist beside
  the shop's and the legacy ones, and the legacy tables' columns, defaults, constraints,
  indexes and triggers must still be the DBA's (compared with the definition built as
  temporary tables in a rolled-back transaction: DDL sent through psycopg counts too);
* q2 changes the comment of a seeded column to a seeded text (a pipe, quotes, non-ASCII),
  drops the NOT NULL of another seeded column, and puts a same-named copy of a seeded legacy
  table (other comments, one more column) in another schema, calls ``mapping_document`` and compares its
  Markdown rows with the catalogue, in order (both are put back after);
* q3 calls ``detect_drift`` on the untouched schema (must report nothing), then applies a
  DBA migration with seeded names (a new NOT NULL column with a default, a renamed column, a
  widened type, a dropped NOT NULL, a dropped index, an added index; the widened column also
  loses its NOT NULL, so one column has two differences), calls it again and compares the
  reported (kind, table, name) set with exactly those changes; the migration is undone after;
  last, on a copy of the models in which a seeded NOT NULL column is nullable, it must report
  that one modify_nullable (the drift the other way round);
* q4 runs the learner's reviewed migration for the code-first rename in a transaction (then
  rolled back), on orders planted with 'Y', 'N' and NULL gift flags: the values must survive
  under the new name, the check constraint (Y, N and NULL taken, seeded other values
  refused) and comment too, and no other table may change; no row of "ORD_HDR" may move (ctid,
  relfilenode: a column rebuilt by ADD + UPDATE + DROP rewrites the table under ACCESS
  EXCLUSIVE), and the SQL may not end the check's transaction (a COMMIT inside: the check
  renames the column back and says so).
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from ..course import adversarial as adv
from ..course.checking import CheckFailed, NotAttempted, require
from ..data import legacy_schema as legacy
from ..data.dataset import query_checksum
from ..tools import ddl_watch

CLASSES = {"Customer": "tblCUST", "Order": "ORD_HDR", "OrderLine": "ORD_LN"}
SHOP_TABLES = {"customers", "products", "orders", "order_items", "accounts", "users", "lab_dataset"}
FLAGS = {("tblCUST", "ACTV_FLG"), ("ORD_HDR", "GIFT_FLG")}
ARCHIVE = "lab_archive"  # q2: a schema holding a same-named copy of a legacy table
COMMENT_KINDS = {"modify_comment", "add_table_comment", "remove_table_comment"}

HINTS = {
    "schema_first.q1": [
        "Give each class `__tablename__` exactly as the catalogue spells it (`\"tblCUST\"`): "
        "SQLAlchemy quotes a name with capitals, PostgreSQL folds an unquoted one to lower case.",
        "Python name first, catalogue name as the first argument: "
        "`name: Mapped[str] = mapped_column(\"CUST_NM\", String(80))`.",
        "A `TypeDecorator` with `impl = CHAR(1)`: `process_bind_param` turns True/False into "
        "'Y'/'N', `process_result_value` the other way; None stays None.",
        "The composite foreign key of ORD_LN is one `ForeignKeyConstraint([...], [...])` in "
        "`__table_args__`, not two separate ForeignKeys.",
    ],
    "schema_first.q2": [
        "Walk `Base.registry.mappers`; for each column property, `prop.key` is the Python name "
        "and `prop.columns[0]` the column.",
        "Read type, nullability and comment from the catalogue (format_type, attnotnull, "
        "col_description) at call time, not from the models: the document describes the database.",
        "Escape a `|` inside a cell as `\\|`, or the Markdown table gains a column.",
    ],
    "schema_first.q3": [
        "`alembic.autogenerate.compare_metadata(MigrationContext.configure(conn, opts=...), "
        "metadata)` returns the differences; some come nested in a list (the modify_* ones).",
        "Pass an `include_object` that keeps only the metadata's own tables, and skip the "
        "comment differences: they are the DBA's documentation, not a change to the mapping.",
        "Declare the legacy index in the model (`Index(\"IX_ORD_HDR_DT\", \"ORD_DT\")` in "
        "`__table_args__`), or its disappearance cannot be noticed.",
    ],
    "schema_first.q4": [
        "Autogenerate cannot tell a rename from a drop and an add: write the statement yourself.",
        "`ALTER TABLE ... RENAME COLUMN ... TO ...` keeps the values, the constraint and the comment.",
    ],
}


# --------------------------------------------------------------------------
# helpers


def _engine(lab: Any, zone: str) -> Any:
    """A SQLAlchemy engine of the check's own, on sessions in a non-UTC TimeZone."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(lab.sqlalchemy_url, poolclass=NullPool,
                         connect_args={"options": f"-c TimeZone={zone}"})


def _dbname(lab: Any) -> str:
    return getattr(lab, "dbname", "") or lab.url.rsplit("/", 1)[-1].split("?")[0]


def _legacy_present(conn: psycopg.Connection) -> None:
    found = {r[0] for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relname = ANY(%s)", (list(legacy.TABLES),))}
    if found != set(legacy.TABLES):
        raise CheckFailed("The legacy tables are not all there (" + ", ".join(
            sorted(set(legacy.TABLES) - found)) + " missing): run the Setup cells again "
            "(`legacy_schema.create(lab.url)`), which rebuilds them.")


# the legacy tables' definition as a fingerprint: columns (type, NOT NULL, default), constraints,
# indexes and triggers, each as PostgreSQL prints it (comments left out: q2 changes one, and they
# are the DBA's documentation, not the contract)
FINGERPRINT_SQL = """
    SELECT 'column', c.relname, a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
           || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = %(ns)s AND c.relname = ANY(%(tables)s) AND a.attnum > 0
      AND NOT a.attisdropped
    UNION ALL
    SELECT 'constraint', c.relname, k.conname || ' ' || pg_get_constraintdef(k.oid)
    FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
    WHERE c.relnamespace = %(ns)s AND c.relname = ANY(%(tables)s)
    UNION ALL
    SELECT 'index', c.relname,
           i.relname || ' ' || regexp_replace(pg_get_indexdef(x.indexrelid), ' ON \\S+ USING ', ' USING ')
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
    WHERE c.relnamespace = %(ns)s AND c.relname = ANY(%(tables)s)
    UNION ALL
    SELECT 'trigger', c.relname, t.tgname
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = %(ns)s AND c.relname = ANY(%(tables)s) AND NOT t.tgisinternal"""


_SCHEMA = re.compile(r'\b(?:public|pg_temp(?:_\d+)?)\.')


def _schema_changes(lab: Any) -> list[str]:
    """How the legacy tables differ from the DBA's definition (built, for comparison, as temporary
    tables in a transaction that is rolled back): DDL that did not go through SQLAlchemy (psycopg,
    psql) is caught here, since the DDL watcher hears SQLAlchemy engines only."""
    tables = list(legacy.TABLES)
    with psycopg.connect(lab.url) as conn:
        try:
            conn.execute("SET LOCAL search_path = pg_temp")
            conn.execute(legacy.LEGACY_SQL)
            conn.execute(legacy.FOREIGN_KEYS_SQL)
            def plain(rows: Any) -> set[tuple[str, str, str]]:
                # a name is printed qualified when the other copy shadows it: drop the schema
                return {(w, t, _SCHEMA.sub("", x)) for w, t, x in rows}

            want = plain(conn.execute(
                FINGERPRINT_SQL, {"ns": conn.execute("SELECT pg_my_temp_schema()").fetchone()[0],
                                  "tables": tables}))
            have = plain(conn.execute(
                FINGERPRINT_SQL, {"ns": conn.execute("SELECT 'public'::regnamespace::oid")
                                  .fetchone()[0], "tables": tables}))
        finally:
            conn.rollback()
    extra, gone = sorted(have - want), sorted(want - have)
    said = []
    for what, t, text in extra:
        was = [x for w, tt, x in gone if (w, tt) == (what, t) and x.split()[0] == text.split()[0]]
        said.append(f'"{t}" {what} {text.split()[0]} is now `{text}`'
                    + (f", the DBA made it `{was[0]}`" if was else ", which the DBA never created"))
    said += [f'"{t}" {what} `{text}` is gone' for what, t, text in gone
             if not any((w, tt) == (what, t) and x.split()[0] == text.split()[0] for w, tt, x in extra)]
    return said


def _no_ddl(lab: Any) -> None:
    """No DDL from this process, and no relation beside the shop's and the legacy ones."""
    sent = ddl_watch.seen(_dbname(lab))
    if sent:
        raise CheckFailed(
            "Your code sent DDL to the DBA's database; `Base.metadata.create_all()` (or any "
            "schema change) has no place in a schema-first application: the schema is read, "
            "never written. Remove the create_all, and if a table \"is missing\", fix the "
            "model's name rather than creating a look-alike. Then `lab.reset()` and Run All.",
            "; ".join(s[:120] for s in sent[:3]))
    with psycopg.connect(lab.url, autocommit=True) as conn:
        extra = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class c WHERE relnamespace = 'public'::regnamespace "
            "AND relkind IN ('r', 'v', 'm', 'p', 'f') AND NOT relname = ANY(%s) "
            # an extension's views (pg_stat_statements, which the grader creates) are not DDL
            # of the application's
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
            "AND d.objid = c.oid AND d.deptype = 'e')",
            (sorted(SHOP_TABLES | set(legacy.TABLES) | {legacy.VIEW}),))]
    if extra:
        raise CheckFailed(
            f"The database now has relations the DBA never created ({', '.join(extra)}): "
            "something created them (create_all against the legacy database?). A schema-first "
            "application never emits DDL. Fix the model, then `lab.reset()` and Run All.")
    changed = _schema_changes(lab)
    if changed:
        raise CheckFailed(
            "The legacy tables are no longer as the DBA built them: " + "; ".join(changed[:3])
            + ". The schema belongs to the DBA team and the application adapts to it, never the "
            "other way round (a default added so that a model may leave out a NOT NULL column, a "
            "constraint dropped so that an insert goes through, are changes to every other "
            "application's database too). Map the column instead, then rebuild the legacy "
            "tables: `legacy_schema.create(lab.url)` in the Setup cells, and Run All.")


def _class(cls: Any, name: str) -> Any:
    from sqlalchemy import inspect
    from sqlalchemy.exc import NoInspectionAvailable

    try:
        return inspect(cls)
    except NoInspectionAvailable:
        raise CheckFailed(f"{name} must be a mapped class (`class {name}(Base): ...`); "
                          f"got {cls!r}.") from None


def _keys(mapper: Any) -> dict[str, str]:
    """Catalogue column name -> the Python attribute that maps it."""
    from sqlalchemy.orm import ColumnProperty

    out: dict[str, str] = {}
    for prop in mapper.column_attrs:
        if isinstance(prop, ColumnProperty):
            for col in prop.columns:
                if getattr(col, "table", None) is mapper.local_table:
                    out[col.name] = prop.key
    return out


def _seeded_text(r: Any, limit: int) -> str:
    base = r.choice(["O'Brien & \"Sons\"", "100%_Müller", "Ærø Café_%", "Zoë \\ Łukasz"])
    return (base + f" {r.randrange(10**6)}")[:limit]


# --------------------------------------------------------------------------
# q1: the models


def _relationships_follow_keys(mappers: dict, session: Any, order: Any, cid: int, number: int) -> None:
    """Every relationship between Order and OrderLine loads exactly the planted order's lines
    (numbers 1 to 3 are used by other customers too), and a line's order is that order."""
    lines_table = mappers["OrderLine"].local_table
    ak = _keys(mappers["OrderLine"])
    ok = _keys(mappers["Order"])
    want = {(cid, number, 1), (cid, number, 2)}
    for rel in mappers["Order"].relationships:
        if rel.mapper.local_table is not lines_table:
            continue
        got = getattr(order, rel.key)
        got = [] if got is None else (list(got) if rel.uselist else [got])
        seen = {(getattr(x, ak["CUST_ID"]), getattr(x, ak["ORD_NO"]), getattr(x, ak["LN_NO"]))
                for x in got}
        if seen != want or len(got) != len(want):
            raise CheckFailed(
                f"Order.{rel.key} of the order ({cid}, {number}) loads {len(got)} line(s), "
                f"{len(seen - want)} of them another customer's; it has 2. The relationship must "
                "join on both key columns (\"CUST_ID\", \"ORD_NO\"), as the composite foreign "
                "key does: order numbers repeat across customers.",
                f"want {sorted(want)}; loaded {sorted(seen)[:6]}")
        for line in got:
            for back in mappers["OrderLine"].relationships:
                if back.mapper.local_table is mappers["Order"].local_table and not back.uselist:
                    parent = getattr(line, back.key)
                    if parent is None or (getattr(parent, ok["CUST_ID"]), getattr(parent, ok["ORD_NO"])) != (cid, number):
                        raise CheckFailed(
                            f"OrderLine.{back.key} of a line of order ({cid}, {number}) is not that "
                            "order: the relationship must join on both key columns.")


DEFAULT_SLACK_S = 120  # q1: a defaulted creation time must be the insert's instant, within this


def _default_instant(lab: Any, cid: int, zone: str) -> None:
    """A customer inserted without a creation time gets the instant of its insert: a Python
    default of a naive datetime (datetime.utcnow, datetime.now) is read in the session's
    TimeZone, and on a session that is not in UTC it stores another instant."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        row = conn.execute('SELECT "CRT_TS", extract(epoch FROM now() - "CRT_TS")::float '
                           'FROM "tblCUST" WHERE "CUST_ID" = %s', (cid,)).fetchone()
    if row is None or abs(row[1]) <= DEFAULT_SLACK_S:
        return
    raise CheckFailed(
        f"A customer inserted through the models without a creation time got \"CRT_TS\" = "
        f"{row[0].isoformat()}, {abs(row[1]) / 3600:.2f} hours "
        f"{'before' if row[1] > 0 else 'after'} the database's now(), on a session whose "
        f"TimeZone is {zone}. A Python-side default of a naive datetime "
        "(datetime.utcnow, datetime.now) has no zone, so PostgreSQL reads it in the session's "
        "TimeZone and stores another instant. Leave the default to the DBA's column "
        "(server_default, or no default in the model: the column has DEFAULT now()), or use an "
        "aware value (datetime.now(timezone.utc)).")


def _flags_refuse_other_values(lab: Any, engine: Any, Order: Any, pk: list, ok: dict, cid: int,
                               number: int, r: Any) -> None:
    """The Y/N type refuses a value that is not True, False or None (the raw legacy string 'N'
    is truthy in Python: bound by truthiness it would be stored as 'Y')."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    value = r.choice(["N", "no", "false"])
    with psycopg.connect(lab.url, autocommit=True) as conn:
        before = conn.execute('SELECT "GIFT_FLG" FROM "ORD_HDR" WHERE "CUST_ID" = %s AND "ORD_NO" = %s',
                              (cid, number)).fetchone()[0]
    with Session(engine) as session:
        order = session.get(Order, tuple({"CUST_ID": cid, "ORD_NO": number}[p] for p in pk))
        setattr(order, ok["GIFT_FLG"], value)
        try:
            session.flush()
            stored = session.execute(text(
                'SELECT "GIFT_FLG" FROM "ORD_HDR" WHERE "CUST_ID" = :c AND "ORD_NO" = :n'),
                {"c": cid, "n": number}).scalar()
        except (SQLAlchemyError, TypeError, ValueError, KeyError):
            return
        finally:
            session.rollback()
    raise CheckFailed(
        f"Order.{ok['GIFT_FLG']} = {value!r} (a string, not a bool) was accepted and stored as "
        f"{stored!r} (it was {before!r}). YesNo must refuse anything but True, False and None: "
        "bound by truthiness, the legacy string 'N' is a non-empty string and becomes 'Y'. Raise "
        "in process_bind_param when the value is not a bool.")


def q1(lab: Any, Base: Any, YesNo: Any, Customer: Any, Order: Any, OrderLine: Any,
       EXCLUDED: Any) -> str:
    """Models on the legacy names: complete, Y/N as bool, composite keys, no DDL."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm import Session

    require(Base, YesNo, Customer, Order, OrderLine)
    if not isinstance(EXCLUDED, dict):
        raise CheckFailed("EXCLUDED must be a dict {'\"table\".\"column\"': 'why it is not mapped'} "
                          "(empty when every column is mapped).")
    _no_ddl(lab)
    classes = {"Customer": Customer, "Order": Order, "OrderLine": OrderLine}
    mappers = {n: _class(c, n) for n, c in classes.items()}
    for name, mapper in mappers.items():
        table = mapper.local_table.name
        if table != CLASSES[name]:
            folded = table.lower() == CLASSES[name].lower()
            raise CheckFailed(
                f"{name} maps table \"{table}\", which is not in the catalogue: the DBA created "
                f"\"{CLASSES[name]}\" with a quoted name"
                + (", and PostgreSQL folds an unquoted name to lower case, so the two never meet"
                   if folded else "")
                + f". Write `__tablename__ = \"{CLASSES[name]}\"` exactly (SQLAlchemy quotes it).")
    with psycopg.connect(lab.url, autocommit=True) as conn:
        _legacy_present(conn)
        cat = legacy.catalogue(conn)
    for name, mapper in mappers.items():
        table = CLASSES[name]
        keys = _keys(mapper)
        columns = {c[1]: c for c in cat if c[0] == table}
        ghosts = [c for c in keys if c not in columns]
        if ghosts:
            raise CheckFailed(
                f"{name} maps column(s) {', '.join(ghosts)} that \"{table}\" does not have: "
                "catalogue names are case-sensitive once quoted; copy them as the catalogue "
                f"spells them ({', '.join(columns)}).")
        for col, (_, _, typ, nullable, _, has_default) in columns.items():
            if col in keys:
                continue
            ref = f'"{table}"."{col}"'
            why = EXCLUDED.get(ref) or EXCLUDED.get(f"{table}.{col}")
            if not nullable and not has_default:
                raise CheckFailed(
                    f"{name} does not map {ref}, a NOT NULL column without a default: every "
                    "INSERT through the model would fail with \"null value in column ... violates "
                    "not-null constraint\". Map it (a reserved word such as \"user\" is just a "
                    "quoted name: `mapped_column(\"user\", ...)` under a Python name of your own).")
            if not (isinstance(why, str) and why.strip()):
                raise CheckFailed(
                    f"{name} neither maps {ref} ({typ}) nor lists it in EXCLUDED with a reason: "
                    "map every catalogue column, or say in EXCLUDED why the application may ignore it.")

    r = adv.rng()
    zone = adv.non_utc_zone(rand=r)
    engine = _engine(lab, zone)
    ck, ok, ak = _keys(mappers["Customer"]), _keys(mappers["Order"]), _keys(mappers["OrderLine"])
    planted: list[int] | None = None
    try:
        # Y/N flags read back as booleans, on stored rows of both kinds
        with psycopg.connect(lab.url, autocommit=True) as conn:
            ids = {flag: conn.execute('SELECT "CUST_ID" FROM "tblCUST" WHERE "ACTV_FLG" = %s '
                                      'ORDER BY "CUST_ID" OFFSET %s LIMIT 1',
                                      (flag, r.randrange(5))).fetchone()[0] for flag in "YN"}
        with Session(engine) as session:
            for flag, cid in ids.items():
                got = getattr(session.get(Customer, cid), ck["ACTV_FLG"])
                if got is not (flag == "Y"):
                    raise CheckFailed(
                        f"Customer {cid} has \"ACTV_FLG\" = '{flag}', and Customer."
                        f"{ck['ACTV_FLG']} reads {got!r}; it must read {flag == 'Y'}. Mapped as a "
                        "plain string, 'N' is a non-empty string, so `if customer.active:` is "
                        "true for closed customers. Map the Y/N flags through a TypeDecorator "
                        "(impl CHAR(1)) that turns 'Y'/'N' into True/False and back.")

        # a round trip: insert, read, update, each compared with raw SQL
        with psycopg.connect(lab.url, autocommit=True) as conn:
            cid = conn.execute('SELECT max("CUST_ID") FROM "tblCUST"').fetchone()[0] + adv.non_round(50, rand=r)
        planted = [cid, cid + 1]
        import datetime as dt
        from zoneinfo import ZoneInfo

        created = dt.datetime(2024, 3, 31, 0, 30, 15, 123456, tzinfo=ZoneInfo(zone))
        values = {"CUST_ID": cid, "CUST_NM": _seeded_text(r, 80),
                  "EMAIL_ADDR": f"{r.choice(['a_b', 'x%y', 'Ann.Lee'])}.{cid}@example.org",
                  "ACTV_FLG": False, "CUST_TYP": r.choice("RWS"),
                  "user": r.choice(["am_3", "o'neil", "dba_ops"]), "CRT_TS": created}
        numbers = r.sample(range(1, 4), 2)  # numbers other customers' orders have too
        gifts = [None, r.choice([True, False])]
        # a price no binary float holds exactly
        price = __import__("decimal").Decimal(r.choice(["9.95", "0.10", "19.99", "1234.57"]))
        session = Session(engine)
        try:
            customer = Customer()
            for col, v in values.items():
                if col in ck:
                    setattr(customer, ck[col], v)
            session.add(customer)
            # a second customer that leaves the creation time to the model's default
            late = Customer()
            for col, v in {**values, "CUST_ID": cid + 1,
                           "EMAIL_ADDR": f"late.{cid + 1}@example.org"}.items():
                if col in ck and col != "CRT_TS":
                    setattr(late, ck[col], v)
            session.add(late)
            session.flush()
            for n, gift in zip(numbers, gifts):
                order = Order()
                for col, v in {"CUST_ID": cid, "ORD_NO": n, "ORD_DT": dt.date(2024, 3, 31),
                               "STAT_CD": "O", "GIFT_FLG": gift}.items():
                    setattr(order, ok[col], v)
                session.add(order)
            session.flush()
            for ln in (1, 2):
                line = OrderLine()
                for col, v in {"CUST_ID": cid, "ORD_NO": numbers[0], "LN_NO": ln,
                               "SKU": f"SKU-{ln}_%", "QTY": ln * 3,
                               "UNIT_PRC": price}.items():
                    setattr(line, ak[col], v)
                session.add(line)
            session.commit()
        except DBAPIError as exc:
            raise CheckFailed(
                "PostgreSQL refused the rows your models sent for a new customer with two orders "
                f"and their lines: {str(exc.orig).splitlines()[0]}. Each attribute must reach its "
                "legacy column in the column's own representation (the Y/N flags through the "
                "TypeDecorator: True → 'Y', False → 'N', None → NULL).") from None
        finally:
            session.close()

        def raw() -> tuple:
            with psycopg.connect(lab.url, autocommit=True) as conn:
                conn.execute("SET TimeZone = 'UTC'")
                c = conn.execute('SELECT "CUST_NM", "EMAIL_ADDR", "ACTV_FLG", "CUST_TYP", "user", '
                                 '"CRT_TS" FROM "tblCUST" WHERE "CUST_ID" = %s', (cid,)).fetchone()
                o = conn.execute('SELECT "ORD_NO", "GIFT_FLG" FROM "ORD_HDR" WHERE "CUST_ID" = %s '
                                 'ORDER BY 1', (cid,)).fetchall()
                n = conn.execute('SELECT count(*) FROM "ORD_LN" WHERE "CUST_ID" = %s AND "ORD_NO" = %s',
                                 (cid, numbers[0])).fetchone()[0]
            return c, o, n

        c, o, n = raw()
        _default_instant(lab, cid + 1, zone)
        want_orders = sorted((num, {None: None, True: "Y", False: "N"}[g]) for num, g in zip(numbers, gifts))
        if c is None or c[:5] != (values["CUST_NM"], values["EMAIL_ADDR"], "N", values["CUST_TYP"],
                                  values["user"]) or c[5] != created:
            raise CheckFailed(
                "The customer inserted through the models is not what raw SQL sees in \"tblCUST\": "
                "each attribute must land in its own legacy column, False as 'N'.",
                f"inserted {values!r}; SQL sees {c!r}")
        if o != want_orders or n != 2:
            raise CheckFailed(
                "The orders and lines inserted through the models are not what raw SQL sees: "
                "gift flags must be stored as 'Y'/'N'/NULL and lines must hang off the composite "
                "key (\"CUST_ID\", \"ORD_NO\").", f"want {want_orders} and 2 lines; SQL sees {o} and {n}")

        composite = [fk for fk in mappers["OrderLine"].local_table.foreign_key_constraints
                     if {(e.parent.name, e.target_fullname) for e in fk.elements}
                     == {("CUST_ID", "ORD_HDR.CUST_ID"), ("ORD_NO", "ORD_HDR.ORD_NO")}]
        if not composite:
            raise CheckFailed(
                "OrderLine has no composite foreign key (\"CUST_ID\", \"ORD_NO\") → \"ORD_HDR\": "
                "order numbers repeat across customers, so a join on the order number alone (a "
                "ForeignKey on \"ORD_NO\" only) gives an order the lines of every other customer's "
                "order with the same number. Declare it as the table has it: one "
                "`ForeignKeyConstraint([\"CUST_ID\", \"ORD_NO\"], [\"ORD_HDR.CUST_ID\", "
                "\"ORD_HDR.ORD_NO\"])` in OrderLine.__table_args__.")
        pk = [col.name for col in mappers["Order"].primary_key]
        if sorted(pk) != ["CUST_ID", "ORD_NO"]:
            raise CheckFailed(f"Order's primary key is {pk}; the table's is (\"CUST_ID\", \"ORD_NO\"): "
                              "both columns, primary_key=True on each.")
        new_name = _seeded_text(r, 80)
        with Session(engine) as session:
            key = tuple({"CUST_ID": cid, "ORD_NO": numbers[1]}[p] for p in pk)
            order = session.get(Order, key)
            if order is None or getattr(order, ok["CUST_ID"]) != cid:
                raise CheckFailed("session.get(Order, (customer, number)) did not find the order "
                                  "just inserted: the composite primary key is not mapped as the table has it.")
            if getattr(order, ok["GIFT_FLG"]) is not gifts[1]:
                raise CheckFailed(f"Order.{ok['GIFT_FLG']} read back {getattr(order, ok['GIFT_FLG'])!r} "
                                  f"for a stored '{'Y' if gifts[1] else 'N'}': map it through the Y/N TypeDecorator.")
            first = session.get(Order, tuple({"CUST_ID": cid, "ORD_NO": numbers[0]}[p] for p in pk))
            if getattr(first, ok["GIFT_FLG"]) is not None:
                raise CheckFailed(
                    f"Order.{ok['GIFT_FLG']} read back {getattr(first, ok['GIFT_FLG'])!r} for a "
                    "stored NULL (\"not asked\"): the Y/N TypeDecorator must give None for NULL, "
                    "or the application cannot tell \"no gift wrap\" from \"never asked\" "
                    "(`return None if value is None else ...`).")
            _relationships_follow_keys(mappers, session, first, cid, numbers[0])
            lk = [col.name for col in mappers["OrderLine"].primary_key]
            line = session.get(OrderLine, tuple({"CUST_ID": cid, "ORD_NO": numbers[0],
                                                 "LN_NO": 1}[p] for p in lk))
            paid = None if line is None else getattr(line, ak["UNIT_PRC"])
            if not (isinstance(paid, __import__("decimal").Decimal) and paid == price):
                raise CheckFailed(
                    f"OrderLine.{ak['UNIT_PRC']} read back {paid!r} ({type(paid).__name__}) for a "
                    f"stored numeric(10,2) {price}: mapped as Float, a price becomes a binary "
                    "fraction (0.10 is 0.1000000000000000055…) and sums and comparisons of money "
                    "drift by cents. Map it as the catalogue has it: Numeric(10, 2), read as "
                    "Decimal (Mapped[Decimal]).")
            setattr(order, ok["GIFT_FLG"], not gifts[1])
            customer = session.get(Customer, cid)
            if getattr(customer, ck["CRT_TS"]) != created:
                raise CheckFailed("CRT_TS did not read back as the instant written (timestamptz, "
                                  f"on a session in {zone}): map it as DateTime(timezone=True).")
            setattr(customer, ck["CUST_NM"], new_name)
            setattr(customer, ck["ACTV_FLG"], True)
            session.commit()
        c, o, _ = raw()
        flag = "N" if gifts[1] else "Y"
        _flags_refuse_other_values(lab, engine, Order, pk, ok, cid, numbers[1], r)
        if c[0] != new_name or c[2] != "Y" or dict(o).get(numbers[1]) != flag:
            raise CheckFailed("An update through the models is not what raw SQL sees afterwards "
                              "(name, ACTV_FLG 'Y', the order's GIFT_FLG).",
                              f"SQL sees {c[0]!r}, {c[2]!r}, {o!r}")
    finally:
        engine.dispose()
        with psycopg.connect(lab.url, autocommit=True) as conn:
            if planted is not None:  # only the check's own customers (not one read above)
                conn.execute('DELETE FROM "ORD_LN" WHERE "CUST_ID" = ANY(%s)', (planted,))
                conn.execute('DELETE FROM "ORD_HDR" WHERE "CUST_ID" = ANY(%s)', (planted,))
                conn.execute('DELETE FROM "tblCUST" WHERE "CUST_ID" = ANY(%s)', (planted,))
    _no_ddl(lab)
    return (f"{sum(len(_keys(m)) for m in mappers.values())} legacy columns mapped; Y/N as bool, "
            "composite keys, ORM and raw SQL agree, and no DDL was sent")


# --------------------------------------------------------------------------
# q2: the mapping document

_PIPE = re.compile(r"(?<!\\)\|")


def _rows(markdown: str) -> list[list[str]]:
    rows = []
    for line in markdown.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in _PIPE.split(line.strip().strip("|"))]
        if all(set(c) <= set(":- ") for c in cells):
            continue  # the separator row
        rows.append(cells)
    return rows


def q2(lab: Any, mapping_document: Any, Base: Any) -> str:
    """The Markdown mapping document equals the catalogue, row by row."""
    require(mapping_document, Base)
    r = adv.rng()
    engine = _engine(lab, adv.non_utc_zone(rand=r))
    with psycopg.connect(lab.url, autocommit=True) as conn:
        _legacy_present(conn)
        table, column = r.choice([("tblCUST", "CUST_NM"), ("ORD_HDR", "GIFT_FLG"), ("ORD_LN", "SKU")])
        old = conn.execute("SELECT col_description(%s::regclass, attnum) FROM pg_attribute "
                           "WHERE attrelid = %s::regclass AND attname = %s",
                           (f'"{table}"', f'"{table}"', column)).fetchone()[0]
        new = f"{r.choice(['Renamed 2024', 'Ab 2025 geändert', 'Rév. DBA'])} | see ticket \"DBA-{r.randrange(1000, 9999)}\""
        # and a NOT NULL the DBA relaxes (the models still say NOT NULL: the document must not)
        relaxed = [sql.Identifier(n) for n in r.choice([("tblCUST", "CUST_TYP"), ("ORD_HDR", "STAT_CD"),
                                                          ("ORD_LN", "QTY")])]
        # and a same-named copy of a legacy table in another schema (the DBA's archive): the
        # document describes the application's tables, in the schema they live in
        archived = r.choice(legacy.TABLES)
        archive_note = f"archived copy {r.randrange(1000, 9999)}, not in use"
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(ARCHIVE)))
        conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(sql.Identifier(table, column), sql.Literal(new)))
        try:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(ARCHIVE)))
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {}, {} timestamptz)").format(
                sql.Identifier(ARCHIVE, archived), sql.Identifier("public", archived),
                sql.Identifier("ARCH_TS")))
            for (col,) in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                                       "AND attnum > 0 AND NOT attisdropped",
                                       (f'"{ARCHIVE}"."{archived}"',)).fetchall():
                conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(
                    sql.Identifier(ARCHIVE, archived, col), sql.Literal(archive_note)))
            conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(*relaxed))
            doc = mapping_document(engine, Base)
            cat = legacy.catalogue(conn)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(ARCHIVE)))
            conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(sql.Identifier(table, column), sql.Literal(old)))
            conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(*relaxed))
            engine.dispose()
    if not isinstance(doc, str) or not doc.strip():
        raise CheckFailed(f"mapping_document must return the Markdown text; got {type(doc).__name__}.")
    keys: dict[tuple[str, str], str] = {}
    for mapper in Base.registry.mappers:
        for col, key in _keys(mapper).items():
            keys[(mapper.local_table.name, col)] = key
    expected = [["Python name", "column", "type", "nullable", "comment"]]
    order = [t.name for t in Base.metadata.sorted_tables]
    cat = sorted(cat, key=lambda row: order.index(row[0]) if row[0] in order else len(order))
    expected += [[keys[(t, c)], f'"{t}"."{c}"', typ, "yes" if nullable else "no", comment or ""]
                 for t, c, typ, nullable, comment, _ in cat if (t, c) in keys]
    got = _rows(doc)
    if got[:1] != expected[:1]:
        raise CheckFailed("The document's header row must be `| Python name | column | type | "
                          "nullable | comment |`.", f"got {got[:1]}")
    if any(archive_note in cell or "ARCH_TS" in cell for row in got for cell in row):
        raise CheckFailed(
            f"The document lists columns of \"{ARCHIVE}\".\"{archived}\", a same-named copy "
            "the check put in another schema (DBAs keep archive and staging copies): a catalogue "
            "lookup by table name alone (pg_class.relname, information_schema.columns.table_name) "
            "matches every schema. Filter on the schema too (relnamespace = "
            "'public'::regnamespace, or table_schema = 'public'), or look the table up by its "
            "qualified name.", f"rows: {[g[:2] for g in got[1:]]}")
    if len(got) != len(expected):
        raise CheckFailed(
            f"The document has {len(got) - 1} column rows; the models map {len(expected) - 1} "
            "catalogue columns. One row per mapped column (a `|` inside a cell escaped as `\\|`, "
            "or it splits the row).", f"rows: {[g[:2] for g in got[1:]]}")
    for g, e in zip(got[1:], expected[1:]):
        if g != e:
            field = next(h for h, a, b in zip(expected[0], g + [""] * 5, e) if a != b)
            raise CheckFailed(
                f"The row of {e[1]} does not match the catalogue ({field}): the document must be "
                "generated from the catalogue at call time (format_type for the type, attnotnull "
                "for nullable, col_description for the comment; the check changed a comment and "
                "dropped a NOT NULL just before calling), tables in Base.metadata.sorted_tables order, columns by position.", f"got {g}; catalogue {e}")
    return f"the mapping document matches the catalogue ({len(expected) - 1} columns, a fresh comment included)"


# --------------------------------------------------------------------------
# q3: drift


def _migration(r: Any) -> tuple[str, str, set[tuple[str, str, str]]]:
    """A DBA migration with seeded names, its undo, and the (kind, table, name) it causes."""
    new = r.choice(["LYLTY_TIER", "RGN_CD", "VAT_NO", "SEG_CD"])
    renamed = r.choice(["GIFT_IND", "GFT_WRAP_FLG", "GIFT_CD"])
    widen = r.choice([("tblCUST", "CUST_NM", 80, 200), ("ORD_LN", "SKU", 40, 64)])
    added = r.choice([("ORD_LN", "IX_ORD_LN_SKU", "SKU"), ("tblCUST", "IX_tblCUST_EMAIL", "EMAIL_ADDR"),
                      ("ORD_HDR", "IX_ORD_HDR_STAT", "STAT_CD")])
    up = f'''
        ALTER TABLE "tblCUST" ADD COLUMN "{new}" varchar(8) NOT NULL DEFAULT 'NONE';
        ALTER TABLE "ORD_HDR" RENAME COLUMN "GIFT_FLG" TO "{renamed}";
        ALTER TABLE "{widen[0]}" ALTER COLUMN "{widen[1]}" TYPE varchar({widen[3]}),
                                 ALTER COLUMN "{widen[1]}" DROP NOT NULL;
        ALTER TABLE "tblCUST" ALTER COLUMN "EMAIL_ADDR" DROP NOT NULL;
        DROP INDEX "IX_ORD_HDR_DT";
        CREATE INDEX "{added[1]}" ON "{added[0]}" ("{added[2]}");'''
    down = f'''
        ALTER TABLE "tblCUST" DROP COLUMN IF EXISTS "{new}";
        ALTER TABLE "ORD_HDR" RENAME COLUMN "{renamed}" TO "GIFT_FLG";
        ALTER TABLE "{widen[0]}" ALTER COLUMN "{widen[1]}" TYPE varchar({widen[2]}),
                                 ALTER COLUMN "{widen[1]}" SET NOT NULL;
        ALTER TABLE "tblCUST" ALTER COLUMN "EMAIL_ADDR" SET NOT NULL;
        CREATE INDEX IF NOT EXISTS "IX_ORD_HDR_DT" ON "ORD_HDR" ("ORD_DT");
        DROP INDEX IF EXISTS "{added[1]}";'''
    expected = {("remove_column", "tblCUST", new), ("add_column", "ORD_HDR", "GIFT_FLG"),
                ("remove_column", "ORD_HDR", renamed), ("modify_type", widen[0], widen[1]),
                # the same column widened and made nullable: two differences, both reported
                ("modify_nullable", widen[0], widen[1]),
                ("modify_nullable", "tblCUST", "EMAIL_ADDR"), ("add_index", "ORD_HDR", "IX_ORD_HDR_DT"),
                ("remove_index", added[0], added[1])}
    return up, down, expected


WHAT = {
    "remove_column": "the column the DBA added",
    "add_column": "the column that is gone (renamed)",
    "modify_type": "the widened type (compare_type)",
    "modify_nullable": "the dropped NOT NULL",
    "add_index": "the dropped index",
    "remove_index": "the index the DBA added (an index the models lack: a new UNIQUE one would "
                    "refuse the application's inserts)",
}


def _report(fn: Any, engine: Any, metadata: Any, when: str) -> set[tuple[str, str, str]]:
    items = fn(engine, metadata)
    if not isinstance(items, (list, tuple)):
        raise CheckFailed(f"detect_drift must return a list; got {type(items).__name__}.")
    out = set()
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 4 and all(isinstance(x, str) for x in item)):
            raise CheckFailed("Each item of detect_drift's list must be a tuple of four strings "
                              "(kind, table, name, sentence).", f"got {item!r}")
        kind, table, name, words = item
        if name not in words or table not in words or len(words.split()) < 4:
            raise CheckFailed(
                "Each drift item needs a sentence a reviewer can act on, naming the table and the "
                f"column or index (got {words!r} for {kind} {table}.{name}).")
        out.add((kind, table, name))
    if len(out) != len(items):
        raise CheckFailed(f"detect_drift reported the same difference twice {when}.")
    return out


def q3(lab: Any, detect_drift: Any, Base: Any) -> str:
    """detect_drift reports exactly the DBA's changes, and nothing on an unchanged schema."""
    require(detect_drift, Base)
    r = adv.rng()
    engine = _engine(lab, adv.non_utc_zone(rand=r))
    with psycopg.connect(lab.url, autocommit=True) as conn:
        _legacy_present(conn)
    try:
        before = _report(detect_drift, engine, Base.metadata, "on the untouched schema")
        if before:
            comments = {k for k, _, _ in before} & COMMENT_KINDS
            raise CheckFailed(
                "On the schema exactly as the DBA built it, detect_drift already reports "
                f"{len(before)} difference(s); drift means a change, so the untouched schema must "
                "report none. "
                + ("Skip the comment differences (the mapping document reads comments from the "
                   "catalogue). " if comments else "")
                + "Compare only the metadata's own tables (include_object), and declare the "
                "legacy index in the models.", f"{sorted(before)[:6]}")
        up, down, expected = _migration(r)
        with psycopg.connect(lab.url, autocommit=True) as conn:
            conn.execute("BEGIN")
            conn.execute(up)
            conn.execute("COMMIT")
        try:
            got = _report(detect_drift, engine, Base.metadata, "after the migration")
        finally:
            with psycopg.connect(lab.url, autocommit=True) as conn:
                conn.execute("BEGIN")
                conn.execute(down)
                conn.execute("COMMIT")
    finally:
        engine.dispose()
    missing, extra = expected - got, got - expected
    if missing:
        kind, table, name = sorted(missing)[0]
        twin = sorted(k for k, t, n in got if (t, n) == (table, name) and k != kind)
        if twin:
            raise CheckFailed(
                f"After the DBA's migration, detect_drift reports ({twin[0]}, {table}, {name}) "
                f"but not ({kind}, {table}, {name}): the DBA changed that column twice in one "
                "ALTER TABLE (a wider type and no more NOT NULL), and your report keeps one "
                "difference per column (a dict keyed by table and column, or a dedup). Report "
                "every difference compare_metadata finds, one tuple each: a reviewer who sees "
                "only the widened type never learns that the column may now be NULL.",
                f"missing {sorted(missing)}; reported {sorted(got)}")
        raise CheckFailed(
            f"After the DBA's migration, detect_drift does not report {WHAT.get(kind, kind)}: "
            f"({kind}, {table}, {name}). "
            + ("A detector that ignores a type or a nullability change lets the models disagree "
               "with the database until an INSERT fails in production: compare types and "
               "nullability too (compare_metadata does, unless told not to)."
               if kind in ("modify_type", "modify_nullable") else
               "Report every difference compare_metadata finds in the mapped tables (columns, "
               "types, nullability, indexes), leaving out only the comments."),
            f"missing {sorted(missing)}; reported {sorted(got)}")
    if extra:
        raise CheckFailed("detect_drift reports differences the migration did not make: "
                          f"{sorted(extra)}. Report exactly what changed, nothing else.")
    _models_allow_null(detect_drift, lab, Base, r)
    return f"detect_drift reports exactly the {len(expected)} differences of the DBA's migration, and none before it"


def _models_allow_null(detect_drift: Any, lab: Any, Base: Any, r: Any) -> None:
    """The other direction of a nullability drift, with no DDL: a copy of the models in which a
    seeded NOT NULL column is nullable (the database's column is stricter than the model, so an
    insert with None fails) must be reported as exactly that one difference."""
    from sqlalchemy import MetaData

    table, column = r.choice([("tblCUST", "CUST_TYP"), ("ORD_HDR", "STAT_CD"), ("ORD_LN", "QTY")])
    loose = MetaData()
    for t in Base.metadata.sorted_tables:
        t.to_metadata(loose)
    if column not in loose.tables[table].c:
        return  # not mapped: q1 says so
    loose.tables[table].c[column].nullable = True
    engine = _engine(lab, adv.non_utc_zone(rand=r))
    try:
        got = _report(detect_drift, engine, loose, "on models that allow NULL in a NOT NULL column")
    finally:
        engine.dispose()
    want = {("modify_nullable", table, column)}
    if got != want:
        raise CheckFailed(
            f"On models where \"{table}\".\"{column}\" is nullable while the database has it NOT "
            f"NULL, detect_drift reports {sorted(got) or 'nothing'}; the one difference is "
            f"(modify_nullable, {table}, {column}). Report nullability drift in both directions: "
            "a model that allows None where the database refuses NULL fails on its first such "
            "INSERT.")


# --------------------------------------------------------------------------
# q4: the reviewed rename


def _row_places(conn: Any) -> tuple[Any, ...]:
    """The relation's file and the physical place (ctid) of every row of "ORD_HDR"."""
    node = conn.execute("SELECT pg_relation_filenode('\"ORD_HDR\"'::regclass)").fetchone()[0]
    return (node, query_checksum(conn, 'SELECT ctid::text FROM "ORD_HDR"'))


def _undo_committed_rename(lab: Any, cid: int, top: int, new_name: str) -> None:
    """A migration SQL that committed: put the column's name back, remove the planted orders."""
    with psycopg.connect(lab.url) as conn:
        cols = {row[0] for row in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = '\"ORD_HDR\"'::regclass "
            "AND attnum > 0 AND NOT attisdropped")}
        if new_name in cols and "GIFT_FLG" not in cols:
            conn.execute(sql.SQL('ALTER TABLE "ORD_HDR" RENAME COLUMN {} TO "GIFT_FLG"')
                         .format(sql.Identifier(new_name)))
        conn.execute('DELETE FROM "ORD_HDR" WHERE "CUST_ID" = %s AND "ORD_NO" > %s '
                     'AND NOT EXISTS (SELECT 1 FROM "ORD_LN" l WHERE l."CUST_ID" = "ORD_HDR"."CUST_ID" '
                     'AND l."ORD_NO" = "ORD_HDR"."ORD_NO")', (cid, top))
        conn.commit()


def q4(lab: Any, rename_sql: Any, new_name: str = "GIFT_IND") -> str:
    """The reviewed rename keeps every gift flag, the constraint and the comment."""
    require(rename_sql)
    r = adv.rng()
    with psycopg.connect(lab.url) as conn:
        _legacy_present(conn)
        cid = conn.execute('SELECT "CUST_ID" FROM "tblCUST" ORDER BY "CUST_ID" OFFSET %s LIMIT 1',
                           (r.randrange(50),)).fetchone()[0]
        top = conn.execute('SELECT coalesce(max("ORD_NO"), 0) FROM "ORD_HDR" WHERE "CUST_ID" = %s',
                           (cid,)).fetchone()[0]
        flags = ["Y", "N", None] + [r.choice(["Y", "N", None]) for _ in range(adv.non_round(7, rand=r))]
        for i, f in enumerate(flags, 1):
            conn.execute('INSERT INTO "ORD_HDR" VALUES (%s, %s, current_date, %s, %s)',
                         (cid, top + i, r.choice("OPSX"), f))
        before = query_checksum(conn, 'SELECT "CUST_ID", "ORD_NO", "GIFT_FLG" FROM "ORD_HDR"')
        others = {t: query_checksum(conn, f'SELECT * FROM "{t}"') for t in ("tblCUST", "ORD_LN")}
        comment = conn.execute("SELECT col_description('\"ORD_HDR\"'::regclass, attnum) FROM pg_attribute "
                               "WHERE attrelid = '\"ORD_HDR\"'::regclass AND attname = 'GIFT_FLG'").fetchone()[0]
        # where every row lives (and the relation's file): a rename moves none of them
        places = _row_places(conn)
        try:
            conn.execute(rename_sql)
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
                _undo_committed_rename(lab, cid, top, new_name)
                raise CheckFailed(
                    "Your migration SQL ends the transaction it runs in (a COMMIT, END or ROLLBACK "
                    "in it): the migration tool (Alembic, Flyway, this check) runs each migration "
                    "in its own transaction and records the version in that same transaction, so "
                    "a COMMIT inside commits half of that work and a later failure can no longer "
                    "roll the change back. Leave BEGIN/COMMIT out of the migration's SQL. (The "
                    "check has renamed the column back and removed its planted orders.)")
            cols = [row[0] for row in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = '\"ORD_HDR\"'::regclass "
                "AND attnum > 0 AND NOT attisdropped")]
            if new_name not in cols or "GIFT_FLG" in cols:
                raise CheckFailed(f"After your migration \"ORD_HDR\" must have \"{new_name}\" and no "
                                  "\"GIFT_FLG\" (the model now maps the new name).", f"columns: {cols}")
            after = query_checksum(conn, f'SELECT "CUST_ID", "ORD_NO", "{new_name}" FROM "ORD_HDR"')
            if after != before:
                lost = conn.execute(f'SELECT count(*) FROM "ORD_HDR" WHERE "{new_name}" IS NULL').fetchone()[0]
                raise CheckFailed(
                    f"Your migration loses data: after it, {lost} orders have no gift flag under "
                    f"\"{new_name}\". That is autogenerate's DROP COLUMN + ADD COLUMN for a rename "
                    "(it cannot tell the two apart): every stored value is gone. Review the "
                    "generated migration and write the rename (ALTER TABLE ... RENAME COLUMN).")
            if _row_places(conn) != places:
                raise CheckFailed(
                    "The gift flags survived, but your migration rewrote every row of \"ORD_HDR\" "
                    "(a new column filled by an UPDATE, or a type change that rewrites the table) "
                    "while holding the ACCESS EXCLUSIVE lock its ALTER TABLE took: on the real "
                    "table that is every order unreadable for as long as the copy takes, twice "
                    "the table's size written (and its WAL sent to every replica), and the column "
                    "moved to the end. A rename is a catalogue change that moves no row: "
                    "ALTER TABLE \"ORD_HDR\" RENAME COLUMN \"GIFT_FLG\" TO \"GIFT_IND\" keeps "
                    "the values, the constraint and the comment.")
            kept = True
            for letter in ["Y", "N", None, *r.sample(["X", "U", "y", "n", "0", "J", " ", "T", "F"], 9)]:
                conn.execute("SAVEPOINT probe")
                try:
                    conn.execute(f'UPDATE "ORD_HDR" SET "{new_name}" = %s WHERE "CUST_ID" = %s '
                                 'AND "ORD_NO" > %s', (letter, cid, top))
                    refused = False
                except psycopg.errors.CheckViolation:
                    refused = True
                conn.execute("ROLLBACK TO SAVEPOINT probe")
                if refused != (letter not in ("Y", "N", None)):
                    kept = False
            new_comment = conn.execute(
                "SELECT col_description('\"ORD_HDR\"'::regclass, attnum) FROM pg_attribute "
                "WHERE attrelid = '\"ORD_HDR\"'::regclass AND attname = %s", (new_name,)).fetchone()[0]
            if not kept or new_comment != comment:
                raise CheckFailed(
                    f"The values survived, but \"{new_name}\" lost "
                    + ("its Y/N check constraint (exactly 'Y', 'N' or NULL, every other value refused)"
                       if not kept else "its comment")
                    + ": a rename keeps both.")
            changed = [t for t, v in others.items() if query_checksum(conn, f'SELECT * FROM "{t}"') != v]
            if changed:
                raise CheckFailed(f"Your migration changed {', '.join(changed)}, which the rename "
                                  "does not touch.")
        finally:
            conn.rollback()
    return f"the rename keeps all {len(flags)} planted gift flags (Y, N and NULL), the constraint and the comment"
