"""The EfficientDet configs (configs/efficientdet/): each D-variant is what the one scaling function
says, Table 2 of the paper holds for the models the configs build, and the recipe's values are
the official ones (docs/efficientdet.md lists them with their sources)."""
import glob
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

import mmeffnet.tool_entry  # noqa: F401 (mmeffnet:: bases, quiet pkg_resources)
from conftest import CONFIGS
from mmeffnet.arch.efficientdet import EFFICIENTDET_ARCHS, backbone_level_channels
from mmeffnet.config.fragments.efficientdet import BACKBONE_CHECKPOINTS, efficientdet_variant
from test_efficientdet import FLOP_TOLERANCE, PARAM_TOLERANCE, TABLE2

VARIANT_CONFIGS = {
    osp.basename(p).split('_')[1]: p
    for p in sorted(glob.glob(osp.join(CONFIGS, 'efficientdet', 'efficientdet_d*_coco.py')))
}
D0 = VARIANT_CONFIGS['d0']


def test_there_is_a_config_per_variant():
    assert sorted(VARIANT_CONFIGS) == sorted(EFFICIENTDET_ARCHS)


@pytest.mark.parametrize('name', sorted(EFFICIENTDET_ARCHS))
def test_variant_config_is_the_scaling_function(name):
    cfg, params = Config.fromfile(VARIANT_CONFIGS[name]), EFFICIENTDET_ARCHS[name]
    model = cfg.model
    assert model.backbone.arch == params.backbone
    assert model.backbone.init_cfg.checkpoint == BACKBONE_CHECKPOINTS[params.backbone]
    assert model.neck.in_channels == list(backbone_level_channels(params))
    assert (model.neck.out_channels, model.neck.num_repeats, model.neck.fusion) == (params.fpn_channels,
                                                                                    params.fpn_repeats, params.fusion)
    assert (model.bbox_head.in_channels, model.bbox_head.stacked_convs,
            model.bbox_head.anchor_scale) == (params.fpn_channels, params.head_repeats, params.anchor_scale)
    size = params.image_size
    assert model.data_preprocessor.pad_size_divisor == size
    assert f'crop{size}' in osp.basename(VARIANT_CONFIGS[name])
    train, test = cfg.train_dataloader.dataset.pipeline, cfg.test_dataloader.dataset.pipeline
    assert [t.get('scale', t.get('crop_size')) for t in train[2:4]] == [(size, size)] * 2
    assert test[1].scale == (size, size) and cfg.val_dataloader.dataset.pipeline == test
    assert cfg.train_cfg.max_epochs == (600 if name == 'd7' else 300)
    assert cfg.param_scheduler[1].end == cfg.train_cfg.max_epochs


@pytest.mark.parametrize('name', sorted(EFFICIENTDET_ARCHS))
def test_table2_holds_for_the_configs_models(name):
    """Parameters within 2 % and FLOPs within 5 % of Table 2 for the model each config builds (80
    classes instead of the paper's 90: 0.2-0.8 % fewer parameters)."""
    from mmeffnet.search.config_complexity import measure_config
    counted = measure_config(Config.fromfile(VARIANT_CONFIGS[name]))
    params_m, flops_b = TABLE2[name]
    assert abs(counted.params / 1e6 / params_m - 1) <= PARAM_TOLERANCE, counted.params
    assert abs(counted.macs / 1e9 / flops_b - 1) <= FLOP_TOLERANCE, counted.macs


def test_unknown_variant_names_the_valid_ones():
    with pytest.raises(KeyError, match=r"'d8'.*d0, d1, d2, d3, d4, d5, d6, d7"):
        efficientdet_variant('d8')
    with pytest.raises(ValueError, match=r'phi=9'):
        efficientdet_variant(dict(phi=9))


def _recipe_model(cfg: Config) -> torch.nn.Module:
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    from mmeffnet.config import swap_sync_bn
    cfg = cfg.copy()
    swap_sync_bn(cfg, distributed=False)
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    return MODELS.build(cfg.model)


def test_weight_decay_is_on_conv_kernels_only():
    """automl's reg_l2_loss decays ``kernel`` variables only: ours decays every conv weight and no
    1-D tensor (norm weights and biases, conv biases, BiFPN fusion weights)."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(D0)
    model = _recipe_model(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    names = dict(model.named_parameters())
    fusion = [n for n in names if re.fullmatch(r'neck\.cells\.\d+\.nodes\.\d+\.weight', n)]
    assert fusion, 'no BiFPN fusion weights found'
    for name, p in names.items():
        expected = 4e-5 if p.ndim == 4 else 0.0
        assert decay[id(p)] == pytest.approx(expected), name
    assert wrapper.optimizer.defaults['lr'] == 0.16 and wrapper.optimizer.defaults['momentum'] == 0.9
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=10.0, norm_type=2)


@pytest.mark.parametrize('name', ['d0', 'd7'])
def test_lr_warms_up_for_one_epoch_then_decays_along_a_cosine(name):
    """0.016 -> 0.16 linearly over the first epoch, then 0.08 * (1 + cos(pi * t)) with t the
    fraction of the remaining epochs done (automl's CosineLrSchedule), stepped per iteration.
    mmengine's LinearLR reaches the full lr at the epoch's last iteration, automl one iteration
    later: 1 / (iterations per epoch) apart, ~0.1 % of the warm-up at COCO's ~920 per epoch."""
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = Config.fromfile(VARIANT_CONFIGS[name])
    epochs, per_epoch = cfg.train_cfg.max_epochs, 4
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.optim_wrapper.optimizer.lr)
    schedulers = [
        PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer, epoch_length=per_epoch)) for s in cfg.param_scheduler
    ]
    lrs = []
    for _ in range(epochs * per_epoch):
        lrs.append(optimizer.param_groups[0]['lr'])
        for s in schedulers:
            s.step()
    assert lrs[0] == pytest.approx(0.016)
    assert lrs[per_epoch // 2] == pytest.approx(0.016 + 0.144 * (per_epoch // 2) / (per_epoch - 1))
    for it in (per_epoch, per_epoch * (epochs // 2), len(lrs) - 1):
        t = (it - per_epoch) / ((epochs - 1) * per_epoch)
        assert lrs[it] == pytest.approx(0.08 * (1 + math.cos(math.pi * t)), rel=1e-6, abs=1e-9), it


def test_ema_is_tf_moving_average_with_decay_09998():
    ema, = [h for h in Config.fromfile(D0).custom_hooks if h.type == 'EMAHook']
    assert ema.ema_type == 'mmeffnet.TFExponentialMovingAverage'
    assert ema.momentum == pytest.approx(1 - 0.9998) and ema.update_buffers
