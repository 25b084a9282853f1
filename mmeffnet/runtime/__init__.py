"""Run-time integration with mmengine for our tools and for configs that opt in: safe checkpoint
loading (``safe_loading.py``), kill-safe checkpoint saves and exact resumes (``checkpoint_hook.py``,
``atomic_storage.py``, ``rng_state.py``, ``resume.py``), the checks of a checkpoint against the built
model (``load_checks.py``), the non-finite loss guard (``nonfinite.py``, ``reliability.py``), and
the command-line set-up of ``tools/train.py`` / ``tools/test.py`` (``cli.py``, ``distributed.py``).

Importing any of it changes nothing outside mmeffnet; each effect is a function our tools call or a
hook a config names.
"""
from .safe_loading import (SafeCheckpointLoadingHook, install_safe_checkpoint_loading, safe_checkpoint_loading,
                           uninstall_safe_checkpoint_loading)

__all__ = [
    'SafeCheckpointLoadingHook', 'install_safe_checkpoint_loading', 'safe_checkpoint_loading',
    'uninstall_safe_checkpoint_loading'
]
