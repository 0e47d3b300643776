"""Lazy loading in a loop: the orders come in one query, then `order.items` and `item.product`
are loaded one by one as order_out walks them (lazyload asked for explicitly): N+1 statements."""
CHECK = "model_boundaries.q4"
EXPECT = "N+1"  # the verdict must give this reason
EDIT = {"list_orders_with_items": [
    ("from sqlalchemy.orm import selectinload", "from sqlalchemy.orm import lazyload"),
    (".options(selectinload(Order.items).selectinload(OrderItem.product))",
     ".options(lazyload(Order.items).lazyload(OrderItem.product))"),
]}
