"""What our command-line tools set up for their own process, done on import: each tool has the one line

    import mmeffnet.tool_entry  # noqa: F401

Library code never imports this module, so ``import mmeffnet`` changes nothing global.

- Known noise is silenced, and only it: mmengine 0.10 asks ``pkg_resources`` whether the package of
  each ``mmdet::``-style base is installed (``mmengine.utils.package_utils.is_installed``), importing
  and then reloading ``pkg_resources`` every time, and setuptools warns "pkg_resources is deprecated
  as an API" on each: four lines before anything else for a config with four toolbox bases.
- ``mmeffnet::`` config bases are enabled (``mmeffnet.config.package_bases``).
"""
import warnings

from .config.package_bases import enable_mmeffnet_bases

PKG_RESOURCES_DEPRECATED = r'pkg_resources is deprecated as an API'
# The modules the warning is attributed to: mmengine's `import pkg_resources` for the first base,
# then `importlib.reload(pkg_resources)` (the importlib module) for each base after it.
PKG_RESOURCES_USERS = r'(mmengine\.utils\.package_utils|importlib)$'


def silence_pkg_resources_deprecation() -> None:
    """Ignore setuptools' pkg_resources deprecation warning where mmengine triggers it, nothing else."""
    # Older setuptools warn with DeprecationWarning, setuptools 80 with UserWarning (same message).
    for category in (DeprecationWarning, UserWarning):
        warnings.filterwarnings('ignore', PKG_RESOURCES_DEPRECATED, category, PKG_RESOURCES_USERS)


def prepare_tool_process() -> None:
    """Everything a tool of ours sets up for its process (idempotent)."""
    silence_pkg_resources_deprecation()
    enable_mmeffnet_bases()


prepare_tool_process()
