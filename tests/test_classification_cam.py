"""Class activation maps (paper Figure 7): ``compute_cam`` puts the heat where the class evidence
is, normalised to [0, 1] over the network's input view, with the top-5 classes; the tool writes a
PNG with several models side by side. The learning version (a trained model's CAM on the object)
is in test_classification_learning.py (slow)."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from classification_support import one_thread  # noqa: F401  (autouse fixture: one thread)
from classification_support import (ONE_THREAD, SHAPES, draw_shape, small_imagenet_config, write_imagenet, write_rgb,
                                    write_zoo_like_checkpoint)
from conftest import run_tool


@pytest.fixture(scope='module')
def shapes_setup(tmp_path_factory):
    """A 6-class B0 config at 128 px on the shapes classes, its checkpoint (random weights, class
    names in its meta) and an image with one object in the upper-left quarter of the view."""
    root = tmp_path_factory.mktemp('cam')
    data = write_imagenet(str(root / 'imagenet'), train_per_class=1, val_per_class=1)
    config = small_imagenet_config(str(root / 'b0_128px.py'), data, img_size=128)
    checkpoint = str(root / 'b0_shapes.pth')
    write_zoo_like_checkpoint(checkpoint, 'b0', num_classes=6, classes=data['classes'])
    # 160 px image: the test pipeline keeps the centre 128/160 (16 px margins) and resizes it to 128.
    image = np.zeros((160, 160, 3), np.uint8)
    draw_shape(image, 'disk', (30, 30, 70, 70), (40, 200, 40))
    image_path = str(root / 'disk.png')
    write_rgb(image_path, image)
    box_in_view = (30 - 16, 30 - 16, 70 - 16, 70 - 16)  # x1, y1, x2, y2 after the centre crop (scale 1)
    return dict(config=config, checkpoint=checkpoint, image=image_path, box=box_in_view, classes=data['classes'])


def _plant_evidence(model, cfg, image_path: str, box, target: int) -> None:
    """Make class ``target``'s classifier row the feature of the object's cell minus the mean
    background feature: the evidence for ``target`` is then where the object is."""
    from mmeffnet.analysis.cam import prepare_input
    data = prepare_input(cfg, image_path)
    batch = model.data_preprocessor(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)
    with torch.no_grad():
        feats = model.backbone(batch['inputs'])[-1][0]  # (C, 4, 4) for a 128 px input
        stride = batch['inputs'].shape[-1] // feats.shape[-1]
        cx, cy = (box[0] + box[2]) // 2 // stride, (box[1] + box[3]) // 2 // stride
        mask = torch.ones(feats.shape[1:], dtype=torch.bool)
        mask[cy, cx] = False
        obj, background = feats[:, cy, cx], feats[:, mask].mean(1)
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
        model.head.fc.weight[target] = (obj - background) / (obj - background).norm()
        model.head.fc.bias[target] = 1.0  # the target is the top-1 class too


def test_cam_is_highest_where_the_class_evidence_is(shapes_setup):
    from mmeffnet.analysis.cam import compute_cam, load_classifier
    model, cfg = load_classifier(shapes_setup['config'], shapes_setup['checkpoint'])
    target = shapes_setup['classes'].index('disk')
    _plant_evidence(model, cfg, shapes_setup['image'], shapes_setup['box'], target)
    result = compute_cam(model, cfg, shapes_setup['image'])
    # The input view: the 128 px centre crop, RGB (the disk is green there).
    assert result.image.shape == (128, 128, 3) and result.image.dtype == np.uint8
    x1, y1, x2, y2 = shapes_setup['box']
    assert tuple(result.image[(y1 + y2) // 2, (x1 + x2) // 2]) == pytest.approx((40, 200, 40), abs=3)
    # Normalised heat over the view, peaking on the object, cold far from it.
    assert result.cam.shape == (128, 128) and result.cam.dtype == np.float32
    assert result.cam.min() == pytest.approx(0.) and result.cam.max() == pytest.approx(1.)
    py, px = np.unravel_index(int(result.cam.argmax()), result.cam.shape)
    assert x1 <= px <= x2 and y1 <= py <= y2, ((px, py), shapes_setup['box'])
    inside = result.cam[y1:y2 + 1, x1:x2 + 1].mean()
    far = result.cam[96:, 96:].mean()  # the lower-right quarter holds no object
    assert inside > 0.4 and inside > 3 * far, (inside, far)  # 32 px cells, bilinear upsampling
    # Top-5: the predicted class first, names from the checkpoint, probabilities descending.
    assert result.class_index == target and len(result.topk) == 5
    assert result.topk[0][:2] == (target, 'disk')
    probs = [p for _, _, p in result.topk]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert {name for _, name, _ in result.topk} <= set(SHAPES)


def test_cam_of_a_chosen_class_and_bad_target(shapes_setup):
    from mmeffnet.analysis.cam import compute_cam, load_classifier
    model, cfg = load_classifier(shapes_setup['config'], shapes_setup['checkpoint'])
    result = compute_cam(model, cfg, shapes_setup['image'], target=3)
    assert result.class_index == 3
    with pytest.raises(ValueError, match='not one of the model.s 6 classes'):
        compute_cam(model, cfg, shapes_setup['image'], target=6)


def test_cam_tool_writes_models_side_by_side_with_top5(shapes_setup, tmp_path):
    from mmeffnet.analysis.cam import GAP, PANEL_MIN_SIZE, TITLE_HEIGHT

    # A second model at another input size (64 px), as Figure 7 compares networks of several sizes.
    data = dict(
        root=osp.dirname(osp.dirname(shapes_setup['config'])) + '/imagenet',
        classes=shapes_setup['classes'],
        classes_file=osp.join(osp.dirname(shapes_setup['config']), 'imagenet', 'meta', 'classes.txt'))
    small = small_imagenet_config(str(tmp_path / 'b0_64px.py'), data, img_size=64)
    out = str(tmp_path / 'figure' / 'cam.png')
    proc = run_tool(
        'tools/analysis/cam.py',
        shapes_setup['image'],
        '--model',
        shapes_setup['config'],
        shapes_setup['checkpoint'],
        'B0@128',
        '--model',
        small,
        shapes_setup['checkpoint'],
        'B0@64',
        '--out',
        out,
        env=ONE_THREAD)
    figure = cv2.imread(out)
    assert figure is not None, proc.stdout
    # The input and two CAM panels of PANEL_MIN_SIZE (the 128 px view enlarged), with gaps.
    assert figure.shape[1] == GAP + 3 * (PANEL_MIN_SIZE + GAP)
    assert figure.shape[0] > TITLE_HEIGHT + PANEL_MIN_SIZE + 5 * 18
    for label in ('B0@128', 'B0@64'):
        line = next(row for row in proc.stdout.splitlines() if row.startswith(label + ':'))
        assert 'top-5:' in line and sum(name in line for name in SHAPES) == 5, line
    # The CAM panels are coloured (JET heat), the input panel is the black/green image.
    y0 = TITLE_HEIGHT

    def panel(i):
        return figure[y0:y0 + PANEL_MIN_SIZE, GAP + i * (PANEL_MIN_SIZE + GAP):][:, :PANEL_MIN_SIZE]

    assert panel(0)[..., 0].max() < 80  # input: no blue
    assert panel(1)[..., 0].max() > 100 and panel(2)[..., 0].max() > 100  # JET's cold end is blue
