"""Plain VACUUM: the visibility map is set, but no statistics are collected, so the planner
still guesses 0.5% for every equality."""
CHECK = "large_datasets.q4"
REPLACE = {"after_load_sql": '''after_load_sql = """
VACUUM events
"""'''}
