"""A pool of 100 connections "to be safe" on a two-core machine: throughput stopped growing at a
few connections, so 96 extra backends only queue for the same cores and hold memory and
max_connections slots."""
CHECK = "pooling_replicas.q1"
EXPECT = "plateau"
REPLACE = {"pool_size": '''pool_size = 100
'''}
