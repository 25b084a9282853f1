"""The weight average the TF EfficientNet recipe evaluates: ``tf.train.ExponentialMovingAverage``
with ``num_updates=global_step``.

TF caps the decay early in training, ``decay_t = min(decay, (1 + t) / (10 + t))``, so the average
follows the weights closely for the first few thousand steps instead of staying near the random
initialisation (with 0.9999 a plain EMA keeps 37% of the initial weights after 10k steps). TF also
averages the BN moving mean and variance (``update_buffers=True`` here).
"""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage

from ..registry import MODELS


@MODELS.register_module()
class TFExponentialMovingAverage(ExponentialMovingAverage):
    """EMA with TF's decay warm-up. ``momentum`` is ``1 - decay`` (mmengine's convention):
    ``momentum=1e-4`` is TF's ``moving_average_decay=0.9999``.

    Use it through the EMA hook: ``dict(type='EMAHook', ema_type='mmeffnet.TFExponentialMovingAverage',
    momentum=1e-4, update_buffers=True)``.
    """

    def __init__(self,
                 model: nn.Module,
                 momentum: float = 1e-4,
                 interval: int = 1,
                 device: Optional[torch.device] = None,
                 update_buffers: bool = True) -> None:
        super().__init__(model, momentum, interval, device, update_buffers)

    def momentum_at(self, steps: int) -> float:
        """mmengine calls ``avg_func`` with ``steps`` earlier updates (the first one copies the
        weights); TF's ``num_updates`` for that update is ``steps + 1``."""
        num_updates = steps + 1
        return max(self.momentum, 1. - (1. + num_updates) / (10. + num_updates))

    def avg_func(self, averaged_param: torch.Tensor, source_param: torch.Tensor, steps: int) -> None:
        averaged_param.lerp_(source_param, self.momentum_at(int(steps)))
