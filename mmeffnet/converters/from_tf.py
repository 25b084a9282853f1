"""Official TF EfficientNet checkpoints (tensorflow/tpu ``efficientnet-b*``, ``efficientnet-lite*``)
-> canonical names.

TF names layers in creation order within each variable scope, so roles are read off the order::

    {model}/stem/conv2d/kernel                      stem conv, HWIO
    {model}/stem/tpu_batch_normalization/{gamma,beta,moving_mean,moving_variance}
    {model}/blocks_{j}/conv2d[_1]/kernel            [expand,] project (1x1)
    {model}/blocks_{j}/depthwise_conv2d/depthwise_kernel      H, W, C, 1
    {model}/blocks_{j}/tpu_batch_normalization[_1[_2]]/...    [expand,] depthwise, project
    {model}/blocks_{j}/se/conv2d[_1]/{kernel,bias}  SE reduce, expand
    {model}/head/conv2d/kernel, {model}/head/tpu_batch_normalization/..., {model}/head/dense/{kernel,bias}

``batch_normalization`` (non-TPU builds) is accepted as well. Training checkpoints also hold
``.../ExponentialMovingAverage`` shadows (the weights the TF eval uses) and optimizer slots; the
shadows are preferred, the slots ignored.
"""
import os
import re
from typing import Dict, Iterable, Optional

import numpy as np
import torch

from .canonical import ConversionError

LAYOUT = 'tf'
EMA_SUFFIX = '/ExponentialMovingAverage'
_VARIABLE = re.compile(r'^(?P<model>[^/]+)/(?P<scope>stem|head|blocks_(?P<block>\d+))/(?P<se>se/)?'
                       r'(?P<layer>depthwise_conv2d|conv2d|(?:tpu_)?batch_normalization|dense)(?:_(?P<n>\d+))?/'
                       r'(?P<param>kernel|depthwise_kernel|bias|gamma|beta|moving_mean|moving_variance)$')
_BN_PARAM = {'gamma': 'weight', 'beta': 'bias', 'moving_mean': 'running_mean', 'moving_variance': 'running_var'}


def is_model_variable(name: str) -> bool:
    """Whether ``name`` is an EfficientNet weight (or its EMA shadow), not an optimizer slot or
    a step counter."""
    if name.endswith(EMA_SUFFIX):
        name = name[:-len(EMA_SUFFIX)]
    return _VARIABLE.match(name) is not None


def select_weights(variables: Dict[str, np.ndarray], use_ema: bool = True) -> Dict[str, np.ndarray]:
    """Model variables by their plain name, taking the EMA shadow where one exists and
    ``use_ema`` is set."""
    plain = {n: v for n, v in variables.items() if not n.endswith(EMA_SUFFIX) and _VARIABLE.match(n)}
    if use_ema:
        for name, value in variables.items():
            if name.endswith(EMA_SUFFIX) and _VARIABLE.match(name[:-len(EMA_SUFFIX)]):
                plain[name[:-len(EMA_SUFFIX)]] = value
    return plain


def model_scope(variables: Iterable[str]) -> str:
    """The model's top-level scope (e.g. ``'efficientnet-b0'``); one model per checkpoint."""
    scopes = {m.group('model') for m in map(_VARIABLE.match, variables) if m}
    if len(scopes) != 1:
        raise ConversionError(f'expected the variables of one EfficientNet in the TF checkpoint, found '
                              f'{sorted(scopes) or "none"} (names like efficientnet-b0/stem/conv2d/kernel)')
    return scopes.pop()


def _torch_tensor(layer: str, param: str, value: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(value))
    if param == 'depthwise_kernel':  # H, W, C, multiplier -> C * multiplier, 1, H, W
        h, w, c, mult = tensor.shape
        return tensor.permute(2, 3, 0, 1).reshape(c * mult, 1, h, w).contiguous()
    if param == 'kernel' and layer == 'dense':  # in, out -> out, in
        return tensor.t().contiguous()
    if param == 'kernel':  # H, W, in, out -> out, in, H, W
        return tensor.permute(3, 2, 0, 1).contiguous()
    return tensor


def to_canonical(variables: Dict[str, np.ndarray], use_ema: bool = True) -> Dict[str, torch.Tensor]:
    """Map official TF EfficientNet variables (name -> array) to canonical tensors."""
    weights = select_weights(variables, use_ema)
    if not weights:
        raise ConversionError('no EfficientNet variables in the TF checkpoint (expected names like '
                              'efficientnet-b0/stem/conv2d/kernel)')
    model_scope(weights)
    parsed = [(m, v) for m, v in ((_VARIABLE.match(n), v) for n, v in weights.items())]
    # Per scope, the numbered conv2d / batch-norm layers in creation order.
    convs: Dict[str, set] = {}
    norms: Dict[str, set] = {}
    for m, _ in parsed:
        if m.group('se'):
            continue
        n = int(m.group('n') or 0)
        if m.group('layer') == 'conv2d':
            convs.setdefault(m.group('scope'), set()).add(n)
        elif m.group('layer').endswith('batch_normalization'):
            norms.setdefault(m.group('scope'), set()).add(n)

    def role(m: re.Match) -> Optional[str]:
        scope, layer, n = m.group('scope'), m.group('layer'), int(m.group('n') or 0)
        if m.group('block') is None:  # stem / head: one conv, one BN (+ the head's dense)
            if n != 0 or m.group('se'):
                return None
            if layer == 'dense':
                return 'fc' if scope == 'head' else None
            if layer == 'conv2d':
                return f'{scope}.conv'
            return f'{scope}.bn' if layer.endswith('batch_normalization') else None
        prefix = f'blocks.{int(m.group("block"))}.'
        if m.group('se'):
            return prefix + ('se.conv1.conv', 'se.conv2.conv')[n] if layer == 'conv2d' and n < 2 else None
        if layer == 'depthwise_conv2d':
            return prefix + 'depthwise_conv.conv' if n == 0 else None
        if layer == 'conv2d':
            order = sorted(convs[scope])
            names = {2: ('expand_conv', 'linear_conv'), 1: ('linear_conv', )}.get(len(order))
            return prefix + names[order.index(n)] + '.conv' if names else None
        order = sorted(norms[scope])
        names = {
            3: ('expand_conv', 'depthwise_conv', 'linear_conv'),
            2: ('depthwise_conv', 'linear_conv')
        }.get(len(order))
        return prefix + names[order.index(n)] + '.bn' if names else None

    canon, unplaced = {}, []
    for m, value in parsed:
        module, param = role(m), m.group('param')
        if module is None:
            unplaced.append(m.string)
            continue
        if module.endswith('.bn'):
            name = _BN_PARAM.get(param)
        else:
            name = 'bias' if param == 'bias' else 'weight'
        canon[f'{module}.{name}'] = _torch_tensor(m.group('layer'), param, value)
    if unplaced:
        raise ConversionError(f'{len(unplaced)} TF variables have no EfficientNet counterpart: '
                              f'{", ".join(sorted(unplaced)[:8])}')
    return canon


def checkpoint_prefix(path: str) -> str:
    """The TF checkpoint prefix for ``path``: a directory (its latest checkpoint), a prefix
    (``model.ckpt``), or one of its ``.index`` / ``.data-*`` files."""
    if os.path.isdir(path):
        import tensorflow as tf
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f'no TF checkpoint in directory {path}')
        return latest
    prefix = re.sub(r'\.(index|data-\d+-of-\d+)$', '', path)
    if not os.path.isfile(prefix + '.index'):
        raise FileNotFoundError(f'TF checkpoint not found: {path} (expected {prefix}.index beside its '
                                '.data-* files)')
    return prefix


def read_variables(path: str) -> Dict[str, np.ndarray]:
    """The EfficientNet variables (and EMA shadows) of a TF checkpoint, via ``tf.train.load_checkpoint``."""
    try:
        import tensorflow as tf
    except ImportError:
        raise ConversionError('--src tf reads checkpoints with tensorflow, which is not installed here: '
                              '`pip install tensorflow-cpu` (needed for this conversion only)') from None
    prefix = checkpoint_prefix(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as exc:  # TF raises its own error types for unreadable bundles
        raise ConversionError(f'cannot read TF checkpoint {prefix}: {str(exc).splitlines()[0]}') from None
    names = [n for n in reader.get_variable_to_shape_map() if is_model_variable(n)]
    return {n: reader.get_tensor(n) for n in names}
