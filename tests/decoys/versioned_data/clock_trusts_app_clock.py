"""Exercise 3's function "respects" a client's updated_at when it is later than t: a client
whose clock runs ahead (or that sets it on purpose) dates the new version in the future, so
AS OF queries until then still answer the replaced price."""
CHECK = "versioned_data.q3"
EXPECT = "(an application's clock)"
EDIT = {"clock_sql": [
    ("    NEW.updated_at := t;",
     "    NEW.updated_at := greatest(t, NEW.updated_at);\n"
     "    IF NEW.updated_at > t THEN\n"
     "        UPDATE products_history SET valid = tstzrange(lower(valid), NEW.updated_at)\n"
     "        WHERE product_id = OLD.id AND upper(valid) = t;\n"
     "    END IF;"),
]}
