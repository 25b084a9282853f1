"""Inference-time folding of BatchNorm into the preceding convolution (the "deploy" mode).

``conv(x) * s + t`` with ``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s`` is the same
as a convolution with weight ``W * s`` and bias ``b * s + t``: one pass over each feature map
less at inference, outputs equal up to float rounding.
"""
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from .layers import ConvBNAct


@torch.no_grad()
def fold_bn_into_conv(conv: nn.Conv2d, bn: _BatchNorm) -> None:
    """Fold an eval-mode BatchNorm (running statistics) into ``conv`` in place (adds a bias)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError('cannot fold a BatchNorm without running statistics '
                         '(track_running_stats=False): it normalises with batch statistics')
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    weight = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    conv.weight.copy_(weight.to(conv.weight.dtype))
    conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm of ``model``'s :class:`ConvBNAct` blocks into its conv; returns model.

    The folded blocks have ``bn = None``, so the state dict loses the ``*.bn.*`` keys and gains
    ``*.conv.bias``: save and load the *unfused* model, fuse after loading. SyncBN folds too
    (its running statistics are the ones used at inference).
    """
    for module in model.modules():
        if isinstance(module, ConvBNAct) and isinstance(module.bn, _BatchNorm):
            fold_bn_into_conv(module.conv, module.bn)
            module.bn = None
    return model
