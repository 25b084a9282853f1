# Fine-tune ImageNet EfficientNet-B5 on Oxford Flowers-102 (paper Table 5: EfficientNet-B5, 98.5% top-1,
# the model compared with public Inception-v4). Input: B5's ImageNet size, 456, with the TF random crop
# and centre crop. Data: mmpretrain's CustomDataset folder layout,
#   data/flowers102/train/<class>/*.jpg   the 2,040 images of the official train + val splits (Table 6)
#   data/flowers102/test/<class>/*.jpg    the 6,149 test images
# (one folder per class, the same 102 folder names in both). Schedule: 8 GPUs x 8 = 64 images per
# step (B5 at 456 px), 4,000 steps = 125 epochs of 2,040 images, about the number of passes the
# CIFAR schedule makes; LR scaled linearly from 0.01 at 256.
_base_ = ['./_base_/efficientnet_finetune.py']
from mmeffnet.arch import build_network_spec, resolve_arch  # noqa: E402
from mmeffnet.config.fragments.classification import tf_test_pipeline, tf_train_pipeline  # noqa: E402

arch = 'b5'
img_size = resolve_arch(arch).resolution
num_classes = 102
# mmpretrain's efficientnet-b5_3rdparty_8xb32-aa_in1k (download
# https://download.openmmlab.com/mmclassification/v0/efficientnet/efficientnet-b5_3rdparty_8xb32-aa_in1k_20220119-2cab8b78.pth)
imagenet_checkpoint = 'checkpoints/efficientnet-b5_3rdparty_8xb32-aa_in1k_20220119-2cab8b78.pth'

model = dict(
    backbone=dict(arch=arch, init_cfg=dict(checkpoint=imagenet_checkpoint)),
    head=dict(
        num_classes=num_classes,
        in_channels=build_network_spec(arch).head_channels,
        dropout_rate=resolve_arch(arch).dropout))
data_preprocessor = dict(
    num_classes=num_classes, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = tf_train_pipeline(arch, auto_augment=False)
test_pipeline = tf_test_pipeline(arch)
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CustomDataset', data_root='data/flowers102', data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root='data/flowers102', data_prefix='test', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=0.01 * 64 / 256))
warmup_iters = 200
max_iters = 4000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters, end=max_iters, eta_min=0.),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=500)
auto_scale_lr = dict(base_batch_size=64)
default_hooks = dict(checkpoint=dict(interval=500))
