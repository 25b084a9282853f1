"""Shared test fixtures: where the real sample datasets live, and small helpers."""
import math
import os
import os.path as osp
import re
import subprocess
import sys
from typing import NamedTuple

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.normpath(osp.join(REPO, '..', 'shared', 'data'))
CONFIGS = osp.join(REPO, 'configs')
TOOLS = osp.join(REPO, 'tools')


def pytest_addoption(parser):
    parser.addoption(
        '--learning-seed',
        type=int,
        default=0,
        help='seed of the seeded learning tests (CI: 0); their thresholds are measured over several '
        'seeds by rerunning them with this option')


@pytest.fixture(scope='session')
def learning_seed(request) -> int:
    """The seed the learning tests train with (``pytest --learning-seed N``; 0 in CI)."""
    return request.config.getoption('--learning-seed')


def _shared(name: str) -> str:
    path = osp.join(SHARED_DATA, name)
    if not osp.isdir(path):
        pytest.skip(f'real sample dataset {path} is absent (it lives in ../shared/data beside the repo)')
    return path


@pytest.fixture(scope='session')
def coco_mini() -> str:
    """80 real COCO train2017 images with annotations (../shared/data/coco_mini)."""
    return _shared('coco_mini')


@pytest.fixture(scope='session')
def ade_sample() -> str:
    """3 real ADE20K validation images, ADEChallengeData2016 layout (../shared/data/ade_sample)."""
    return _shared('ade_sample')


def run_tool(*args: str, timeout: int = 900, check: bool = True, env: dict = None) -> subprocess.CompletedProcess:
    """Run ``python tools/<args>`` from the repo root as a real process; return the result."""
    full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    proc = subprocess.run([sys.executable, *args],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=timeout,
                          env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(args)} exited {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\n'
                             f'STDERR:\n{proc.stderr[-4000:]}')
    return proc


def tool_error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``ERROR:`` line a tool ends with on bad input (exit code 2, no traceback)."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith('ERROR:')]
    assert len(errors) == 1, proc.stderr[-2000:]
    return errors[0]


#: OpenMP threads spinning while they wait are several times slower on a shared CPU
QUIET_OMP_ENV = dict(OMP_WAIT_POLICY='PASSIVE')
#: coco_mini holds a train split only: it serves as val and test too
COCO_MINI_ANN = 'annotations/instances_train2017.json'


def coco_mini_options(split: str, data_root: str) -> list:
    """``--cfg-options`` that point a COCO config's ``split`` at coco_mini, loaded in the main process."""
    return [
        f'{split}_dataloader.dataset.data_root={data_root}/', f'{split}_dataloader.dataset.ann_file={COCO_MINI_ANN}',
        f'{split}_dataloader.dataset.data_prefix.img=train2017/', f'{split}_dataloader.num_workers=0',
        f'{split}_dataloader.persistent_workers=False', f'{split}_evaluator.ann_file={data_root}/{COCO_MINI_ANN}'
    ]


def train_two_iterations(config: str, work_dir: str, options: list) -> str:
    """``tools/train.py config`` with ``--cfg-options options`` (a 2-iteration, one-epoch run in one CPU
    process); checks that SyncBN became BN and both losses are finite; returns the checkpoint."""
    proc = run_tool('tools/train.py', config, '--work-dir', str(work_dir), '--cfg-options', *options, env=QUIET_OMP_ENV)
    log = proc.stdout + proc.stderr
    assert 'converted to BN' in log  # SyncBN in one CPU process
    losses = [float(v) for v in re.findall(r'\bloss: (\d+\.\d+)', log)]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), log[-3000:]
    ckpt = osp.join(str(work_dir), 'epoch_1.pth')
    assert osp.isfile(ckpt)
    return ckpt


def run_image_demo(config: str, checkpoint: str, image: str, out: str) -> subprocess.CompletedProcess:
    """``tools/demo/image_demo.py`` with score threshold 0; checks that it lists the detections
    ("class score [x1, y1, x2, y2]") and paints boxes into a copy of ``image`` written to ``out``."""
    import mmcv
    import numpy as np
    proc = run_tool(
        'tools/demo/image_demo.py', image, config, checkpoint, '--out', str(out), '--score-thr', '0', env=QUIET_OMP_ENV)
    assert f'wrote {out}' in proc.stdout
    assert re.search(r'^\s+\S.*\s\d\.\d{3}\s+\[', proc.stdout, re.M), proc.stdout
    drawn, original = mmcv.imread(str(out)), mmcv.imread(image)
    assert drawn.shape == original.shape
    assert (np.abs(drawn.astype(int) - original.astype(int)).max(axis=2) > 60).mean() > 0.001  # boxes painted
    return proc


class DemoRun(NamedTuple):
    """What ``tools/demo/detection_demo.py`` printed: bbox mAP@[.5:.95] and mean loss, before and after."""
    untrained_ap: float
    trained_ap: float
    first_loss: float
    last_loss: float
    log: str


_DEMO_AP = re.compile(r'bbox mAP@\[\.5:\.95\] on \d+ val images: untrained (\d\.\d+) -> trained (\d\.\d+)')
_DEMO_LOSS = re.compile(r'loss \(mean of \d+ iterations\): (\d+\.\d+) at the start -> (\d+\.\d+) at the end')


def run_detection_demo(out_dir: str, seed: int, *args: str) -> DemoRun:
    """Train and score the detection demo (``args``: e.g. ``--config CONFIG``) with ``seed``."""
    proc = run_tool(
        'tools/demo/detection_demo.py',
        '--out-dir',
        str(out_dir),
        *args,
        '--cfg-options',
        f'randomness.seed={seed}',
        timeout=1800)
    log = proc.stdout + proc.stderr
    untrained, trained = (float(v) for v in _DEMO_AP.search(log).groups())
    first, last = (float(v) for v in _DEMO_LOSS.search(log).groups())
    return DemoRun(untrained, trained, first, last, log)
