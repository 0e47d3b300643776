"""Right keyset query, but the index is on orders (customer_id) alone: the load-test account's page fetches and sorts all of its orders (at tiny scale still under the buffer budget; the same cause as an index on (created_at DESC, id DESC) alone)."""
CHECK = "slow_query.q4"
EXPECT = ("rows of orders", "order_items with a Seq Scan")  # all its orders, then a hash semi-join
EDIT = {"skew_index_sql": [
    ("orders_customer_created_id_idx\n    ON orders (customer_id, created_at DESC, id DESC)",
     "orders_customer_only_idx\n    ON orders (customer_id)"),
]}
