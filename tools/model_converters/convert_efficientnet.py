"""Convert EfficientNet weights from timm, torchvision, mmpretrain/mmdet, lukemelas or TF to mmeffnet.

    python tools/model_converters/convert_efficientnet.py --src {timm,torchvision,mmpretrain,lukemelas,tf}
                                                          [--arch ARCH] [--no-ema] IN OUT

IN is a local file (state dict, checkpoint or .safetensors; for --src tf a checkpoint prefix,
its .index file or its directory); nothing is downloaded. OUT holds
{'state_dict': {'backbone.*', 'head.fc.*'}, 'meta': {source, arch, padding, norm_eps, ...}}: use it as
init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint=OUT) or as load_from of an
mmpretrain ImageClassifier. ARCHS: b0..b8, l2, lite0..lite4, or the source's model name
(tf_efficientnet_b3, efficientnet_b3, efficientnet-b3); inferred from the shapes when omitted.
"""
import argparse
import sys

from mmeffnet.checkpoint import SOURCES, ConversionError, convert_checkpoint, save_converted
from mmeffnet.runtime.cli import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--src', required=True, help=f'where the weights come from: {", ".join(SOURCES)}')
    parser.add_argument('--arch', default=None, help='arch or the source model name (default: from the shapes)')
    parser.add_argument(
        '--no-ema',
        action='store_true',
        help='--src tf: take the raw variables, not their ExponentialMovingAverage shadows')
    parser.add_argument('input', metavar='IN', help='source checkpoint (local file)')
    parser.add_argument('output', metavar='OUT', help='converted checkpoint to write')
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    try:
        converted = convert_checkpoint(args.src, args.input, args.arch, use_ema=not args.no_ema)
    except ConversionError as exc:  # name the input file when the message does not
        if args.input in str(exc):
            raise
        raise ConversionError(f'{args.input}: {exc}') from None
    save_converted(converted, args.output)
    meta = converted.meta
    n_head = sum(k.startswith('head.fc.') for k in converted.state_dict)
    print(f'converted {args.src} checkpoint {args.input} -> {args.output}')
    print(f'  arch: {meta["arch"]}' + (f' (source model {meta["source_model"]})' if 'source_model' in meta else ''))
    print(f'  tensors: {len(converted.state_dict)} ({len(converted.state_dict) - n_head} backbone.*, '
          f'{n_head} head.fc.*' + (f', {meta["num_classes"]} classes' if 'num_classes' in meta else '') + ')')
    if converted.ignored_keys:
        print(f'  not converted (not backbone/classifier): {len(converted.ignored_keys)} keys, e.g. '
              f'{", ".join(converted.ignored_keys[:3])}')
    print(f'  padding to use: {meta["padding"]!r}; BN eps: {meta["norm_eps"]}')
    print(f"  backbone=dict(type='mmeffnet.EfficientNet', arch='{meta['arch']}', padding='{meta['padding']}', "
          f"norm_cfg=dict(type='BN', eps={meta['norm_eps']}, momentum=0.01), "
          f"init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint='{args.output}'))")
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
