"""COCO detection data with clear errors for bad files (``mmeffnet.CheckedCocoDataset``).

mmdet's ``CocoDataset`` trusts its annotation file: invalid JSON surfaces as a ``JSONDecodeError``
without the file name, a missing key as a bare ``KeyError`` deep in pycocotools, a class of the
config that the file lacks silently trains on nothing, boxes of zero size and annotations of
other categories are dropped without a word, a listed image that is missing fails inside a
data-loader worker at the first batch that holds it, and one corrupt JPEG ends a run whenever
it comes up. ``CheckedCocoDataset`` is ``CocoDataset`` with these handled:

- errors (``ValueError`` / ``FileNotFoundError``) naming the file and the entry: a missing, non
  JSON or non-COCO annotation file; images or annotations lacking required keys or with bad
  values, duplicate ids; an annotation whose image or category is not in the file; a class of
  ``metainfo['classes']`` that the file's categories lack; listed images that are not on disk
  (all checked when the dataset is built, before any training step);
- skipped with one warning each, as COCO / mmdet conventions say: boxes of zero or negative
  size (or lying outside their image), annotations of categories outside
  ``metainfo['classes']``, and (in training, ``filter_empty_gt=True``) images without boxes;
- an image that cannot be decoded while training is skipped with a warning naming it and
  another sample is drawn (mmengine's refetch); in evaluation it is replaced by a blank image
  of its listed size, so its objects count as missed and the run goes on.
"""
import json
import logging
import math
import os.path as osp
from collections import Counter
from typing import Dict, List, Optional, Sequence, Set

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmengine import fileio
from mmengine.logging import print_log

from ..registry import DATASETS
from ..utils import MAX_LISTED, listing

IMAGE_KEYS = ('id', 'file_name', 'width', 'height')
ANNOTATION_KEYS = ('id', 'image_id', 'category_id', 'bbox', 'area')
CATEGORY_KEYS = ('id', 'name')


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_coco_json(ann_file: str, backend_args: Optional[dict] = None) -> dict:
    """Read a COCO annotation file; errors name the file and what is wrong with it."""
    if not fileio.exists(ann_file, backend_args=backend_args):
        raise FileNotFoundError(f'COCO annotation file {ann_file} does not exist')
    try:
        text = fileio.get_text(ann_file, backend_args=backend_args)
    except UnicodeDecodeError as exc:  # binary junk: say which file, not just the codec's complaint
        raise ValueError(f'COCO annotation file {ann_file} is not a text (UTF-8 JSON) file: {exc}') from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f'COCO annotation file {ann_file} is not valid JSON: {exc.msg} at line '
                         f'{exc.lineno} column {exc.colno}') from None
    if not isinstance(data, dict):
        raise ValueError(f'COCO annotation file {ann_file} holds a JSON {type(data).__name__}; a COCO '
                         'file is an object with "images", "annotations" and "categories" lists')
    for key in ('images', 'categories', 'annotations'):
        if key == 'annotations' and key not in data:
            continue  # image-info files (e.g. test-dev) have no annotations
        if not isinstance(data.get(key), list):
            found = 'is missing' if key not in data else f'is a {type(data[key]).__name__}'
            raise ValueError(f'COCO annotation file {ann_file}: "{key}" {found}; it must be a list')
    return data


def _check_entries(entries: list, keys: Sequence[str], what: str, ann_file: str) -> None:
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f'{ann_file}: {what} #{index} is a {type(entry).__name__}, not an object')
        missing = [k for k in keys if k not in entry]
        if missing:
            name = f'{what} #{index}' + (f' (id {entry["id"]})' if 'id' in entry else '')
            raise ValueError(f'{ann_file}: {name} lacks {", ".join(map(repr, missing))}; '
                             f'a COCO {what} has {", ".join(map(repr, keys))}')
    duplicates = [i for i, n in Counter(e['id'] for e in entries).items() if n > 1]
    if duplicates:
        raise ValueError(f'{ann_file}: {what} ids must be unique; repeated: '
                         f'{listing([str(i) for i in duplicates])}')


class CocoFileReport:
    """What :func:`check_coco_dict` found that COCO conventions skip rather than reject."""

    def __init__(self) -> None:
        self.bad_boxes: List[str] = []  # zero / negative size, no area, or outside the image
        self.other_categories: Counter = Counter()  # category id -> annotations skipped
        self.images_without_boxes: Set[int] = set()


def check_coco_dict(data: dict, ann_file: str, classes: Sequence[str]) -> CocoFileReport:
    """Check the content of a COCO file against the classes the dataset trains.

    Raises:
        ValueError: naming ``ann_file`` and the entry (index and id) for anything mmdet would crash
            on or silently misread.
    """
    images, categories = data['images'], data['categories']
    annotations = data.get('annotations', [])
    _check_entries(images, IMAGE_KEYS, 'image', ann_file)
    _check_entries(categories, CATEGORY_KEYS, 'category', ann_file)
    _check_entries(annotations, ANNOTATION_KEYS, 'annotation', ann_file)
    for index, img in enumerate(images):
        if not (_is_number(img['width']) and _is_number(img['height']) and img['width'] > 0 and img['height'] > 0):
            raise ValueError(f'{ann_file}: image #{index} (id {img["id"]}, {img["file_name"]}) has '
                             f'width={img["width"]!r} height={img["height"]!r}; both must be positive numbers')

    ids_of_name: Dict[str, List[int]] = {}
    for cat in categories:
        ids_of_name.setdefault(cat['name'], []).append(cat['id'])
    absent = [c for c in classes if c not in ids_of_name]
    if absent:
        raise ValueError(f'{ann_file}: the dataset classes {listing(absent)} are not among the file\'s categories '
                         f'({listing(sorted(ids_of_name), len(ids_of_name))}); set metainfo=dict(classes=...) of the '
                         'dataset to names the file has')
    repeated = [c for c in classes if len(ids_of_name[c]) > 1]
    if repeated:
        raise ValueError(f'{ann_file}: categories named {listing(repeated)} appear more than once '
                         f'(ids {[ids_of_name[c] for c in repeated[:MAX_LISTED]]})')
    used_ids = {i for c in classes for i in ids_of_name[c]}
    all_cat_ids = {cat['id'] for cat in categories}
    image_by_id = {img['id']: img for img in images}

    report = CocoFileReport()
    boxes_per_image: Counter = Counter()
    for index, ann in enumerate(annotations):
        name = f'annotation #{index} (id {ann["id"]}, image id {ann["image_id"]})'
        img = image_by_id.get(ann['image_id'])
        if img is None:
            raise ValueError(f'{ann_file}: {name} refers to an image id that no image in the file has')
        if ann['category_id'] not in all_cat_ids:
            raise ValueError(f'{ann_file}: {name} has category_id {ann["category_id"]!r}, which is not '
                             f'one of the file\'s categories (ids {listing(sorted(map(str, all_cat_ids)))})')
        bbox = ann['bbox']
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise ValueError(f'{ann_file}: {name} has bbox {bbox!r}; a COCO bbox is [x, y, width, height], '
                             'four finite numbers')
        if not _is_number(ann['area']):
            raise ValueError(f'{ann_file}: {name} has area {ann["area"]!r}; it must be a finite number')
        if ann.get('ignore', False):
            continue
        if ann['category_id'] not in used_ids:
            report.other_categories[ann['category_id']] += 1
            continue
        x, y, w, h = bbox
        inside_w = min(x + w, img['width']) - max(x, 0)
        inside_h = min(y + h, img['height']) - max(y, 0)
        # the same rule as mmdet's CocoDataset.parse_data_info, which drops these boxes
        if w < 1 or h < 1 or ann['area'] <= 0 or inside_w <= 0 or inside_h <= 0:
            report.bad_boxes.append(f'id {ann["id"]} (image {img["file_name"]}, bbox {bbox}, area {ann["area"]})')
            continue
        boxes_per_image[ann['image_id']] += 1
    report.images_without_boxes = {img['id'] for img in images if not boxes_per_image[img['id']]}
    return report


def coco_api_from_dict(data: dict) -> COCO:
    """mmdet's pycocotools wrapper over an already loaded (and checked) annotation dict."""
    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    coco.img_ann_map, coco.cat_img_map = coco.imgToAnns, coco.catToImgs
    return coco


def _warn(message: str) -> None:
    print_log(message, logger='current', level=logging.WARNING)


def image_read_error(path: str, backend_args: Optional[dict] = None) -> Optional[str]:
    """Why the image at ``path`` cannot be decoded, or None when it can."""
    try:
        img = mmcv.imfrombytes(fileio.get(path, backend_args=backend_args))
    except Exception as exc:  # a missing file, an I/O error or a decoder error: all mean unreadable
        return f'{type(exc).__name__}: {exc}'
    return None if img is not None else 'the bytes do not decode as an image'


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` with its input checked (see the module docstring).

    Takes exactly ``CocoDataset``'s arguments. ``skipped_annotations`` and ``unreadable_images``
    record what was skipped, for tests and reports.
    """

    def load_data_list(self) -> List[dict]:
        data = read_coco_json(self.ann_file, self.backend_args)
        report = check_coco_dict(data, self.ann_file, self.metainfo['classes'])
        self._warn_about(report, data)
        self.skipped_annotations = report
        coco = coco_api_from_dict(data)
        # CocoDataset.load_data_list builds its index with COCOAPI(path): hand it the checked one.
        self.COCOAPI = lambda _path: coco
        try:
            data_list = super().load_data_list()
        finally:
            del self.COCOAPI
        self._check_images_exist(data_list)
        self.unreadable_images: Set[str] = set()
        return data_list

    def _warn_about(self, report: CocoFileReport, data: dict) -> None:
        if report.bad_boxes:
            boxes = listing(report.bad_boxes, sep='; ')  # a box's description holds commas
            _warn(f'{self.ann_file}: skipped {len(report.bad_boxes)} annotation(s) whose box has zero or negative '
                  f'size, no area, or lies outside its image (COCO convention): {boxes}')
        if report.other_categories:
            n = sum(report.other_categories.values())
            ids = ', '.join(f'{c} ({k})' for c, k in sorted(report.other_categories.items()))
            _warn(f'{self.ann_file}: skipped {n} annotation(s) of categories outside the dataset classes '
                  f'(category id (count): {ids})')
        empty = len(report.images_without_boxes)
        if empty:
            filtered = not self.test_mode and (self.filter_cfg or {}).get('filter_empty_gt', False)
            fate = ('left out of training (filter_empty_gt=True, the COCO convention)'
                    if filtered else 'kept (their detections count as false positives)')
            print_log(
                f'{self.ann_file}: {empty} of {len(data["images"])} image(s) have no boxes of the dataset '
                f'classes; {fate}',
                logger='current',
                level=logging.INFO)

    def _check_images_exist(self, data_list: List[dict]) -> None:
        """Listed images that are not on disk, found now rather than in a worker mid-epoch
        (local files only: checking a remote store would cost a request per image)."""
        if self.backend_args or not data_list or '://' in data_list[0]['img_path']:
            return
        missing = [f'{d["img_path"]} (image id {d["img_id"]})' for d in data_list if not osp.isfile(d['img_path'])]
        if missing:
            raise FileNotFoundError(
                f'{len(missing)} of the {len(data_list)} images listed in {self.ann_file} do not exist: '
                f'{listing(missing)}. Check data_root / data_prefix.img of the dataset')

    def prepare_data(self, idx: int):
        try:
            return super().prepare_data(idx)
        except Exception:
            info = self.get_data_info(idx)
            reason = image_read_error(info['img_path'], self.backend_args)
            if reason is None:
                raise  # not an image problem: let it surface
        if info['img_path'] not in self.unreadable_images:
            self.unreadable_images.add(info['img_path'])
            fate = ('replaced by a blank image of its listed size, so its objects count as missed'
                    if self.test_mode else 'skipped; another sample is drawn instead')
            _warn(f'image {info["img_path"]} (image id {info["img_id"]}, listed in {self.ann_file}) cannot be read '
                  f'({reason}); {fate}')
        return self._prepare_blank(info) if self.test_mode else None

    def _prepare_blank(self, info: dict):
        """Run the pipeline after its image loader on a black image of the listed size."""
        transforms = self.pipeline.transforms
        if not transforms or not isinstance(transforms[0], LoadImageFromFile):
            raise ValueError(f'image {info["img_path"]} cannot be read, and the test pipeline does not start with '
                             'LoadImageFromFile, so it cannot be replaced by a blank image')
        shape = (int(info['height']), int(info['width']))
        results = dict(info, img=np.zeros(shape + (3, ), np.uint8), img_shape=shape, ori_shape=shape)
        for transform in transforms[1:]:
            results = transform(results)
            if results is None:
                return None
        return results
