"""mmeffnet: EfficientNet as a backbone of the OpenMMLab stack (mmdet, mmseg, mmpretrain)."""
from setuptools import find_packages, setup


def read_version() -> str:
    scope: dict = {}
    with open('mmeffnet/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(path: str) -> list:
    with open(path) as f:
        return [line.split('#')[0].strip() for line in f if line.split('#')[0].strip()]


setup(
    name='mmeffnet',
    version=read_version(),
    description='EfficientNet (Tan & Le, ICML 2019) as a first-class OpenMMLab backbone',
    long_description=open('README.md').read() if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmeffnet', 'mmeffnet.*']),
    python_requires='>=3.8,<3.13',
    # torch and mmcv (with compiled ops) are installed by tools/install.sh: see README.
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={'tests': read_requirements('requirements/tests.txt')},
    license='Apache-2.0',
    classifiers=['Programming Language :: Python :: 3', 'Topic :: Scientific/Engineering :: Artificial Intelligence'],
)
