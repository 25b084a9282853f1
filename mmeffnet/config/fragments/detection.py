"""Config fragments of the detection configs: the RetinaNet-EfficientNet recipe's data pipelines at
a given input size, in one place.

mmdet's recipe (configs/efficientnet/retinanet_effb3_fpn_8xb4-crop896-1x_coco.py): random resize
(0.8-1.2) with the aspect kept, random crop and flip for training; a resize for testing. The B3,
B0 and demo configs differ only in ``image_size`` (a child config cannot re-evaluate its base's
lists at another size, so each calls this function). The demo configs (RetinaNet and EfficientDet
on the generated shapes) share their data settings through ``shapes_demo_data``.
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


SHAPES_DATA_ROOT = 'outputs/detection_demo/shapes/'  # where tools/demo/detection_demo.py writes the set
SHAPES_CLASSES = ('circle', 'square', 'triangle')


def shapes_demo_data(train_pipeline: List[dict],
                     test_pipeline: List[dict],
                     batch_size: int = 8) -> Tuple[dict, dict, dict]:
    """``(train_dataloader, val_dataloader, val_evaluator)`` of a demo config on the generated shapes
    set, over its base's COCO dataset and CocoMetric (per class), in one process (no workers)."""
    metainfo = dict(classes=SHAPES_CLASSES, palette=[(220, 20, 60), (0, 130, 255), (0, 200, 80)])

    def loader(split: str, pipeline: List[dict], **dataset) -> dict:
        return dict(
            batch_size=batch_size,
            num_workers=0,
            persistent_workers=False,
            dataset=dict(
                data_root=SHAPES_DATA_ROOT,
                metainfo=metainfo,
                ann_file=f'annotations/instances_{split}.json',
                data_prefix=dict(img=f'{split}/'),
                **dataset,
                pipeline=pipeline))

    train = loader('train', train_pipeline, filter_cfg=dict(filter_empty_gt=True, min_size=0))
    evaluator = dict(ann_file=SHAPES_DATA_ROOT + 'annotations/instances_val.json', classwise=True)
    return train, loader('val', test_pipeline), evaluator
