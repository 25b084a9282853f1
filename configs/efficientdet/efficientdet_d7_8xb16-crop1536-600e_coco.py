# EfficientDet-D7 on COCO with the official recipe (_base_/_efficientdet_tf-recipe_coco.py); its sizes
# come from mmeffnet.arch.efficientdet.efficientdet_scaling(7). 8 GPUs x 16 images.
#   tools/dist_train.sh configs/efficientdet/efficientdet_d7_8xb16-crop1536-600e_coco.py 8
_base_ = ['./_base_/_efficientdet_tf-recipe_coco.py']
from mmeffnet.config.fragments.efficientdet import efficientdet_schedule, efficientdet_variant  # noqa: E402

variant = 'd7'
(image_size, model, train_pipeline, test_pipeline, train_dataloader, val_dataloader,
 test_dataloader) = efficientdet_variant(variant, {{_base_.backend_args}})
# [paper] D7 trains for 600 epochs
max_epochs = 600
param_scheduler = efficientdet_schedule(max_epochs)
train_cfg = dict(max_epochs=max_epochs)
