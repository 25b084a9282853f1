"""Compound scaling as a tool: the grid (step 1), scaled configs of the three toolboxes, the family
(step 2), the documented eq. 3 check, and a real search that is killed and resumed."""
import csv
import glob
import json
import math
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config

from conftest import CONFIGS, REPO, run_tool
from mmeffnet.analysis.complexity import count_macs
from mmeffnet.analysis.table2 import ImageNetClassifier
from mmeffnet.models import EfficientNet
from mmeffnet.search import (Coefficients, Multipliers, check_phi, enumerate_grid, find_backbone, input_size,
                             make_family, make_plan, measure_config, parse_coefficients, scale_config, write_family)
from mmeffnet.search.eq3_check import eq3_check_markdown, eq3_family_rows
from mmeffnet.search.search import check_settings
from mmeffnet.search.state import process_alive

SEARCH = osp.join('tools', 'compound_search.py')
FAMILY = osp.join('tools', 'scale_family.py')
HEADER = "custom_imports = dict(imports=['mmeffnet'], allow_failed_imports=False)\n"


def _write(folder, name: str, text: str) -> str:
    path = osp.join(str(folder), name)
    with open(path, 'w') as f:
        f.write(text)
    return path


def _b0_classifier(folder) -> str:
    """mmpretrain's EfficientNet-B0 ImageNet recipe with our backbone (EfficientNet crops at 224)."""
    return _write(
        folder, 'b0_cls.py', "_base_ = ['mmpretrain::efficientnet/efficientnet-b0_8xb32_in1k.py']\n" + HEADER +
        "model = dict(backbone=dict(type='mmeffnet.EfficientNet'))\n")


def _out_channels(arch, out_indices) -> tuple:
    with torch.device('meta'):
        return tuple(EfficientNet(arch, out_indices=out_indices).out_channels)


# ----------------------------------------------------------------------------------------- grid
def test_grid_satisfies_eq3_constraint_and_misses_nothing():
    grid = enumerate_grid(step=0.05, tolerance=0.05)
    assert len(grid) == 109
    for c in grid:
        assert min(c.alpha, c.beta, c.gamma) >= 1
        assert abs(c.alpha * c.beta**2 * c.gamma**2 / 2 - 1) <= 0.05
    assert Coefficients(1.2, 1.1, 1.15) in grid  # the paper's choice: 1.92, -4%
    # An independent brute force over the same grid finds exactly the same triples.
    values = [round(1 + 0.05 * i, 10) for i in range(0, 25)]
    brute = {(a, b, g) for a in values for b in values for g in values if abs(a * b * b * g * g / 2 - 1) <= 0.05}
    assert {(c.alpha, c.beta, c.gamma) for c in grid} == brute
    tight = enumerate_grid(step=0.05, tolerance=0.02)
    assert set(tight) < set(grid) and Coefficients(1.2, 1.1, 1.15) not in tight


def test_grid_and_coefficient_errors_name_the_value():
    with pytest.raises(ValueError, match=r'grid of step 0.7.*tolerance 0.01.*closest is a1.7_b1_g1'):
        enumerate_grid(step=0.7, tolerance=0.01)
    with pytest.raises(ValueError, match='grid_step=0'):
        enumerate_grid(step=0, tolerance=0.05)
    with pytest.raises(ValueError, match='tolerance=1.5'):
        enumerate_grid(step=0.05, tolerance=1.5)
    for phi in (0, -1):
        with pytest.raises(ValueError, match=f'phi={phi}'):
            check_phi(phi)
    with pytest.raises(ValueError, match='alpha >= 1, got alpha=0.9'):
        parse_coefficients(['0.9,1.1,1.2'], 0.05)
    with pytest.raises(ValueError, match=r'a1.5_b1.5_g1.5: alpha\*beta\^2\*gamma\^2 = 7.5938'):
        parse_coefficients(['1.5,1.5,1.5'], 0.05)
    with pytest.raises(ValueError, match="'1.2,1.1' is not"):
        parse_coefficients(['1.2,1.1'], 0.05)


# ---------------------------------------------------------------------------- scaling configs
def test_scaled_classification_config(tmp_path):
    cfg = Config.fromfile(_b0_classifier(tmp_path))
    scaled = scale_config(cfg, Multipliers(depth=1.2, width=1.1, resolution=1.15))
    arch = scaled.cfg.model.backbone.arch
    assert arch == dict(width_mult=1.1, depth_mult=1.2, resolution=258, dropout=0.2)
    assert scaled.cfg.model.head.in_channels == _out_channels(arch, (6, ))[-1] == 1408
    train = scaled.cfg.train_dataloader.dataset.pipeline
    test = scaled.cfg.test_dataloader.dataset.pipeline
    assert [t['scale'] for t in train if t['type'] == 'EfficientNetRandomCrop'] == [258]
    assert [t['crop_size'] for t in test if t['type'] == 'EfficientNetCenterCrop'] == [258]
    assert input_size(scaled.cfg) == (258, 258) and input_size(cfg) == (224, 224)
    assert cfg.model.backbone.get('arch', 'b0') == 'b0'  # the baseline config is left alone


def test_scaled_detection_config_keeps_neck_consistent(tmp_path):
    path = _write(
        tmp_path, 'det.py', "_base_ = ['mmdet::efficientnet/retinanet_effb3_fpn_8xb4-crop896-1x_coco.py']\n" + HEADER +
        "model = dict(backbone=dict(type='mmeffnet.EfficientNet'))\n")
    cfg = Config.fromfile(path)
    scaled = scale_config(cfg, Multipliers(depth=1.2, width=1.1, resolution=1.15)).cfg
    backbone = scaled.model.backbone
    assert backbone.arch['width_mult'] == pytest.approx(1.32) and backbone.arch['depth_mult'] == pytest.approx(1.68)
    assert backbone.init_cfg is None  # B3 ImageNet weights cannot fit the scaled shapes
    assert list(scaled.model.neck.in_channels) == list(_out_channels(backbone.arch, (3, 4, 5))) == [56, 144, 424]
    # 896 * 1.15 = 1030.4 -> 1024, the nearest multiple of the stride 32, everywhere
    train = {t['type']: t for t in scaled.train_dataloader.dataset.pipeline}
    assert train['RandomResize']['scale'] == (1024, 1024) and train['RandomCrop']['crop_size'] == (1024, 1024)
    assert [t['scale'] for t in scaled.test_dataloader.dataset.pipeline if t['type'] == 'Resize'] == [(1024, 1024)]
    assert scaled.model.data_preprocessor.batch_augments[0]['size'] == (1024, 1024)
    base, big = measure_config(cfg), measure_config(scaled)
    assert base.counted == big.counted == 'whole model' and big.input_size == (1024, 1024)
    # the FPN and RetinaNet head keep their 256 channels: only the backbone grows ~2x
    assert 1.6 < big.backbone_macs / base.backbone_macs < 2.0 and big.macs / base.macs < 1.5


def test_scaled_segmentation_config_follows_in_index(tmp_path):
    path = _write(
        tmp_path, 'seg.py', "_base_ = ['mmseg::_base_/models/deeplabv3plus_r50-d8.py']\n" + HEADER + """
default_scope = 'mmseg'
crop_size = (512, 512)
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                  dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
                  dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75), dict(type='PackSegInputs')]
model = dict(data_preprocessor=dict(size=crop_size), pretrained=None,
             backbone=dict(_delete_=True, type='mmeffnet.EfficientNet', arch='b0', out_indices=(2, 3, 4, 5)),
             decode_head=dict(in_channels=320, in_index=3, c1_in_channels=24),
             auxiliary_head=dict(in_channels=112, in_index=2),
             test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
""")
    cfg = Config.fromfile(path)
    scaled = scale_config(cfg, Multipliers(depth=1.2, width=1.5, resolution=1.15)).cfg
    out = _out_channels(scaled.model.backbone.arch, (2, 3, 4, 5))
    assert scaled.model.decode_head.in_channels == out[3] and scaled.model.decode_head.c1_in_channels == out[0]
    assert scaled.model.auxiliary_head.in_channels == out[2]
    assert out != (24, 40, 112, 320)
    assert scaled.model.data_preprocessor.size == (576, 576) and scaled.crop_size == (576, 576)
    assert scaled.model.test_cfg.crop_size == (576, 576) and scaled.model.test_cfg.stride == (384, 384)
    assert scaled.train_pipeline[2]['scale'] == (2368, 576) and scaled.train_pipeline[3]['crop_size'] == (576, 576)
    assert measure_config(scaled, (576, 576), level='whole model').params > measure_config(cfg).params


def test_config_without_our_backbone_is_refused(tmp_path):
    path = _write(tmp_path, 'theirs.py', "_base_ = ['mmpretrain::efficientnet/efficientnet-b0_8xb32_in1k.py']\n")
    with pytest.raises(ValueError, match=r"no mmeffnet.EfficientNet backbone.*type='EfficientNet'.*toolbox's own"):
        find_backbone(Config.fromfile(path))
    proc = run_tool(SEARCH, path, '--dry-run', check=False, timeout=300)
    assert proc.returncode == 2
    assert "ERROR: the config has no mmeffnet.EfficientNet backbone in cfg.model: model.backbone.type='EfficientNet'" \
        in proc.stderr


# ---------------------------------------------------------------------------------- dry run
def test_dry_run_prints_measured_candidates(tmp_path):
    path = _b0_classifier(tmp_path)
    start = time.time()
    proc = run_tool(SEARCH, path, '--phi', '1', '--grid-step', '0.1', '--tolerance', '0.05', '--dry-run', timeout=300)
    elapsed = time.time() - start
    rows = [line.split('|')[1:-1] for line in proc.stdout.splitlines() if line.startswith('| ') and '---' not in line]
    header, body = [c.strip() for c in rows[0]], [[c.strip() for c in r] for r in rows[1:]]
    assert len(body) == len(enumerate_grid(0.1, 0.05)) == 20
    col = {name: header.index(name) for name in header}
    base = measure_config(Config.fromfile(path))
    for r in body:
        a, b, g = (float(r[col[k]]) for k in ('alpha', 'beta', 'gamma'))
        assert min(a, b, g) >= 1 and abs(a * b * b * g * g / 2 - 1) <= 0.05
        # the printed ratio is the measured one: recount that model independently
        res = int(224 * g + 0.5)
        with torch.device('meta'):
            macs = count_macs(ImageNetClassifier(dict(width_mult=b, depth_mult=a, resolution=res)), (1, 3, res, res))
        assert float(r[col['MACs x']]) == pytest.approx(macs / base.macs, abs=0.006)
        assert r[col['input']] == f'{res}x{res}'
    assert 'baseline cost: 5.29 M params, 0.3858 G multiply-adds' in proc.stdout
    assert elapsed < 120, f'dry run took {elapsed:.0f} s'


# ------------------------------------------------------------------------------------- family
@pytest.mark.parametrize(
    'coeffs', [(2.0, 1.0, 1.0), (1.0, 2**0.5, 1.0), (1.0, 1.0, 2**0.5)], ids=['depth', 'width', 'resolution'])
def test_family_flops_ratio_within_10pct_of_2_pow_phi(tmp_path, coeffs):
    """Each dimension alone, with its coefficient making the product exactly 2."""
    plan = make_family(Config.fromfile(_b0_classifier(tmp_path)), Coefficients(*coeffs), phi_max=4)
    for m in plan.members:
        assert plan.ratio(m) == pytest.approx(2**m.phi, rel=0.10), (m.name, plan.ratio(m))


def test_paper_family_is_eq3_and_its_documented_deviation_from_2_pow_phi(tmp_path):
    cfg = Config.fromfile(_b0_classifier(tmp_path))
    plan = make_family(cfg, Coefficients(1.2, 1.1, 1.15), phi_max=7)
    independent = eq3_family_rows(7)[1:]  # Table 2's network built directly from compound_scaling()
    for m, row in zip(plan.members, independent):
        assert m.arch['resolution'] == row['resolution'] and m.complexity.input_size == (row['resolution'], ) * 2
        assert m.blocks() == row['blocks'] and m.complexity.macs == row['macs'] and m.complexity.params == row['params']
    deviation = [round(plan.ratio(m) / 2**m.phi - 1, 3) for m in plan.members]
    # ceil of B0's 1-4 block stages inflates small phi; 1.92^phi < 2^phi pulls large phi down
    assert deviation == [0.286, 0.173, 0.053, 0.024, -0.079, -0.186, -0.197]
    paths = write_family(plan, str(tmp_path / 'family'), 'b0_cls', 'b0_cls.py')
    assert [osp.basename(p) for p in paths] == [f'b0_cls_phi{k}.py' for k in range(1, 8)]
    written = Config.fromfile(paths[0])  # a self-contained config that builds the same model
    assert written.model.backbone.arch == plan.members[0].arch
    assert measure_config(written).macs == plan.members[0].complexity.macs


def test_eq3_check_in_docs_is_current():
    with open(osp.join(REPO, 'docs', 'compound_scaling.md')) as f:
        doc = f.read()
    assert eq3_check_markdown(7) in doc, 'rerun: python tools/scale_family.py --paper-check'


# ------------------------------------------------------------------------------- real search
TINY = """_base_ = ['mmpretrain::_base_/models/efficientnet_b0.py', 'mmpretrain::_base_/schedules/imagenet_bs256.py',
          'mmpretrain::_base_/default_runtime.py']
""" + HEADER + """
model = dict(backbone=dict(type='mmeffnet.EfficientNet', drop_path_rate=0.0,
                           arch=dict(_delete_=True, width_mult=0.25, depth_mult=0.25, resolution=32)),
             head=dict(num_classes=2, in_channels=320, topk=(1, )))
data_preprocessor = dict(num_classes=2, mean=[127.5] * 3, std=[64.0] * 3, to_rgb=True)
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='RandomResizedCrop', scale=32), dict(type='PackInputs')]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='ResizeEdge', scale=36, edge='short'),
                 dict(type='CenterCrop', crop_size=32), dict(type='PackInputs')]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        dataset=dict(type='CustomDataset', data_root=DATA, data_prefix='train',
                                     pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset=dict(type='CustomDataset', data_root=DATA, data_prefix='val', pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
"""


def _tiny_classification(tmp_path) -> str:
    """Two colour classes of 40 px images in CustomDataset folders, and a tiny B0-shaped config."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    data = tmp_path / 'data'
    for split, n in (('train', 8), ('val', 4)):
        for c, colour in enumerate(((200, 40, 40), (40, 40, 200))):
            folder = data / split / f'class{c}'
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(colour, 30, (40, 40, 3)), 0, 255).astype('uint8')
                Image.fromarray(pixels).save(folder / f'{i}.png')
    return _write(tmp_path, 'tiny_cls.py', TINY.replace('DATA', repr(str(data))))


def _read(path):
    with open(path) as f:
        return json.load(f)


def _wait_for(predicate, timeout: float, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f'search exited {proc.returncode} early:\n{proc.stdout.read()[-3000:]}')
        time.sleep(0.2)
    raise AssertionError('timed out')


def test_search_trains_ranks_and_resumes_after_being_killed(tmp_path):
    config = _tiny_classification(tmp_path)
    work = tmp_path / 'search'
    args = [SEARCH, config, '--candidates', '1.2,1.1,1.15', '1,1,1.4', '--iters', '3', '--work-dir', str(work)]
    first_state = work / 'candidates' / 'a1.2_b1.1_g1.15' / 'state.json'
    second_state = work / 'candidates' / 'a1_b1_g1.4' / 'state.json'

    proc = subprocess.Popen([sys.executable, *args],
                            cwd=REPO,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            text=True,
                            env=dict(os.environ, PYTHONPATH=REPO))
    try:
        # kill the search while the second candidate's tools/train.py process runs
        _wait_for(lambda: second_state.exists() and _read(second_state).get('pid'), 300, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    first = _read(first_state)
    assert first['status'] == 'done' and 'accuracy/top1' in first['metrics']
    interrupted = _read(second_state)
    assert interrupted['status'] == 'training'
    assert not process_alive(interrupted['pid']), 'the killed search left its training process running'
    with open(work / 'results.csv') as f:  # the partial table written after the first candidate
        assert {
            r['name']: r['status']
            for r in csv.DictReader(f)
        } == {
            'a1.2_b1.1_g1.15': 'done',
            'a1_b1_g1.4': 'pending'
        }
    checkpoint = first_state.parent / 'iter_3.pth'
    stamp = (first_state.stat().st_mtime_ns, checkpoint.stat().st_mtime_ns)
    train_runs = glob.glob(str(first_state.parent / '2*_*'))

    rerun = run_tool(*args, timeout=600)
    assert 'a1.2_b1.1_g1.15: done earlier' in rerun.stdout and 'a1_b1_g1.4: resuming training' in rerun.stdout
    assert _read(first_state) == first  # the finished candidate was not retrained nor re-evaluated
    assert (first_state.stat().st_mtime_ns, checkpoint.stat().st_mtime_ns) == stamp
    assert glob.glob(str(first_state.parent / '2*_*')) == train_runs
    assert _read(second_state)['status'] == 'done'

    with open(work / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    assert sorted(r['name'] for r in rows) == ['a1.2_b1.1_g1.15', 'a1_b1_g1.4']
    assert [r['rank'] for r in rows] == ['1', '2'] and {r['status'] for r in rows} == {'done'}
    values = [float(r['value']) for r in rows]
    assert values == sorted(values, reverse=True) and all(0 <= v <= 100 for v in values)
    assert all(r['metric'] == 'accuracy/top1' for r in rows)
    assert all(1.5 < float(r['macs_ratio']) < 3.5 for r in rows)
    with open(work / 'metric_vs_flops.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with open(work / 'results.md') as f:
        md = f.read()
    assert 'ranked by accuracy/top1 on the validation split' in md and md.count('| done |') == 2
    # the same work dir refuses a search with another budget
    settings = _read(work / 'search.json')
    with pytest.raises(ValueError, match='iters: 3 there, 4 now'):
        check_settings(str(work), dict(settings, iters=4))


# ------------------------------------------------------------------------ the repo's configs
def _repo_configs():
    found = []
    for path in sorted(glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)):
        rel = osp.relpath(path, CONFIGS)
        if '_base_' not in rel.split(os.sep) and 'demo' not in rel:
            found.append(rel)
    return found


@pytest.mark.parametrize('rel', _repo_configs() or ['<none>'])
def test_dry_run_on_repo_config(rel):
    if rel == '<none>':
        pytest.skip('no configs under configs/ yet')
    cfg = Config.fromfile(osp.join(CONFIGS, rel))
    try:
        find_backbone(cfg)
    except ValueError:
        pytest.skip(f'{rel} has no mmeffnet.EfficientNet backbone')
    plan = make_plan(cfg, [(Coefficients(1.2, 1.1, 1.15), 1)])
    member = plan.members[0]
    assert member.complexity.counted == plan.baseline.counted  # the scaled model builds and runs as far
    assert plan.backbone_ratio(member) == pytest.approx(2, rel=0.4)
    assert plan.ratio(member) > 1.1
    assert math.isclose(member.coeffs.flops_factor, 1.92, rel_tol=0.01)
