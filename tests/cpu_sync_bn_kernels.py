"""CPU versions of the five CUDA kernels of ``torch.nn.SyncBatchNorm``, for tests only.

torch's SyncBatchNorm runs only where ``batch_norm_stats`` and its four companions have kernels
(CUDA, XPU), and its module refuses CPU tensors. :func:`enable` registers these kernels for the
CPU (the formulas of the CUDA ones, in float64 where they reduce) and lets the module take CPU
tensors, so that torch's own SyncBatchNorm module and function run in gloo processes next to the
memory-saving function that calls the same kernels. Call it in a worker process only: it changes
torch for the rest of that process.
"""
import torch
import torch.nn as nn

_library = None


def _channels(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view((1, -1) + (1, ) * (x.dim() - 2))


def _dims(x: torch.Tensor) -> tuple:
    return (0, ) + tuple(range(2, x.dim()))


def batch_norm_stats(x, eps):
    var, mean = torch.var_mean(x.double(), dim=_dims(x), unbiased=False)
    return mean.float(), torch.rsqrt(var + eps).float()


def batch_norm_gather_stats_with_counts(x, mean_all, invstd_all, running_mean, running_var, momentum, eps, counts):
    counts = counts.double().view(-1, 1)
    means, variances = mean_all.double(), invstd_all.double().pow(-2) - eps
    total = counts.sum()
    mean = (counts * means).sum(0) / total
    var = (counts * (variances + (means - mean)**2)).sum(0) / total
    if running_mean is not None:
        running_mean.mul_(1 - momentum).add_(momentum * mean.to(running_mean.dtype))
    if running_var is not None:
        unbiased = var * total / (total - 1)
        running_var.mul_(1 - momentum).add_(momentum * unbiased.to(running_var.dtype))
    return mean.float(), torch.rsqrt(var + eps).float()


def batch_norm_elemt(x, weight, bias, mean, invstd, eps):
    out = (x - _channels(mean, x)) * _channels(invstd, x)
    if weight is not None:
        out = out * _channels(weight, x)
    if bias is not None:
        out = out + _channels(bias, x)
    return out.to(x.dtype)


def batch_norm_backward_reduce(grad, x, mean, invstd, weight, input_g, weight_g, bias_g):
    sum_dy = grad.double().sum(_dims(x))
    sum_dy_xmu = (grad.double() * (x.double() - _channels(mean.double(), x))).sum(_dims(x))
    grad_weight = (sum_dy_xmu * invstd.double()).to(x.dtype) if weight_g else x.new_empty(0)
    grad_bias = sum_dy.to(x.dtype) if bias_g else x.new_empty(0)
    return sum_dy.float(), sum_dy_xmu.float(), grad_weight, grad_bias


def batch_norm_backward_elemt(grad, x, mean, invstd, weight, sum_dy, sum_dy_xmu, count):
    total = count.double().sum()
    scale = invstd if weight is None else invstd * weight
    xmu = x - _channels(mean, x)
    out = grad - _channels(sum_dy / total, x) - xmu * _channels(invstd * invstd * sum_dy_xmu / total, x)
    return (out * _channels(scale, x)).to(x.dtype)


def enable() -> None:
    """Register the kernels for the CPU and let ``nn.SyncBatchNorm`` take CPU tensors."""
    global _library
    if _library is not None:
        return
    _library = torch.library.Library('aten', 'IMPL')
    for kernel in (batch_norm_stats, batch_norm_gather_stats_with_counts, batch_norm_elemt, batch_norm_backward_reduce,
                   batch_norm_backward_elemt):
        _library.impl(kernel.__name__, kernel, 'CPU')
    # the module checks the input's device against the accelerator names, the custom backend's
    # included: while it runs (only then: autocast asks the same name), that name is 'cpu'
    module_forward = nn.SyncBatchNorm.forward

    def forward(self, x):
        backend_name = torch._C._get_privateuse1_backend_name
        torch._C._get_privateuse1_backend_name = lambda: 'cpu'
        try:
            return module_forward(self, x)
        finally:
            torch._C._get_privateuse1_backend_name = backend_name

    nn.SyncBatchNorm.forward = forward
