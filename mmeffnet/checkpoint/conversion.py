"""The conversion dispatch: which implementation a state dict comes from, and its way to ours.

Sources: timm, torchvision, lukemelas ``efficientnet_pytorch``, mmpretrain/mmdet, and official TF
checkpoints. A state dict's *layout* (its key names) is detected, the source's renames
(``mmeffnet/converters/from_*.py``) bring it to the canonical form (``converters/canonical.py``),
and the network plan places its blocks on mmeffnet's levels; the arch is recognised from the
shapes. :func:`convert_to_mmeffnet` serves ``Pretrained`` loading of a backbone;
:func:`convert_checkpoint` + :func:`save_converted` serve
``tools/model_converters/convert_efficientnet.py``.
"""
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
import torch.nn as nn

from ..arch import ARCHS, build_network_spec, resolve_arch
from ..converters import from_lukemelas, from_mmpretrain, from_tf, from_timm, from_torchvision
from ..converters.canonical import ConversionError, infer_arch, num_blocks, to_mmeffnet, with_batch_counters
from .atomic_write import atomic_torch_save
from .reading import extract_state_dict, read_checkpoint

#: Where weights come from (``--src`` of the converter tool).
SOURCES = ('timm', 'torchvision', 'mmpretrain', 'lukemelas', 'tf')
_TO_CANONICAL = {
    'mmeffnet': from_mmpretrain.to_canonical,
    'timm': from_timm.to_canonical,
    'torchvision': from_torchvision.to_canonical,
    'lukemelas': from_lukemelas.to_canonical
}
_LAYOUT_OF_SOURCE = {
    'timm': 'timm',
    'torchvision': 'torchvision',
    'mmpretrain': 'mmeffnet',
    'lukemelas': 'lukemelas',
    'tf': 'tf'
}
_SOURCE_OF_LAYOUT = {layout: source for source, layout in _LAYOUT_OF_SOURCE.items()}
TF_EPS = 1e-3  # BN eps of every TF-trained EfficientNet (and of mmeffnet's default norm_cfg)


def detect_layout(state: Dict[str, torch.Tensor]) -> str:
    """Which implementation's key names ``state`` uses (backbone keys, prefix already removed)."""
    keys = set(state)
    if any(k.startswith('layers.0.') for k in keys):
        return 'mmeffnet'
    if 'conv_stem.weight' in keys:
        return 'timm'
    if 'features.0.0.weight' in keys:
        return 'torchvision'
    if '_conv_stem.weight' in keys:
        return 'lukemelas'
    prefixes = sorted({k.split('.')[0] for k in keys})
    raise ConversionError(
        'unrecognised checkpoint layout: expected mmpretrain/mmeffnet (layers.0.*), timm (conv_stem.*), '
        f'torchvision (features.0.0.*) or lukemelas (_conv_stem.*) keys; its top-level names are '
        f'{prefixes[:8]}' + (' (a whole-model checkpoint? set prefix=\'backbone\')' if 'backbone' in prefixes else ''))


def to_canonical(state: Dict[str, torch.Tensor], layout: str) -> Dict[str, torch.Tensor]:
    """``state`` (in ``layout``'s names) in the canonical form of ``canonical.py``."""
    return _TO_CANONICAL[layout](state)


def recognise_arch(state: Dict[str, torch.Tensor]) -> Optional[str]:
    """The arch whose shapes ``state`` (any known layout) has, or None."""
    try:
        return infer_arch(to_canonical(state, detect_layout(state)))
    except ConversionError:
        return None


def expected_settings(layout: str, arch: Optional[str] = None, model_name: Optional[str] = None) -> dict:
    """The ``padding`` and BN ``norm_eps`` that reproduce a source's outputs, as far as the source
    tells: timm needs its model name (``tf_*`` vs ``efficientnet_*``), an mmeffnet-layout state
    dict may come from anywhere (its checkpoint meta says)."""
    if layout == 'timm':
        return (from_timm.settings_for_model_name(model_name) if model_name else None) or {}
    if layout == 'torchvision':
        return dict(padding='symmetric', norm_eps=from_torchvision.norm_eps_for_arch(arch or ''))
    if layout in ('lukemelas', 'tf'):
        return dict(padding='same', norm_eps=TF_EPS)
    return {}


def convert_to_mmeffnet(state: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """``state`` in mmeffnet's layout for the backbone ``model`` (unchanged if it already is);
    the classifier of a foreign checkpoint is dropped. The blocks are placed by the checkpoint's
    own arch (from its shapes), so a checkpoint of another arch fails the strict load with a
    useful key listing instead of being squeezed into this one."""
    layout = detect_layout(state)
    if layout == 'mmeffnet':
        return state
    canon = to_canonical(state, layout)
    arch = infer_arch(canon)
    spec = build_network_spec(arch) if arch is not None else model.spec
    return to_mmeffnet(with_batch_counters(canon), spec)


# ----------------------------------------------------------------------------- the CLI's path
@dataclass
class Converted:
    """A converted checkpoint: mmpretrain ImageClassifier layout plus what it needs to be used."""
    state_dict: Dict[str, torch.Tensor]
    meta: dict
    ignored_keys: list = field(default_factory=list)


def _arch_key(name: str) -> str:
    """Our arch name for a timm/torchvision/lukemelas/TF model name or our own name."""
    base = name.split('.')[0].lower()
    base = re.sub(r'^tf_', '', base)
    resolve_arch(base)  # raises KeyError listing the valid names
    return base.replace('efficientnet-', '').replace('efficientnet_', '')


def _timm_name_in_path(path: str) -> Optional[str]:
    """A timm model name in a checkpoint path, e.g. ``.../tf_efficientnet_b3.ns_jft_in1k/model.safetensors``
    or ``tf_efficientnet_b0_aa-827b6e33.pth``."""
    m = re.search(r'(?:tf_)?efficientnet_(?:b\d|l2|lite\d)', path.lower())
    return m.group(0) if m else None


def _split_whole_model(state: Dict[str, torch.Tensor]):
    """Backbone keys (``backbone.`` removed) + ``head.fc.*`` of a whole-model checkpoint; the
    remaining keys (neck, detection head...) are returned as ignored."""
    if not any(k.startswith('backbone.') for k in state):
        return state, []
    kept, ignored = {}, []
    for key, value in state.items():
        if key.startswith('backbone.'):
            kept[key[len('backbone.'):]] = value
        elif key.startswith('head.fc.'):
            kept[key] = value
        else:
            ignored.append(key)
    return kept, ignored


def _read_source(src: str, path: str):
    """(state dict, checkpoint meta) of a local file; TF checkpoints as their variables."""
    if src == 'tf':
        return from_tf.read_variables(path), {}
    if not osp.exists(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    checkpoint = read_checkpoint(path)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return extract_state_dict(checkpoint, path), meta if isinstance(meta, dict) else {}


def convert_checkpoint(src: str, path: str, arch: Optional[str] = None, use_ema: bool = True) -> Converted:
    """Convert the local checkpoint ``path`` from ``src`` to mmeffnet's layout.

    ``arch`` may be our name (``b3``) or the source's model name (``tf_efficientnet_b3``,
    ``efficientnet-b3``); when omitted it is recognised from the shapes. For timm the model name
    (from ``arch`` or the path) is needed to know the padding and BN eps.
    """
    if src not in SOURCES:
        raise ValueError(f'unknown --src {src!r}; choose one of {", ".join(SOURCES)}')
    state, meta_in = _read_source(src, path)
    return convert_state(src, state, arch, meta_in, path, use_ema)


def convert_state(src: str,
                  state: Dict[str, object],
                  arch: Optional[str] = None,
                  meta_in: Optional[dict] = None,
                  path: str = '<state dict>',
                  use_ema: bool = True) -> Converted:
    """``convert_checkpoint`` on an already-read state dict (for ``src='tf'``: the checkpoint's
    variables, name -> array)."""
    if src not in SOURCES:
        raise ValueError(f'unknown --src {src!r}; choose one of {", ".join(SOURCES)}')
    ignored = []
    if src == 'tf':
        canon = from_tf.to_canonical(state, use_ema=use_ema)
        model_name = from_tf.model_scope(from_tf.select_weights(state, use_ema))
    else:
        state, ignored = _split_whole_model(state)
        layout = detect_layout(state)
        if layout != _LAYOUT_OF_SOURCE[src]:
            raise ConversionError(f'{path} is a {_SOURCE_OF_LAYOUT[layout]} checkpoint by its key names, '
                                  f'not {src}: use --src {_SOURCE_OF_LAYOUT[layout]}')
        canon = to_canonical(state, layout)
        model_name = None

    found = infer_arch(canon)
    if found is None:
        raise ConversionError(f'the tensors of {path} match no EfficientNet arch ({", ".join(ARCHS)}): '
                              f'{num_blocks(canon)} blocks, stem {tuple(canon["stem.conv.weight"].shape)}')
    if arch is not None:
        try:
            wanted = _arch_key(arch)
        except KeyError as exc:
            raise ConversionError(f'--arch {arch!r}: {exc.args[0]}') from None
        if wanted != found:
            raise ConversionError(f'{path} holds an EfficientNet-{found} (by its tensor shapes), not '
                                  f'--arch {arch}: pass --arch {found} or the right file')
    if src == 'timm':  # the model name (from --arch, else from the path) tells tf_* from efficientnet_*
        names = [arch, _timm_name_in_path(path)]
        model_name = next((n for n in names if n and from_timm.settings_for_model_name(n) and _arch_key(n) == found),
                          None)
    settings = _settings(src, found, model_name, meta_in or {})

    backbone = to_mmeffnet(with_batch_counters(canon), build_network_spec(found), classifier_prefix='head.fc')
    state_dict = {(k if k.startswith('head.fc.') else f'backbone.{k}'): v.contiguous() for k, v in backbone.items()}
    meta = dict(
        source=src,
        arch=found,
        padding=settings['padding'],
        norm_eps=settings['norm_eps'],
        source_file=osp.basename(osp.normpath(path)),
        converted_by='mmeffnet')
    if model_name:
        meta['source_model'] = model_name
    if 'fc.weight' in canon:
        meta['num_classes'] = int(canon['fc.weight'].shape[0])
    if src == 'tf':
        meta['tf_ema'] = bool(use_ema)
    return Converted(state_dict, meta, ignored)


def _settings(src: str, arch: str, model_name: Optional[str], meta_in: dict) -> dict:
    if src == 'mmpretrain':  # mmpretrain pads like TF SAME; our own converted files say otherwise
        return dict(padding=meta_in.get('padding', 'same'), norm_eps=meta_in.get('norm_eps', TF_EPS))
    settings = expected_settings(_LAYOUT_OF_SOURCE[src], arch, model_name)
    if not settings:
        raise ConversionError(
            f'cannot tell whether this timm checkpoint is a tf_efficientnet_{arch} (TF SAME padding, BN '
            f'eps 1e-3) or an efficientnet_{arch} (symmetric padding, eps 1e-5): pass the timm model '
            f'name, e.g. --arch tf_efficientnet_{arch}')
    return settings


def save_converted(converted: Converted, out: str) -> None:
    """Write ``{'state_dict', 'meta'}`` to ``out`` atomically, so an interrupted run never leaves a
    truncated checkpoint behind."""
    atomic_torch_save(dict(state_dict=converted.state_dict, meta=converted.meta), out)
