"""The audit records session_user: the role that logged in, which SET ROLE does not change. A
change made under SET ROLE (a clerk's role, a migration's owner role) is put on the login role;
the same happens with current_user inside a SECURITY DEFINER function (its owner)."""
CHECK = "outbox.q3"
EXPECT = "made under SET ROLE"
EDIT = {"audit_sql": [("TG_OP, old_row, new_row, current_user,",
                       "TG_OP, old_row, new_row, session_user,")]}
