# Evaluate the AdvProp EfficientNet-B1 checkpoint (mmpretrain efficientnet-b1_3rdparty_8xb32-aa-advprop_in1k,
# TF ckpts "advprop"): AdvProp models take pixels scaled to [-1, 1] (mean = std = 127.5) instead of
# the ImageNet mean/std. Expected accuracies: docs/classification.md.
_base_ = ['../_base_/efficientnet_tf-recipe_in1k.py']
from mmeffnet.config.fragments.classification import eval_variant  # noqa: E402

arch = 'b1'
data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
img_size, model, test_pipeline, val_dataloader, test_dataloader = eval_variant(arch)
custom_hooks = [dict(type='mmeffnet.ClsDataCheckHook')]  # no EMA: the checkpoint's weights are evaluated as they are
