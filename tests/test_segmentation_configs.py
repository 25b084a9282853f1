"""Segmentation configs: neck/head channels agree with the backbone, the mmseg recipes are kept,
dilated (output stride 8/16) backbones keep the parameters and the ImageNet weights."""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import CONFIGS
from mmeffnet import EfficientNet
from mmeffnet.config import swap_sync_bn

SEG_CONFIGS = sorted(
    p for p in glob.glob(osp.join(CONFIGS, 'segmentation', '*.py')) if not osp.basename(p).startswith('_'))
IDS = [osp.basename(p)[:-3] for p in SEG_CONFIGS]
PRETRAINED_URL = re.compile(r'^https://download\.openmmlab\.com/mmclassification/v0/efficientnet/'
                            r'efficientnet-(b\d)_3rdparty_8xb32-aa_in1k_\d+-[0-9a-f]+\.pth$')


def load_cfg(path: str) -> Config:
    cfg = Config.fromfile(path)
    swap_sync_bn(cfg, distributed=False)
    return cfg


def build_model(cfg: Config):
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    model_cfg = cfg.model.deepcopy()
    model_cfg.backbone.init_cfg = None  # no downloads in tests
    return MODELS.build(model_cfg).eval()


def _heads(model):
    heads = [model.decode_head]
    if getattr(model, 'auxiliary_head', None) is not None:
        heads.append(model.auxiliary_head)
    return heads


def test_every_area_config_is_present():
    names = set(IDS)
    assert {
        'fpn_effb3_4xb4-160k_ade20k-512x512', 'deeplabv3plus_effb3-d8_4xb4-80k_ade20k-512x512',
        'upernet_effb5_4xb4-160k_ade20k-512x512', 'deeplabv3plus_effb3-d8_4xb4-40k_voc12aug-512x512'
    } <= names, names


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=IDS)
def test_neck_and_head_channels_match_the_backbone_outputs(path):
    cfg = load_cfg(path)
    model = build_model(cfg)
    backbone = model.backbone
    assert isinstance(backbone, EfficientNet)
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 64, 64))
    channels = [f.shape[1] for f in feats]
    strides = [64 // f.shape[-1] for f in feats]
    assert channels == backbone.out_channels and strides == backbone.out_strides
    if model.with_neck:
        assert list(model.neck.in_channels) == channels
        with torch.no_grad():
            feats = model.neck(feats)
        channels = [f.shape[1] for f in feats]
        strides = [64 // f.shape[-1] for f in feats]  # BiFPN adds levels
    for head in _heads(model):
        if isinstance(head.in_index, (list, tuple)):
            assert list(head.in_channels) == [channels[i] for i in head.in_index], type(head).__name__
        else:
            assert head.in_channels == channels[head.in_index], type(head).__name__
    head = model.decode_head
    if hasattr(head, 'feature_strides'):  # FPNHead upsamples by these
        assert list(head.feature_strides) == strides
    if hasattr(head, 'c1_bottleneck'):  # DeepLabV3+: the low-level feature is inputs[0], at stride 4
        assert head.c1_bottleneck.conv.in_channels == channels[0] and strides[0] == 4
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, head.num_classes, 16, 16)


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=IDS)
def test_recipe_follows_mmseg(path):
    cfg = load_cfg(path)
    name = osp.basename(path)
    assert 'mmeffnet' in cfg.custom_imports.imports and 'mmeffnet.datasets.seg_checks' in cfg.custom_imports.imports
    assert cfg.default_scope == 'mmseg'
    backbone = cfg.model.backbone
    assert backbone.type == 'mmeffnet.EfficientNet' and f'eff{backbone.arch}' in name
    assert backbone.padding == 'same' and cfg.model.pretrained is None
    init = backbone.init_cfg
    assert init.type == 'Pretrained' and init.prefix == 'backbone'
    match = PRETRAINED_URL.match(init.checkpoint)
    assert match and match.group(1) == backbone.arch, init.checkpoint
    # 4 GPUs x 4 images, 512x512 crops, SGD + poly LR over the iterations named in the file
    iters = int(re.search(r'-(\d+)k_', name).group(1)) * 1000
    assert cfg.train_dataloader.batch_size == 4 and cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_cfg.max_iters == iters
    (poly, ) = cfg.param_scheduler
    assert poly.type == 'PolyLR' and poly.end == iters and poly.power == 0.9
    assert cfg.optim_wrapper.optimizer.type == 'SGD' and cfg.optim_wrapper.optimizer.lr == 0.01
    assert tuple(cfg.model.data_preprocessor.size) == (512, 512)
    crop = [t for t in _train_pipeline(cfg) if t.type == 'RandomCrop']
    assert tuple(crop[0].crop_size) == (512, 512)
    assert cfg.val_evaluator.type == 'IoUMetric' and cfg.val_evaluator.iou_metrics == ['mIoU']
    if '-d8_' in name:
        assert backbone.output_stride == 8


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=IDS)
def test_datasets_are_checked_and_classes_agree(path):
    cfg = load_cfg(path)
    from mmseg.datasets import ADE20KDataset, PascalVOCDataset
    ade = 'ade20k' in path
    dataset_cls = ADE20KDataset if ade else PascalVOCDataset
    num_classes = len(dataset_cls.METAINFO['classes'])
    assert num_classes == (150 if ade else 21)
    assert cfg.model.decode_head.num_classes == num_classes
    if 'auxiliary_head' in cfg.model:
        assert cfg.model.auxiliary_head.num_classes == num_classes
    assert [h.type for h in cfg.custom_hooks] == ['mmeffnet.SegDataCheckHook']
    for split in ('train', 'val', 'test'):
        for ds in _leaf_datasets(cfg[f'{split}_dataloader'].dataset):
            assert ds.type == dataset_cls.__name__
            if ade:
                assert ds.reduce_zero_label is True
            types = [t.type for t in ds.pipeline]
            check = types.index('mmeffnet.CheckSegSample')
            assert types[check - 1] == 'LoadAnnotations', types
            assert ds.pipeline[check].num_classes == num_classes


def _leaf_datasets(ds):
    return [d for child in ds.datasets for d in _leaf_datasets(child)] if 'datasets' in ds else [ds]


def _train_pipeline(cfg):
    return _leaf_datasets(cfg.train_dataloader.dataset)[0].pipeline


# ------------------------------------------------------------------ dilated backbones


@pytest.mark.parametrize('output_stride, strides, dilations', [
    (8, [4, 8, 8, 8], {
        4: {1, 2},
        5: {2, 4}
    }),
    (16, [4, 8, 16, 16], {
        5: {1, 2}
    }),
])
def test_dilated_seg_backbone_keeps_parameters_and_early_features(output_stride, strides, dilations):
    torch.manual_seed(0)
    ref = EfficientNet('b3', out_indices=(2, 3, 4, 5)).eval()
    model = EfficientNet('b3', out_indices=(2, 3, 4, 5), output_stride=output_stride).eval()
    ref_state, state = ref.state_dict(), model.state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in ref_state.items()}
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
    assert model.out_strides == strides and model.out_channels == ref.out_channels
    for level, expected in dilations.items():  # the levels that run at stride 1 instead of 2
        convs = [b.depthwise_conv.conv for b in model.layers[level]]
        assert {c.dilation[0] for c in convs} == expected
        assert all(c.stride == (1, 1) for c in convs)
    model.load_state_dict(ref_state)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        out, ref_out = model(x), ref(x)
    assert [96 // o.shape[-1] for o in out] == strides
    # levels before the first dilated one are the same computation
    torch.testing.assert_close(out[0], ref_out[0])
    torch.testing.assert_close(out[1], ref_out[1])
    if output_stride == 16:
        torch.testing.assert_close(out[2], ref_out[2])


def test_config_init_cfg_loads_an_mmpretrain_checkpoint_into_the_dilated_backbone(tmp_path):
    """The DeepLabV3+ config's `Pretrained` init with a local copy of what mmpretrain's
    EfficientNet-B3 classifier saves (backbone + 1x1 head conv + fc): every backbone tensor is
    loaded into the dilated network; the unbuilt head level and the classifier are skipped."""
    from mmpretrain.models.backbones import EfficientNet as MMPretrainEfficientNet
    torch.manual_seed(0)
    source = MMPretrainEfficientNet(arch='b3').state_dict()  # levels 0..6, as in the classifier
    state = {f'backbone.{k}': v for k, v in source.items()}
    state.update({'head.fc.weight': torch.zeros(1000, 1536), 'head.fc.bias': torch.zeros(1000)})
    ckpt = tmp_path / 'efficientnet-b3_in1k.pth'
    torch.save({'state_dict': state, 'meta': {}}, ckpt)

    path = [p for p in SEG_CONFIGS if 'deeplabv3plus_effb3-d8_4xb4-80k_ade20k' in p][0]
    cfg = load_cfg(path)
    cfg.model.backbone.init_cfg.checkpoint = str(ckpt)
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()
    loaded = model.backbone.state_dict()
    assert loaded.keys() <= source.keys()
    for key, value in loaded.items():
        torch.testing.assert_close(value, source[key], msg=key)
    assert model.backbone.output_stride == 8
