"""The order history leaves out cancelled orders (a status filter nobody asked for): a
customer asking about a cancelled or refunded order does not find it, and pages shift."""
CHECK = "model_boundaries.q4"
EXPECT = "whose status is"
EDIT = {"list_orders_with_items": [
    (".where(Order.customer_id == customer_id)",
     ".where(Order.customer_id == customer_id, Order.status != 'cancelled')"),
]}
