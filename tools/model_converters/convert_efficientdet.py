"""Convert an effdet (rwightman's ``effdet``) EfficientDet-D0..D7 checkpoint to mmdet with mmeffnet's parts.

    python tools/model_converters/convert_efficientdet.py [--arch d0..d7|tf_efficientdet_dN] [--keep-90-classes]
                                                          [--no-ema] IN OUT

IN is a local file (state dict or checkpoint, .pth or .safetensors); nothing is downloaded. It may be a
released ``tf_efficientdet_d*`` file (bare keys), a DetBench state dict (``model.*``), or a checkpoint of
effdet's training (``{'state_dict': ..., 'state_dict_ema': ...}``: its EMA weights, the ones effdet
evaluates, are taken unless --no-ema). The variant is read from the tensor shapes; --arch must agree.
D6 and D7 have the same shapes: for them --arch (or a file name holding the variant) decides.

OUT holds {'state_dict': {'backbone.*', 'neck.*', 'bbox_head.*'}, 'meta': {source, arch, num_classes,
class_mapping, ...}}, the weights of the mmdet detector that configs/efficientdet/efficientdet_dN_*_coco.py
builds: use it as load_from (or as tools/test.py's CHECKPOINT). By default effdet's 90 COCO outputs
(output i = COCO category id i + 1) become mmdet's 80 CocoDataset classes and the outputs of the 10
unused ids are dropped; --keep-90-classes keeps every output in effdet's order (then set
model.bbox_head.num_classes).
"""
import argparse
import glob
import os.path as osp
import re
import sys
from collections import Counter
from typing import Dict, Optional, Tuple

import torch

from mmeffnet.arch.efficientdet import EFFICIENTDET_ARCHS, resolve_efficientdet_arch
from mmeffnet.checkpoint import ConversionError, atomic_torch_save, extract_state_dict, read_checkpoint
from mmeffnet.converters.from_effdet import (COCO80_IDS, EFFDET_COCO_CLASSES, convert_effdet, describe_effdet,
                                             effdet_variants)
from mmeffnet.runtime.cli import run_cli

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join('configs', 'efficientdet')
#: COCO category ids 1..90 that mmdet's CocoDataset (and COCO's annotations) do not use
UNUSED_COCO_IDS = tuple(i for i in range(1, EFFDET_COCO_CLASSES + 1) if i not in COCO80_IDS)
EMA_KEY = 'state_dict_ema'  # timm's CheckpointSaver, which effdet's train.py uses


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--arch', default=None, help='d0..d7 or tf_efficientdet_dN (default: from the shapes; needed for D6/D7)')
    parser.add_argument(
        '--keep-90-classes',
        action='store_true',
        help="keep effdet's class outputs as they are instead of mapping its 90 COCO outputs to mmdet's 80 classes")
    parser.add_argument('--no-ema', action='store_true', help=f'a training checkpoint: take state_dict, not {EMA_KEY}')
    parser.add_argument('input', metavar='IN', help='effdet checkpoint or state dict (local file)')
    parser.add_argument('output', metavar='OUT', help='converted checkpoint to write')
    return parser.parse_args()


def variant_name(arch: str) -> str:
    """``'d0'``..``'d7'`` for an ``--arch`` value; an unknown name is an error listing the valid ones."""
    try:
        return resolve_efficientdet_arch(arch).name
    except KeyError as exc:
        raise ValueError(f'--arch {arch!r}: {exc.args[0]}') from None


def read_effdet_state(path: str, use_ema: bool) -> Tuple[Dict[str, torch.Tensor], bool]:
    """The tensors of the effdet checkpoint at ``path`` and whether they are its EMA weights."""
    if not osp.isfile(path):  # a local file only: read_checkpoint would fetch a URL
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    checkpoint = read_checkpoint(path)  # an unreadable file is an error naming it
    ema = use_ema and isinstance(checkpoint, dict) and isinstance(checkpoint.get(EMA_KEY), dict)
    return extract_state_dict(checkpoint[EMA_KEY] if ema else checkpoint, path), ema


def _variant_in_name(path: str) -> Optional[str]:
    """The variant a file name states, e.g. ``tf_efficientdet_d7_53-6d1d7a95.pth`` -> ``'d7'``."""
    m = re.search(r'efficientdet[_-](d\d)(?![\dx])', osp.basename(path).lower())
    return m.group(1) if m else None


def choose_variant(state: Dict[str, torch.Tensor], arch: Optional[str], path: str) -> str:
    """The variant to convert ``state`` as: ``--arch`` when given (``convert_effdet`` checks it against
    the shapes), else the one the shapes fit, D6/D7 told apart by the file name."""
    if arch is not None:
        return arch
    variants = effdet_variants(state)
    if len(variants) == 1:
        return variants[0]
    if not variants:
        found = describe_effdet(state)
        raise ConversionError(
            f'its tensors fit no released EfficientDet ({", ".join(EFFICIENTDET_ARCHS)}): backbone '
            f'{found["backbone"]}, BiFPN {found["fpn_channels"]} x {found["fpn_repeats"]} ({found["fusion"]} '
            f'fusion), head depth {found["head_repeats"]}')
    named = _variant_in_name(path)
    if named in variants:
        return named
    raise ConversionError(f'its tensors fit {" and ".join(variants)}, which differ only in input size and anchor '
                          f'scale: pass --arch {" or --arch ".join(variants)}')


def config_for(arch: str) -> str:
    """The config of the variant (relative to the repository), or its name pattern outside one."""
    found = sorted(glob.glob(osp.join(REPO, CONFIG_DIR, f'efficientdet_{arch}_*_coco.py')))
    return osp.relpath(found[0], REPO) if found else osp.join(CONFIG_DIR, f'efficientdet_{arch}_*_coco.py')


def class_mapping_note(coco80: bool, num_classes: int) -> str:
    """How our class ``c`` relates to effdet's outputs, in words (printed and kept in the meta)."""
    if coco80:
        return (f"effdet's {EFFDET_COCO_CLASSES} COCO outputs (output i = category id i + 1) mapped to mmdet's "
                f'{len(COCO80_IDS)} CocoDataset classes in category id order; the outputs of the unused ids '
                f'{", ".join(map(str, UNUSED_COCO_IDS))} are dropped')
    return f"effdet's {num_classes} outputs kept in effdet's order (class c = effdet output c)"


def build_meta(arch: str, num_classes: int, coco80: bool, ema: bool, path: str, config: str) -> dict:
    """The checkpoint's ``meta``: where the weights come from and how to use them. With the COCO
    mapping it names the classes too, as mmdet's ``init_detector`` reads them from there."""
    meta = dict(
        source='effdet',
        arch=arch,
        source_model=f'tf_efficientdet_{arch}',
        num_classes=num_classes,
        class_mapping=class_mapping_note(coco80, num_classes),
        ema=ema,
        config=config,
        source_file=osp.basename(osp.normpath(path)),
        converted_by='mmeffnet')
    if coco80:
        from mmdet.datasets import CocoDataset
        meta['dataset_meta'] = dict(classes=tuple(CocoDataset.METAINFO['classes']))
    return meta


def convert(path: str, arch: Optional[str], coco80: bool, use_ema: bool) -> Tuple[dict, dict]:
    """``(state_dict, meta)`` of the converted checkpoint at ``path``."""
    arch = variant_name(arch) if arch is not None else None  # before reading: a typo fails at once
    state, ema = read_effdet_state(path, use_ema)
    num_classes = describe_effdet(state)['num_classes']
    if coco80 and num_classes != EFFDET_COCO_CLASSES:
        raise ConversionError(f"its head has {num_classes} classes, not effdet's {EFFDET_COCO_CLASSES} COCO "
                              'outputs that are mapped to 80: pass --keep-90-classes to keep them as they are')
    arch = choose_variant(state, arch, path)
    state_dict = convert_effdet(state, arch=arch, coco80=coco80)
    out_classes = len(COCO80_IDS) if coco80 else num_classes
    return state_dict, build_meta(arch, out_classes, coco80, ema, path, config_for(arch))


def main() -> int:
    args = parse_args()
    try:
        state_dict, meta = convert(args.input, args.arch, not args.keep_90_classes, not args.no_ema)
    except ConversionError as exc:  # name the input file when the message does not
        if args.input in str(exc):
            raise
        raise ConversionError(f'{args.input}: {exc}') from None
    atomic_torch_save(dict(state_dict=state_dict, meta=meta), args.output)
    params = EFFICIENTDET_ARCHS[meta['arch']]
    parts = Counter(key.split('.')[0] for key in state_dict)
    print(f'converted effdet checkpoint {args.input} -> {args.output}')
    print(f'  variant: EfficientDet-{meta["arch"]} ({meta["source_model"]}: backbone {params.backbone}, BiFPN '
          f'{params.fpn_channels} x {params.fpn_repeats}, head depth {params.head_repeats}, input '
          f'{params.image_size}, anchor scale {params.anchor_scale})')
    print(f'  weights: {EMA_KEY + " (the EMA weights)" if meta["ema"] else "the model state dict"}')
    print(f'  tensors: {len(state_dict)} ({", ".join(f"{n} {p}.*" for p, n in parts.items())})')
    print(f'  classes: {meta["num_classes"]}: {meta["class_mapping"]}')
    print(f"  config: {meta['config']} with load_from='{args.output}'")
    if args.keep_90_classes:
        print(f'    and model.bbox_head.num_classes={meta["num_classes"]} (the configs have 80)')
    print(f'  e.g. python tools/test.py {meta["config"]} {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
