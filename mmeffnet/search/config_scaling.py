"""Scale an OpenMMLab config (mmpretrain, mmdet or mmseg) whose model holds ``mmeffnet.EfficientNet``.

What changes, for multipliers ``(depth, width, resolution)``:

- the backbone's ``arch`` becomes ``dict(width_mult, depth_mult, resolution)``, the config's own
  multipliers times these (channels and repeats are then rounded as the TF release does);
- every input size of the data pipelines (crops, resizes, pads), of the data preprocessor
  (``size``, ``BatchFixedSizePad``, and a ``pad_size_divisor`` that pads to the square input size,
  as the EfficientDet configs' does) and of mmseg's sliding-window ``test_cfg`` is multiplied by the
  resolution multiplier and rounded to a multiple of ``size_divisor`` (1 for classification, 32,
  the backbone's output stride, for detection and segmentation);
- the ``in_channels`` of whatever reads the backbone's features (the neck, or the heads when there
  is no neck or a channel-preserving one such as global pooling) are set to the channels of the
  scaled backbone, read from its network plan (``mmeffnet.arch``);
- the backbone's ``init_cfg`` is dropped: ImageNet weights of the baseline do not fit other shapes.

Necks and heads keep their own widths: eq. 3 scales the ConvNet, not what is put on top of it.
"""
import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config

from ..arch import build_network_spec, resolve_arch
from ..config import toolbox_of, walk_dicts_with_paths
from ..models.efficientnet import EfficientNet

BACKBONE_TYPE = 'mmeffnet.EfficientNet'
STRIDE_DIVISOR = 32

# transform type -> keys holding pixel sizes (int, (w, h) / (h, w), or lists of them)
SIZE_KEYS: Dict[str, Tuple[str, ...]] = {
    # mmpretrain
    'RandomResizedCrop': ('scale', ),
    'EfficientNetRandomCrop': ('scale', ),
    'ResizeEdge': ('scale', ),
    'CenterCrop': ('crop_size', ),
    'EfficientNetCenterCrop': ('crop_size', ),
    # shared by the toolboxes (mmcv / mmdet / mmseg)
    'Resize': ('scale', ),
    'RandomResize': ('scale', ),
    'RandomChoiceResize': ('scales', ),
    'RandomCrop': ('crop_size', ),
    'Pad': ('size', ),
    'FixShapeResize': ('width', 'height'),
    'RandomCenterCropPad': ('crop_size', ),
    'Mosaic': ('img_scale', ),
    'MixUp': ('img_scale', ),
    'ResizeShortestEdge': ('scale', ),
    # data preprocessors and their batch augments
    'SegDataPreProcessor': ('size', ),
    'BatchFixedSizePad': ('size', ),
    'BatchSyncRandomResize': ('random_size_range', ),
}
# Keys that look like sizes in a transform we do not know: reported, left as they are.
SIZE_LIKE_KEYS = ('scale', 'scales', 'crop_size', 'img_scale', 'size')
# Plain top-level variables the toolbox configs use for the input size (kept consistent in dumps).
SIZE_VARIABLES = ('crop_size', 'image_size', 'img_scale', 'img_size')
# Model children that read the backbone's features directly when there is no neck with in_channels.
HEAD_KEYS = ('head', 'decode_head', 'auxiliary_head', 'bbox_head', 'rpn_head')


@dataclass(frozen=True)
class Multipliers:
    """What one model of the family multiplies: depth, width and the input resolution."""
    depth: float
    width: float
    resolution: float

    def __post_init__(self):
        for name in ('depth', 'width', 'resolution'):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f'{name} multiplier must be positive, got {name}={value!r}')


@dataclass
class ScaledConfig:
    """A scaled copy of a config and what was changed in it (``key: old -> new`` lines)."""
    cfg: Config
    arch: dict
    out_channels: Tuple[int, ...]
    changes: List[str] = field(default_factory=list)
    unscaled: List[str] = field(default_factory=list)


def _type_name(node: dict) -> str:
    t = node.get('type')
    if isinstance(t, str):
        return t.split('.')[-1]
    return getattr(t, '__name__', '') if t is not None else ''


def find_backbone(cfg: Config) -> Tuple[dict, dict, str]:
    """``(backbone dict, the dict holding it, its path)`` of the one ``mmeffnet.EfficientNet`` in
    ``cfg.model``; ``ValueError`` naming what is there instead when there is none."""
    model = cfg.get('model')
    if not isinstance(model, dict):
        raise ValueError('the config has no model dict')
    hits, parents = [], {}
    for path, node in walk_dicts_with_paths(model, 'model'):
        for key, child in node.items():
            if isinstance(child, dict):
                parents[id(child)] = node
        if node.get('type') == BACKBONE_TYPE:
            hits.append((node, parents.get(id(node), model), path))
    if len(hits) > 1:
        raise ValueError(f'the config holds {len(hits)} {BACKBONE_TYPE} ({", ".join(h[2] for h in hits)}); '
                         'compound scaling needs exactly one')
    if not hits:
        backbone = model.get('backbone')
        found = f"model.backbone.type={backbone.get('type')!r}" if isinstance(backbone, dict) else 'no model.backbone'
        hint = (" (that is the toolbox's own EfficientNet; use type='mmeffnet.EfficientNet')"
                if isinstance(backbone, dict) and _type_name(backbone) == 'EfficientNet' else '')
        raise ValueError(f'the config has no {BACKBONE_TYPE} backbone in cfg.model: {found}{hint}')
    return hits[0]


def backbone_out_channels(backbone_cfg: dict) -> Tuple[int, ...]:
    """Channels of each output of the backbone ``backbone_cfg`` builds, read off the network plan."""
    out_indices = EfficientNet.check_out_indices(backbone_cfg.get('out_indices', (6, )))
    level_channels = build_network_spec(backbone_cfg.get('arch', 'b0')).level_channels
    return tuple(level_channels[i] for i in out_indices)


def scaled_arch(arch: Any, mult: Multipliers) -> dict:
    """The backbone ``arch`` dict for ``arch`` (name or dict) scaled by ``mult``."""
    base = resolve_arch(arch)
    scaled = dict(
        width_mult=round(base.width_mult * mult.width, 6),
        depth_mult=round(base.depth_mult * mult.depth, 6),
        resolution=int(base.resolution * mult.resolution + 0.5),
        dropout=base.dropout)
    if base.lite:
        scaled.update(lite=True, se_ratio=base.se_ratio)
    return scaled


def _scale_sizes(value: Any, factor: float, divisor: int) -> Any:
    """Multiply every int in ``value`` (int, tuple, list, nested) by ``factor``, rounded to ``divisor``."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return max(divisor, int(value * factor / divisor + 0.5) * divisor)
    if isinstance(value, (list, tuple)):
        return type(value)(_scale_sizes(v, factor, divisor) for v in value)
    return value  # floats are ratios, not pixels


def _set(node: dict, key: str, new: Any, path: str, changes: List[str]) -> None:
    old = node[key]
    if old != new:
        node[key] = new
        changes.append(f'{path}.{key}: {old} -> {new}')


def _scale_transforms(root: Any, path: str, factor: float, divisor: int, changes: List[str], unscaled: List[str],
                      seen: set) -> None:
    for sub_path, node in walk_dicts_with_paths(root, path):
        if id(node) in seen or 'type' not in node:
            continue
        seen.add(id(node))
        name = _type_name(node)
        keys = SIZE_KEYS.get(name)
        if keys is None:
            odd = [
                k for k in SIZE_LIKE_KEYS
                if isinstance(node.get(k), (int, list, tuple)) and not isinstance(node.get(k), bool)
            ]
            if odd and not sub_path.startswith('model'):
                unscaled.append(f'{sub_path} ({name}: {", ".join(odd)})')
            continue
        for key in keys:
            if node.get(key) is not None:
                _set(node, key, _scale_sizes(node[key], factor, divisor), sub_path, changes)


def _sync_in_channels(node: dict, path: str, new_out: Sequence[int], changes: List[str]) -> bool:
    """Point ``node.in_channels`` at the scaled backbone's outputs; False if it has none."""
    if 'in_channels' not in node:
        return False
    old = node['in_channels']
    if 'c1_in_channels' in node:  # mmseg's DeepLabV3+ head takes its low-level feature from inputs[0]
        _set(node, 'c1_in_channels', new_out[0], path, changes)
    if 'in_index' in node:  # mmseg heads pick backbone outputs by index
        index = node['in_index']
        new = [new_out[i] for i in index] if isinstance(index, (list, tuple)) else new_out[index]
    elif isinstance(old, (list, tuple)):
        if len(old) != len(new_out):
            raise ValueError(f'{path}.in_channels={list(old)} has {len(old)} entries but the backbone '
                             f'has {len(new_out)} outputs {list(new_out)}; cannot keep them consistent')
        new = list(new_out)
    else:
        new = new_out[-1]
    if isinstance(old, tuple) and isinstance(new, list):
        new = tuple(new)
    _set(node, 'in_channels', new, path, changes)
    return True


def _sync_consumers(parent: dict, parent_path: str, new_out: Sequence[int], changes: List[str]) -> None:
    neck = parent.get('neck')
    first_neck = neck[0] if isinstance(neck, (list, tuple)) and neck else neck
    if isinstance(first_neck, dict) and _sync_in_channels(first_neck, f'{parent_path}.neck', new_out, changes):
        return
    # No neck, or one that keeps channels (global pooling): the heads read the backbone's channels.
    for key in HEAD_KEYS:
        heads = parent.get(key)
        for i, head in enumerate(heads if isinstance(heads, (list, tuple)) else [heads]):
            if isinstance(head, dict):
                suffix = f'[{i}]' if isinstance(heads, (list, tuple)) else ''
                _sync_in_channels(head, f'{parent_path}.{key}{suffix}', new_out, changes)


def _pads_to_input_size(cfg: Config) -> bool:
    """Whether the data preprocessor's ``pad_size_divisor`` is the square training input size: it then
    pads every image to that size (automl's EfficientDet does), so it scales with the input."""
    pad = (cfg.model.get('data_preprocessor') or {}).get('pad_size_divisor')
    if not isinstance(pad, int) or pad <= STRIDE_DIVISOR:
        return False
    try:
        return input_size(cfg) == (pad, pad)
    except ValueError:  # no fixed training size: nothing to pad to
        return False


def default_size_divisor(cfg: Config) -> int:
    return 1 if toolbox_of(cfg) == 'mmpretrain' else STRIDE_DIVISOR


def scale_config(cfg: Config, mult: Multipliers, size_divisor: Optional[int] = None) -> ScaledConfig:
    """A deep copy of ``cfg`` scaled by ``mult`` (see the module docstring for what changes)."""
    if size_divisor is None:
        size_divisor = default_size_divisor(cfg)
    if not isinstance(size_divisor, int) or size_divisor < 1:
        raise ValueError(f'size_divisor must be a positive int, got {size_divisor!r}')
    pads_to_input = _pads_to_input_size(cfg)
    cfg = copy.deepcopy(cfg)
    backbone, parent, path = find_backbone(cfg)
    changes: List[str] = []
    old_arch = backbone.get('arch', 'b0')
    arch = scaled_arch(old_arch, mult)
    backbone['arch'] = arch
    changes.append(f'{path}.arch: {old_arch} -> {arch}')
    if backbone.get('init_cfg') is not None:
        changes.append(f'{path}.init_cfg: dropped (the baseline weights do not fit the scaled shapes)')
        backbone['init_cfg'] = None
    new_out = backbone_out_channels(backbone)
    parent_path = path.rsplit('.', 1)[0]
    _sync_consumers(parent, parent_path, new_out, changes)

    unscaled: List[str] = []
    seen: set = set()
    factor = mult.resolution
    for key in list(cfg.keys()):
        value = cfg[key]
        if key == 'model':
            continue
        if key in SIZE_VARIABLES and isinstance(value, (int, list, tuple)) and not isinstance(value, bool):
            new = _scale_sizes(value, factor, size_divisor)
            if new != value:
                changes.append(f'{key}: {value} -> {new}')
                cfg[key] = new
        elif isinstance(value, (dict, list, tuple)):
            _scale_transforms(value, key, factor, size_divisor, changes, unscaled, seen)
    model = cfg.model
    if isinstance(model.get('data_preprocessor'), dict):
        _scale_transforms(model.data_preprocessor, 'model.data_preprocessor', factor, size_divisor, changes, unscaled,
                          seen)
        if pads_to_input:
            pad = model.data_preprocessor.pad_size_divisor
            _set(model.data_preprocessor, 'pad_size_divisor', _scale_sizes(pad, factor, size_divisor),
                 'model.data_preprocessor', changes)
    test_cfg = model.get('test_cfg')
    if isinstance(test_cfg, dict) and test_cfg.get('mode') == 'slide':
        for key in ('crop_size', 'stride'):
            if test_cfg.get(key) is not None:
                _set(test_cfg, key, _scale_sizes(test_cfg[key], factor, size_divisor), 'model.test_cfg', changes)
    return ScaledConfig(cfg, arch, new_out, changes, unscaled)


# ------------------------------------------------------------------ input size for counting
# transform -> (size key, order of a 2-tuple): the last fixed-size crop of the train pipeline.
_CROP_KEYS = {
    'RandomResizedCrop': ('scale', 'wh'),
    'EfficientNetRandomCrop': ('scale', 'wh'),
    'CenterCrop': ('crop_size', 'wh'),
    'EfficientNetCenterCrop': ('crop_size', 'wh'),
    'RandomCrop': ('crop_size', 'hw'),
    'RandomCenterCropPad': ('crop_size', 'hw'),
}


def _pipeline(cfg: Config, split: str) -> Optional[list]:
    loader = cfg.get(f'{split}_dataloader')
    dataset = loader.get('dataset') if isinstance(loader, dict) else None
    while isinstance(dataset, dict):
        if dataset.get('pipeline'):
            return dataset['pipeline']
        inner = dataset.get('dataset') or (dataset.get('datasets') or [None])[0]
        dataset = inner
    return cfg.get(f'{split}_pipeline')


def _hw(value: Any, order: str) -> Optional[Tuple[int, int]]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (value[0], value[1]) if order == 'hw' else (value[1], value[0])
    return None


def input_size(cfg: Config) -> Tuple[int, int]:
    """``(H, W)`` the network sees in training: the size of the last crop or resize of the train
    pipeline (for a keep-ratio resize, the box it fits images into: short x long side), padded as
    the data preprocessor pads (``pad_size_divisor``, ``size``)."""
    size = None
    for transform in _pipeline(cfg, 'train') or []:
        name = _type_name(transform) if isinstance(transform, dict) else ''
        if name in _CROP_KEYS:
            key, order = _CROP_KEYS[name]
            size = _hw(transform.get(key), order) or size
        elif name == 'FixShapeResize':
            size = (transform.get('height'), transform.get('width'))
        elif name in ('Resize', 'RandomResize'):
            scale = _hw(transform.get('scale'), 'wh')
            if scale is not None and transform.get('keep_ratio', False):
                scale = (min(scale), max(scale))  # the box a keep-ratio resize fits images into
            size = scale or size
    if size is None:
        raise ValueError('cannot tell the input size from the train pipeline: it has no crop or '
                         'resize with a fixed size (RandomResizedCrop, RandomCrop, CenterCrop, Resize)')
    preprocessor = cfg.model.get('data_preprocessor') or {}
    fixed = _hw(preprocessor.get('size'), 'hw')
    if fixed is not None:
        size = (max(size[0], fixed[0]), max(size[1], fixed[1]))
    divisor = preprocessor.get('pad_size_divisor') or preprocessor.get('size_divisor') or 1
    return tuple(-(-s // divisor) * divisor for s in size)
