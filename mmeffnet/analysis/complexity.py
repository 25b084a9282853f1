"""Parameter and multiply-add counts, the way Table 2 of the paper counts them.

"FLOPs" in the paper are multiply-adds of convolutions and fully connected layers; normalisation,
activations, pooling and the SE gate's elementwise product are not counted.
"""
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: Tuple[int, ...]) -> int:
    """Multiply-adds of every Conv2d and Linear in one forward pass of a zero input."""
    return count_macs_split(model, input_shape)['total']


@torch.no_grad()
def count_macs_split(model: nn.Module,
                     input_shape: Tuple[int, ...],
                     parts: Optional[Dict[str, nn.Module]] = None,
                     forward: Optional[Callable[[nn.Module, torch.Tensor], object]] = None) -> Dict[str, int]:
    """Like ``count_macs``, in one pass, also per submodule of ``parts`` (e.g. ``{'backbone': m.backbone}``).

    ``forward(model, x)`` replaces ``model(x)`` where the model needs another call. The zero input
    is made on the default device, so under ``torch.device('meta')`` nothing is computed.
    """
    parts = parts or {}
    totals = dict.fromkeys(['total', *parts], 0)
    owner = {}
    for name, part in parts.items():
        for m in part.modules():
            owner.setdefault(m, []).append(name)

    def add(m: nn.Module, macs: int) -> None:
        totals['total'] += macs
        for name in owner.get(m, ()):
            totals[name] += macs

    def conv_hook(m: nn.Conv2d, inputs, output: torch.Tensor) -> None:
        kh, kw = m.kernel_size
        add(m, output.numel() * (m.in_channels // m.groups) * kh * kw)

    def linear_hook(m: nn.Linear, inputs, output: torch.Tensor) -> None:
        add(m, output.numel() * m.in_features)

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(input_shape)
        forward(model, x) if forward is not None else model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return totals
