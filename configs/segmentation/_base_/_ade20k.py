# ADE20K (150 classes) as in mmseg's `_base_/datasets/ade20k.py`, with our input checks added:
# `CheckSegSample` after `LoadAnnotations` and `SegDataCheckHook` (mmeffnet/datasets/seg_checks.py).
# reduce_zero_label=True is set on the dataset (mmseg 1.x's way; LoadAnnotations reads it from there).
_base_ = ['mmseg::_base_/datasets/ade20k.py']

num_classes = 150
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='mmeffnet.CheckSegSample', num_classes=num_classes),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    # labels are loaded after Resize: the metric compares them at the original size
    dict(type='LoadAnnotations'),
    dict(type='mmeffnet.CheckSegSample', num_classes=num_classes),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(reduce_zero_label=True, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(reduce_zero_label=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
custom_hooks = [dict(type='mmeffnet.SegDataCheckHook')]
