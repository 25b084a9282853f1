"""mmeffnet: EfficientNet as a backbone of the OpenMMLab stack (mmdet, mmseg, mmpretrain)."""
import os
import os.path as osp
import shutil
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from typing import List

HERE = osp.dirname(osp.abspath(__file__))
# What OpenMMLab packages keep in <package>/.mim (mmdet's `add_mim_extension`): mmengine reads
# `mmeffnet::x.py` bases from .mim/configs and mim reads the model index from .mim/model-index.yml.
MIM_FILES = ('configs', 'model-index.yml')
MIM_DIR = osp.join('mmeffnet', '.mim')


def read_version() -> str:
    scope: dict = {}
    with open(osp.join(HERE, 'mmeffnet', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(path: str) -> List[str]:
    with open(osp.join(HERE, path)) as f:
        return [line.split('#')[0].strip() for line in f if line.split('#')[0].strip()]


def _remove(path: str) -> None:
    if osp.islink(path) or osp.isfile(path):
        os.remove(path)
    elif osp.isdir(path):
        shutil.rmtree(path)


def link_mim_files(package_dir: str) -> None:
    """Editable install: ``mmeffnet/.mim/<name>`` are relative links to the checkout's files, so an
    edited config is what ``mmeffnet::`` bases read, with no reinstall (mmdet's 'symlink' mode).
    Where links cannot be made (Windows without the privilege), copies stand in."""
    mim = osp.join(package_dir, '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(HERE, name), osp.join(mim, name)
        _remove(dst)
        try:
            os.symlink(osp.relpath(src, mim), dst)
        except OSError:
            shutil.copytree(src, dst) if osp.isdir(src) else shutil.copyfile(src, dst)


def copy_mim_files(mim: str) -> None:
    """Wheel: copies into the build folder only (never into the source tree), the config folders'
    .py and .yml files; what a previous build left there is cleared first."""
    _remove(mim)
    os.makedirs(mim)
    for name in MIM_FILES:
        src = osp.join(HERE, name)
        if osp.isdir(src):
            shutil.copytree(src, osp.join(mim, name), ignore=shutil.ignore_patterns('__pycache__', '*.pyc', '.*'))
        else:
            shutil.copyfile(src, osp.join(mim, name))


class BuildPyWithMim(build_py):
    """build_py that also ships configs/ and model-index.yml under mmeffnet/.mim, as mmdet does."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):  # pip install -e . (PEP 660)
            link_mim_files(osp.join(HERE, 'mmeffnet'))
        else:
            copy_mim_files(osp.join(self.build_lib, MIM_DIR))


setup(
    name='mmeffnet',
    version=read_version(),
    description='EfficientNet (Tan & Le, ICML 2019) as a first-class OpenMMLab backbone',
    long_description=open(osp.join(HERE, 'README.md')).read() if osp.exists(osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmeffnet', 'mmeffnet.*']),
    cmdclass={'build_py': BuildPyWithMim},
    python_requires='>=3.8,<3.13',
    # torch and mmcv (with compiled ops) are installed by tools/install.sh: see README.
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={
        'tests': read_requirements('requirements/tests.txt'),
        'lint': read_requirements('requirements/lint.txt'),
    },
    license='Apache-2.0',
    classifiers=['Programming Language :: Python :: 3', 'Topic :: Scientific/Engineering :: Artificial Intelligence'],
)
