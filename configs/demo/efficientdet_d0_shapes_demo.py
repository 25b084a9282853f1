# EfficientDet-D0 with its official recipe (configs/efficientdet/efficientdet_d0_8xb16-crop512-300e_coco.py)
# trained on the generated shapes set (mmeffnet/datasets/synthetic_shapes.py) in minutes on a CPU:
#   python tools/demo/detection_demo.py --config configs/demo/efficientdet_d0_shapes_demo.py
# Same network (B0 + BiFPN 64 x 3 + head, anchors, focal / Huber losses, assigner), optimizer, clipping,
# warm-up + cosine schedule and EMA. ONLY these are overridden, and why:
# - input size 512 -> 128 pixels (objects of 32-72 px, matched at strides 8-32), scale jitter
#   0.1-2.0 -> 0.8-1.2 (at 0.1 a 128 px image keeps 13 px, too small for a few minutes of training);
# - schedule: 12 epochs of 20 iterations, batch 8 on one CPU process instead of 8 x 16; lr 0.08, not
#   the linear rule's 0.16 x 8 / 128 = 0.01: from scratch in 240 iterations, 0.01 barely moves the
#   network (seed 0, bbox mAP 0.007), 0.04 gives 0.069, 0.08 0.246, 0.16 0.096 (too large again);
#   warm-up and cosine as in the recipe;
# - BN momentum 0.01 -> 0.1 (backbone, BiFPN, head): 0.01 averages the running statistics over ~100
#   iterations, made for a 300-epoch schedule; in 240 iterations they would lag the weights;
# - dataset: the shapes set written by tools/demo/detection_demo.py, its 3 classes, and no ImageNet
#   initialisation (nothing is downloaded, so from scratch).
_base_ = ['../efficientdet/efficientdet_d0_8xb16-crop512-300e_coco.py']
from mmeffnet.config.fragments.detection import SHAPES_CLASSES, shapes_demo_data  # noqa: E402
from mmeffnet.config.fragments.efficientdet import efficientdet_pipelines, efficientdet_schedule  # noqa: E402

image_size = (128, 128)
classes = SHAPES_CLASSES

norm_cfg = dict(type='SyncBN', requires_grad=True, eps=1e-3, momentum=0.1)
model = dict(
    data_preprocessor=dict(pad_size_divisor=image_size[0]),
    backbone=dict(init_cfg=None, norm_cfg=norm_cfg),
    neck=dict(norm_cfg=norm_cfg),
    bbox_head=dict(num_classes=len(classes), norm_cfg=norm_cfg))

train_pipeline, test_pipeline = efficientdet_pipelines(image_size[0])
train_pipeline[2]['ratio_range'] = (0.8, 1.2)
train_dataloader, val_dataloader, val_evaluator = shapes_demo_data(train_pipeline, test_pipeline)
test_dataloader, test_evaluator = val_dataloader, val_evaluator

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=0.08))
param_scheduler = efficientdet_schedule(max_epochs)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
randomness = dict(seed=0)
