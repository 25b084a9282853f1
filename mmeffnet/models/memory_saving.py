"""Memory-saving training ops: BatchNorm + activation that keeps only the BatchNorm input.

Autograd normally keeps three tensors per conv -> BN -> activation: the BN input, the BN output
(needed by the activation's backward; an in-place activation even stores a *clone* of it) and the
activation output (kept by the next conv). :class:`BatchNormActFunction` keeps only the BN input
and the per-channel batch statistics, and recomputes the BN output in backward with one fused
multiply-add. Forward results are bitwise those of ``act(bn(x))``; gradients agree to float
rounding (under fp16/bf16 autocast bitwise: the recompute and BatchNorm's own backward run in
float32 as BatchNorm does, so parameter gradients are float32 sums, not overflowing half ones).
Used only while training with gradients; eval, export and ``torch.compile`` (whose own
partitioner recomputes elementwise ops) take the plain module path.
"""
import contextlib
import threading
from typing import Iterator, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

_recompute = threading.local()

# activation module type -> name understood by the function below
FUSABLE_ACTS = {nn.SiLU: 'silu', nn.ReLU: 'relu', nn.ReLU6: 'relu6'}


def _act_(z: torch.Tensor, act: str) -> torch.Tensor:
    if act == 'identity':
        return z
    if act == 'silu':
        return F.silu(z, inplace=True)
    if act == 'relu':
        return z.clamp_(min=0)
    return z.clamp_(0., 6.)


def _act_backward(grad: torch.Tensor, z: torch.Tensor, act: str) -> torch.Tensor:
    if act == 'silu':
        return torch.ops.aten.silu_backward(grad, z)
    if act == 'relu':
        return torch.ops.aten.threshold_backward(grad, z, 0.)
    return torch.ops.aten.hardtanh_backward(grad, z, 0., 6.)


class BatchNormActFunction(torch.autograd.Function):
    """``act(batch_norm(x))`` saving only ``x`` and the statistics for backward.

    ``act`` is 'silu', 'relu', 'relu6' or 'identity' (BN alone: saves what BN saves anyway, but
    shares the checkpoint-recompute handling of running statistics).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor], training: bool,
                momentum: float, eps: float, act: str) -> torch.Tensor:
        # Updates running_mean / running_var in place exactly like nn.BatchNorm2d does.
        z, mean, invstd = torch.ops.aten.native_batch_norm(x, weight, bias, running_mean, running_var, training,
                                                           momentum, eps)
        var = None
        if not training:  # statistics are the (frozen) running ones
            mean, var = running_mean.clone(), running_var.clone()
            invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, weight, bias, mean, invstd, var)
        ctx.training, ctx.eps, ctx.act = training, eps, act
        return _act_(z, act)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple:
        x, weight, bias, mean, invstd, var = ctx.saved_tensors
        if ctx.act == 'identity':
            grad_z = grad
        else:
            grad_z = _act_backward(grad, _recompute_bn(x, weight, bias, mean, invstd), ctx.act)
        needs = ctx.needs_input_grad
        mask = [needs[0], weight is not None and needs[1], bias is not None and needs[2]]
        # BatchNorm's own backward, as autograd would call it: under autocast it accumulates the
        # parameter gradients in float32 (a half-precision sum of a scaled loss's gradient overflows)
        if ctx.training:
            gx, gw, gb = torch.ops.aten.native_batch_norm_backward(grad_z, x, weight, None, None, mean, invstd, True,
                                                                   ctx.eps, mask)
        else:  # empty saved statistics, as native_batch_norm returns them in eval (CUDA asserts it)
            empty = mean.new_empty(0)
            gx, gw, gb = torch.ops.aten.native_batch_norm_backward(grad_z, x, weight, mean, var, empty, empty, False,
                                                                   ctx.eps, mask)
        return gx, gw, gb, None, None, None, None, None, None


def _recompute_bn(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], mean: torch.Tensor,
                  invstd: torch.Tensor) -> torch.Tensor:
    """The forward's BatchNorm output again: ``x * scale + shift`` with per-channel float32
    ``scale``/``shift`` (as BatchNorm itself computes it), rounded to ``x``'s dtype."""
    scale = invstd if weight is None else invstd * weight
    shift = -mean * scale if bias is None else bias - mean * scale
    shape = (1, -1) + (1, ) * (x.dim() - 2)
    return torch.addcmul(shift.view(shape), x, scale.view(shape)).to(x.dtype)


def fusable_act(act: Optional[nn.Module]) -> Optional[str]:
    """Name of ``act`` for :class:`BatchNormActFunction` ('identity' for no activation), or
    None when it is not supported."""
    return FUSABLE_ACTS.get(type(act)) if act is not None else 'identity'


@contextlib.contextmanager
def _recomputing() -> Iterator[None]:
    previous = getattr(_recompute, 'active', False)
    _recompute.active = True
    try:
        yield
    finally:
        _recompute.active = previous


def checkpoint_contexts() -> Tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    """``context_fn`` for non-reentrant ``torch.utils.checkpoint``: while a block is recomputed
    for backward, BatchNorm uses the same batch statistics but does not update its running
    statistics a second time (which would double the effective momentum)."""
    return contextlib.nullcontext(), _recomputing()


def batch_norm_act(x: torch.Tensor, bn: nn.BatchNorm2d, act: str) -> torch.Tensor:
    """Memory-saving ``act(bn(x))`` with nn.BatchNorm2d's running-statistics semantics."""
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    momentum = 0. if bn.momentum is None else bn.momentum
    if bn.training and getattr(_recompute, 'active', False):  # checkpoint recompute: no update
        return BatchNormActFunction.apply(x, bn.weight, bn.bias, None, None, True, momentum, bn.eps, act)
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            momentum = 1. / float(bn.num_batches_tracked)
    update = not bn.training or bn.track_running_stats
    running_mean = bn.running_mean if update else None
    running_var = bn.running_var if update else None
    return BatchNormActFunction.apply(x, bn.weight, bn.bias, running_mean, running_var, use_batch_stats, momentum,
                                      bn.eps, act)


def bn_is_fusable(bn: Optional[nn.Module]) -> bool:
    """Plain BatchNorm2d only: SyncBN must all-reduce its statistics, so it keeps its own path."""
    return type(bn) is nn.BatchNorm2d
