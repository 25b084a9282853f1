"""Our registrations: every one lands in an ``mmeffnet`` child of mmengine's root registry, and
``type='mmeffnet.X'`` builds through each toolbox's own build path (mmdet's, mmseg's and
mmpretrain's registries, datasets with their toolbox's transforms, mmengine's optimizer and
scheduler builders); ``mmeffnet.EfficientNet`` works inside their real models."""
import importlib

import mmengine.registry as mmengine_registry
import pytest
import torch
import torch.nn as nn
from mmengine.registry import Registry, init_default_scope

import mmeffnet
import mmeffnet.registry as ours
from mmeffnet.models.efficientnet import EfficientNet

#: Every registration mmeffnet makes: registry kind -> names (configs say ``type='mmeffnet.<name>'``).
REGISTRATIONS = {
    'MODELS': {
        'EfficientNet', 'GlooSyncBN', 'EfficientNetClsHead', 'TFExponentialMovingAverage', 'BiFPN', 'EfficientDetHead',
        'CheckpointedFocalLoss'
    },
    'HOOKS':
    {'SafeCheckpointHook', 'SafeCheckpointLoadingHook', 'NonFiniteLossHook', 'ClsDataCheckHook', 'SegDataCheckHook'},
    'DATASETS': {'CheckedCocoDataset', 'OfflineCIFAR10', 'OfflineCIFAR100'},
    'TRANSFORMS': {'LoadImageWithFallback', 'CheckSegSample'},
    'OPTIMIZERS': {'RMSpropTF'},
    'PARAM_SCHEDULERS': {'TFExponentialDecayLR'},
    'TASK_UTILS': {'EfficientDetAnchorGenerator'},
}
#: The modules a config imports (``custom_imports``) for them; the rest come with their registry's
#: ``locations``.
TOOLBOX_MODULES = ('mmeffnet.models.heads', 'mmeffnet.models.efficientdet_head', 'mmeffnet.engine',
                   'mmeffnet.datasets.cls_data', 'mmeffnet.datasets.det_coco', 'mmeffnet.datasets.seg_checks')


def _registered_everything() -> None:
    for name in TOOLBOX_MODULES:
        importlib.import_module(name)
    for kind in REGISTRATIONS:
        getattr(ours, kind).import_from_location()


def _tree(registry: Registry):
    yield registry
    for child in registry._children.values():
        yield from _tree(child)


def test_registry_scope_and_parent():
    from mmengine.registry import MODELS as ROOT
    assert mmeffnet.MODELS.scope == 'mmeffnet'
    assert mmeffnet.MODELS.parent is ROOT
    assert mmeffnet.MODELS.get('EfficientNet') is EfficientNet


@pytest.mark.parametrize('kind', sorted(REGISTRATIONS))
def test_each_registry_is_an_mmeffnet_child_of_the_root_of_its_kind(kind):
    registry = getattr(ours, kind)
    assert registry.scope == 'mmeffnet'
    assert registry.parent is getattr(mmengine_registry, kind)


def test_every_registration_is_listed_and_in_the_mmeffnet_scope():
    """Walk every registry of mmengine's trees (the toolboxes' included): whatever an mmeffnet
    module registered must sit in an ``mmeffnet`` registry, and be one of ``REGISTRATIONS``."""
    import mmdet.registry  # noqa: F401  (their registries join the trees)
    import mmpretrain.registry  # noqa: F401
    import mmseg.registry  # noqa: F401
    _registered_everything()
    found, misplaced = {}, []
    roots = {name: r for name, r in vars(mmengine_registry).items() if isinstance(r, Registry) and r.parent is None}
    for kind, root in roots.items():
        for registry in _tree(root):
            for name, obj in registry.module_dict.items():
                if not getattr(obj, '__module__', '').startswith('mmeffnet'):
                    continue
                if registry.scope != 'mmeffnet':
                    misplaced.append(f'{name} ({obj.__module__}) in the {registry.scope} {registry.name} registry')
                found.setdefault(kind, set()).add(name)
    assert not misplaced, 'registered outside the mmeffnet scope: ' + '; '.join(misplaced)
    assert found == REGISTRATIONS


@pytest.mark.parametrize('toolbox', ['mmdet', 'mmseg', 'mmpretrain'])
def test_builds_through_each_toolbox_registry(toolbox):
    registry = __import__(f'{toolbox}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(dict(type='mmeffnet.EfficientNet', arch='b0', out_indices=(3, 4, 5)))
    assert isinstance(model, EfficientNet) and model.out_channels == [40, 112, 320]


def test_custom_imports_config_resolves(tmp_path):
    from mmengine.config import Config
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text("custom_imports = dict(imports=['mmeffnet'], allow_failed_imports=False)\n"
                        "backbone = dict(type='mmeffnet.EfficientNet', arch='b3', out_indices=(3, 4, 5))\n")
    cfg = Config.fromfile(str(cfg_file))
    from mmdet.registry import MODELS
    assert MODELS.build(cfg.backbone).out_channels == [48, 136, 384]


def _det_sample(num_classes=3):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    sample = DetDataSample()
    sample.set_metainfo(
        dict(
            img_shape=(96, 96),
            ori_shape=(96, 96),
            pad_shape=(96, 96),
            scale_factor=(1., 1.),
            batch_input_shape=(96, 96)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[10., 12., 60., 70.]]), labels=torch.tensor([1]))
    return sample


def test_inside_mmdet_retinanet():
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict
    model = MODELS.build(
        ConfigDict(
            type='RetinaNet',
            data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1], pad_size_divisor=32),
            backbone=dict(type='mmeffnet.EfficientNet', arch='b0', out_indices=(3, 4, 5)),
            neck=dict(
                type='FPN',
                in_channels=[40, 112, 320],
                out_channels=32,
                start_level=0,
                add_extra_convs='on_input',
                num_outs=5),
            bbox_head=dict(
                type='RetinaHead',
                num_classes=3,
                in_channels=32,
                feat_channels=32,
                anchor_generator=dict(
                    type='AnchorGenerator',
                    octave_base_scale=4,
                    scales_per_octave=3,
                    ratios=[0.5, 1.0, 2.0],
                    strides=[8, 16, 32, 64, 128]),
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0] * 4, target_stds=[1.0] * 4),
                loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
            train_cfg=dict(
                assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0),
                allowed_border=-1,
                pos_weight=-1,
                debug=False),
            test_cfg=dict(
                nms_pre=100, min_bbox_size=0, score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5), max_per_img=10)))
    model.init_weights()
    assert isinstance(model.backbone, EfficientNet)
    x = torch.rand(1, 3, 96, 96) * 255
    losses = model.loss(x, [_det_sample()])
    assert set(losses) == {'loss_cls', 'loss_bbox'} and all(torch.isfinite(t).all() for v in losses.values() for t in v)
    model.eval()
    with torch.no_grad():
        preds = model.predict(x, [_det_sample()])
    assert preds[0].pred_instances.bboxes.shape[1] == 4  # mmcv's compiled batched_nms ran


def test_inside_mmseg_encoder_decoder():
    init_default_scope('mmseg')
    from mmengine.config import ConfigDict
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    model = MODELS.build(
        ConfigDict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor', mean=[0, 0, 0], std=[1, 1, 1], size=(64, 64)),
            backbone=dict(type='mmeffnet.EfficientNet', arch='b0', out_indices=(2, 3, 4, 5)),
            neck=dict(type='FPN', in_channels=[24, 40, 112, 320], out_channels=32, num_outs=4),
            decode_head=dict(
                type='FPNHead',
                in_channels=[32] * 4,
                in_index=[0, 1, 2, 3],
                feature_strides=[4, 8, 16, 32],
                channels=32,
                num_classes=5,
                norm_cfg=dict(type='BN'),
                loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
            train_cfg=dict(),
            test_cfg=dict(mode='whole')))
    model.init_weights()
    sample = SegDataSample()
    sample.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
    sample.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, 64, 64)))
    losses = model.loss(torch.rand(2, 3, 64, 64), [sample, sample])
    assert 'decode.loss_ce' in losses and torch.isfinite(losses['decode.loss_ce'])
    model.eval()
    with torch.no_grad():
        out = model.predict(torch.rand(1, 3, 64, 64), [sample])
    assert out[0].pred_sem_seg.data.shape == (1, 64, 64)


def test_inside_mmpretrain_image_classifier():
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='mmeffnet.EfficientNet', arch='b0'),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=10,
                in_channels=1280,
                loss=dict(type='CrossEntropyLoss', loss_weight=1.0))))
    model.init_weights()
    samples = [DataSample().set_gt_label(3), DataSample().set_gt_label(7)]
    losses = model.loss(torch.rand(2, 3, 64, 64), samples)
    assert torch.isfinite(losses['loss'])
    model.eval()
    with torch.no_grad():
        preds = model.predict(torch.rand(2, 3, 64, 64))
    assert preds[0].pred_score.shape == (10, )


# ------------------------------------------------------------- the toolboxes' build paths
@pytest.mark.parametrize('toolbox, theirs', [('mmdet', 'PackDetInputs'), ('mmseg', 'PackSegInputs'),
                                             ('mmpretrain', 'PackInputs')])
def test_our_transform_and_the_toolboxs_own_build_in_one_pipeline(toolbox, theirs):
    """Datasets build their pipeline through the root TRANSFORMS under the toolbox's default scope:
    ``mmeffnet.X`` and the toolbox's unprefixed transforms resolve side by side."""
    from mmengine.dataset import Compose
    _registered_everything()
    init_default_scope(toolbox)
    ours_cfg = (
        dict(type='mmeffnet.CheckSegSample', num_classes=3) if toolbox == 'mmseg' else dict(
            type='mmeffnet.LoadImageWithFallback'))
    pipeline = Compose([ours_cfg, dict(type=theirs)])
    assert [type(t).__name__ for t in pipeline.transforms] == [ours_cfg['type'].split('.')[1], theirs]


def test_our_dataset_builds_with_mmdets_transforms_through_the_runners_path(tmp_path):
    """The Runner builds ``train_dataloader.dataset`` with mmengine's root DATASETS under the
    config's scope; the dataset then builds its pipeline, whose transforms are mmdet's."""
    from mmengine.registry import DATASETS

    from mmeffnet.datasets.synthetic_shapes import ShapesSpec, shapes_metainfo, write_shapes_coco
    _registered_everything()
    write_shapes_coco(str(tmp_path), 'train', ShapesSpec(num_images=2))
    init_default_scope('mmdet')
    dataset = DATASETS.build(
        dict(
            type='mmeffnet.CheckedCocoDataset',
            data_root=str(tmp_path) + '/',
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'),
            metainfo=shapes_metainfo(),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True),
                dict(type='PackDetInputs')
            ]))
    assert type(dataset).__name__ == 'CheckedCocoDataset'
    assert set(dataset[0]) == {'inputs', 'data_samples'}


@pytest.mark.parametrize('toolbox', ['mmdet', 'mmseg', 'mmpretrain'])
def test_our_optimizer_scheduler_and_hooks_build_as_the_runner_builds_them(toolbox):
    """mmengine's optimizer-wrapper constructor, its scheduler builder (``convert_to_iter_based``)
    and the Runner's hook registration, each under the toolbox's default scope."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import HOOKS, PARAM_SCHEDULERS

    from mmeffnet.engine import RMSpropTF, TFExponentialDecayLR
    _registered_everything()
    init_default_scope(toolbox)
    optimizer = dict(type='mmeffnet.RMSpropTF', lr=0.1, weight_decay=1e-5)
    wrapper = build_optim_wrapper(nn.Linear(2, 2), dict(optimizer=optimizer, paramwise_cfg=dict(norm_decay_mult=0.)))
    assert isinstance(wrapper.optimizer, RMSpropTF)
    scheduler = PARAM_SCHEDULERS.build(
        dict(type='mmeffnet.TFExponentialDecayLR', by_epoch=True, convert_to_iter_based=True),
        default_args=dict(optimizer=wrapper, epoch_length=10))
    assert isinstance(scheduler, TFExponentialDecayLR)
    for name in REGISTRATIONS['HOOKS']:
        assert HOOKS.get(f'mmeffnet.{name}') is ours.HOOKS.get(name)
