# Semantic FPN's recipe and head with EfficientDet's BiFPN as the neck (EfficientNet-B3, ADE20K): the
# Semantic FPN config (fpn_effb3_4xb4-160k_ade20k-512x512.py) with its FPN neck replaced by
# mmeffnet.BiFPN at EfficientDet-D3's width and depth (160 x 6), reading backbone levels 2-5 (strides
# 4-32) and adding one extra level (stride 64); FPNHead merges the 5 levels at stride 4. It shows the
# BiFPN as an ordinary neck in an mmseg config (EfficientDet's paper uses it for segmentation too).
_base_ = ['./fpn_effb3_4xb4-160k_ade20k-512x512.py']
from mmeffnet.arch.efficientdet import EFFICIENTDET_ARCHS  # noqa: E402

bifpn = EFFICIENTDET_ARCHS['d3']
num_levels = 5
model = dict(
    neck=dict(
        _delete_=True,
        type='mmeffnet.BiFPN',
        in_channels={{_base_.backbone_channels}},
        out_channels=bifpn.fpn_channels,
        num_outs=num_levels,
        num_repeats=bifpn.fpn_repeats,
        norm_cfg=dict(type='SyncBN', eps=1e-3, momentum=0.01, requires_grad=True)),
    decode_head=dict(
        in_channels=[bifpn.fpn_channels] * num_levels,
        in_index=list(range(num_levels)),
        feature_strides=[4 * 2**i for i in range(num_levels)]))
