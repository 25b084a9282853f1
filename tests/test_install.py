"""tools/install.sh: refuses unsupported set-ups before installing anything, ends every failure with one
`[install] ERROR:` line, builds mmcv when no wheel fits and reuses the stored wheel; `make install` is a
no-op once installed."""
import os
import stat
import subprocess
import sys

import pytest

from conftest import REPO
from stack_view import venv_seeing_the_stack


def _install(tmp_path, **env):
    full = dict(os.environ, VENV=str(tmp_path / 'venv'), WHEELHOUSE=str(tmp_path / 'wheels'), **env)
    return subprocess.run(['bash', 'tools/install.sh'], cwd=REPO, env=full, capture_output=True, text=True, timeout=120)


def test_unsupported_python_stops_before_anything_is_installed(tmp_path):
    fake = tmp_path / 'python3.7'
    fake.write_text('#!/bin/sh\necho 3.7\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    proc = _install(tmp_path, PYTHON=str(fake))
    assert proc.returncode != 0
    assert 'Python 3.7 is not supported' in proc.stderr and '3.8-3.12' in proc.stderr
    assert not (tmp_path / 'venv').exists()


def test_missing_interpreter_is_named(tmp_path):
    proc = _install(tmp_path, PYTHON='/nonexistent/python3.11')
    assert proc.returncode != 0 and "'/nonexistent/python3.11'" in proc.stderr


def test_missing_compiler_stops_when_mmcv_must_be_built(tmp_path):
    (tmp_path / 'wheels').mkdir()  # an empty wheelhouse: mmcv would have to be compiled
    proc = _install(tmp_path, CXX='/nonexistent/g++')
    assert proc.returncode != 0
    assert "compiler '/nonexistent/g++' is missing" in proc.stderr and 'WHEELHOUSE' in proc.stderr
    assert not (tmp_path / 'venv').exists()


def test_make_install_is_up_to_date_once_installed():
    venv = os.environ.get('VENV', '.venv')
    if not os.path.exists(os.path.join(REPO, venv, '.mmeffnet-installed')):
        pytest.skip('not installed through make (no stamp file)')
    proc = subprocess.run(['make', '-q', 'install'], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, 'make install would redo work although nothing changed'


def _known_good_wheel() -> str:
    """A built mmcv wheel for this Python, from the wheelhouse this suite was installed with."""
    import glob
    tag = 'cp%d%d' % sys.version_info[:2]
    houses = [
        os.environ.get('WHEELHOUSE', ''),
        os.path.join(REPO, '..', 'shared', 'wheels'),
        os.path.expanduser('~/.cache/mmeffnet/wheels')
    ]
    for house in filter(None, houses):
        found = sorted(glob.glob(os.path.join(house, f'mmcv-2.1.0-{tag}-{tag}-*.whl')))
        if found:
            return found[0]
    pytest.skip(f'no built mmcv wheel for {tag} in WHEELHOUSE or ../shared/wheels to stand in for the build')


def _make_install(venv: str, wheels, build_cmd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MMCV_BUILD_CMD=build_cmd)
    for name in ('VIRTUAL_ENV', 'PYTHONPATH'):
        env.pop(name, None)
    return subprocess.run(['make', 'install', f'VENV={venv}', f'WHEELHOUSE={wheels}', f'PYTHON={sys._base_executable}'],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=900)


def _install_errors(proc: subprocess.CompletedProcess) -> list:
    return [line for line in proc.stderr.splitlines() if line.startswith('[install] ERROR:')]


def test_no_wheel_path_builds_stores_and_reuses_the_wheel(tmp_path):
    """The path every user without a prebuilt wheel takes: the build command runs once, its wheel is
    stored in the wheelhouse and runs mmcv's ops; a second install reuses it without building. A
    stand-in build command copies a known good wheel (the real compile takes 12-30 minutes)."""
    good = _known_good_wheel()
    tag = 'cp%d%d' % sys.version_info[:2]
    wheels = tmp_path / 'wheels'
    wheels.mkdir()
    corrupt = wheels / os.path.basename(good)
    corrupt.write_bytes(b'PK\x03\x04 this is not a whole wheel')
    other_tag = wheels / os.path.basename(good).replace(f'{tag}-{tag}', 'cp39-cp39')
    other_tag.write_bytes(b'not for this Python')
    log = tmp_path / 'builds.log'
    fake_build = tmp_path / 'fake_build.sh'
    fake_build.write_text(f'#!/bin/sh\necho "MAX_JOBS=$MAX_JOBS $1" >> {log}\ncp {good} "$1"/\n')

    # 1. The build itself fails: one ERROR line naming the step, no bare make error only.
    venv1 = venv_seeing_the_stack(tmp_path, 'venv1', hide=('mmcv', ))
    failed = _make_install(venv1, wheels, 'false')
    assert failed.returncode != 0
    errors = _install_errors(failed)
    assert errors[0].startswith(f'[install] ERROR: {corrupt} is corrupt'), failed.stderr
    assert errors[1].startswith('[install] ERROR: building mmcv 2.1.0 from source (false) failed'), failed.stderr
    assert len(errors) == 2, errors
    assert f'ignoring {other_tag}: it is not built for this Python ({tag})' in failed.stdout + failed.stderr

    # 2. The build works: the wheel replaces the corrupt one in the wheelhouse and mmcv's ops run.
    built = _make_install(venv1, wheels, f'sh {fake_build}')
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert log.read_text().count('\n') == 1 and log.read_text().startswith(f'MAX_JOBS={os.cpu_count()} ')
    assert corrupt.read_bytes() == open(good, 'rb').read()
    assert f'stored {corrupt}' in built.stdout
    nms = subprocess.run([
        os.path.join(venv1, 'bin', 'python'), '-c', 'import torch, mmcv; from mmcv.ops import nms; '
        'b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]]); '
        'print(mmcv.__file__, nms(b, torch.tensor([.9, .8, .7]), .5)[1].tolist())'
    ],
                         capture_output=True,
                         text=True,
                         timeout=120)
    assert nms.returncode == 0, nms.stderr
    mmcv_file, keep = nms.stdout.split(' ', 1)
    assert mmcv_file.startswith(venv1) and keep.strip() == '[0, 2]'
    assert subprocess.run(['make', '-q', 'install', f'VENV={venv1}'], cwd=REPO).returncode == 0

    # 3. Another fresh venv with the same wheelhouse: the stored wheel is reused, nothing is built.
    venv2 = venv_seeing_the_stack(tmp_path, 'venv2', hide=('mmcv', ))
    reused = _make_install(venv2, wheels, f'sh {fake_build}')
    assert reused.returncode == 0, reused.stdout[-3000:] + reused.stderr[-3000:]
    assert f'installing mmcv from the wheelhouse: {corrupt}' in reused.stdout
    assert log.read_text().count('\n') == 1, 'the second install built mmcv again'
    assert not _install_errors(reused)


def test_wheel_for_another_python_is_ignored_with_a_message(tmp_path):
    tag = 'cp%d%d' % sys.version_info[:2]
    wheels = tmp_path / 'wheels'
    wheels.mkdir()
    other = wheels / 'mmcv-2.1.0-cp39-cp39-linux_x86_64.whl'
    other.write_bytes(b'x')
    proc = _install(tmp_path, CXX='/nonexistent/g++')  # so the run stops in the preflight
    assert f'ignoring {other}: it is not built for this Python ({tag})' in proc.stdout + proc.stderr
    assert _install_errors(proc) == [_install_errors(proc)[-1]] and "compiler '/nonexistent/g++'" in proc.stderr
    assert not (tmp_path / 'venv').exists()


def test_corrupt_wheel_is_an_error_then_the_build_path(tmp_path):
    tag = 'cp%d%d' % sys.version_info[:2]
    wheels = tmp_path / 'wheels'
    wheels.mkdir()
    corrupt = wheels / f'mmcv-2.1.0-{tag}-{tag}-linux_x86_64.whl'
    corrupt.write_bytes(b'PK\x03\x04 truncated')
    proc = _install(tmp_path, CXX='/nonexistent/g++')  # the build path's preflight: no compiler
    errors = _install_errors(proc)
    assert len(errors) == 2, proc.stderr
    assert errors[0].startswith(f'[install] ERROR: {corrupt} is corrupt') and 'built from source' in errors[0]
    assert "compiler '/nonexistent/g++' is missing" in errors[1]
    assert not (tmp_path / 'venv').exists()
