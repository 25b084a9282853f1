"""Every config under configs/ loads (cross-package `mmdet::`/`mmseg::`/`mmpretrain::` bases resolve)
and builds its model with our backbone in it."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import CONFIGS
from mmeffnet.config import check_neck_fits_backbone

ALL_CONFIGS = sorted(
    p for p in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True) if not osp.basename(p).startswith('_'))


def _ids(paths):
    return [osp.relpath(p, CONFIGS) for p in paths]


def test_there_are_configs():
    assert ALL_CONFIGS, f'no configs under {CONFIGS}'


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=_ids(ALL_CONFIGS))
def test_config_loads_and_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope in ('mmdet', 'mmseg', 'mmpretrain'), cfg.default_scope
    assert 'mmeffnet' in cfg.get('custom_imports', {}).get('imports', []), 'configs must import mmeffnet'
    check_neck_fits_backbone(cfg)  # what tools/train.py and tools/test.py check before building
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    model_cfg = cfg.model
    if model_cfg.get('type') in ('DetTTAModel', 'SegTTAModel'):
        model_cfg = model_cfg.module
    model = registry.build(model_cfg)
    backbone = getattr(model, 'backbone', None)
    from mmeffnet import EfficientNet
    assert isinstance(backbone, EfficientNet), f'{path}: backbone is {type(backbone).__name__}'


def test_neck_that_does_not_fit_the_backbone_is_named():
    cfg = Config.fromfile(osp.join(CONFIGS, 'retinanet_effb3_fpn_crop896_8x4_1x_coco.py'))
    cfg.merge_from_dict({'model.backbone.out_indices': (2, 3, 4)})
    with pytest.raises(
            ValueError,
            match=r"^model.neck \(FPN\) in_channels=\[48, 136, 384\] do not fit the backbone: EfficientNet "
            r"arch='b3' with out_indices=\(2, 3, 4\) outputs channels \[32, 48, 136\]. Set "
            r"model.neck.in_channels=\[32, 48, 136\]$"):
        check_neck_fits_backbone(cfg)
    cfg.merge_from_dict({'model.neck.in_channels': [32, 48, 136]})
    check_neck_fits_backbone(cfg)
