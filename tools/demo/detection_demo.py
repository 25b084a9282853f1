"""`make demo`: train THE RetinaNet-EfficientNet-B3 recipe on generated shapes, evaluate it, draw it.

    python tools/demo/detection_demo.py [--out-dir outputs/detection_demo] [--config CONFIG]

1. writes a small COCO-format set of coloured shapes (3 classes) on textured backgrounds:
   train / val splits and one held-out picture (mmeffnet/datasets/synthetic_shapes.py);
2. builds configs/demo/retinanet_effb3_fpn_shapes_demo.py (the recipe with a 112 px input, a
   short schedule and this dataset; no ImageNet weights offline, so from scratch) and
   evaluates the untrained network with mmdet's CocoMetric (pycocotools);
3. trains it in this process with a progress bar and the loss per epoch, evaluates again
   (the bbox AP table, per class), and prints the AP reached next to the untrained one;
4. draws the detections on the held-out picture with mmdet's DetInferencer into
   ``<out-dir>/detections.png``.
Everything runs on the CPU; nothing is downloaded.
"""
import argparse
import copy
import math
import os.path as osp
import shutil
import sys
import time
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.join(REPO, 'tools', 'demo'))

from mmengine.config import DictAction  # noqa: E402

DEFAULT_CONFIG = osp.join(REPO, 'configs', 'demo', 'retinanet_effb3_fpn_shapes_demo.py')
TRAIN_IMAGES, VAL_IMAGES = 160, 48
SCORE_THR = 0.3  # boxes drawn on the held-out picture
HOLDOUT_SCALE = 4  # the held-out picture is drawn 4x larger so that the labels are legible


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--out-dir',
        default='outputs/detection_demo',
        help='where the data, the work dir and detections.png go (replaced on each run)')
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='the demo config')
    parser.add_argument('--train-images', type=int, default=TRAIN_IMAGES, help='size of the generated train split')
    parser.add_argument('--val-images', type=int, default=VAL_IMAGES, help='size of the generated val split')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        metavar='KEY=VALUE',
        help='override config keys (as in tools/train.py)')
    return parser.parse_args()


def write_data(root: str, image_size: int, train_images: int, val_images: int) -> Dict[str, str]:
    """Train and val splits, and the held-out picture (not in either split)."""
    import cv2

    from mmeffnet.datasets.synthetic_shapes import ShapesSpec, render_image, write_shapes_coco

    def spec(num: int, seed: int) -> ShapesSpec:
        return ShapesSpec(
            num_images=num,
            image_size=image_size,
            min_size=image_size // 4,
            max_size=image_size * 9 // 16,
            class_colours=True,
            seed=seed)

    write_shapes_coco(root, 'train', spec(train_images, seed=0))
    write_shapes_coco(root, 'val', spec(val_images, seed=1))
    img, _ = render_image(spec(1, seed=2), 0)
    big = cv2.resize(img, None, fx=HOLDOUT_SCALE, fy=HOLDOUT_SCALE, interpolation=cv2.INTER_CUBIC)
    holdout = osp.join(root, 'holdout.png')
    cv2.imwrite(holdout, big)
    return dict(holdout=holdout)


def build_progress_hook(total_iters: int):
    """A hook that shows a tqdm bar over all training iterations, and the mean loss of each epoch."""
    from mmengine.hooks import Hook
    from tqdm import tqdm

    class DemoProgressHook(Hook):
        priority = 'LOW'

        def __init__(self) -> None:
            self.bar: Optional[tqdm] = None
            self.losses: List[float] = []
            self.epoch_losses: List[float] = []
            self.metrics: Dict[str, float] = {}

        def before_train(self, runner) -> None:
            self.bar = tqdm(total=total_iters, desc='training', unit='it', dynamic_ncols=True, file=sys.stdout)

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            loss = outputs['loss'].item()
            self.losses.append(loss)
            self.epoch_losses.append(loss)
            self.bar.set_postfix(loss=f'{loss:.3f}', lr=f'{runner.optim_wrapper.get_lr()["lr"][0]:.4f}')
            self.bar.update(1)

        def after_train_epoch(self, runner) -> None:
            mean = sum(self.epoch_losses) / max(len(self.epoch_losses), 1)
            self.bar.write(f'epoch {runner.epoch + 1:2d}/{runner.max_epochs}: mean loss {mean:.3f}')
            self.epoch_losses = []

        def after_train(self, runner) -> None:
            self.bar.close()

        def after_val_epoch(self, runner, metrics=None) -> None:
            self.metrics = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}

    return DemoProgressHook()


def evaluate_untrained(runner) -> Dict[str, float]:
    """mmdet's CocoMetric on the val split for the network as initialised, with score threshold 0:
    at the recipe's 0.05 an untrained RetinaNet (class prior 0.01) keeps no box at all."""
    runner.model.init_weights()
    head_cfg = runner.model.bbox_head.test_cfg
    saved, head_cfg.score_thr = head_cfg.score_thr, 0.0
    try:
        metrics = runner.val()
    finally:
        head_cfg.score_thr = saved
    return {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}


class _QuietOptimizerLog:
    """Drops mmengine's per-parameter optimizer lines (hundreds of them) from the demo's output."""

    def filter(self, record) -> bool:
        message = record.getMessage()
        return not (message.startswith('paramwise_options --') or 'since bypass_duplicate=True' in message)


def main() -> int:
    args = parse_args()
    start = time.time()
    from image_demo import detect
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmeffnet  # noqa: F401
    from mmeffnet.config import check_dataset_paths, swap_sync_bn

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    out_dir = osp.abspath(args.out_dir)
    data_root = osp.join(out_dir, 'shapes') + '/'
    shutil.rmtree(out_dir, ignore_errors=True)
    image_size = cfg.image_size[0]
    paths = write_data(data_root, image_size, args.train_images, args.val_images)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = data_root
    cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = data_root + 'annotations/instances_val.json'
    cfg.work_dir = osp.join(out_dir, 'work_dir')
    cfg.default_hooks.logger.interval = 10**6  # the progress bar reports instead
    swap_sync_bn(cfg, distributed=False)
    check_dataset_paths(cfg, ('train', 'val'))
    print(f'data: {args.train_images} train / {args.val_images} val images of {image_size} px, classes '
          f'{", ".join(cfg.classes)}, in {data_root}')

    runner = Runner.from_cfg(cfg)
    runner.logger.addFilter(_QuietOptimizerLog())
    iters_per_epoch = math.ceil(args.train_images / cfg.train_dataloader.batch_size)
    progress = build_progress_hook(cfg.train_cfg.max_epochs * iters_per_epoch)
    runner.register_hook(progress)

    print('\n== the untrained network (score threshold 0, so every box it proposes counts) ==')
    untrained = evaluate_untrained(runner)
    print(f'\n== training: {cfg.train_cfg.max_epochs} epochs of {iters_per_epoch} iterations, batch '
          f'{cfg.train_dataloader.batch_size}, {image_size} px ==')
    runner.train()  # evaluates on the val split after the last epoch (val_interval)
    trained = progress.metrics

    ckpt = osp.join(cfg.work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')
    png = osp.join(out_dir, 'detections.png')
    out = detect(paths['holdout'], copy.deepcopy(cfg), ckpt, score_thr=SCORE_THR)
    import mmcv
    mmcv.imwrite(out['visualization'][..., ::-1].copy(), png)

    losses = progress.losses
    k = max(1, len(losses) // 20)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    ap, ap0 = trained.get('coco/bbox_mAP', 0.0), untrained.get('coco/bbox_mAP', 0.0)
    ap50, ap50_0 = trained.get('coco/bbox_mAP_50', 0.0), untrained.get('coco/bbox_mAP_50', 0.0)
    print('\n== summary ==')
    print(f'loss (mean of {k} iterations): {first:.3f} at the start -> {last:.3f} at the end')
    print(f'bbox mAP@[.5:.95] on {args.val_images} val images: untrained {ap0:.3f} -> trained {ap:.3f}')
    print(f'bbox mAP@.5: untrained {ap50_0:.3f} -> trained {ap50:.3f}')
    print(f'detections on the held-out picture ({len(out["detections"])} with score >= {SCORE_THR}): ' +
          ', '.join(f'{d["class"]} {d["score"]:.2f}' for d in out['detections']))
    print(f'wrote {png}; checkpoint {ckpt}')
    print(f'total time {time.time() - start:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
