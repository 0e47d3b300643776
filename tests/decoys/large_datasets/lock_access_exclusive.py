"""LOCK TABLE events IN ACCESS EXCLUSIVE MODE for the whole load "so nobody reads half a
load": every reader and writer of events waits for the full COPY (and readers never see
uncommitted rows anyway)."""
CHECK = "large_datasets.q1"
EXPECT = "waited for a lock on events"  # the verdict must give this reason
EDIT = {"load_events": [
    ('    with conn.cursor() as cur, cur.copy(',
     '    conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")\n'
     '    with conn.cursor() as cur, cur.copy('),
]}
