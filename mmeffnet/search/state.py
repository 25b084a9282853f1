"""The search's state on disk: one small JSON file per candidate, each written atomically.

A file is written to a temporary name in the same folder and renamed over the old one
(``os.replace``), so a search killed at any moment leaves every state file either old or new,
never half-written; a rerun reads them to skip what is finished.
"""
import json
import os
import os.path as osp
import tempfile
from datetime import datetime, timezone
from typing import Any, Dict, Optional

PENDING, TRAINING, TRAINED, DONE, FAILED = 'pending', 'training', 'trained', 'done', 'failed'


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec='milliseconds')


def write_json_atomic(path: str, data: Dict[str, Any]) -> None:
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp_', suffix='.json', dir=folder)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


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
