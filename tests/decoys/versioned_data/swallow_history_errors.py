"""Wraps the history INSERT in EXCEPTION WHEN others: a failing history write (overlap, backwards
period) is swallowed and the product change commits with no history."""
CHECK = "versioned_data.q1"
EXPECT = "swallows the failure"
EDIT = {"history_sql": [("""    INSERT INTO products_history (product_id, sku, name, price, attributes, deleted_at, valid)
    VALUES (OLD.id, OLD.sku, OLD.name, OLD.price, OLD.attributes, OLD.deleted_at,
            tstzrange(OLD.updated_at, t));""",
"""    BEGIN
        INSERT INTO products_history (product_id, sku, name, price, attributes, deleted_at, valid)
        VALUES (OLD.id, OLD.sku, OLD.name, OLD.price, OLD.attributes, OLD.deleted_at,
                tstzrange(OLD.updated_at, t));
    EXCEPTION WHEN others THEN
        RAISE WARNING 'history not written: %', SQLERRM;
    END;""")]}
