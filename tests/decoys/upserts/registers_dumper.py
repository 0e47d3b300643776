"""Registers a jsonb dumper for dict on the caller's connection (conn.adapters) instead of
wrapping the one value: every later query of the caller that passes a dict is now sent as
jsonb, a change to a connection the function was only lent, which pg_settings never shows."""
CHECK = "upserts.q1"
EXPECT = "registered a dumper or loader"
EDIT = {"upsert_product": [
    ("    row = conn.execute(\"\"\"",
     "    from psycopg.types.json import JsonbDumper\n"
     "    conn.adapters.register_dumper(dict, JsonbDumper)  # dicts go to jsonb\n"
     "    row = conn.execute(\"\"\""),
    ("dict(event, attributes=Jsonb(event[\"attributes\"]))", "event")]}
