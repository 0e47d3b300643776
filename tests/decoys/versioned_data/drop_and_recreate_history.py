"""Makes the cell re-runnable by DROP TABLE IF EXISTS products_history before CREATE TABLE: every
re-run of the migration (another deploy, another environment) deletes the whole history."""
CHECK = "versioned_data.q1"
EXPECT = "destroys the history"
EDIT = {"history_sql": [("CREATE TABLE IF NOT EXISTS products_history (",
                         "DROP TABLE IF EXISTS products_history;\nCREATE TABLE products_history (")]}
