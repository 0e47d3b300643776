"""Right index, plus ALTER DATABASE ... SET enable_seqscan = off so that the planner 'uses it':
a setting leaked to every future session of the database (reports lose their seq scans)."""
CHECK = "indexing.q1"
EXPECT = "stored settings for every future session"
EDIT = {"composite_sql": [("ON orders (shipping_country, created_at)\n",
  "ON orders (shipping_country, created_at);\nDO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET enable_seqscan = off', current_database()); END $$\n")]}
