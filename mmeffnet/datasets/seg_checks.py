"""Checks on segmentation data that mmseg leaves to chance, registered in the ``mmeffnet`` scope.

mmseg trusts its files: a label PNG of another size than its image is cropped out of step with
it in training and breaks the IoU computation in testing; a label value above the class count
trains a class that does not exist or crashes the loss; in a folder-scanned dataset (ADE20K) an
annotation whose image is missing is silently dropped, and a missing file fails deep inside a
data-loader worker. Our configs use two components that turn each of these into an error naming
the file:

- ``mmeffnet.CheckSegSample`` (transform, right after ``LoadAnnotations``): the label has its image's
  size, and every label value is a class (``0..num_classes-1``) or ``ignore_index``.
- ``mmeffnet.SegDataCheckHook`` (hook): before training or testing starts, every image and label the
  datasets list exists, and no label in a scanned label folder lacks its image.
"""
import os.path as osp
from typing import Iterator, List, Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.hooks import Hook
from mmengine.runner import BaseLoop
from mmseg.datasets import BaseSegDataset

from ..registry import HOOKS, TRANSFORMS
from ..utils import listing


def _shape_wh(shape: Sequence[int]) -> str:
    return f'{shape[1]}x{shape[0]}'


@TRANSFORMS.register_module()
class CheckSegSample(BaseTransform):
    """Check a loaded label map against its image and the class count.

    Place it right after ``LoadAnnotations``, in the train and the test pipeline. The image size
    it compares with is ``ori_shape`` (as read from disk), so it also works after a ``Resize``.
    A sample without ``gt_seg_map`` (inference, e.g. ``MMSegInferencer``) passes unchanged.

    Args:
        num_classes (int): classes of the dataset (150 for ADE20K, 21 for PASCAL VOC).
        ignore_index (int): label value that marks pixels to ignore. Defaults to 255.

    Raises:
        ValueError: naming the label file (and its image) when the sizes differ or when label
            values are neither classes nor ``ignore_index``.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'CheckSegSample: num_classes={num_classes!r} must be a positive int')
        if 0 <= ignore_index < num_classes:
            raise ValueError(f'CheckSegSample: ignore_index={ignore_index} is one of the '
                             f'{num_classes} classes (0..{num_classes - 1}); use a value outside them')
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        seg = results.get('gt_seg_map')
        if seg is None:
            return results
        seg_path = results.get('seg_map_path', '<label map>')
        img_path = results.get('img_path', '<image>')
        image_shape = tuple(results['ori_shape'][:2])
        if tuple(seg.shape[:2]) != image_shape:
            raise ValueError(f'label {seg_path} is {_shape_wh(seg.shape)} (WxH) but its image {img_path} is '
                             f'{_shape_wh(image_shape)}; a label map must have the size of its image')
        values = np.unique(seg)
        bad = values[(values >= self.num_classes) & (values != self.ignore_index)]
        if bad.size:
            raise ValueError(f'label {seg_path} (image {img_path}) has {self._describe(bad, results)}')
        return results

    def _describe(self, bad: np.ndarray, results: dict) -> str:
        """The bad values and the valid ones, as they are stored in the file where possible."""
        last = self.num_classes - 1
        if results.get('label_map'):
            return (f'values {bad.tolist()} (after label_map) that are not classes: valid are '
                    f'0..{last} and {self.ignore_index} (ignore_index)')
        if results.get('reduce_zero_label'):
            # the file stores class k as k + 1 and 0 as 'unlabelled' (reduce_zero_label=True)
            return (f'values {(bad.astype(np.int64) + 1).tolist()} that are not classes: with '
                    f'reduce_zero_label=True valid values are 1..{last + 1} (the classes), 0 '
                    f'(unlabelled) and 255, both ignored')
        return (f'values {bad.tolist()} that are not classes: valid values are 0..{last} '
                f'(the classes) and {self.ignore_index} (ignore_index)')

    def __repr__(self) -> str:
        return f'{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index})'


def _leaf_datasets(dataset) -> Iterator:
    """The datasets inside mmengine's ConcatDataset / RepeatDataset / ClassBalancedDataset."""
    if hasattr(dataset, 'datasets'):
        for child in dataset.datasets:
            yield from _leaf_datasets(child)
    elif hasattr(dataset, 'dataset') and not isinstance(dataset, BaseSegDataset):
        yield from _leaf_datasets(dataset.dataset)
    else:
        yield dataset


def _scan(folder: str, suffix: str) -> List[str]:
    from mmengine import fileio
    return sorted(
        osp.join(folder, f) for f in fileio.list_dir_or_file(folder, list_dir=False, suffix=suffix, recursive=True))


def find_missing_files(dataset: BaseSegDataset) -> List[str]:
    """One line per problem: a listed image or label that does not exist, or (for a dataset
    scanned from its image folder) a label file whose image is missing."""
    problems, listed_labels = [], set()
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        img, seg = info['img_path'], info.get('seg_map_path')
        if seg is not None:
            listed_labels.add(osp.normpath(seg))
        if not osp.isfile(img):
            problems.append(f'image {img} does not exist' + (f' (its label is {seg})' if seg else ''))
        elif seg is not None and not osp.isfile(seg):
            problems.append(f'label {seg} does not exist (its image is {img})')
    img_dir = dataset.data_prefix.get('img_path')
    seg_dir = dataset.data_prefix.get('seg_map_path')
    scanned = not dataset.ann_file or osp.isdir(dataset.ann_file)
    if scanned and img_dir and seg_dir and osp.isdir(seg_dir):
        for seg in _scan(seg_dir, dataset.seg_map_suffix):
            if osp.normpath(seg) not in listed_labels:
                stem = osp.relpath(seg, seg_dir)[:-len(dataset.seg_map_suffix)]
                image = osp.join(img_dir, stem + dataset.img_suffix)
                problems.append(f'image {image} does not exist (its label is {seg})')
    return problems


def check_seg_files(dataset) -> None:
    """Raise ``FileNotFoundError`` listing the missing files of every segmentation dataset
    inside ``dataset`` (other dataset types are left alone)."""
    for ds in _leaf_datasets(dataset):
        if not isinstance(ds, BaseSegDataset):
            continue
        problems = find_missing_files(ds)
        if problems:
            one_per_line = listing(problems, sep='\n  ')
            raise FileNotFoundError(f'{type(ds).__name__} (data_root={ds.data_root!r}, {len(ds)} samples): '
                                    f'{len(problems)} missing file(s):\n  {one_per_line}')


@HOOKS.register_module()
class SegDataCheckHook(Hook):
    """Before a run, check that every file the train/val/test datasets list is on disk.

    It runs before the model weights are initialised (so before any pretrained download) and
    before the first batch, where mmseg would otherwise fail inside a data-loader worker, or not
    at all for an annotation whose image is missing.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        for attr in ('_train_loop', '_val_loop', '_test_loop'):
            loop: Optional[BaseLoop] = getattr(runner, attr, None)
            if isinstance(loop, BaseLoop) and getattr(loop, 'dataloader', None) is not None:
                check_seg_files(loop.dataloader.dataset)
