"""Reference EfficientNets (timm, torchvision, lukemelas) with random weights, and a real test image.

Shared by tests/test_converters.py and tests/test_checkpoint_loading.py. Nothing is downloaded.
"""
import os.path as osp
from typing import Dict

import cv2
import numpy as np
import torch
import torch.nn as nn

from conftest import SHARED_DATA
from mmeffnet.arch import build_network_spec

COCO_IMAGE = osp.join(SHARED_DATA, 'coco_mini', 'train2017', '000000000790.jpg')
MEAN, STD = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
ODD = (225, 199)  # H, W: not multiples of 32, odd and even sizes on the way down


def real_image(height: int, width: int) -> torch.Tensor:
    """A real COCO photo resized to (height, width), ImageNet-normalised; a generated scene when
    ../shared/data is absent."""
    if osp.isfile(COCO_IMAGE):
        rgb = cv2.cvtColor(cv2.imread(COCO_IMAGE), cv2.COLOR_BGR2RGB)
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA).astype(np.float64)
    else:
        yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
        rgb = np.stack([255 * xx, 255 * yy, 127 + 120 * np.sin(12 * xx * yy)], -1)
        cv2.circle(rgb, (width // 3, height // 2), min(height, width) // 5, (250, 30, 30), -1)
    return torch.from_numpy(((rgb - MEAN) / STD).transpose(2, 0, 1)[None]).float()


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affine params and running statistics (the init leaves them at 1/0, which would
    hide a mean/var or weight/bias swap), then eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    model.eval()  # mmpretrain's EfficientNet.train() returns None: no chaining
    return model


def capture(modules: Dict[int, nn.Module], run) -> Dict[int, torch.Tensor]:
    """The output of each of ``modules`` (by level) while ``run()`` executes, and ``run()``'s result."""
    store = {}
    handles = [
        module.register_forward_hook(lambda m, i, o, level=level: store.__setitem__(level, o))
        for level, module in modules.items()
    ]
    try:
        result = run()
    finally:
        for handle in handles:
            handle.remove()
    return store, result


def last_stage_of_level(arch: str) -> Dict[int, int]:
    """Table-1 stage index (0..6) that ends each level 1..5 (our grouping, from NetworkSpec)."""
    return {s.level: i for i, s in enumerate(build_network_spec(arch).stages)}


def timm_ref(name: str):
    import timm
    torch.manual_seed(0)  # the library's own random init of the conv weights
    model = randomize(timm.create_model(name, pretrained=False))
    arch = name.replace('tf_', '').replace('efficientnet_', '')
    ends = last_stage_of_level(arch)
    hooks = {0: model.bn1, 6: model.bn2, **{lvl: model.blocks[s] for lvl, s in ends.items()}}
    return model, hooks


def torchvision_ref(name: str):
    import torchvision
    torch.manual_seed(0)
    model = randomize(getattr(torchvision.models, name)())
    ends = last_stage_of_level(name.replace('efficientnet_', ''))
    hooks = {0: model.features[0], 6: model.features[-1], **{lvl: model.features[s + 1] for lvl, s in ends.items()}}
    return model, hooks


def lukemelas_ref(name: str, size):
    """lukemelas pads statically for the ``image_size`` it is built with: build it for the test size."""
    from efficientnet_pytorch import EfficientNet as LukemelasEfficientNet
    torch.manual_seed(0)
    return randomize(LukemelasEfficientNet.from_name(name, image_size=size)), None


def reference_outputs(model: nn.Module, hooks, x: torch.Tensor):
    """(features by level, logits) of a reference model."""
    with torch.no_grad():
        if hooks is None:  # lukemelas: its own endpoints are levels 1..6
            feats = {int(k.split('_')[1]): v for k, v in model.extract_endpoints(x).items()}
            return feats, model(x)
        return capture(hooks, lambda: model(x))
