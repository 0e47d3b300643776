"""The relay marks its batch sent and commits, then publishes: a worker killed in the middle
of the batch has already recorded the rest of the batch as sent, and those events are never
published. Lost events, where publish-then-mark would only have caused duplicates."""
CHECK = "outbox.q2"
EXPECT = "never published"
EDIT = {"relay_batch": [(
    '''        sent = []
        for event in events:''',
    '''        cur.execute("UPDATE outbox SET status = 'sent', sent_at = now() WHERE id = ANY(%s)",
                    [[e["id"] for e in events]])
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:   # committed: now publish
        sent = []
        for event in events:''')]}
