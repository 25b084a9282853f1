"""What ``tools/train.py`` and ``tools/test.py`` share: the OpenMMLab arguments and config set-up.

The same two tools run detection (mmdet), segmentation (mmseg) and classification (mmpretrain)
configs; the toolbox is the config's ``default_scope``.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Callable, Optional

from mmengine.config import Config, DictAction

from ..config import check_dataset_paths, check_neck_fits_backbone, swap_sync_bn, toolbox_of
from .distributed import prepare_cpu_distributed


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='folder for logs and checkpoints (default: work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. train_dataloader.batch_size=2 '
        'optim_wrapper.optimizer.lr=0.01 (lists: key="[a,b]")')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (tools/dist_train.sh uses pytorch = torchrun)')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)


def load_config(args: argparse.Namespace, splits: tuple) -> Config:
    """Read the config, apply ``--cfg-options`` and ``--work-dir``, adapt SyncBN to this machine,
    check that the neck fits the backbone and that the datasets of ``splits`` exist."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    try:
        cfg = Config.fromfile(args.config)
    except Exception as exc:  # empty, binary, bad syntax, a missing _base_: name the file, not a traceback
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ''
        raise ValueError(f'cannot read config {args.config}: {type(exc).__name__}: {detail}') from exc
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    try:
        toolbox_of(cfg)
    except ValueError as exc:
        raise ValueError(f'config {args.config}: {exc}') from None
    prepare_cpu_distributed(cfg, args.launcher)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    swap_sync_bn(cfg, distributed=args.launcher != 'none')
    check_neck_fits_backbone(cfg)
    check_dataset_paths(cfg, splits)
    return cfg


def enable_visualization(cfg: Config, show_dir: Optional[str], show: bool = False) -> None:
    """Turn on the toolbox's visualization hook so that predictions are painted to ``show_dir``."""
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise KeyError('the config has no default_hooks.visualization; cannot paint predictions')
    vis, toolbox = hooks.visualization, toolbox_of(cfg)
    if toolbox == 'mmpretrain':
        vis.enable = True
        vis.out_dir = show_dir
    else:
        vis.draw = True
        vis.interval = 1
        if toolbox == 'mmdet':
            vis.test_out_dir = show_dir
        elif show_dir:
            cfg.visualizer['save_dir'] = show_dir
    vis.show = show


def draw_in_memory(cfg: Config) -> None:
    """For an inferencer that hands its drawing back (``return_vis``): no storage backends on the
    visualizer, whose LocalVisBackend would otherwise warn on every run that it has no save_dir."""
    if 'visualizer' in cfg:
        cfg.visualizer.vis_backends = []


# Errors that describe bad input (a path, a value, a checkpoint): the message is the whole story.
USER_ERRORS = (FileNotFoundError, ValueError, KeyError, TypeError)


def _without_worker_traceback(message: str) -> str:
    """An error raised in a DataLoader worker arrives as 'Caught X in DataLoader worker process N.'
    plus the worker's whole traceback; keep that first line and the error itself."""
    lines = message.rstrip().splitlines()
    if not lines or not lines[0].startswith('Caught ') or 'Original Traceback' not in message:
        return message
    name = lines[0].split()[1]
    starts = [i for i, line in enumerate(lines) if line.startswith(f'{name}:')]
    return '\n'.join([lines[0]] + lines[starts[-1]:]) if starts else message


def run_cli(main: Callable[[], int]) -> int:
    """Run a tool's ``main``; bad input (and a training stopped by a non-finite loss) ends with one
    clear ``ERROR:`` message and exit code 2 (``MMEFFNET_DEBUG=1`` shows the traceback too)."""
    from ..checkpoint import CheckpointMismatchError, CheckpointReadError
    from .nonfinite import NonFiniteLossError
    try:
        return main()
    except (*USER_ERRORS, CheckpointMismatchError, CheckpointReadError, NonFiniteLossError) as exc:
        if os.environ.get('MMEFFNET_DEBUG') == '1':
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f'ERROR: {_without_worker_traceback(str(message))}', file=sys.stderr)
        print('(set MMEFFNET_DEBUG=1 to see the traceback)', file=sys.stderr)
        return 2
