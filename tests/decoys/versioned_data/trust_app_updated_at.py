"""Keeps the application's updated_at when the UPDATE sets one (ORMs do, from the app server's clock): a lagging clock writes a backwards or overlapping period, and a client can backdate versions."""
CHECK = "versioned_data.q1"
EXPECT = 'the trigger, not the client, decides when a version starts'  # the verdict must give this reason
EDIT = {"history_sql": [
    ("BEGIN\n    INSERT INTO products_history",
     "BEGIN\n    IF TG_OP = 'UPDATE' AND NEW.updated_at IS DISTINCT FROM OLD.updated_at THEN\n        t := NEW.updated_at;  -- the application said when\n    END IF;\n    INSERT INTO products_history"),
]}
