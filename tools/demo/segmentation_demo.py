"""Segment one image with an mmseg config and checkpoint; write the colour overlay as a PNG.

    python tools/demo/segmentation_demo.py IMAGE CONFIG CHECKPOINT [--out overlay.png]
        [--pred-out labels.png] [--opacity 0.5] [--with-labels] [--device cpu]

Runs mmseg's own ``MMSegInferencer`` (so it works for any of our segmentation configs) and
blends each pixel with its class's palette colour: ``(1 - opacity) * image + opacity * colour``.
It prints the classes found, by share of the image.
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # run from anywhere without installing

import mmeffnet  # noqa: E402,F401  (registers mmeffnet.*)
from mmeffnet.runtime import safe_checkpoint_loading  # noqa: E402
from mmeffnet.runtime.cli import draw_in_memory, run_cli  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='input image file')
    parser.add_argument('config', help='mmseg config, e.g. configs/segmentation/fpn_effb3_4xb4-160k_ade20k-512x512.py')
    parser.add_argument('checkpoint', help='checkpoint written by tools/train.py')
    parser.add_argument('--out', default='outputs/segmentation_overlay.png', help='overlay PNG to write')
    parser.add_argument('--pred-out', help='also write the predicted class indices as a PNG')
    parser.add_argument('--opacity', type=float, default=0.5, help='weight of the class colour, in (0, 1]')
    parser.add_argument('--with-labels', action='store_true', help='write class names on the regions')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    for what, path in (('image', args.image), ('config', args.config), ('checkpoint', args.checkpoint)):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} file not found: {path}')
    if not 0 < args.opacity <= 1:
        raise ValueError(f'--opacity {args.opacity} must be in (0, 1]')
    if not args.out.lower().endswith('.png'):
        raise ValueError(f'--out {args.out!r}: the overlay is written as PNG; use a .png name')

    import mmcv
    from mmengine.config import Config
    from mmseg.apis import MMSegInferencer

    cfg = Config.fromfile(args.config)
    draw_in_memory(cfg)
    with safe_checkpoint_loading():  # mmengine reads an mmengine checkpoint under torch>=2.6's weights_only
        inferencer = MMSegInferencer(model=cfg, weights=args.checkpoint, device=args.device)
    result = inferencer(args.image, return_vis=True, opacity=args.opacity, with_labels=args.with_labels)
    labels = np.asarray(result['predictions'])
    overlay_rgb = result['visualization']
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    mmcv.imwrite(overlay_rgb[..., ::-1], args.out)
    if args.pred_out:
        mmcv.imwrite(labels.astype(np.uint8), args.pred_out)

    classes = inferencer.model.dataset_meta['classes']
    ids, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts)
    found = ', '.join(f'{classes[ids[i]]} {100 * counts[i] / labels.size:.1f}%' for i in order[:10])
    print(f'wrote {args.out} ({overlay_rgb.shape[1]}x{overlay_rgb.shape[0]}); classes: {found}')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
