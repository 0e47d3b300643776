"""Guarded ON CONFLICT upsert, but the action is guessed from the version it returns:
`version = 1` is called "inserted", anything else "updated". A new sku whose first event
is version 4 is reported as an update (and a row another source wrote at version 0 that
an event lifts to version 1 is reported as an insert)."""
CHECK = "upserts.q1"
EXPECT = 'did not exist before the call'  # the verdict must give this reason
EDIT = {"upsert_product": [
    ("RETURNING id, (xmax = 0) AS inserted", "RETURNING id, version"),
    ('return row[0], "inserted" if row[1] else "updated"',
     'return row[0], "inserted" if row[1] == 1 else "updated"'),
]}
