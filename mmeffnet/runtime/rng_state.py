"""The random-number state of a process (Python, NumPy, torch CPU and CUDA), for exact resumes.

mmengine re-seeds a resumed run from the seed alone, so the data augmentation and drop-path draws
after a resume differ from those of the uninterrupted run. Saving these states in the checkpoint
(for every process) and restoring them makes a resumed run draw the same numbers.
All values are tensors, numpy arrays, tuples and numbers, which ``weights_only`` loading accepts.
"""
import random
from typing import List

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_world_size


def get_rng_state() -> dict:
    """This process's random state."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state['numpy']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def gather_rng_states(local: dict) -> List[dict]:
    """Every process's ``local`` state, in rank order (a collective call in distributed runs)."""
    if get_world_size() == 1:
        return [local]
    return all_gather_object(local)
