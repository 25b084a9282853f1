"""Generated classification data for the tests: ImageNet's folder layout, CIFAR's python pickles and
images of one bright shape on a blank background (where the class evidence is, for CAMs)."""
import os
import os.path as osp
import pickle
import textwrap
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest
import torch

from conftest import CONFIGS

# Classes told apart by shape and colour: a small network learns them in a few dozen steps.
SHAPES = ('square', 'disk', 'triangle', 'cross', 'ring', 'bar')
COLOURS = ((230, 40, 40), (40, 200, 40), (40, 80, 230), (230, 200, 30), (200, 40, 200), (40, 200, 200))  # RGB
WNIDS = ('n01440764', 'n01443537', 'n01484850', 'n01491361', 'n01494475', 'n01496331')  # ImageNet's first
Box = Tuple[int, int, int, int]  # x1, y1, x2, y2 (inclusive)


def draw_shape(canvas: np.ndarray, shape: str, box: Box, colour) -> None:
    x1, y1, x2, y2 = box
    if shape == 'square':
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, -1)
    elif shape == 'disk':
        cv2.ellipse(canvas, ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2), 0, 0, 360, colour, -1)
    elif shape == 'triangle':
        pts = np.array([[(x1 + x2) // 2, y1], [x1, y2], [x2, y2]], np.int32)
        cv2.fillPoly(canvas, [pts], colour)
    elif shape == 'ring':
        centre, axes = ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2)
        cv2.ellipse(canvas, centre, axes, 0, 0, 360, colour, max(2, (x2 - x1) // 6))
    elif shape == 'bar':
        t = max(2, (y2 - y1) // 5)
        cv2.rectangle(canvas, (x1, (y1 + y2) // 2 - t), (x2, (y1 + y2) // 2 + t), colour, -1)
    elif shape == 'cross':
        t = max(2, (x2 - x1) // 4)
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        cv2.rectangle(canvas, (x1, cy - t), (x2, cy + t), colour, -1)
        cv2.rectangle(canvas, (cx - t, y1), (cx + t, y2), colour, -1)
    else:
        raise ValueError(shape)


def shape_image(rng: np.random.Generator,
                label: int,
                size: int = 64,
                blank: bool = False,
                grey: bool = False,
                box_frac: Tuple[float, float] = (0.35, 0.6)) -> Tuple[np.ndarray, Box]:
    """An RGB image of class ``label``'s shape at a random place; ``blank`` gives a flat black
    background (else mild noise), ``grey`` a white shape (the class is then the form alone)."""
    if blank:
        img = np.zeros((size, size, 3), np.uint8)
    else:
        img = rng.integers(60, 120, (size, size, 3), dtype=np.uint8)
    side = int(size * rng.uniform(*box_frac))
    x1, y1 = (int(v) for v in rng.integers(0, size - side, 2))
    box = (x1, y1, x1 + side - 1, y1 + side - 1)
    colour = (255, 255, 255) if grey else COLOURS[label]
    draw_shape(img, SHAPES[label], box, tuple(int(c) for c in colour))
    return img, box


def write_rgb(path: str, rgb: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, rgb[..., ::-1]):
        raise OSError(path)


def write_imagenet(root: str,
                   num_classes: int = 6,
                   train_per_class: int = 8,
                   val_per_class: int = 4,
                   size: int = 64,
                   seed: int = 0) -> Dict[str, object]:
    """ImageNet's layout: ``train/<wnid>/<wnid>_<i>.JPEG``, flat ``val/*.JPEG`` listed with their
    labels in ``meta/val.txt``, and ``meta/classes.txt``. Returns the paths and class names."""
    rng = np.random.default_rng(seed)
    wnids = list(WNIDS[:num_classes])
    for label, wnid in enumerate(wnids):
        for i in range(train_per_class):
            write_rgb(osp.join(root, 'train', wnid, f'{wnid}_{i}.JPEG'), shape_image(rng, label, size)[0])
    lines = []
    for i in range(val_per_class * num_classes):
        label = i % num_classes
        name = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
        write_rgb(osp.join(root, 'val', name), shape_image(rng, label, size)[0])
        lines.append(f'{name} {label}')
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    with open(osp.join(root, 'meta', 'val.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    classes_file = osp.join(root, 'meta', 'classes.txt')
    with open(classes_file, 'w') as f:
        f.write('\n'.join(SHAPES[:num_classes]) + '\n')
    return dict(root=root, wnids=wnids, classes=list(SHAPES[:num_classes]), classes_file=classes_file)


def write_cifar(root: str,
                kind: str = 'cifar10',
                train_size: int = 40,
                test_size: int = 20,
                seed: int = 0) -> List[int]:
    """CIFAR's python archive as extracted under ``root``: ``cifar-10-batches-py/data_batch_1..5,
    test_batch, batches.meta`` or ``cifar-100-python/train, test, meta`` (uint8 rows of 3072 values,
    the red, green and blue planes of a 32x32 image). Images are the class shapes, labels
    ``i % 6`` within each file."""
    rng = np.random.default_rng(seed)

    def batch(n: int) -> Tuple[np.ndarray, List[int]]:
        labels = [i % len(SHAPES) for i in range(n)]
        data = np.stack([shape_image(rng, y, 32)[0].transpose(2, 0, 1).reshape(-1) for y in labels])
        return data.astype(np.uint8), labels

    def dump(path: str, obj: dict) -> None:
        with open(path, 'wb') as f:
            pickle.dump(obj, f)

    if kind == 'cifar10':
        folder = osp.join(root, 'cifar-10-batches-py')
        os.makedirs(folder, exist_ok=True)
        for i in range(1, 6):
            data, labels = batch(train_size // 5)
            dump(osp.join(folder, f'data_batch_{i}'), {'data': data, 'labels': labels})
        data, labels = batch(test_size)
        dump(osp.join(folder, 'test_batch'), {'data': data, 'labels': labels})
        dump(osp.join(folder, 'batches.meta'), {'label_names': [f'c{i}' for i in range(10)]})
    elif kind == 'cifar100':
        folder = osp.join(root, 'cifar-100-python')
        os.makedirs(folder, exist_ok=True)
        for name, n in (('train', train_size), ('test', test_size)):
            data, labels = batch(n)
            dump(osp.join(folder, name), {'data': data, 'fine_labels': labels, 'coarse_labels': labels})
        dump(osp.join(folder, 'meta'), {'fine_label_names': [f'c{i}' for i in range(100)]})
    else:
        raise ValueError(kind)
    return list(range(len(SHAPES)))


def small_imagenet_config(path: str,
                          data: Dict[str, object],
                          img_size: int = 64,
                          batch_size: int = 4,
                          max_epochs: int = 1,
                          extra: str = '') -> str:
    """A config inheriting the real B0 recipe config, at ``img_size`` on the generated data.

    ``extra`` is appended as config text: a top-level ``model = dict(...)`` or ``train_cfg = ...``
    there *replaces* this file's value (mmengine merges only with ``_base_``), so repeat the keys
    set here (``head.num_classes``, ``max_epochs``) or edit items (``train_dataloader['dataset'][...] = ...``).
    """
    base = osp.join(CONFIGS, 'classification', 'efficientnet-b0_8xb256-rmsprop_in1k.py')
    text = textwrap.dedent(f'''\
        _base_ = [{base!r}]
        from mmeffnet.config.fragments.classification import tf_test_pipeline, tf_train_pipeline
        img_size = {img_size}
        data_root = {data['root']!r}
        classes = {data['classes_file']!r}
        model = dict(head=dict(num_classes={len(data['classes'])}))
        data_preprocessor = dict(num_classes={len(data['classes'])})
        train_pipeline = tf_train_pipeline('b0', img_size)
        test_pipeline = tf_test_pipeline('b0', img_size)
        train_dataloader = dict(batch_size={batch_size}, num_workers=0, persistent_workers=False,
                                pin_memory=False,
                                dataset=dict(data_root=data_root, classes=classes, pipeline=train_pipeline))
        val_dataloader = dict(batch_size={batch_size}, num_workers=0, persistent_workers=False,
                              pin_memory=False,
                              dataset=dict(data_root=data_root, classes=classes, pipeline=test_pipeline))
        test_dataloader = val_dataloader
        train_cfg = dict(max_epochs={max_epochs}, val_interval={max_epochs})
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={max_epochs}))
        ''') + extra
    with open(path, 'w') as f:
        f.write(text)
    return path


# The tools run on one thread: with the 2 cores shared by other jobs, torch's default of one
# thread per core makes a B0 step 20-40x slower (thread oversubscription), not faster.
ONE_THREAD = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}


@pytest.fixture(autouse=True)
def one_thread():
    """In-process models on one thread too (see ONE_THREAD); a test module that imports this
    fixture gets it for every test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def parse_accuracy(log: str) -> Tuple[float, float]:
    """The last ``accuracy/top1: X  accuracy/top5: Y`` a tool logged."""
    import re
    found = re.findall(r'accuracy/top1: ([\d.]+)\s+accuracy/top5: ([\d.]+)', log)
    assert found, f'no accuracy/top1 and accuracy/top5 in the log:\n{log[-3000:]}'
    return float(found[-1][0]), float(found[-1][1])


def build_classifier(config: str, **model_overrides):
    """The config's ImageClassifier (SyncBN as BN), built in the mmpretrain scope."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import mmeffnet.models.heads  # noqa: F401
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(config)
    cfg.model.backbone.norm_cfg.type = 'BN'
    model_cfg = cfg.model.to_dict()
    for key, value in model_overrides.items():
        node = model_cfg
        *path, last = key.split('.')
        for part in path:
            node = node[part]
        node[last] = value
    model_cfg['_scope_'] = 'mmpretrain'
    return MODELS.build(model_cfg), cfg


def write_zoo_like_checkpoint(path: str, arch: str = 'b0', num_classes: int = 1000, classes=None) -> dict:
    """A checkpoint in the mmpretrain model-zoo layout (``backbone.*``, ``head.fc.*``) of a
    randomly initialised ``arch`` classifier: the stand-in for an ImageNet checkpoint (nothing is
    downloaded). Returns its state dict."""
    config = osp.join(CONFIGS, 'classification', 'eval', f'efficientnet-{arch}_in1k.py')
    model, _ = build_classifier(config, **{'head.num_classes': num_classes})
    torch.manual_seed(0)
    with torch.no_grad():  # distinct values everywhere, so a loaded tensor is recognisable
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    state = model.state_dict()
    meta = {'dataset_meta': {'classes': list(classes)}} if classes is not None else {}
    torch.save({'state_dict': state, 'meta': meta}, path)
    return state
