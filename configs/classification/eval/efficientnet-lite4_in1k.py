# Evaluate an EfficientNet-Lite4 checkpoint (TF efficientnet-lite4, or timm tf_efficientnet_lite4, converted
# with tools/model_converters/convert_efficientnet.py) with the TF Lite evaluation preprocessing:
# bilinear resizing, mean 127, std 128 (_base_/efficientnet-lite_tf-recipe_in1k.py).
# Expected accuracies: docs/classification.md.
_base_ = ['../_base_/efficientnet-lite_tf-recipe_in1k.py']
from mmeffnet.config.fragments.classification import eval_variant  # noqa: E402

arch = 'lite4'
img_size, model, test_pipeline, val_dataloader, test_dataloader = eval_variant(arch)
custom_hooks = [dict(type='mmeffnet.ClsDataCheckHook')]  # no EMA: the checkpoint's weights are evaluated as they are
