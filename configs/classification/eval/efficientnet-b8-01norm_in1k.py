# Evaluate the AdvProp EfficientNet-B8 checkpoint (mmpretrain efficientnet-b8_3rdparty_8xb32-aa-advprop_in1k,
# TF ckpts "advprop"): AdvProp models take pixels scaled to [-1, 1] (mean = std = 127.5) instead of
# the ImageNet mean/std. Expected accuracies: docs/classification.md.
_base_ = ['../_base_/efficientnet_tf-recipe_in1k.py']
from mmeffnet.models.scaling import build_network_spec, resolve_arch  # noqa: E402

arch = 'b8'
img_size = resolve_arch(arch).resolution
data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
model = dict(
    backbone=dict(arch=arch),
    head=dict(in_channels=build_network_spec(arch).head_channels, dropout_rate=resolve_arch(arch).dropout))
test_pipeline = [
    dict(type='LoadImageWithFallback'),
    dict(type='EfficientNetCenterCrop', crop_size=img_size, crop_padding=32, interpolation='bicubic'),
    dict(type='PackInputs'),
]
val_dataloader = dict(batch_size=8, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
custom_hooks = [dict(type='ClsDataCheckHook')]  # no EMA: the checkpoint's weights are evaluated as they are
