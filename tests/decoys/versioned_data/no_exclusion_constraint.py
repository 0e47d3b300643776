"""A correct trigger but no exclusion constraint: nothing but hope keeps versions from overlapping."""
CHECK = "versioned_data.q1"
EXPECT = 'no exclusion constraint'  # the verdict must give this reason
EDIT = {"history_sql": [
    ('    valid      tstzrange     NOT NULL,\n    EXCLUDE USING gist (product_id WITH =, valid WITH &&)\n',
     '    valid      tstzrange     NOT NULL\n'),
]}
