"""The detection recipe end to end with the real tools on real COCO images (../shared/data/coco_mini:
80 train2017 images, all 80 categories, crowd boxes, grayscale images).

``tools/train.py`` runs THE B3 recipe for 2 iterations at 128 px (sizes, schedule and data
location changed with ``--cfg-options`` only) and writes a checkpoint; ``tools/test.py`` evaluates
it on all 80 images with mmdet's CocoMetric and prints the bbox AP table for all 80 classes, and
``--out`` dumps the predictions; mmdet's ``DetInferencer`` and ``tools/demo/image_demo.py`` run
the unmodified config with that checkpoint. Bad data locations and annotation files end the
tools with one ``ERROR:`` line naming the path, and exit code 2.
"""
import glob
import json
import os.path as osp
import pickle
import re

import mmcv
import numpy as np
import pytest

from conftest import (COCO_MINI_ANN, CONFIGS, QUIET_OMP_ENV, coco_mini_options, run_image_demo, run_tool,
                      tool_error_line, train_two_iterations)

B3 = osp.join(CONFIGS, 'retinanet_effb3_fpn_crop896_8x4_1x_coco.py')
SIZE = 128
COPYPASTE = re.compile(r'bbox_mAP_copypaste: ((?:-?\d+\.\d+ ?){6})')
TABLE_ROW = re.compile(r'^\|\s*([a-z][a-z ]*?)\s*\|\s*(nan|\d\.\d+)\s*\|', re.M)
# pipeline positions in the recipe: train [Load, LoadAnn, RandomResize, RandomCrop, Flip, Pack],
# test [Load, Resize, ...]
RANDOM_RESIZE, RANDOM_CROP, RESIZE = 2, 3, 1


def train_options(data_root: str) -> list:
    """The recipe at 128 px, 2 iterations (4 images, batch 2, one epoch, no validation)."""
    return [
        'model.backbone.init_cfg=None',  # no download; the tests never reach the network
        f'model.data_preprocessor.batch_augments.0.size=({SIZE},{SIZE})',
        f'train_dataloader.dataset.pipeline.{RANDOM_RESIZE}.scale=({SIZE},{SIZE})',
        f'train_dataloader.dataset.pipeline.{RANDOM_CROP}.crop_size=({SIZE},{SIZE})',
        'train_dataloader.dataset.indices=4',
        'train_dataloader.batch_size=2',
        'train_cfg.max_epochs=1',
        'train_cfg.val_begin=2',  # the last epoch would be validated otherwise
        f'val_dataloader.dataset.pipeline.{RESIZE}.scale=({SIZE},{SIZE})',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1',
    ] + coco_mini_options('train', data_root) + coco_mini_options('val', data_root)


def eval_options(data_root: str) -> list:
    """All 80 images at 128 px; score threshold 0 so that a 2-iteration model keeps its boxes."""
    return [
        'model.backbone.init_cfg=None', 'model.test_cfg.score_thr=0.0', 'test_evaluator.classwise=True',
        f'test_dataloader.dataset.pipeline.{RESIZE}.scale=({SIZE},{SIZE})'
    ] + coco_mini_options('test', data_root)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, coco_mini) -> str:
    """The checkpoint tools/train.py writes after 2 iterations of the recipe on coco_mini."""
    return train_two_iterations(B3, tmp_path_factory.mktemp('det_train'), train_options(coco_mini))


@pytest.fixture(scope='module')
def tested(tmp_path_factory, coco_mini, trained):
    work_dir = tmp_path_factory.mktemp('det_test')
    out = work_dir / 'predictions.pkl'
    proc = run_tool(
        'tools/test.py',
        B3,
        trained,
        '--work-dir',
        str(work_dir),
        '--out',
        str(out),
        '--cfg-options',
        *eval_options(coco_mini),
        env=QUIET_OMP_ENV)
    return proc.stdout + proc.stderr, work_dir, out


def test_train_writes_a_loadable_checkpoint(trained):
    import torch
    ckpt = torch.load(trained, map_location='cpu', weights_only=False)
    keys = ckpt['state_dict'].keys()
    assert any(k.startswith('backbone.layers.5.') for k in keys)
    assert ckpt['state_dict']['neck.lateral_convs.0.conv.weight'].shape[1] == 48  # B3's level 3
    assert len(ckpt['meta']['dataset_meta']['classes']) == 80


def test_test_prints_the_coco_bbox_table_for_80_classes(tested, coco_mini):
    log, work_dir, _ = tested
    copypaste = COPYPASTE.findall(log)
    assert copypaste, log[-3000:]
    ap = [float(v) for v in copypaste[-1].split()]
    assert len(ap) == 6 and all(-1 <= v <= 1 for v in ap)  # mAP, @50, @75, s, m, l
    with open(osp.join(coco_mini, COCO_MINI_ANN)) as f:
        names = [c['name'] for c in json.load(f)['categories']]
    rows = dict(TABLE_ROW.findall(log))
    missing = [n for n in names if n not in rows]
    assert not missing, f'classes missing from the per-class table: {missing}'
    # the metrics also land in the run's json log (mmengine LoggerHook), keyed as CocoMetric names them
    logs = glob.glob(str(work_dir / '*' / '*.json'))
    assert logs
    with open(logs[-1]) as f:
        metrics = json.loads(f.read().splitlines()[-1])
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l'):
        assert isinstance(metrics[f'coco/{key}'], float)
    assert metrics['coco/bbox_mAP'] == pytest.approx(ap[0], abs=1e-3)
    assert sum(k.endswith('_precision') for k in metrics) == 80


def test_test_out_dumps_predictions(tested):
    _, _, out = tested
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 80  # one entry per image
    first = results[0]
    boxes, scores, labels = (first['pred_instances'][k] for k in ('bboxes', 'scores', 'labels'))
    assert boxes.shape[1] == 4 and len(boxes) == len(scores) == len(labels) > 0
    assert 0 <= int(labels.min()) and int(labels.max()) < 80
    assert first['img_id'] and first['ori_shape']


def test_det_inferencer_runs_the_config_with_the_checkpoint(trained, coco_mini):
    """mmdet's own inferencer with the unmodified recipe config (896 px test pipeline)."""
    from mmdet.apis import DetInferencer
    from mmengine.config import Config

    import mmeffnet  # noqa: F401
    from mmeffnet.runtime import safe_checkpoint_loading

    image = sorted(glob.glob(osp.join(coco_mini, 'train2017', '*.jpg')))[0]
    cfg = Config.fromfile(B3)
    cfg.model.test_cfg.score_thr = 0.0  # a 2-iteration model scores every box under the recipe's 0.05
    with safe_checkpoint_loading():  # mmengine reads the mmengine checkpoint under torch>=2.6's weights_only
        inferencer = DetInferencer(model=cfg, weights=trained, device='cpu', show_progress=False)
    assert type(inferencer.model.backbone).__name__ == 'EfficientNet'
    assert len(inferencer.model.dataset_meta['classes']) == 80
    result = inferencer(image, return_vis=True, no_save_vis=True, pred_score_thr=0.0)
    pred = result['predictions'][0]
    assert len(pred['bboxes']) == len(pred['scores']) == len(pred['labels']) > 0
    h, w = mmcv.imread(image).shape[:2]
    assert result['visualization'][0].shape == (h, w, 3)
    boxes = np.array(pred['bboxes'])
    assert (boxes[:, 2] <= w + 1).all() and (boxes[:, 3] <= h + 1).all()  # boxes in original image pixels


def test_image_demo_writes_boxes(trained, coco_mini, tmp_path):
    image = sorted(glob.glob(osp.join(coco_mini, 'train2017', '*.jpg')))[0]
    proc = run_image_demo(B3, trained, image, str(tmp_path / 'dets.png'))
    # mmdet's DetInferencer noise is silenced: the "function" registry scope WARNING
    # (open-mmlab/mmdetection#10386) and LocalVisBackend's missing save_dir
    assert 'registry tree' not in proc.stdout + proc.stderr and 'save_dir' not in proc.stderr, proc.stderr


def test_missing_dataset_says_where_it_looked(tmp_path):
    missing = tmp_path / 'no_coco'
    proc = run_tool(
        'tools/train.py',
        B3,
        '--work-dir',
        str(tmp_path / 'w'),
        '--cfg-options',
        f'train_dataloader.dataset.data_root={missing}/',
        check=False,
        env=QUIET_OMP_ENV)
    line = tool_error_line(proc)
    assert str(missing) in line and 'does not exist' in line
    assert '--cfg-options train_dataloader.dataset.data_root=' in line  # how to point it elsewhere


def test_bad_annotation_json_names_the_file(tmp_path, coco_mini):
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    (root / 'train2017').mkdir()
    ann = root / COCO_MINI_ANN
    ann.write_text('{"images": [], "annotations": [')  # truncated file
    options = train_options(coco_mini) + [f'train_dataloader.dataset.data_root={root}/']
    proc = run_tool(
        'tools/train.py',
        B3,
        '--work-dir',
        str(tmp_path / 'w'),
        '--cfg-options',
        *options,
        check=False,
        env=QUIET_OMP_ENV)
    line = tool_error_line(proc)
    assert str(ann) in line and 'not valid JSON' in line


def test_evaluator_annotation_file_is_checked_too(coco_mini):
    """Moving the dataloaders but not CocoMetric's own ``ann_file`` is caught before anything is built."""
    from mmengine.config import Config

    from mmeffnet.config import check_dataset_paths

    cfg = Config.fromfile(B3)
    options = {}
    for split in ('train', 'val'):
        options.update(
            dict(
                opt.split('=', 1) for opt in coco_mini_options(split, coco_mini)
                if '_evaluator.' not in opt and 'num_workers' not in opt and 'persistent' not in opt))
    cfg.merge_from_dict(options)
    with pytest.raises(
            FileNotFoundError,
            match=r"val evaluator \(CocoMetric\): ann_file "
            r"'data/coco/annotations/instances_val2017.json' does not exist.*val_evaluator.ann_file="):
        check_dataset_paths(cfg, ('train', 'val'))
    cfg.merge_from_dict({'val_evaluator.ann_file': f'{coco_mini}/{COCO_MINI_ANN}'})
    check_dataset_paths(cfg, ('train', 'val'))
