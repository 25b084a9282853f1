"""EfficientDet end to end with the real tools on real COCO images (../shared/data/coco_mini), as
the RetinaNet recipe is in test_detection_tools.py.

``tools/train.py`` runs the D0 config (the official recipe, EMA included) for 2 iterations at 128 px,
changed with ``--cfg-options`` only, and writes a checkpoint; ``tools/test.py`` evaluates it on the
80 images with mmdet's CocoMetric (bbox AP table of all 80 classes); the image demo and the ONNX
export run the config with that checkpoint. Bad input (a backbone whose levels are not the BiFPN's
inputs, a checkpoint of another variant, an unknown variant) ends the tools with one ``ERROR:``
line that names what was expected.
"""
import glob
import json
import os.path as osp
import re

import pytest
import torch

from conftest import (COCO_MINI_ANN, CONFIGS, QUIET_OMP_ENV, coco_mini_options, run_image_demo, run_tool,
                      tool_error_line, train_two_iterations)

D0 = osp.join(CONFIGS, 'efficientdet', 'efficientdet_d0_8xb16-crop512-300e_coco.py')
D1 = osp.join(CONFIGS, 'efficientdet', 'efficientdet_d1_8xb16-crop640-300e_coco.py')
SIZE = 128
# pipeline positions (fragments/efficientdet.py): train [Load, LoadAnn, RandomResize, RandomCrop,
# Flip, Pack], test [Load, Resize, LoadAnn, Pack]
RANDOM_RESIZE, RANDOM_CROP, RESIZE = 2, 3, 1
COPYPASTE = re.compile(r'bbox_mAP_copypaste: ((?:-?\d+\.\d+ ?){6})')
TABLE_ROW = re.compile(r'^\|\s*([a-z][a-z ]*?)\s*\|\s*(nan|\d\.\d+)\s*\|', re.M)


def small_input() -> list:
    """The variant's input size (padding included) brought down to 128 px."""
    return [
        'model.backbone.init_cfg=None',  # no download
        f'model.data_preprocessor.pad_size_divisor={SIZE}',
    ]


def train_options(data_root: str) -> list:
    """D0's recipe at 128 px, 2 iterations (4 images, batch 2, one epoch, no validation)."""
    return small_input() + [
        f'train_dataloader.dataset.pipeline.{RANDOM_RESIZE}.scale=({SIZE},{SIZE})',
        f'train_dataloader.dataset.pipeline.{RANDOM_CROP}.crop_size=({SIZE},{SIZE})',
        'train_dataloader.dataset.indices=4',
        'train_dataloader.batch_size=2',
        'train_cfg.max_epochs=1',
        'train_cfg.val_begin=2',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1',
    ] + coco_mini_options('train', data_root) + coco_mini_options('val', data_root)


def eval_options(data_root: str) -> list:
    """All 80 images at 128 px; score threshold 0 so that a 2-iteration model keeps its boxes."""
    return small_input() + [
        'model.test_cfg.score_thr=0.0', 'test_evaluator.classwise=True',
        f'test_dataloader.dataset.pipeline.{RESIZE}.scale=({SIZE},{SIZE})'
    ] + coco_mini_options('test', data_root)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, coco_mini) -> str:
    """The checkpoint tools/train.py writes after 2 iterations of D0 on coco_mini."""
    return train_two_iterations(D0, tmp_path_factory.mktemp('effdet_train'), train_options(coco_mini))


def test_train_writes_the_d0_detector_and_its_ema(trained):
    ckpt = torch.load(trained, map_location='cpu', weights_only=False)
    state = ckpt['state_dict']
    assert state['neck.cells.2.nodes.7.conv.pointwise.conv.weight'].shape == (64, 64, 1, 1)  # D0: BiFPN 64 x 3
    assert 'neck.cells.3.nodes.0.weight' not in state
    assert state['bbox_head.conv_cls.pointwise.weight'].shape[0] == 9 * 80  # 9 anchors x 80 COCO classes
    # mmengine's EMAHook saves the average as the state_dict (what test.py evaluates) and the raw
    # weights beside it, with the update count
    raw = ckpt['ema_state_dict']
    assert {k[len('module.'):] for k in raw if k.startswith('module.')} == set(state)
    assert int(raw['steps']) == 2  # updated once per iteration
    assert not torch.equal(raw['module.bbox_head.conv_cls.pointwise.weight'],
                           state['bbox_head.conv_cls.pointwise.weight'])
    assert len(ckpt['meta']['dataset_meta']['classes']) == 80


def test_test_prints_the_coco_bbox_table_for_80_classes(trained, coco_mini, tmp_path):
    proc = run_tool(
        'tools/test.py',
        D0,
        trained,
        '--work-dir',
        str(tmp_path),
        '--cfg-options',
        *eval_options(coco_mini),
        env=QUIET_OMP_ENV)
    log = proc.stdout + proc.stderr
    copypaste = COPYPASTE.findall(log)
    assert copypaste, log[-3000:]
    ap = [float(v) for v in copypaste[-1].split()]
    assert len(ap) == 6 and all(-1 <= v <= 1 for v in ap)
    with open(osp.join(coco_mini, COCO_MINI_ANN)) as f:
        names = [c['name'] for c in json.load(f)['categories']]
    rows = dict(TABLE_ROW.findall(log))
    assert not [n for n in names if n not in rows], 'classes missing from the per-class table'


def test_image_demo_paints_the_detections(trained, coco_mini, tmp_path):
    image = sorted(glob.glob(osp.join(coco_mini, 'train2017', '*.jpg')))[0]
    run_image_demo(D0, trained, image, str(tmp_path / 'dets.png'))


@pytest.mark.slow
def test_onnx_export_of_the_detector_verifies(trained, tmp_path):
    """The whole D0 detector in 'tensor' mode (class and box maps of P3-P7), dynamic size, checked in
    onnxruntime at 128 px and at other sizes, odd ones included (the BiFPN's SAME pooling)."""
    pytest.importorskip('onnxruntime')
    out = tmp_path / 'efficientdet_d0.onnx'
    proc = run_tool(
        'tools/deployment/export_onnx.py',
        'config',
        D0,
        '--checkpoint',
        trained,
        '--fuse',
        '--shape',
        '1',
        '3',
        str(SIZE),
        str(SIZE),
        '--out',
        str(out),
        '--verify',
        timeout=600)
    assert 'exported config' in proc.stdout and '(10 outputs' in proc.stdout, proc.stdout
    assert 'input [1, 3, 135, 141]' in proc.stdout and 'verified: max abs diff' in proc.stdout, proc.stdout


def test_backbone_that_does_not_fit_the_bifpn_is_one_error_line(coco_mini, tmp_path):
    proc = run_tool(
        'tools/train.py',
        D0,
        '--work-dir',
        str(tmp_path),
        '--cfg-options',
        'model.backbone.arch=b3',
        *train_options(coco_mini),
        check=False,
        env=QUIET_OMP_ENV)
    line = tool_error_line(proc)
    assert 'in_channels=[40, 112, 320] do not fit' in line and "arch='b3'" in line, line
    assert 'outputs channels [48, 136, 384]' in line and 'model.neck.in_channels=[48, 136, 384]' in line, line


def test_checkpoint_of_another_variant_is_one_error_line(coco_mini, tmp_path):
    """A D1 checkpoint given to tools/test.py with the D0 config: the error names both variants."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from mmeffnet.config import swap_sync_bn
    register_all_modules()
    cfg = Config.fromfile(D1)
    cfg.model.backbone.init_cfg = None
    swap_sync_bn(cfg, distributed=False)
    ckpt = tmp_path / 'd1.pth'
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict(), meta={}), ckpt)
    proc = run_tool(
        'tools/test.py',
        D0,
        str(ckpt),
        '--work-dir',
        str(tmp_path),
        '--cfg-options',
        *eval_options(coco_mini),
        check=False,
        env=QUIET_OMP_ENV)
    line = tool_error_line(proc)
    assert str(ckpt) in line, line
    assert 'it is an EfficientDet-d1 (backbone b1, BiFPN 88 x 4 (fast fusion), head depth 3, 80 classes) checkpoint, ' \
           'the model is an EfficientDet-d0 (backbone b0, BiFPN 64 x 3' in line, line


@pytest.mark.parametrize('variant,message', [("'d9'", "unknown EfficientDet variant 'd9'; valid names are d0, d1"),
                                             ('dict(phi=8)', 'phi must be an integer in 0..7 (D0..D7), got phi=8')])
def test_unknown_variant_is_one_error_line(variant, message, tmp_path):
    config = tmp_path / 'efficientdet_custom.py'
    config.write_text(f"_base_ = ['{osp.join(CONFIGS, 'efficientdet', '_base_', '_efficientdet_tf-recipe_coco.py')}']\n"
                      'from mmeffnet.config.fragments.efficientdet import efficientdet_variant\n'
                      '(image_size, model, train_pipeline, test_pipeline, train_dataloader, val_dataloader,\n'
                      f' test_dataloader) = efficientdet_variant({variant})\n')
    proc = run_tool('tools/train.py', str(config), '--work-dir', str(tmp_path), check=False, env=QUIET_OMP_ENV)
    line = tool_error_line(proc)
    assert str(config) in line and message in line, line
