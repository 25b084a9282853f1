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

import numpy as np
import pytest
import torch

from classification_support import (COLOURS, ONE_THREAD, SHAPES, draw_shape, parse_accuracy,
                                    small_imagenet_config, write_imagenet, write_rgb)
from conftest import run_tool

pytestmark = pytest.mark.slow

THRESHOLD = 80.0  # % top-1; chance is 16.7% (see the module docstring)
EXTRA = '''
model = dict(head=dict(num_classes=6), backbone=dict(norm_cfg=dict(momentum=0.1)))
param_scheduler = dict(warmup_epochs=1)
train_cfg = dict(max_epochs=20, val_interval=5)
randomness = dict(seed=0)  # repeatable on one machine (the thresholds do not rely on it)
train_dataloader['dataset']['pipeline'] = [
    dict(type='LoadImageWithFallback'),
    dict(type='EfficientNetRandomCrop', scale=img_size, crop_padding=32, interpolation='bicubic',
         crop_ratio_range=(0.35, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
'''


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('learn')
    data = write_imagenet(str(root / 'imagenet'), train_per_class=24, val_per_class=6, size=96)
    config = small_imagenet_config(str(root / 'b0_96px.py'), data, img_size=96, batch_size=16,
                                   max_epochs=20, extra=EXTRA)
    work = root / 'work'
    train = run_tool('tools/train.py', config, '--work-dir', str(work), env=ONE_THREAD, timeout=1500)
    return dict(config=config, checkpoint=str(work / 'epoch_20.pth'), log=train.stdout + train.stderr,
                data=data, root=root)


def test_b0_recipe_learns_far_above_chance(trained):
    val_top1, val_top5 = parse_accuracy(trained['log'])
    test = run_tool('tools/test.py', trained['config'], trained['checkpoint'], '--work-dir',
                    str(trained['root'] / 'test'), env=ONE_THREAD)
    top1, top5 = parse_accuracy(test.stdout + test.stderr)
    print(f'generated 6-class set, 36 val images: top-1 {top1:.2f}%, top-5 {top5:.2f}% (chance 16.67%)')
    assert (top1, top5) == pytest.approx((val_top1, val_top5), abs=1e-3)
    assert top1 >= THRESHOLD, top1


def test_trained_models_cam_is_on_the_object(trained, tmp_path):
    """One object (36 px) per image on the training images' noise background, in one of the four
    quarters of the network's 96 px view; CAM of the true class (a 3 x 3 map, 32 px cells).

    - The CAM is hotter on the object's box than on the same box in the opposite quarter: by
      chance in half of the images; required in 18 of 24 (P[Binomial(24, 0.5) >= 18] = 0.011).
      Measured 21/24 with one trained model.
    - The CAM's peak lies on the object (its box plus 8 px): by chance in ~30% of the images
      ((52/96)^2); required in 12 of 24 (P[Binomial(24, 0.3) >= 12] = 0.03). Measured 15-20/24.
    """
    from mmeffnet.analysis.cam import compute_cam, load_classifier
    torch.set_num_threads(1)
    model, cfg = load_classifier(trained['config'], trained['checkpoint'])
    rng = np.random.default_rng(5)
    peaks, hotter, total = 0, 0, 0
    for label in range(len(SHAPES)):
        for qx, qy in ((0, 0), (1, 1), (0, 1), (1, 0)):
            image = rng.integers(60, 120, (128, 128, 3), dtype=np.uint8)  # the view is its centre 96 px
            x1, y1 = 20 + qx * 52, 20 + qy * 52
            draw_shape(image, SHAPES[label], (x1, y1, x1 + 35, y1 + 35), COLOURS[label])
            path = str(tmp_path / f'{label}_{qx}{qy}.png')
            write_rgb(path, image)
            result = compute_cam(model, cfg, path, target=label)
            vx, vy = x1 - 16, y1 - 16  # the box's corner in the view (the crop drops 16 px a side)
            ox, oy = 20 + (1 - qx) * 52 - 16, 20 + (1 - qy) * 52 - 16  # the opposite quarter's box
            hotter += result.cam[vy:vy + 36, vx:vx + 36].mean() > result.cam[oy:oy + 36, ox:ox + 36].mean()
            py, px = np.unravel_index(int(result.cam.argmax()), result.cam.shape)
            peaks += vx - 8 <= px <= vx + 35 + 8 and vy - 8 <= py <= vy + 35 + 8
            total += 1
    print(f'CAM hotter on the object than on the opposite quarter in {hotter}/{total} images; '
          f'peak on the object in {peaks}/{total}')
    assert hotter >= 18 and peaks >= 12, (hotter, peaks, total)
