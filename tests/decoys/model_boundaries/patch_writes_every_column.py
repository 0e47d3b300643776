"""Validates with the DTO, then writes one raw UPDATE of every patchable column, merged from
the row it read and the body: two concurrent PATCHes of different fields ({"phone"} and
{"city"}) each write back the other's old value, a lost update the ORM's changed-columns-only
UPDATE does not have."""
CHECK = "model_boundaries.q3"
EXPECT = "lost update"
EDIT = {"patch_customer": [
    ("""    for field, value in patch.model_dump(exclude_unset=True).items():
        setattr(customer, field, value)  # only declared, sent fields: the DTO is the allowlist
    session.commit()""",
     """    from sqlalchemy import text
    values = {f: getattr(customer, f) for f in ("full_name", "phone", "country", "city")}
    values.update(patch.model_dump(exclude_unset=True))  # only declared, sent fields
    session.execute(text("UPDATE customers SET full_name = :full_name, phone = :phone, "
                         "country = :country, city = :city WHERE id = :id"),
                    {**values, "id": customer_id})
    session.commit()"""),
]}
