"""Classification runs with the real tools on generated data: the B0 recipe config trains on an
ImageNet-layout set with ``tools/train.py`` and is evaluated with ``tools/test.py``; the CIFAR
transfer configs train on CIFAR's pickled batches without downloading; the Flowers-102 config reads
``CustomDataset``'s folder layout; bad input (unreadable, grayscale, RGBA images, an empty class
folder, a checkpoint with another number of classes) gets a clear answer."""
import os
import os.path as osp
import textwrap

import cv2
import numpy as np
import pytest
import torch

from classification_support import one_thread  # noqa: F401  (autouse fixture: one thread)
from classification_support import (ONE_THREAD, build_classifier, parse_accuracy, shape_image, small_imagenet_config,
                                    write_cifar, write_imagenet, write_rgb, write_zoo_like_checkpoint)
from conftest import CONFIGS, run_tool

CLS = osp.join(CONFIGS, 'classification')


@pytest.fixture(scope='module')
def imagenet_b0_checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('zoo') / 'efficientnet-b0_in1k.pth')
    state = write_zoo_like_checkpoint(path, 'b0', num_classes=1000)
    return path, state


# ------------------------------------------------------------------------------------------ ImageNet
def test_b0_recipe_trains_with_tools_train_and_evaluates_with_tools_test(tmp_path):
    data = write_imagenet(str(tmp_path / 'imagenet'), train_per_class=2, val_per_class=1)  # 12 / 6 images
    config = small_imagenet_config(str(tmp_path / 'b0_64px.py'), data, img_size=64, batch_size=6)
    work = tmp_path / 'work'
    train = run_tool('tools/train.py', config, '--work-dir', str(work), env=ONE_THREAD)
    train_log = train.stdout + train.stderr
    # The recipe's LR, 0.256 at 4096 images per step, follows the real batch of 6 (auto_scale_lr).
    assert f'Scaling the original LR by {6 / 4096}' in train_log
    assert 'train data checked' in train_log and 'val data checked' in train_log
    val_top1, val_top5 = parse_accuracy(train_log)
    checkpoint = work / 'epoch_1.pth'
    ckpt = torch.load(str(checkpoint), map_location='cpu', weights_only=False)
    assert 'ema_state_dict' in ckpt  # the recipe's model EMA is on
    assert ckpt['meta']['dataset_meta']['classes'] == tuple(data['classes'])

    test = run_tool('tools/test.py', config, str(checkpoint), '--work-dir', str(tmp_path / 'test'), env=ONE_THREAD)
    top1, top5 = parse_accuracy(test.stdout + test.stderr)
    # 6 validation images: accuracies are multiples of 100/6, top-5 of 6 classes misses at most one class.
    for value in (top1, top5):
        assert 0 <= value <= 100 and abs(value * 6 / 100 - round(value * 6 / 100)) < 1e-3, value
    assert top5 >= max(top1, 100 * 5 / 6 - 1e-3)
    # tools/test.py evaluates the saved (EMA) weights with the same pipeline as the run's validation.
    assert (top1, top5) == pytest.approx((val_top1, val_top5), abs=1e-3)


def test_checkpoint_with_another_class_count_is_a_clear_error_naming_the_backbone_only_option(
        tmp_path, imagenet_b0_checkpoint):
    """tools/test.py (and the CAM tool) load checkpoints with check_checkpoint_fits: a 1000-class
    ImageNet checkpoint for a 6-class model is refused with a message that says what to do."""
    from mmeffnet.checkpoint import CheckpointMismatchError
    from mmeffnet.runtime.load_checks import check_checkpoint_fits
    data = write_imagenet(str(tmp_path / 'imagenet'), train_per_class=1, val_per_class=1)
    config = small_imagenet_config(str(tmp_path / 'b0.py'), data)
    model, _ = build_classifier(config)
    with pytest.raises(CheckpointMismatchError) as info:
        check_checkpoint_fits(model, imagenet_b0_checkpoint[0])
    message = str(info.value)
    assert 'head.fc.weight (1000, 1280) vs model (6, 1280)' in message
    assert 'the checkpoint has 1000 classes, the model 6' in message
    assert "prefix='backbone'" in message
    assert 'missing keys' not in message and 'unexpected keys' not in message


# ------------------------------------------------------------------------------------------ transfer
def _cifar_config(tmp_path, name: str, data_root: str, checkpoint: str) -> str:
    """The real transfer config with the generated data, a stand-in ImageNet checkpoint and two steps."""
    path = str(tmp_path / f'small_{name}')
    with open(path, 'w') as f:
        f.write(
            textwrap.dedent(f'''\
            _base_ = [{osp.join(CLS, name)!r}]
            model = dict(backbone=dict(init_cfg=dict(checkpoint={checkpoint!r})))
            data = dict(data_root={data_root!r}, verify_md5=False)  # generated, not the official files
            train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False, dataset=data)
            val_dataloader = dict(batch_size=10, num_workers=0, persistent_workers=False, dataset=data)
            test_dataloader = val_dataloader
            train_cfg = dict(max_iters=2, val_interval=2)
            default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
            '''))
    return path


@pytest.mark.parametrize(
    'name, kind, num_classes',
    [
        ('efficientnet-b0_8xb32-ft_cifar10-224px.py', 'cifar10', 10),
        # The same run with the CIFAR-100 reader and a 100-class head: slow (the fast test below reads
        # the CIFAR-100 pickles through the config's dataset).
        pytest.param('efficientnet-b0_8xb32-ft_cifar100-224px.py', 'cifar100', 100, marks=pytest.mark.slow),
    ])
def test_cifar_config_trains_on_pickled_batches_without_downloading(tmp_path, imagenet_b0_checkpoint, name, kind,
                                                                    num_classes):
    root = str(tmp_path / kind)
    write_cifar(root, kind, train_size=40, test_size=20)
    config = _cifar_config(tmp_path, name, root, imagenet_b0_checkpoint[0])
    proc = run_tool('tools/train.py', config, '--work-dir', str(tmp_path / 'work'), env=ONE_THREAD)
    log = proc.stdout + proc.stderr
    top1, top5 = parse_accuracy(log)  # 20 test images at 224 px
    assert 0 <= top1 <= top5 <= 100
    assert 'download' not in log.lower() or 'never downloads' in log.lower()
    ckpt = torch.load(str(tmp_path / 'work' / 'iter_2.pth'), map_location='cpu', weights_only=False)
    assert ckpt['state_dict']['head.fc.weight'].shape == (num_classes, 1280)
    assert len(ckpt['meta']['dataset_meta']['classes']) == num_classes


@pytest.mark.parametrize('name, kind, num_classes', [
    ('efficientnet-b0_8xb32-ft_cifar10-224px.py', 'cifar10', 10),
    ('efficientnet-b0_8xb32-ft_cifar100-224px.py', 'cifar100', 100),
])
def test_cifar_config_datasets_read_the_pickled_batches(tmp_path, name, kind, num_classes):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    import mmeffnet.datasets.cls_data  # noqa: F401
    init_default_scope('mmpretrain')
    root = str(tmp_path / kind)
    write_cifar(root, kind, train_size=40, test_size=20)
    cfg = Config.fromfile(osp.join(CLS, name))
    for loader, size in (('train_dataloader', 40), ('test_dataloader', 20)):
        ds_cfg = cfg[loader].dataset
        ds_cfg.update(data_root=root, verify_md5=False)
        ds = DATASETS.build(ds_cfg)
        assert len(ds) == size and len(ds.metainfo['classes']) == num_classes
        labels = [int(ds.get_data_info(i)['gt_label']) for i in range(size)]
        per_file = size // 5 if kind == 'cifar10' and size == 40 else size  # CIFAR-10: 5 train batches
        assert labels == [i % 6 for i in range(per_file)] * (size // per_file)  # what write_cifar stored
        assert tuple(ds[0]['inputs'].shape) == (3, 224, 224)  # upsampled to B0's ImageNet size


def test_transfer_config_loads_only_the_backbone_of_the_imagenet_checkpoint(tmp_path, imagenet_b0_checkpoint):
    path, state = imagenet_b0_checkpoint
    model, _ = build_classifier(
        osp.join(CLS, 'efficientnet-b0_8xb32-ft_cifar10-224px.py'), **{'backbone.init_cfg.checkpoint': path})
    model.init_weights()
    ours = model.state_dict()
    backbone = [k for k in state if k.startswith('backbone.') and not k.endswith('num_batches_tracked')]
    assert len(backbone) > 200
    for key in backbone:
        torch.testing.assert_close(ours[key], state[key], msg=key)
    assert ours['head.fc.weight'].shape == (10, 1280)  # a new classifier, TF initialisation
    assert float(ours['head.fc.weight'].abs().max()) <= 1 / np.sqrt(10) + 1e-6


def test_cifar_dataset_names_missing_batches_and_refuses_to_download(tmp_path):
    from mmeffnet.datasets.cls_data import OfflineCIFAR10
    root = str(tmp_path / 'cifar10')
    write_cifar(root, 'cifar10')
    os.remove(osp.join(root, 'cifar-10-batches-py', 'data_batch_3'))
    with pytest.raises(FileNotFoundError, match='lacks data_batch_3'):
        OfflineCIFAR10(data_root=root, split='train', verify_md5=False)
    with pytest.raises(ValueError, match='never downloads'):
        OfflineCIFAR10(data_root=root, download=True)
    write_cifar(str(tmp_path / 'ok'), 'cifar10')
    with pytest.raises(ValueError, match='not the official file'):  # md5 checked unless told otherwise
        OfflineCIFAR10(data_root=str(tmp_path / 'ok'), split='test')


def test_flowers_config_reads_the_custom_dataset_folder_layout(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    import mmeffnet.datasets.cls_data  # noqa: F401
    init_default_scope('mmpretrain')
    rng = np.random.default_rng(0)
    root = tmp_path / 'flowers102'
    classes = [f'class_{i:03d}' for i in range(1, 4)]
    for split, n in (('train', 2), ('test', 1)):
        for label, folder in enumerate(classes):
            for i in range(n):
                write_rgb(str(root / split / folder / f'image_{i}.jpg'), shape_image(rng, label, 80)[0])
    cfg = Config.fromfile(osp.join(CLS, 'efficientnet-b5_8xb8-ft_flowers102-456px.py'))
    for loader in ('train_dataloader', 'test_dataloader'):
        ds_cfg = cfg[loader].dataset
        ds_cfg.data_root = str(root)
        ds = DATASETS.build(ds_cfg)
        assert ds.metainfo['classes'] == tuple(classes)
        assert len(ds) == (6 if loader == 'train_dataloader' else 3)
        sample = ds[0]
        assert tuple(sample['inputs'].shape) == (3, 456, 456)  # B5's ImageNet size


# ------------------------------------------------------------------------------------------ bad input
def test_grayscale_rgba_palette_and_misnamed_images_load_as_three_channels(tmp_path):
    from PIL import Image

    from mmeffnet.datasets.cls_data import LoadImageWithFallback
    rng = np.random.default_rng(0)
    rgb = shape_image(rng, 0, 40)[0]
    paths = {}
    paths['grey'] = str(tmp_path / 'grey.JPEG')
    cv2.imwrite(paths['grey'], cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    paths['rgba'] = str(tmp_path / 'rgba.png')
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]), 'RGBA').save(paths['rgba'])
    paths['palette'] = str(tmp_path / 'palette.png')
    Image.fromarray(rgb).convert('P').save(paths['palette'])
    paths['gif_named_jpeg'] = str(tmp_path / 'gif.JPEG')  # OpenCV cannot decode GIF; Pillow can
    Image.fromarray(rgb).save(paths['gif_named_jpeg'], format='GIF')
    load = LoadImageWithFallback()
    for kind, path in paths.items():
        img = load(dict(img_path=path))['img']
        assert img.shape == (40, 40, 3) and img.dtype == np.uint8, kind
    # RGBA: the colour planes are kept (alpha dropped), in OpenCV's BGR order.
    rgba = load(dict(img_path=paths['rgba']))['img']
    np.testing.assert_array_equal(rgba[..., ::-1], rgb)


@pytest.mark.parametrize('content, reason', [(b'', 'the file is empty'),
                                             (b'not an image at all', 'neither OpenCV nor Pillow')])
def test_unreadable_image_is_an_error_naming_the_file(tmp_path, content, reason):
    from mmeffnet.datasets.cls_data import LoadImageWithFallback
    path = tmp_path / 'n01440764_7.JPEG'
    path.write_bytes(content)
    with pytest.raises(ValueError, match=reason) as info:
        LoadImageWithFallback()(dict(img_path=str(path)))
    assert str(path) in str(info.value)


def test_truncated_jpeg_is_an_error_naming_the_file(tmp_path):
    from mmeffnet.datasets.cls_data import LoadImageWithFallback
    ok, buf = cv2.imencode('.jpg', np.full((64, 64, 3), 200, np.uint8))
    path = tmp_path / 'cut.JPEG'
    path.write_bytes(buf.tobytes()[:40])
    with pytest.raises(ValueError, match='cut.JPEG'):
        LoadImageWithFallback()(dict(img_path=str(path)))


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    """mmpretrain only logs a warning for a class folder without images (and never shows that
    class); ClsDataCheckHook, which every config here runs before training, stops instead."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    from mmeffnet.datasets.cls_data import check_cls_dataset
    init_default_scope('mmpretrain')
    data = write_imagenet(str(tmp_path / 'imagenet'), train_per_class=1, val_per_class=1)
    empty = osp.join(data['root'], 'train', data['wnids'][2])
    for name in os.listdir(empty):
        os.rename(osp.join(empty, name), osp.join(empty, name + '.txt'))  # files of a type not read
    cfg = Config.fromfile(small_imagenet_config(str(tmp_path / 'b0.py'), data))
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    with pytest.raises(ValueError) as info:
        check_cls_dataset(dataset, 'train', num_classes=6)
    message = str(info.value)
    assert f'{data["wnids"][2]}/ (1 file(s) of unsupported type .txt)' in message
    assert '1 class folder(s) hold no image' in message and 'Supported extensions are' in message
    assert any(h.type == 'mmeffnet.ClsDataCheckHook' for h in cfg.custom_hooks)
