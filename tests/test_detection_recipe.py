"""The RetinaNet-EfficientNet recipe cannot drift: the merged config (mmdet's bases inherited via
``mmdet::``) holds every value of mmdet 3.3's ``retinanet_effb3_fpn_8xb4-crop896-1x_coco.py``, the
B0 variant differs only in backbone and input size, and both build a real mmdet RetinaNet whose
backbone loads an mmpretrain-layout EfficientNet checkpoint through the config's ``init_cfg``.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from conftest import CONFIGS

B3 = osp.join(CONFIGS, 'retinanet_effb3_fpn_crop896_8x4_1x_coco.py')
B0 = osp.join(CONFIGS, 'retinanet_effb0_fpn_crop512_8x4_1x_coco.py')
DEMO = osp.join(CONFIGS, 'demo', 'retinanet_effb3_fpn_shapes_demo.py')
# the checkpoint mmdet's recipe initialises its backbone from (mmpretrain's TF-ported B3)
B3_IMAGENET = ('https://download.openmmlab.com/mmclassification/v0/efficientnet/'
               'efficientnet-b3_3rdparty_8xb32-aa_in1k_20220119-5b4887a0.pth')


@pytest.fixture(scope='module')
def b3() -> Config:
    return Config.fromfile(B3)


@pytest.fixture(scope='module')
def b0() -> Config:
    return Config.fromfile(B0)


def _types(pipeline) -> list:
    return [t['type'] for t in pipeline]


def _step(pipeline, type_name: str) -> dict:
    return pipeline[_types(pipeline).index(type_name)]


def build_detector(cfg: Config, **backbone_overrides):
    """A real mmdet RetinaNet from ``cfg.model`` (SyncBN -> BN as tools/train.py does on CPU)."""
    import mmdet.models  # noqa: F401  (registers RetinaNet, FPN, RetinaSepBNHead)
    from mmdet.registry import MODELS

    import mmeffnet  # noqa: F401
    from mmeffnet.config import swap_sync_bn

    cfg = Config(cfg.to_dict())
    swap_sync_bn(cfg, distributed=False)
    model_cfg = cfg.model.to_dict()
    model_cfg['backbone'].update(backbone_overrides)
    model_cfg['_scope_'] = 'mmdet'
    return MODELS.build(model_cfg)


def test_inherits_mmdet_bases_and_mmeffnet_backbone(b3):
    with open(B3) as f:
        text = f.read()
    for base in ('models/retinanet_r50_fpn.py', 'datasets/coco_detection.py', 'schedules/schedule_1x.py',
                 'default_runtime.py'):
        assert f"'mmdet::_base_/{base}'" in text
    assert b3.default_scope == 'mmdet'
    assert b3.model.type == 'RetinaNet'
    assert 'mmeffnet' in b3.custom_imports.imports
    assert b3.custom_imports.allow_failed_imports is False


def test_backbone_values(b3):
    bb = b3.model.backbone
    assert bb.type == 'mmeffnet.EfficientNet'
    assert 'depth' not in bb and 'style' not in bb  # the ResNet keys of the base are deleted
    assert bb.arch == 'b3'
    assert tuple(bb.out_indices) == (3, 4, 5)
    assert bb.drop_path_rate == 0.2
    assert bb.frozen_stages == 0
    assert bb.norm_cfg == dict(type='SyncBN', requires_grad=True, eps=1e-3, momentum=0.01)
    assert bb.norm_eval is False
    assert bb.init_cfg == dict(type='Pretrained', prefix='backbone', checkpoint=B3_IMAGENET)


def test_neck_channels_come_from_the_backbone(b3):
    from mmeffnet.models import EfficientNet
    neck = b3.model.neck
    exposed = EfficientNet('b3', out_indices=(3, 4, 5)).out_channels
    assert exposed == [48, 136, 384]
    assert list(neck.in_channels) == exposed
    assert neck.type == 'FPN'
    assert neck.out_channels == 256
    assert neck.start_level == 0
    assert neck.num_outs == 5
    assert neck.add_extra_convs == 'on_input'
    assert neck.relu_before_extra_convs is True
    assert neck.no_norm_on_lateral is True
    assert neck.norm_cfg == dict(type='BN', requires_grad=True)


def test_head_assigner_and_preprocessor(b3):
    head = b3.model.bbox_head
    assert head.type == 'RetinaSepBNHead'
    assert head.num_ins == 5
    assert head.norm_cfg == dict(type='BN', requires_grad=True)
    assert head.num_classes == 80
    assert head.loss_cls.type == 'FocalLoss' and head.loss_bbox.type == 'L1Loss'
    assigner = b3.model.train_cfg.assigner
    assert assigner.type == 'MaxIoUAssigner'
    assert assigner.neg_iou_thr == 0.5 and assigner.pos_iou_thr == 0.5
    pre = b3.model.data_preprocessor
    assert pre.type == 'DetDataPreprocessor'
    assert pre.pad_size_divisor == 32
    assert pre.bgr_to_rgb is True
    assert list(pre.mean) == [123.675, 116.28, 103.53] and list(pre.std) == [58.395, 57.12, 57.375]
    assert pre.batch_augments == [dict(type='BatchFixedSizePad', size=(896, 896))]


def test_pipelines(b3):
    train = b3.train_dataloader.dataset.pipeline
    assert _types(train) == [
        'LoadImageFromFile', 'LoadAnnotations', 'RandomResize', 'RandomCrop', 'RandomFlip', 'PackDetInputs'
    ]
    resize = _step(train, 'RandomResize')
    assert tuple(resize.scale) == (896, 896)
    assert tuple(resize.ratio_range) == (0.8, 1.2)
    assert resize.keep_ratio is True
    assert tuple(_step(train, 'RandomCrop').crop_size) == (896, 896)
    assert _step(train, 'RandomFlip').prob == 0.5
    assert _step(train, 'LoadAnnotations').with_bbox is True
    for split in ('val', 'test'):
        test = b3[f'{split}_dataloader'].dataset.pipeline
        assert _types(test) == ['LoadImageFromFile', 'Resize', 'LoadAnnotations', 'PackDetInputs']
        assert tuple(_step(test, 'Resize').scale) == (896, 896)
        assert _step(test, 'Resize').keep_ratio is True


def test_dataset_in_the_standard_place(b3):
    train, val = b3.train_dataloader.dataset, b3.val_dataloader.dataset
    assert train.type == val.type == 'mmeffnet.CheckedCocoDataset'
    assert train.data_root == val.data_root == 'data/coco/'
    assert train.ann_file == 'annotations/instances_train2017.json'
    assert train.data_prefix == dict(img='train2017/')
    assert val.ann_file == 'annotations/instances_val2017.json'
    assert val.data_prefix == dict(img='val2017/')
    assert b3.val_evaluator.type == 'CocoMetric' and b3.val_evaluator.metric == 'bbox'
    assert b3.val_evaluator.ann_file == 'data/coco/annotations/instances_val2017.json'


def test_optimizer_schedule_and_batch(b3):
    opt = b3.optim_wrapper
    assert opt.type == 'OptimWrapper'
    assert opt.optimizer == dict(type='SGD', lr=0.04, momentum=0.9, weight_decay=1e-4)
    assert opt.paramwise_cfg == dict(norm_decay_mult=0, bypass_duplicate=True)
    warmup, steps = b3.param_scheduler
    assert warmup == dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000)
    assert steps.type == 'MultiStepLR' and steps.by_epoch is True
    assert list(steps.milestones) == [8, 11] and steps.gamma == 0.1 and steps.end == 12
    assert b3.train_cfg.type == 'EpochBasedTrainLoop'
    assert b3.train_cfg.max_epochs == 12
    assert b3.train_dataloader.batch_size == 4
    assert b3.auto_scale_lr.base_batch_size == 32  # 8 GPUs x 4 images


def test_b0_variant_differs_only_in_backbone_and_size(b3, b0):
    from mmeffnet.models import EfficientNet
    assert b0.model.backbone.arch == 'b0'
    assert list(b0.model.neck.in_channels) == EfficientNet('b0', out_indices=(3, 4, 5)).out_channels == [40, 112, 320]
    assert 'efficientnet-b0_3rdparty_8xb32-aa_in1k' in b0.model.backbone.init_cfg.checkpoint
    assert b0.model.data_preprocessor.batch_augments == [dict(type='BatchFixedSizePad', size=(512, 512))]
    assert tuple(_step(b0.train_dataloader.dataset.pipeline, 'RandomCrop').crop_size) == (512, 512)
    assert tuple(_step(b0.test_dataloader.dataset.pipeline, 'Resize').scale) == (512, 512)
    # everything else is B3's recipe
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'auto_scale_lr', 'val_evaluator'):
        assert b0[key] == b3[key], key
    assert b0.model.bbox_head == b3.model.bbox_head
    assert b0.model.train_cfg == b3.model.train_cfg
    assert b0.train_dataloader.batch_size == 4
    for key in ('drop_path_rate', 'norm_cfg', 'norm_eval', 'out_indices', 'frozen_stages'):
        assert b0.model.backbone[key] == b3.model.backbone[key], key
    assert _types(b0.train_dataloader.dataset.pipeline) == _types(b3.train_dataloader.dataset.pipeline)


def test_demo_config_overrides_only_size_schedule_and_data(b3):
    demo = Config.fromfile(DEMO)
    for key in ('backbone', 'neck', 'bbox_head', 'train_cfg', 'test_cfg'):
        want, got = b3.model[key].to_dict(), demo.model[key].to_dict()
        want.pop('init_cfg', None), got.pop('init_cfg', None)  # no ImageNet weights offline
        want.pop('num_classes', None), got.pop('num_classes', None)
        if key == 'backbone':  # BN statistics averaged over ~10 instead of ~100 iterations (short schedule)
            assert got['norm_cfg'].pop('momentum') == 0.1 and want['norm_cfg'].pop('momentum') == 0.01
        assert got == want, key
    assert _types(demo.train_dataloader.dataset.pipeline) == _types(b3.train_dataloader.dataset.pipeline)
    assert _types(demo.test_dataloader.dataset.pipeline) == _types(b3.test_dataloader.dataset.pipeline)
    assert demo.optim_wrapper.paramwise_cfg == b3.optim_wrapper.paramwise_cfg
    assert demo.optim_wrapper.optimizer.type == 'SGD'
    assert demo.val_evaluator.type == 'CocoMetric'


@pytest.mark.parametrize('config,channels', [(B3, [48, 136, 384]), (B0, [40, 112, 320])])
def test_builds_a_real_retinanet(config, channels):
    from mmdet.models.dense_heads import RetinaSepBNHead
    from mmdet.models.detectors import RetinaNet
    from mmdet.models.necks import FPN

    from mmeffnet.models import EfficientNet

    model = build_detector(Config.fromfile(config), init_cfg=None)
    assert isinstance(model, RetinaNet)
    assert isinstance(model.backbone, EfficientNet) and isinstance(model.neck, FPN)
    assert isinstance(model.bbox_head, RetinaSepBNHead)
    assert model.backbone.out_channels == channels
    assert [conv.conv.in_channels for conv in model.neck.lateral_convs] == channels
    # no norm on the laterals, BN on the head's shared-free convs, BN (from SyncBN) in the backbone
    assert all(conv.norm is None for conv in model.neck.lateral_convs)
    assert isinstance(model.bbox_head.cls_convs[0][0].bn, torch.nn.BatchNorm2d)
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and all(type(m) is torch.nn.BatchNorm2d and m.eps == 1e-3 and m.momentum == 0.01 for m in bns)
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.zeros(1, 3, 128, 128))
    assert [f.shape[1] for f in feats] == [256] * 5
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2, 1]  # strides 8..128


def test_init_cfg_loads_an_mmpretrain_layout_checkpoint(b3, tmp_path):
    """The recipe's backbone init: an mmpretrain EfficientNet-B3 classifier checkpoint (real
    mmpretrain model, same keys as the one at the recipe's URL) loads into our backbone inside the
    detector through ``init_cfg`` with ``prefix='backbone'``."""
    import mmpretrain.models  # noqa: F401
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS

    classifier = PRETRAIN_MODELS.build(
        dict(
            type='ImageClassifier',
            _scope_='mmpretrain',
            backbone=dict(type='EfficientNet', arch='b3'),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000, in_channels=1536)))
    path = tmp_path / 'efficientnet-b3_in1k.pth'
    torch.save({'state_dict': classifier.state_dict(), 'meta': {}}, path)

    model = build_detector(b3, init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint=str(path)))
    model.init_weights()
    ours, theirs = model.backbone.state_dict(), classifier.backbone.state_dict()
    assert ours, 'the backbone has no weights'
    for key, value in ours.items():
        if key.endswith('num_batches_tracked'):
            continue
        torch.testing.assert_close(value, theirs[key], msg=key)
