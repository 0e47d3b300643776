"""VACUUM ANALYZE without a table name: vacuums and analyses every table of the database
(catalogs included) after each nightly load, not just the one loaded."""
CHECK = "large_datasets.q4"
EXPECT = "every table in the database"  # the verdict must give this reason
EDIT = {"after_load_sql": [("VACUUM (ANALYZE) events", "VACUUM ANALYZE")]}
