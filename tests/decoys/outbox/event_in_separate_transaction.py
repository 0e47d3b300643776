"""place_order commits the order and its items, then writes the outbox event in a second
transaction: a crash (or an error) between the two commits leaves an order whose event is
never published. The check sees it in the rows themselves: the event's xmin is not the
order's."""
CHECK = "outbox.q1"
EXPECT = "in separate transactions"
EDIT = {"place_order": [
    ('''            WHERE id = %(id)s""", {"id": order_id})
''', '''            WHERE id = %(id)s""", {"id": order_id})
    with conn.transaction(), conn.cursor() as cur:      # a second transaction for the event
'''),
]}
