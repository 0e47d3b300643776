"""The DELETE branch closes the last version at now(): a DELETE whose transaction started before the last UPDATE committed writes a backwards period and fails."""
CHECK = "versioned_data.q3"
EXPECT = 'A DELETE closes the last version too'  # the verdict must give this reason
EDIT = {"clock_sql": [
    ("BEGIN\n    INSERT INTO products_history",
     "BEGIN\n    IF TG_OP = 'DELETE' THEN\n        t := now();\n    END IF;\n    INSERT INTO products_history"),
]}
