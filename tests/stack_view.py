"""Fresh virtual environments that see this suite's installed stack without a copy of it.

Installing torch (5.5 GB) per test venv would take minutes. Instead a ``.pth`` file points the new
venv at a folder of links to this venv's site-packages, minus what the test must install itself
(always mmeffnet; e.g. also mmcv for the install script's tests). pip never uninstalls outside a
venv, so installing into the new one leaves this suite's venv as it was.
"""
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Sequence

# Never linked: mmeffnet itself with its editable-install finder; nor any .pth file (this venv's
# import hooks). A venv made with pip has setuptools of its own, ahead of the view on sys.path.
ALWAYS_HIDDEN = ('mmeffnet', '__editable__')


def _site_view(root: Path, hide: Sequence[str]) -> Path:
    hidden = tuple(ALWAYS_HIDDEN) + tuple(hide)
    view = root / ('site-view' + ''.join(f'-no-{name}' for name in hide))
    if not view.exists():
        view.mkdir(parents=True)
        site = sysconfig.get_paths()['purelib']
        for entry in os.listdir(site):
            if entry.startswith(hidden) or entry.endswith('.pth'):
                continue
            (view / entry).symlink_to(os.path.join(site, entry))
    return view


def venv_seeing_the_stack(root: Path, name: str, hide: Sequence[str] = (), with_pip: bool = True) -> str:
    """Make ``root/name``, a venv whose Python imports this suite's packages except mmeffnet and
    those whose names start with one of ``hide``; returns its folder. ``with_pip=False`` skips
    ensurepip (seconds): pip is then this suite's, seen through the view, and installs into the
    new venv all the same."""
    view = _site_view(Path(root), hide)
    venv = Path(root) / name
    pip_option = [] if with_pip else ['--without-pip']
    subprocess.run([sys._base_executable, '-m', 'venv', *pip_option, str(venv)], check=True, timeout=120)
    where = 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
    new_site = subprocess.run([str(venv / 'bin' / 'python'), '-c', where], check=True, capture_output=True, text=True)
    with open(os.path.join(new_site.stdout.strip(), 'stack-view.pth'), 'w') as f:
        f.write(str(view) + '\n')
    return str(venv)
