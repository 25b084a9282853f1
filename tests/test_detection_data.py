"""Bad COCO input to ``CheckedCocoDataset`` (mmeffnet/datasets/det_coco.py): errors name the file and
the entry; what COCO conventions skip is skipped with a warning; a corrupt image never ends a run.
Data is generated in tmp_path (mmeffnet/datasets/synthetic_shapes.py); the real coco_mini file is
loaded once to show that real COCO (crowd boxes, grayscale images) passes the checks unchanged.
"""
import json
import os.path as osp

import pytest

from mmeffnet.datasets import det_coco
from mmeffnet.datasets.det_coco import CheckedCocoDataset
from mmeffnet.datasets.synthetic_shapes import ShapesSpec, shapes_metainfo, write_shapes_coco

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True), dict(type='PackDetInputs')]


@pytest.fixture
def shapes(tmp_path):
    """A 6-image shapes set; returns (root, annotation dict, annotation path)."""
    paths = write_shapes_coco(str(tmp_path), 'train', ShapesSpec(num_images=6, seed=3))
    with open(paths['ann_file']) as f:
        return str(tmp_path), json.load(f), paths['ann_file']


def build(root: str, test_mode: bool = False, **kwargs) -> CheckedCocoDataset:
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')  # the pipeline's transforms are mmdet's
    args = dict(
        data_root=root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        metainfo=shapes_metainfo(),
        pipeline=PIPELINE,
        test_mode=test_mode,
        filter_cfg=dict(filter_empty_gt=True, min_size=0))
    args.update(kwargs)
    return CheckedCocoDataset(**args)


def infos(ds) -> list:
    # data_list itself is emptied once the dataset serializes it (mmengine's serialize_data)
    return [ds.get_data_info(i) for i in range(len(ds))]


def rewrite(path: str, data: dict) -> None:
    with open(path, 'w') as f:
        json.dump(data, f)


class Warnings:

    def __init__(self) -> None:
        self.messages = []

    @property
    def text(self) -> str:
        return '\n'.join(self.messages)


@pytest.fixture
def warnings_logged(monkeypatch) -> Warnings:
    """The warnings CheckedCocoDataset logs (through its one ``_warn`` helper)."""
    seen = Warnings()
    monkeypatch.setattr(det_coco, '_warn', seen.messages.append)
    return seen


def test_clean_data_loads(shapes):
    root, data, _ = shapes
    ds = build(root)
    assert len(ds) == 6 and ds[0]['inputs'].shape[0] == 3
    assert sum(len(d['instances']) for d in infos(ds)) == len(data['annotations'])


def test_missing_and_invalid_annotation_files(shapes):
    root, _, ann = shapes
    with pytest.raises(FileNotFoundError, match=r'COCO annotation file .*instances_nope.json does not exist'):
        build(root, ann_file='annotations/instances_nope.json')
    with open(ann, 'w') as f:
        f.write('{"images": [')
    with pytest.raises(ValueError, match=r'instances_train.json is not valid JSON: .* line 1'):
        build(root)
    rewrite(ann, {'images': []})
    with pytest.raises(ValueError, match=r'instances_train.json: "categories" is missing; it must be a list'):
        build(root)


def test_entry_errors_name_the_entry(shapes):
    root, data, ann = shapes
    bad = json.loads(json.dumps(data))
    del bad['annotations'][2]['bbox']
    rewrite(ann, bad)
    with pytest.raises(ValueError, match=r"annotation #2 \(id 3\) lacks 'bbox'"):
        build(root)
    bad = json.loads(json.dumps(data))
    bad['annotations'][1]['category_id'] = 42
    rewrite(ann, bad)
    with pytest.raises(ValueError, match=r'annotation #1 \(id 2, image id \d+\) has category_id 42, which is not'):
        build(root)
    with pytest.raises(ValueError, match=r"the dataset classes cross are not among the file's categories"):
        rewrite(ann, data)
        build(root, metainfo=shapes_metainfo(('circle', 'cross')))


def test_missing_image_is_reported_when_the_dataset_is_built(shapes):
    root, data, _ = shapes
    name = data['images'][4]['file_name']
    import os
    os.remove(osp.join(root, 'train', name))
    with pytest.raises(
            FileNotFoundError,
            match=rf'1 of the 6 images listed in .*instances_train.json do not exist: '
            rf'.*{name} \(image id 5\)'):
        build(root)


def test_degenerate_boxes_other_categories_and_empty_images_are_skipped(shapes, warnings_logged):
    root, data, ann = shapes
    bad = json.loads(json.dumps(data))
    bad['annotations'][0]['bbox'][2] = 0  # zero width
    bad['annotations'][1]['bbox'][3] = -4  # negative height
    first_image_anns = [a for a in bad['annotations'] if a['image_id'] == 1]
    bad['annotations'] = [a for a in bad['annotations'] if a['image_id'] != 2]  # image 2: no annotations
    bad['categories'].append(dict(id=9, name='cross', supercategory='shape'))
    bad['annotations'].append(dict(id=999, image_id=3, category_id=9, bbox=[1, 1, 10, 10], area=100, iscrowd=0))
    rewrite(ann, bad)
    ds = build(root)
    text = warnings_logged.text
    assert 'skipped 2 annotation(s) whose box has zero or negative size' in text and 'id 1 (image' in text
    assert 'skipped 1 annotation(s) of categories outside the dataset classes (category id (count): 9 (1))' in text
    assert 2 not in [d['img_id'] for d in infos(ds)]  # filter_empty_gt, as mmdet does
    assert first_image_anns  # the generated image 1 had boxes to break
    assert len(ds.skipped_annotations.bad_boxes) == 2


def test_corrupt_image_is_skipped_in_training_and_blank_in_evaluation(shapes, warnings_logged):
    root, data, _ = shapes
    name = data['images'][0]['file_name']
    with open(osp.join(root, 'train', name), 'wb') as f:
        f.write(b'not a png')
    train = build(root)
    sample = train[0]  # refetched: another image instead of the unreadable one
    assert sample['data_samples'].img_path != osp.join(root, 'train', name)
    assert f'image {osp.join(root, "train", name)} (image id 1' in warnings_logged.text
    assert 'skipped; another sample is drawn instead' in warnings_logged.text
    test = build(root, test_mode=True)
    blank = test[0]
    assert blank['inputs'].sum() == 0 and blank['data_samples'].img_id == 1


def test_real_coco_sample_passes(coco_mini, warnings_logged):
    ds = CheckedCocoDataset(
        data_root=coco_mini,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=[],
        test_mode=True)
    assert len(ds) == 80
    assert len(ds.metainfo['classes']) == 80
    assert sum(i['ignore_flag'] for d in infos(ds) for i in d['instances']) >= 8  # the crowd boxes
