"""The one intermediate form every converter produces, and its mapping onto mmeffnet's layout.

Each source module renames its keys to *canonical* names, which are mmeffnet's names with the
blocks numbered globally instead of per level::

    stem.conv.weight, stem.bn.{weight,bias,running_mean,running_var,num_batches_tracked}
    blocks.{j}.expand_conv.{conv,bn}.*      (absent in MBConv1 blocks)
    blocks.{j}.depthwise_conv.{conv,bn}.*
    blocks.{j}.se.conv1.conv.{weight,bias}, blocks.{j}.se.conv2.conv.{weight,bias}   (absent in Lite)
    blocks.{j}.linear_conv.{conv,bn}.*
    head.conv.weight, head.bn.*             (the 1x1 head conv, level 6)
    fc.weight, fc.bias                      (the classifier, when the source has one)

Blocks are then placed on levels by the network plan (``NetworkSpec.blocks()``), never by per-arch
tables, and the arch is recognised from the tensor shapes alone.
"""
import re
from typing import Dict, NamedTuple, Optional, Tuple

import torch

from ..arch import ARCHS, HEAD_LEVEL, NetworkSpec, build_network_spec

_BLOCK_KEY = re.compile(r'^blocks\.(\d+)\.(.+)$')


class ConversionError(ValueError):
    """A checkpoint that cannot be converted (unknown keys, another arch, unknown source...)."""


class BlockShape(NamedTuple):
    """What the weights reveal about one MBConv block."""
    in_channels: int
    mid_channels: int
    out_channels: int
    kernel_size: int
    has_se: bool


class Signature(NamedTuple):
    """What the weights reveal about a whole network (head is None when it is absent)."""
    stem_channels: int
    blocks: Tuple[BlockShape, ...]
    head_channels: Optional[int]


def num_blocks(canon: Dict[str, torch.Tensor]) -> int:
    """How many MBConv blocks ``canon`` holds (the highest block index + 1)."""
    indices = [int(m.group(1)) for m in map(_BLOCK_KEY.match, canon) if m]
    return max(indices) + 1 if indices else 0


def canonical_signature(canon: Dict[str, torch.Tensor]) -> Signature:
    """Read the stem/block/head channels and kernel sizes off the canonical tensors."""
    try:
        blocks = []
        for j in range(num_blocks(canon)):
            dw = canon[f'blocks.{j}.depthwise_conv.conv.weight']
            expand = canon.get(f'blocks.{j}.expand_conv.conv.weight')
            blocks.append(
                BlockShape(
                    in_channels=int(expand.shape[1]) if expand is not None else int(dw.shape[0]),
                    mid_channels=int(dw.shape[0]),
                    out_channels=int(canon[f'blocks.{j}.linear_conv.conv.weight'].shape[0]),
                    kernel_size=int(dw.shape[-1]),
                    has_se=f'blocks.{j}.se.conv1.conv.weight' in canon))
        head = canon.get('head.conv.weight')
        return Signature(
            int(canon['stem.conv.weight'].shape[0]), tuple(blocks),
            int(head.shape[0]) if head is not None else None)
    except KeyError as exc:
        raise ConversionError(f'the checkpoint lacks {exc.args[0]} (in the canonical naming): it is '
                              'incomplete or not an EfficientNet') from None


def spec_signature(spec: NetworkSpec) -> Signature:
    """The signature a network built from ``spec`` has."""
    blocks = tuple(
        BlockShape(b.in_channels, b.mid_channels, b.out_channels, b.kernel_size, b.se_channels > 0)
        for b in spec.blocks())
    return Signature(spec.stem_channels, blocks, spec.head_channels)


def infer_arch(canon: Dict[str, torch.Tensor]) -> Optional[str]:
    """The name in ``ARCHS`` whose shapes ``canon`` has, or None (a custom or unknown network)."""
    found = canonical_signature(canon)
    for name in ARCHS:
        expected = spec_signature(build_network_spec(name))
        if found.stem_channels == expected.stem_channels and found.blocks == expected.blocks and \
                found.head_channels in (None, expected.head_channels):
            return name
    return None


def to_mmeffnet(canon: Dict[str, torch.Tensor],
                spec: NetworkSpec,
                classifier_prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Place canonical tensors on mmeffnet's levels (``layers.{level}.{i}``) as ``spec`` groups them.

    Blocks beyond the spec's count keep their global index under a ``blocks.`` name, so a strict
    load reports them as unexpected instead of silently dropping them. The classifier is kept
    under ``classifier_prefix`` (``'head.fc'`` for mmpretrain's LinearClsHead) or dropped if None.
    """
    positions = [(b.level, b.position) for b in spec.blocks()]
    out = {}
    for key, value in canon.items():
        if key.startswith('stem.'):
            out['layers.0.' + key[len('stem.'):]] = value
        elif key.startswith('head.'):
            out[f'layers.{HEAD_LEVEL}.' + key[len('head.'):]] = value
        elif key.startswith('fc.'):
            if classifier_prefix:
                out[f'{classifier_prefix}.{key[len("fc."):]}'] = value
        else:
            m = _BLOCK_KEY.match(key)
            if m is None:
                raise ConversionError(f'internal: non-canonical key {key!r}')
            j = int(m.group(1))
            if j < len(positions):
                level, i = positions[j]
                out[f'layers.{level}.{i}.{m.group(2)}'] = value
            else:
                out[key] = value
    return out


def with_batch_counters(canon: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Add a zero ``num_batches_tracked`` to every BN that lacks one (TF checkpoints have none),
    so the result loads into a PyTorch model without 'missing key' noise."""
    out = dict(canon)
    for key in canon:
        if key.endswith('.running_mean'):
            counter = key[:-len('running_mean')] + 'num_batches_tracked'
            out.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return out


def rename_all(state: Dict[str, torch.Tensor], rename, source: str) -> Dict[str, torch.Tensor]:
    """Apply ``rename(key) -> canonical key | None`` to every key; unknown keys are an error,
    never silently dropped (a partial conversion would half-load)."""
    out, unknown = {}, []
    for key, value in state.items():
        new = rename(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        shown = ', '.join(unknown[:8]) + (f' ... (+{len(unknown) - 8} more)' if len(unknown) > 8 else '')
        raise ConversionError(f'{len(unknown)} keys of this {source} checkpoint have no EfficientNet '
                              f'counterpart: {shown}. Is it a {source} EfficientNet (B0-B8/L2/Lite)?')
    return out
