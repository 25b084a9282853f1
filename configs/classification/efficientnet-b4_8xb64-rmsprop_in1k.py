# EfficientNet-B4 on ImageNet with the paper's training recipe (_base_/efficientnet_tf-recipe_in1k.py): input size,
# dropout and classifier width come from mmeffnet.models.scaling.ARCHS; 8 GPUs x 64 images, the
# LR follows the total batch from 0.256 at 4096 (auto_scale_lr).
_base_ = ['./_base_/efficientnet_tf-recipe_in1k.py']
from mmeffnet.models.scaling import build_network_spec, resolve_arch  # noqa: E402

arch = 'b4'
img_size = resolve_arch(arch).resolution
batch_size = 64  # per GPU

model = dict(
    backbone=dict(arch=arch),
    head=dict(in_channels=build_network_spec(arch).head_channels, dropout_rate=resolve_arch(arch).dropout))

train_pipeline = [
    dict(type='LoadImageWithFallback'),
    dict(type='EfficientNetRandomCrop', scale=img_size, crop_padding=32, interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='AutoAugment', policies='imagenet', hparams=dict(pad_val=128, interpolation='nearest')),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageWithFallback'),
    dict(type='EfficientNetCenterCrop', crop_size=img_size, crop_padding=32, interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=batch_size, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=batch_size, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
