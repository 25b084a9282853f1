# Evaluate the Noisy Student EfficientNet-L2 checkpoint at 475 px (mmpretrain
# efficientnet-l2_3rdparty-ra-noisystudent_in1k-475px; TF noisy_student_efficientnet-l2_475).
# L2 is not trained with the supervised recipe (it is a JFT semi-supervised student), so it has
# no training config. Expected accuracies: docs/classification.md.
_base_ = ['../_base_/efficientnet_tf-recipe_in1k.py']
from mmeffnet.config.fragments.classification import eval_variant  # noqa: E402

arch = 'l2'
img_size = 475  # the 475 px fine-tuned release
img_size, model, test_pipeline, val_dataloader, test_dataloader = eval_variant(arch, batch_size=16, img_size=img_size)
custom_hooks = [dict(type='mmeffnet.ClsDataCheckHook')]  # no EMA: the checkpoint's weights are evaluated as they are
