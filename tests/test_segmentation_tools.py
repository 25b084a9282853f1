"""End to end with the real tools on real data: every ADE20K config trains a few iterations on
../shared/data/ade_sample with tools/train.py and is evaluated by tools/test.py (mIoU table of
all 150 classes); MMSegInferencer and tools/demo/segmentation_demo.py run on the checkpoint;
the VOC config trains on a generated VOC2012 + aug layout.

Sizes are cut down with --cfg-options only (64 px crops, batch 2, 2 iterations).
"""
import glob
import json
import os.path as osp
import re

import mmcv
import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from conftest import CONFIGS, run_tool

SEG = osp.join(CONFIGS, 'segmentation')
ADE_CONFIGS = sorted(glob.glob(osp.join(SEG, '*_ade20k-*.py')))
VOC_CONFIG = osp.join(SEG, 'deeplabv3plus_effb3-d8_4xb4-40k_voc12aug-512x512.py')
FPN_CONFIG = osp.join(SEG, 'fpn_effb3_4xb4-160k_ade20k-512x512.py')
ADE_VAL = ('images/validation', 'annotations/validation')
CROP, SHORT_SIDE, ITERS = 64, 64, 2
ROW = re.compile(r'^\|\s*(.+?)\s*\|\s*(nan|\d+\.\d+)\s*\|\s*(nan|\d+\.\d+)\s*\|$', re.M)


def _index(pipeline, type_name: str) -> int:
    return [t['type'] for t in pipeline].index(type_name)


def small_train_options(config: str,
                        data_root: str,
                        img_dir: str = ADE_VAL[0],
                        seg_dir: str = ADE_VAL[1],
                        iters: int = ITERS,
                        batch: int = 2) -> list:
    """--cfg-options that shrink a segmentation config to ``CROP`` px crops on ``data_root``."""
    cfg = Config.fromfile(config)
    train = cfg.train_dataloader.dataset
    datasets = [f'train_dataloader.dataset.datasets.{i}' for i in range(len(train.datasets))] \
        if 'datasets' in train else ['train_dataloader.dataset']
    pipeline = (train.datasets[0] if 'datasets' in train else train).pipeline
    options = [
        'model.backbone.init_cfg=None',  # no download; the tests never reach the network
        f'model.data_preprocessor.size=({CROP},{CROP})',
        f'train_dataloader.batch_size={batch}',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}',
        'default_hooks.logger.interval=1',
    ]
    for ds in datasets:
        options += [
            f'{ds}.data_root={data_root}', f'{ds}.data_prefix.img_path={img_dir}',
            f'{ds}.data_prefix.seg_map_path={seg_dir}',
            f'{ds}.pipeline.{_index(pipeline, "RandomResize")}.scale=(256,{SHORT_SIDE})',
            f'{ds}.pipeline.{_index(pipeline, "RandomCrop")}.crop_size=({CROP},{CROP})'
        ]
        if 'Pad' in [t['type'] for t in pipeline]:  # VOC pads every crop to the crop size
            options.append(f'{ds}.pipeline.{_index(pipeline, "Pad")}.size=({CROP},{CROP})')
    options += eval_options(cfg, 'val', data_root)
    return options


def eval_options(cfg: Config, split: str, data_root: str, short_side: int = SHORT_SIDE) -> list:
    """--cfg-options that evaluate on ``data_root`` at ``short_side`` px, in the main process."""
    resize = _index(cfg[f'{split}_dataloader'].dataset.pipeline, 'Resize')
    return [
        f'{split}_dataloader.dataset.data_root={data_root}', f'{split}_dataloader.num_workers=0',
        f'{split}_dataloader.persistent_workers=False',
        f'{split}_dataloader.dataset.pipeline.{resize}.scale=(2048,{short_side})'
    ]


def per_class_rows(log: str) -> list:
    return [(name.strip(), iou, acc) for name, iou, acc in ROW.findall(log)]


def ade_classes():
    from mmseg.datasets import ADE20KDataset
    return [c.strip() for c in ADE20KDataset.METAINFO['classes']]


@pytest.fixture(scope='module')
def trained(tmp_path_factory, ade_sample):
    """config path -> work dir after tools/train.py; each config is trained once per module."""
    runs = {}

    def train(config: str) -> str:
        if config not in runs:
            work = str(tmp_path_factory.mktemp(osp.basename(config)[:-3]))
            proc = run_tool(
                'tools/train.py',
                config,
                '--work-dir',
                work,
                '--cfg-options',
                *small_train_options(config, ade_sample),
                timeout=600)
            log = proc.stdout + proc.stderr
            assert f'Iter(train) [{ITERS}/{ITERS}]' in log, log[-3000:]
            runs[config] = work
        return runs[config]

    return train


@pytest.mark.parametrize('config', ADE_CONFIGS, ids=[osp.basename(c)[:-3] for c in ADE_CONFIGS])
def test_train_then_test_reports_miou_of_150_classes(config, trained, ade_sample, tmp_path):
    work = trained(config)
    ckpt = osp.join(work, f'iter_{ITERS}.pth')
    from mmeffnet.checkpoint import read_checkpoint
    meta = read_checkpoint(ckpt)['meta']
    assert [c.strip() for c in meta['dataset_meta']['classes']] == ade_classes()

    # init_cfg keeps its download URL: testing must never initialise weights, only load ckpt
    proc = run_tool(
        'tools/test.py',
        config,
        ckpt,
        '--work-dir',
        str(tmp_path),
        '--cfg-options',
        *eval_options(Config.fromfile(config), 'test', ade_sample),
        timeout=600)
    log = proc.stdout + proc.stderr
    rows = per_class_rows(log)
    assert [name for name, _, _ in rows] == ade_classes()
    # classes in the sample's labels have an IoU; classes in neither labels nor predictions: nan
    present = set()
    for png in glob.glob(osp.join(ade_sample, ADE_VAL[1], '*.png')):
        present |= {v - 1 for v in np.unique(np.array(Image.open(png))) if 0 < v <= 150}
    for k, (name, iou, acc) in enumerate(rows):
        if k in present:
            assert iou != 'nan' and acc != 'nan' and 0 <= float(iou) <= 100, name
    miou = float(re.findall(r'Iter\(test\) \[3/3\]\s+aAcc: \S+\s+mIoU: (\d+\.\d+)', log)[-1])
    scalars = glob.glob(osp.join(str(tmp_path), '*', '*.json'))
    assert scalars and json.load(open(scalars[0]))['mIoU'] == pytest.approx(miou)
    assert 0 <= miou <= 100


def test_inferencer_and_demo_overlay(trained, ade_sample, tmp_path):
    from mmseg.apis import MMSegInferencer

    from mmeffnet.runtime import safe_checkpoint_loading
    ckpt = osp.join(trained(FPN_CONFIG), f'iter_{ITERS}.pth')
    image = osp.join(ade_sample, ADE_VAL[0], 'ADE_val_00000002.jpg')
    rgb = mmcv.imread(image, channel_order='rgb')

    with safe_checkpoint_loading():  # mmengine reads the mmengine checkpoint under torch>=2.6's weights_only
        inferencer = MMSegInferencer(model=FPN_CONFIG, weights=ckpt, device='cpu')
    assert [c.strip() for c in inferencer.model.dataset_meta['classes']] == ade_classes()
    pred = inferencer(image)['predictions']
    assert pred.shape == rgb.shape[:2] and pred.max() < 150

    overlay, labels = tmp_path / 'overlay.png', tmp_path / 'labels.png'
    proc = run_tool(
        'tools/demo/segmentation_demo.py',
        image,
        FPN_CONFIG,
        ckpt,
        '--out',
        str(overlay),
        '--pred-out',
        str(labels),
        '--opacity',
        '0.5',
        timeout=300)
    assert f'wrote {overlay}' in proc.stdout
    assert 'save_dir' not in proc.stderr, proc.stderr  # no LocalVisBackend warning: it draws in memory
    demo_labels = np.array(Image.open(labels))
    np.testing.assert_array_equal(demo_labels, pred)  # same inferencer, same answer
    painted = mmcv.imread(str(overlay), channel_order='rgb').astype(np.int32)
    palette = np.array(inferencer.model.dataset_meta['palette'])
    expected = (rgb * 0.5 + palette[demo_labels] * 0.5).astype(np.int32)
    assert painted.shape == rgb.shape
    assert np.abs(painted - expected).max() <= 1  # every pixel blends image and class colour


def test_test_tool_names_a_bad_label_found_in_a_worker(trained, ade_sample, tmp_path):
    ckpt = osp.join(trained(FPN_CONFIG), f'iter_{ITERS}.pth')
    img_dir, seg_dir = tmp_path / ADE_VAL[0], tmp_path / ADE_VAL[1]
    img_dir.mkdir(parents=True)
    seg_dir.mkdir(parents=True)
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(img_dir / 'ADE_val_00000001.jpg')
    Image.fromarray(np.ones((30, 32), np.uint8)).save(seg_dir / 'ADE_val_00000001.png')
    proc = run_tool(
        'tools/test.py',
        FPN_CONFIG,
        ckpt,
        '--work-dir',
        str(tmp_path / 'work'),
        '--cfg-options',
        f'test_dataloader.dataset.data_root={tmp_path}',
        check=False,
        timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = proc.stderr[proc.stderr.index('ERROR:'):]
    assert f'label {seg_dir}/ADE_val_00000001.png is 32x30 (WxH)' in error
    assert 'Original Traceback' not in error  # the worker's traceback is cut to the error itself


def make_voc_aug(root) -> str:
    """VOC2012 layout with SBD "aug" labels: train.txt / aug.txt / val.txt, 255 = boundary."""
    rng = np.random.default_rng(0)
    dirs = ['JPEGImages', 'SegmentationClass', 'SegmentationClassAug', 'ImageSets/Segmentation']
    for d in dirs:
        (root / d).mkdir(parents=True)
    names = [f'2007_{i:06d}' for i in range(4)]
    for i, name in enumerate(names):
        label = np.zeros((48, 64), np.uint8)
        label[8:40, 8 + 10 * i:40 + 10 * i] = 1 + 4 * i  # aeroplane, cat, ... per image
        label[7, :] = 255
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / 'JPEGImages' / f'{name}.jpg')
        for seg_dir in dirs[1:3]:
            Image.fromarray(label).save(root / seg_dir / f'{name}.png')
    sets = root / 'ImageSets' / 'Segmentation'
    (sets / 'train.txt').write_text('\n'.join(names[:2]) + '\n')
    (sets / 'aug.txt').write_text('\n'.join(names[2:]) + '\n')
    (sets / 'val.txt').write_text('\n'.join(names) + '\n')
    return str(root)


def test_voc12aug_config_trains_and_validates_21_classes(tmp_path):
    root = make_voc_aug(tmp_path / 'VOC2012')
    proc = run_tool(
        'tools/train.py',
        VOC_CONFIG,
        '--work-dir',
        str(tmp_path / 'work'),
        '--cfg-options',
        *small_train_options(VOC_CONFIG, root, img_dir='JPEGImages', seg_dir='SegmentationClassAug'),
        timeout=600)
    log = proc.stdout + proc.stderr
    assert f'Iter(train) [{ITERS}/{ITERS}]' in log
    from mmseg.datasets import PascalVOCDataset
    assert [name for name, _, _ in per_class_rows(log)] == [c.strip() for c in PascalVOCDataset.METAINFO['classes']]
    assert re.search(r'Iter\(val\) \[4/4\]\s+aAcc: \d+\.\d+\s+mIoU: \d+\.\d+', log)
