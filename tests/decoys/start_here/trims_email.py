"""Returns trim(email) AS email ("clean output"): an address stored with a stray space is
returned as another string than the one stored (and the task asks for the columns as
stored); a client that looks the customer up by it finds nobody."""
CHECK = "start_here.q1"
EXPECT = "trailing space"
EDIT = {"newest_sql": [("SELECT id, email, created_at", "SELECT id, trim(email) AS email, created_at")]}
