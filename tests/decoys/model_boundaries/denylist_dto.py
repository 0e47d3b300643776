"""`CustomerOut(**customer.__dict__)` with extra fields allowed, minus a list of the secrets
known today (a denylist): the column added next month is published the day it is added."""
CHECK = "model_boundaries.q2"
EXPECT = "denylist"  # the verdict must give this reason
REPLACE = {"CustomerOut": '''
from pydantic import BaseModel, ConfigDict, Field

SECRETS = ("password_hash", "is_admin", "internal_note")


class CustomerOut(BaseModel):
    model_config = ConfigDict(extra="allow")  # "new columns show up automatically"

    id: int
    email: str
    full_name: str
    phone: str | None
    country: str
    city: str | None
    created_at: dt.datetime


def get_customer_profile(session, customer_id):
    customer = session.get(Customer, customer_id)
    if customer is None or customer.deleted_at is not None:
        return None
    public = {k: v for k, v in customer.__dict__.items()
              if not k.startswith("_") and k not in SECRETS and k != "deleted_at"}
    return CustomerOut(**public)
'''}
