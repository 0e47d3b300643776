"""The right index, plus ALTER DATABASE ... SET work_mem = '256MB' "so the sort never spills":
every connection of every application of the database gets 256 MB per sort or hash node (out of
memory at the next peak), and the page's own plan changes (a hash join reading order_items)."""
CHECK = "slow_query.q4"
EXPECT = "stores a setting for every later session"
EDIT = {"skew_index_sql": [("ON orders (customer_id, created_at DESC, id DESC)\n",
  "ON orders (customer_id, created_at DESC, id DESC);\n"
  "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET work_mem = ''256MB''', current_database()); END $$\n")]}
