# Evaluate an EfficientNet-B3 ImageNet checkpoint with the TF evaluation preprocessing: the
# mmpretrain model-zoo checkpoints efficientnet-b3_3rdparty_8xb32_in1k, ..._8xb32-aa_in1k and
# ..._3rdparty-ra-noisystudent_in1k (TF ports, same layout as our backbone: they load as they are),
# converted timm/TF/lukemelas checkpoints, or a checkpoint trained with
# ../efficientnet-b3_*-rmsprop_in1k.py. Expected accuracies: docs/classification.md.
_base_ = ['../_base_/efficientnet_tf-recipe_in1k.py']
from mmeffnet.config.fragments.classification import eval_variant  # noqa: E402

arch = 'b3'
img_size, model, test_pipeline, val_dataloader, test_dataloader = eval_variant(arch)
custom_hooks = [dict(type='mmeffnet.ClsDataCheckHook')]  # no EMA: the checkpoint's weights are evaluated as they are
