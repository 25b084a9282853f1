"""Evaluate a checkpoint on a detection, segmentation or classification config's test set.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out RESULTS.pkl] [--show-dir DIR]
                                           [--cfg-options k=v ...] [--launcher ...]
"""
import argparse
import os.path as osp
import sys

import mmeffnet  # noqa: F401
from mmeffnet.runtime.checkpointing import check_checkpoint_fits, read_weights
from mmeffnet.runtime.cli import add_common_args, enable_visualization, load_config, run_cli, toolbox_of
from mmeffnet.runtime.config_checks import check_dataloaders


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the predictions to this .pkl file')
    parser.add_argument('--show-dir', help='paint predictions into this folder (under the work dir)')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    add_common_args(parser)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out {args.out!r}: the predictions are dumped as a pickle; use a .pkl name')
    cfg = load_config(args, splits=('test', ))
    check_dataloaders(cfg, ('test', ))
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {args.checkpoint}')
    weights = read_weights(args.checkpoint)  # a bad file fails now, before the model and data are built
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args.show_dir, args.show)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    check_checkpoint_fits(runner.model, args.checkpoint, weights)
    if args.out is not None:
        if toolbox_of(cfg) == 'mmdet':
            from mmdet.evaluation import DumpDetResults as Dump
        else:
            from mmengine.evaluator import DumpResults as Dump
        runner.test_evaluator.metrics.append(Dump(out_file_path=args.out))
    runner.test()
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
