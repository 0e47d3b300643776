"""The audit trigger is FOR EACH STATEMENT: it fires once per statement and sees no OLD or NEW
row, so a COPY of many rows, or an UPDATE of several, leaves one audit line without the order
or its values."""
CHECK = "outbox.q3"
EXPECT = "statement-level trigger sees no rows"
EDIT = {"audit_sql": [
    ("FOR EACH ROW EXECUTE", "FOR EACH STATEMENT EXECUTE"),
    ("""  old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
  new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;""",
     "  old_row jsonb;\n  new_row jsonb;"),
    ("  IF TG_OP = 'UPDATE' THEN", "  IF false THEN"),
    ("coalesce(NEW.id, OLD.id)", "0"),
]}
