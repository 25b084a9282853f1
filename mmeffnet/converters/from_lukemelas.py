"""lukemelas ``efficientnet_pytorch`` (PyPI ``efficientnet-pytorch``) -> canonical names.

Its blocks are numbered globally (``_blocks.{j}``), like TF's; ``_bn0``/``_bn1``/``_bn2`` follow
expand/depthwise/project inside a block, and stem/head outside it.
"""
import re
from typing import Dict, Optional

import torch

from .canonical import rename_all

LAYOUT = 'lukemelas'
_BLOCK = re.compile(r'^_blocks\.(\d+)\.(\w+)\.(.+)$')
_TOP = {'_conv_stem': 'stem.conv', '_bn0': 'stem.bn', '_conv_head': 'head.conv', '_bn1': 'head.bn', '_fc': 'fc'}
_IN_BLOCK = {
    '_expand_conv': 'expand_conv.conv',
    '_bn0': 'expand_conv.bn',
    '_depthwise_conv': 'depthwise_conv.conv',
    '_bn1': 'depthwise_conv.bn',
    '_se_reduce': 'se.conv1.conv',
    '_se_expand': 'se.conv2.conv',
    '_project_conv': 'linear_conv.conv',
    '_bn2': 'linear_conv.bn'
}


def to_canonical(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch`` state dict to canonical names."""

    def rename(key: str) -> Optional[str]:
        m = _BLOCK.match(key)
        if m:
            module = _IN_BLOCK.get(m.group(2))
            return None if module is None else f'blocks.{m.group(1)}.{module}.{m.group(3)}'
        module, _, param = key.partition('.')
        return f'{_TOP[module]}.{param}' if module in _TOP and param else None

    return rename_all(state, rename, LAYOUT)
