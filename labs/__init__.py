"""The Postgres Production Lab's package: what every challenge notebook imports.

A notebook opens with::

    import labs
    from labs import check, check_all, TODO
    lab = labs.setup("topic")      # a fresh database for this challenge

and ends with ``check_all("topic")``. See ``labs.challenge`` for the database,
``labs.checking`` for how answers are judged, and ``labs.checks.<topic>`` for
each challenge's checks.
"""

from .challenge import Lab, setup
from .checking import TODO, CheckFailed, NotAttempted, check, check_all, compare_results, hint, require
from .config import current_scale
from .errors import LabError

__all__ = [
    "Lab", "setup", "TODO", "CheckFailed", "NotAttempted", "check", "check_all", "hint",
    "compare_results", "require", "current_scale", "LabError",
]
