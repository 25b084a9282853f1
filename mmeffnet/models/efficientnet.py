"""The EfficientNet backbone (Tan & Le, ICML 2019), registered as ``mmeffnet.EfficientNet``."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..arch import HEAD_LEVEL, NUM_LEVELS, ArchParams, NetworkSpec, build_network_spec
from ..registry import MODELS
from .layers import PADDING_MODES, ConvBNAct, LayerOptions, MBConv, init_tf_style, runs_channels_last


def _norm_layer_types() -> tuple:
    types = [_BatchNorm]
    try:  # mmcv's own SyncBN (type='MMSyncBN') is not a torch _BatchNorm
        from mmcv.ops import SyncBatchNorm as MMSyncBN
        types.append(MMSyncBN)
    except ImportError:
        pass
    return tuple(types)


@MODELS.register_module()
class EfficientNet(BaseModule):
    """EfficientNet backbone with multi-scale outputs.

    Levels (``out_indices``), numbered as in mmdet/mmpretrain's EfficientNet:
    0 = stem (stride 2), 1..5 = MBConv stages ending at strides 2, 4, 8, 16, 32, 6 = the 1x1 head
    conv (stride 32). B3 with ``out_indices=(3, 4, 5)`` gives channels ``[48, 136, 384]``.
    Levels after the last requested one are not built.

    Args:
        arch (str | dict): ``'b0'``..``'b8'``, ``'l2'``, ``'lite0'``..``'lite4'``;
            ``dict(phi=..., alpha=1.2, beta=1.1, gamma=1.15)`` for eq. 3 of the paper; or
            ``dict(width_mult=..., depth_mult=..., resolution=...)``. Defaults to ``'b0'``.
        out_indices (Sequence[int]): levels to return, negative allowed; returned in level order.
            Defaults to ``(6,)`` (the features a classifier pools).
        frozen_stages (int): as in mmdet/mmpretrain's EfficientNet: k freezes ``layers[0..k-1]``
            (1 = the stem, 7 = everything) and keeps their norm layers in eval mode; 0 and -1
            (ResNet's "none") freeze nothing. Defaults to -1.
        in_channels (int): input image channels. Defaults to 3.
        drop_path_rate (float): stochastic depth rate, spread over the N blocks by
            ``drop_path_schedule``. Defaults to 0.2 (survival probability 0.8, the paper's).
        drop_path_schedule (str): ``'linspace'``: block i gets ``torch.linspace(0, rate, N)[i]``,
            as mmdet's and mmpretrain's EfficientNet (the RetinaNet recipe's rule); ``'tf'``:
            ``rate * i / N``, as the TF reference, timm and torchvision. Defaults to ``'linspace'``.
        output_stride (int): 32, 16 or 8; below 32 the last stride-2 stages use stride 1 and
            dilated depthwise convs instead (for segmentation heads). Defaults to 32.
        padding (str): ``'same'`` (TF SAME, for TF-ported weights such as mmpretrain's and
            timm's ``tf_*``) or ``'symmetric'`` (torchvision, timm's ``efficientnet_*``).
            Defaults to ``'same'``.
        norm_cfg (dict): norm layer. Defaults to BN with TF's eps 1e-3 and momentum 0.01
            (decay 0.99).
        act_cfg (dict, optional): activation; None picks in-place SiLU (ReLU6 for Lite).
        norm_eval (bool): keep every BatchNorm (SyncBN included) in eval mode while training.
        with_cp (bool): non-reentrant gradient checkpointing per MBConv block.
        memory (str): what training keeps for backward, the forward bitwise the same under each:
            ``'plain'`` (the modules as they are), ``'save-bn-input'`` (BN + activation keep only
            the BN input, :mod:`mmeffnet.models.memory_saving`), ``'recompute-pointwise'`` (that,
            and each MBConv's activation outputs and SE product rebuilt in backward from the kept
            BN inputs and SE gate, :mod:`mmeffnet.models.recompute`). Defaults to
            ``'recompute-pointwise'`` (the least memory at the measured cost, docs/benchmarks.md).
        channels_last (bool, optional): run NCHW inputs internally in channels_last (outputs are
            handed back NCHW); None decides per device (on for CPU, where it is measured faster).
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=..., prefix='backbone')``
            loads a checkpoint (OpenMMLab, timm, torchvision or lukemelas layout) and raises on any
            missing, unexpected or mis-shaped key; None: ``init_weights()`` applies the TF reference
            initialisation (convs N(0, 2 / fan_out), unit norms). Until ``init_weights()`` the weights
            are PyTorch's defaults, as in every OpenMMLab module.
    """

    def __init__(self,
                 arch: Union[str, dict, ArchParams] = 'b0',
                 out_indices: Sequence[int] = (6, ),
                 frozen_stages: int = -1,
                 in_channels: int = 3,
                 drop_path_rate: float = 0.2,
                 drop_path_schedule: str = 'linspace',
                 output_stride: int = 32,
                 padding: str = 'same',
                 norm_cfg: dict = dict(type='BN', eps=1e-3, momentum=0.01),
                 act_cfg: Optional[dict] = None,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 memory: str = 'recompute-pointwise',
                 channels_last: Optional[bool] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg)
        self.spec: NetworkSpec = build_network_spec(arch)
        self.out_indices = self.check_out_indices(out_indices)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= NUM_LEVELS:
            raise ValueError(f'frozen_stages={frozen_stages!r} is out of range: use -1..{NUM_LEVELS} '
                             f'(-1 or 0 freeze nothing, k freezes the first k levels: 1 = the stem, '
                             f'{NUM_LEVELS} = stem..head)')
        if padding not in PADDING_MODES:
            raise ValueError(f'padding={padding!r} is not supported; choose one of {PADDING_MODES}')
        if not 0. <= drop_path_rate < 1.:
            raise ValueError(f'drop_path_rate={drop_path_rate!r} must be in [0, 1)')
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'in_channels={in_channels!r} must be a positive int')
        self.arch = arch
        self.in_channels = in_channels
        self.frozen_stages = frozen_stages
        self.drop_path_schedule = drop_path_schedule
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.padding = padding
        self.output_stride = output_stride
        self.memory = memory
        self.channels_last = channels_last
        self.fused = False
        if act_cfg is None:
            act_cfg = dict(type='ReLU6', inplace=True) if self.spec.params.lite else dict(type='SiLU', inplace=True)
        options = LayerOptions(norm_cfg, act_cfg, padding, with_cp, memory)
        self.layers = self._build(self.spec.blocks(output_stride, drop_path_rate, drop_path_schedule), options)
        self.level_strides: Tuple[int, ...] = self.spec.level_strides(output_stride)
        self.level_channels: Tuple[int, ...] = self.spec.level_channels
        self._freeze_stages()

    # ---------------------------------------------------------------- construction
    @staticmethod
    def check_out_indices(out_indices: Sequence[int]) -> Tuple[int, ...]:
        """``out_indices`` as the sorted, non-negative levels it names; an error names a bad one."""
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        if len(out_indices) == 0:
            raise ValueError(f'out_indices is empty; give levels in [-{NUM_LEVELS}, {NUM_LEVELS - 1}]')
        normalized = []
        for index in out_indices:
            if not isinstance(index, int) or not -NUM_LEVELS <= index < NUM_LEVELS:
                raise ValueError(f'out_indices contains {index!r}, out of range: valid levels are '
                                 f'-{NUM_LEVELS}..{NUM_LEVELS - 1} (0 stem, 1-5 stages, 6 head)')
            normalized.append(index % NUM_LEVELS)
        return tuple(sorted(set(normalized)))

    def _build(self, blocks: Sequence, options: LayerOptions) -> nn.ModuleList:
        """Levels 0..max(out_indices): the stem, the planned MBConv blocks grouped by level, the head."""
        last = max(self.out_indices)
        layers = nn.ModuleList([
            ConvBNAct(
                self.in_channels,
                self.spec.stem_channels,
                3,
                2,
                padding=options.padding,
                norm_cfg=options.norm_cfg,
                act_cfg=options.act_cfg,
                memory=options.memory)
        ])
        for level in range(1, min(last, HEAD_LEVEL - 1) + 1):
            layers.append(nn.Sequential(*(MBConv(b, options) for b in blocks if b.level == level)))
        if last == HEAD_LEVEL:
            layers.append(
                ConvBNAct(
                    self.spec.stages[-1].out_channels,
                    self.spec.head_channels,
                    1,
                    norm_cfg=options.norm_cfg,
                    act_cfg=options.act_cfg,
                    memory=options.memory))
        return layers

    # ---------------------------------------------------------------- introspection
    @property
    def out_channels(self) -> List[int]:
        """Channels of each returned feature map, in ``out_indices`` order."""
        return [self.level_channels[i] for i in self.out_indices]

    @property
    def out_strides(self) -> List[int]:
        """Stride of each returned feature map, in ``out_indices`` order."""
        return [self.level_strides[i] for i in self.out_indices]

    @property
    def feature_info(self) -> List[Dict[str, Union[int, str]]]:
        """timm-style description of every level: channels, stride and module name."""
        return [
            dict(level=i, num_chs=c, reduction=s, module=f'layers.{i}')
            for i, (c, s) in enumerate(zip(self.level_channels, self.level_strides))
        ]

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'EfficientNet expects an (N, {self.in_channels}, H, W) input '
                             f'(in_channels={self.in_channels}), got shape {tuple(x.shape)}')
        restore_format = self._use_channels_last(x)
        if restore_format:
            x = x.contiguous(memory_format=torch.channels_last)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x.contiguous() if restore_format else x)
        return tuple(outs)

    def _use_channels_last(self, x: torch.Tensor) -> bool:
        """Whether this input runs internally in channels_last (see ``layers.runs_channels_last``):
        the input (3 channels) and the returned maps are small, so converting costs little."""
        return runs_channels_last(x, self.channels_last)

    # ---------------------------------------------------------------- training state
    def _freeze_stages(self) -> None:
        for i in range(min(max(self.frozen_stages, 0), len(self.layers))):
            self.layers[i].eval()
            for p in self.layers[i].parameters():
                p.requires_grad = False

    def fuse(self) -> 'EfficientNet':
        """Deploy mode: fold every BatchNorm into its conv (see :mod:`.fuse`) and switch to eval.

        Outputs stay equal within float rounding (< 1e-4); inference is faster. A fused model
        cannot be trained again (its BatchNorms are gone); fuse after loading weights.
        """
        from .fuse import fuse_conv_bn
        self.eval()
        fuse_conv_bn(self)
        self.fused = True
        return self

    def train(self, mode: bool = True) -> 'EfficientNet':
        if mode and self.fused:
            raise RuntimeError('this EfficientNet was fused for inference (fuse()): its BatchNorms '
                               'are folded into the convs, so it cannot be trained; build a new one')
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            norm_types = _norm_layer_types()
            for m in self.modules():
                if isinstance(m, norm_types):
                    m.eval()
        return self

    # ---------------------------------------------------------------- weights
    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from ..checkpoint import load_backbone_checkpoint
            load_backbone_checkpoint(
                self, cfg['checkpoint'], prefix=cfg.get('prefix', None), map_location=cfg.get('map_location', 'cpu'))
            self._is_init = True
        elif cfg is not None:
            super().init_weights()
        else:
            # The TF reference initialisation; until init_weights() the weights are PyTorch's defaults,
            # as for every OpenMMLab module.
            init_tf_style(self)
            self._is_init = True
