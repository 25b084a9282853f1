"""The BiFPN neck of EfficientDet (Tan, Pang & Le, CVPR 2020), registered as ``mmeffnet.BiFPN``.

Inputs P3..P5 come from the backbone (``EfficientNet(out_indices=(3, 4, 5))``); P6 and P7 are made
from the last input by a 1x1 conv + BN (where the channels differ) and 3x3 stride-2 max pooling
with TF SAME padding. Then ``num_repeats`` identical cells each run a top-down path (P6 down to P3)
and a bottom-up path (P4 up to P7). Every node fuses its inputs -- resized to its level by nearest
upsampling or SAME max pooling, brought to the BiFPN width by a 1x1 conv + BN where the channels
differ -- by fast normalized fusion ``sum_i relu(w_i) x_i / (sum_j relu(w_j) + 1e-4)`` (or a plain sum),
then applies SiLU -> depthwise 3x3 -> pointwise 1x1 -> BN. The graph, the order of operations and
the parameters are those of google/automl's BiFPN and of effdet (``effdet.efficientdet.BiFpn``), except
that their redundant conv bias before each BN is folded into the BN (``mmeffnet.converters.from_effdet``).
"""
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule

from ..arch.efficientdet import FUSIONS
from ..registry import MODELS
from .layers import (ConvBNAct, _is_tracing, init_convs_and_norms, make_conv, recompute_scope, runs_channels_last,
                     same_padding)
from .memory_saving import check_memory_policy

FUSION_EPS = 1e-4  # automl's epsilon of fast normalized fusion


def separable_conv(in_channels: int,
                   out_channels: int,
                   norm_cfg: Optional[dict] = None,
                   act_cfg: Optional[dict] = None,
                   bias: bool = False,
                   memory: str = 'recompute-pointwise') -> nn.Sequential:
    """Depthwise 3x3 (no bias) -> pointwise 1x1, named ``depthwise`` and ``pointwise``.

    With a norm (or an activation) the pointwise step is a :class:`ConvBNAct`; without either it
    is a bare conv with a bias if ``bias`` (the head's prediction convs).
    """
    depthwise = make_conv(in_channels, in_channels, 3, groups=in_channels)
    if norm_cfg is None and act_cfg is None:
        pointwise = make_conv(in_channels, out_channels, 1, bias=bias)
    else:
        pointwise = ConvBNAct(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg, memory=memory)
    return nn.Sequential(OrderedDict(depthwise=depthwise, pointwise=pointwise))


class MaxPool2dSame(nn.Module):
    """3x3 stride-2 max pooling with TF SAME padding (padded positions never win).

    Eager mode pads inside the pooling op when SAME is symmetric (odd sizes) and adds only the
    trailing row/column explicitly otherwise; traced (ONNX, torch.export) it writes the padding as
    shape arithmetic, so one graph serves every input size.
    """
    kernel_size, stride = 3, 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        if _is_tracing():
            pads = []
            for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
                total = ((size + s - 1) // s - 1) * s + k - size  # >= 1 because k > s
                pads += [total // 2, total - total // 2]
            return F.max_pool2d(F.pad(x, pads, value=float('-inf')), k, s)
        top, bottom = same_padding(x.shape[-2], k, s, 1)
        left, right = same_padding(x.shape[-1], k, s, 1)
        if bottom != top or right != left:
            x = F.pad(x, (0, right - left, 0, bottom - top), value=float('-inf'))
        return F.max_pool2d(x, k, s, (top, left))


@dataclass(frozen=True)
class FusionNode:
    """One node of a BiFPN cell: its pyramid level (0 = the first input, P3) and the features it
    fuses, as indices into the cell's feature list (0..L-1 the cell's inputs, L + n node n)."""
    level: int
    inputs: Tuple[int, ...]


def bifpn_nodes(num_levels: int) -> Tuple[FusionNode, ...]:
    """The nodes of one BiFPN cell over ``num_levels`` levels, in evaluation order (automl's
    ``bifpn_config``): top-down from the second-highest level to the lowest, each fusing its own
    level with the node above; then bottom-up from the second level to the highest, each fusing
    its input and its top-down node (if any) with the node below."""
    latest = {level: [level] for level in range(num_levels)}  # every feature of a level, in order
    nodes = []

    def add(level: int, inputs: List[int]) -> None:
        nodes.append(FusionNode(level, tuple(inputs)))
        latest[level].append(num_levels + len(nodes) - 1)

    for level in range(num_levels - 2, -1, -1):
        add(level, [latest[level][-1], latest[level + 1][-1]])
    for level in range(1, num_levels):
        add(level, latest[level] + [latest[level - 1][-1]])
    return tuple(nodes)


class BiFPNNode(nn.Module):
    """Fuse the inputs of a :class:`FusionNode`, then SiLU -> separable conv -> BN.

    ``laterals[str(i)]`` is the 1x1 conv + BN of input ``i`` where its channels differ from the
    width; ``weight`` holds the fusion weights (absent for the plain sum).
    """

    def __init__(self, node: FusionNode, input_levels: Sequence[int], input_channels: Sequence[int], channels: int,
                 fusion: str, norm_cfg: dict, act_cfg: dict, memory: str):
        super().__init__()
        self.inputs = node.inputs
        # how each input reaches this node's level: -1 pool once, +1 upsample, 0 as is
        self.moves = tuple(max(-1, min(1, level - node.level)) for level in input_levels)
        self.laterals = nn.ModuleDict()
        for i, c in zip(self.inputs, input_channels):
            if c != channels:
                self.laterals[str(i)] = ConvBNAct(c, channels, 1, norm_cfg=norm_cfg, act_cfg=None, memory=memory)
        self.pool = MaxPool2dSame()
        self.weight = nn.Parameter(torch.ones(len(self.inputs))) if fusion == 'fast' else None
        self.act = build_activation_layer(act_cfg)
        self.conv = separable_conv(channels, channels, norm_cfg, None, memory=memory)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        target = features[self.inputs[0]]  # the first input is at this node's level
        fused = None
        weights = None
        if self.weight is not None:
            weights = F.relu(self.weight.to(target.dtype))
            weights = weights / (weights.sum() + FUSION_EPS)
        for k, (i, move) in enumerate(zip(self.inputs, self.moves)):
            x = features[i]
            if str(i) in self.laterals:
                x = self.laterals[str(i)](x)
            if move < 0:
                x = self.pool(x)
            elif move > 0:
                x = F.interpolate(x, size=target.shape[-2:], mode='nearest')
            if weights is not None:
                x = x * weights[k]
            fused = x if fused is None else fused + x
        return self.conv(self.act(fused))


class BiFPNCell(nn.Module):
    """One top-down + bottom-up pass: ``num_levels`` features in, ``num_levels`` out (same sizes)."""

    def __init__(self, in_channels: Sequence[int], channels: int, fusion: str, norm_cfg: dict, act_cfg: dict,
                 memory: str):
        super().__init__()
        num_levels = len(in_channels)
        graph = bifpn_nodes(num_levels)
        levels = list(range(num_levels)) + [n.level for n in graph]
        widths = list(in_channels) + [channels] * len(graph)
        self.nodes = nn.ModuleList()
        for n in graph:
            input_levels, input_widths = [levels[i] for i in n.inputs], [widths[i] for i in n.inputs]
            self.nodes.append(BiFPNNode(n, input_levels, input_widths, channels, fusion, norm_cfg, act_cfg, memory))
        # a level's output is its last node
        self.outputs = tuple(num_levels + max(j for j, n in enumerate(graph) if n.level == level)
                             for level in range(num_levels))

    def forward(self, inputs: List[torch.Tensor]) -> List[torch.Tensor]:
        features = list(inputs)
        for node in self.nodes:
            features.append(node(features))
        return [features[i] for i in self.outputs]


class ExtraLevel(nn.Module):
    """A coarser level made from the one below: 1x1 conv + BN (``lateral``, only where the channels
    differ), then SAME max pooling."""

    def __init__(self, in_channels: int, channels: int, norm_cfg: dict, memory: str):
        super().__init__()
        self.lateral = (
            ConvBNAct(in_channels, channels, 1, norm_cfg=norm_cfg, act_cfg=None, memory=memory)
            if in_channels != channels else None)
        self.pool = MaxPool2dSame()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x if self.lateral is None else self.lateral(x))


@MODELS.register_module()
class BiFPN(BaseModule):
    """Bidirectional feature pyramid network (EfficientDet's neck).

    Args:
        in_channels (Sequence[int]): channels of the backbone features, finest first; for
            EfficientDet the backbone levels 3, 4, 5 (``mmeffnet.arch.efficientdet.backbone_level_channels``).
        out_channels (int): the BiFPN width (64 for D0 ... 384 for D6/D7).
        num_outs (int): output levels; those beyond the inputs are made by :class:`ExtraLevel`.
            Defaults to 5 (P3..P7).
        num_repeats (int): BiFPN cells (3 for D0 ... 8 for D6/D7). Defaults to 3.
        fusion (str): ``'fast'`` (fast normalized fusion) or ``'sum'`` (D6, D7). Defaults to ``'fast'``.
        norm_cfg (dict): norm layer. Defaults to BN with TF's eps 1e-3 and momentum 0.01.
        act_cfg (dict): activation applied to each fused sum. Defaults to SiLU.
        memory (str): what training keeps for backward, as the backbone's ``memory``:
            ``'plain'``, ``'save-bn-input'`` (BN keeps only its input) or ``'recompute-pointwise'``
            (that, and the BN outputs the fusions read are rebuilt in backward, once per backward
            however many fusions read them). Defaults to ``'recompute-pointwise'``, as the
            backbone's: EfficientDet-D0's training step keeps 5 % less than with BiFPN and head on
            'save-bn-input', in the same time (docs/efficientdet.md).
        channels_last (bool, optional): run NCHW inputs internally in channels_last (outputs are
            handed back NCHW); None decides per device (on for CPU, where it is measured faster).
        init_cfg (dict, optional): None: ``init_weights()`` applies the official initialisation
            (Glorot uniform convs, unit BN); otherwise mmengine's initialisers.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_outs: int = 5,
                 num_repeats: int = 3,
                 fusion: str = 'fast',
                 norm_cfg: dict = dict(type='BN', eps=1e-3, momentum=0.01),
                 act_cfg: dict = dict(type='SiLU'),
                 memory: str = 'recompute-pointwise',
                 channels_last: Optional[bool] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg)
        in_channels = [in_channels] if isinstance(in_channels, int) else list(in_channels)
        if not in_channels or not all(isinstance(c, int) and c > 0 for c in in_channels):
            raise ValueError(f'BiFPN in_channels must be a non-empty list of positive ints, got {in_channels!r}')
        if not isinstance(num_outs, int) or num_outs < len(in_channels):
            raise ValueError(f'BiFPN num_outs={num_outs!r} must be an int >= the {len(in_channels)} inputs '
                             f'(in_channels={in_channels})')
        if num_outs < 2:
            raise ValueError(f'BiFPN needs at least 2 levels, got num_outs={num_outs}')
        if not isinstance(num_repeats, int) or num_repeats < 1:
            raise ValueError(f'BiFPN num_repeats={num_repeats!r} must be a positive int')
        if fusion not in FUSIONS:
            raise ValueError(f'BiFPN fusion={fusion!r} is not supported; choose one of {FUSIONS}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.memory = check_memory_policy(memory)
        self.channels_last = channels_last
        self.extra_levels = nn.ModuleList()
        level_channels = list(in_channels)
        for _ in range(num_outs - len(in_channels)):
            self.extra_levels.append(ExtraLevel(level_channels[-1], out_channels, norm_cfg, memory))
            level_channels.append(out_channels)
        self.cells = nn.ModuleList()
        for _ in range(num_repeats):
            self.cells.append(BiFPNCell(level_channels, out_channels, fusion, norm_cfg, act_cfg, memory))
            level_channels = [out_channels] * num_outs

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        if not _is_tracing():  # a traced graph keeps its shapes; the check would only add warnings
            self._check_inputs(inputs)
        restore_format = runs_channels_last(inputs[0], self.channels_last)
        features = [x.contiguous(memory_format=torch.channels_last) for x in inputs] if restore_format else list(inputs)
        with recompute_scope(self.memory):
            for extra in self.extra_levels:
                features.append(extra(features[-1]))
            for cell in self.cells:
                features = cell(features)
        return tuple(x.contiguous() for x in features) if restore_format else tuple(features)

    def _check_inputs(self, inputs: Sequence[torch.Tensor]) -> None:
        got = [int(x.shape[1]) for x in inputs]
        if got != self.in_channels:
            raise ValueError(f'BiFPN expects {len(self.in_channels)} feature maps with channels {self.in_channels} '
                             f'(finest first: set the backbone out_indices/channels to match, e.g. EfficientNet '
                             f'out_indices=(3, 4, 5)), got {len(got)} with channels {got}')

    def init_weights(self) -> None:
        if self.init_cfg is not None:
            super().init_weights()
            return
        init_convs_and_norms(self, glorot_uniform_)
        for m in self.modules():
            if isinstance(m, BiFPNNode) and m.weight is not None:
                nn.init.ones_(m.weight)  # equal fusion weights to start with
        self._is_init = True


def glorot_uniform_(conv: nn.Conv2d) -> None:
    """TF's Glorot uniform init with fans counted per group (as effdet initialises its BiFPN),
    zero bias."""
    receptive = conv.kernel_size[0] * conv.kernel_size[1]
    fan_in = conv.in_channels // conv.groups * receptive
    fan_out = conv.out_channels // conv.groups * receptive
    limit = math.sqrt(6. / (fan_in + fan_out))
    nn.init.uniform_(conv.weight, -limit, limit)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
