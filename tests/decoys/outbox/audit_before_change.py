"""The audit trigger fires BEFORE the change (returning NEW, or OLD for a DELETE): it records the
row as it was asked for, and a later BEFORE trigger (a normaliser, a guard that cancels the
change) makes the audit say what was never stored."""
CHECK = "outbox.q3"
EXPECT = "fires BEFORE the change"
EDIT = {"audit_sql": [("  RETURN NULL;\nEND $$;", "  RETURN coalesce(NEW, OLD);\nEND $$;"),
                      ("CREATE TRIGGER orders_audit AFTER INSERT",
                       "CREATE TRIGGER orders_audit BEFORE INSERT")]}
