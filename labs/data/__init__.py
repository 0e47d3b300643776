"""Data: the shop dataset (Faker generator, template databases, bulk loading, vendor feeds).

May import ``labs.runtime`` only.
"""
