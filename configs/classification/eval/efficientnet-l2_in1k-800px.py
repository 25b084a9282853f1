# Evaluate the Noisy Student EfficientNet-L2 checkpoint at 800 px (mmpretrain
# efficientnet-l2_3rdparty-ra-noisystudent_in1k; TF noisy_student_efficientnet-l2).
# L2 is not trained with the supervised recipe (it is a JFT semi-supervised student), so it has
# no training config. Expected accuracies: docs/classification.md.
_base_ = ['../_base_/efficientnet_tf-recipe_in1k.py']
from mmeffnet.models.scaling import build_network_spec, resolve_arch  # noqa: E402

arch = 'l2'
img_size = resolve_arch(arch).resolution  # 800
model = dict(
    backbone=dict(arch=arch),
    head=dict(in_channels=build_network_spec(arch).head_channels, dropout_rate=resolve_arch(arch).dropout))
test_pipeline = [
    dict(type='LoadImageWithFallback'),
    dict(type='EfficientNetCenterCrop', crop_size=img_size, crop_padding=32, interpolation='bicubic'),
    dict(type='PackInputs'),
]
val_dataloader = dict(batch_size=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
custom_hooks = [dict(type='ClsDataCheckHook')]  # no EMA: the checkpoint's weights are evaluated as they are
