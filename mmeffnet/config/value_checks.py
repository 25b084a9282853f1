"""Config values checked before anything is built: an absurd one is an error naming the key, the
value and what is valid.

Without these checks a negative learning rate surfaces as torch's ``Invalid learning rate: -0.1``
deep in the optimizer's construction, ``batch_size=0`` as a DataLoader error that names no config
key, and ``max_epochs=0`` as a run that "finishes" at once. Model arguments (arch, out_indices, ...)
are checked by the modules themselves when the Runner builds them.
"""
import math
from typing import Any, Iterable, Optional

from mmengine.config import Config


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bad(key: str, value: Any, valid: str) -> ValueError:
    return ValueError(f'config {key}={value!r} is invalid: {valid} '
                      f'(fix the config or override it, e.g. --cfg-options {key}=...)')


def _get(cfg: Any, dotted: str) -> Optional[Any]:
    node = cfg
    for part in dotted.split('.'):
        if not isinstance(node, (dict, Config)) or part not in node:
            return None
        node = node[part]
    return node


def _check_int(cfg: Config, key: str, minimum: int) -> None:
    value = _get(cfg, key)
    if value is not None and not (_is_int(value) and value >= minimum):
        raise _bad(key, value, f'it must be an integer >= {minimum}')


def check_dataloaders(cfg: Config, splits: Iterable[str]) -> None:
    """``batch_size`` >= 1 and ``num_workers`` >= 0 for the loaders of ``splits``."""
    for split in splits:
        _check_int(cfg, f'{split}_dataloader.batch_size', 1)
        _check_int(cfg, f'{split}_dataloader.num_workers', 0)


def check_optimizer(cfg: Config) -> None:
    """A positive finite learning rate, momentum in [0, 1], non-negative weight decay."""
    for key in ('optim_wrapper.optimizer.lr', 'optimizer.lr'):
        lr = _get(cfg, key)
        if lr is not None and not (_is_number(lr) and lr > 0):
            raise _bad(key, lr, 'the learning rate must be a positive finite number')
    momentum = _get(cfg, 'optim_wrapper.optimizer.momentum')
    if momentum is not None and not (_is_number(momentum) and 0 <= momentum <= 1):
        raise _bad('optim_wrapper.optimizer.momentum', momentum, 'momentum must be in [0, 1]')
    decay = _get(cfg, 'optim_wrapper.optimizer.weight_decay')
    if decay is not None and not (_is_number(decay) and decay >= 0):
        raise _bad('optim_wrapper.optimizer.weight_decay', decay, 'weight decay must be a finite number >= 0')


def check_schedule(cfg: Config) -> None:
    """A training length of at least one epoch / iteration; positive intervals."""
    _check_int(cfg, 'train_cfg.max_epochs', 1)
    _check_int(cfg, 'train_cfg.max_iters', 1)
    _check_int(cfg, 'train_cfg.val_interval', 1)
    _check_int(cfg, 'auto_scale_lr.base_batch_size', 1)
    _check_int(cfg, 'default_hooks.logger.interval', 1)
    interval = _get(cfg, 'default_hooks.checkpoint.interval')
    if interval is not None and not (_is_int(interval) and (interval >= 1 or interval == -1)):
        raise _bad('default_hooks.checkpoint.interval', interval, 'it must be an integer >= 1, or -1 (never)')


def check_amp_device(cfg: Config) -> None:
    """mmengine's ``AmpOptimWrapper`` (``--amp``) trains only on an accelerator; on a CPU-only
    machine say so before the model and data are built (mmengine asserts it afterwards)."""
    if _get(cfg, 'optim_wrapper.type') != 'AmpOptimWrapper':
        return
    from mmengine.device import get_device
    if get_device() == 'cpu':
        raise ValueError("optim_wrapper.type='AmpOptimWrapper' (--amp) needs a CUDA, NPU, MLU or MUSA "
                         'device and this machine has only the CPU: train without --amp '
                         "(or with --cfg-options optim_wrapper.type=OptimWrapper)")


def check_train_config(cfg: Config) -> None:
    """All the checks a training config gets in ``tools/train.py``."""
    check_amp_device(cfg)
    check_optimizer(cfg)
    check_schedule(cfg)
    check_dataloaders(cfg, ('train', 'val'))
