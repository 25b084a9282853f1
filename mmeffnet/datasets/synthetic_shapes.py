"""A small COCO-format detection dataset generated in code: coloured shapes on textured backgrounds.

Used by ``make demo`` and the detection tests, which must run offline and fast. Each image holds
a few filled shapes (one class per shape kind) over a background of smooth colour noise and
stripes; a shape's colour is drawn at random for every object, so the class is told by the
outline, not the colour. Boxes are the tight boxes of the drawn pixels and ``area`` their pixel
count, as in COCO. The layout is the standard one:

    <root>/annotations/instances_<split>.json
    <root>/<split>/000000.png ...
"""
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

SHAPES = ('circle', 'square', 'triangle', 'cross')
# a palette for drawing predictions of these classes (RGB)
PALETTE = [(220, 20, 60), (0, 130, 255), (0, 200, 80), (255, 170, 0)]


@dataclass(frozen=True)
class ShapesSpec:
    """How a split is generated; every image is a function of (seed, index)."""

    num_images: int
    image_size: int = 64
    classes: Tuple[str, ...] = SHAPES[:3]
    min_objects: int = 1
    max_objects: int = 3
    min_size: int = 16  # side of an object's box, in pixels
    max_size: int = 36
    seed: int = 0
    # True: each class has its own hue (jittered), an easier task that a detector trained from
    # scratch learns in a few hundred iterations; False: random colours, only the outline tells
    class_colours: bool = False

    def __post_init__(self) -> None:
        unknown = [c for c in self.classes if c not in SHAPES]
        if unknown or not self.classes:
            raise ValueError(f'ShapesSpec.classes={self.classes!r}: each must be one of {SHAPES}')
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f'need 1 <= min_objects ({self.min_objects}) <= max_objects ({self.max_objects})')
        if not 4 <= self.min_size <= self.max_size <= self.image_size:
            raise ValueError(f'need 4 <= min_size ({self.min_size}) <= max_size ({self.max_size}) '
                             f'<= image_size ({self.image_size})')


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour noise plus faint stripes: texture the detector must learn to ignore."""
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 12)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    img += stripes[..., None] * rng.uniform(8, 25) + rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255)


def _shape_mask(kind: str, size: int, box: Tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    x, y, side = box
    mask = np.zeros((size, size), np.uint8)
    if kind == 'circle':
        r = side / 2
        cv2.circle(mask, (int(round(x + r)), int(round(y + r))), int(round(r)), 1, -1, cv2.LINE_8)
    elif kind == 'square':
        cv2.rectangle(mask, (x, y), (x + side - 1, y + side - 1), 1, -1)
    elif kind == 'triangle':
        apex = x + int(rng.integers(0, side))
        pts = np.array([[apex, y], [x, y + side - 1], [x + side - 1, y + side - 1]], np.int32)
        cv2.fillPoly(mask, [pts], 1)
    else:  # cross
        bar = max(2, side // 3)
        off = (side - bar) // 2
        cv2.rectangle(mask, (x + off, y), (x + off + bar - 1, y + side - 1), 1, -1)
        cv2.rectangle(mask, (x, y + off), (x + side - 1, y + off + bar - 1), 1, -1)
    return mask.astype(bool)


def _contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - under).sum() > 150:
            return colour
    return 255 - under


def render_image(spec: ShapesSpec, index: int) -> Tuple[np.ndarray, List[dict]]:
    """Image ``index`` of ``spec`` (BGR uint8) and its objects: ``label``, ``bbox`` [x, y, w, h], ``area``."""
    rng = np.random.default_rng([spec.seed, index])
    size = spec.image_size
    img = _background(rng, size)
    occupied = np.zeros((size, size), bool)
    objects = []
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        for _attempt in range(30):  # objects may touch, but not overlap
            side = int(rng.integers(spec.min_size, spec.max_size + 1))
            x, y = (int(v) for v in rng.integers(0, size - side + 1, size=2))
            if not occupied[y:y + side, x:x + side].any():
                break
        else:
            continue
        label = int(rng.integers(len(spec.classes)))
        mask = _shape_mask(spec.classes[label], size, (x, y, side), rng)
        if spec.class_colours:
            rgb = np.array(PALETTE[SHAPES.index(spec.classes[label])], np.float32)
            img[mask] = np.clip(rgb[::-1] + rng.uniform(-25, 25, size=3), 0, 255)  # BGR
        else:
            img[mask] = _contrasting_colour(rng, img[mask].mean(axis=0))
        occupied[y:y + side, x:x + side] = True
        ys, xs = np.nonzero(mask)
        x0, y0 = int(xs.min()), int(ys.min())
        objects.append(
            dict(label=label, bbox=[x0, y0, int(xs.max()) - x0 + 1,
                                    int(ys.max()) - y0 + 1], area=int(mask.sum())))
    return img.round().astype(np.uint8), objects


def write_shapes_coco(root: str, split: str, spec: ShapesSpec) -> Dict[str, str]:
    """Write ``spec``'s images and their COCO json under ``root``; returns the paths written.

    Category ids are 1..len(classes) (COCO starts at 1); image and annotation ids start at 1.
    """
    img_dir = osp.join(root, split)
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(osp.dirname(ann_file), exist_ok=True)
    images, annotations = [], []
    for index in range(spec.num_images):
        img, objects = render_image(spec, index)
        file_name = f'{index:06d}.png'
        cv2.imwrite(osp.join(img_dir, file_name), img)
        image_id = index + 1
        images.append(dict(id=image_id, file_name=file_name, width=spec.image_size, height=spec.image_size))
        for obj in objects:
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=obj['label'] + 1,
                    bbox=obj['bbox'],
                    area=obj['area'],
                    iscrowd=0))
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(spec.classes)]
    with open(ann_file, 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return dict(ann_file=ann_file, img_dir=img_dir)


def shapes_metainfo(classes: Sequence[str] = SHAPES[:3]) -> dict:
    """``metainfo`` for a dataset of these classes (names and drawing colours)."""
    return dict(classes=tuple(classes), palette=[PALETTE[SHAPES.index(c)] for c in classes])
