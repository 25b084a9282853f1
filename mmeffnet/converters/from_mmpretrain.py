"""mmpretrain / mmcls / mmdet ``EfficientNet`` (the layout mmeffnet shares) -> canonical names.

Levels ``layers.1..5`` hold the blocks (``layers.{level}.{i}``), ``layers.0`` the stem and the
last ``layers.N`` without block index the 1x1 head; a LinearClsHead's ``head.fc`` is the classifier.
The ``backbone.`` prefix of a whole-model checkpoint is removed by the caller.
"""
import re
from typing import Dict, Optional

import torch

from .canonical import rename_all

LAYOUT = 'mmeffnet'
_BLOCK = re.compile(r'^layers\.(\d+)\.(\d+)\.(.+)$')
_CONV_BN = re.compile(r'^layers\.(\d+)\.((?:conv|bn)\..+)$')


def to_canonical(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Renumber an mmpretrain-layout state dict's blocks globally."""
    blocks = sorted({(int(m.group(1)), int(m.group(2))) for m in map(_BLOCK.match, state) if m})
    global_index = {pos: j for j, pos in enumerate(blocks)}

    def rename(key: str) -> Optional[str]:
        m = _BLOCK.match(key)
        if m:
            return f'blocks.{global_index[(int(m.group(1)), int(m.group(2)))]}.{m.group(3)}'
        m = _CONV_BN.match(key)
        if m:
            return ('stem.' if m.group(1) == '0' else 'head.') + m.group(2)
        if key.startswith('head.fc.'):
            return 'fc.' + key[len('head.fc.'):]
        return None

    return rename_all(state, rename, 'mmpretrain')
