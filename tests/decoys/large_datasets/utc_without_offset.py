"""copy_line writes occurred_at converted to UTC without any offset, and load_events makes
that right with SET LOCAL TimeZone = 'UTC' for its transaction. copy_line's text is wrong
anywhere else (a file for psql \\copy, another loader, a session in another zone), and while
the load's transaction is open (the loader leaves the commit to the caller) the caller's
own statements in it run in UTC (current_date, ::date, to_char)."""
CHECK = "large_datasets.q1"
EXPECT = "read in the session's TimeZone"
EDIT = {
    "copy_line": [
        ("text = value.isoformat() if isinstance(value, dt.datetime) else str(value)",
         "text = (value.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat()\n"
         "                if isinstance(value, dt.datetime) else str(value))"),
    ],
    "load_events": [
        ('    with conn.cursor() as cur, cur.copy(',
         '    conn.execute("SET LOCAL TimeZone = \'UTC\'")  # copy_line writes UTC\n'
         '    with conn.cursor() as cur, cur.copy('),
    ],
}
