# EfficientNet-Lite2 on ImageNet with the paper's training recipe
# (_base_/efficientnet-lite_tf-recipe_in1k.py): input size,
# dropout and classifier width come from mmeffnet.arch.ARCHS; 8 GPUs x 128 images, the
# LR follows the total batch from 0.256 at 4096 (auto_scale_lr).
_base_ = ['./_base_/efficientnet-lite_tf-recipe_in1k.py']
from mmeffnet.config.fragments.classification import train_variant  # noqa: E402

arch = 'lite2'
batch_size = 128  # per GPU
(img_size, model, train_pipeline, test_pipeline, train_dataloader, val_dataloader,
 test_dataloader) = train_variant(arch, batch_size)
