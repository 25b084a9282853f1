"""Parameters and multiply-adds of the model a config builds, counted without computing anything
(the search's cost measure; timing on a device is ``tools/analysis/benchmark.py``'s job).

The model is built from ``cfg.model`` by its toolbox (mmdet, mmseg or mmpretrain) under
``torch.device('meta')``: tensors have shapes and no storage, initialisation and the forward pass
compute nothing, so even a detector at 2000+ px is counted in a fraction of a second; should a
module not support ``meta``, it is counted on the CPU instead. What is counted is what
``mmeffnet.analysis.complexity`` counts (Conv2d and Linear multiply-adds, as Table 2 does) in one
forward of the model in ``mode='tensor'`` (backbone, neck and head; no post-processing, no
auxiliary training heads) at the training input size. Should that forward need more than a tensor
(e.g. two-stage detectors), the count falls back to ``extract_feat`` (backbone + neck), then the
backbone alone, and ``Complexity.counted`` says which.
"""
import copy
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config

from ..analysis.complexity import count_macs_split, count_params
from ..arch import build_network_spec
from ..config import toolbox_of
from ..models.efficientnet import EfficientNet
from .config_scaling import find_backbone
from .config_scaling import input_size as config_input_size

WHOLE, NECK, BACKBONE = 'whole model', 'backbone + neck', 'backbone'


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    backbone_params: int
    backbone_macs: int
    input_size: Tuple[int, int]
    counted: str


def network_key(cfg: Config, size: Tuple[int, int]) -> tuple:
    """What decides the counts: the rounded backbone (channels, repeats, outputs) and input size.
    Two eq. 3 candidates that round to the same key build the same network."""
    backbone, _, _ = find_backbone(cfg)
    spec = build_network_spec(backbone.get('arch', 'b0'))
    stages = tuple((s.out_channels, s.repeats) for s in spec.stages)
    return (spec.stem_channels, stages, spec.head_channels, tuple(backbone.get('out_indices',
                                                                               (6, ))), spec.params.lite, tuple(size))


def _build(cfg: Config) -> nn.Module:
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(toolbox_of(cfg))
    return MODELS.build(copy.deepcopy(cfg.model))


def _backbone_of(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, EfficientNet):
            return m
    raise ValueError('the built model holds no mmeffnet.EfficientNet')


def _identity(x):
    return x


def _count(cfg: Config, shape: Tuple[int, ...], level: Optional[str]) -> Tuple[int, int, int, int, str]:
    model = _build(cfg)
    backbone = _backbone_of(model)
    for m in model.modules():
        # Norm layers keep shapes and add no counted MACs; on meta they are slow Python
        # decompositions, so this throw-away model skips them.
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
            m.forward = _identity
    attempts = [(WHOLE, None)]
    if hasattr(model, 'extract_feat'):
        attempts.append((NECK, lambda m, x: m.extract_feat(x)))
    attempts.append((BACKBONE, lambda m, x: backbone(x)))
    if level is not None:
        attempts = [a for a in attempts if a[0] == level]
    for i, (counted, forward) in enumerate(attempts):
        try:
            macs = count_macs_split(model, shape, {'backbone': backbone}, forward)
        except Exception:  # noqa: BLE001 - try the next, smaller part of the model
            if i == len(attempts) - 1:
                raise
            continue
        return count_params(model), macs['total'], count_params(backbone), macs['backbone'], counted
    raise AssertionError('unreachable')


def measure_config(cfg: Config, size: Optional[Tuple[int, int]] = None, level: Optional[str] = None) -> Complexity:
    """Params and multiply-adds of the model ``cfg`` builds, at input ``size`` (H, W); by default
    the training input size (``config_scaling.input_size``).

    ``level`` (``WHOLE``, ``NECK`` or ``BACKBONE``) counts exactly that part, with no fallback, so
    that a scaled model is counted as its baseline was and an inconsistency in it (e.g. a head's
    channels) raises instead of being hidden by a smaller count."""
    size = tuple(size) if size is not None else config_input_size(cfg)
    backbone, _, _ = find_backbone(cfg)
    shape = (1, backbone.get('in_channels', 3), *size)
    try:
        with torch.device('meta'):
            counts = _count(cfg, shape, level)
    except (NotImplementedError, RuntimeError):
        counts = _count(cfg, shape, level)  # a module without meta support: count for real on the CPU
    params, macs, backbone_params, backbone_macs, counted = counts
    return Complexity(params, macs, backbone_params, backbone_macs, size, counted)
