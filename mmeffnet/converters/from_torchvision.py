"""torchvision (``efficientnet_b0`` .. ``efficientnet_b7``) -> canonical names.

``features.0`` is the stem, ``features.1..7`` the Table-1 stages (``features.{s}.{i}.block.{k}``),
the last ``features.N`` the 1x1 head, ``classifier.1`` the linear layer. Inside a block the
sub-modules are numbered in order: [expand,] depthwise, SE, project, so roles are read off which
numbers hold a conv-BN pair and which the SE.
"""
import re
from typing import Dict, Optional

import torch

from .canonical import rename_all

LAYOUT = 'torchvision'
_BLOCK = re.compile(r'^features\.(\d+)\.(\d+)\.block\.(\d+)\.(.+)$')
_CONV_BN = re.compile(r'^features\.(\d+)\.([01])\.(.+)$')
_SE = {'fc1.': 'se.conv1.conv.', 'fc2.': 'se.conv2.conv.'}


def to_canonical(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename a torchvision EfficientNet (v1) state dict to canonical names."""
    parts: Dict[tuple, set] = {}
    for m in map(_BLOCK.match, state):
        if m:
            parts.setdefault((int(m.group(1)), int(m.group(2))), set()).add(int(m.group(3)))
    global_index = {pos: j for j, pos in enumerate(sorted(parts))}
    roles = {}
    for pos, subs in parts.items():
        conv_bn = [k for k in sorted(subs) if f'features.{pos[0]}.{pos[1]}.block.{k}.0.weight' in state]
        names = ['expand_conv', 'depthwise_conv', 'linear_conv'][-len(conv_bn):] if len(conv_bn) <= 3 else []
        roles[pos] = dict(zip(conv_bn, names))
    head_stage = max((int(m.group(1)) for key in state if not _BLOCK.match(key) for m in [_CONV_BN.match(key)] if m),
                     default=0)

    def rename(key: str) -> Optional[str]:
        m = _BLOCK.match(key)
        if m:
            pos, sub, rest = (int(m.group(1)), int(m.group(2))), int(m.group(3)), m.group(4)
            prefix = f'blocks.{global_index[pos]}.'
            if sub in roles[pos]:
                module = 'conv.' if rest.startswith('0.') else 'bn.' if rest.startswith('1.') else None
                return None if module is None else prefix + roles[pos][sub] + '.' + module + rest[2:]
            for old, new in _SE.items():
                if rest.startswith(old):
                    return prefix + new + rest[len(old):]
            return None
        m = _CONV_BN.match(key)
        if m and int(m.group(1)) in (0, head_stage) and head_stage > 0:
            where = 'stem' if m.group(1) == '0' else 'head'
            return f'{where}.{"conv" if m.group(2) == "0" else "bn"}.{m.group(3)}'
        if key.startswith('classifier.1.'):
            return 'fc.' + key[len('classifier.1.'):]
        return None

    return rename_all(state, rename, LAYOUT)


def norm_eps_for_arch(arch: str) -> float:
    """torchvision builds B0-B4 with PyTorch's BN eps 1e-5 and B5-B7 (ported from TF) with 1e-3."""
    return 1e-3 if arch in ('b5', 'b6', 'b7') else 1e-5
