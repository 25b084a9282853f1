"""Hook injection: what ``tools/train.py`` adds to every training config so that runs survive kills and NaNs.

- ``default_hooks.checkpoint``: mmengine's ``CheckpointHook`` becomes ``mmeffnet.SafeCheckpointHook``
  with the same arguments (atomic saves, a ``last_checkpoint`` that always names a complete file,
  the random state saved and restored: ``mmeffnet/runtime/checkpoint_hook.py``);
- ``custom_hooks``: ``mmeffnet.NonFiniteLossHook`` with the action of the config key
  ``nonfinite_loss`` (``'stop'``, the default, or ``'skip'``: ``mmeffnet/runtime/nonfinite.py``),
  unless the config already has one.
"""
from mmengine.config import Config

from ..runtime.nonfinite import ACTIONS

CHECKPOINT_HOOKS = ('CheckpointHook', 'mmengine.CheckpointHook')
SAFE_CHECKPOINT_HOOK = 'mmeffnet.SafeCheckpointHook'
NONFINITE_HOOK = 'mmeffnet.NonFiniteLossHook'


def add_reliability_hooks(cfg: Config) -> None:
    """Edit ``cfg`` in place as the module docstring says."""
    action = cfg.get('nonfinite_loss', 'stop')
    if action not in ACTIONS:
        raise ValueError(f'config nonfinite_loss={action!r} is invalid: choose one of {ACTIONS} '
                         '(--cfg-options nonfinite_loss=skip)')
    hooks = cfg.get('default_hooks') or {}
    checkpoint = hooks.get('checkpoint')
    if checkpoint is not None and checkpoint.get('type') in CHECKPOINT_HOOKS:
        checkpoint['type'] = SAFE_CHECKPOINT_HOOK
    custom = list(cfg.get('custom_hooks') or [])
    if not any(str(h.get('type', '')).endswith('NonFiniteLossHook') for h in custom):
        custom.append(dict(type=NONFINITE_HOOK, action=action))
    cfg.custom_hooks = custom
