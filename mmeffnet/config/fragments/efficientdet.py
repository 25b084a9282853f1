"""Config fragments of the EfficientDet configs: what differs between D0..D7, in one place.

Every ``configs/efficientdet/efficientdet_d*_coco.py`` differs from the recipe base
(``configs/efficientdet/_base_/_efficientdet_tf-recipe_coco.py``) only in what
:func:`mmeffnet.arch.efficientdet.efficientdet_scaling` gives for its phi (backbone, BiFPN width and
depth, fusion, head depth, input size, anchor scale) and, for D7, the schedule length. The configs
call :func:`efficientdet_variant` instead of repeating the numbers.

Values marked [automl] are google/automl ``efficientdet/hparams_config.py`` defaults (the official
code the paper's models were trained with); [paper] is section 5.1 of Tan, Pang & Le (CVPR 2020).
"""
from typing import List, Optional, Tuple

from ...arch.efficientdet import BACKBONE_LEVELS, backbone_level_channels, resolve_efficientdet_arch

#: mmpretrain's ImageNet EfficientNets ported from the TF ones (AutoAugment), the weights automl's
#: EfficientDets start from; every D-variant's backbone is one of B0..B6
BACKBONE_CHECKPOINTS = {
    arch: f'https://download.openmmlab.com/mmclassification/v0/efficientnet/{name}.pth'
    for arch, name in {
        'b0': 'efficientnet-b0_3rdparty_8xb32-aa_in1k_20220119-8d939117',
        'b1': 'efficientnet-b1_3rdparty_8xb32-aa_in1k_20220119-619d8ae3',
        'b2': 'efficientnet-b2_3rdparty_8xb32-aa_in1k_20220119-dd61e80b',
        'b3': 'efficientnet-b3_3rdparty_8xb32-aa_in1k_20220119-5b4887a0',
        'b4': 'efficientnet-b4_3rdparty_8xb32-aa_in1k_20220119-45b8bd2b',
        'b5': 'efficientnet-b5_3rdparty_8xb32-aa_in1k_20220119-2cab8b78',
        'b6': 'efficientnet-b6_3rdparty_8xb32-aa_in1k_20220119-45b03310',
    }.items()
}
#: [automl] jitter_min, jitter_max: the random scale range of the training images
SCALE_JITTER = (0.1, 2.0)
#: [automl] lr_warmup_init / learning_rate = 0.008 / 0.08; warm-up over lr_warmup_epoch = 1
WARMUP_START_FACTOR, WARMUP_EPOCHS = 0.1, 1
TEST_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')


def efficientdet_model(variant) -> dict:
    """The model overrides of ``variant`` (a name such as ``'d3'`` or ``dict(phi=3)``): backbone arch
    and its ImageNet checkpoint, BiFPN and head sizes, anchor scale, and the padding to the input size."""
    params = resolve_efficientdet_arch(variant)
    return dict(
        # [automl] images are padded (after normalisation, with 0) to the square input size
        data_preprocessor=dict(pad_size_divisor=params.image_size),
        backbone=dict(
            arch=params.backbone,
            out_indices=BACKBONE_LEVELS,
            init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint=BACKBONE_CHECKPOINTS[params.backbone])),
        neck=dict(
            in_channels=list(backbone_level_channels(params)),
            out_channels=params.fpn_channels,
            num_repeats=params.fpn_repeats,
            fusion=params.fusion),
        bbox_head=dict(
            in_channels=params.fpn_channels, stacked_convs=params.head_repeats, anchor_scale=params.anchor_scale))


def efficientdet_pipelines(image_size: int, backend_args: Optional[dict] = None) -> Tuple[List[dict], List[dict]]:
    """``(train_pipeline, test_pipeline)`` at the square ``image_size``.

    Training [automl ``dataloader.py``]: flip, scale the image so that it fits a square of
    ``image_size x U(0.1, 2.0)`` (aspect kept), take a random ``image_size`` crop; crops without a box
    are kept, as automl keeps them. Testing: fit into ``image_size`` (aspect kept). The data
    preprocessor pads both to ``image_size`` square."""
    scale = (image_size, image_size)
    train = [
        dict(type='LoadImageFromFile', backend_args=backend_args),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='RandomResize', scale=scale, ratio_range=SCALE_JITTER, keep_ratio=True),
        dict(type='RandomCrop', crop_size=scale, allow_negative_crop=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs'),
    ]
    test = [
        dict(type='LoadImageFromFile', backend_args=backend_args),
        dict(type='Resize', scale=scale, keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs', meta_keys=TEST_META_KEYS),
    ]
    return train, test


def efficientdet_schedule(max_epochs: int) -> List[dict]:
    """[automl] lr_decay_method='cosine': linear warm-up from 0.1 x lr over the first epoch, then
    cosine decay to 0 at ``max_epochs``; both stepped per iteration."""
    return [
        dict(
            type='LinearLR',
            start_factor=WARMUP_START_FACTOR,
            by_epoch=True,
            begin=0,
            end=WARMUP_EPOCHS,
            convert_to_iter_based=True),
        dict(
            type='CosineAnnealingLR',
            eta_min=0.0,
            T_max=max_epochs - WARMUP_EPOCHS,
            by_epoch=True,
            begin=WARMUP_EPOCHS,
            end=max_epochs,
            convert_to_iter_based=True),
    ]


def efficientdet_variant(variant, backend_args: Optional[dict] = None) -> tuple:
    """``(image_size, model, train_pipeline, test_pipeline, train_dataloader, val_dataloader,
    test_dataloader)`` of ``variant``, to be merged over the recipe base."""
    image_size = resolve_efficientdet_arch(variant).image_size
    train_pipeline, test_pipeline = efficientdet_pipelines(image_size, backend_args)
    train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
    val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
    return (image_size, efficientdet_model(variant), train_pipeline, test_pipeline, train_dataloader, val_dataloader,
            val_dataloader)
