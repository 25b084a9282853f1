"""The random-number state of a process (Python, NumPy, torch CPU and CUDA), for exact resumes.

mmengine re-seeds a resumed run from the seed alone, so the data augmentation and drop-path draws
after a resume differ from those of the uninterrupted run. ``SafeCheckpointHook`` saves these
states in the checkpoint (for every process) and :func:`restore_resumed_rng_state` restores them,
so a resumed run draws the same numbers. All values are tensors, numpy arrays, tuples and numbers,
which ``weights_only`` loading accepts (``mmeffnet.checkpoint.safe_torch_load``).
"""
import random
from typing import List

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size


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


def restore_resumed_rng_state(runner, saved_iter: int, states: List[dict]) -> None:
    """Restore this process's entry of ``states`` (saved at iteration ``saved_iter``) if ``runner``
    resumed from that checkpoint.

    A resumed run starts at the checkpoint's iteration; a run that only loaded its weights
    (``load_from``) starts at 0 and keeps its fresh seed.
    """
    if runner.iter == 0 or runner.iter != saved_iter:
        return
    rank = get_rank()
    if rank >= len(states):
        runner.logger.warning(f'the checkpoint holds the random state of {len(states)} processes; '
                              f'process {rank} keeps its fresh seed')
        return
    set_rng_state(states[rank])
    if rank == 0:
        runner.logger.info(f'restored the random state of {len(states)} process(es) saved at iteration '
                           f'{saved_iter}')
