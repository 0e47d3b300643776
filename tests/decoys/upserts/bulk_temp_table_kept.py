"""Stages the feed in a temp table it keeps and never empties: every later load re-applies every earlier feed."""
CHECK = "upserts.q3"
EXPECT = "temporary table"
EDIT = {"load_feed": [
    ("CREATE TEMP TABLE feed_batch (", "CREATE TEMP TABLE IF NOT EXISTS feed_batch ("),
    ("""            ON COMMIT DROP\"\"\")""", """            \"\"\")"""),
]}
