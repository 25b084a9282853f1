"""Class activation maps of one or more classifiers on an image, side by side (paper Figure 7).

    python tools/analysis/cam.py IMAGE --model CONFIG CHECKPOINT [LABEL] [--model ...]
                                 [--out cam.png] [--target CLASS] [--device cpu]

Each ``--model`` is an mmpretrain classification config (global average pooling + linear head, as
every config in configs/classification/) and its checkpoint; LABEL names its column (default: the
config's file name). The PNG shows the image as the first model's test pipeline crops it, then
each model's CAM over its own input view (red = strongest evidence) with its top-5 classes.
``--target`` (an index or a class name) maps that class for every model instead of its prediction.
"""
import argparse
import os
import os.path as osp
import sys

import cv2

import mmeffnet  # noqa: F401
from mmeffnet.runtime.cli import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='image file')
    parser.add_argument(
        '--model',
        nargs='+',
        action='append',
        required=True,
        metavar='CONFIG CHECKPOINT [LABEL]',
        help='a classification config, its checkpoint and an optional column label; repeat '
        'for several models')
    parser.add_argument('--out', default='cam.png', help='PNG to write (default: cam.png)')
    parser.add_argument('--target', help='class index or name to map (default: each model\'s top-1 class)')
    parser.add_argument('--device', default='cpu', help='torch device (default: cpu)')
    return parser.parse_args()


def _resolve_target(target, class_names):
    if target is None:
        return None
    if target.isdigit():
        return int(target)
    if target in class_names:
        return class_names.index(target)
    raise ValueError(f'--target {target!r} is neither a class index nor one of the class names '
                     f'(e.g. {", ".join(class_names[:5])})')


def main() -> int:
    args = parse_args()
    from mmeffnet.analysis.cam import compute_cam, load_classifier, render_figure
    if not osp.isfile(args.image):
        raise FileNotFoundError(f'image file not found: {args.image}')
    if not args.out.lower().endswith('.png'):
        raise ValueError(f'--out {args.out!r}: the figure is written as PNG; use a .png name')
    results, labels = [], []
    for spec in args.model:
        if len(spec) not in (2, 3):
            raise ValueError(f'--model takes CONFIG CHECKPOINT [LABEL], got {len(spec)} value(s): {spec}')
        config, checkpoint = spec[:2]
        for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
            if not osp.isfile(path):
                raise FileNotFoundError(f'{what} file not found: {path}')
        model, cfg = load_classifier(config, checkpoint, args.device)
        result = compute_cam(model, cfg, args.image, _resolve_target(args.target, model.class_names))
        label = spec[2] if len(spec) == 3 else osp.splitext(osp.basename(config))[0]
        results.append(result)
        labels.append(label)
        top = ', '.join(f'{name} {prob:.3f}' for _, name, prob in result.topk)
        print(f'{label}: CAM of class {result.class_index}; top-{len(result.topk)}: {top}')
    figure = render_figure(results, labels, title=osp.basename(args.image))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    if not cv2.imwrite(args.out, figure[..., ::-1]):
        raise ValueError(f'could not write {args.out}')
    print(f'wrote {args.out} ({figure.shape[1]}x{figure.shape[0]})')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
