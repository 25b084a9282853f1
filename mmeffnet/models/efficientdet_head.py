"""The EfficientDet head, registered as ``mmeffnet.EfficientDetHead``.

A class net and a box net, each ``stacked_convs`` separable 3x3 convs shared by all pyramid levels,
each followed by a BatchNorm *of its own level* and SiLU, then a separable prediction conv (the class
one's bias starts at the prior probability 0.01). Everything else -- anchors, assignment, focal loss,
box coding, NMS -- is mmdet's ``AnchorHead`` machinery.

Defaults follow the official code (google/automl ``hparams_config.py``, ``det_model_fn.py``) and effdet:
9 anchors per location (octave scales 2^0, 2^(1/3), 2^(2/3) x automl's (w, h) aspects (1, 1), (1.4, 0.7),
(0.7, 1.4), base size 4 x stride, centred in their cell, in automl's order so converted effdet weights
need no anchor reordering: ``mmeffnet.EfficientDetAnchorGenerator``), focal loss gamma 1.5 / alpha
0.25 (mmdet's, as ``mmeffnet.CheckpointedFocalLoss``: off CUDA it keeps less for backward), and Huber
box loss delta 0.1 with automl's weight 50 over 4 x #positives, i.e.
``SmoothL1Loss(beta=0.1, loss_weight=50 * 0.1 / 4)`` under mmdet's per-positive averaging
(Huber_delta = delta x SmoothL1_beta=delta).

This module imports mmdet; ``import mmeffnet`` does not import it (detection configs list it in
``custom_imports``).
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmdet.models.dense_heads import AnchorHead

from ..registry import MODELS
from .bifpn import separable_conv
from .efficientdet_anchors import EfficientDetAnchorGenerator  # noqa: F401 (registers the default generator)
from .focal_loss import CheckpointedFocalLoss  # noqa: F401 (registers the default class loss)
from .layers import bn_act_saves_memory, init_convs_and_norms, recompute_scope, runs_channels_last
from .memory_saving import batch_norm_act, check_memory_policy, fusable_act

PRIOR_PROB = 0.01
HUBER_DELTA, AUTOML_BOX_LOSS_WEIGHT = 0.1, 50.0


@MODELS.register_module()
class EfficientDetHead(AnchorHead):
    """EfficientDet's class and box nets on mmdet's ``AnchorHead``.

    Args:
        num_classes (int): object classes (80 for COCO in mmdet).
        in_channels (int): the BiFPN width; the separable convs keep it.
        stacked_convs (int): separable convs before each prediction conv (3 for D0-D2, 4 for D3-D5,
            5 for D6/D7). Defaults to 3.
        norm_cfg (dict): the per-level norm layers. Defaults to BN with eps 1e-3, momentum 0.01.
        act_cfg (dict): activation after each norm. Defaults to SiLU.
        memory (str): what training keeps for backward, as the backbone's ``memory``:
            ``'plain'``, ``'save-bn-input'`` (BN + activation keep only the BN input) or
            ``'recompute-pointwise'`` (that, and the activation outputs the next separable conv
            reads are rebuilt in backward). Defaults to ``'recompute-pointwise'``, as the BiFPN's.
        channels_last (bool, optional): run each level's NCHW input internally in channels_last
            (outputs are handed back NCHW); None decides per device (on for CPU).
        anchor_scale (float): base anchor size over the stride (4; D7: 5). Used to build the
            default anchor generator only.
        anchor_generator, bbox_coder, loss_cls, loss_bbox, train_cfg, test_cfg: as ``AnchorHead``.
        init_cfg (dict, optional): None: ``init_weights()`` applies the official initialisation
            (variance-scaling convs, prior-probability class bias, unit BN).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 stacked_convs: int = 3,
                 norm_cfg: dict = dict(type='BN', eps=1e-3, momentum=0.01),
                 act_cfg: dict = dict(type='SiLU'),
                 memory: str = 'recompute-pointwise',
                 channels_last: Optional[bool] = None,
                 anchor_scale: float = 4.0,
                 anchor_generator: Optional[dict] = None,
                 bbox_coder: dict = dict(
                     type='DeltaXYWHBBoxCoder', target_means=(.0, .0, .0, .0), target_stds=(1.0, 1.0, 1.0, 1.0)),
                 loss_cls: dict = dict(
                     type='mmeffnet.CheckpointedFocalLoss', use_sigmoid=True, gamma=1.5, alpha=0.25, loss_weight=1.0),
                 loss_bbox: dict = dict(
                     type='SmoothL1Loss', beta=HUBER_DELTA, loss_weight=AUTOML_BOX_LOSS_WEIGHT * HUBER_DELTA / 4),
                 init_cfg: Optional[dict] = None,
                 **kwargs):
        if not isinstance(stacked_convs, int) or stacked_convs < 0:
            raise ValueError(f'stacked_convs={stacked_convs!r} must be a non-negative int')
        self.stacked_convs = stacked_convs
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.memory = check_memory_policy(memory)
        self.channels_last = channels_last
        if anchor_generator is None:
            anchor_generator = dict(type='mmeffnet.EfficientDetAnchorGenerator', anchor_scale=anchor_scale)
        super().__init__(
            num_classes,
            in_channels,
            feat_channels=in_channels,
            anchor_generator=anchor_generator,
            bbox_coder=bbox_coder,
            loss_cls=loss_cls,
            loss_bbox=loss_bbox,
            init_cfg=init_cfg,
            **kwargs)

    def _init_layers(self) -> None:
        """``cls_convs`` / ``reg_convs``: the shared separable convs (their bias folded into the norms);
        ``cls_norms[r][level]`` / ``reg_norms[r][level]``: one norm per repeat and level;
        ``conv_cls`` / ``conv_reg``: the separable prediction convs."""
        channels, levels = self.in_channels, self.prior_generator.num_levels
        self.act = build_activation_layer(self.act_cfg)
        for branch in ('cls', 'reg'):
            setattr(self, f'{branch}_convs',
                    nn.ModuleList(separable_conv(channels, channels) for _ in range(self.stacked_convs)))
            setattr(
                self, f'{branch}_norms',
                nn.ModuleList(
                    nn.ModuleList(build_norm_layer(self.norm_cfg, channels)[1] for _ in range(levels))
                    for _ in range(self.stacked_convs)))
        self.conv_cls = separable_conv(channels, self.num_base_priors * self.cls_out_channels, bias=True)
        self.conv_reg = separable_conv(channels, self.num_base_priors * self.bbox_coder.encode_size, bias=True)

    def forward(self, x: Sequence[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Class scores and box deltas of every level (each ``(N, A * C, H, W)`` / ``(N, A * 4, H, W)``)."""
        levels = self.prior_generator.num_levels
        if len(x) != levels:
            raise ValueError(f'EfficientDetHead expects {levels} feature levels (one per anchor stride '
                             f'{list(self.prior_generator.strides)}), got {len(x)}')
        cls_scores, bbox_preds = [], []
        for level, feat in enumerate(x):
            restore_format = runs_channels_last(feat, self.channels_last)
            if restore_format:
                feat = feat.contiguous(memory_format=torch.channels_last)
            with recompute_scope(self.memory):
                cls_score, bbox_pred = self.forward_single(feat, level)
            if restore_format:
                cls_score, bbox_pred = cls_score.contiguous(), bbox_pred.contiguous()
            cls_scores.append(cls_score)
            bbox_preds.append(bbox_pred)
        return cls_scores, bbox_preds

    def forward_single(self, x: torch.Tensor, level: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """One level: the shared convs with this level's norms, then the predictions."""
        cls_feat = self._branch(x, self.cls_convs, self.cls_norms, level)
        reg_feat = self._branch(x, self.reg_convs, self.reg_norms, level)
        return self.conv_cls(cls_feat), self.conv_reg(reg_feat)

    def _branch(self, x: torch.Tensor, convs: nn.ModuleList, norms: nn.ModuleList, level: int) -> torch.Tensor:
        for conv, level_norms in zip(convs, norms):
            x = self._norm_act(conv(x), level_norms[level])
        return x

    def _norm_act(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        # the same memory-saving path as ConvBNAct, for a norm that is not tied to one conv
        if bn_act_saves_memory(norm, self.act, self.memory):
            return batch_norm_act(x, norm, fusable_act(self.act))
        return self.act(norm(x))

    def init_weights(self) -> None:
        if self.init_cfg is not None:
            super().init_weights()
            return
        init_convs_and_norms(self, variance_scaling_)
        nn.init.constant_(self.conv_cls.pointwise.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))
        self._is_init = True


def variance_scaling_(conv: nn.Conv2d) -> None:
    """TF's ``variance_scaling`` (scale 1, fan in, normal) as automl initialises its heads, zero bias."""
    fan_in = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
    nn.init.normal_(conv.weight, 0., math.sqrt(1. / fan_in))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
