# EfficientDet-D3 on COCO with the official recipe (_base_/_efficientdet_tf-recipe_coco.py); its sizes
# come from mmeffnet.arch.efficientdet.efficientdet_scaling(3). 8 GPUs x 16 images.
#   tools/dist_train.sh configs/efficientdet/efficientdet_d3_8xb16-crop896-300e_coco.py 8
_base_ = ['./_base_/_efficientdet_tf-recipe_coco.py']
from mmeffnet.config.fragments.efficientdet import efficientdet_variant  # noqa: E402

variant = 'd3'
(image_size, model, train_pipeline, test_pipeline, train_dataloader, val_dataloader,
 test_dataloader) = efficientdet_variant(variant, {{_base_.backend_args}})
