"""The trigger 'normalises' time with set_config('TimeZone', 'UTC', true) (SET LOCAL): the rest of the caller's transaction reads timestamps in UTC."""
CHECK = "versioned_data.q1"
EXPECT = 'still inside its transaction'  # the verdict must give this reason
EDIT = {"history_sql": [
    ("BEGIN\n    INSERT INTO products_history",
     "BEGIN\n    PERFORM set_config('TimeZone', 'UTC', true);\n    INSERT INTO products_history"),
]}
