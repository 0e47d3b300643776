"""Avoids the JOIN+LIMIT trap by loading all of the customer's orders with their items
(joinedload, one statement) and slicing the page in Python: every page of a customer with
50,000 orders loads all 50,000 and their items."""
CHECK = "model_boundaries.q4"
EXPECT = "loads all of the customer"
REPLACE = {"list_orders_with_items": '''
from sqlalchemy.orm import joinedload


def list_orders_with_items(session, customer_id, limit=20, offset=0):
    orders = session.scalars(
        select(Order)
        .where(Order.customer_id == customer_id)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .options(joinedload(Order.items).joinedload(OrderItem.product))
    ).unique().all()
    return [order_out(o) for o in orders[offset:offset + limit]]
'''}
