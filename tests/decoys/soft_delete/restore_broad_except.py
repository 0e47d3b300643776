"""Catches every psycopg.Error as "SKU taken": a lock timeout (another transaction holds the row
past the caller's lock_timeout), a deadlock or a lost connection becomes a 409 Conflict the caller
cannot resolve, instead of an error to retry."""
CHECK = "soft_delete.q2"
EXPECT = "could not lock the product's row"  # the verdict must give this reason
EDIT = {"restore_product": [("except psycopg.errors.UniqueViolation as exc:",
                             "except psycopg.Error as exc:")]}
