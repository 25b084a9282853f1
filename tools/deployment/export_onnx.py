"""Export an mmeffnet backbone, a classifier or a detector to ONNX (dynamic batch, height, width).

    # the backbone alone (random or --checkpoint weights), BN folded into the convs, checked in onnxruntime
    python tools/deployment/export_onnx.py backbone --arch b0 --out-indices 3 4 5 --fuse \
        --shape 1 3 224 224 --out work_dirs/b0.onnx --verify
    # a whole model from an mmpretrain / mmdet config ('tensor' mode: logits / raw head maps,
    # no data preprocessor and no box post-processing)
    python tools/deployment/export_onnx.py config configs/retinanet_effb0_fpn_crop512_8x4_1x_coco.py \
        --checkpoint epoch_12.pth --shape 1 3 512 512 --out work_dirs/retinanet_b0.onnx --verify

--verify runs the ONNX model in onnxruntime at the export shape and at a few other sizes (odd ones
included) and fails unless the max abs difference to PyTorch is below --tolerance (1e-4).
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Tuple

import torch
import torch.nn as nn

import mmeffnet  # noqa: F401  (registers mmeffnet.EfficientNet)
from mmeffnet.deployment.onnx import EXPORTERS, TensorOutputs, compare_with_onnxruntime, export_onnx
from mmeffnet.runtime.cli import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        'what',
        choices=['backbone', 'config'],
        help='backbone: mmeffnet.EfficientNet from --arch etc.; config: the model of CONFIG')
    parser.add_argument('config', nargs='?', help='mmpretrain / mmdet config (what=config)')
    parser.add_argument('--arch', default='b0', help='backbone arch (b0..b8, l2, lite0..lite4)')
    parser.add_argument('--out-indices', type=int, nargs='+', default=[6], help='backbone levels to output')
    parser.add_argument('--padding', default='same', help="backbone padding: 'same' or 'symmetric'")
    parser.add_argument(
        '--checkpoint',
        default=None,
        help='weights to load (a backbone checkpoint or the '
        "config model's checkpoint)")
    parser.add_argument('--fuse', action='store_true', help='fold BatchNorm into the convs before export')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=4,
        default=[1, 3, 224, 224],
        metavar=('N', 'C', 'H', 'W'),
        help='example input shape (default 1 3 224 224)')
    parser.add_argument('--static', action='store_true', help='fixed input shape (default: dynamic N, H, W)')
    parser.add_argument('--exporter', default='auto', choices=EXPORTERS, help='ONNX exporter')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--verify', action='store_true', help='compare with PyTorch in onnxruntime')
    parser.add_argument('--tolerance', type=float, default=1e-4, help='max abs difference allowed by --verify')
    args = parser.parse_args(argv)
    if args.what == 'config' and not args.config:
        parser.error('what=config needs the CONFIG path')
    return args


def build_backbone(args: argparse.Namespace) -> nn.Module:
    from mmeffnet import EfficientNet
    init_cfg = None
    if args.checkpoint:
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(f'checkpoint file not found: {args.checkpoint}')
        init_cfg = dict(type='Pretrained', checkpoint=args.checkpoint)
    model = EfficientNet(args.arch, out_indices=tuple(args.out_indices), padding=args.padding, init_cfg=init_cfg)
    model.init_weights()
    return model


def build_from_config(args: argparse.Namespace) -> nn.Module:
    """The config's model in eval mode, forward in 'tensor' mode; SyncBN run as BN."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    from mmeffnet.config import swap_sync_bn, toolbox_of
    from mmeffnet.runtime import safe_checkpoint_loading
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    scope = toolbox_of(cfg)
    swap_sync_bn(cfg, distributed=False)
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    if scope == 'mmdet':
        from mmdet.utils import register_all_modules
        register_all_modules(init_default_scope=False)
    elif scope == 'mmpretrain':
        from mmpretrain.utils import register_all_modules
        register_all_modules(init_default_scope=False)
    backbone = cfg.model.get('backbone')
    if isinstance(backbone, dict):
        backbone['init_cfg'] = None  # no downloads: weights come from --checkpoint only
    model = registry.build(cfg.model)
    if args.checkpoint:
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(f'checkpoint file not found: {args.checkpoint}')
        with safe_checkpoint_loading():  # an mmengine checkpoint under torch>=2.6's weights_only
            load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    return TensorOutputs(model, dict(mode='tensor'))


def fuse_model(model: nn.Module) -> int:
    """Fuse every mmeffnet EfficientNet inside ``model``; returns how many were fused."""
    from mmeffnet import EfficientNet
    nets = [m for m in model.modules() if isinstance(m, EfficientNet)]
    for net in nets:
        net.fuse()
    return len(nets)


def verify_shapes(shape: List[int], dynamic: bool) -> List[Tuple[int, ...]]:
    n, c, h, w = shape
    if not dynamic:
        return [tuple(shape)]
    return [tuple(shape), (n + 1, c, h + 32, w - 32 if w > 64 else w + 64), (1, c, h + 7, w + 13)]


def main(argv=None) -> int:
    args = parse_args(argv)
    model = build_backbone(args) if args.what == 'backbone' else build_from_config(args)
    model.eval()
    if args.fuse and fuse_model(model) == 0:
        raise ValueError('--fuse: the model contains no mmeffnet EfficientNet to fuse')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    names = export_onnx(model, args.out, args.shape, dynamic=not args.static, opset=args.opset, exporter=args.exporter)
    print(f'exported {args.what} -> {args.out} ({len(names)} outputs, '
          f'{"dynamic" if not args.static else "static"} input, example {args.shape})')
    if args.verify:
        diffs = compare_with_onnxruntime(model, args.out, verify_shapes(args.shape, not args.static))
        worst = max(diffs.values())
        for shape, diff in diffs.items():
            print(f'  onnxruntime vs PyTorch, input {list(shape)}: max abs diff {diff:.2e}')
        if worst >= args.tolerance:
            print(f'ERROR: max abs diff {worst:.2e} >= tolerance {args.tolerance:g}', file=sys.stderr)
            return 1
        print(f'verified: max abs diff {worst:.2e} < {args.tolerance:g}')
    return 0


if __name__ == '__main__':
    with torch.no_grad():
        sys.exit(run_cli(main))
