"""The search's state on disk: one small JSON file per candidate, each written atomically.

A file is written to a temporary name in the same folder and renamed over the old one
(``mmeffnet.checkpoint.atomic_write_bytes``), so a search killed at any moment leaves every
state file either old or new, never half-written; a rerun reads them to skip what is finished.
"""
import json
import os
import os.path as osp
from datetime import datetime, timezone
from typing import Any, Dict, Optional

from ..checkpoint import atomic_write_bytes

# A candidate without a state file has not started; these are the states a file records.
TRAINING, TRAINED, DONE, FAILED = 'training', 'trained', 'done', 'failed'


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec='milliseconds')


def write_json_atomic(path: str, data: Dict[str, Any]) -> None:
    atomic_write_bytes(json.dumps(data, indent=2, sort_keys=True).encode(), path)


def read_json(path: str) -> Optional[Dict[str, Any]]:
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def process_alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
