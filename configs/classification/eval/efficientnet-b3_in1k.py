# Evaluate an EfficientNet-B3 ImageNet checkpoint with the TF evaluation preprocessing: the
# mmpretrain model-zoo checkpoints efficientnet-b3_3rdparty_8xb32_in1k, ..._8xb32-aa_in1k and
# ..._3rdparty-ra-noisystudent_in1k (TF ports, same layout as our backbone: they load as they are),
# converted timm/TF/lukemelas checkpoints, or a checkpoint trained with
# ../efficientnet-b3_*-rmsprop_in1k.py. Expected accuracies: docs/classification.md.
_base_ = ['../_base_/efficientnet_tf-recipe_in1k.py']
from mmeffnet.models.scaling import build_network_spec, resolve_arch  # noqa: E402

arch = 'b3'
img_size = resolve_arch(arch).resolution
model = dict(
    backbone=dict(arch=arch),
    head=dict(in_channels=build_network_spec(arch).head_channels, dropout_rate=resolve_arch(arch).dropout))
test_pipeline = [
    dict(type='LoadImageWithFallback'),
    dict(type='EfficientNetCenterCrop', crop_size=img_size, crop_padding=32, interpolation='bicubic'),
    dict(type='PackInputs'),
]
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
custom_hooks = [dict(type='ClsDataCheckHook')]  # no EMA: the checkpoint's weights are evaluated as they are
