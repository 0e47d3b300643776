"""Locks orders and order_items in EXCLUSIVE mode for every batch "so nothing changes meanwhile":
each batch queues behind every running writer, then stops every checkout until it commits."""
CHECK = "soft_delete.q3"
EXPECT = "conflicts with the ROW EXCLUSIVE lock"  # the verdict must give this reason
EDIT = {"archive_orders": [("with conn.transaction():  # one batch: items and orders, committed together\n",
                            "with conn.transaction():  # one batch: items and orders, committed together\n"
                            "            conn.execute(\"LOCK TABLE orders, order_items IN EXCLUSIVE MODE\")\n")]}
