"""Synchronized BatchNorm for CPU processes (gloo), where ``torch.nn.SyncBatchNorm`` cannot run.

torch's SyncBatchNorm and mmcv's MMSyncBN need CUDA, so a SyncBN recipe trained by N CPU processes
would silently normalize each process's images on their own. ``GlooSyncBatchNorm`` keeps the
recipe's semantics there: in training, the batch statistics are those of the images of all
processes together, and the backward pass sums the gradient statistics over the processes, so
N processes x batch B compute what one process x batch N*B computes (to float rounding).

- forward: each process computes its per-channel count, mean and biased variance; these are
  all-gathered and combined with Chan's parallel formula (no sum-of-squares cancellation);
- backward: the per-channel sums of ``dy`` and ``dy * x_hat`` are all-reduced (summed), which
  gives each process the exact gradient of the summed loss with respect to its own input; DDP
  then averages the parameter gradients, as with torch's SyncBatchNorm;
- eval mode, or a single process: plain BatchNorm (no communication).

State-dict keys and the module's abbreviation are those of BatchNorm (``bn``), so checkpoints move
freely between BN, SyncBN and this layer. ``mmeffnet.config.swap_sync_bn`` puts it in place of
SyncBN in distributed runs without CUDA. Registered as ``mmeffnet.GlooSyncBN``.
"""
from typing import Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..registry import MODELS


def _channel_dims(x: torch.Tensor) -> Tuple[int, ...]:
    return (0, ) + tuple(range(2, x.dim()))


def _as_channels(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view((1, -1) + (1, ) * (x.dim() - 2))


def gather_batch_stats(x: torch.Tensor, group=None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, biased variance, count) per channel over the inputs of every process in ``group``."""
    channels = x.shape[1]
    count = x.numel() // channels if channels else 0
    if count:
        var, mean = torch.var_mean(x, dim=_channel_dims(x), unbiased=False)
    else:  # a process with an empty batch contributes nothing
        var = mean = x.new_zeros(channels)
    local = torch.cat([mean, var, x.new_tensor([float(count)])])
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, local, group=group)
    stats = torch.stack(gathered)  # (world, 2C + 1)
    means, variances, counts = stats[:, :channels], stats[:, channels:2 * channels], stats[:, -1:]
    total = counts.sum()
    if total == 0:
        raise ValueError('GlooSyncBatchNorm got an empty batch on every process')
    mean = (counts * means).sum(0) / total
    # Chan et al.: M2 = sum_r n_r * (var_r + (mean_r - mean)^2)
    var = (counts * (variances + (means - mean)**2)).sum(0) / total
    return mean, var, total


def running_stats_momentum(bn: _BatchNorm, update_running: bool) -> float:
    """The momentum of this forward's running-statistics update, as BatchNorm's forward computes
    it; while training with tracked statistics and ``update_running``, ``num_batches_tracked`` is
    advanced first (a ``momentum`` of None averages over it)."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if update_running and bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(bn.num_batches_tracked)
    return momentum


def sync_normalize(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], mean: torch.Tensor,
                   invstd: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(``x_hat``, the affine output) with the synchronized statistics ``mean``, ``invstd``."""
    x_hat = (x - _as_channels(mean, x)) * _as_channels(invstd, x)
    out = x_hat
    if weight is not None:
        out = out * _as_channels(weight, x)
    if bias is not None:
        out = out + _as_channels(bias, x)
    return x_hat, out


def sync_batch_norm_backward(grad_out: torch.Tensor, x_hat: torch.Tensor, weight: Optional[torch.Tensor],
                             invstd: torch.Tensor, group, needs_weight: bool,
                             needs_bias: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gradients of (input, weight, bias) of the synchronized normalization: the per-channel sums
    of ``dy`` and ``dy * x_hat`` are all-reduced once (with the total count)."""
    dims = _channel_dims(grad_out)
    channels = grad_out.shape[1]
    sum_dy = grad_out.sum(dims)
    sum_dy_xhat = (grad_out * x_hat).sum(dims)
    count = grad_out.new_tensor([float(grad_out.numel() // channels if channels else 0)])
    reduced = torch.cat([sum_dy, sum_dy_xhat, count])
    dist.all_reduce(reduced, group=group)
    total = reduced[-1]
    mean_dy = reduced[:channels] / total
    mean_dy_xhat = reduced[channels:2 * channels] / total
    scale = invstd if weight is None else weight * invstd
    grad_x = _as_channels(scale, grad_out) * (
        grad_out - _as_channels(mean_dy, grad_out) - x_hat * _as_channels(mean_dy_xhat, grad_out))
    # the affine parameters' gradients stay local: DDP averages them like any other parameter
    grad_weight = sum_dy_xhat if weight is not None and needs_weight else None
    grad_bias = sum_dy if needs_bias else None
    return grad_x, grad_weight, grad_bias


class _SyncBatchNormFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias, mean, invstd, group):
        x_hat, out = sync_normalize(x, weight, bias, mean, invstd)
        ctx.save_for_backward(x_hat, weight, invstd)
        ctx.group = group
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x_hat, weight, invstd = ctx.saved_tensors
        grad_x, grad_weight, grad_bias = sync_batch_norm_backward(grad_out, x_hat, weight, invstd, ctx.group,
                                                                  ctx.needs_input_grad[1], ctx.needs_input_grad[2])
        return grad_x, grad_weight, grad_bias, None, None, None


@MODELS.register_module('GlooSyncBN')
class GlooSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics span all processes of ``process_group`` (any backend,
    CPU tensors included). Takes ``nn.BatchNorm2d``'s arguments plus ``process_group``."""

    _abbr_ = 'bn'

    def __init__(self,
                 num_features: int,
                 eps: float = 1e-5,
                 momentum: Optional[float] = 0.1,
                 affine: bool = True,
                 track_running_stats: bool = True,
                 process_group=None,
                 device=None,
                 dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    @classmethod
    def convert_batch_norm(cls, module: nn.Module, process_group=None) -> nn.Module:
        """``module`` with every ``nn.BatchNorm2d`` replaced by this layer (parameters, statistics
        and mode carried over), as ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` does."""
        if type(module) is nn.BatchNorm2d:
            device = module.running_mean.device if module.running_mean is not None else None
            sync = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                process_group,
                device=device)
            sync.load_state_dict(module.state_dict())
            for theirs, ours in zip(module.parameters(), sync.parameters()):  # frozen stays frozen
                ours.requires_grad_(theirs.requires_grad)
            return sync.train(module.training)
        for name, child in module.named_children():
            module.add_module(name, cls.convert_batch_norm(child, process_group))
        return module

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f'GlooSyncBatchNorm expects an (N, C, ...) input, got {input.dim()}D')

    def synchronized(self) -> bool:
        """Whether this forward normalizes over all processes (training, more than one)."""
        return (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group) > 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.synchronized():
            return super().forward(x)
        mean, invstd = self.synchronized_statistics(x, update_running=True)
        return _SyncBatchNormFunction.apply(x, self.weight, self.bias, mean, invstd, self.process_group)

    def synchronized_statistics(self, x: torch.Tensor, update_running: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mean, invstd) of the batch over all processes (one all-gather), and, if
        ``update_running``, the running statistics and ``num_batches_tracked`` updated as BatchNorm
        updates them. The statistics are constants to autograd: their gradient is handled by
        :func:`sync_batch_norm_backward`."""
        momentum = running_stats_momentum(self, update_running)
        mean, var, total = gather_batch_stats(x.detach(), self.process_group)
        if update_running and self.track_running_stats:
            with torch.no_grad():
                unbiased = var * (total / (total - 1)) if total > 1 else var
                self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        return mean, torch.rsqrt(var + self.eps)
