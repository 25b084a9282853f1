"""mmeffnet as an OpenMMLab package: the wheel ships the configs (mmeffnet/.mim, as mmdet's) so that a
config elsewhere inherits ``mmeffnet::...`` after a plain, non-editable install; the editable install
links them instead; model-index.yml and the metafiles list every config; our tools start without
setuptools' pkg_resources noise, while ``import mmeffnet`` leaves the warning filters alone."""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap
import zipfile

import yaml

from conftest import CONFIGS, REPO, run_tool
from stack_view import venv_seeing_the_stack

BASE = 'retinanet_effb3_fpn_crop896_8x4_1x_coco.py'
# Not part of a source tree: version control, environments, build output, run output, caches.
_NOT_SOURCE = {'.git', 'build', 'dist', 'work_dirs', 'outputs', 'data', '__pycache__', '.pytest_cache', '.mim'}


def _configs_folder(pattern: str) -> list:
    return glob.glob(osp.join(CONFIGS, '**', pattern), recursive=True)


def _is_venv(folder: str, name: str) -> bool:
    return osp.isfile(osp.join(folder, name, 'pyvenv.cfg'))


def _copy_source_tree(dest: str) -> str:
    """The checkout without environments or build output, so that a build sees no stale build/ of
    the checkout and two test runs never build in the same folder."""

    def ignore(folder, names):
        return [n for n in names if n in _NOT_SOURCE or n.endswith(('.egg-info', '.pyc')) or _is_venv(folder, n)]

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def _run(cmd: list, cwd, **env: str) -> subprocess.CompletedProcess:
    """``cmd`` outside this suite's venv settings (no PYTHONPATH, no VIRTUAL_ENV), plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    return subprocess.run(cmd, cwd=cwd, env=dict(clean, **env), capture_output=True, text=True, timeout=300)


def _pip(python: str, *args: str, cwd: str = None) -> subprocess.CompletedProcess:
    proc = _run([python, '-m', 'pip', '--disable-pip-version-check', *args], cwd)
    assert proc.returncode == 0, f'pip {" ".join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc


# Run by the fresh venv's Python in a folder outside the checkout: loads the config that inherits
# mmeffnet::BASE, first with mmengine alone, then with mmeffnet's opt-in, and builds its backbone.
_LOAD = textwrap.dedent(r'''
    import json, os.path as osp, sys
    import mmeffnet
    from mmengine.config import Config
    from mmengine.utils import get_installed_path
    from mmeffnet.config.package_bases import enable_mmeffnet_bases
    from mmeffnet.registry import MODELS

    out = dict(package=osp.dirname(mmeffnet.__file__), mmengine_package=get_installed_path('mmeffnet'))
    try:
        Config.fromfile(sys.argv[1])
        out['plain_mmengine'] = 'loaded'
    except Exception as exc:
        out['plain_mmengine'] = f'{type(exc).__name__}: {exc}'
    enable_mmeffnet_bases()
    cfg = Config.fromfile(sys.argv[1])
    backbone = MODELS.build(cfg.model.backbone)
    out.update(type=cfg.model.backbone.type, arch=cfg.model.backbone.arch, num_classes=cfg.model.bbox_head.num_classes,
               in_channels=list(cfg.model.neck.in_channels), default_scope=cfg.default_scope,
               model_scope=cfg.model.get('_scope_'), built=type(backbone).__name__)
    out['others'] = {}
    for i, base in enumerate(sys.argv[2:]):  # more shipped configs, each inherited as it is
        with open(f'other{i}.py', 'w') as f:
            f.write(f'_base_ = [{base!r}]\n')
        out['others'][base] = Config.fromfile(f'other{i}.py').model.backbone.type
    print('RESULT ' + json.dumps(out))
''')

# One of each kind: toolbox bases (mmpretrain::, mmseg::) and relative ./_base_ bases inside .mim.
OTHER_BASES = ('mmeffnet::classification/efficientnet-b0_8xb32-ft_cifar10-224px.py',
               'mmeffnet::classification/eval/efficientnet-lite0_in1k.py',
               'mmeffnet::segmentation/deeplabv3plus_effb3-d8_4xb4-40k_voc12aug-512x512.py')


def _load_inheriting_config(venv: str, where, *other_bases: str) -> dict:
    where.mkdir()
    inheriting = f"_base_ = ['mmeffnet::{BASE}']\nmodel = dict(bbox_head=dict(num_classes=3))\n"
    (where / 'my_retinanet.py').write_text(inheriting)
    (where / 'load.py').write_text(_LOAD)
    proc = _run([osp.join(venv, 'bin', 'python'), 'load.py', 'my_retinanet.py', *other_bases], where)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.split('RESULT ', 1)[1])


def _check_loaded(result: dict, package: str) -> None:
    assert result['package'] == package, result
    # mmengine 0.10 refuses packages outside its own list (open-mmlab/mmengine#1410): the reason for
    # the opt-in. Should a later mmengine load it by itself, the opt-in can go.
    assert result['plain_mmengine'] != 'loaded', 'mmengine now resolves mmeffnet:: bases itself'
    assert result['type'] == 'mmeffnet.EfficientNet' and result['arch'] == 'b3', result
    assert result['built'] == 'EfficientNet' and result['in_channels'] == [48, 136, 384], result
    assert result['num_classes'] == 3, result  # the inheriting config's own override
    assert result['default_scope'] == 'mmdet' and result['model_scope'] == 'mmdet', result


def test_wheel_ships_configs_and_a_fresh_venv_inherits_them(tmp_path):
    """pip wheel, then a non-editable install into a fresh venv without mmeffnet: a config in a
    folder outside the checkout inherits mmeffnet::BASE and builds our backbone from the installed
    package (not from the checkout)."""
    src = _copy_source_tree(str(tmp_path / 'src'))
    _pip(sys.executable, 'wheel', '--no-deps', '--no-build-isolation', src, '-w', str(tmp_path / 'dist'), cwd=src)
    wheel, = glob.glob(str(tmp_path / 'dist' / 'mmeffnet-*.whl'))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n[len('mmeffnet/.mim/'):] for n in names if n.startswith('mmeffnet/.mim/')}
    expected = {osp.relpath(p, REPO) for p in _configs_folder('*.py') + _configs_folder('metafile.yml')}
    expected.add('model-index.yml')
    assert shipped == expected, sorted(shipped ^ expected)
    assert not os.path.exists(osp.join(src, 'mmeffnet', '.mim')), 'the wheel build wrote into the source tree'

    venv = venv_seeing_the_stack(tmp_path, 'venv', with_pip=False)
    python = osp.join(venv, 'bin', 'python')
    _pip(python, 'install', '--no-deps', '--no-index', wheel)
    site = _run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], tmp_path).stdout.strip()
    result = _load_inheriting_config(venv, tmp_path / 'elsewhere', *OTHER_BASES)
    _check_loaded(result, osp.join(site, 'mmeffnet'))
    assert result['others'] == dict.fromkeys(OTHER_BASES, 'mmeffnet.EfficientNet'), result['others']
    assert result['mmengine_package'] == osp.join(site, 'mmeffnet')  # where mim / mmengine look for .mim


def test_editable_install_links_the_checkouts_configs(tmp_path):
    """pip install -e (what make install does): mmeffnet/.mim holds links to the checkout's configs/
    and model-index.yml, so an edited config is what mmeffnet:: bases read."""
    src = _copy_source_tree(str(tmp_path / 'src'))
    venv = venv_seeing_the_stack(tmp_path, 'venv', with_pip=False)
    _pip(osp.join(venv, 'bin', 'python'), 'install', '--no-deps', '--no-build-isolation', '--no-index', '-e', src)
    mim = osp.join(src, 'mmeffnet', '.mim')
    assert os.readlink(osp.join(mim, 'configs')) == osp.join('..', '..', 'configs')
    assert os.readlink(osp.join(mim, 'model-index.yml')) == osp.join('..', '..', 'model-index.yml')
    _check_loaded(_load_inheriting_config(venv, tmp_path / 'elsewhere'), osp.join(src, 'mmeffnet'))


# ---- model-index.yml and the metafiles ------------------------------------------------------------


def _metafiles() -> list:
    return sorted(osp.relpath(p, REPO) for p in _configs_folder('metafile.yml'))


def _model_configs() -> list:
    """Every config that is a model: not the _base_ fragments, not the demo's test fixture."""
    rel = (osp.relpath(p, REPO) for p in _configs_folder('*.py'))
    return sorted(p for p in rel if '_base_' not in p.split(os.sep) and not p.startswith(osp.join('configs', 'demo')))


PAPERS = [
    dict(
        URL='https://arxiv.org/abs/1905.11946',
        Title='EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks'),
    dict(URL='https://arxiv.org/abs/1911.09070', Title='EfficientDet: Scalable and Efficient Object Detection'),
]


def test_model_index_imports_every_metafile():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        imported = yaml.safe_load(f)['Import']
    assert sorted(imported) == _metafiles()


def test_every_config_is_in_a_metafile_and_every_metafile_entry_exists():
    listed, names = [], []
    for metafile in _metafiles():
        with open(osp.join(REPO, metafile)) as f:
            meta = yaml.safe_load(f)
        collections = {c['Name'] for c in meta['Collections']}
        for c in meta['Collections']:
            assert c['Paper'] in PAPERS, c
        for model in meta['Models']:
            assert model['In Collection'] in collections, (metafile, model)
            assert osp.isfile(osp.join(REPO, model['Config'])), (metafile, model['Config'])
            assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0], model
            assert 'Training Data' in model['Metadata'], model
            # No result was measured on a full dataset and no weights are published (see the metafiles).
            assert 'Results' not in model and 'Weights' not in model, model
            listed.append(model['Config'])
            names.append(model['Name'])
    assert sorted(listed) == _model_configs(), sorted(set(listed) ^ set(_model_configs()))
    assert len(set(names)) == len(names), 'two models share a name'


def test_metafile_figures_are_what_the_counter_measures():
    """FLOPs and Parameters as mmeffnet's counter finds them, for one classifier, one segmentor and one detector
    (the others come from the same counter: README's Table 2 rows, docs/segmentation.md)."""
    from mmengine.config import Config

    from mmeffnet.search.config_complexity import measure_config
    figures = {}
    for metafile in _metafiles():
        with open(osp.join(REPO, metafile)) as f:
            for model in yaml.safe_load(f)['Models']:
                figures[model['Config']] = model['Metadata']
    for config in ('configs/classification/efficientnet-b0_8xb256-rmsprop_in1k.py',
                   'configs/segmentation/fpn_effb3_4xb4-160k_ade20k-512x512.py',
                   'configs/efficientdet/efficientdet_d0_8xb16-crop512-300e_coco.py'):
        counted = measure_config(Config.fromfile(osp.join(REPO, config)))
        assert (figures[config]['FLOPs'], figures[config]['Parameters']) == (counted.macs, counted.params), config


# ---- tools start without pkg_resources noise --------------------------------------------------------


def _python_in_repo(*args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, *args], REPO, PYTHONPATH=REPO)


def _load_config_in_a_process(first_import: str, *python_flags: str) -> str:
    code = (f'import {first_import}\nfrom mmengine.config import Config\n'
            f'Config.fromfile({osp.join(CONFIGS, "retinanet_effb0_fpn_crop512_8x4_1x_coco.py")!r})\n')
    proc = _python_in_repo(*python_flags, '-c', code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def test_tool_entry_silences_exactly_the_pkg_resources_warnings():
    # -W default shows DeprecationWarnings too (older setuptools warn with that category).
    plain = _load_config_in_a_process('mmeffnet', '-W', 'default')
    assert 'pkg_resources is deprecated' in plain, 'import mmeffnet must not touch the warning filters'
    quiet = _load_config_in_a_process('mmeffnet.tool_entry', '-W', 'default')
    assert 'pkg_resources is deprecated' not in quiet, quiet
    proc = _python_in_repo('-c', 'import warnings, mmeffnet.tool_entry\nwarnings.warn("another one", UserWarning)')
    assert 'UserWarning: another one' in proc.stderr  # only that message is silenced


def test_train_tool_starts_without_warnings(tmp_path):
    """A real tools/train.py run that reads a config with four mmdet:: bases (it stops at the
    missing dataset): no warning line, only the tool's own error."""
    config = osp.join(CONFIGS, 'retinanet_effb0_fpn_crop512_8x4_1x_coco.py')
    no_data = f'train_dataloader.dataset.data_root={tmp_path / "no_data"}/'
    args = [config, '--work-dir', str(tmp_path / 'work'), '--cfg-options', no_data]
    proc = run_tool('tools/train.py', *args, check=False)
    output = proc.stdout + proc.stderr
    assert 'no_data' in output, output[-3000:]  # the config was read and its dataset checked
    warnings_seen = [line for line in output.splitlines() if 'Warning' in line]
    assert not warnings_seen, warnings_seen
