# EfficientNet-Lite (tensorflow/tpu lite/efficientnet_lite_builder.py): arch='lite0'..'lite4' builds
# the network (no squeeze-excitation, ReLU6, stem and head not scaled). The data differs from B0-B7:
# [TF] inception-style normalisation, MEAN_RGB=127, STDDEV_RGB=128, and bilinear instead of bicubic
# resizing ("lite or edgetpu use bilinear for easier post-quantization", main.py). The rest is the
# B0-B7 recipe.
_base_ = ['./efficientnet_tf-recipe_in1k.py']

data_preprocessor = dict(mean=[127.0, 127.0, 127.0], std=[128.0, 128.0, 128.0])
model = dict(backbone=dict(arch='lite0'))
