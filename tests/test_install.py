"""tools/install.sh: refuses unsupported set-ups before installing anything; `make install` is a no-op
once installed."""
import os
import stat
import subprocess

from conftest import REPO


def _install(tmp_path, **env):
    full = dict(os.environ, VENV=str(tmp_path / 'venv'), WHEELHOUSE=str(tmp_path / 'wheels'), **env)
    return subprocess.run(['bash', 'tools/install.sh'], cwd=REPO, env=full, capture_output=True, text=True,
                          timeout=120)


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
        import pytest
        pytest.skip('not installed through make (no stamp file)')
    proc = subprocess.run(['make', '-q', 'install'], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, 'make install would redo work although nothing changed'
