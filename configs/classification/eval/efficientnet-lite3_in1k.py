# Evaluate an EfficientNet-Lite3 checkpoint (TF efficientnet-lite3, or timm tf_efficientnet_lite3, converted
# with tools/model_converters/convert_efficientnet.py) with the TF Lite evaluation preprocessing:
# bilinear resizing, mean 127, std 128 (_base_/efficientnet-lite_tf-recipe_in1k.py).
# Expected accuracies: docs/classification.md.
_base_ = ['../_base_/efficientnet-lite_tf-recipe_in1k.py']
from mmeffnet.models.scaling import build_network_spec, resolve_arch  # noqa: E402

arch = 'lite3'
img_size = resolve_arch(arch).resolution
model = dict(
    backbone=dict(arch=arch),
    head=dict(in_channels=build_network_spec(arch).head_channels, dropout_rate=resolve_arch(arch).dropout))
test_pipeline = [
    dict(type='LoadImageWithFallback'),
    dict(type='EfficientNetCenterCrop', crop_size=img_size, crop_padding=32, interpolation='bilinear'),
    dict(type='PackInputs'),
]
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
custom_hooks = [dict(type='ClsDataCheckHook')]  # no EMA: the checkpoint's weights are evaluated as they are
