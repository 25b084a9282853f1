"""effdet (rwightman's ``effdet``) ``tf_efficientdet_d0``..``d7`` -> an mmdet detector with mmeffnet's
EfficientNet backbone, ``mmeffnet.BiFPN`` neck and ``mmeffnet.EfficientDetHead``.

What changes on the way (everything else is a rename):

* the backbone (a timm ``tf_efficientnet_b*`` feature extractor) goes through the timm converter;
* the redundant conv bias before every BatchNorm of the TF models (effdet's ``redundant_bias``) is
  folded into that BatchNorm: ``running_mean -= bias``. Eval outputs are the same; in training a
  bias before BN has no effect (BN subtracts the batch mean), so nothing is lost. In the head one
  shared conv bias is folded into each level's norm;
* box deltas: effdet predicts ``(ty, tx, th, tw)`` per anchor, mmdet's ``DeltaXYWHBBoxCoder`` reads
  ``(dx, dy, dw, dh)``, so the box prediction conv's output channels are swapped in pairs;
* classes (``coco80=True``): effdet's COCO head has 90 outputs, output ``i`` being COCO category id
  ``i + 1`` (ids 12, 26, 29, 30, 45, 66, 68, 69, 71 and 83 are unused). mmdet's ``CocoDataset`` numbers
  the 80 used ids contiguously in id order, so class ``c`` of ours is effdet's output
  ``COCO80_IDS[c] - 1``; the other 10 outputs are dropped. With ``coco80=False`` every class is kept
  in effdet's order (a head fine-tuned on another dataset).

Anchors need no reordering: ``EfficientDetHead``'s default anchor generator
(``mmeffnet.EfficientDetAnchorGenerator``) lists automl's anchors in automl's order.
"""
import re
from typing import Dict, List, Optional, Tuple

import torch

from ..arch import build_network_spec
from ..arch.efficientdet import (ANCHOR_ASPECTS, BACKBONE_LEVELS, EFFICIENTDET_ARCHS, SCALES_PER_OCTAVE,
                                 resolve_efficientdet_arch)
from . import from_mmpretrain, from_timm
from .canonical import ConversionError, infer_arch, to_mmeffnet, with_batch_counters

LAYOUT = 'effdet'
NUM_ANCHORS = SCALES_PER_OCTAVE * len(ANCHOR_ASPECTS)
EFFDET_COCO_CLASSES = 90
#: the COCO category ids mmdet's CocoDataset uses, in its (contiguous label) order
COCO80_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33,
              34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60,
              61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)
#: effdet's (ty, tx, th, tw) position of each of mmdet's (dx, dy, dw, dh)
BOX_ORDER = (1, 0, 3, 2)
#: the top-level modules of effdet's EfficientDet
EFFDET_PREFIXES = ('backbone', 'fpn', 'class_net', 'box_net')
#: what effdet's benches keep beside ``model.*``
BENCH_BUFFERS = ('anchors.boxes', )

_BN = r'(weight|bias|running_mean|running_var|num_batches_tracked)'
_EXTRA = re.compile(r'^fpn\.resample\.(\d+)\.conv\.(conv|bn)\.(.+)$')
_LATERAL = re.compile(r'^fpn\.cell\.(\d+)\.fnode\.(\d+)\.combine\.resample\.(\d+)\.conv\.(conv|bn)\.(.+)$')
_FUSION = re.compile(r'^fpn\.cell\.(\d+)\.fnode\.(\d+)\.combine\.edge_weights$')
_NODE = re.compile(r'^fpn\.cell\.(\d+)\.fnode\.(\d+)\.after_combine\.conv\.(conv_dw|conv_pw|bn)\.(.+)$')
_HEAD_CONV = re.compile(r'^(class|box)_net\.conv_rep\.(\d+)\.(conv_dw|conv_pw)\.(weight|bias)$')
_HEAD_NORM = re.compile(r'^(class|box)_net\.bn_rep\.(\d+)\.(\d+)\.bn\.' + _BN + '$')
_PREDICT = re.compile(r'^(class|box)_net\.predict\.(conv_dw|conv_pw)\.(weight|bias)$')
_BRANCH = {'class': 'cls', 'box': 'reg'}


def class_channel_sources(num_classes: int = EFFDET_COCO_CLASSES, coco80: bool = True) -> torch.Tensor:
    """For each output channel of our class prediction conv (``anchor * C + class``), the effdet
    channel it comes from."""
    classes = [i - 1 for i in COCO80_IDS] if coco80 else list(range(num_classes))
    return torch.tensor([a * num_classes + c for a in range(NUM_ANCHORS) for c in classes])


def box_channel_sources() -> torch.Tensor:
    """For each output channel of our box prediction conv (``anchor * 4 + coordinate``), the effdet
    channel it comes from."""
    return torch.tensor([a * 4 + k for a in range(NUM_ANCHORS) for k in BOX_ORDER])


def _strip_wrapper(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """effdet's benches (``DetBenchTrain``/``DetBenchPredict``, what its training saves) hold the
    network as ``model.*`` beside their anchor buffer ``anchors.boxes``; the released files have bare
    keys. The anchors are dropped: they are computed from the config, not learned, and
    ``EfficientDetHead``'s anchor generator makes the same ones."""
    bench = {k: v for k, v in state.items() if k not in BENCH_BUFFERS}
    if bench and all(k.startswith('model.') for k in bench):
        return {k[len('model.'):]: v for k, v in bench.items()}
    return state


def _check_layout(state: Dict[str, torch.Tensor]) -> None:
    """Refuse, naming the expected keys, a state dict that is not effdet's EfficientDet at all."""
    prefixes = sorted({k.split('.')[0] for k in state})
    missing = [p for p in EFFDET_PREFIXES if p not in prefixes]
    if missing:
        expected = ', '.join(f'{p}.*' for p in EFFDET_PREFIXES)
        raise ConversionError(f'not an effdet EfficientDet state dict: expected {expected} keys (or model.* of an '
                              f'effdet DetBench), found no {", ".join(missing)} keys; its top-level names are '
                              f'{prefixes[:8]}' + (' ...' if len(prefixes) > 8 else ''))


def _indices(state: Dict[str, torch.Tensor], pattern: str) -> List[int]:
    return sorted({int(m.group(1)) for m in map(re.compile(pattern).match, state) if m})


def describe_effdet(state: Dict[str, torch.Tensor]) -> dict:
    """What the tensors of an effdet state dict say about the network: backbone arch, BiFPN
    width/repeats/fusion, head repeats and classes."""
    state = _strip_wrapper(state)
    _check_layout(state)
    try:
        backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
        return dict(
            backbone=infer_arch(from_timm.to_canonical(backbone)),
            fpn_channels=int(state['fpn.cell.0.fnode.0.after_combine.conv.conv_pw.weight'].shape[0]),
            fpn_repeats=len(_indices(state, r'^fpn\.cell\.(\d+)\.')),
            head_repeats=len(_indices(state, r'^class_net\.conv_rep\.(\d+)\.')),
            fusion='fast' if 'fpn.cell.0.fnode.0.combine.edge_weights' in state else 'sum',
            num_classes=int(state['class_net.predict.conv_pw.weight'].shape[0]) // NUM_ANCHORS)
    except KeyError as exc:
        raise ConversionError(f'not an effdet EfficientDet state dict: it lacks {exc.args[0]}') from None


#: keys every mmeffnet EfficientDet state dict has (what ``convert_effdet`` writes, and a detector's
#: own ``state_dict()``): the first BiFPN node's output conv and the class prediction conv
_OUR_FPN_NODE = 'neck.cells.0.nodes.0.conv.pointwise.conv.weight'
_OUR_CLASS_PREDICT = 'bbox_head.conv_cls.pointwise.weight'


def describe_efficientdet(state: Dict[str, torch.Tensor]) -> Optional[dict]:
    """``describe_effdet``'s fields for a state dict in mmeffnet's names (an mmdet detector with
    mmeffnet's EfficientNet, BiFPN and EfficientDetHead); None when ``state`` is not one."""
    if _OUR_FPN_NODE not in state or _OUR_CLASS_PREDICT not in state:
        return None
    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    try:
        arch = infer_arch(from_mmpretrain.to_canonical(backbone))
    except ConversionError:
        arch = None
    return dict(
        backbone=arch,
        fpn_channels=int(state[_OUR_FPN_NODE].shape[0]),
        fpn_repeats=len(_indices(state, r'^neck\.cells\.(\d+)\.')),
        head_repeats=len(_indices(state, r'^bbox_head\.cls_convs\.(\d+)\.')),
        fusion='fast' if 'neck.cells.0.nodes.0.weight' in state else 'sum',
        num_classes=int(state[_OUR_CLASS_PREDICT].shape[0]) // NUM_ANCHORS)


def variants_with(sizes: dict) -> Tuple[str, ...]:
    """The released variants (``'d0'``..``'d7'``) with ``sizes`` (``describe_effdet``'s fields); D6 and
    D7 share every shape (they differ in input size and anchor scale only), so both are named for either."""
    fields = ('backbone', 'fpn_channels', 'fpn_repeats', 'head_repeats', 'fusion')
    return tuple(name for name, p in EFFICIENTDET_ARCHS.items() if all(getattr(p, f) == sizes[f] for f in fields))


def effdet_variants(state: Dict[str, torch.Tensor]) -> Tuple[str, ...]:
    """The released variants with the shapes of the effdet state dict ``state``."""
    return variants_with(describe_effdet(state))


def _summary(sizes: dict) -> str:
    return (f'backbone {sizes["backbone"]}, BiFPN {sizes["fpn_channels"]} x {sizes["fpn_repeats"]} '
            f'({sizes["fusion"]} fusion), head depth {sizes["head_repeats"]}')


def describe_variant(sizes: dict) -> str:
    """``'EfficientDet-d1 (backbone b1, BiFPN 88 x 4 (fast fusion), head depth 3, 80 classes)'``."""
    names = '/'.join(variants_with(sizes)) or '(no released variant)'
    return f'EfficientDet-{names} ({_summary(sizes)}, {sizes["num_classes"]} classes)'


def convert_effdet(state: Dict[str, torch.Tensor],
                   arch: Optional[str] = None,
                   coco80: bool = True) -> Dict[str, torch.Tensor]:
    """An effdet ``tf_efficientdet_d*`` state dict as the state dict of an mmdet single-stage detector
    (``backbone.*``, ``neck.*``, ``bbox_head.*``) built from mmeffnet's EfficientDet parts.

    ``arch`` (``'d0'``..``'d7'`` or an effdet/automl name), when given, must be what the shapes say.
    ``coco80`` maps the 90 COCO outputs onto mmdet's 80 classes (see the module docstring). Unknown
    keys are an error.
    """
    state = _strip_wrapper(state)
    found = describe_effdet(state)
    variants = variants_with(found)
    if arch is not None:
        expected = resolve_efficientdet_arch(arch)  # an unknown name lists the valid ones
        if expected.name not in variants:
            raise ConversionError(
                f'this checkpoint is not an EfficientDet-{expected.name} ({_summary(vars(expected))}): its tensors '
                f'say {_summary(found)}, i.e. {"/".join(variants) or "no released variant"}')
    if found['backbone'] is None:
        raise ConversionError('the backbone of this effdet checkpoint matches no EfficientNet arch')
    if coco80 and found['num_classes'] != EFFDET_COCO_CLASSES:
        raise ConversionError(f'coco80=True maps a {EFFDET_COCO_CLASSES}-class COCO head, but this head has '
                              f'{found["num_classes"]} classes: pass coco80=False to keep them as they are')

    num_levels = len(_indices(state, r'^class_net\.bn_rep\.0\.(\d+)\.'))
    sources = dict(cls=class_channel_sources(found['num_classes'], coco80), reg=box_channel_sources())
    out, folds, unknown = _convert_backbone(state, found['backbone']), [], []
    for key, value in state.items():
        if not key.startswith('backbone.'):
            renamed = _rename(key, value, num_levels, sources, folds)
            if renamed is None:
                unknown.append(key)
            else:
                out.update(renamed)
    if unknown:
        shown = ', '.join(unknown[:8]) + (f' ... (+{len(unknown) - 8} more)' if len(unknown) > 8 else '')
        raise ConversionError(f'{len(unknown)} keys of this effdet checkpoint have no counterpart: {shown}')
    for bias, norms in folds:  # conv bias before BN: bn(x + b) with mean m == bn(x) with mean m - b
        for norm in norms:
            out[f'{norm}.running_mean'] = out[f'{norm}.running_mean'] - bias
    return out


def _convert_backbone(state: Dict[str, torch.Tensor], arch: str) -> Dict[str, torch.Tensor]:
    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    canon = with_batch_counters(from_timm.to_canonical(backbone))
    return {f'backbone.{k}': v for k, v in to_mmeffnet(canon, build_network_spec(arch)).items()}


Folds = List[Tuple[torch.Tensor, List[str]]]


def _rename(key: str, value: torch.Tensor, num_levels: int, sources: Dict[str, torch.Tensor],
            folds: Folds) -> Optional[Dict[str, torch.Tensor]]:
    """Our key(s) for one neck/head tensor: ``{}`` when it is a bias to fold (recorded in ``folds``),
    None when the key is unknown."""
    m = _EXTRA.match(key)
    if m:
        level, part, rest = m.groups()
        return _conv_bn(f'neck.extra_levels.{int(level) - len(BACKBONE_LEVELS)}.lateral', part, rest, value, folds)
    m = _LATERAL.match(key)
    if m:
        cell, node, offset, part, rest = m.groups()
        return _conv_bn(f'neck.cells.{cell}.nodes.{node}.laterals.{offset}', part, rest, value, folds)
    m = _FUSION.match(key)
    if m:
        return {f'neck.cells.{m.group(1)}.nodes.{m.group(2)}.weight': value}
    m = _NODE.match(key)
    if m:
        cell, node, part, rest = m.groups()
        conv = f'neck.cells.{cell}.nodes.{node}.conv'
        if part == 'conv_dw':
            return {f'{conv}.depthwise.{rest}': value}
        return _conv_bn(f'{conv}.pointwise', 'conv' if part == 'conv_pw' else 'bn', rest, value, folds)
    m = _HEAD_CONV.match(key)
    if m:
        branch, rep, part, param = _BRANCH[m.group(1)], m.group(2), m.group(3), m.group(4)
        if part == 'conv_dw':
            return {f'bbox_head.{branch}_convs.{rep}.depthwise.{param}': value}
        if param == 'bias':  # one shared conv, a norm per level: fold into each
            folds.append((value, [f'bbox_head.{branch}_norms.{rep}.{level}' for level in range(num_levels)]))
            return {}
        return {f'bbox_head.{branch}_convs.{rep}.pointwise.weight': value}
    m = _HEAD_NORM.match(key)
    if m:
        branch, rep, level, param = _BRANCH[m.group(1)], m.group(2), m.group(3), m.group(4)
        return {f'bbox_head.{branch}_norms.{rep}.{level}.{param}': value}
    m = _PREDICT.match(key)
    if m:
        branch, part, param = _BRANCH[m.group(1)], m.group(2), m.group(3)
        if part == 'conv_dw':
            return {f'bbox_head.conv_{branch}.depthwise.{param}': value}
        return {f'bbox_head.conv_{branch}.pointwise.{param}': value[sources[branch]].contiguous()}
    return None


def _conv_bn(prefix: str, part: str, rest: str, value: torch.Tensor, folds: Folds) -> Dict[str, torch.Tensor]:
    """A conv + BN pair (our ``ConvBNAct``: ``conv``, ``bn``); its conv bias is folded into the BN."""
    if part == 'conv' and rest == 'bias':
        folds.append((value, [f'{prefix}.bn']))
        return {}
    return {f'{prefix}.{part}.{rest}': value}
