# Fine-tuning an ImageNet EfficientNet on a smaller dataset (paper section 5.3, Tables 5-6, which take
# the settings of Kornblith et al. 2019 and GPipe): every layer is trained, starting from the
# ImageNet weights, at the network's ImageNet input size, with SGD + Nesterov momentum and a cosine
# LR decay over a fixed number of iterations (about 100 epochs of CIFAR). Learning rate and weight
# decay were tuned per dataset on held-out data in that protocol and are not published: the values
# here are starting points (see docs/classification.md). The dataset configs set the data, the
# schedule length, the class count and the ImageNet checkpoint.
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(
    imports=['mmeffnet', 'mmeffnet.models.heads', 'mmeffnet.engine', 'mmeffnet.datasets.cls_data'],
    allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmeffnet.EfficientNet',
        arch='b0',
        out_indices=(6, ),
        drop_path_rate=0.2,
        drop_path_schedule='tf',  # the TF reference's rule (rate * i / N), as the ImageNet recipe
        padding='same',  # the TF-ported ImageNet weights need TF SAME padding
        norm_cfg=dict(type='SyncBN', eps=1e-3, momentum=0.01),
        # Only the backbone comes from the ImageNet checkpoint (prefix='backbone'): its 1000-class
        # classifier does not fit the new head, which starts from the TF initialisation.
        init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint='checkpoints/efficientnet-b0_in1k.pth')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='mmeffnet.EfficientNetClsHead',
        num_classes=10,
        in_channels=1280,
        dropout_rate=0.2,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-5),
    paramwise_cfg=dict(norm_decay_mult=0.0))
warmup_iters = 500
max_iters = 19531  # 100 epochs of 50k images at batch 256 (Kornblith et al.'s step count)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters, end=max_iters, eta_min=0.),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2000)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=256)  # the LR above is for 256 images per step

custom_hooks = [dict(type='mmeffnet.ClsDataCheckHook')]
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000, max_keep_ckpts=2, save_best='accuracy/top1'),
    logger=dict(type='LoggerHook', interval=100))
log_processor = dict(by_epoch=False)
