"""Stop (or skip the step) when a training loss goes NaN or infinite, saying where and which terms.

Left alone, a non-finite loss turns every weight into NaN at the optimizer step and the run goes
on for hours logging ``nan``. ``NonFiniteLossHook`` checks the loss terms of every iteration
*before* the backward pass, so the weights are still those of the last good step when it acts:

- ``action='stop'`` (default): saves the model, optimizer and schedulers as they are (the state
  before the bad iteration) to ``<work_dir>/nonfinite_iter_<N>.pth`` and raises
  :class:`NonFiniteLossError` naming the iteration, the epoch, the non-finite terms with their
  values and the images of the batch; ``last_checkpoint`` is left alone.
- ``action='skip'``: no backward pass and no optimizer step for that batch (schedulers go on),
  with a warning; after ``max_consecutive_skips`` bad iterations in a row it stops as above.

In distributed runs the verdict is all-reduced, so every process stops or skips together (one
process cannot hang the others in DDP's gradient all-reduce).

It works by wrapping two methods of the run's own objects in ``before_train`` (undone in
``after_train``): the model's ``parse_losses`` (where mmengine turns the loss dict into the total,
for plain and DDP-wrapped models alike) and, for ``skip``, the optim wrapper's ``update_params``.
``tools/train.py`` adds the hook to every run (``--cfg-options`` key ``nonfinite_loss``: ``stop`` or
``skip``); in a config: ``custom_hooks=[dict(type='mmeffnet.NonFiniteLossHook', action='skip')]``.
"""
import logging
import math
import os.path as osp
from typing import Dict, List, Optional

import torch
import torch.distributed as dist
from mmengine.dist import barrier, is_distributed
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS
from ..utils import listing
from .atomic_storage import atomic_backend_args

ACTIONS = ('stop', 'skip')


class NonFiniteLossError(FloatingPointError):
    """A training loss term was NaN or infinite."""


def _batch_images(data_batch) -> List[str]:
    samples = data_batch.get('data_samples') if isinstance(data_batch, dict) else None
    names = []
    for sample in samples or []:
        meta = getattr(sample, 'metainfo', None) or {}
        if meta.get('img_path'):
            names.append(str(meta['img_path']))
    return names


def _non_finite_parameters(model: torch.nn.Module) -> List[str]:
    return [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """See the module docstring.

    Args:
        action: ``'stop'`` or ``'skip'``.
        max_consecutive_skips: with ``skip``, stop after this many non-finite iterations in a row.
        save: with ``stop``, save the last good state first.
    """

    priority = 'VERY_HIGH'

    def __init__(self, action: str = 'stop', max_consecutive_skips: int = 20, save: bool = True):
        if action not in ACTIONS:
            raise ValueError(f'NonFiniteLossHook action={action!r}; choose one of {ACTIONS}')
        if not isinstance(max_consecutive_skips, int) or max_consecutive_skips < 1:
            raise ValueError(f'NonFiniteLossHook max_consecutive_skips={max_consecutive_skips!r}; '
                             'it must be a positive integer')
        self.action = action
        self.max_consecutive_skips = max_consecutive_skips
        self.save = save
        self.skipped: List[int] = []  # 1-based iterations whose step was skipped
        self._consecutive = 0
        self._skip_update = False
        self._batch = None
        self._batch_idx = 0
        self._wrapped: list = []

    # --- installing the checks ----------------------------------------------------------------
    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        parse_losses = model.parse_losses

        def guarded_parse_losses(losses):
            loss, log_vars = parse_losses(losses)
            self._check(runner, log_vars)
            return loss, log_vars

        self._wrap(model, 'parse_losses', guarded_parse_losses)
        if self.action == 'skip':
            optim_wrapper = runner.optim_wrapper
            if not hasattr(optim_wrapper, 'update_params') or hasattr(optim_wrapper, 'optim_wrappers'):
                raise ValueError(f'NonFiniteLossHook(action="skip") needs a single OptimWrapper, got '
                                 f'{type(optim_wrapper).__name__}; use action="stop"')
            update_params = optim_wrapper.update_params

            def guarded_update_params(loss, *args, **kwargs):
                if self._skip_update:
                    self._skip_update = False
                    return None
                return update_params(loss, *args, **kwargs)

            self._wrap(optim_wrapper, 'update_params', guarded_update_params)

    def _wrap(self, obj, name: str, function) -> None:
        self._wrapped.append((obj, name, obj.__dict__.get(name)))
        setattr(obj, name, function)

    def after_train(self, runner) -> None:
        for obj, name, previous in reversed(self._wrapped):
            if previous is None:
                obj.__dict__.pop(name, None)
            else:
                setattr(obj, name, previous)
        self._wrapped = []

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._batch, self._batch_idx = data_batch, batch_idx

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._batch = None

    # --- the check ----------------------------------------------------------------------------
    def _check(self, runner, log_vars: Dict[str, torch.Tensor]) -> None:
        names = [k for k, v in log_vars.items() if isinstance(v, torch.Tensor)]
        values = torch.stack([log_vars[k].detach().float().reshape(()) for k in names]) if names else None
        local_bad = values is not None and not bool(torch.isfinite(values).all())
        flag = torch.tensor([float(local_bad)], device=values.device if values is not None else 'cpu')
        if is_distributed():
            dist.all_reduce(flag)
        if flag.item() == 0:
            self._consecutive = 0
            return
        bad = {k: v for k, v in zip(names, values.tolist()) if not math.isfinite(v)} if local_bad else {}
        where = self._describe(runner, bad, int(flag.item()))
        self._consecutive += 1
        if self.action == 'skip' and self._consecutive <= self.max_consecutive_skips:
            self._skip_update = True
            self.skipped.append(runner.iter + 1)
            runner.logger.warning(f'{where}; skipped this step (no backward pass, no parameter update; '
                                  f'{self._consecutive} non-finite in a row, the limit is '
                                  f'{self.max_consecutive_skips})')
            return
        if self.action == 'skip':
            where += f' ({self._consecutive} non-finite iterations in a row, over max_consecutive_skips)'
        saved = self._save_last_good_state(runner) if self.save else None
        message = f'{where}. Training stopped.'
        broken = _non_finite_parameters(runner.model)
        if broken:
            message += (f' The weights are already non-finite ({len(broken)} tensors, e.g. {broken[0]}): the step '
                        'before diverged.')
        if saved:
            message += (f' The model, optimizer and schedulers as they were before this iteration are saved in '
                        f'{saved} (inspect it, or start again from it with a lower learning rate).')
        message += (' Common causes: a learning rate too high for the batch size (see --auto-scale-lr), '
                    'a bad annotation (boxes, labels), or fp16 overflow with --amp.')
        runner.logger.error(message)
        raise NonFiniteLossError(message)

    def _describe(self, runner, bad: Dict[str, float], processes: int) -> str:
        epoch = f'epoch {runner.epoch + 1}, ' if getattr(runner.train_loop, 'max_epochs', None) else ''
        text = f'non-finite loss at iteration {runner.iter + 1} ({epoch}batch {self._batch_idx + 1})'
        if bad:
            text += ': ' + ', '.join(f'{k}={v}' for k, v in bad.items())
            images = _batch_images(self._batch)
            if images:
                text += f'; images of the batch: {listing(images)}'
            if processes > 1:
                text += f' ({processes} processes had non-finite losses)'
        else:
            text += f' on {processes} other process(es)'
        return text

    def _save_last_good_state(self, runner) -> Optional[str]:
        filename = f'nonfinite_iter_{runner.iter + 1}.pth'
        path = osp.join(runner.work_dir, filename)
        try:
            runner.save_checkpoint(
                runner.work_dir,
                filename,
                meta=dict(epoch=runner.epoch, iter=runner.iter),
                by_epoch=False,
                backend_args=atomic_backend_args(runner.work_dir))
        except Exception as exc:  # never hide the non-finite loss behind a failed save
            runner.logger.log(logging.ERROR, f'could not save the last good state to {path}: {exc}')
            path = None
        barrier()  # the other processes wait for the save before they all stop
        return path
