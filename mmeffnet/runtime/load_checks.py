"""Checks our tools make before a run: does the checkpoint given fit the model the config built?

mmengine loads ``load_from`` and ``--resume`` checkpoints with ``strict=False`` and only logs
mismatches, so a checkpoint of another network trains (or is evaluated) from mostly random weights
without a word. ``tools/train.py`` and ``tools/test.py`` call these right after building the runner.
"""
import logging
from typing import Dict, Optional

import torch
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ..checkpoint import CheckpointMismatchError, check_and_load, is_local_path, read_state_dict
from ..checkpoint.fitting import efficientdet_mismatch


def check_checkpoint_fits(model, path: str, state: Optional[Dict[str, torch.Tensor]] = None) -> None:
    """Raise ``CheckpointMismatchError`` listing missing / unexpected / mis-shaped keys unless the
    checkpoint at ``path`` (its tensors ``state`` when already read) has exactly ``model``'s
    weights. Loads the weights as a side effect."""
    model = model.module if is_model_wrapper(model) else model
    check_and_load(model, read_state_dict(path) if state is None else state, path)


def check_load_from(model, path: str) -> None:
    """Stop a ``load_from`` of a checkpoint that is unreadable or belongs to another model.

    Fine-tuning from a checkpoint whose *head* differs (another class count) is legitimate, so the
    rule is: error when no tensor fits (same name and shape), or when the backbone does not fit
    (a ``backbone.*`` tensor of another shape, or ``backbone.*`` tensors the model lacks); anything
    else that does not fit is logged as a warning with the counts. URLs are left to mmengine.
    """
    if not is_local_path(path):
        return
    model = model.module if is_model_wrapper(model) else model
    state = read_state_dict(path)
    own = model.state_dict()
    fitting = [k for k, v in own.items() if k in state and state[k].shape == v.shape]
    backbone_bad = [
        f'{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}' if k in own else f'{k} (not in the model)'
        for k in state if k.startswith('backbone.') and not k.endswith('num_batches_tracked') and (
            k not in own or own[k].shape != state[k].shape)
    ]
    if not fitting or backbone_bad:
        if not fitting:
            why = (f'none of its {len(state)} tensors fits this {type(model).__name__} by name and shape (its keys '
                   f'look like {", ".join(list(state)[:3])}; the model\'s like {", ".join(list(own)[:3])})')
        else:
            why = (f'its backbone is not this config\'s backbone ({len(backbone_bad)} backbone tensors differ, e.g. '
                   f'{"; ".join(backbone_bad[:3])})')
        why = efficientdet_mismatch(own, state) or why
        raise CheckpointMismatchError(
            f'load_from {path}: {why}: it is a checkpoint of another model. Use a checkpoint of this config\'s '
            'model, convert foreign backbone weights (tools/model_converters/convert_efficientnet.py), or load '
            'backbone weights only with model.backbone.init_cfg=dict(type="Pretrained", prefix="backbone", ...)')
    if len(fitting) < len(own):
        print_log(
            f'load_from {path}: {len(fitting)} of the model\'s {len(own)} tensors are loaded from it; the '
            f'other {len(own) - len(fitting)} keep their initialization (fine-tuning with another head?)',
            logger='current',
            level=logging.WARNING)
