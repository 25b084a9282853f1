"""Training components of the official TF EfficientNet recipe, for any OpenMMLab toolbox.

Importing this package registers, in the ``mmeffnet`` scope (``mmeffnet/registry.py``; mmengine
also imports it on the first look-up of an ``mmeffnet.`` optimizer or scheduler):

- ``mmeffnet.RMSpropTF`` (optimizer): TF1's ``RMSPropOptimizer`` update;
- ``mmeffnet.TFExponentialDecayLR`` (LR scheduler): linear warm-up, then the LR
  times ``0.97`` every ``2.4`` epochs, counted in iterations as TF does;
- ``mmeffnet.TFExponentialMovingAverage`` (averaged model for ``EMAHook``): TF's
  ``ExponentialMovingAverage(decay, num_updates=global_step)``.

They use mmengine only (no toolbox import), so a detection or segmentation config can use them too.
"""
from .ema import TFExponentialMovingAverage
from .optimizers import RMSpropTF
from .schedulers import TFExponentialDecayLR

__all__ = ['RMSpropTF', 'TFExponentialDecayLR', 'TFExponentialMovingAverage']
