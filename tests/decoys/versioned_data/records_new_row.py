"""Writes the NEW row into the history (and only on UPDATE): the history repeats the present and loses the past."""
CHECK = "versioned_data.q1"
EXPECT = 'not the NEW one'  # the verdict must give this reason
EDIT = {"history_sql": [
    ('VALUES (OLD.id, OLD.sku, OLD.name, OLD.price, OLD.attributes, OLD.deleted_at,',
     'VALUES (NEW.id, NEW.sku, NEW.name, NEW.price, NEW.attributes, NEW.deleted_at,'),
    ('BEFORE UPDATE OR DELETE ON products',
     'BEFORE UPDATE ON products'),
]}
