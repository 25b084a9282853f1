"""Parameter and multiply-add counts, the way Table 2 of the paper counts them.

"FLOPs" in the paper are multiply-adds of convolutions and fully connected layers; normalisation,
activations, pooling and the SE gate's elementwise product are not counted.
"""
from typing import Tuple

import torch
import torch.nn as nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: Tuple[int, ...]) -> int:
    """Multiply-adds of every Conv2d and Linear in one forward pass of a zero input."""
    total = 0

    def conv_hook(m: nn.Conv2d, inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += output.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
