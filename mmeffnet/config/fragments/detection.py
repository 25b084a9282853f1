"""Config fragments of the detection configs: the RetinaNet-EfficientNet recipe's data pipelines at
a given input size, in one place.

mmdet's recipe (configs/efficientnet/retinanet_effb3_fpn_8xb4-crop896-1x_coco.py): random resize
(0.8-1.2) with the aspect kept, random crop and flip for training; a resize for testing. The B3,
B0 and demo configs differ only in ``image_size`` (a child config cannot re-evaluate its base's
lists at another size, so each calls this function).
"""
from typing import List, Optional, Tuple

TEST_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')


def retinanet_pipelines(image_size: Tuple[int, int],
                        backend_args: Optional[dict] = None) -> Tuple[List[dict], List[dict]]:
    """``(train_pipeline, test_pipeline)`` of the recipe at ``image_size`` (h, w)."""
    train = [
        dict(type='LoadImageFromFile', backend_args=backend_args),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='RandomResize', scale=image_size, ratio_range=(0.8, 1.2), keep_ratio=True),
        dict(type='RandomCrop', crop_size=image_size),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs'),
    ]
    test = [
        dict(type='LoadImageFromFile', backend_args=backend_args),
        dict(type='Resize', scale=image_size, keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs', meta_keys=TEST_META_KEYS),
    ]
    return train, test
