# Fine-tune ImageNet EfficientNet-B0 on CIFAR-10 (paper Table 5: EfficientNet-B0, 98.1% top-1).
# Input: the 32x32 images upsampled (bicubic) to B0's ImageNet size, 224, as the paper's protocol
# feeds each network at its pre-training resolution; pad-4 random crop and flip at 32 px first.
# Schedule: 8 GPUs x 32 = 256 images per step, 19,531 steps = 100 epochs (_base_/efficientnet_finetune.py).
# Data: data/cifar10/cifar-10-batches-py/ of the official python archive (never downloaded).
_base_ = ['mmpretrain::_base_/datasets/cifar10_bs16.py', './_base_/efficientnet_finetune.py']
from mmeffnet.arch import build_network_spec, resolve_arch  # noqa: E402

arch = 'b0'
img_size = resolve_arch(arch).resolution
num_classes = 10
# An ImageNet checkpoint of this arch: mmpretrain's efficientnet-b0_3rdparty_8xb32-aa_in1k (download
# https://download.openmmlab.com/mmclassification/v0/efficientnet/efficientnet-b0_3rdparty_8xb32-aa_in1k_20220119-8d939117.pth)
# or one converted with tools/model_converters/convert_efficientnet.py.
imagenet_checkpoint = 'checkpoints/efficientnet-b0_3rdparty_8xb32-aa_in1k_20220119-8d939117.pth'

model = dict(
    backbone=dict(arch=arch, init_cfg=dict(checkpoint=imagenet_checkpoint)),
    head=dict(
        num_classes=num_classes,
        in_channels=build_network_spec(arch).head_channels,
        dropout_rate=resolve_arch(arch).dropout))
# CIFAR arrays are RGB already; normalised with the ImageNet statistics the weights were trained with.
data_preprocessor = dict(
    num_classes=num_classes, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=False)
train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=4, padding_mode='reflect'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='Resize', scale=img_size, interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='Resize', scale=img_size, interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(type='mmeffnet.OfflineCIFAR10', data_root='data/cifar10', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(type='mmeffnet.OfflineCIFAR10', data_root='data/cifar10', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
