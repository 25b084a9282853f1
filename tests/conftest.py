"""Shared test fixtures: where the real sample datasets live, and small helpers."""
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
