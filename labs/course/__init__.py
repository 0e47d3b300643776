"""Course: the machinery around the challenges (setup of a challenge's database, checking, learner copies, grading).

May import ``labs.runtime``, ``labs.data`` and ``labs.tools``; it finds a challenge's checks
by name at run time (``labs.checks.<topic>``), never by an import statement.
"""
