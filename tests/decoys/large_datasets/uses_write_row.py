"""Streams every row through psycopg's copy.write_row: right in production, but this exercise
asks for COPY's text format written by hand (copy_line), and write_row is switched off while
the checks call the loader."""
CHECK = "large_datasets.q1"
EXPECT = "write COPY's text format yourself"  # the verdict must give this reason
EDIT = {"load_events": [("copy.write(copy_line(row))", "copy.write_row(row)")]}
