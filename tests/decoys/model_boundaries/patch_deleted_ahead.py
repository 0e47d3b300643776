"""patch_customer treats a customer whose deleted_at is still ahead as live (the "scheduled
deletion" idiom, deleted_at IS NULL OR deleted_at > now()), unlike get_customer_profile: a
customer who asked to be erased can still be changed through the API."""
CHECK = "model_boundaries.q3"
EXPECT = "even to an instant ahead"
EDIT = {"patch_customer": [
    ("    customer = session.get(Customer, customer_id)\n"
     "    if customer is None or customer.deleted_at is not None:\n"
     "        return None\n",
     "    from sqlalchemy import func, or_\n"
     "    customer = session.scalars(select(Customer).where(\n"
     "        Customer.id == customer_id,\n"
     "        or_(Customer.deleted_at.is_(None), Customer.deleted_at > func.now()))).first()\n"
     "    if customer is None:\n"
     "        return None\n"),
]}
