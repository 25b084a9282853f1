# EfficientDet (Tan, Pang & Le, CVPR 2020) on COCO with the official training recipe, as mmdet's
# single-stage detector (RetinaNet's: backbone -> neck -> anchor head) of mmeffnet's EfficientNet,
# BiFPN and EfficientDetHead. Only the recipe lives here: configs/efficientdet/efficientdet_d*_coco.py
# add a variant's sizes (backbone arch and checkpoint, BiFPN width/depth/fusion, head depth, anchor
# scale, input size and pipelines) with mmeffnet.config.fragments.efficientdet.efficientdet_variant,
# which reads the one scaling function, mmeffnet.arch.efficientdet.efficientdet_scaling.
# [automl]: google/automl efficientdet/hparams_config.py defaults (the official code);
# [paper]: section 5.1 of the paper. docs/efficientdet.md lists every value with its source.
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/default_runtime.py',
]
from mmeffnet.config.fragments.efficientdet import efficientdet_schedule  # noqa: E402

custom_imports = dict(
    imports=['mmeffnet', 'mmeffnet.datasets.det_coco', 'mmeffnet.models.efficientdet_head', 'mmeffnet.engine'],
    allow_failed_imports=False)

# [paper] BN with decay 0.99 and epsilon 1e-3 everywhere, synchronized across replicas [automl
# strategy='tpu']; tools/train.py turns SyncBN into BN on CPU and in a single process (with a log line)
norm_cfg = dict(type='SyncBN', requires_grad=True, eps=1e-3, momentum=0.01)
model = dict(
    type='RetinaNet',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # [automl] MEAN_RGB / STDDEV_RGB: ImageNet's, on RGB images
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        type='mmeffnet.EfficientNet',
        # [automl] the backbone's own survival_prob 0.8, scaled per block as block_index / num_blocks
        drop_path_rate=0.2,
        drop_path_schedule='tf',
        padding='same',
        norm_cfg=norm_cfg,
        norm_eval=False,
        frozen_stages=0),
    neck=dict(
        type='mmeffnet.BiFPN',
        num_outs=5,  # [automl] min_level 3, max_level 7
        norm_cfg=norm_cfg),
    bbox_head=dict(
        type='mmeffnet.EfficientDetHead',
        num_classes=80,
        norm_cfg=norm_cfg,
        # [automl] alpha 0.25, gamma 1.5; delta 0.1 and box_loss_weight 50 (EfficientDetHead's defaults).
        # mmdet's FocalLoss; the checkpointed one recomputes its intermediates in backward where mmdet
        # computes it with PyTorch ops (not on CUDA): same numbers, less memory
        loss_cls=dict(type='mmeffnet.CheckpointedFocalLoss', use_sigmoid=True, gamma=1.5, alpha=0.25, loss_weight=1.0)),
    train_cfg=dict(
        # [automl] ArgMaxMatcher(0.5, 0.5, force_match_for_each_row=True): positives from IoU 0.5,
        # negatives below 0.5, and every box keeps its best anchor however low the IoU
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.5,
            min_pos_iou=0.0,
            match_low_quality=True,
            ignore_iof_thr=-1),
        sampler=dict(type='PseudoSampler'),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    # [automl] eval keeps the 5000 best (anchor, class) scores, NMS at IoU 0.5 per class, 100 per image
    # (effdet's default; automl's newer default is soft-NMS)
    test_cfg=dict(
        nms_pre=5000, min_bbox_size=0, score_thr=0.001, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))

# dataset settings (data_root and files as in mmdet: data/coco/annotations/instances_{train,val}2017.json)
dataset_type = 'mmeffnet.CheckedCocoDataset'
# [paper] batch 128 on 32 TPUv3 cores; here 8 GPUs x 16 images
train_dataloader = dict(batch_size=16, num_workers=4, dataset=dict(type=dataset_type))
val_dataloader = dict(dataset=dict(type=dataset_type))
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='OptimWrapper',
    # [paper] SGD momentum 0.9, weight decay 4e-5; lr 0.16 for batch 128 ([automl] 0.08 for 64)
    optimizer=dict(type='SGD', lr=0.16, momentum=0.9, weight_decay=4e-5),
    # [automl] reg_l2_loss decays conv kernels only: no decay on 1-D tensors (norms, biases, BiFPN
    # fusion weights)
    paramwise_cfg=dict(flat_decay_mult=0.0),
    # [automl] clip_gradients_norm=10.0
    clip_grad=dict(max_norm=10.0, norm_type=2))

# [paper] 300 epochs (D7: 600), [automl] one warm-up epoch then cosine decay
max_epochs = 300
param_scheduler = efficientdet_schedule(max_epochs)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

custom_hooks = [
    # [automl] moving_average_decay=0.9998 with TF's warm-up min(decay, (1 + t) / (10 + t)), BN
    # statistics averaged too; evaluation uses the average
    dict(
        type='EMAHook',
        ema_type='mmeffnet.TFExponentialMovingAverage',
        momentum=2e-4,
        update_buffers=True,
        priority='ABOVE_NORMAL'),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
env_cfg = dict(cudnn_benchmark=True)

# The lr above is for 8 GPUs x 16 images; `tools/train.py --auto-scale-lr` scales it to other batch sizes.
auto_scale_lr = dict(base_batch_size=128)
