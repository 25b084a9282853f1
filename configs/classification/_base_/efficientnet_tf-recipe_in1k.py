# The EfficientNet ImageNet training recipe: section 5.2 of Tan & Le (ICML 2019), with what the
# paper leaves out taken from the official TF implementation (tensorflow/tpu,
# models/official/efficientnet: main.py flags, utils.build_learning_rate/build_optimizer,
# preprocessing.py). Values marked [paper] are stated in section 5.2; [TF] are from that code;
# [ours] are choices of this port.
#
# Per-variant values (arch, input size, dropout, classifier width, batch per GPU) are set by the
# configs that inherit this one (configs/classification/efficientnet-*_rmsprop_in1k.py), which
# read them from mmeffnet.arch.ARCHS. This file is B0.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',  # ImageNet dataset, Accuracy top-1/top-5
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(
    imports=['mmeffnet', 'mmeffnet.models.heads', 'mmeffnet.engine', 'mmeffnet.datasets.cls_data'],
    allow_failed_imports=False)

img_size = 224
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmeffnet.EfficientNet',
        arch='b0',
        out_indices=(6, ),
        drop_path_rate=0.2,  # [paper] stochastic depth, survival probability 0.8 (last block; linear in depth [TF])
        drop_path_schedule='tf',  # [TF] block i of N gets rate * i / N
        padding='same',  # [TF] SAME padding: also what the TF-ported checkpoints need
        # [paper] BN momentum 0.99 = PyTorch momentum 0.01; [TF] eps 1e-3; [TF] cross-replica BN.
        norm_cfg=dict(type='SyncBN', eps=1e-3, momentum=0.01),
        act_cfg=None),  # [paper] SiLU (Swish-1); ReLU6 for Lite
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='mmeffnet.EfficientNetClsHead',
        num_classes=1000,
        in_channels=1280,
        dropout_rate=0.2,  # [paper] 0.2 (B0) .. 0.5 (B7), ARCHS[arch].dropout
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),  # [TF] label_smoothing=0.1
        topk=(1, 5)))

# ---------------------------------------------------------------- data
# [TF] mean/std of efficientnet_builder.MEAN_RGB/STDDEV_RGB (= ImageNet's), inherited from mmpretrain.
train_pipeline = [
    dict(type='mmeffnet.LoadImageWithFallback'),
    # [TF] distorted_bounding_box_crop (area 0.08-1, aspect 3/4-4/3, 10 attempts, else centre crop), bicubic.
    dict(type='EfficientNetRandomCrop', scale=img_size, crop_padding=32, interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # [paper] AutoAugment; mmpretrain's ImageNet policy. [TF] fills with grey 128 and nearest sampling.
    dict(type='AutoAugment', policies='imagenet', hparams=dict(pad_val=128, interpolation='nearest')),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='mmeffnet.LoadImageWithFallback'),
    # [TF] centre square of img_size / (img_size + 32) of the short side, resized to img_size, bicubic.
    dict(type='EfficientNetCenterCrop', crop_size=img_size, crop_padding=32, interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=256, num_workers=8, persistent_workers=True, pin_memory=True, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256, num_workers=8, persistent_workers=True, pin_memory=True, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# ---------------------------------------------------------------- optimisation
optim_wrapper = dict(
    # [paper] RMSProp decay 0.9, momentum 0.9, weight decay 1e-5; [TF] epsilon 1e-3 inside the
    # square root, as TF1's RMSPropOptimizer (see mmeffnet/engine/optimizers.py).
    optimizer=dict(type='mmeffnet.RMSpropTF', lr=0.256, alpha=0.9, momentum=0.9, eps=1e-3, weight_decay=1e-5),
    # [TF] the L2 term covers every variable but the batch-norm ones.
    paramwise_cfg=dict(norm_decay_mult=0.0))
# [paper] LR 0.256 (at batch 4096 [TF]: 0.016 per 256 images), x0.97 every 2.4 epochs;
# [TF] linear warm-up from 0 over 5 epochs. Counted in iterations, fractional epochs exact.
param_scheduler = dict(
    type='mmeffnet.TFExponentialDecayLR',
    decay_epochs=2.4,
    decay_factor=0.97,
    warmup_epochs=5,
    by_epoch=True,
    convert_to_iter_based=True)
# [TF] 350 epochs (train_steps=218949 at batch 2048). [ours] validate every 5 epochs.
train_cfg = dict(by_epoch=True, max_epochs=350, val_interval=5)
val_cfg = dict()
test_cfg = dict()
# [paper] LR 0.256 is for 4096 images per step; enabled, so the LR follows the real batch linearly.
auto_scale_lr = dict(base_batch_size=4096, enable=True)

custom_hooks = [
    # [TF] moving_average_decay=0.9999 (momentum 1e-4 in mmengine terms) with TF's warm-up
    # min(decay, (1 + t) / (10 + t)), BN statistics averaged too; evaluation uses the average.
    dict(
        type='EMAHook',
        ema_type='mmeffnet.TFExponentialMovingAverage',
        momentum=1e-4,
        update_buffers=True,
        priority='ABOVE_NORMAL'),
    dict(type='mmeffnet.ClsDataCheckHook'),
]
# [paper] early stopping on a 25k-image minival: keep the best validation checkpoint.
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3, save_best='accuracy/top1'),
    logger=dict(type='LoggerHook', interval=100))
