"""Print the versions of the stack: the first thing to paste into a bug report.

Usage: ``python -m mmeffnet.env`` (``--short`` for one line).
"""
import argparse
import importlib
import platform
import sys
from typing import Dict


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), '__version__', 'unknown')
    except Exception as exc:  # a broken install is exactly what this report is for
        return f'not importable ({type(exc).__name__}: {exc})'


def _mmcv_ops() -> str:
    try:
        import torch
        from mmcv.ops import nms
        _, keep = nms(torch.tensor([[0., 0., 1., 1.]]), torch.tensor([1.]), 0.5)
        return 'compiled (nms runs)' if keep.tolist() == [0] else 'compiled but nms is wrong'
    except Exception as exc:
        return f'missing ({type(exc).__name__}: {exc})'


def collect_env() -> Dict[str, str]:
    """Versions of Python, torch, CUDA, mmcv (and its ops), mmengine, mmdet, mmseg, mmpretrain."""
    info = {'python': sys.version.split()[0], 'platform': platform.platform()}
    info['torch'] = _version('torch')
    try:
        import torch
        info['cuda available'] = str(torch.cuda.is_available())
        info['torch cuda build'] = str(torch.version.cuda)
        if torch.cuda.is_available():
            info['gpu'] = torch.cuda.get_device_name(0)
        info['cpu threads'] = str(torch.get_num_threads())
    except Exception:
        pass
    for name in ('torchvision', 'mmcv'):
        info[name] = _version(name)
    info['mmcv ops'] = _mmcv_ops()
    for name, module in (('mmengine', 'mmengine'), ('mmdet', 'mmdet'), ('mmseg', 'mmseg'), ('mmpretrain', 'mmpretrain'),
                         ('mmeffnet', 'mmeffnet'), ('numpy', 'numpy')):
        info[name] = _version(module)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--short', action='store_true', help='one line')
    args = parser.parse_args()
    info = collect_env()
    if args.short:
        keys = ('python', 'torch', 'mmcv', 'mmcv ops', 'mmengine', 'mmdet', 'mmseg', 'mmpretrain')
        print(', '.join(f'{k} {info[k]}' for k in keys))
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(f'{key:<{width}}  {value}')


if __name__ == '__main__':
    main()
