"""Drop-in, proven against the toolboxes' own recipes: mmdet 3.3's RetinaNet-EfficientNet-B3 config
(the model that scored 40.5 box AP in mmdet's zoo) and ours build the same detector, and our
classification eval configs feed and score a network as mmpretrain's own EfficientNet configs do.

Both configs are built as our tools build them (SyncBN -> BN in one process), with random weights
(nothing is downloaded), mmdet's / mmpretrain's weights copied into ours strictly, at a small input
size (the same change applied to both configs) and on real COCO images.

The networks are compared in float64. In float32 our backbone sums in another order (channels_last,
SiLU for x * sigmoid(x), a static SAME pad), and with random weights, batch 2 and train-mode BN the
deepest features then differ by up to 1e-3 relative (measured), which would hide a real difference
of that size. In float64 (rounding ~1e-16) the forward agrees within 2e-13 relative (features,
losses, head outputs, logits: bound TOL = 1e-9) and the one-step weight updates within 1.3e-8 of
each tensor's update (backward through train-mode BN at batch 2 amplifies rounding; bound
STEP_TOL = 1e-6). A real difference (a frozen layer, another drop-path rate, BN momentum or
activation) moves these by 1e-3 or more.
"""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import CONFIGS


def toolbox_config(package: str, path: str) -> str:
    """The file of ``package::path`` (a config shipped inside an installed OpenMMLab toolbox)."""
    from mmengine.utils import get_installed_path
    return f'{get_installed_path(package)}/.mim/configs/{path}'


MMDET_RECIPE = toolbox_config('mmdet', 'efficientnet/retinanet_effb3_fpn_8xb4-crop896-1x_coco.py')
OURS_RECIPE = f'{CONFIGS}/retinanet_effb3_fpn_crop896_8x4_1x_coco.py'
RECIPE_SIZE, SMALL = (896, 896), (128, 128)
TOL, STEP_TOL = 1e-9, 1e-6  # relative to each compared quantity's largest magnitude


def _resized(node, old, new):
    """``node`` with every ``old`` size (tuple or list) replaced by ``new``."""
    if isinstance(node, dict):
        return {k: _resized(v, old, new) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        if tuple(node) == old:
            return new
        return type(node)(_resized(v, old, new) for v in node)
    return node


def _as_tools_build(path: str) -> Config:
    """The config as tools/train.py runs it in one process, at SMALL px, without downloads."""
    import mmeffnet.datasets.det_coco  # noqa: F401  (CheckedCocoDataset)
    from mmeffnet.config import swap_sync_bn
    cfg = Config(_resized(Config.fromfile(path).to_dict(), RECIPE_SIZE, SMALL))
    swap_sync_bn(cfg, distributed=False)
    cfg.model.backbone.init_cfg = None
    return cfg


def _build_detector(cfg: Config):
    import mmdet.models  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    model_cfg = copy.deepcopy(cfg.model)  # a ConfigDict, as the runner passes it (heads read test_cfg.attr)
    model_cfg['_scope_'] = 'mmdet'
    return MODELS.build(model_cfg)


def _twin_detectors(theirs_cfg: Config, ours_cfg: Config, seed: int):
    """mmdet's recipe model and ours holding mmdet's (random) weights, both in float64."""
    _seed(seed)
    theirs = _build_detector(theirs_cfg)
    ours = _build_detector(ours_cfg)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs.double(), ours.double()


def _seed(seed: int) -> None:
    import random
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.fixture(scope='module')
def recipes():
    return _as_tools_build(MMDET_RECIPE), _as_tools_build(OURS_RECIPE)


@pytest.fixture(scope='module')
def coco_batches(recipes, coco_mini):
    """Four real COCO images through each config's own training pipeline, same random draws."""
    import mmdet.datasets  # noqa: F401
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    outputs = []
    for cfg in recipes:
        dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset.to_dict())
        dataset_cfg.update(
            data_root=coco_mini + '/',
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'))
        dataset = DATASETS.build(dataset_cfg)
        samples = []
        for i in range(4):
            _seed(i)
            samples.append(dataset[i])
        outputs.append(samples)
    return outputs


def test_the_two_configs_train_on_the_same_pipeline_outputs(coco_batches):
    theirs, ours = coco_batches
    for a, b in zip(theirs, ours):
        assert torch.equal(a['inputs'], b['inputs'])
        assert a['inputs'].shape[-2:] != (0, 0) and max(a['inputs'].shape[-2:]) <= SMALL[0]
        ga, gb = a['data_samples'].gt_instances, b['data_samples'].gt_instances
        assert torch.equal(ga.bboxes.tensor, gb.bboxes.tensor) and torch.equal(ga.labels, gb.labels)
        for key in ('img_shape', 'scale_factor', 'flip', 'ori_shape'):
            assert a['data_samples'].metainfo[key] == b['data_samples'].metainfo[key], key
    assert any(len(s['data_samples'].gt_instances) for s in ours), 'no boxes: the comparison is empty'


@pytest.fixture(scope='module')
def detectors(recipes):
    """mmdet's recipe model and ours with mmdet's weights, drop path as each recipe sets it."""
    return _twin_detectors(*recipes, seed=0)


def test_the_backbone_is_ours_and_the_rest_is_mmdets(detectors):
    from mmdet.models.backbones import EfficientNet as MMDetEfficientNet

    from mmeffnet.models import EfficientNet
    theirs, ours = detectors
    assert type(theirs.backbone) is MMDetEfficientNet and type(ours.backbone) is EfficientNet
    for part in ('neck', 'bbox_head', 'data_preprocessor'):
        assert type(getattr(theirs, part)) is type(getattr(ours, part)), part
    assert ours.train_cfg == theirs.train_cfg and ours.test_cfg == theirs.test_cfg


def _owners(model, want) -> set:
    """Names of the modules that own parameters or buffers directly and satisfy ``want``."""
    return {
        name
        for name, m in model.named_modules()
        if (list(m.parameters(recurse=False)) or list(m.buffers(recurse=False))) and want(m)
    }


def test_same_trainable_parameters_and_train_eval_modes(detectors):
    """``frozen_stages=0`` freezes nothing in mmdet's recipe, and so in ours."""
    theirs, ours = detectors
    theirs.train(), ours.train()
    trainable = [{n for n, p in m.named_parameters() if p.requires_grad} for m in (theirs, ours)]
    assert trainable[0] == trainable[1]
    assert sum(p.numel() for p in ours.parameters() if p.requires_grad) == \
        sum(p.numel() for p in theirs.parameters() if p.requires_grad) == \
        sum(p.numel() for p in theirs.parameters())
    assert _owners(ours, lambda m: not m.training) == _owners(theirs, lambda m: not m.training) == set()
    assert _owners(ours, lambda m: m.training) == _owners(theirs, lambda m: m.training)


def test_same_drop_path_rate_per_block(detectors):
    theirs, ours = detectors
    theirs_rates = [
        m.drop_path.drop_prob if hasattr(m.drop_path, 'drop_prob') else 0. for m in theirs.backbone.modules()
        if hasattr(m, 'drop_path')
    ]
    from mmeffnet.models.layers import MBConv
    ours_rates = [m.drop_path_rate for m in ours.backbone.modules() if isinstance(m, MBConv)]
    assert len(ours_rates) == 26 and ours_rates == theirs_rates
    assert ours_rates[-1] == pytest.approx(0.2)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a - b).abs().max().item() <= TOL * max(a.abs().max().item(), 1e-30)


def _loss_and_step(model, cfg: Config, data: dict):
    """Loss terms of one batch and the weights after one step of the config's own optimizer."""
    from mmengine.optim import build_optim_wrapper
    model.train()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    batch = model.data_preprocessor(copy.deepcopy(data), training=True)
    batch['inputs'] = batch['inputs'].double()
    losses = model(**batch, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    wrapper.update_params(loss)
    groups = [(g['lr'], g['weight_decay'], g.get('momentum')) for g in wrapper.optimizer.param_groups]
    return log_vars, {k: v.detach().clone() for k, v in model.state_dict().items()}, groups


def test_same_losses_and_same_weights_after_one_sgd_step(recipes, coco_batches):
    """Drop path off in both (its masks are random draws), everything else as each recipe sets it."""
    from mmengine.dataset import pseudo_collate
    theirs_cfg, ours_cfg = (copy.deepcopy(c) for c in recipes)
    for cfg in (theirs_cfg, ours_cfg):
        cfg.model.backbone.drop_path_rate = 0.
    theirs, ours = _twin_detectors(theirs_cfg, ours_cfg, seed=1)
    before = {k: v.clone() for k, v in theirs.state_dict().items()}
    data = pseudo_collate(coco_batches[1][:2])
    loss_t, after_t, groups_t = _loss_and_step(theirs, theirs_cfg, data)
    loss_o, after_o, groups_o = _loss_and_step(ours, ours_cfg, data)
    assert set(loss_t) == set(loss_o) >= {'loss_cls', 'loss_bbox'}
    for key in loss_t:
        assert _close(loss_t[key], loss_o[key]), (key, loss_t[key].item(), loss_o[key].item())
    assert loss_t['loss_cls'].item() > 0 and loss_t['loss_bbox'].item(
    ) > 0, 'no positive anchors: the step is not tested'
    # The optimizers give every parameter the same lr / weight decay (norm_decay_mult=0 included).
    assert groups_o == groups_t and len(groups_t) > 1
    # The updates carry the gradients. Some are zero up to rounding (a BN bias whose output only
    # feeds the next BN): those are compared to the model's largest update instead of their own.
    steps_t = {k: v - before[k] for k, v in after_t.items() if v.is_floating_point()}
    floor = STEP_TOL * max(step.abs().max().item() for step in steps_t.values())
    for key, step_t in steps_t.items():
        scale = max(step_t.abs().max().item(), floor)
        assert (step_t - (after_o[key] - before[key])).abs().max().item() <= STEP_TOL * scale, key
    moved = [k for k, v in after_t.items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert len(moved) > 0.9 * len([k for k in before if k.endswith('weight')]), 'the step moved few weights'


def test_same_eval_mode_outputs_and_predictions(detectors, coco_batches):
    """Head outputs in float64; then each head's own post-processing (anchors, decoding, mmcv's NMS,
    which takes float32) on its outputs rounded to float32, rescaled to the original images."""
    from mmengine.dataset import pseudo_collate
    theirs, ours = detectors
    theirs.eval(), ours.eval()
    data = pseudo_collate(coco_batches[1][2:])
    preds = []
    with torch.no_grad():
        batch = theirs.data_preprocessor(copy.deepcopy(data), training=False)
        metas = [s.metainfo for s in batch['data_samples']]
        raw = [model(batch['inputs'].double(), mode='tensor') for model in (theirs, ours)]
        for model, (cls_scores, bbox_preds) in zip((theirs, ours), raw):
            preds.append(
                model.bbox_head.predict_by_feat([c.float() for c in cls_scores], [b.float() for b in bbox_preds],
                                                batch_img_metas=metas,
                                                rescale=True))
    for level_t, level_o in zip(sum(raw[0], []), sum(raw[1], [])):
        assert _close(level_t, level_o)
    for p_t, p_o in zip(*preds):
        assert len(p_t) == len(p_o) > 0
        assert torch.equal(p_t.labels, p_o.labels)
        assert _close(p_t.scores, p_o.scores) and _close(p_t.bboxes, p_o.bboxes)


# ---------------------------------------------------------------------------- classification
@pytest.mark.parametrize('arch', ['b0', 'b3'])
def test_classification_eval_config_equals_mmpretrains(arch, coco_mini):
    """Our eval config and mmpretrain's own (the one its zoo accuracy was measured with): the same
    test-pipeline tensors for real images, and the same logits with mmpretrain's weights."""
    import glob

    import mmpretrain.models  # noqa: F401
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS, TRANSFORMS

    import mmeffnet.datasets.cls_data  # noqa: F401
    import mmeffnet.models.heads  # noqa: F401

    theirs_cfg = Config.fromfile(toolbox_config('mmpretrain', f'efficientnet/efficientnet-{arch}_8xb32_in1k.py'))
    ours_cfg = Config.fromfile(f'{CONFIGS}/classification/eval/efficientnet-{arch}_in1k.py')
    init_default_scope('mmpretrain')
    images = sorted(glob.glob(f'{coco_mini}/train2017/*.jpg'))[:2]
    inputs = []
    for cfg in (theirs_cfg, ours_cfg):
        pipeline = Compose([TRANSFORMS.build(t) for t in cfg.test_dataloader.dataset.pipeline])
        inputs.append([pipeline(dict(img_path=p)) for p in images])
    for a, b in zip(*inputs):
        assert torch.equal(a['inputs'], b['inputs'])

    models = []
    for cfg in (theirs_cfg, ours_cfg):
        model_cfg = copy.deepcopy(cfg.model.to_dict())
        model_cfg['backbone'].pop('init_cfg', None)
        model_cfg['_scope_'] = 'mmpretrain'
        model_cfg['data_preprocessor'] = cfg.get('data_preprocessor')
        models.append(MODELS.build(model_cfg).eval())
    theirs, ours = models
    _seed(2)
    for m in theirs.modules():  # random BN statistics so that eval-mode BN is not the identity
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    logits = []
    with torch.no_grad():
        for model, samples in zip((theirs.double(), ours.double()), inputs):
            batch = model.data_preprocessor(pseudo_collate(samples), training=False)
            logits.append(model(batch['inputs'].double(), mode='tensor'))
    assert logits[0].shape == logits[1].shape == (2, 1000)
    assert _close(*logits)
