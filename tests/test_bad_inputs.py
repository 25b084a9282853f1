"""Bad input, tried systematically: a catalogue of broken files and absurd values fed to every entry
point (configs, ``tools/train.py``, ``tools/test.py``, the weight converter, the detection recipe's
dataset loader and pipeline). Each entry must end with one ``ERROR:`` message naming the bad thing
and exit code 2 without a traceback, or (corrupt images) a documented skip: a warning naming the
image while the run goes on. No entry may execute pickled code: every checkpoint-shaped file of
the catalogue that is a pickle carries a payload that would create a marker file when unpickled.

The tools run in this process (``run_cli(main)`` with ``sys.argv`` set: the exit code is what
``sys.exit`` would get), which keeps each of the 68 entries within seconds; two entries also run as
real processes to show the same behaviour at the process boundary.
``test_catalogue_summary`` prints the catalogue's size and results (``pytest -s``).
"""
import contextlib
import io
import json
import os
import os.path as osp
import pickle
import re
import runpy
import shutil
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np
import pytest
import torch

from conftest import REPO, run_tool
from reliability_support import RECIPE, make_shapes_data, recipe_overrides, tool_env

TOOLS = {
    'train': 'tools/train.py',
    'test': 'tools/test.py',
    'convert': 'tools/model_converters/convert_efficientnet.py'
}


# --- hostile and broken files --------------------------------------------------------------------
class _Exploit:
    """Unpickling this runs ``open(marker, 'w')``: the file appears iff pickled code executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f'open({self.marker!r}, "w").write("pwned")', ))


def write_torch_exploit(path: str, marker: str) -> str:
    """A torch.save zip whose pickle would execute code (a checkpoint-looking dict)."""
    torch.save(
        {
            'state_dict': {
                'backbone.w': torch.zeros(1)
            },
            'meta': dict(epoch=1, iter=4),
            'payload': _Exploit(marker)
        }, path)
    return path


def write_raw_pickle_exploit(path: str, marker: str) -> str:
    """A legacy (non-zip) pickle that would execute code."""
    with open(path, 'wb') as f:
        pickle.dump({'state_dict': _Exploit(marker)}, f)
    return path


def write_random_bytes(path: str, n: int = 4096) -> str:
    with open(path, 'wb') as f:
        f.write(np.random.default_rng(0).bytes(n))
    return path


def write_zip(path: str) -> str:
    """A valid zip archive that is not a PyTorch checkpoint."""
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('readme.txt', 'not a checkpoint')
        z.writestr('data/0', b'\x00' * 64)
    return path


def write_truncated(path: str, source: str) -> str:
    data = open(source, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    return path


def write_empty(path: str) -> str:
    open(path, 'wb').close()
    return path


def corrupt_jpeg_bytes() -> bytes:
    ok, buf = cv2.imencode('.jpg', np.full((64, 64, 3), 128, np.uint8))
    assert ok
    return bytes(buf[:200])  # the header survives, the entropy-coded data is cut


def corrupt_png_bytes() -> bytes:
    return b'\x89PNG\r\n\x1a\n' + np.random.default_rng(1).bytes(300)  # the signature, then noise


# --- running a tool in this process --------------------------------------------------------------
_TOOL_MODULES: Dict[str, dict] = {}


def run_in_process(tool: str, argv: List[str]) -> Tuple[int, str]:
    """(exit code, stderr) of ``python TOOL ARGV`` run as ``run_cli(main)`` in this process."""
    if tool not in _TOOL_MODULES:  # the tool's module, loaded once (not as __main__: nothing runs)
        _TOOL_MODULES[tool] = runpy.run_path(osp.join(REPO, TOOLS[tool]), run_name=f'catalogue_{tool}')
    module = _TOOL_MODULES[tool]
    err = io.StringIO()
    saved_argv = sys.argv
    sys.argv = [TOOLS[tool], *argv]
    try:
        with contextlib.redirect_stderr(err):
            try:
                code = module['run_cli'](module['main'])
            except SystemExit as exc:  # argparse usage errors
                code = exc.code
    finally:
        sys.argv = saved_argv
    return code, err.getvalue()


# --- the catalogue --------------------------------------------------------------------------------
@dataclass
class Ctx:
    tmp: str
    data: str  # a fresh copy of the shapes set (cases may damage it)
    marker: str  # appears if pickled code ran
    good_ckpt: str  # a complete checkpoint of the recipe model (test-scale)
    other_model_ckpt: str  # a complete checkpoint of another model (B1 backbone + head)

    def path(self, name: str) -> str:
        return osp.join(self.tmp, name)

    def recipe(self, **extra: str) -> List[str]:
        return recipe_overrides(self.data, max_epochs=1, extra={'train_cfg.val_interval': '100', **extra})

    def train(self, *args: str, config: str = RECIPE, **extra: str) -> List[str]:
        return [config, '--work-dir', self.path('work'), *args, *self.recipe(**extra)]

    def test(self, checkpoint: str, *args: str, config: str = RECIPE, **extra: str) -> List[str]:
        return [config, checkpoint, '--work-dir', self.path('work'), *args, *self.recipe(**extra)]

    def ann(self, split: str = 'train') -> str:
        return osp.join(self.data, 'annotations', f'instances_{split}.json')

    def edit_ann(self, edit: Callable[[dict], object], split: str = 'train') -> None:
        """Apply ``edit`` (in place) to the annotation file of ``split``."""
        with open(self.ann(split)) as f:
            data = json.load(f)
        edit(data)  # in place
        with open(self.ann(split), 'w') as f:
            json.dump(data, f)


@dataclass
class Case:
    id: str
    entry: str  # which entry point the catalogue counts it under
    tool: str
    make: Callable[[Ctx], Tuple[List[str], List[str]]]  # -> argv, fragments the message must hold
    outcome: str = 'error'  # or 'skip': exit 0 with a warning holding the fragments
    slow: bool = False  # trains or tests for real (the fast dataset-level check is below)


CASES: List[Case] = []


def case(entry: str, tool: str, outcome: str = 'error', slow: bool = False):

    def register(make):
        CASES.append(Case(make.__name__, entry, tool, make, outcome, slow))
        return make

    return register


# configs, through tools/train.py and tools/test.py
@case('config', 'train')
def config_missing(c):
    return [c.path('nope.py')], [f'config file not found: {c.path("nope.py")}']


@case('config', 'train')
def config_empty(c):
    path = write_empty(c.path('empty.py'))
    return [path], [f'config {path}', 'default_scope=None', 'mmdet, mmseg or mmpretrain']


@case('config', 'test')
def config_random_bytes(c):
    path = write_random_bytes(c.path('noise.py'))
    return [path, c.good_ckpt], [f'cannot read config {path}']


@case('config', 'train')
def config_syntax_error(c):
    path = c.path('broken.py')
    open(path, 'w').write(open(RECIPE).read()[:900])  # cut in the middle of a statement
    return [path], [f'cannot read config {path}', 'SyntaxError']


@case('config', 'train')
def config_truncated_json(c):
    path = c.path('cfg.json')
    open(path, 'w').write('{"default_scope": "mmdet", "model": {"type": "Retina')
    return [path], [f'cannot read config {path}']


@case('config', 'train')
def config_missing_base(c):
    path = c.path('child.py')
    open(path, 'w').write("_base_ = ['./no_such_base.py']\n")
    return [path], [f'cannot read config {path}', 'no_such_base.py']


@case('config', 'train')
def config_unknown_scope(c):
    path = c.path('scope.py')
    open(path, 'w').write(f"_base_ = [{RECIPE!r}]\ndefault_scope = 'mmfoo'\n")
    return [path], [f'config {path}', "default_scope='mmfoo'", "('mmdet', 'mmseg', 'mmpretrain')"]


@case('config', 'train')
def negative_lr(c):
    return c.train(**{'optim_wrapper.optimizer.lr': '-0.1'}), ['optim_wrapper.optimizer.lr=-0.1', 'positive']


@case('config', 'train')
def nan_lr(c):
    return c.train(**{'optim_wrapper.optimizer.lr': 'nan'}), ['optim_wrapper.optimizer.lr=nan', 'positive']


@case('config', 'train')
def batch_size_zero(c):
    return c.train(**{'train_dataloader.batch_size': '0'}), ['train_dataloader.batch_size=0', 'integer >= 1']


@case('config', 'test')
def eval_batch_size_zero(c):
    return c.test(c.good_ckpt, **{'test_dataloader.batch_size': '0'}), ['test_dataloader.batch_size=0']


@case('config', 'train')
def negative_workers(c):
    return c.train(**{'train_dataloader.num_workers': '-2'}), ['train_dataloader.num_workers=-2', 'integer >= 0']


@case('config', 'train')
def zero_epochs(c):
    return c.train(**{'train_cfg.max_epochs': '0'}), ['train_cfg.max_epochs=0', 'integer >= 1']


@case('config', 'train')
def momentum_above_one(c):
    return c.train(**{'optim_wrapper.optimizer.momentum': '1.5'}), ['momentum=1.5', '[0, 1]']


@case('config', 'train')
def amp_without_accelerator(c):
    from mmengine.device import get_device
    if get_device() != 'cpu':
        pytest.skip(f'this machine has a {get_device()} device: --amp is valid here')
    return c.train('--amp'), [
        "optim_wrapper.type='AmpOptimWrapper' (--amp)", 'CUDA, NPU, MLU or MUSA', 'train without --amp'
    ]


@case('config', 'train')
def negative_weight_decay(c):
    return c.train(**{'optim_wrapper.optimizer.weight_decay': '-1'}), ['weight_decay=-1']


@case('config', 'train')
def checkpoint_interval_zero(c):
    return c.train(**{'default_hooks.checkpoint.interval': '0'}), ['default_hooks.checkpoint.interval=0', '-1']


@case('config', 'train')
def unknown_arch(c):
    return c.train(**{'model.backbone.arch': 'b42'}), ["unknown EfficientNet arch 'b42'", 'b0']


@case('config', 'train')
def out_indices_out_of_range(c):
    return c.train(**{'model.backbone.out_indices': '(3,4,9)'}), ['out_indices contains 9', 'out of range']


@case('config', 'train')
def drop_path_rate_above_one(c):
    return c.train(**{'model.backbone.drop_path_rate': '1.5'}), ['drop_path_rate=1.5', '[0, 1)']


@case('config', 'train')
def frozen_stages_out_of_range(c):
    return c.train(**{'model.backbone.frozen_stages': '9'}), ['frozen_stages=9', 'use -1..7']


@case('config', 'train')
def drop_path_schedule_unknown(c):
    return c.train(**{'model.backbone.drop_path_schedule': 'cosine'}), [
        "drop_path_schedule='cosine'", "('linspace', 'tf')"
    ]


@case('config', 'train')
def nonfinite_action_unknown(c):
    return c.train(nonfinite_loss='ignore'), ["nonfinite_loss='ignore'", "('stop', 'skip')"]


@case('config', 'train')
def auto_scale_lr_without_base(c):
    return c.train('--auto-scale-lr', auto_scale_lr='None'), ['--auto-scale-lr needs auto_scale_lr']


# checkpoints, through tools/train.py (--resume, load_from) and tools/test.py
@case('checkpoint', 'train')
def resume_missing(c):
    path = c.path('nope.pth')
    return c.train('--resume', path), [f'--resume {path}', 'not found']


@case('checkpoint', 'train')
def resume_empty(c):
    path = write_empty(c.path('empty.pth'))
    return c.train('--resume', path), [f'--resume {path}: cannot resume from it', 'truncated or not a PyTorch']


@case('checkpoint', 'train')
def resume_truncated(c):
    path = write_truncated(c.path('epoch_1.pth'), c.good_ckpt)
    return c.train('--resume', path), [f'--resume {path}: cannot resume from it', 'truncated']


@case('checkpoint', 'train')
def resume_random_bytes(c):
    path = write_random_bytes(c.path('noise.pth'))
    return c.train('--resume', path), [f'--resume {path}: cannot resume from it']


@case('checkpoint', 'train')
def resume_zip(c):
    path = write_zip(c.path('archive.pth'))
    return c.train('--resume', path), [f'--resume {path}: cannot resume from it']


@case('checkpoint', 'train')
def resume_code_executing_pickle(c):
    path = write_torch_exploit(c.path('evil.pth'), c.marker)
    return c.train('--resume', path), [f'--resume {path}: cannot resume from it', 'not unpickled for safety']


@case('checkpoint', 'train')
def resume_raw_pickle_exploit(c):
    path = write_raw_pickle_exploit(c.path('evil_legacy.pth'), c.marker)
    return c.train('--resume', path), [f'--resume {path}: cannot resume from it']


@case('checkpoint', 'train')
def resume_weights_only_checkpoint(c):
    path = c.path('weights.pth')
    torch.save({'state_dict': load(c.good_ckpt)['state_dict']}, path)
    return c.train('--resume', path), [f'--resume {path}: cannot resume from it', 'no meta.epoch / meta.iter']


@case('checkpoint', 'train')
def resume_wrong_model(c):
    return c.train('--resume', c.other_model_ckpt), [
        f'checkpoint {c.other_model_ckpt} does not fit', 'unexpected keys', 'shape mismatches'
    ]


@case('checkpoint', 'train')
def resume_auto_with_only_damaged_checkpoints(c):
    work = c.path('work')
    os.makedirs(work)
    write_truncated(osp.join(work, 'epoch_2.pth'), c.good_ckpt)
    write_random_bytes(osp.join(work, 'epoch_1.pth'))
    open(osp.join(work, 'last_checkpoint'), 'w').write(osp.join(work, 'epoch_2.pth'))
    return c.train('--resume'), [
        f'--resume found no usable checkpoint in {work}',
        osp.join(work, 'epoch_1.pth'),
        osp.join(work, 'epoch_2.pth')
    ]


@case('checkpoint', 'train')
def load_from_wrong_model(c):
    return c.train(load_from=c.other_model_ckpt), [
        f'load_from {c.other_model_ckpt}', 'backbone', 'backbone.layers.1.1.depthwise_conv.conv.weight'
    ]


@case('checkpoint', 'train')
def load_from_random_bytes(c):
    path = write_random_bytes(c.path('noise.pth'))
    return c.train(load_from=path), [f'cannot load checkpoint {path}']


@case('checkpoint', 'train')
def load_from_code_executing_pickle(c):
    path = write_torch_exploit(c.path('evil.pth'), c.marker)
    return c.train(load_from=path), [f'cannot load checkpoint {path}', 'not unpickled for safety']


@case('checkpoint', 'test')
def eval_checkpoint_missing(c):
    path = c.path('nope.pth')
    return c.test(path), [f'checkpoint file not found: {path}']


@case('checkpoint', 'test')
def eval_checkpoint_empty(c):
    path = write_empty(c.path('empty.pth'))
    return c.test(path), [f'cannot load checkpoint {path}']


@case('checkpoint', 'test')
def eval_checkpoint_truncated(c):
    path = write_truncated(c.path('model.pth'), c.good_ckpt)
    return c.test(path), [f'cannot load checkpoint {path}', 'truncated']


@case('checkpoint', 'test')
def eval_checkpoint_random_bytes(c):
    path = write_random_bytes(c.path('noise.pth'))
    return c.test(path), [f'cannot load checkpoint {path}']


@case('checkpoint', 'test')
def eval_checkpoint_zip(c):
    path = write_zip(c.path('archive.pth'))
    return c.test(path), [f'cannot load checkpoint {path}']


@case('checkpoint', 'test')
def eval_checkpoint_code_executing_pickle(c):
    path = write_torch_exploit(c.path('evil.pth'), c.marker)
    return c.test(path), [f'cannot load checkpoint {path}', 'not unpickled for safety']


@case('checkpoint', 'test')
def eval_checkpoint_raw_pickle_exploit(c):
    path = write_raw_pickle_exploit(c.path('evil_legacy.pth'), c.marker)
    return c.test(path), [f'cannot load checkpoint {path}']


@case('checkpoint', 'test')
def eval_checkpoint_wrong_model(c):
    return c.test(c.other_model_ckpt), [f'checkpoint {c.other_model_ckpt} does not fit', 'shape mismatches']


@case('checkpoint', 'test')
def eval_out_not_pickle(c):
    return c.test(c.good_ckpt, '--out', c.path('results.txt')), ["--out '", 'results.txt', '.pkl']


# the weight converter
def _convert(c, src: str, path: str, *extra: str) -> List[str]:
    return ['--src', src, *extra, path, c.path('converted.pth')]


@case('converter', 'convert')
def convert_missing(c):
    return _convert(c, 'timm', c.path('nope.pth')), [f'checkpoint file not found: {c.path("nope.pth")}']


@case('converter', 'convert')
def convert_empty(c):
    path = write_empty(c.path('empty.pth'))
    return _convert(c, 'timm', path), [f'cannot load checkpoint {path}']


@case('converter', 'convert')
def convert_random_bytes(c):
    path = write_random_bytes(c.path('noise.pth'))
    return _convert(c, 'timm', path), [f'cannot load checkpoint {path}']


@case('converter', 'convert')
def convert_random_bytes_safetensors(c):
    path = write_random_bytes(c.path('noise.safetensors'))
    return _convert(c, 'timm', path), [f'cannot load checkpoint {path}']


@case('converter', 'convert')
def convert_zip(c):
    path = write_zip(c.path('archive.pth'))
    return _convert(c, 'torchvision', path), [f'cannot load checkpoint {path}']


@case('converter', 'convert')
def convert_code_executing_pickle(c):
    path = write_torch_exploit(c.path('evil.pth'), c.marker)
    return _convert(c, 'mmpretrain', path), [f'cannot load checkpoint {path}', 'not unpickled for safety']


@case('converter', 'convert')
def convert_raw_pickle_exploit(c):
    path = write_raw_pickle_exploit(c.path('evil_legacy.pth'), c.marker)
    return _convert(c, 'lukemelas', path), [f'cannot load checkpoint {path}']


@case('converter', 'convert')
def convert_not_an_efficientnet(c):
    path = c.path('resnet.pth')
    torch.save({f'layer1.{i}.conv1.weight': torch.zeros(64, 64, 3, 3) for i in range(2)}, path)
    return _convert(c, 'timm', path), [path]


@case('converter', 'convert')
def convert_unknown_source(c):
    return _convert(c, 'keras', c.good_ckpt), ["unknown --src 'keras'", 'timm, torchvision']


@case('converter', 'convert')
def convert_unknown_arch(c):
    return _convert(c, 'mmpretrain', c.other_model_ckpt, '--arch', 'b99'), ["'b99'"]


# the dataset loader and pipeline of the detection recipe
@case('dataset', 'train')
def data_root_missing(c):
    shutil.rmtree(c.data)
    return c.train(), [f'data_root {c.data.rstrip("/") + "/"!r} does not exist', 'train_dataloader.dataset.data_root']


@case('dataset', 'train')
def annotation_file_missing(c):
    os.remove(c.ann())
    return c.train(), [c.ann(), 'does not exist']


@case('dataset', 'train')
def annotation_file_empty(c):
    write_empty(c.ann())
    return c.train(), [f'COCO annotation file {c.ann()} is not valid JSON']


@case('dataset', 'train')
def annotation_file_truncated(c):
    text = open(c.ann()).read()
    open(c.ann(), 'w').write(text[:len(text) // 2])
    return c.train(), [f'COCO annotation file {c.ann()} is not valid JSON']


@case('dataset', 'train')
def annotation_file_random_bytes(c):
    write_random_bytes(c.ann())
    return c.train(), [f'COCO annotation file {c.ann()}']


@case('dataset', 'train')
def annotation_wrong_schema_list(c):
    open(c.ann(), 'w').write('[1, 2, 3]')
    return c.train(), [f'COCO annotation file {c.ann()} holds a JSON list']


@case('dataset', 'train')
def annotation_wrong_schema_no_images(c):
    c.edit_ann(lambda d: d.pop('images'))
    return c.train(), [f'COCO annotation file {c.ann()}: "images" is missing']


@case('dataset', 'train')
def annotation_without_bbox(c):
    c.edit_ann(lambda d: d['annotations'][0].pop('bbox'))
    return c.train(), [c.ann(), "lacks 'bbox'"]


@case('dataset', 'train')
def annotation_bbox_not_numbers(c):
    c.edit_ann(lambda d: d['annotations'][1].update(bbox=['a', 0, 5, 5]))
    return c.train(), [c.ann(), "has bbox ['a', 0, 5, 5]"]


@case('dataset', 'train')
def annotation_of_unknown_image(c):
    c.edit_ann(lambda d: d['annotations'][0].update(image_id=999999))
    return c.train(), [c.ann(), 'refers to an image id that no image in the file has']


@case('dataset', 'train')
def dataset_classes_absent_from_file(c):
    return c.train(**{'train_dataloader.dataset.metainfo.classes': '(circle,hexagon)'}), \
        [c.ann(), "hexagon", "not among the file's categories"]


@case('dataset', 'train')
def listed_image_missing(c):
    with open(c.ann()) as f:
        first = json.load(f)['images'][0]['file_name']
    os.remove(osp.join(c.data, 'train', first))
    return c.train(), [osp.join(c.data, 'train', first), f'listed in {c.ann()} do not exist']


def _corrupt_two_images(c, split: str) -> List[str]:
    """Replace the first image with a cut JPEG and the second with a noisy PNG."""
    folder = osp.join(c.data, split)
    with open(c.ann(split)) as f:
        data = json.load(f)
    names = []
    for img, (ext, content) in zip(data['images'], [('.jpg', corrupt_jpeg_bytes()), ('.png', corrupt_png_bytes())]):
        os.remove(osp.join(folder, img['file_name']))
        img['file_name'] = osp.splitext(img['file_name'])[0] + '_corrupt' + ext
        open(osp.join(folder, img['file_name']), 'wb').write(content)
        names.append(osp.join(folder, img['file_name']))
    with open(c.ann(split), 'w') as f:
        json.dump(data, f)
    return names


@case('dataset', 'train', outcome='skip', slow=True)
def corrupt_jpeg_and_png_in_training(c):
    bad = _corrupt_two_images(c, 'train')
    return c.train(), [f'image {path}' for path in bad] + ['cannot be read', 'skipped; another sample is drawn']


@case('dataset', 'test', outcome='skip', slow=True)
def corrupt_jpeg_and_png_in_testing(c):
    bad = _corrupt_two_images(c, 'val')
    return c.test(c.good_ckpt), [f'image {path}' for path in bad] + ['replaced by a blank image']


# --- fixtures and the test ------------------------------------------------------------------------
def load(path: str) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)


def _recipe_model(arch: str = 'b0', **model: object):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(RECIPE)
    neck = {'b0': [40, 112, 320], 'b1': [40, 112, 320]}[arch]
    cfg.merge_from_dict({
        'model.backbone.init_cfg': None,
        'model.backbone.arch': arch,
        'model.neck.in_channels': neck,
        'model.bbox_head.num_classes': 3,
        'model.backbone.norm_cfg.type': 'BN',
        **model
    })
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp('catalogue_assets')
    data = make_shapes_data(str(root / 'shapes'), num_train=4, num_val=2)
    good = str(root / 'recipe_b0.pth')
    torch.save({'state_dict': _recipe_model('b0').state_dict(), 'meta': dict(epoch=1, iter=2)}, good)
    # another model: a B1 backbone (more blocks) with a 5-class head, saved as a training checkpoint
    other = str(root / 'retinanet_b1_5cls.pth')
    state = _recipe_model('b1', **{'model.bbox_head.num_classes': 5}).state_dict()
    torch.save({'state_dict': state, 'meta': dict(epoch=1, iter=2)}, other)
    return dict(data=data, good=good, other=other)


RESULTS: List[Tuple[str, str, str]] = []  # (entry, case id, outcome)


@pytest.mark.parametrize('entry', [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES])
def test_bad_input(entry: Case, assets, tmp_path):
    data = str(tmp_path / 'shapes')
    shutil.copytree(assets['data'], data)
    ctx = Ctx(
        tmp=str(tmp_path),
        data=data,
        marker=str(tmp_path / 'PWNED'),
        good_ckpt=assets['good'],
        other_model_ckpt=assets['other'])
    argv, fragments = entry.make(ctx)
    code, stderr = run_in_process(entry.tool, argv)
    assert not osp.exists(ctx.marker), 'pickled code was executed'
    if entry.outcome == 'skip':
        assert code == 0, f'{entry.id}: a documented skip must let the run finish; exit {code}:\n{stderr[-3000:]}'
        logs = [osp.join(d, f) for d, _, fs in os.walk(ctx.path('work')) for f in fs if f.endswith('.log')]
        text = ''.join(open(p).read() for p in logs)
        missing = [f for f in fragments if f not in text]
        assert not missing, f'{entry.id}: the log lacks {missing}'
        RESULTS.append((entry.entry, entry.id, 'skipped with a warning'))
        return
    assert code == 2, f'{entry.id}: exit code {code}, expected 2; stderr:\n{stderr[-3000:]}'
    assert 'Traceback' not in stderr, f'{entry.id}: traceback in stderr:\n{stderr[-3000:]}'
    start = stderr.find('ERROR: ')
    assert start >= 0, f'{entry.id}: no ERROR line:\n{stderr[-3000:]}'
    message = stderr[start:]
    missing = [f for f in fragments if f not in message]
    assert not missing, f'{entry.id}: the message lacks {missing}:\n{message}'
    RESULTS.append((entry.entry, entry.id, 'error exit 2'))


@pytest.mark.parametrize('tool', ['train', pytest.param('test', marks=pytest.mark.slow)])
def test_real_process_refuses_a_code_executing_checkpoint(tool, assets, tmp_path):
    """The same at the process boundary: exit status 2, one ERROR line, no traceback, no code run."""
    marker = str(tmp_path / 'PWNED')
    evil = write_torch_exploit(str(tmp_path / 'evil.pth'), marker)
    ctx = Ctx(str(tmp_path), assets['data'], marker, assets['good'], assets['other'])
    argv = ctx.train('--resume', evil) if tool == 'train' else ctx.test(evil)
    proc = run_tool(TOOLS[tool], *argv, check=False, env=tool_env())
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr and not osp.exists(marker)
    errors = [line for line in proc.stderr.splitlines() if line.startswith('ERROR: ')]
    assert len(errors) == 1 and str(evil) in errors[0], proc.stderr[-3000:]


def _recipe_dataset(data: str, split: str):
    """The recipe's dataset of ``split`` (its own pipeline, at test scale) on the shapes set ``data``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmeffnet.datasets.det_coco  # noqa: F401  (registers CheckedCocoDataset)
    cfg = Config.fromfile(RECIPE)
    ds = (cfg.train_dataloader if split == 'train' else cfg.val_dataloader).dataset
    folder = 'train' if split == 'train' else 'val'
    ds.update(
        data_root=data + '/',
        ann_file=f'annotations/instances_{folder}.json',
        data_prefix=dict(img=f'{folder}/'),
        metainfo=dict(classes=('circle', 'square', 'triangle')))
    for step in ds.pipeline:  # the 896-pixel recipe shrunk to the 64-pixel shapes
        for key in ('scale', 'crop_size'):
            if key in step:
                step[key] = (64, 64)
    init_default_scope('mmdet')
    from mmdet.registry import DATASETS
    return DATASETS.build(ds)


@pytest.mark.parametrize('split', ['train', 'val'])
def test_corrupt_jpeg_and_png_are_a_documented_skip_in_the_recipe_pipeline(split, assets, tmp_path, monkeypatch):
    """Fast form of the two slow ``corrupt_jpeg_and_png_*`` entries: in training a corrupt image is
    skipped with one warning naming it and another sample is drawn; in testing it is replaced by a
    blank image of its listed size (its objects count as missed)."""
    from mmeffnet.datasets import det_coco
    data = str(tmp_path / 'shapes')
    shutil.copytree(assets['data'], data)
    ctx = Ctx(str(tmp_path), data, str(tmp_path / 'PWNED'), assets['good'], assets['other'])
    bad = _corrupt_two_images(ctx, split)
    warnings = []
    monkeypatch.setattr(det_coco, '_warn', warnings.append)
    dataset = _recipe_dataset(data, split)
    samples = [dataset[i] for i in range(len(dataset))]
    assert all(s is not None for s in samples)
    # training resizes the 64 px images by 0.8-1.2 and crops to 64, so a side ends in [51, 64]
    low = 51 if split == 'train' else 64
    assert all(low <= side <= 64 for s in samples for side in s['inputs'].shape[-2:])
    assert dataset.unreadable_images == set(bad)
    assert len(warnings) == 2 and all(f'image {path}' in w for path, w in zip(bad, warnings))
    if split == 'train':
        assert all('skipped; another sample is drawn' in w for w in warnings)
        assert all(s['data_samples'].img_path not in bad for s in samples)  # replaced by readable ones
    else:
        assert all('replaced by a blank image' in w for w in warnings)
        blanks = [s for s in samples if s['data_samples'].img_path in bad]
        assert len(blanks) == 2 and all(int(s['inputs'].max()) == 0 for s in blanks)
    RESULTS.append(('dataset', f'corrupt_jpeg_and_png_{split}_dataset', 'skipped with a warning'))


def test_catalogue_summary():
    """The catalogue's size and results (printed; run after the cases)."""
    by_entry = Counter(entry for entry, _, _ in RESULTS)
    by_outcome = Counter(outcome for _, _, outcome in RESULTS)
    print(f'\nbad-input catalogue: {len(CASES)} cases, {len(RESULTS)} passed this run; '
          f'by entry point {dict(by_entry)}; outcomes {dict(by_outcome)}')
    assert len(CASES) >= 50
    assert {c.entry for c in CASES} == {'config', 'checkpoint', 'converter', 'dataset'}
    assert {c.tool for c in CASES} == set(TOOLS)


def test_catalogue_size_is_the_readme_figure():
    """README.md's "A catalogue of N bad inputs" is read, not copied, so the two cannot drift."""
    readme = ' '.join(open(osp.join(REPO, 'README.md')).read().split())
    stated = re.findall(r'catalogue of (\d+) bad inputs', readme)
    assert len(stated) == 1, f'README.md should state the catalogue size once, found {stated}'
    assert len(CASES) == int(stated[0]), f'CASES has {len(CASES)} entries, README.md says {stated[0]}'
    assert len({c.id for c in CASES}) == len(CASES), 'duplicate case ids'
