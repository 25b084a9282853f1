"""Classification data components that turn mmpretrain's silent or cryptic data problems into
errors that name the file, registered in the ``mmeffnet`` scope (``type='mmeffnet.X'``).

- ``mmeffnet.LoadImageWithFallback`` (transform): mmcv's ``LoadImageFromFile`` (OpenCV; grayscale, RGBA,
  palette, CMYK and 16-bit images come out as 3-channel 8-bit BGR) that also decodes through
  Pillow what OpenCV cannot (a GIF saved as ``.jpg``, some TIFFs), and raises a ``ValueError``
  naming the file for an empty, truncated or non-image file instead of
  ``AssertionError: failed to load image``.
- ``mmeffnet.ClsDataCheckHook`` (hook): before training/validation/testing, every class has images (an
  empty class folder is only a log warning in mmpretrain, and the class is then never seen), the
  dataset's class count is the head's ``num_classes``, every label is a class, and every file an
  annotation file lists exists.
- ``mmeffnet.OfflineCIFAR10`` / ``mmeffnet.OfflineCIFAR100`` (datasets): mmpretrain's CIFAR readers (the python
  pickle batches) that never download, name the missing batch files, and can skip the md5 check
  for a re-packed copy (``verify_md5=False``).
"""
import io
import os.path as osp
from typing import Iterator, Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import BaseLoop
from mmpretrain.datasets import CIFAR10, CIFAR100
from mmpretrain.datasets.utils import check_md5

from ..registry import DATASETS, HOOKS, TRANSFORMS
from ..utils import listing


# ---------------------------------------------------------------------------------------- loading
@TRANSFORMS.register_module()
class LoadImageWithFallback(LoadImageFromFile):
    """Load an image with OpenCV, falling back to Pillow; a file neither can decode is a
    ``ValueError`` naming it. Arguments as mmcv's ``LoadImageFromFile`` (``color_type='color'``
    gives 3 channels: grayscale is replicated, alpha is dropped, as TF's ``decode_image(channels=3)``).
    """

    def transform(self, results: dict) -> dict:
        filename = results['img_path']
        try:
            img_bytes = fileio.get(filename, backend_args=self.backend_args)
        except FileNotFoundError:
            raise FileNotFoundError(f'image file not found: {filename}') from None
        if not img_bytes:
            raise ValueError(f'cannot read image {filename}: the file is empty')
        try:
            img = mmcv.imfrombytes(img_bytes, flag=self.color_type, backend=self.imdecode_backend)
        except Exception:  # OpenCV raises on some malformed buffers instead of returning None
            img = None
        if img is None:
            img = self._decode_with_pillow(img_bytes, filename)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def _decode_with_pillow(self, img_bytes: bytes, filename: str) -> np.ndarray:
        from PIL import Image
        try:
            with Image.open(io.BytesIO(img_bytes)) as pil:
                pil.load()  # raises on truncated data instead of returning a partial image
                if self.color_type in ('grayscale', 'unchanged') and pil.mode in ('L', 'I;16', 'I'):
                    return np.asarray(pil.convert('L'))
                rgb = np.asarray(pil.convert('RGB'))
        except Exception as exc:
            raise ValueError(f'cannot read image {filename}: neither OpenCV nor Pillow can decode it '
                             f'({type(exc).__name__}: {exc}); replace or remove the file') from None
        return np.ascontiguousarray(rgb[..., ::-1])  # OpenCV's BGR order, like LoadImageFromFile


# ---------------------------------------------------------------------------------------- checks
def iter_datasets(dataset) -> Iterator:
    """The datasets inside ``ConcatDataset`` / ``RepeatDataset`` / ``ClassBalancedDataset``."""
    stack = [dataset]
    while stack:
        ds = stack.pop()
        if hasattr(ds, 'datasets'):
            stack.extend(ds.datasets)
        elif hasattr(ds, 'dataset'):
            stack.append(ds.dataset)
        else:
            yield ds


def _labels(dataset) -> np.ndarray:
    return np.array([int(dataset.get_data_info(i)['gt_label']) for i in range(len(dataset))], dtype=np.int64)


def _empty_folder_note(root: str, folder: str) -> str:
    path = osp.join(root, folder)
    try:
        names = sorted(fileio.list_dir_or_file(path, list_dir=False, recursive=True))
    except (FileNotFoundError, NotADirectoryError):
        names = []
    if not names:
        return f'{folder}/ (empty)'
    kinds = sorted({osp.splitext(n)[1].lower() or '<no extension>' for n in names})
    return f'{folder}/ ({len(names)} file(s) of unsupported type {", ".join(kinds)})'


def check_cls_dataset(dataset, split: str, num_classes: Optional[int] = None, check_files: bool = True) -> None:
    """Raise a ``ValueError`` / ``FileNotFoundError`` naming what is wrong with ``dataset``:
    classes without images, a class count other than ``num_classes``, labels that are not classes,
    files an annotation file lists that do not exist."""
    name = type(dataset).__name__
    classes = dataset.metainfo.get('classes')
    if num_classes is not None and classes is not None and len(classes) != num_classes:
        raise ValueError(f'{split} dataset ({name}) has {len(classes)} classes ({listing([str(c) for c in classes])}) '
                         f'but the model head has num_classes={num_classes}: set '
                         f'--cfg-options model.head.num_classes={len(classes)} (or give the dataset the '
                         f'classes of the model with `classes=`)')
    if len(dataset) == 0:
        raise ValueError(f'{split} dataset ({name}) has no samples')
    if 'gt_label' in dataset.get_data_info(0):
        _check_labels(dataset, split, classes, num_classes)
    if check_files and getattr(dataset, 'ann_file', ''):
        _check_listed_files(dataset, split)


def _check_labels(dataset, split: str, classes, num_classes: Optional[int]) -> None:
    name = type(dataset).__name__
    labels = _labels(dataset)
    n_cls = len(classes) if classes is not None else num_classes
    if n_cls is not None:
        bad = np.flatnonzero((labels < 0) | (labels >= n_cls))
        if len(bad):
            items = [f'{dataset.get_data_info(int(i)).get("img_path", f"#{i}")} -> {labels[i]}' for i in bad]
            raise ValueError(f'{split} dataset ({name}): {len(bad)} label(s) are not one of the {n_cls} '
                             f'classes 0..{n_cls - 1}: {listing(items)}')
    folder_to_idx = getattr(dataset, 'folder_to_idx', None)
    if folder_to_idx and not getattr(dataset, 'ann_file', ''):
        seen = set(labels.tolist())
        empty = [f for f, i in sorted(folder_to_idx.items(), key=lambda kv: kv[1]) if i not in seen]
        if empty:
            exts = ', '.join(sorted(dataset.extensions))
            notes = [_empty_folder_note(dataset.img_prefix, f) for f in empty]
            raise ValueError(f'{split} dataset ({name}) in {dataset.img_prefix}: {len(empty)} class folder(s) hold no '
                             f'image: {listing(notes)}. Supported extensions are {exts}. Add images, remove the '
                             'folder, or convert the files')


def _check_listed_files(dataset, split: str) -> None:
    name = type(dataset).__name__
    missing = []
    for i in range(len(dataset)):
        path = dataset.get_data_info(i).get('img_path')
        if path and not fileio.exists(path):
            missing.append(path)
    if missing:
        raise FileNotFoundError(f'{split} dataset ({name}): {len(missing)} image(s) listed in '
                                f'{dataset.ann_file} do not exist: {listing(missing)}')


@HOOKS.register_module()
class ClsDataCheckHook(Hook):
    """Run ``check_cls_dataset`` on the train and val datasets before training, and on the
    val/test dataset before validating/testing, against the model head's ``num_classes``.

    Args:
        check_files (bool): check that every file an annotation file lists exists (one ``stat``
            per image: seconds for ImageNet's 50k val images on a local disk). Defaults to True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, check_files: bool = True) -> None:
        self.check_files = check_files

    @staticmethod
    def _num_classes(runner) -> Optional[int]:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        head = getattr(model, 'head', None)
        return getattr(head, 'num_classes', None)

    def _check_loop(self, runner, loop_attr: str, split: str) -> None:
        loop = getattr(runner, loop_attr, None)
        if not isinstance(loop, BaseLoop):
            return
        for ds in iter_datasets(loop.dataloader.dataset):
            check_cls_dataset(ds, split, self._num_classes(runner), self.check_files)
        print_log(f'{split} data checked: classes, labels and files are consistent', logger='current')

    def before_train(self, runner) -> None:
        self._check_loop(runner, '_train_loop', 'train')
        self._check_loop(runner, '_val_loop', 'val')

    def before_val(self, runner) -> None:
        if not getattr(runner, '_train_loop', None) or not isinstance(runner._train_loop, BaseLoop):
            self._check_loop(runner, '_val_loop', 'val')  # a runner.val() run

    def before_test(self, runner) -> None:
        self._check_loop(runner, '_test_loop', 'test')


# ---------------------------------------------------------------------------------------- CIFAR
class _OfflineCIFARMixin:
    """Never download; name the missing files; optionally skip the md5 check."""

    def __init__(self, *args, verify_md5: bool = True, download: bool = False, **kwargs) -> None:
        if download:
            raise ValueError(f'{type(self).__name__} never downloads (download=True given): fetch '
                             f'{self.url} and extract it into data_root, or use mmpretrain\'s '
                             f'{type(self).__name__.replace("Offline", "")}')
        self.verify_md5 = verify_md5
        if not verify_md5:  # instance copies: the class lists keep their checksums
            self.train_list = [[f, None] for f, _ in self.train_list]
            self.test_list = [[f, None] for f, _ in self.test_list]
            self.meta = dict(self.meta, md5=None)
        super().__init__(*args, download=False, **kwargs)

    def load_data_list(self):
        folder = osp.join(self.data_prefix['root'], self.base_folder)
        files = [f for f, _ in self.train_list + self.test_list]
        missing = [f for f in files if not fileio.exists(osp.join(folder, f))]
        if missing:
            raise FileNotFoundError(
                f'{type(self).__name__}: {folder} lacks {", ".join(missing)}. Download {self.url} and '
                f'extract it into {self.data_prefix["root"]} (the archive holds {self.base_folder}/)')
        for f, md5 in self.train_list + self.test_list:
            path = osp.join(folder, f)
            if md5 is not None and not check_md5(path, md5):
                raise ValueError(f'{type(self).__name__}: {path} is not the official file (md5 is not '
                                 f'{md5}); re-download {self.url}, or set verify_md5=False for a '
                                 're-packed copy')
        return super().load_data_list()


@DATASETS.register_module()
class OfflineCIFAR10(_OfflineCIFARMixin, CIFAR10):
    """mmpretrain's ``CIFAR10`` (``data_root/cifar-10-batches-py/data_batch_1..5, test_batch``)
    without downloading. ``verify_md5=False`` accepts batches that are not the official files."""


@DATASETS.register_module()
class OfflineCIFAR100(_OfflineCIFARMixin, CIFAR100):
    """mmpretrain's ``CIFAR100`` (``data_root/cifar-100-python/train, test``) without downloading.
    ``verify_md5=False`` accepts files that are not the official ones."""
