"""One query with a JOIN to the items (contains_eager) and LIMIT/OFFSET on it: the limit counts
order × item rows, so a page holds fewer orders than asked and its last order loses items."""
CHECK = "model_boundaries.q4"
EXPECT = "joined rows"  # the verdict must give this reason
REPLACE = {"list_orders_with_items": '''
from sqlalchemy.orm import contains_eager


def list_orders_with_items(session, customer_id, limit=20, offset=0):
    orders = session.scalars(
        select(Order)
        .outerjoin(Order.items).outerjoin(OrderItem.product)
        .where(Order.customer_id == customer_id)
        .order_by(Order.created_at.desc(), Order.id.desc(), OrderItem.id)
        .options(contains_eager(Order.items).contains_eager(OrderItem.product))
        .limit(limit).offset(offset)
    ).unique().all()
    return [order_out(o) for o in orders]
'''}
