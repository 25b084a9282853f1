# RetinaNet with an EfficientNet-B3 backbone on COCO, 896x896 crops, 1x schedule (box AP 40.5 in
# mmdet's model zoo). mmdet 3.3's configs/efficientnet/retinanet_effb3_fpn_8xb4-crop896-1x_coco.py
# with mmdet's own bases inherited, the backbone replaced by `mmeffnet.EfficientNet` (same
# state-dict layout as mmpretrain's, so the same ImageNet checkpoint loads), and the COCO dataset
# replaced by `CheckedCocoDataset` (mmdet's CocoDataset plus clear errors for bad annotation files
# and a skip-with-warning for corrupt images: mmeffnet/datasets/det_coco.py).
#   python tools/train.py configs/retinanet_effb3_fpn_crop896_8x4_1x_coco.py
#   tools/dist_train.sh configs/retinanet_effb3_fpn_crop896_8x4_1x_coco.py 8
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
# The neck's input channels are read from the scaled network, not typed in by hand.
from mmeffnet.arch import build_network_spec  # noqa: E402
from mmeffnet.config.fragments.detection import retinanet_pipelines  # noqa: E402

custom_imports = dict(imports=['mmeffnet', 'mmeffnet.datasets.det_coco'], allow_failed_imports=False)

backbone_arch = 'b3'
backbone_out_indices = (3, 4, 5)  # the stages ending at strides 8, 16, 32: [48, 136, 384] for B3
backbone_channels = [build_network_spec(backbone_arch).level_channels[i] for i in backbone_out_indices]
# mmpretrain's ImageNet B3 (TF-ported, hence padding='same'), the checkpoint mmdet's recipe uses.
backbone_checkpoint = ('https://download.openmmlab.com/mmclassification/v0/efficientnet/'
                       'efficientnet-b3_3rdparty_8xb32-aa_in1k_20220119-5b4887a0.pth')

image_size = (896, 896)
batch_augments = [dict(type='BatchFixedSizePad', size=image_size)]
norm_cfg = dict(type='BN', requires_grad=True)  # neck and head
model = dict(
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        batch_augments=batch_augments),
    backbone=dict(
        _delete_=True,
        type='mmeffnet.EfficientNet',
        arch=backbone_arch,
        out_indices=backbone_out_indices,
        drop_path_rate=0.2,
        drop_path_schedule='linspace',  # mmdet's per-block rule: torch.linspace(0, 0.2, 26)
        frozen_stages=0,  # nothing frozen, as in mmdet's recipe (same meaning as mmdet's argument)
        padding='same',
        # tools/train.py turns SyncBN into BN on CPU and in a single process (with a log line)
        norm_cfg=dict(type='SyncBN', requires_grad=True, eps=1e-3, momentum=0.01),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint=backbone_checkpoint)),
    neck=dict(
        in_channels=backbone_channels,
        start_level=0,
        out_channels=256,
        num_outs=5,
        relu_before_extra_convs=True,
        no_norm_on_lateral=True,
        norm_cfg=norm_cfg),
    bbox_head=dict(type='RetinaSepBNHead', num_ins=5, norm_cfg=norm_cfg),
    train_cfg=dict(assigner=dict(neg_iou_thr=0.5)))

# dataset settings (data_root and files as in mmdet: data/coco/annotations/instances_{train,val}2017.json)
dataset_type = 'mmeffnet.CheckedCocoDataset'
train_pipeline, test_pipeline = retinanet_pipelines(image_size, {{_base_.backend_args}})
train_dataloader = dict(batch_size=4, num_workers=4, dataset=dict(type=dataset_type, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(type=dataset_type, pipeline=test_pipeline))
test_dataloader = val_dataloader

# optimizer
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.04, momentum=0.9, weight_decay=0.0001),
    paramwise_cfg=dict(norm_decay_mult=0, bypass_duplicate=True))

# learning policy: linear warm-up over 1000 iterations from 0.1 x lr, x0.1 after epochs 8 and 11
max_epochs = 12
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
train_cfg = dict(max_epochs=max_epochs)

# cudnn_benchmark=True speeds up fixed-size training
env_cfg = dict(cudnn_benchmark=True)

# The lr above is for 8 GPUs x 4 images; `tools/train.py --auto-scale-lr` scales it to other batch sizes.
auto_scale_lr = dict(base_batch_size=32)
