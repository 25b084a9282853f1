"""Slow: the B0 recipe config learns (tools/train.py, then tools/test.py) a generated 6-class
ImageNet-layout set to a top-1 far above chance, and the trained model's class activation maps
are on the object.

Threshold: 36 validation images (6 per class), chance 1/6. A classifier that guesses gets 50% or
more (18 of 36) with probability P[Binomial(36, 1/6) >= 18] < 1e-5, and 80% (29 of 36) far less:
it cannot be luck. Measured: 94.4% after 10 epochs, 97.2% / 100% after 20 (two runs), so 80% leaves
room for run-to-run variation.

What differs from the ImageNet recipe, and why: 20 short epochs of 9 steps instead of 350 long
ones, so the warm-up is 1 epoch (not 5) and BN momentum 0.1 (with the recipe's 0.01 the running
statistics after 180 steps still hold 0.99^180 = 16% of their initial values, and evaluation
with them is near chance: measured 16.7% top-1 in a first try); the training crop keeps 35-100%
of the image (not 8-100%) and AutoAugment is off, because on 96 px images of one object the
recipe's crops often cut the object out and AutoAugment's Invert/Solarize/Posterize destroy the
colour that tells the classes apart, which a 180-step run cannot average out. RMSpropTF, the LR
(0.256 scaled to the batch of 16), the 0.97-every-2.4-epochs decay, label smoothing, dropout,
stochastic depth and the EMA evaluation are the recipe's.
"""

import os
from typing import Tuple

import numpy as np
import pytest
import torch

from classification_support import (COLOURS, ONE_THREAD, SHAPES, draw_shape, parse_accuracy, small_imagenet_config,
                                    write_imagenet, write_rgb)
from conftest import run_tool

pytestmark = pytest.mark.slow

THRESHOLD = 80.0  # % top-1; chance is 16.7% (see the module docstring)
# CAM thresholds, out of 96 images (6 classes x 4 quarters x CAM_REPEATS). 24 images (the first
# version) gave rates that moved by 3-4 images between CPUs (17/24 hotter on an AVX-512 machine, 21/24
# here). Measured 2026-12-04 with seeds 0, 1, 2 on a 2-core AVX2 EPYC: hotter 84, 79, 86; hottest
# 61, 66, 65 (peak on the object 42, 42, 35: near its chance level, so only printed).
CAM_REPEATS = 4
HOTTER_MIN = 60  # chance 1/2: P[Binomial(96, 0.5) >= 60] = 0.009; lowest measured 79
HOTTEST_MIN = 40  # chance 1/4: P[Binomial(96, 0.25) >= 40] = 0.0003; lowest measured 61
EXTRA = '''
model = dict(head=dict(num_classes=6), backbone=dict(norm_cfg=dict(momentum=0.1)))
param_scheduler = dict(warmup_epochs=1)
train_cfg = dict(max_epochs=20, val_interval=5)
randomness = dict(seed={seed})  # repeatable on one machine (the thresholds do not rely on it)
train_dataloader['dataset']['pipeline'] = [
    dict(type='mmeffnet.LoadImageWithFallback'),
    dict(type='EfficientNetRandomCrop', scale=img_size, crop_padding=32, interpolation='bicubic',
         crop_ratio_range=(0.35, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
'''


@pytest.fixture(scope='module')
def trained(learning_seed, tmp_path_factory):
    root = tmp_path_factory.mktemp('learn')
    data = write_imagenet(str(root / 'imagenet'), train_per_class=24, val_per_class=6, size=96)
    config = small_imagenet_config(
        str(root / 'b0_96px.py'),
        data,
        img_size=96,
        batch_size=16,
        max_epochs=20,
        extra=EXTRA.replace('{seed}', str(learning_seed)))
    work = root / 'work'
    train = run_tool('tools/train.py', config, '--work-dir', str(work), env=ONE_THREAD, timeout=1500)
    return dict(
        config=config, checkpoint=str(work / 'epoch_20.pth'), log=train.stdout + train.stderr, data=data, root=root)


def test_b0_recipe_learns_far_above_chance(trained):
    val_top1, val_top5 = parse_accuracy(trained['log'])
    test = run_tool(
        'tools/test.py',
        trained['config'],
        trained['checkpoint'],
        '--work-dir',
        str(trained['root'] / 'test'),
        env=ONE_THREAD)
    top1, top5 = parse_accuracy(test.stdout + test.stderr)
    print(f'generated 6-class set, 36 val images: top-1 {top1:.2f}%, top-5 {top5:.2f}% (chance 16.67%)')
    assert (top1, top5) == pytest.approx((val_top1, val_top5), abs=1e-3)
    assert top1 >= THRESHOLD, top1


def cam_on_object_counts(model, cfg, folder, repeats: int = CAM_REPEATS) -> Tuple[int, int, int, int]:
    """(hotter, hottest, peaks, total) over ``6 classes x 4 quarters x repeats`` generated images:
    one object (36 px) on the training images' noise background in one of the four quarters of the
    network's 96 px view, jittered by -4..5 px; CAM of the true class (a 3 x 3 map, 32 px cells).
    ``hotter``: the mean CAM on the object's box exceeds that on the same box in the opposite
    quarter (chance 1/2); ``hottest``: it exceeds that in each of the other three quarters (chance
    1/4); ``peaks``: the CAM's maximum lies on the object's box plus 8 px (reported only: on a 3 x 3
    map the maximum sits at a cell centre, so a few pixels of jitter decide it)."""
    from mmeffnet.analysis.cam import compute_cam
    rng = np.random.default_rng(5)
    quarters = ((0, 0), (1, 1), (0, 1), (1, 0))
    hotter, hottest, peaks, total = 0, 0, 0, 0
    for label in range(len(SHAPES)):
        for qx, qy in quarters:
            for r in range(repeats):
                image = rng.integers(60, 120, (128, 128, 3), dtype=np.uint8)  # the view is its centre 96 px
                # jittered (after the first) within the view: the box stays inside it
                jx, jy = (0, 0) if r == 0 else (int(j) for j in rng.integers(-4, 6, 2))
                x1, y1 = 20 + qx * 52 + jx, 20 + qy * 52 + jy
                draw_shape(image, SHAPES[label], (x1, y1, x1 + 35, y1 + 35), COLOURS[label])
                path = os.path.join(folder, f'{label}_{qx}{qy}_{r}.png')
                write_rgb(path, image)
                cam = compute_cam(model, cfg, path, target=label).cam
                vx, vy = x1 - 16, y1 - 16  # the box's corner in the view (the crop drops 16 px a side)
                others = {
                    (ox, oy): cam[4 + oy * 52:40 + oy * 52, 4 + ox * 52:40 + ox * 52].mean()
                    for ox, oy in quarters if (ox, oy) != (qx, qy)
                }
                on_object = cam[vy:vy + 36, vx:vx + 36].mean()
                hotter += on_object > others[(1 - qx, 1 - qy)]
                hottest += on_object > max(others.values())
                py, px = np.unravel_index(int(cam.argmax()), cam.shape)
                peaks += vx - 8 <= px <= vx + 35 + 8 and vy - 8 <= py <= vy + 35 + 8
                total += 1
    return hotter, hottest, peaks, total


def test_trained_models_cam_is_on_the_object(trained, tmp_path):
    """The CAM of the true class is on the object: each criterion far above its chance level (see
    HOTTER_MIN / HOTTEST_MIN for the chance levels and the counts measured over three seeds)."""
    from mmeffnet.analysis.cam import load_classifier
    torch.set_num_threads(1)
    model, cfg = load_classifier(trained['config'], trained['checkpoint'])
    hotter, hottest, peaks, total = cam_on_object_counts(model, cfg, str(tmp_path))
    print(f'CAM on the object hotter than on the opposite quarter in {hotter}/{total} images, than on '
          f'every other quarter in {hottest}/{total}; peak on the object in {peaks}/{total}')
    assert total == 24 * CAM_REPEATS
    assert hotter >= HOTTER_MIN and hottest >= HOTTEST_MIN, (hotter, hottest, total)
