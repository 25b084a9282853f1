"""Bad segmentation data gets an error naming the file; ignored pixels never count in mIoU.

Tiny ADE20K / PASCAL VOC layouts are generated in a tmp dir and read by mmseg's real datasets,
with the pipelines of our configs (CheckSegSample) and our SegDataCheckHook.
"""
import os.path as osp
import re

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

from conftest import CONFIGS, run_tool
from mmeffnet.datasets.seg_checks import CheckSegSample, check_seg_files  # registers them in mmseg

ADE_CONFIG = osp.join(CONFIGS, 'segmentation', 'fpn_effb3_4xb4-160k_ade20k-512x512.py')
VOC_CONFIG = osp.join(CONFIGS, 'segmentation', 'deeplabv3plus_effb3-d8_4xb4-40k_voc12aug-512x512.py')
H, W = 24, 32
ADE_VAL = dict(img_path='images/validation', seg_map_path='annotations/validation')


def write_pair(img_path: str, seg_path: str, label: np.ndarray, img_size=None) -> None:
    h, w = img_size or label.shape
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img_path)
    Image.fromarray(label.astype(np.uint8)).save(seg_path)


def make_ade(root, labels, img_sizes=None) -> str:
    """ADEChallengeData2016 layout, validation split, one image per label map."""
    img_dir, seg_dir = root / 'images' / 'validation', root / 'annotations' / 'validation'
    img_dir.mkdir(parents=True)
    seg_dir.mkdir(parents=True)
    for i, label in enumerate(labels):
        size = img_sizes[i] if img_sizes else None
        write_pair(str(img_dir / f'ADE_val_{i:08d}.jpg'), str(seg_dir / f'ADE_val_{i:08d}.png'), label, size)
    return str(root)


def ade_labels(n=2) -> list:
    """Class k is stored as k + 1, 0 = unlabelled."""
    label = np.zeros((H, W), np.uint8)
    label[:, :10] = 1  # wall
    label[:, 10:20] = 3  # sky
    label[:12, 20:] = 150  # the last class (flag)
    return [label.copy() for _ in range(n)]


def build_dataset(config: str, split: str, data_root: str, **overrides):
    init_default_scope('mmseg')
    from mmseg.registry import DATASETS
    ds_cfg = Config.fromfile(config)[f'{split}_dataloader'].dataset
    ds_cfg.data_root = data_root
    if config == ADE_CONFIG:  # the generated data has the validation split only
        ds_cfg.data_prefix = ADE_VAL
    ds_cfg.update(overrides)
    return DATASETS.build(ds_cfg)


def test_valid_ade_sample_passes_and_keeps_class_ids(tmp_path):
    ds = build_dataset(ADE_CONFIG, 'val', make_ade(tmp_path, ade_labels()))
    seg = ds[0]['data_samples'].gt_sem_seg.data[0].numpy()
    assert set(np.unique(seg)) == {0, 2, 149, 255}  # wall, sky, flag, unlabelled->ignore


def test_label_of_another_size_names_both_files(tmp_path):
    root = make_ade(tmp_path, ade_labels(), img_sizes=[(H, W), (H + 8, W)])
    for split in ('train', 'val'):  # LoadAnnotations before (train) and after (test) the Resize
        ds = build_dataset(ADE_CONFIG, split, root)
        with pytest.raises(ValueError) as err:
            ds[1]
        msg = str(err.value)
        assert 'annotations/validation/ADE_val_00000001.png is 32x24 (WxH)' in msg
        assert 'images/validation/ADE_val_00000001.jpg is 32x32' in msg


def test_label_values_above_the_classes_are_reported_as_stored(tmp_path):
    labels = ade_labels()
    labels[1][0, 0], labels[1][1, 1], labels[1][2, 2] = 151, 200, 255  # 255 is a valid ignore value
    ds = build_dataset(ADE_CONFIG, 'train', make_ade(tmp_path, labels))
    ds[0]
    with pytest.raises(
            ValueError,
            match=r'ADE_val_00000001\.png \(image .*ADE_val_00000001\.jpg\) has '
            r'values \[151, 200\] .*valid values are 1\.\.150'):
        ds[1]


def make_voc(root, labels, names=None, listed=None) -> str:
    """VOC2012 layout (JPEGImages, SegmentationClass, ImageSets/Segmentation/val.txt)."""
    img_dir, seg_dir = root / 'JPEGImages', root / 'SegmentationClass'
    sets = root / 'ImageSets' / 'Segmentation'
    for d in (img_dir, seg_dir, sets):
        d.mkdir(parents=True)
    names = names or [f'2007_{i:06d}' for i in range(len(labels))]
    for name, label in zip(names, labels):
        write_pair(str(img_dir / f'{name}.jpg'), str(seg_dir / f'{name}.png'), label)
    (sets / 'val.txt').write_text('\n'.join(listed or names) + '\n')
    return str(root)


def test_voc_values_without_reduce_zero_label(tmp_path):
    label = np.zeros((H, W), np.uint8)
    label[:, :5] = 15  # person
    label[:, 5:7] = 255  # boundary: ignored
    bad = label.copy()
    bad[0, 0] = 21
    ds = build_dataset(VOC_CONFIG, 'val', make_voc(tmp_path, [label, bad]))
    assert set(np.unique(ds[0]['data_samples'].gt_sem_seg.data.numpy())) == {0, 15, 255}
    with pytest.raises(
            ValueError, match=r'2007_000001\.png .*values \[21\] .*valid values are 0\.\.20 '
            r'\(the classes\) and 255'):
        ds[1]


def test_missing_image_and_missing_label_are_listed(tmp_path):
    root = make_ade(tmp_path, ade_labels(3))
    (tmp_path / 'images' / 'validation' / 'ADE_val_00000001.jpg').unlink()  # label without image
    (tmp_path / 'annotations' / 'validation' / 'ADE_val_00000002.png').unlink()  # image without label
    ds = build_dataset(ADE_CONFIG, 'val', root)
    assert len(ds) == 2  # mmseg alone would silently drop the orphan label
    with pytest.raises(FileNotFoundError) as err:
        check_seg_files(ds)
    msg = str(err.value)
    assert '2 missing file(s)' in msg
    assert re.search(
        r'image \S+images/validation/ADE_val_00000001\.jpg does not exist '
        r'\(its label is \S+annotations/validation/ADE_val_00000001\.png\)', msg), msg
    assert re.search(r'label \S+annotations/validation/ADE_val_00000002\.png does not exist', msg), msg


def test_voc_list_naming_a_missing_image(tmp_path):
    label = np.zeros((H, W), np.uint8)
    root = make_voc(tmp_path, [label], names=['2007_000000'], listed=['2007_000000', '2007_000099'])
    ds = build_dataset(VOC_CONFIG, 'val', root)
    with pytest.raises(FileNotFoundError, match=r'JPEGImages/2007_000099\.jpg does not exist'):
        check_seg_files(ds)


def test_train_tool_stops_on_a_missing_image_before_training(tmp_path):
    root = make_ade(tmp_path / 'ade', ade_labels(2))
    (tmp_path / 'ade' / 'images' / 'validation' / 'ADE_val_00000001.jpg').unlink()
    proc = run_tool(
        'tools/train.py',
        ADE_CONFIG,
        '--work-dir',
        str(tmp_path / 'work'),
        '--cfg-options',
        f'train_dataloader.dataset.data_root={root}',
        'train_dataloader.dataset.data_prefix.img_path=images/validation',
        'train_dataloader.dataset.data_prefix.seg_map_path=annotations/validation',
        f'val_dataloader.dataset.data_root={root}',
        timeout=300,
        check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith('ERROR:')]
    assert error and 'ADE20KDataset' in error[0], proc.stderr[-3000:]
    assert 'images/validation/ADE_val_00000001.jpg does not exist' in proc.stderr
    assert 'Iter(train)' not in proc.stdout + proc.stderr  # stopped before the first batch


def test_check_transform_arguments_and_inference_samples():
    with pytest.raises(ValueError, match='ignore_index=3 is one of the 21 classes'):
        CheckSegSample(num_classes=21, ignore_index=3)
    with pytest.raises(ValueError, match='num_classes=0'):
        CheckSegSample(num_classes=0)
    sample = dict(img=np.zeros((4, 4, 3), np.uint8), ori_shape=(4, 4))  # no label: inference
    assert CheckSegSample(num_classes=150)(sample) is sample


def test_ignored_pixels_never_count_in_miou(tmp_path):
    """Through the config's test pipeline and mmseg's IoUMetric: predictions that are right on
    every labelled pixel and wrong on every ignored one (unlabelled 0 and 255 in the file)
    score 100; one wrong labelled pixel lowers the score."""
    from mmengine.structures import PixelData
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample
    labels = ade_labels(2)
    labels[1][20:, :] = 255
    ds = build_dataset(ADE_CONFIG, 'test', make_ade(tmp_path, labels))

    def evaluate(corrupt_labelled: bool) -> dict:
        metric = IoUMetric(iou_metrics=['mIoU'])
        metric.dataset_meta = ds.metainfo
        for i in range(len(ds)):
            gt = ds[i]['data_samples'].gt_sem_seg.data
            pred = gt.clone().long()
            ignored = gt == 255
            assert ignored.any()
            pred[ignored] = 7  # a class that appears nowhere in the labels
            if corrupt_labelled:
                pred[0, 0, 0] = 2
            sample = SegDataSample(gt_sem_seg=PixelData(data=gt), pred_sem_seg=PixelData(data=pred))
            metric.process({}, [sample.to_dict()])
        return metric.compute_metrics(metric.results)

    clean = evaluate(corrupt_labelled=False)
    assert clean['mIoU'] == 100.0 and clean['aAcc'] == 100.0
    assert evaluate(corrupt_labelled=True)['mIoU'] < 100.0
