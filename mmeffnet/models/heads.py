"""The EfficientNet classifier: global-pooled features -> dropout -> linear layer.

Registered as ``mmeffnet.EfficientNetClsHead`` for mmpretrain's ``ImageClassifier``. It is
mmpretrain's ``LinearClsHead`` plus the TF model's dropout before the classifier (0.2 for B0 up
to 0.5 for B7, ``mmeffnet.arch.ARCHS``) and the TF classifier initialisation. Its state
dict is ``head.fc.weight`` / ``head.fc.bias`` like ``LinearClsHead``'s, so mmpretrain's and the
converted checkpoints load unchanged.

This module imports mmpretrain; it is not imported by ``import mmeffnet`` (detection and
segmentation runs do not need it). Classification configs list it in ``custom_imports``.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import LinearClsHead

from ..registry import MODELS


@MODELS.register_module()
class EfficientNetClsHead(LinearClsHead):
    """``LinearClsHead`` with dropout before the classifier.

    Args:
        num_classes (int): number of classes.
        in_channels (int): channels of the pooled features (the backbone's head conv:
            1280 for B0, 1536 for B3, ...).
        dropout_rate (float): probability of zeroing a pooled feature while training. Defaults to 0.2.
        init_cfg (dict, optional): defaults to TF's ``dense_kernel_initializer``: weights uniform in
            ``+-1/sqrt(num_classes)``, bias zero.
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of mmpretrain's ``ClsHead``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 dropout_rate: float = 0.2,
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'EfficientNetClsHead: num_classes={num_classes!r} must be a positive int')
        if not 0. <= dropout_rate < 1.:
            raise ValueError(f'EfficientNetClsHead: dropout_rate={dropout_rate!r} must be in [0, 1)')
        if init_cfg is None:
            bound = 1. / math.sqrt(num_classes)
            init_cfg = dict(type='Uniform', layer='Linear', a=-bound, b=bound, bias=0.)
        super().__init__(num_classes, in_channels, init_cfg=init_cfg, **kwargs)
        self.dropout_rate = dropout_rate
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        # Dropout sits between pre_logits and fc, so extract_feat(stage='pre_logits') is unaffected.
        return self.fc(self.dropout(self.pre_logits(feats)))
