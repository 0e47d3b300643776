"""Bounds each month like BETWEEN: TO its last whole second. FROM is inclusive and TO exclusive,
so the month's last second (23:59:59.000001 … 23:59:59.999999) belongs to no month: those orders
fall into the default partition, where no month's query or retention finds them."""
CHECK = "partitioning.q1"
EXPECT = "gap"
EDIT = {"create_month_partitions": [
    ("TO ('{following.isoformat()}')",
     "TO ('{(following - dt.timedelta(seconds=1)).isoformat()}')"),
]}
