"""EfficientDet D0-D7: compound scaling, the BiFPN neck and head, Table 2 of the paper, and equality
with effdet 0.4.1 (rwightman's port of the official TF models).

Equivalence: for each variant an effdet ``tf_efficientdet_d*`` is built with random weights (nothing
is downloaded), random conv biases and fusion weights, and random BN statistics that fit the
activations (``randomized_effdet_state``). Its state dict is converted with
``mmeffnet.converters.from_effdet``, loaded STRICTLY into an mmdet ``RetinaNet`` built from mmeffnet's
EfficientNet + BiFPN + EfficientDetHead, and both run in eval mode on a real COCO image: every level's
class and box outputs agree to < 1e-4 (measured: <= 3.4e-5, most ~1e-5). D0-D4 run at their native
size and at an odd, non-square size; D5-D7 at a reduced size.
"""
import functools
import math
import warnings

import pytest
import torch
import torch.nn as nn

from mmeffnet.analysis.complexity import count_macs_split, count_params
from mmeffnet.arch.efficientdet import (EFFICIENTDET_ARCHS, PHIS, RELEASED_DEPARTURES, EfficientDetParams,
                                        backbone_level_channels, efficientdet_scaling, eq1_width,
                                        resolve_efficientdet_arch)
from mmeffnet.converters.canonical import ConversionError
from mmeffnet.converters.from_effdet import box_channel_sources, class_channel_sources, convert_effdet, effdet_variants
from mmeffnet.models.bifpn import BiFPN, MaxPool2dSame, bifpn_nodes
from mmeffnet.models.efficientdet_head import EfficientDetHead
from reference_models import real_image


@pytest.fixture(autouse=True)
def _mmdet_scope():
    """EfficientDetHead builds its anchors, coder and losses from mmdet's registries: run in mmdet's
    default scope whatever scope an earlier test file left behind."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')


effdet = pytest.importorskip('effdet', reason='effdet==0.4.1 is the reference (requirements/tests.txt)')

# Table 2 of the paper: (#Params in millions, #FLOPs in billions of multiply-adds), 90 COCO classes.
TABLE2 = {
    'd0': (3.9, 2.5),
    'd1': (6.6, 6.1),
    'd2': (8.1, 11),
    'd3': (12, 25),
    'd4': (21, 55),
    'd5': (34, 135),
    'd6': (52, 226),
    'd7': (52, 325)
}
PARAM_TOLERANCE, FLOP_TOLERANCE = 0.02, 0.05
MAX_ABS_DIFF = 1e-4
# D0-D4: native and odd (H, W); D5-D7: reduced. Odd sizes give odd maps on the way down (SAME
# padding asymmetric, nearest upsampling to odd sizes).
SIZES = {
    'd0': [(512, 512), (197, 259)],
    'd1': [(640, 640), (223, 161)],
    'd2': [(768, 768), (129, 255)],
    'd3': [(896, 896), (251, 187)],
    'd4': [(1024, 1024), (163, 229)],
    'd5': [(192, 192)],
    'd6': [(161, 225)],
    'd7': [(192, 192)]
}
# where the BN statistics are measured: P7 has 2 x 2 pixels; D5-D7 at their (reduced) test scale
CALIBRATION_SIZES = dict(d5=(192, 192), d6=(192, 192), d7=(192, 192))
DEFAULT_CALIBRATION_SIZE = (256, 256)


def detector_cfg(params: EfficientDetParams, num_classes: int = 80) -> dict:
    """An mmdet RetinaNet (mmdet's single-stage detector) of mmeffnet's EfficientDet parts."""
    return dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1], pad_size_divisor=128),
        backbone=dict(type='mmeffnet.EfficientNet', arch=params.backbone, out_indices=(3, 4, 5)),
        neck=dict(
            type='mmeffnet.BiFPN',
            in_channels=list(backbone_level_channels(params)),
            out_channels=params.fpn_channels,
            num_repeats=params.fpn_repeats,
            fusion=params.fusion),
        bbox_head=dict(
            type='mmeffnet.EfficientDetHead',
            num_classes=num_classes,
            in_channels=params.fpn_channels,
            stacked_convs=params.head_repeats,
            anchor_scale=params.anchor_scale),
        train_cfg=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        test_cfg=dict(
            nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))


def build_detector(params: EfficientDetParams, num_classes: int = 80) -> nn.Module:
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    return MODELS.build(ConfigDict(detector_cfg(params, num_classes)))


def effdet_model(name: str, size) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return effdet.create_model(
            f'tf_efficientdet_{name}', pretrained=False, pretrained_backbone=False, image_size=tuple(size))


def randomized_effdet_state(name: str) -> dict:
    """A random effdet state dict: random weights, BN affine parameters, redundant conv biases (the
    converter folds them) and positive fusion weights; BN statistics measured in train mode on the
    two halves of the real image at ``CALIBRATION_SIZES``, floored at the layer's median variance (two
    images hardly vary on P7's 2 x 2 pixels), then perturbed.

    Measured, not drawn: statistics that do not fit the activations let the deep backbones and
    D6/D7's unweighted BiFPN sums grow to ~1e4 inside the network, and the comparison would then
    measure float32 rounding of huge numbers instead of the network."""
    torch.manual_seed(0)
    height, width = CALIBRATION_SIZES.get(name, DEFAULT_CALIBRATION_SIZE)
    model = effdet_model(name, (height, width))
    g = torch.Generator().manual_seed(1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.weight.uniform_(0.5, 1.5, generator=g)
            m.bias.normal_(0., 0.2, generator=g)
            m.momentum = 1.  # the running statistics become this batch's
        for n, m in model.named_modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None and 'predict' not in n:
                m.bias.normal_(0., 0.2, generator=g)
        for n, p in model.named_parameters():
            if n.endswith('edge_weights'):
                p.uniform_(0.2, 2., generator=g)
        image = real_image(2 * height, width)
        model.train()(torch.cat([image[..., :height, :], image[..., height:, :]]))
        for m in bns:
            m.momentum = 0.01
            m.running_var.clamp_(min=m.running_var.median().item())
            m.running_mean.add_(torch.randn(m.num_features, generator=g) * 0.1 * m.running_var.sqrt())
            m.running_var.mul_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    return model.state_dict()


@functools.lru_cache(maxsize=1)  # the size cases of one variant run together
def converted_pair(name: str):
    """(effdet state dict, our detector loaded strictly from its conversion), eval mode."""
    state = randomized_effdet_state(name)
    ours = build_detector(resolve_efficientdet_arch(name))
    ours.load_state_dict(convert_effdet(state, arch=name), strict=True)
    return state, ours.eval()


# ---------------------------------------------------------------------------- scaling
def test_scaling_gives_the_released_family():
    widths = [p.fpn_channels for p in EFFICIENTDET_ARCHS.values()]
    assert widths == [64, 88, 112, 160, 224, 288, 384, 384]
    assert [p.fpn_repeats for p in EFFICIENTDET_ARCHS.values()] == [3, 4, 5, 6, 7, 7, 8, 8]
    assert [p.head_repeats for p in EFFICIENTDET_ARCHS.values()] == [3, 3, 3, 4, 4, 4, 5, 5]
    assert [p.image_size for p in EFFICIENTDET_ARCHS.values()] == [512, 640, 768, 896, 1024, 1280, 1280, 1536]
    assert [p.backbone for p in EFFICIENTDET_ARCHS.values()] == ['b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b6']
    assert [p.fusion for p in EFFICIENTDET_ARCHS.values()] == ['fast'] * 6 + ['sum'] * 2
    assert [p.anchor_scale for p in EFFICIENTDET_ARCHS.values()] == [4.] * 7 + [5.]
    assert resolve_efficientdet_arch(dict(phi=3)) == EFFICIENTDET_ARCHS['d3'] == resolve_efficientdet_arch(
        'tf_efficientdet_d3') == resolve_efficientdet_arch('efficientdet-d3')


def test_scaling_is_eq1_except_the_listed_departures():
    for phi in PHIS:
        params, departures = efficientdet_scaling(phi), RELEASED_DEPARTURES.get(phi, {})
        eq1 = dict(
            fpn_channels=8 * round(eq1_width(phi) / 8),
            fpn_repeats=3 + phi,
            head_repeats=3 + math.floor(phi / 3),
            image_size=512 + 128 * phi)
        for field, value in eq1.items():
            if field not in departures:
                assert getattr(params, field) == value, (phi, field)
            else:
                assert getattr(params, field) != value, f'd{phi}.{field} is listed as a departure but is eq. 1'
    assert abs(eq1_width(1) - 86.4) < 1e-9


@pytest.mark.parametrize(
    'bad',
    ['d8', 'b0', dict(phi=8),
     dict(phi=-1), dict(phi=1.5),
     dict(phi=True), dict(phi=1, width=2), 3])
def test_unknown_variant_names_the_valid_ones(bad):
    with pytest.raises((KeyError, ValueError, TypeError)) as err:
        resolve_efficientdet_arch(bad)
    assert 'd0' in str(err.value) or '0..7' in str(err.value)


# ---------------------------------------------------------------------------- neck and head
def test_bifpn_graph_is_automls():
    # automl's bifpn_config for P3-P7, as (level offset, input feature indices)
    expected = [(3, (3, 4)), (2, (2, 5)), (1, (1, 6)), (0, (0, 7)), (1, (1, 7, 8)), (2, (2, 6, 9)), (3, (3, 5, 10)),
                (4, (4, 11))]
    assert [(n.level, n.inputs) for n in bifpn_nodes(5)] == expected


@pytest.mark.parametrize('size', [1, 2, 5, 8, 13])
def test_same_max_pool_is_tf_same(size):
    x = torch.randn(1, 2, size, size + 1)
    out = MaxPool2dSame()(x)
    assert out.shape[-2:] == (-(-size // 2), -(-(size + 1) // 2))
    from timm.layers import create_pool2d
    assert torch.equal(out, create_pool2d('max', 3, 2, padding='same')(x))


def test_bifpn_shapes_and_mismatched_backbone():
    neck = BiFPN([40, 112, 320], 64, num_repeats=2).eval()
    feats = [torch.randn(1, c, s, s) for c, s in zip([40, 112, 320], [25, 13, 7])]
    with torch.no_grad():
        outs = neck(feats)
    assert [tuple(o.shape) for o in outs] == [(1, 64, s, s) for s in (25, 13, 7, 4, 2)]
    with pytest.raises(ValueError, match=r'channels \[40, 112, 320\].*got 3 with channels \[48, 136, 384\]'):
        neck([torch.randn(1, c, 8, 8) for c in (48, 136, 384)])
    with pytest.raises(ValueError, match='fusion'):
        BiFPN([40, 112, 320], 64, fusion='attn')


def _train_neck_and_head(feats: list, watch=None, **options) -> tuple:
    """One forward and backward of a small BiFPN + head built with ``options`` (the same weights
    each call): (outputs, parameter gradients, buffers). ``watch(neck, head)`` may add hooks."""
    torch.manual_seed(1)
    neck = BiFPN([40, 112, 320], 32, num_repeats=2, **options)
    head = EfficientDetHead(num_classes=3, in_channels=32, stacked_convs=2, **options)
    neck.init_weights()
    head.init_weights()
    if watch is not None:
        watch(neck, head)
    cls_scores, bbox_preds = head(neck(feats))
    assert all(o.is_contiguous() for o in cls_scores + bbox_preds)
    sum(o.square().sum() for o in cls_scores + bbox_preds).backward()
    return ([o.detach() for o in cls_scores + bbox_preds], [p.grad for p in [*neck.parameters(), *head.parameters()]],
            [b for b in [*neck.buffers(), *head.buffers()]])


def _neck_features() -> list:
    torch.manual_seed(0)
    return [torch.randn(2, c, s, s) for c, s in zip([40, 112, 320], [16, 8, 4])]


@pytest.mark.parametrize('memory', ['save-bn-input', 'recompute-pointwise'])
def test_memory_policy_changes_no_number(memory):
    """The BiFPN and the head under each memory policy (see tests/test_memory_policies.py): the
    forward and the running statistics bitwise the plain modules', gradients to float rounding."""
    feats = _neck_features()
    outs, grads, buffers = _train_neck_and_head(feats, memory=memory)
    ref_outs, ref_grads, ref_buffers = _train_neck_and_head(feats, memory='plain')
    assert all(torch.equal(a, b) for a, b in zip(outs, ref_outs))
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(grads, ref_grads))
    assert all(torch.allclose(a.float(), b.float()) for a, b in zip(buffers, ref_buffers))


def test_channels_last_changes_the_layout_not_the_numbers():
    """On the CPU the BiFPN and the head run channels_last inside by default (as the backbone does)
    and hand NCHW back; outputs and gradients equal the NCHW run's to float rounding."""
    feats = _neck_features()
    seen = {None: [], False: []}

    def watch_layout(channels_last):

        def record(module, args):
            if args[0].shape[-2:].numel() > 1:  # a 1x1 map is in both layouts
                seen[channels_last].append(args[0].is_contiguous(memory_format=torch.channels_last))

        def watch(neck, head):
            for conv in (neck.cells[1].nodes[0].conv.depthwise, head.cls_convs[1].depthwise):
                conv.register_forward_pre_hook(record)

        return watch

    outs, grads, _ = _train_neck_and_head(feats, watch_layout(None), channels_last=None)
    ref_outs, ref_grads, _ = _train_neck_and_head(feats, watch_layout(False), channels_last=False)
    # a neck node; the head at P3-P6 (P7 is 1x1)
    assert all(seen[None]) and not any(seen[False]) and len(seen[None]) == 1 + 4
    for a, b in zip(outs, ref_outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # gradients: sums over every position in another order, so the bound is relative to each
    # gradient's largest value (measured <= 1.4e-5), plus a floor for those that are zero in exact
    # arithmetic (a BN bias whose output the next BN normalises over 2 values: |grad| <= 4e-7)
    for a, b in zip(grads, ref_grads):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max() + 1e-6


def test_bifpn_exports_with_the_same_outputs():
    # a captured graph runs NCHW (runs_channels_last): compared bit for bit with the eager NCHW run
    neck = BiFPN([40, 112, 320], 32, num_repeats=1, channels_last=False).eval()
    feats = tuple(torch.randn(1, c, h, w) for c, h, w in zip([40, 112, 320], [26, 13, 7], [27, 14, 7]))
    with torch.no_grad():
        eager = neck(feats)
        exported = torch.export.export(neck, (feats, )).module()(feats)
    assert all(torch.equal(a, b) for a, b in zip(eager, exported))


def test_init_weights_official_style():
    neck = BiFPN([40, 112, 320], 64, num_repeats=1)
    neck.init_weights()
    head = EfficientDetHead(num_classes=80, in_channels=64)
    head.init_weights()
    assert torch.allclose(head.conv_cls.pointwise.bias, torch.full_like(head.conv_cls.pointwise.bias, -math.log(99)))
    assert head.conv_reg.pointwise.bias.abs().max() == 0
    assert len(head.cls_norms) == 3 and all(len(n) == 5 for n in head.cls_norms)
    assert head.num_base_priors == 9


@pytest.mark.parametrize('name', ['d0', 'd7'])
def test_anchors_are_effdets_in_order_and_place(name):
    """Every anchor equals effdet's (automl's) of the same index at a native size: same order,
    centres and (1.4, 0.7) non-square shapes (D7: anchor scale 5)."""
    from effdet.anchors import Anchors
    from effdet.config import get_efficientdet_config
    config = get_efficientdet_config(f'tf_efficientdet_{name}')
    ref = Anchors.from_config(config).boxes[:, [1, 0, 3, 2]].float()  # effdet: (y1, x1, y2, x2)
    params = EFFICIENTDET_ARCHS[name]
    head = EfficientDetHead(num_classes=80, in_channels=64, anchor_scale=params.anchor_scale)
    size = params.image_size
    ours = torch.cat(head.prior_generator.grid_priors([(size >> level, ) * 2 for level in range(3, 8)], device='cpu'))
    assert ours.shape == ref.shape
    # effdet computes in float64, we in float32: a few ulps of coordinates up to ~size (measured
    # 6.1e-5 for D0, 1.2e-4 for D7); the former ratio-0.5 anchors were ~1 % (several pixels) off
    assert (ours - ref).abs().max() < 4 * torch.finfo(torch.float32).eps * size


def test_anchor_generator_rejects_bad_aspects():
    from mmeffnet.models.efficientdet_anchors import EfficientDetAnchorGenerator
    with pytest.raises(ValueError, match=r'\(width, height\) pairs.*\(1\.0, -1\.0\)'):
        EfficientDetAnchorGenerator(aspects=[(1.0, -1.0)])


def test_detector_trains_and_predicts_with_mmdet_machinery():
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    model = build_detector(EFFICIENTDET_ARCHS['d0'], num_classes=3)
    model.init_weights()
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(128, 128),
            ori_shape=(128, 128),
            scale_factor=(1., 1.),
            pad_shape=(128, 128),
            batch_input_shape=(128, 128)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[10., 12., 60., 70.]]), labels=torch.tensor([1]))
    x = torch.rand(1, 3, 128, 128)
    losses = model.loss(x, [sample])
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    total = sum(sum(v) for v in losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        preds = model.predict(x, [sample])
    assert preds[0].pred_instances.bboxes.shape[1] == 4


# ---------------------------------------------------------------------------- Table 2
@functools.lru_cache(maxsize=None)
def measured(name: str):
    """(params in M, multiply-adds in B) of our 90-class D-variant at its native size, counted on the
    meta device (nothing is computed)."""
    params = EFFICIENTDET_ARCHS[name]
    with torch.device('meta'):
        model = build_detector(params, num_classes=90)
        size = (1, 3, params.image_size, params.image_size)
        macs = count_macs_split(model, size, forward=lambda m, x: m._forward(x))['total']
    return count_params(model) / 1e6, macs / 1e9


@pytest.mark.parametrize('name', list(TABLE2))
def test_params_and_flops_match_table2(name):
    params_m, macs_b = measured(name)
    paper_params, paper_macs = TABLE2[name]
    print(f'{name}: {params_m:.2f}M params ({params_m / paper_params - 1:+.1%}), '
          f'{macs_b:.2f}B MACs ({macs_b / paper_macs - 1:+.1%})')
    assert abs(params_m / paper_params - 1) <= PARAM_TOLERANCE, (params_m, paper_params)
    assert abs(macs_b / paper_macs - 1) <= FLOP_TOLERANCE, (macs_b, paper_macs)


# ---------------------------------------------------------------------------- effdet equivalence
# (the d0 conversion test first: converted_pair keeps one variant, d0 is then reused)
def test_converter_recognises_variants_and_refuses_another():
    state, _ = converted_pair('d0')
    assert effdet_variants(state) == ('d0', )
    with pytest.raises(
            ConversionError,
            match=r'not an EfficientDet-d1 \(backbone b1, BiFPN 88 x 4.*say backbone b0, BiFPN 64 x 3.*i.e. d0'):
        convert_effdet(state, arch='d1')
    with pytest.raises(ConversionError, match='no counterpart'):
        convert_effdet({**state, 'fpn.extra.weight': torch.zeros(1)})
    ninety = convert_effdet(state, coco80=False)
    assert ninety['bbox_head.conv_cls.pointwise.weight'].shape[0] == 9 * 90


@pytest.mark.parametrize('name,size', [(n, s) for n, sizes in SIZES.items() for s in sizes])
def test_outputs_equal_effdet(name, size):
    state, ours = converted_pair(name)
    ref = effdet_model(name, size)
    ref.load_state_dict(state)
    ref.eval()
    # channels_last on both sides: the same numbers, 2-3x faster depthwise convs on the CPU
    x = real_image(*size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref_cls, ref_box = ref.to(memory_format=torch.channels_last)(x)
        our_cls, our_box = ours._forward(x)
    classes, boxes = class_channel_sources(), box_channel_sources()
    diffs = []
    for level in range(5):
        assert our_cls[level].shape[-2:] == ref_cls[level].shape[-2:]
        diffs.append(
            max((our_cls[level] - ref_cls[level][:, classes]).abs().max().item(),
                (our_box[level] - ref_box[level][:, boxes]).abs().max().item()))
    print(f'{name} {size}: max abs diff per level {["%.1e" % d for d in diffs]}')
    assert max(diffs) < MAX_ABS_DIFF, diffs


# ---------------------------------------------------------------------------- the class loss
@pytest.mark.parametrize('reduction,avg_factor', [(None, 123.0), ('none', 123.0), ('sum', None)])
def test_checkpointed_focal_loss_is_mmdets_bitwise_and_keeps_less(reduction, avg_factor):
    """mmeffnet.CheckpointedFocalLoss against mmdet's FocalLoss on the path mmdet takes off CUDA
    (label targets, PyTorch ops): the same loss and gradient, bit for bit, with label weights and
    avg_factor; autograd keeps the scores instead of ~6 score-sized tensors."""
    from mmdet.models.losses import FocalLoss

    from mmeffnet.models.focal_loss import CheckpointedFocalLoss
    torch.manual_seed(0)
    n, classes = 3000, 80
    pred = torch.randn(n, classes) * 3
    labels = torch.randint(0, classes + 1, (n, ))  # classes = background
    weight = (torch.rand(n) > 0.1).float()
    results = []
    for loss_type in (FocalLoss, CheckpointedFocalLoss):
        loss_fn = loss_type(use_sigmoid=True, gamma=1.5, alpha=0.25, loss_weight=1.0)
        x = pred.clone().requires_grad_()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            loss = loss_fn(x, labels, weight, avg_factor=avg_factor, reduction_override=reduction)
        loss.backward(torch.ones_like(loss))
        results.append((loss.detach(), x.grad, sum(saved)))
    (ref, ref_grad, ref_saved), (ours, grad, ours_saved) = results
    assert torch.equal(ours, ref) and torch.equal(grad, ref_grad)
    assert ref_saved >= 5 * n * classes and ours_saved <= n * (classes + 2)  # scores, labels, weights
    with torch.no_grad():  # no gradient: mmdet's call, unchanged
        assert torch.equal(CheckpointedFocalLoss(gamma=1.5)(pred, labels), FocalLoss(gamma=1.5)(pred, labels))
