"""The consumer records the event id (ON CONFLICT DO NOTHING) but applies the effect whether
or not the id was new: every duplicate delivery (a relay killed after publishing, before
marking sent) counts an order and its revenue twice."""
CHECK = "outbox.q2"
EXPECT = "Duplicates were applied twice"
EDIT = {"consume": [(
    '''        if new is None:
            return False          # a duplicate: already applied
''', "")]}
