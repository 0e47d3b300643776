"""ANALYZE alone: the planner gets statistics, but the visibility map stays empty, so an
Index Only Scan still fetches every row from the table."""
CHECK = "large_datasets.q4"
EXPECT = 'ANALYZE does not'  # the verdict must give this reason
REPLACE = {"after_load_sql": '''after_load_sql = """
ANALYZE events
"""'''}
