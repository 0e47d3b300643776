"""The new identity is set to count(*) instead of max(id): ids have gaps (deleted orders,
rolled-back inserts), so the next orders get ids existing orders already have."""
CHECK = "partitioning.q2"
EXPECT = "does not continue after the highest id"
EDIT = {"convert_orders": [("(SELECT max(id) FROM orders))", "(SELECT count(*) FROM orders))")]}
