"""Shared test fixtures: where the real sample datasets live, and small helpers."""
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.normpath(osp.join(REPO, '..', 'shared', 'data'))
CONFIGS = osp.join(REPO, 'configs')
TOOLS = osp.join(REPO, 'tools')


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
