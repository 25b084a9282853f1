"""The network plan: every EfficientNet as data, worked out once.

``build_network_spec(arch)`` scales Table 1 (channels and repeats, rounded in :mod:`.scaling`) into
a :class:`NetworkSpec`; ``spec.blocks(...)`` lays out every MBConv block (level, index, channels,
kernel, stride, dilation for an output stride, drop-path rate) and ``spec.level_strides(...)`` the
stride of every level. The backbone builds from these, the converters place weights by them and the
config tools read channels from them; nothing else repeats the walk over the stages.

Levels (``out_indices``): 0 stem (stride 2), 1..5 the stages ending at strides 2, 4, 8, 16, 32
(a stride-1 stage joins the level before it), 6 the 1x1 head conv.
"""
from dataclasses import dataclass, field
from typing import List, Tuple, Union

import torch

from .scaling import (B0_HEAD_CHANNELS, B0_STAGES, B0_STEM_CHANNELS, ArchParams, MBConvStage, resolve_arch,
                      round_channels, round_repeats)

NUM_LEVELS = 7  # stem, five MBConv levels, 1x1 head
HEAD_LEVEL = NUM_LEVELS - 1
STEM_STRIDE = 2
OUTPUT_STRIDES = (8, 16, 32)
#: per-block stochastic depth rules: mmdet/mmpretrain's ``torch.linspace(0, rate, N)`` (the last
#: block gets ``rate``) and TF's / timm's / torchvision's ``rate * i / N``
DROP_PATH_SCHEDULES = ('linspace', 'tf')


def drop_path_rates(rate: float, num_blocks: int, schedule: str = 'linspace') -> List[float]:
    """Stochastic depth rate of each of ``num_blocks`` MBConv blocks (see ``DROP_PATH_SCHEDULES``)."""
    if schedule not in DROP_PATH_SCHEDULES:
        raise ValueError(f'drop_path_schedule={schedule!r} is not supported; choose one of {DROP_PATH_SCHEDULES}')
    if schedule == 'linspace':
        # float32 values as mmdet/mmpretrain compute them, so the rates match theirs bit for bit;
        # on the CPU explicitly, because models are also built under ``torch.device('meta')``
        return torch.linspace(0, rate, num_blocks, device='cpu').tolist()
    return [rate * i / num_blocks for i in range(num_blocks)]


@dataclass(frozen=True)
class StageSpec:
    """A scaled, rounded stage (a run of blocks). ``level`` is its ``out_indices`` level."""
    expand_ratio: int
    kernel_size: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int
    level: int


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block as built: ``layers.{level}.{position}``, block ``index`` of the network."""
    index: int
    level: int
    position: int
    in_channels: int
    out_channels: int
    expand_ratio: int
    kernel_size: int
    stride: int
    dilation: int
    se_channels: int  # 0: no squeeze-and-excitation (Lite)
    drop_path_rate: float

    @property
    def mid_channels(self) -> int:
        return self.in_channels * self.expand_ratio

    @property
    def has_shortcut(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True)
class NetworkSpec:
    """The whole scaled network: stem, MBConv stages and 1x1 head, channels already rounded."""
    params: ArchParams
    stem_channels: int
    stages: Tuple[StageSpec, ...]
    head_channels: int
    level_channels: Tuple[int, ...] = field(default=())

    @property
    def num_blocks(self) -> int:
        return sum(s.repeats for s in self.stages)

    def blocks(self,
               output_stride: int = 32,
               drop_path_rate: float = 0.,
               drop_path_schedule: str = 'linspace') -> Tuple[BlockSpec, ...]:
        """Every MBConv block, in network order.

        Below ``output_stride`` 32, a stage whose stride would pass it keeps stride 1 and dilates
        instead; its first block keeps the dilation it had, the rest take the new one.
        """
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f'output_stride={output_stride!r} is not supported; choose one of {OUTPUT_STRIDES}')
        rates = drop_path_rates(drop_path_rate, self.num_blocks, drop_path_schedule)
        se_ratio = self.params.se_ratio
        blocks, stride, dilation, per_level = [], STEM_STRIDE, 1, {}
        for stage in self.stages:
            for i in range(stage.repeats):
                block_stride, block_dilation = 1, dilation
                if i == 0 and stage.stride > 1:
                    if stride * stage.stride > output_stride:
                        dilation *= stage.stride
                    else:
                        stride *= stage.stride
                        block_stride = stage.stride
                in_channels = stage.in_channels if i == 0 else stage.out_channels
                position = per_level.get(stage.level, 0)
                per_level[stage.level] = position + 1
                blocks.append(
                    BlockSpec(
                        index=len(blocks),
                        level=stage.level,
                        position=position,
                        in_channels=in_channels,
                        out_channels=stage.out_channels,
                        expand_ratio=stage.expand_ratio,
                        kernel_size=stage.kernel_size,
                        stride=block_stride,
                        dilation=block_dilation,
                        # EfficientNet squeezes to a fraction of the block's *input* channels
                        se_channels=max(1, int(in_channels * se_ratio)) if se_ratio > 0 else 0,
                        drop_path_rate=rates[len(blocks)]))
        return tuple(blocks)

    def level_strides(self, output_stride: int = 32) -> Tuple[int, ...]:
        """The stride of every level's output (all ``NUM_LEVELS``)."""
        blocks = self.blocks(output_stride)
        strides = [STEM_STRIDE]
        for level in range(1, HEAD_LEVEL):
            stride = strides[-1]
            for block in blocks:
                if block.level == level:
                    stride *= block.stride
            strides.append(stride)
        return tuple(strides + [strides[-1]])


def build_network_spec(arch: Union[str, dict, ArchParams],
                       base_stages: Tuple[MBConvStage, ...] = B0_STAGES) -> NetworkSpec:
    """Scale Table 1 by ``arch``: the rounded channels, repeats and output level of every stage."""
    params = resolve_arch(arch)
    w, d = params.width_mult, params.depth_mult
    stem = B0_STEM_CHANNELS if params.lite else round_channels(B0_STEM_CHANNELS, w)
    head = B0_HEAD_CHANNELS if params.lite else round_channels(B0_HEAD_CHANNELS, w)
    stages, in_ch, level = [], stem, 1
    for i, s in enumerate(base_stages):
        if s.stride > 1 and i > 0:
            level += 1
        fixed_depth = params.lite and i in (0, len(base_stages) - 1)
        out_ch = round_channels(s.out_channels, w)
        repeats = s.repeats if fixed_depth else round_repeats(s.repeats, d)
        stages.append(StageSpec(s.expand_ratio, s.kernel_size, s.stride, in_ch, out_ch, repeats, level))
        in_ch = out_ch
    level_channels = [stem]
    for lvl in range(1, level + 1):
        level_channels.append([s.out_channels for s in stages if s.level == lvl][-1])
    level_channels.append(head)
    return NetworkSpec(params, stem, tuple(stages), head, tuple(level_channels))
