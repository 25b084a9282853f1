"""The classification configs, merged as the runner sees them: the paper's recipe (section 5.2) and the
TF code's values, per-variant numbers equal to ARCHS, evaluation configs that match the mmpretrain
model-zoo checkpoints (and the expected accuracies in the docs equal to mmpretrain's metafile), and
the transfer-learning configs."""
import copy
import functools
import glob
import os.path as osp
import re

import mmpretrain
import pytest
import yaml
from mmengine.config import Config

from conftest import CONFIGS, REPO
from mmeffnet.arch import ARCHS, build_network_spec

CLS = osp.join(CONFIGS, 'classification')
RECIPE = osp.join(CLS, '_base_', 'efficientnet_tf-recipe_in1k.py')
TRAIN_CONFIGS = sorted(glob.glob(osp.join(CLS, 'efficientnet-*-rmsprop_in1k.py')))
EVAL_CONFIGS = sorted(glob.glob(osp.join(CLS, 'eval', '*.py')))
TRANSFER_CONFIGS = sorted(glob.glob(osp.join(CLS, '*-ft_*.py')))
MMPRETRAIN_CONFIGS = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs')
METAFILE = osp.join(MMPRETRAIN_CONFIGS, 'efficientnet', 'metafile.yml')
DOCS = osp.join(REPO, 'docs', 'classification.md')


@functools.lru_cache(maxsize=None)
def load_config(path: str) -> Config:
    """Merged config, parsed once per session (parsing the mmpretrain bases dominates these
    tests' time); tests read it, a test that edits one takes a deep copy."""
    return Config.fromfile(path)


def _arch_of(path: str) -> str:
    return re.match(r'efficientnet-(b\d|l2|lite\d)', osp.basename(path)).group(1)


def _pipeline_step(pipeline, type_name):
    steps = [t for t in pipeline if t['type'] == type_name]
    assert len(steps) == 1, f'{type_name} appears {len(steps)} times in {pipeline}'
    return steps[0]


def test_every_variant_has_a_training_config():
    archs = {_arch_of(p) for p in TRAIN_CONFIGS}
    assert archs == {f'b{i}' for i in range(9)} | {f'lite{i}' for i in range(5)}, archs


@pytest.mark.parametrize('path', TRAIN_CONFIGS, ids=osp.basename)
def test_training_config_is_the_papers_recipe(path):
    cfg = load_config(path)
    arch = _arch_of(path)
    params, spec = ARCHS[arch], build_network_spec(arch)
    # Per-variant numbers, from ARCHS.
    backbone, head = cfg.model.backbone, cfg.model.head
    assert backbone.type == 'mmeffnet.EfficientNet' and backbone.arch == arch
    assert head.type == 'mmeffnet.EfficientNetClsHead'
    assert head.in_channels == spec.head_channels
    assert head.dropout_rate == params.dropout
    train_crop = _pipeline_step(cfg.train_dataloader.dataset.pipeline, 'EfficientNetRandomCrop')
    for loader in ('val_dataloader', 'test_dataloader'):
        test_crop = _pipeline_step(cfg[loader].dataset.pipeline, 'EfficientNetCenterCrop')
        assert test_crop.crop_size == params.resolution and test_crop.crop_padding == 32
        assert test_crop.interpolation == ('bilinear' if params.lite else 'bicubic')
    assert train_crop.scale == params.resolution
    assert train_crop.interpolation == ('bilinear' if params.lite else 'bicubic')
    per_gpu = int(re.search(r'_8xb(\d+)-', osp.basename(path)).group(1))
    assert cfg.train_dataloader.batch_size == per_gpu
    # Section 5.2 of the paper.
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.alpha, opt.momentum, opt.weight_decay) == ('mmeffnet.RMSpropTF', 0.9, 0.9, 1e-5)
    assert opt.lr == 0.256 and cfg.auto_scale_lr == dict(base_batch_size=4096, enable=True)
    assert backbone.norm_cfg.momentum == pytest.approx(1 - 0.99)
    sched = cfg.param_scheduler
    assert (sched.type, sched.decay_epochs, sched.decay_factor) == ('mmeffnet.TFExponentialDecayLR', 2.4, 0.97)
    assert sched.by_epoch and sched.convert_to_iter_based
    assert backbone.drop_path_rate == pytest.approx(1 - 0.8)
    assert backbone.get('act_cfg') is None  # SiLU (ReLU6 for Lite), chosen by the backbone
    aa = _pipeline_step(cfg.train_dataloader.dataset.pipeline, 'AutoAugment')
    assert aa.policies == 'imagenet'
    # The official TF implementation's values.
    assert opt.eps == 1e-3
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.0
    assert sched.warmup_epochs == 5
    assert cfg.train_cfg.max_epochs == 350
    assert head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert len(ema) == 1 and ema[0].ema_type == 'mmeffnet.TFExponentialMovingAverage'
    assert 1 - ema[0].momentum == pytest.approx(0.9999) and ema[0].update_buffers
    assert backbone.norm_cfg.eps == 1e-3 and backbone.padding == 'same'
    mean, std = (127.0, 128.0) if params.lite else (123.675, 58.395)
    assert (cfg.data_preprocessor.mean[0], cfg.data_preprocessor.std[0]) == (mean, std)
    assert any(h.type == 'mmeffnet.ClsDataCheckHook' for h in cfg.custom_hooks)


# TF efficientnet_builder.efficientnet_params: (resolution, dropout) per variant, written out here
# so that the configs are checked against the reference and not only against our ARCHS table.
TF_PARAMS = {
    'b0': (224, 0.2),
    'b1': (240, 0.2),
    'b2': (260, 0.3),
    'b3': (300, 0.3),
    'b4': (380, 0.4),
    'b5': (456, 0.4),
    'b6': (528, 0.5),
    'b7': (600, 0.5),
    'b8': (672, 0.5)
}


@pytest.mark.parametrize('arch', sorted(TF_PARAMS))
def test_per_variant_resolution_and_dropout_are_the_tf_references(arch):
    path = next(p for p in TRAIN_CONFIGS if _arch_of(p) == arch)
    cfg = load_config(path)
    resolution, dropout = TF_PARAMS[arch]
    assert cfg.model.head.dropout_rate == dropout
    crop = _pipeline_step(cfg.test_dataloader.dataset.pipeline, 'EfficientNetCenterCrop')
    assert (crop.crop_size, crop.crop_padding, crop.interpolation) == (resolution, 32, 'bicubic')
    assert _pipeline_step(cfg.train_dataloader.dataset.pipeline, 'EfficientNetRandomCrop').scale == resolution


def test_recipe_marks_what_comes_from_the_tf_code():
    """The values the paper does not state carry a [TF] note in the base config."""
    lines = open(RECIPE).read().splitlines()

    def note_of(fragment):
        """The line holding ``fragment``, the lines of its statement above it, and the comments
        right above the statement."""
        i = next(i for i, line in enumerate(lines) if fragment in line and not line.lstrip().startswith('#'))
        start = i
        while start > 0 and (lines[start][:1].isspace() or lines[start].startswith('#')):
            start -= 1
        while start > 0 and lines[start - 1].startswith('#'):
            start -= 1
        return ' '.join(lines[start:i + 1])

    for fragment in ('warmup_epochs=5', "label_smooth_val=0.1", 'max_epochs=350', 'momentum=1e-4',
                     'eps=1e-3, weight_decay'):
        assert '[TF]' in note_of(fragment), f'{fragment} lacks its [TF] source note'
    for fragment in ('decay_factor=0.97', 'drop_path_rate=0.2', "policies='imagenet'"):
        assert '[paper]' in note_of(fragment), f'{fragment} lacks its [paper] note'


def test_b0_and_lite0_build_with_the_papers_activation_and_bn_momentum():
    import torch.nn as nn
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    for name, act in (('efficientnet-b0_8xb256-rmsprop_in1k.py', nn.SiLU), ('efficientnet-lite0_8xb256-rmsprop_in1k.py',
                                                                            nn.ReLU6)):
        cfg = copy.deepcopy(load_config(osp.join(CLS, name)))
        cfg.model.backbone.norm_cfg.type = 'BN'  # SyncBN needs a process group
        model = MODELS.build(cfg.model)
        acts = {type(m) for m in model.backbone.modules() if isinstance(m, (nn.SiLU, nn.ReLU6, nn.ReLU))}
        assert acts == {act}, (name, acts)
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and all(m.momentum == 0.01 and m.eps == 1e-3 for m in bns)


# ------------------------------------------------------------------------------------------ evaluation
def zoo_models():
    with open(METAFILE) as f:
        return yaml.safe_load(f)['Models']


def eval_config_for(zoo_name: str) -> str:
    """The eval config of a model-zoo checkpoint name (docs/classification.md lists the same)."""
    arch = re.match(r'efficientnet-(b\d|l2)_', zoo_name).group(1)
    if arch == 'l2':
        return f'eval/efficientnet-l2_in1k-{zoo_name.rsplit("-", 1)[1]}.py'
    if 'advprop' in zoo_name:
        return f'eval/efficientnet-{arch}-01norm_in1k.py'
    return f'eval/efficientnet-{arch}_in1k.py'


@pytest.mark.parametrize('model', zoo_models(), ids=lambda m: m['Name'])
def test_eval_config_matches_the_model_zoo_checkpoint(model):
    """Our eval config feeds the checkpoint what mmpretrain's own config (with which the zoo
    accuracy was measured) feeds it: arch, crop size, crop padding, resizing and normalisation."""
    ours = load_config(osp.join(CLS, eval_config_for(model['Name'])))
    theirs = load_config(osp.join(osp.dirname(MMPRETRAIN_CONFIGS), model['Config']))
    assert ours.model.backbone.arch == theirs.model.backbone.arch
    assert ours.model.head.in_channels == theirs.model.head.in_channels
    assert ours.model.head.num_classes == theirs.model.head.num_classes == 1000
    our_crop = _pipeline_step(ours.test_dataloader.dataset.pipeline, 'EfficientNetCenterCrop')
    their_crop = _pipeline_step(theirs.test_dataloader.dataset.pipeline, 'EfficientNetCenterCrop')
    assert our_crop.crop_size == their_crop.crop_size
    assert our_crop.get('crop_padding', 32) == their_crop.get('crop_padding', 32)
    assert our_crop.get('interpolation', 'bicubic') == their_crop.get('interpolation', 'bicubic')
    for key in ('mean', 'std', 'to_rgb'):
        assert ours.data_preprocessor[key] == theirs.data_preprocessor[key], key
    assert not any(h.type == 'EMAHook' for h in ours.custom_hooks)


def test_docs_list_every_zoo_checkpoint_with_mmpretrains_accuracy_and_our_config():
    text = open(DOCS).read()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip().strip('`') for c in line.strip().strip('|').split('|')]
        if len(cells) >= 5 and cells[0].startswith('efficientnet-'):
            rows[cells[0]] = cells
    for model in zoo_models():
        name = model['Name']
        assert name in rows, f'docs/classification.md has no row for {name}'
        metrics = model['Results'][0]['Metrics']
        row = rows[name]
        assert f"{metrics['Top 1 Accuracy']:.2f}" in row, (name, row)
        assert f"{metrics['Top 5 Accuracy']:.2f}" in row, (name, row)
        assert any(eval_config_for(name) in cell for cell in row), (name, row)


@pytest.mark.parametrize('path', EVAL_CONFIGS, ids=lambda p: osp.basename(p))
def test_eval_config_sizes_come_from_archs(path):
    cfg = load_config(path)
    arch = _arch_of(path)
    crop = _pipeline_step(cfg.test_dataloader.dataset.pipeline, 'EfficientNetCenterCrop')
    expected = 475 if path.endswith('475px.py') else ARCHS[arch].resolution
    assert crop.crop_size == expected
    assert cfg.model.head.in_channels == build_network_spec(arch).head_channels
    assert osp.isfile(path) and cfg.model.head.num_classes == 1000


# ------------------------------------------------------------------------------------------ transfer
@pytest.mark.parametrize('path, arch, num_classes, dataset', [
    ('efficientnet-b0_8xb32-ft_cifar10-224px.py', 'b0', 10, 'mmeffnet.OfflineCIFAR10'),
    ('efficientnet-b0_8xb32-ft_cifar100-224px.py', 'b0', 100, 'mmeffnet.OfflineCIFAR100'),
    ('efficientnet-b5_8xb8-ft_flowers102-456px.py', 'b5', 102, 'CustomDataset'),
])
def test_transfer_config(path, arch, num_classes, dataset):
    cfg = load_config(osp.join(CLS, path))
    assert osp.join(CLS, path) in TRANSFER_CONFIGS
    backbone, head = cfg.model.backbone, cfg.model.head
    assert backbone.arch == arch and head.num_classes == num_classes == cfg.data_preprocessor.num_classes
    assert head.in_channels == build_network_spec(arch).head_channels
    # Backbone-only loading of the ImageNet weights: the 1000-class classifier is left out.
    assert backbone.init_cfg.type == 'Pretrained' and backbone.init_cfg.prefix == 'backbone'
    assert arch in osp.basename(backbone.init_cfg.checkpoint)
    assert cfg.train_dataloader.dataset.type == cfg.test_dataloader.dataset.type == dataset
    size = ARCHS[arch].resolution
    assert f'{size}px' in path
    sizes = [
        t.get('scale', t.get('crop_size')) for t in cfg.test_dataloader.dataset.pipeline
        if t['type'] in ('Resize', 'EfficientNetCenterCrop')
    ]
    assert sizes == [size]
    total_batch = 8 * cfg.train_dataloader.batch_size
    assert cfg.auto_scale_lr.base_batch_size == total_batch
    epochs = cfg.train_cfg.max_iters * total_batch / (50000 if 'cifar' in path else 2040)
    assert 90 <= epochs <= 130, epochs  # about 100 passes over the training set
    assert cfg.optim_wrapper.optimizer.nesterov
