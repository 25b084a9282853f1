"""``tools/train.py --resume [CKPT]``: which checkpoint a run continues from.

With no file, the checkpoint ``last_checkpoint`` names if it loads, otherwise (with a warning
naming the bad file and why) the newest other checkpoint of the work dir that does; a file given
must be a complete training checkpoint.
"""
import glob
import logging
import os.path as osp
from typing import Optional

from mmengine.logging import print_log

from ..checkpoint import CheckpointReadError, safe_torch_load
from .checkpoint_hook import LAST_CHECKPOINT


def resumable_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from (unreadable, truncated, not a training checkpoint), or None."""
    try:
        checkpoint = safe_torch_load(path, map_location='cpu')
    except (CheckpointReadError, FileNotFoundError) as exc:
        reason = str(exc)
        prefix = f'cannot load checkpoint {path}: '
        return reason[len(prefix):] if reason.startswith(prefix) else reason
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        return 'not a training checkpoint (no state_dict)'
    meta = checkpoint.get('meta')
    if not isinstance(meta, dict) or 'iter' not in meta or 'epoch' not in meta:
        return 'no meta.epoch / meta.iter, so it cannot be resumed (it can be loaded with load_from)'
    return None


def _read_last_checkpoint(work_dir: str) -> Optional[str]:
    path = osp.join(work_dir, LAST_CHECKPOINT)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        named = f.read().strip()
    return named or None


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (auto) continues from: the one ``last_checkpoint`` names if it
    loads, else the newest other ``*.pth`` of ``work_dir`` that does (with a warning); None when
    the work dir holds no checkpoint at all.

    Raises:
        ValueError: checkpoints exist but none can be resumed from (each one and why is listed).
    """
    named = _read_last_checkpoint(work_dir)
    others = sorted((p for p in glob.glob(osp.join(work_dir, '*.pth')) if osp.abspath(p) != osp.abspath(named or '')),
                    key=osp.getmtime,
                    reverse=True)
    candidates = ([named] if named else []) + others
    problems = []
    for path in candidates:
        problem = resumable_problem(path)
        if problem is None:
            if problems:
                print_log(
                    f'--resume: {"; ".join(problems)}. Resuming from the previous good checkpoint '
                    f'{path} instead.',
                    logger='current',
                    level=logging.WARNING)
            return path
        source = f' (named in {osp.join(work_dir, LAST_CHECKPOINT)})' if path == named else ''
        problems.append(f'cannot use {path}{source}: {problem.rstrip(".")}')
    if problems:
        raise ValueError(f'--resume found no usable checkpoint in {work_dir}:\n  ' + '\n  '.join(problems))
    return None


def resolve_resume(resume: Optional[str], work_dir: str) -> Optional[str]:
    """The checkpoint ``tools/train.py --resume [CKPT]`` continues from (None: start afresh).

    ``resume`` is None (no ``--resume``), ``'auto'`` (:func:`find_resumable_checkpoint`) or a file,
    which must be a complete training checkpoint (``ValueError`` naming it otherwise).
    """
    if resume is None:
        return None
    if resume == 'auto':
        found = find_resumable_checkpoint(work_dir) if osp.isdir(work_dir) else None
        if found is None:
            print_log(f'--resume: no checkpoint in {work_dir} yet; starting from scratch', logger='current')
        return found
    problem = resumable_problem(resume)
    if problem is not None:
        raise ValueError(f'--resume {resume}: cannot resume from it: {problem}')
    return resume
