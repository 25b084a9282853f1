"""mmdet's focal loss with its PyTorch path's intermediates recomputed in backward.

mmdet's ``FocalLoss`` (sigmoid, label targets) runs mmcv's fused kernel on CUDA, which keeps only its
inputs for backward. Everywhere else it runs ``py_sigmoid_focal_loss``, whose autograd graph keeps
about six tensors of the class scores' size (the one-hot targets, sigmoid, pt, the focal weight, the
BCE, their product): for EfficientDet-D0 at 512 px and batch 2, 0.24 GB of the 1.0 GB a training
step saves for backward. :class:`CheckpointedFocalLoss` runs that very function under
``torch.utils.checkpoint`` (non-reentrant), so only the scores, the labels and the weights stay and
the rest is recomputed in backward: the same numbers, bitwise (tests/test_efficientdet.py).

This module imports mmdet; ``mmeffnet.models.efficientdet_head`` imports it.
"""
import torch
from mmdet.models.losses import FocalLoss
from torch.utils.checkpoint import checkpoint

from ..registry import MODELS


@MODELS.register_module()
class CheckpointedFocalLoss(FocalLoss):
    """mmdet's ``FocalLoss`` (same arguments, same results) that keeps less for backward where mmdet
    computes it with PyTorch ops; elsewhere (CUDA's mmcv kernel, one-hot or probability targets, no
    gradient) it is mmdet's unchanged."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight=None, avg_factor=None, reduction_override=None):
        on_pytorch_path = (
            self.use_sigmoid and not self.activated and pred.dim() != target.dim()
            and not (torch.cuda.is_available() and pred.is_cuda))
        if not (on_pytorch_path and pred.requires_grad and torch.is_grad_enabled()):
            return super().forward(pred, target, weight, avg_factor, reduction_override)
        return checkpoint(super().forward, pred, target, weight, avg_factor, reduction_override, use_reentrant=False)
