"""Checkpoints: reading them safely, fitting them to a model strictly, writing them atomically, and
converting other implementations' weights to ours.

==========================  =====================================================================
``reading.py``              ``safe_torch_load`` (``weights_only`` plus mmengine's types),
                            ``read_checkpoint``, ``extract_state_dict``
``fitting.py``              ``check_and_load``: load only if every key fits, else an error
``atomic_write.py``         ``atomic_write_bytes``: the one atomic file write of the package
``conversion.py``           layout detection and the dispatch to ``mmeffnet/converters/``
``backbone_loading.py``     ``load_backbone_checkpoint``: ``Pretrained`` init of a backbone
``errors.py``               ``CheckpointReadError``, ``CheckpointMismatchError``
==========================  =====================================================================

Nothing here touches mmengine's state; making mmengine's own loader safe is an opt-in
(``mmeffnet/runtime/safe_loading.py``).
"""
from ..converters.canonical import ConversionError
from .atomic_write import atomic_torch_save, atomic_write_bytes, remove_stale_partials
from .backbone_loading import load_backbone_checkpoint
from .conversion import SOURCES, Converted, convert_checkpoint, convert_state, save_converted
from .errors import CheckpointMismatchError, CheckpointReadError
from .fitting import check_and_load
from .reading import extract_state_dict, is_local_path, read_checkpoint, read_state_dict, safe_torch_load

__all__ = [
    'CheckpointMismatchError', 'CheckpointReadError', 'ConversionError', 'Converted', 'SOURCES', 'atomic_torch_save',
    'atomic_write_bytes', 'check_and_load', 'convert_checkpoint', 'convert_state', 'extract_state_dict',
    'is_local_path', 'load_backbone_checkpoint', 'read_checkpoint', 'read_state_dict', 'remove_stale_partials',
    'safe_torch_load', 'save_converted'
]
