"""One `RETURN NEW` for UPDATE and DELETE: in a BEFORE DELETE trigger NEW is NULL, and a
BEFORE trigger that returns NULL cancels the operation, so every DELETE of a product silently
deletes nothing (while a history row is written for it)."""
CHECK = "versioned_data.q1"
EXPECT = "deleted nothing"
EDIT = {"history_sql": [
    ("    IF TG_OP = 'DELETE' THEN\n        RETURN OLD;\n    END IF;\n    NEW.updated_at := t;",
     "    IF TG_OP = 'UPDATE' THEN\n        NEW.updated_at := t;\n    END IF;"),
]}
