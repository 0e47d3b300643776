"""The consumer records the event id and commits, then applies the effect in a second
transaction: a consumer that dies between the two commits has marked the event done without
its effect, and the redelivery is skipped as a duplicate: the effect is lost for good."""
CHECK = "outbox.q2"
EXPECT = "in different transactions"
EDIT = {"consume": [(
    '''        if new is None:
            return False          # a duplicate: already applied
''', '''        if new is None:
            return False          # a duplicate: already applied
    with conn.transaction():      # the effect, committed on its own
''')]}
