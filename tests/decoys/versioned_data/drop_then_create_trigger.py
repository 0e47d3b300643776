"""Makes the trigger re-runnable with DROP TRIGGER IF EXISTS, then CREATE TRIGGER, in autocommit
(two transactions): on every deploy, UPDATEs and DELETEs that land between the two statements
run with no trigger at all, so their versions are lost and a client's updated_at goes through
unchecked. CREATE OR REPLACE TRIGGER (or both in one transaction) leaves no such window."""
CHECK = "versioned_data.q1"
EXPECT = "there was no history trigger"
EDIT = {"history_sql": [
    ("CREATE OR REPLACE TRIGGER products_keep_history",
     "DROP TRIGGER IF EXISTS products_keep_history ON products;\nCREATE TRIGGER products_keep_history"),
]}
