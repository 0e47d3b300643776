"""Mass assignment: the PATCH body is copied onto the model with a setattr loop over whatever
the client sent (the DTO allows extra fields), so `{"is_admin": true}` makes a client admin."""
CHECK = "model_boundaries.q3"
EXPECT = "mass assignment"  # the verdict must give this reason
REPLACE = {"CustomerPatch": '''
class CustomerPatch(BaseModel):
    model_config = ConfigDict(extra="allow")  # "be liberal in what you accept"

    full_name: str = Field(None, min_length=1)
    phone: str | None = None
    country: str = Field(None, min_length=2, max_length=2)
    city: str | None = None


def patch_customer(session, customer_id, patch):
    customer = session.get(Customer, customer_id)
    if customer is None or customer.deleted_at is not None:
        return None
    for field, value in patch.model_dump(exclude_unset=True).items():
        if hasattr(customer, field):
            setattr(customer, field, value)
    session.commit()
    return CustomerOut.model_validate(customer)
'''}
