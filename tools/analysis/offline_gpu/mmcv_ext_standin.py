"""Stand-in for mmcv's compiled ``mmcv._ext``, for running the benchmark with mmcv built
without ops (``MMCV_WITH_OPS=0``) on a machine where the compiled ops cannot be had.

``import mmcv.ops`` (which mmdet and mmpretrain do at import) checks only that each op name
exists, so every name resolves to a function that raises, except the two that a RetinaNet
training step calls on CUDA: mmdet's ``FocalLoss`` uses mmcv's sigmoid focal loss kernels for
CUDA tensors. Those are written here in PyTorch ops, with the kernels' formulas (forward and
the hand-derived gradient, probabilities clamped at FLT_MIN inside the logs). Slower than the
CUDA kernel, and the same for every model of a row, which all share the detector's head.
"""
import torch

_FLT_MIN = torch.finfo(torch.float32).tiny


def _terms(input, target, weight, alpha):
    # half inputs (AMP) are computed in float32, written back in half, like the kernel's arithmetic
    p = (input.float() if input.dtype in (torch.half, torch.bfloat16) else input).sigmoid()
    classes = torch.arange(input.size(1), device=input.device)
    positive = target.unsqueeze(1) == classes.unsqueeze(0)
    scale = torch.where(positive, alpha, 1. - alpha).to(p.dtype)
    if weight.numel() > 0:
        # mmcv indexes the class weight by the sample's label (background excluded by caller)
        scale = scale * weight[target.clamp(max=weight.numel() - 1)].unsqueeze(1).to(p.dtype)
    return p, positive, scale


def sigmoid_focal_loss_forward(input, target, weight, output, gamma=2.0, alpha=0.25):
    p, positive, scale = _terms(input, target, weight, alpha)
    term_p = (1. - p).pow(gamma) * p.clamp(min=_FLT_MIN).log()
    term_n = p.pow(gamma) * (1. - p).clamp(min=_FLT_MIN).log()
    output.copy_(-scale * torch.where(positive, term_p, term_n))


def sigmoid_focal_loss_backward(input, target, weight, grad_input, gamma=2.0, alpha=0.25):
    p, positive, scale = _terms(input, target, weight, alpha)
    term_p = (1. - p).pow(gamma) * (1. - p - gamma * p * p.clamp(min=_FLT_MIN).log())
    term_n = p.pow(gamma) * (gamma * (1. - p) * (1. - p).clamp(min=_FLT_MIN).log() - p)
    grad_input.copy_(-scale * torch.where(positive, term_p, term_n))


def __getattr__(name):
    if name.startswith('__'):
        raise AttributeError(name)

    def missing(*args, **kwargs):
        raise NotImplementedError(f'mmcv op {name!r}: this mmcv was built without compiled ops '
                                  '(stand-in mmcv._ext); only the sigmoid focal loss is provided')

    return missing
