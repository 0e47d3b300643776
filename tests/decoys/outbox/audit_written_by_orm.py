"""The audit is written by the application's ORM (a SQLAlchemy after_flush hook), not by the
database: changes made through the ORM are recorded, those made with plain SQL or COPY (a
hot-fix, a bulk import, another service) leave no trace."""
CHECK = "outbox.q3"
EXPECT = "plain SQL"
REPLACE = {"audit_sql": '''
import json

from sqlalchemy import event, inspect, text
from sqlalchemy.orm import Session


@event.listens_for(Session, "after_flush")
def audit_orm_changes(session, flush_context):
    changes = ([(o, "INSERT") for o in session.new] + [(o, "UPDATE") for o in session.dirty]
               + [(o, "DELETE") for o in session.deleted])
    for obj, op in changes:
        state = inspect(obj)
        if state.mapper.local_table.name != "orders":
            continue
        old, new = {}, {}
        for attr in state.mapper.column_attrs:
            history = state.attrs[attr.key].history
            if op != "UPDATE" or history.has_changes():
                new[attr.key] = (history.added or history.unchanged or [None])[0]
                old[attr.key] = (history.deleted or history.unchanged or [None])[0]
        session.execute(text("""
            INSERT INTO order_audit (order_id, op, old_values, new_values, db_user, app_user)
            VALUES (:id, :op, CAST(:old AS jsonb), CAST(:new AS jsonb), current_user,
                    nullif(current_setting('app.username', true), ''))"""),
            {"id": obj.id, "op": op,
             "old": None if op == "INSERT" else json.dumps(old, default=str),
             "new": None if op == "DELETE" else json.dumps(new, default=str)})


audit_sql = "SELECT 1  -- the ORM writes the audit"
'''}
