"""After the last batch, reclaims the space with VACUUM FULL orders, order_items (in autocommit,
restored afterwards): a rewrite of both tables under ACCESS EXCLUSIVE, every query and every
checkout waits for the whole copy (minutes at 10 million rows). The notebook warns against it."""
CHECK = "soft_delete.q3"
EXPECT = "rewrote"
EDIT = {"archive_orders": [("""            if not ids:
                return archived""", """            if not ids:
                break""" ), ("""        last_id = ids[-1]
""", """        last_id = ids[-1]
    if archived:  # give the space back to the OS now that the rows are gone
        conn.autocommit = True
        try:
            conn.execute("VACUUM FULL orders, order_items")
        finally:
            conn.autocommit = False
    return archived
""")]}
