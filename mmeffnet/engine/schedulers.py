"""The learning-rate schedule of the official TF EfficientNet training (``utils.build_learning_rate``).

For global step ``t`` (0-based), with ``E`` iterations per epoch::

    lr(t) = lr0 * t / int(warmup_epochs * E)                 if t < int(warmup_epochs * E)
    lr(t) = lr0 * decay_factor ** floor(t / (decay_epochs * E))   otherwise

``decay_epochs * E`` is a real number (2.4 epochs is not a whole number of iterations), exactly as
TF's ``tf.train.exponential_decay(..., staircase=True)`` with a float ``decay_steps``. The decay
counts from step 0, so the warm-up ends on ``lr0 * 0.97 ** 2`` (5 epochs = 2 decay periods), as in TF.
mmengine's ``StepLR`` cannot express this: its step size must divide the iteration count.
"""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler

from ..registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class TFExponentialDecayLR(LRSchedulerMixin, _ParamScheduler):
    """Linear warm-up from 0, then staircase exponential decay every ``decay_epochs`` epochs.

    Use it epoch-based with ``convert_to_iter_based=True`` (the runner then supplies the epoch
    length and the LR changes every iteration)::

        param_scheduler = dict(type='mmeffnet.TFExponentialDecayLR', decay_epochs=2.4, decay_factor=0.97,
                               warmup_epochs=5, by_epoch=True, convert_to_iter_based=True)

    Args:
        optimizer: the wrapped optimizer.
        epoch_length (int): iterations per epoch.
        decay_epochs (float): epochs between two decays. Defaults to 2.4.
        decay_factor (float): LR multiplier at each decay. Defaults to 0.97.
        warmup_epochs (float): epochs of linear warm-up from 0; 0 disables it. Defaults to 5.
        begin, end (int): iterations where the schedule is active (``end`` exclusive).
    """

    def __init__(self,
                 optimizer,
                 epoch_length: int,
                 decay_epochs: float = 2.4,
                 decay_factor: float = 0.97,
                 warmup_epochs: float = 5.,
                 begin: int = 0,
                 end: int = INF,
                 last_step: int = -1,
                 by_epoch: bool = False,
                 verbose: bool = False):
        if by_epoch:
            raise ValueError('TFExponentialDecayLR changes the LR every iteration: build it with '
                             'by_epoch=True and convert_to_iter_based=True, or by_epoch=False and '
                             'epoch_length=<iterations per epoch>')
        if not isinstance(epoch_length, int) or epoch_length < 1:
            raise ValueError(f'TFExponentialDecayLR: epoch_length={epoch_length!r} must be a positive int')
        if decay_epochs <= 0:
            raise ValueError(f'TFExponentialDecayLR: decay_epochs={decay_epochs!r} must be > 0')
        if not 0 < decay_factor <= 1:
            raise ValueError(f'TFExponentialDecayLR: decay_factor={decay_factor!r} must be in (0, 1]')
        if warmup_epochs < 0:
            raise ValueError(f'TFExponentialDecayLR: warmup_epochs={warmup_epochs!r} must be >= 0')
        self.epoch_length = epoch_length
        self.decay_steps = decay_epochs * epoch_length
        self.decay_factor = decay_factor
        self.warmup_steps = int(warmup_epochs * epoch_length)
        super().__init__(optimizer, begin=begin, end=end, last_step=last_step, by_epoch=False, verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls, *args, begin=0, end=INF, by_epoch=True, epoch_length=None, **kwargs):
        """Build from epoch-based ``begin``/``end`` with the runner's ``epoch_length``."""
        if not by_epoch:
            raise ValueError('convert_to_iter_based=True needs by_epoch=True')
        if epoch_length is None or epoch_length <= 0:
            raise ValueError(f'epoch_length must be a positive int, got {epoch_length!r}')
        begin = int(begin * epoch_length)
        if end != INF:
            end = int(end * epoch_length)
        return cls(*args, epoch_length=epoch_length, begin=begin, end=end, by_epoch=False, **kwargs)

    def factor_at(self, step: int) -> float:
        """The LR multiplier at iteration ``step`` (counted from ``begin``)."""
        if step < self.warmup_steps:
            return step / self.warmup_steps
        return self.decay_factor**math.floor(step / self.decay_steps)

    def _get_value(self):
        factor = self.factor_at(self.last_step)
        return [base * factor for base in self.base_values]
