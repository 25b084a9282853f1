"""timm (``efficientnet_*``, ``tf_efficientnet_*``, incl. Lite) -> canonical names.

timm numbers blocks per Table-1 stage (``blocks.{stage}.{i}``); MBConv1 blocks are
``DepthwiseSeparableConv`` (conv_dw, bn1, se, conv_pw, bn2), the others ``InvertedResidual``
(conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3).
"""
import re
from typing import Dict, Optional

import torch

from .canonical import rename_all

LAYOUT = 'timm'
_BLOCK = re.compile(r'^blocks\.(\d+)\.(\d+)\.(.+)$')
_TOP = {
    'conv_stem.': 'stem.conv.',
    'bn1.': 'stem.bn.',
    'conv_head.': 'head.conv.',
    'bn2.': 'head.bn.',
    'classifier.': 'fc.'
}
_SE = {'se.conv_reduce.': 'se.conv1.conv.', 'se.conv_expand.': 'se.conv2.conv.'}
_INVERTED_RESIDUAL = {
    'conv_pw.': 'expand_conv.conv.',
    'bn1.': 'expand_conv.bn.',
    'conv_dw.': 'depthwise_conv.conv.',
    'bn2.': 'depthwise_conv.bn.',
    'conv_pwl.': 'linear_conv.conv.',
    'bn3.': 'linear_conv.bn.',
    **_SE
}
_DEPTHWISE_SEPARABLE = {
    'conv_dw.': 'depthwise_conv.conv.',
    'bn1.': 'depthwise_conv.bn.',
    'conv_pw.': 'linear_conv.conv.',
    'bn2.': 'linear_conv.bn.',
    **_SE
}


def _replace_prefix(key: str, table: Dict[str, str]) -> Optional[str]:
    for old, new in table.items():
        if key.startswith(old):
            return new + key[len(old):]
    return None


def to_canonical(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename a timm EfficientNet state dict to canonical names."""
    blocks = sorted({(int(m.group(1)), int(m.group(2))) for m in map(_BLOCK.match, state) if m})
    global_index = {pos: j for j, pos in enumerate(blocks)}
    inverted = {pos for pos in blocks if f'blocks.{pos[0]}.{pos[1]}.conv_pwl.weight' in state}

    def rename(key: str) -> Optional[str]:
        m = _BLOCK.match(key)
        if m is None:
            return _replace_prefix(key, _TOP)
        pos = (int(m.group(1)), int(m.group(2)))
        inner = _replace_prefix(m.group(3), _INVERTED_RESIDUAL if pos in inverted else _DEPTHWISE_SEPARABLE)
        return None if inner is None else f'blocks.{global_index[pos]}.{inner}'

    return rename_all(state, rename, LAYOUT)


def settings_for_model_name(name: str) -> Optional[dict]:
    """Padding and BN eps a timm model name implies: ``tf_*`` ports keep TF's SAME padding and
    eps 1e-3; timm's own ``efficientnet_*`` use symmetric padding and eps 1e-5. None if ``name``
    is not a timm EfficientNet name."""
    base = name.split('.')[0].lower()  # 'tf_efficientnet_b0.ns_jft_in1k' -> tag dropped
    if base.startswith('tf_efficientnet_'):
        return dict(padding='same', norm_eps=1e-3)
    if base.startswith('efficientnet_'):
        return dict(padding='symmetric', norm_eps=1e-5)
    return None
