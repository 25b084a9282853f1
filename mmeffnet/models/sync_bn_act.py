"""Memory-saving BatchNorm + activation under synchronized BatchNorm.

Two synchronized BatchNorms take the memory policies, each keeping its own collectives and
numerics, so that a policy changes what is kept for backward and nothing else:

- :class:`GlooSyncBatchNormActFunction` for :class:`~.gloo_sync_bn.GlooSyncBatchNorm` (CPU
  processes): its statistics, gathered once per forward by the layer, its normalization and its
  backward (:func:`~.gloo_sync_bn.sync_batch_norm_backward`);
- :class:`TorchSyncBatchNormActFunction` for ``torch.nn.SyncBatchNorm`` (mmcv's ``SyncBN``, the
  COCO recipes' norm on GPUs): the kernels and collectives of torch's own SyncBatchNorm function
  (``batch_norm_stats``, one all-gather, ``batch_norm_gather_stats_with_counts``,
  ``batch_norm_elemt``; in backward ``batch_norm_backward_reduce``, one all-reduce,
  ``batch_norm_backward_elemt``), called in the same order with the same arguments, so forward
  results and running statistics are those of the module.

torch's SyncBatchNorm already keeps only its input; what the policies save is the activation's
input (and, under 'recompute-pointwise', its output), rebuilt in backward with the forward's own
normalization kernel.
"""
import functools
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.autograd.function import once_differentiable

from .gloo_sync_bn import sync_batch_norm_backward, sync_normalize
from .recompute import BNActRecipe, RecipeScope, activate, activation_backward_

# the kernels torch's SyncBatchNorm runs; CUDA (and XPU) have them, the CPU has none
TORCH_SYNC_BN_KERNELS = ('batch_norm_stats', 'batch_norm_gather_stats_with_counts', 'batch_norm_elemt',
                         'batch_norm_backward_reduce', 'batch_norm_backward_elemt')


class GlooSyncBatchNormActFunction(torch.autograd.Function):
    """``act(sync_batch_norm(x))`` with statistics already synchronized (:class:`GlooSyncBatchNorm`),
    saving only ``x``, the parameters and the statistics; the normalized tensor is rebuilt in
    backward, whose gradient statistics are all-reduced once, as the layer's own backward does."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], mean: torch.Tensor,
                invstd: torch.Tensor, group, act: str, scope: Optional[RecipeScope]) -> torch.Tensor:
        z = sync_normalize(x, weight, bias, mean, invstd)[1]
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        ctx.group, ctx.act = group, act
        pre_activation = functools.partial(_gloo_pre_activation, x.detach(), weight, bias, mean, invstd)
        ctx.recipe = BNActRecipe(pre_activation, act) if scope is not None else None
        return activate(z, act, inplace=True)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple:
        x, weight, bias, mean, invstd = ctx.saved_tensors
        if ctx.act == 'identity':
            x_hat = sync_normalize(x, None, None, mean, invstd)[0]
        elif ctx.recipe is not None:  # the pre-activation is rebuilt (or cached) by the recipe
            grad = activation_backward_(grad, ctx.recipe.take_pre_activation(), ctx.act)
            x_hat = sync_normalize(x, None, None, mean, invstd)[0]
        else:  # one normalization gives both
            x_hat, z = sync_normalize(x, weight, bias, mean, invstd)
            if z is x_hat:  # no affine: the activation gradient must not overwrite x_hat
                z = z.clone()
            grad = activation_backward_(grad, z, ctx.act)
        needs = ctx.needs_input_grad
        gx, gw, gb = sync_batch_norm_backward(grad, x_hat, weight, invstd, ctx.group, needs[1], needs[2])
        return gx, gw, gb, None, None, None, None, None


def _gloo_pre_activation(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                         mean: torch.Tensor, invstd: torch.Tensor) -> torch.Tensor:
    return sync_normalize(x, weight, bias, mean, invstd)[1]


def torch_sync_bn_kernels_on(device: torch.device) -> bool:
    """Whether the kernels of torch's SyncBatchNorm run on ``device``'s type."""
    key = {'cuda': 'CUDA', 'xpu': 'XPU', 'cpu': 'CPU'}.get(device.type)
    return key is not None and all(
        torch._C._dispatch_has_kernel_for_dispatch_key(f'aten::{name}', key) for name in TORCH_SYNC_BN_KERNELS)


def torch_sync_group(bn: nn.SyncBatchNorm) -> Optional[tuple]:
    """(process group, world size) when ``bn`` synchronizes this forward, as torch's module
    decides it (training, batch statistics, an initialized group of more than one); else None."""
    if not (bn.training and dist.is_available() and dist.is_initialized()):
        return None
    group = bn.process_group or dist.group.WORLD
    world_size = dist.get_world_size(group)
    return (group, world_size) if world_size > 1 else None


class TorchSyncBatchNormActFunction(torch.autograd.Function):
    """``act(torch.nn.SyncBatchNorm(x))`` in training, saving ``x`` and the statistics (as torch's
    function does) but not the normalized tensor; ``running_mean`` and ``running_var`` are updated
    in place by the statistics kernel (pass None to leave them, as a checkpoint's recompute must)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor], eps: float, momentum: float,
                group, world_size: int, act: str, scope: Optional[RecipeScope]) -> torch.Tensor:
        if not (x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous()):
            x = x.contiguous()
        if weight is not None:
            weight = weight.contiguous()
        channels = x.shape[1]
        if x.numel():
            mean, invstd = torch.batch_norm_stats(x, eps)
            count = torch.full((1, ), x.numel() // channels, dtype=mean.dtype, device=mean.device)
            local = torch.cat([mean, invstd, count])
        else:  # an empty batch still takes part in the collective, with a count of 0
            local = x.new_zeros(2 * channels + 1)
        if dist.get_backend(group) == 'gloo':  # gloo has no all_gather_into_tensor
            gathered = [torch.empty_like(local) for _ in range(world_size)]
            dist.all_gather(gathered, local, group)
            stacked = torch.stack(gathered)
        else:
            stacked = local.new_empty(world_size, local.numel())
            dist.all_gather_into_tensor(stacked, local, group)
        mean_all, invstd_all, count_all = torch.split(stacked, channels, dim=1)
        if not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()):
            # the empty batches' rows dropped (a host sync, which CUDA graph capture forbids)
            keep = count_all.squeeze(-1) >= 1
            mean_all, invstd_all, count_all = mean_all[keep], invstd_all[keep], count_all[keep]
        counts = count_all.view(-1)
        if running_mean is not None and counts.dtype != running_mean.dtype:
            counts = counts.to(running_mean.dtype)
        mean, invstd = torch.batch_norm_gather_stats_with_counts(x, mean_all, invstd_all, running_mean, running_var,
                                                                 momentum, eps, counts)
        ctx.save_for_backward(x, weight, bias, mean, invstd, count_all.to(torch.int32))
        ctx.group, ctx.eps, ctx.act = group, eps, act
        if not x.numel():
            ctx.recipe = None
            return torch.empty_like(x)
        pre_activation = functools.partial(torch.batch_norm_elemt, x.detach(), _detached(weight), _detached(bias), mean,
                                           invstd, eps)
        ctx.recipe = BNActRecipe(pre_activation, act) if scope is not None else None
        return activate(torch.batch_norm_elemt(x, weight, bias, mean, invstd, eps), act, inplace=True)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple:
        x, weight, bias, mean, invstd, count = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if not x.numel():  # nothing to compute, but the peers' all-reduce waits for this one
            if needs[0]:
                dist.all_reduce(x.new_zeros(2 * x.shape[1]), dist.ReduceOp.SUM, ctx.group)
            return (None, ) * 11
        if not (grad.is_contiguous(memory_format=torch.channels_last) or grad.is_contiguous()):
            grad = grad.contiguous()
        if ctx.act != 'identity':
            z = (
                ctx.recipe.take_pre_activation() if ctx.recipe is not None else torch.batch_norm_elemt(
                    x, weight, bias, mean, invstd, ctx.eps))
            grad = activation_backward_(grad, z, ctx.act)
        sum_dy, sum_dy_xmu, grad_weight, grad_bias = torch.batch_norm_backward_reduce(
            grad, x, mean, invstd, weight, needs[0], needs[1], needs[2])
        grad_x = None
        if needs[0]:
            channels = sum_dy.shape[0]
            combined = torch.cat([sum_dy, sum_dy_xmu])
            dist.all_reduce(combined, dist.ReduceOp.SUM, ctx.group)
            sum_dy, sum_dy_xmu = torch.split(combined, channels)
            if weight is not None and weight.dtype != mean.dtype:
                weight = weight.to(mean.dtype)
            grad_x = torch.batch_norm_backward_elemt(grad, x, mean, invstd, weight, sum_dy, sum_dy_xmu, count)
        # the affine parameters' gradients stay local: DDP averages them like any other parameter
        if weight is None or not needs[1]:
            grad_weight = None
        if bias is None or not needs[2]:
            grad_bias = None
        return grad_x, grad_weight, grad_bias, None, None, None, None, None, None, None, None


def _detached(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.detach()
