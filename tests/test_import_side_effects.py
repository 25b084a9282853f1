"""``import mmeffnet`` (or any of its modules a config can ``custom_imports``) changes nothing global.

A plugin is a guest in the process of whoever imports it: merely parsing a config that imports
mmeffnet must leave mmengine's checkpoint loaders and storage backends, ``torch.load`` and
``torch.nn.init``, mmengine's hook and runner classes, the environment and the root registries as
they were. Registering our own components in the ``mmeffnet`` scope is the one allowed change.

Each check runs in a fresh interpreter (``PROBE`` below): the test process itself has imported
mmeffnet long ago. The probe first imports the libraries mmeffnet builds on (what *they* do on
import is not ours to judge), takes a snapshot, then imports our modules one at a time (those a
config imports first, then every other module of the package) and reports, per module, every
difference from the snapshot taken before it.
"""
import json
import os
import pkgutil
import subprocess
import sys
from typing import Tuple

from conftest import REPO

#: What a config imports with ``custom_imports`` (configs/**), plus every package a registry look-up
#: may import (``locations`` in mmeffnet/registry.py) and the packages our tools and users import;
#: the probe then imports every other module of the package too.
MODULES = (
    'mmeffnet',
    'mmeffnet.models',
    'mmeffnet.models.heads',
    'mmeffnet.engine',
    'mmeffnet.datasets.det_coco',
    'mmeffnet.datasets.seg_checks',
    'mmeffnet.datasets.cls_data',
    'mmeffnet.runtime.checkpoint_hook',
    'mmeffnet.runtime.nonfinite',
    'mmeffnet.runtime.safe_loading',
    'mmeffnet.checkpoint',
    'mmeffnet.converters',
)

#: Modules whose documented job is to set up the process that imports them: not imported.
SETS_UP_ITS_IMPORTER = {
    'mmeffnet.tool_entry': "a command-line tool's process set-up (warning filters, mmeffnet:: config bases)",
}

#: Imported before the first snapshot: the libraries mmeffnet's modules import, so that their own
#: import-time registrations are not counted as ours.
DEPENDENCIES = ('numpy', 'torch', 'torch.distributed', 'mmengine.runner', 'mmengine.hooks', 'mmengine.fileio',
                'mmcv.transforms', 'mmdet.datasets', 'mmdet.models', 'mmdet.evaluation', 'mmseg.datasets',
                'mmseg.models', 'mmpretrain.datasets', 'mmpretrain.models', 'mmpretrain.evaluation')

PROBE = r'''
import importlib, inspect, json, logging, os, sys, warnings

for name in DEPENDENCIES:
    importlib.import_module(name)

import torch
import mmengine.hooks
import mmengine.registry
import mmengine.runner
from mmengine.fileio.backends import registry_utils
from mmengine.registry import Registry
from mmengine.runner.checkpoint import CheckpointLoader


def ident(obj):
    """What an object is, stable within this process: its id and, for reading, its name."""
    name = getattr(obj, '__qualname__', None) or type(obj).__name__
    return f'{getattr(obj, "__module__", "?")}.{name}@{id(obj):x}'


def class_members(classes):
    return {f'{c.__module__}.{c.__qualname__}.{k}': ident(v) for c in classes for k, v in vars(c).items()}


def registries():
    """Every registry reachable from mmengine's roots: path -> (scope, {name: (ident, module)})."""
    found, todo = {}, [(name, reg) for name, reg in vars(mmengine.registry).items() if isinstance(reg, Registry)]
    while todo:
        path, reg = todo.pop()
        found[path] = (reg.scope, {k: (ident(v), getattr(v, '__module__', '') or '')
                                   for k, v in reg._module_dict.items()})
        todo.extend((f'{path}/{scope}', child) for scope, child in reg.children.items())
    return found


def snapshot():
    hook_classes = [c for c in vars(mmengine.hooks).values() if inspect.isclass(c)]
    runner_classes = [c for c in vars(mmengine.runner).values() if inspect.isclass(c)]
    return {
        'checkpoint loader schemes': {p: ident(f) for p, f in CheckpointLoader._schemes.items()},
        'fileio backends': {k: ident(v) for k, v in registry_utils.backends.items()},
        'fileio prefixes': {k: ident(v) for k, v in registry_utils.prefix_to_backends.items()},
        'torch.nn.init': {k: ident(v) for k, v in vars(torch.nn.init).items() if callable(v)},
        'torch': {k: ident(getattr(torch, k)) for k in ('load', 'save')},
        'torch settings': {'default dtype': str(torch.get_default_dtype()),
                           'cudnn.benchmark': torch.backends.cudnn.benchmark,
                           'deterministic algorithms': torch.are_deterministic_algorithms_enabled()},
        'mmengine hook classes': class_members(hook_classes),
        'mmengine runner classes': class_members(runner_classes),
        'os.environ': dict(os.environ),
        'warnings filters': {'filters': repr(warnings.filters)},
        'root logger': {'level': logging.root.level, 'handlers': repr(logging.root.handlers)},
        'registries': registries(),
    }


def differences(before, after):
    out = []
    for part in before:
        b, a = before[part], after[part]
        if part == 'registries':
            for path, (scope, entries) in a.items():
                old = before[part].get(path, (scope, {}))[1]
                for key, (obj, module) in entries.items():
                    if key in old and old[key][0] != obj:
                        out.append(f'registry {path} (scope {scope}): {key} replaced by {obj}')
                    elif key not in old and scope != 'mmeffnet' and (module.startswith('mmeffnet')
                                                                      or path.count('/') == 0):
                        out.append(f'registry {path} (scope {scope}): {key} added ({obj})')
            continue
        if isinstance(b, dict):
            for key in sorted(set(b) | set(a)):
                if b.get(key) != a.get(key):
                    out.append(f'{part}: {key}: {b.get(key)!r} -> {a.get(key)!r}')
        elif b != a:
            out.append(f'{part}: {b!r} -> {a!r}')
    return out


report = {}
for name in MODULES + OTHERS:
    before = snapshot()
    importlib.import_module(name)
    report[name] = differences(before, snapshot())
print('REPORT ' + json.dumps(report))
'''


def other_modules() -> Tuple[str, ...]:
    """Every module of the package not in ``MODULES`` (found here: listing them imports packages)."""
    import mmeffnet
    return tuple(
        sorted(
            m.name for m in pkgutil.walk_packages(mmeffnet.__path__, 'mmeffnet.')
            if '.mim' not in m.name and m.name not in MODULES and m.name not in SETS_UP_ITS_IMPORTER))


def test_importing_mmeffnet_changes_nothing_global():
    code = f'DEPENDENCIES = {DEPENDENCIES!r}\nMODULES = {MODULES!r}\nOTHERS = {other_modules()!r}\n' + PROBE
    env = {k: v for k, v in os.environ.items() if not k.startswith('MMEFFNET_')}
    env['PYTHONPATH'] = REPO
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f'the probe failed:\n{proc.stderr[-4000:]}'
    line = next(line for line in proc.stdout.splitlines() if line.startswith('REPORT '))
    report = json.loads(line[len('REPORT '):])
    assert set(MODULES) <= set(report) and len(report) > len(MODULES), 'the probe imported too little'
    changed = {module: diffs for module, diffs in report.items() if diffs}
    assert not changed, 'importing these modules changed global state:\n' + '\n'.join(
        f'  import {module}:\n' + '\n'.join(f'    {d}' for d in diffs) for module, diffs in changed.items())
