"""Sets the timeouts with SET while acting as the role: SET lasts for the session that ran it,
so the next session of the role (the psql window opened tomorrow) has no limit at all."""
CHECK = "mvcc_bloat.q3"
EXPECT = "new session"
REPLACE = {"role_timeouts_sql": '''role_timeouts_sql = """
SET ROLE {role};
SET idle_in_transaction_session_timeout = '2s';
SET statement_timeout = '2s';
RESET ROLE;
"""
'''}
