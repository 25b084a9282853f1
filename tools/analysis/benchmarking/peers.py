"""The compared models, each built for one of two uses:

- ``levels='pyramid'``: the backbone a detector uses, the maps at strides 8, 16 and 32 (the 1x1
  head conv not built/used) -- mmdet's recipe ``out_indices=(3, 4, 5)``;
- ``levels='head'``: the whole feature extractor up to the 1x1 head conv (what a classifier
  pools; Table 4 of the paper times the classifier).

Every peer gets stochastic depth 0.2 (the recipe's), TF BatchNorm settings where it has the
option, and its own padding: mmdet ``Conv2dAdaptivePadding`` + mmcv ``Swish``; timm
``efficientnet_*`` symmetric padding, ``tf_efficientnet_*`` run-time SAME padding.
"""
from typing import Callable, Dict, Tuple

import torch.nn as nn

PYRAMID_OUT_INDICES = (3, 4, 5)  # mmdet/mmpretrain level numbering
TIMM_PYRAMID_INDICES = (2, 3, 4)  # timm feature_info: strides 2, 4, 8, 16, 32

LABELS: Dict[str, str] = {
    'ours': 'mmeffnet',
    'ours-fused': 'mmeffnet fuse() (deploy)',
    'ours-cp': 'mmeffnet with_cp=True',
    'ours-nchw': 'mmeffnet, channels_last off',
    'ours-save-bn-input': "mmeffnet, memory='save-bn-input'",
    'ours-plain-bn': "mmeffnet, memory='plain'",
    'mmdet': 'mmdet 3.3 EfficientNet',
    'timm': 'timm efficientnet_{arch}',
    'timm-tf': 'timm tf_efficientnet_{arch}',
    'torchvision': 'torchvision efficientnet_{arch}',
    'onnxruntime': 'onnxruntime (mmeffnet fused)',
    'effdet': 'effdet tf_efficientdet_{arch}',
}


def label(name: str, arch: str = 'b3') -> str:
    return LABELS[name].format(arch=arch)


class TimmFeatures(nn.Module):
    """timm's ``forward_features`` (stem .. 1x1 head conv) as ``forward``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


def _ours(arch: str, levels: str, **kwargs) -> nn.Module:
    from mmeffnet import EfficientNet
    out_indices = PYRAMID_OUT_INDICES if levels == 'pyramid' else (6, )
    model = EfficientNet(arch, out_indices=out_indices, drop_path_rate=0.2, **kwargs)
    # as a runner would: PyTorch's default init shrinks activations towards denormals, which skews timing
    model.init_weights()
    return model


# the ablations of ours: constructor options switched from their defaults
OURS_OPTIONS: Dict[str, dict] = {
    'ours': {},
    'ours-fused': {},
    'ours-cp': dict(with_cp=True),
    'ours-nchw': dict(channels_last=False),
    'ours-save-bn-input': dict(memory='save-bn-input'),
    'ours-plain-bn': dict(memory='plain'),
}


def _ours_variant(name: str, arch: str, levels: str) -> nn.Module:
    if name not in OURS_OPTIONS:
        raise ValueError(f'unknown model {name!r}; choose from {sorted(LABELS)}')
    model = _ours(arch, levels, **OURS_OPTIONS[name])
    return model.fuse() if name == 'ours-fused' else model


def _mmdet(arch: str, levels: str) -> nn.Module:
    from mmdet.models.backbones import EfficientNet as MMDetEfficientNet
    out_indices = PYRAMID_OUT_INDICES if levels == 'pyramid' else (6, )
    return MMDetEfficientNet(
        arch=arch, out_indices=out_indices, drop_path_rate=0.2, norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01))


def _timm(prefix: str) -> Callable[[str, str], nn.Module]:

    def build(arch: str, levels: str) -> nn.Module:
        import timm
        name = f'{prefix}efficientnet_{arch}'
        if levels == 'pyramid':
            return timm.create_model(name, features_only=True, out_indices=TIMM_PYRAMID_INDICES, drop_path_rate=0.2)
        return TimmFeatures(timm.create_model(name, drop_path_rate=0.2))

    return build


def _torchvision(arch: str, levels: str) -> nn.Module:
    import torchvision
    features = getattr(torchvision.models, f'efficientnet_{arch}')(stochastic_depth_prob=0.2).features
    # pyramid: the stages to stride 32 without the 1x1 head conv, like the other backbones
    return features[:-1] if levels == 'pyramid' else features


BUILDERS: Dict[str, Callable[[str, str], nn.Module]] = {
    'mmdet': _mmdet,
    'timm': _timm(''),
    'timm-tf': _timm('tf_'),
    'torchvision': _torchvision,
}


def build_model(name: str, arch: str, levels: str) -> nn.Module:
    """Build the compared model ``name`` (a key of :data:`LABELS`, not onnxruntime)."""
    if levels not in ('pyramid', 'head'):
        raise ValueError(f"levels must be 'pyramid' or 'head', got {levels!r}")
    if name.startswith('ours'):
        return _ours_variant(name, arch, levels)
    if name not in BUILDERS:
        raise ValueError(f'unknown model {name!r}; choose from {sorted(LABELS)}')
    return BUILDERS[name](arch, levels)


def peer_available(name: str) -> Tuple[bool, str]:
    """Whether the package behind ``name`` imports here, and why not."""
    module = {
        'mmdet': 'mmdet.models.backbones',
        'timm': 'timm',
        'timm-tf': 'timm',
        'torchvision': 'torchvision',
        'onnxruntime': 'onnxruntime',
        'effdet': 'effdet',
    }.get(name)
    if module is None:
        return True, ''
    try:
        __import__(module)
        return True, ''
    except Exception as exc:  # a missing or broken optional peer skips its rows
        return False, f'{type(exc).__name__}: {exc}'
