"""Fills created_at with now() for a user that has no sign-up event, "so that no NULL is left and
the contract cannot fail": users missing from the analytics log silently get the migration's
moment as their sign-up time, the wrong data the expand was designed to avoid, and the gap the
contract's VALIDATE would have reported is hidden."""
CHECK = "migrations.q2"
EXPECT = "have no row in signup_events"
EDIT = {"backfill": [("""SET created_at = s.signed_up_at
                                    FROM signup_events s
                                    WHERE s.user_id = u.id AND u.id > %s""", """SET created_at = coalesce(
                                        (SELECT s.signed_up_at FROM signup_events s
                                         WHERE s.user_id = u.id), now())
                                    WHERE u.id > %s""")]}
