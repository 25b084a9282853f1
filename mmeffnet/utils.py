"""Small helpers shared across the package (no mmeffnet imports: the bottom layer)."""
from typing import Optional, Sequence

#: How many items an error or warning names before it says "... and N more".
MAX_LISTED = 10


def listing(items: Sequence[str], total: Optional[int] = None, sep: str = ', ') -> str:
    """The first ``MAX_LISTED`` of ``items`` joined by ``sep``, then how many more there are.

    ``total`` is the full count when ``items`` is itself a cut-down list (default: ``len(items)``).
    """
    total = len(items) if total is None else total
    shown = sep.join(str(item) for item in list(items)[:MAX_LISTED])
    return shown + (f'{sep}... and {total - MAX_LISTED} more' if total > MAX_LISTED else '')
