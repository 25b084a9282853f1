"""Memory-saving training ops: BatchNorm + activation that keeps only the BatchNorm input.

Autograd normally keeps three tensors per conv -> BN -> activation: the BN input, the BN output
(needed by the activation's backward; an in-place activation even stores a *clone* of it) and the
activation output (kept by the next conv). :class:`BatchNormActFunction` keeps only the BN input
and the per-channel batch statistics, and recomputes the BN output in backward with one fused
multiply-add. Forward results are bitwise those of ``act(bn(x))``; gradients agree to float
rounding (under fp16/bf16 autocast the recompute and BatchNorm's own backward run in float32 as
BatchNorm does, so parameter gradients are float32 sums, not overflowing half ones).
Used only while training with gradients; eval, export and ``torch.compile`` (whose own
partitioner recomputes elementwise ops) take the plain module path. Inside a
:func:`~.recompute.recompute_pointwise` scope the output is registered as a recipe too, so the
next conv does not keep it either.

Under synchronized BatchNorm (:class:`GlooSyncBatchNorm`, torch's ``nn.SyncBatchNorm``) the op
runs the layer's own statistics, collectives and kernels (:mod:`.sync_bn_act`).

The memory policies of the networks (``memory=``): 'plain' (the modules as they are),
'save-bn-input' (this op), 'recompute-pointwise' (this op and the recipes; the default).
"""
import contextlib
import functools
import threading
from typing import Iterator, Optional, Tuple

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from .gloo_sync_bn import GlooSyncBatchNorm, running_stats_momentum
from .recompute import (BNActRecipe, RecipeScope, activate, activation_backward_, current_scope, normalize,
                        scale_and_shift)
from .sync_bn_act import (GlooSyncBatchNormActFunction, TorchSyncBatchNormActFunction, torch_sync_bn_kernels_on,
                          torch_sync_group)

_recompute = threading.local()

MEMORY_POLICIES = ('plain', 'save-bn-input', 'recompute-pointwise')


def check_memory_policy(memory: str) -> str:
    """``memory`` if it is one of :data:`MEMORY_POLICIES`; a ValueError naming them otherwise."""
    if memory not in MEMORY_POLICIES:
        raise ValueError(f'memory={memory!r} is not a memory policy; choose one of {MEMORY_POLICIES}')
    return memory


# activation module type -> name understood by the function below
FUSABLE_ACTS = {nn.SiLU: 'silu', nn.ReLU: 'relu', nn.ReLU6: 'relu6'}


class BatchNormActFunction(torch.autograd.Function):
    """``act(batch_norm(x))`` saving only ``x`` and the statistics for backward.

    ``act`` is 'silu', 'relu', 'relu6' or 'identity' (BN alone: saves what BN saves anyway, but
    shares the checkpoint-recompute handling of running statistics).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor], training: bool,
                momentum: float, eps: float, act: str, scope: Optional[RecipeScope]) -> torch.Tensor:
        # Updates running_mean / running_var in place exactly like nn.BatchNorm2d does.
        z, mean, invstd = torch.ops.aten.native_batch_norm(x, weight, bias, running_mean, running_var, training,
                                                           momentum, eps)
        var = None
        if not training:  # statistics are the (frozen) running ones
            mean, var = running_mean.clone(), running_var.clone()
            invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, weight, bias, mean, invstd, var)
        ctx.training, ctx.eps, ctx.act = training, eps, act
        if scope is not None:
            ctx.recipe = BNActRecipe(
                functools.partial(normalize, x.detach(), *scale_and_shift(weight, bias, mean, invstd)), act)
        else:
            ctx.recipe = None
        return activate(z, act, inplace=True)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple:
        x, weight, bias, mean, invstd, var = ctx.saved_tensors
        if ctx.act == 'identity':
            grad_z = grad
        else:
            if ctx.recipe is not None:  # rebuilt for the output's readers already (or now)
                z = ctx.recipe.take_pre_activation()
            else:
                z = normalize(x, *scale_and_shift(weight, bias, mean, invstd))
            grad_z = activation_backward_(grad, z, ctx.act)
        needs = ctx.needs_input_grad
        mask = [needs[0], weight is not None and needs[1], bias is not None and needs[2]]
        if ctx.training:
            stats = (None, None, mean, invstd)
        else:  # empty saved statistics, as native_batch_norm returns them in eval (CUDA asserts it)
            empty = mean.new_empty(0)
            stats = (mean, var, empty, empty)
        # BatchNorm's own backward, as autograd calls it (under autocast its parameter gradients
        # are float32 sums: a half-precision sum of a scaled loss's gradient overflows). Its out=
        # variant would take the free ``z`` for the input gradient, but it is the same kernel
        # plus a copy (measured 15 % slower), so ``z`` is simply let go
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(grad_z, x, weight, *stats, ctx.training, ctx.eps, mask)
        return gx, gw, gb, None, None, None, None, None, None, None


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
    """Memory-saving ``act(bn(x))`` with nn.BatchNorm2d's running-statistics semantics; inside a
    :func:`~.recompute.recompute_pointwise` scope the output is registered as rebuildable."""
    scope = current_scope()
    out = _apply_batch_norm_act(x, bn, act, scope)
    recipe = getattr(out.grad_fn, 'recipe', None)  # none where a module ran its own path
    if scope is not None and recipe is not None:
        scope.register(out, recipe)
    return out


def _apply_batch_norm_act(x: torch.Tensor, bn: nn.BatchNorm2d, act: str, scope: Optional[RecipeScope]) -> torch.Tensor:
    # while a checkpoint recomputes a block, the batch statistics are used again but the running
    # statistics and the batch count are not updated a second time
    update_running = not (bn.training and getattr(_recompute, 'active', False))
    if isinstance(bn, GlooSyncBatchNorm) and bn.synchronized():  # statistics gathered once per forward
        mean, invstd = bn.synchronized_statistics(x, update_running)
        return GlooSyncBatchNormActFunction.apply(x, bn.weight, bn.bias, mean, invstd, bn.process_group, act, scope)
    sync = torch_sync_group(bn) if isinstance(bn, nn.SyncBatchNorm) else None  # (bn_is_fusable: torch's forward)
    if sync is not None:
        if not torch_sync_bn_kernels_on(x.device):  # the module's own path (and its error on the CPU)
            return activate(bn(x), act, inplace=False)
        bn._check_non_zero_input_channels(x)
    momentum = running_stats_momentum(bn, update_running)
    # BatchNorm's buffers: updated while training (if tracked), normalized with in eval
    buffers = update_running and (not bn.training or bn.track_running_stats)
    running_mean = bn.running_mean if buffers else None
    running_var = bn.running_var if buffers else None
    if sync is not None:
        return TorchSyncBatchNormActFunction.apply(x, bn.weight, bn.bias, running_mean, running_var, bn.eps, momentum,
                                                   *sync, act, scope)
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    return BatchNormActFunction.apply(x, bn.weight, bn.bias, running_mean, running_var, use_batch_stats, momentum,
                                      bn.eps, act, scope)


def bn_is_fusable(bn: Optional[nn.Module]) -> bool:
    """BatchNorm2d, :class:`GlooSyncBatchNorm` (the SyncBN of CPU processes) and torch's
    ``nn.SyncBatchNorm`` (mmcv's ``SyncBN``; synchronized where its kernels run, BatchNorm when it
    does not synchronize; mmengine's subclass, which only changes the input check, too). mmcv's
    ``MMSyncBN`` keeps its own kernels and path."""
    if isinstance(bn, nn.SyncBatchNorm):
        return type(bn).forward is nn.SyncBatchNorm.forward
    return type(bn) in (nn.BatchNorm2d, GlooSyncBatchNorm)
