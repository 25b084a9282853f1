"""Evaluate a checkpoint on a detection, segmentation or classification config's test set.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out RESULTS.pkl] [--show-dir DIR]
                                           [--cfg-options k=v ...] [--launcher ...]
"""
import argparse
import os.path as osp
import sys

import mmeffnet  # noqa: F401
import mmeffnet.tool_entry  # noqa: F401  (no pkg_resources noise; mmeffnet:: config bases)
from mmeffnet.checkpoint import read_state_dict
from mmeffnet.config import check_dataloaders, toolbox_of
from mmeffnet.runtime import safe_checkpoint_loading
from mmeffnet.runtime.cli import add_common_args, enable_visualization, load_config, run_cli
from mmeffnet.runtime.load_checks import check_checkpoint_fits


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
    weights = read_state_dict(args.checkpoint)  # a bad file fails now, before the model and data are built
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
    with safe_checkpoint_loading():  # mmengine reads mmengine checkpoints under torch>=2.6's weights_only
        runner.test()
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
