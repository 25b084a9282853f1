"""Detect objects in one image with an mmdet config and checkpoint; write a PNG with boxes and class names.

    python tools/demo/image_demo.py IMAGE CONFIG CHECKPOINT [--out detections.png]
        [--score-thr 0.3] [--device cpu]

Runs mmdet's own ``DetInferencer`` (so it works for any detection config of ours, e.g.
configs/retinanet_effb3_fpn_crop896_8x4_1x_coco.py), draws every detection scoring at least
``--score-thr`` with its class name and score, and prints them, best first.
"""
import argparse
import contextlib
import logging
import os
import os.path as osp
import sys
from typing import Iterator, List

import numpy as np

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # run from anywhere without installing

import mmeffnet  # noqa: E402,F401  (registers mmeffnet.*)
from mmeffnet.runtime import safe_checkpoint_loading  # noqa: E402
from mmeffnet.runtime.cli import draw_in_memory, run_cli  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='input image file')
    parser.add_argument('config', help='mmdet config, e.g. configs/retinanet_effb3_fpn_crop896_8x4_1x_coco.py')
    parser.add_argument('checkpoint', help='checkpoint written by tools/train.py')
    parser.add_argument('--out', default='outputs/detections.png', help='PNG to write')
    parser.add_argument('--score-thr', type=float, default=0.3, help='draw and list detections scoring at least this')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    return parser.parse_args()


class _DropFunctionScopeWarning(logging.Filter):

    def filter(self, record: logging.LogRecord) -> bool:
        return 'in the "function" registry tree' not in record.getMessage()


@contextlib.contextmanager
def _without_mmdet_function_scope_warning() -> Iterator[None]:
    """Silence the one WARNING every mmdet 3.x ``DetInferencer`` logs while it builds its collate
    function: mmdet has no "function" registry of its own, so mmengine's is used, which is the
    right one (open-mmlab/mmdetection#10386; mmdet's own image demo prints it too)."""
    from mmengine.logging import MMLogger
    logger, quiet = MMLogger.get_current_instance(), _DropFunctionScopeWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def detect(image: str, config, checkpoint: str, score_thr: float = 0.3, device: str = 'cpu') -> dict:
    """Run ``DetInferencer`` with ``config`` (a path or a Config); returns ``visualization`` (RGB
    array with the drawn detections) and ``detections`` (dicts with ``label``, ``class``, ``score``,
    ``bbox`` [x1, y1, x2, y2], best first). A ``score_thr`` below the model's own
    ``test_cfg.score_thr`` lowers that too."""
    from mmdet.apis import DetInferencer
    from mmengine.config import Config

    cfg = Config.fromfile(config) if isinstance(config, str) else config
    test_cfg = cfg.model.get('test_cfg') or {}
    if test_cfg.get('score_thr', 0) > score_thr:
        # the model itself drops boxes under its test_cfg.score_thr (0.05 in the recipe): a lower
        # threshold asked for here must reach it, or those boxes never come out
        test_cfg['score_thr'] = score_thr
    draw_in_memory(cfg)
    # mmengine reads the checkpoint (an mmengine one, with its message hub) under torch>=2.6's weights_only
    with _without_mmdet_function_scope_warning(), safe_checkpoint_loading():
        inferencer = DetInferencer(model=cfg, weights=checkpoint, device=device, show_progress=False)
    result = inferencer(image, return_vis=True, no_save_vis=True, pred_score_thr=score_thr)
    pred = result['predictions'][0]
    classes = inferencer.model.dataset_meta['classes']
    detections: List[dict] = [
        dict(label=label, **{'class': classes[label]}, score=score, bbox=bbox)
        for label, score, bbox in zip(pred['labels'], pred['scores'], pred['bboxes']) if score >= score_thr
    ]
    detections.sort(key=lambda d: -d['score'])
    return dict(visualization=result['visualization'][0], detections=detections)


def main() -> int:
    args = parse_args()
    for what, path in (('image', args.image), ('config', args.config), ('checkpoint', args.checkpoint)):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} file not found: {path}')
    if not 0 <= args.score_thr <= 1:
        raise ValueError(f'--score-thr {args.score_thr} must be in [0, 1]')
    if not args.out.lower().endswith('.png'):
        raise ValueError(f'--out {args.out!r}: the picture is written as PNG; use a .png name')

    import mmcv
    out = detect(args.image, args.config, args.checkpoint, args.score_thr, args.device)
    vis = np.ascontiguousarray(out['visualization'][..., ::-1])  # RGB -> BGR for mmcv
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    mmcv.imwrite(vis, args.out)
    dets = out['detections']
    print(f'wrote {args.out} ({vis.shape[1]}x{vis.shape[0]}): {len(dets)} detection(s) with score >= {args.score_thr}')
    for d in dets[:20]:
        x1, y1, x2, y2 = (round(v, 1) for v in d['bbox'])
        print(f'  {d["class"]:<16} {d["score"]:.3f}  [{x1}, {y1}, {x2}, {y2}]')
    if len(dets) > 20:
        print(f'  ... and {len(dets) - 20} more')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
