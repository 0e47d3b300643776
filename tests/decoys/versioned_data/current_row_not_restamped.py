"""Closes the old period at t but leaves the new row's updated_at as it was: a gap or overlap between history and the current row."""
CHECK = "versioned_data.q1"
EXPECT = 'the periods have a'  # the verdict must give this reason
REPLACE = {"history_sql": '''history_sql = """
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE IF NOT EXISTS products_history (
    product_id bigint        NOT NULL,
    sku        text          NOT NULL,
    name       text          NOT NULL,
    price      numeric(10,2) NOT NULL,
    attributes jsonb         NOT NULL,
    deleted_at timestamptz,
    valid      tstzrange     NOT NULL,
    EXCLUDE USING gist (product_id WITH =, valid WITH &&)
);

CREATE OR REPLACE FUNCTION products_keep_history() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    -- now() is when this transaction STARTED; a transaction that started earlier can commit
    -- later. Never let a new version begin before the one it replaces.
    t timestamptz := greatest(now(), OLD.updated_at + interval '1 microsecond');
BEGIN
    INSERT INTO products_history (product_id, sku, name, price, attributes, deleted_at, valid)
    VALUES (OLD.id, OLD.sku, OLD.name, OLD.price, OLD.attributes, OLD.deleted_at,
            tstzrange(OLD.updated_at, t));
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER products_keep_history
    BEFORE UPDATE OR DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION products_keep_history();
"""'''}
