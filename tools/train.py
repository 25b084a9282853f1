"""Train a detection (mmdet), segmentation (mmseg) or classification (mmpretrain) config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import sys

import mmeffnet  # noqa: F401  (registers mmeffnet.*)
import mmeffnet.tool_entry  # noqa: F401  (no pkg_resources noise; mmeffnet:: config bases)
from mmeffnet.config import check_train_config
from mmeffnet.config.hooks import add_reliability_hooks
from mmeffnet.runtime import safe_checkpoint_loading
from mmeffnet.runtime.cli import add_common_args, load_config, run_cli
from mmeffnet.runtime.load_checks import check_checkpoint_fits, check_load_from
from mmeffnet.runtime.resume import resolve_resume


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        help='resume from CKPT, or with no value from the work dir\'s last complete checkpoint '
        '(falling back to the previous good one if it is damaged)')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the LR by (total batch size / auto_scale_lr.base_batch_size)')
    add_common_args(parser)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    cfg = load_config(args, splits=('train', 'val'))
    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'OptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
        elif wrapper != 'AmpOptimWrapper':
            raise ValueError(f'--amp needs optim_wrapper.type OptimWrapper, got {wrapper}')
    if args.auto_scale_lr:
        if not isinstance(cfg.get('auto_scale_lr'), dict) or 'base_batch_size' not in cfg.auto_scale_lr:
            raise KeyError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True
    check_train_config(cfg)
    add_reliability_hooks(cfg)
    resume_from = resolve_resume(args.resume, cfg.work_dir)
    if resume_from is not None:
        cfg.resume, cfg.load_from = True, resume_from
    elif args.resume is not None:
        cfg.resume = False  # nothing to resume yet: start from scratch (mmengine does the same)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if resume_from is not None:
        check_checkpoint_fits(runner.model, resume_from)
    elif cfg.get('load_from'):
        check_load_from(runner.model, cfg.load_from)
    with safe_checkpoint_loading():  # mmengine resumes mmengine checkpoints under torch>=2.6's weights_only
        runner.train()
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
