"""ONNX export with dynamic batch, height and width, and a check of the exported model in
onnxruntime against PyTorch.

Two exporters: ``'torchscript'`` (``torch.onnx.export(dynamo=False)``, needs nothing beyond
torch) and ``'dynamo'`` (``torch.export`` based, needs the ``onnxscript`` package). ``'auto'``
takes the TorchScript one (the one the tests run everywhere).

TF 'SAME' padding depends on the input size; :class:`mmeffnet.models.layers.Conv2dSame` writes it
as shape arithmetic when traced, so one ONNX graph is exact for every input size, odd ones too.
"""
import importlib.util
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

DEFAULT_OPSET = 17
EXPORTERS = ('auto', 'torchscript', 'dynamo')


class TensorOutputs(nn.Module):
    """Wraps a model whose forward takes one image tensor; flattens its outputs to a tuple of
    tensors (mmdet/mmpretrain models in ``mode='tensor'`` return nested tuples/lists)."""

    def __init__(self, model: nn.Module, forward_kwargs: Optional[dict] = None):
        super().__init__()
        self.model = model
        self.forward_kwargs = forward_kwargs or {}

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(_flatten(self.model(x, **self.forward_kwargs)))


def _flatten(outs) -> List[torch.Tensor]:
    if isinstance(outs, torch.Tensor):
        return [outs]
    flat = []
    for out in outs:
        flat += _flatten(out)
    return flat


def _pick_exporter(exporter: str) -> str:
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    if exporter == 'dynamo' and importlib.util.find_spec('onnxscript') is None:
        raise ValueError("exporter='dynamo' needs the onnxscript package (pip install onnxscript); "
                         "use exporter='torchscript'")
    return 'torchscript' if exporter == 'auto' else exporter


def export_onnx(model: nn.Module,
                path: str,
                shape: Sequence[int],
                dynamic: bool = True,
                opset: int = DEFAULT_OPSET,
                min_size: int = 32,
                exporter: str = 'auto') -> List[str]:
    """Export ``model`` (put in eval mode; its forward takes one NCHW image tensor) to ``path``.

    ``shape`` is the example input shape (N, C, H, W); with ``dynamic`` the batch, height and
    width are symbolic (dynamo exporter: height/width from ``min_size`` up). Returns the output
    names (``output0``, ...).
    """
    if len(shape) != 4 or any(int(s) < 1 for s in shape):
        raise ValueError(f'shape must be N, C, H, W (4 positive numbers), got {list(shape)}')
    exporter = _pick_exporter(exporter)
    model = model.eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        num_outputs = len(_flatten(model(x)))
    if not isinstance(model, TensorOutputs):
        model = TensorOutputs(model).eval()
    names = [f'output{i}' for i in range(num_outputs)]
    if exporter == 'dynamo':
        dynamic_shapes = None
        if dynamic:
            dim = torch.export.Dim
            dynamic_shapes = {
                'x': {
                    0: dim('batch', min=1, max=4096),
                    2: dim('height', min=min_size, max=16384),
                    3: dim('width', min=min_size, max=16384)
                }
            }
        torch.onnx.export(
            model, (x, ),
            path,
            dynamo=True,
            opset_version=opset,
            input_names=['input'],
            output_names=names,
            dynamic_shapes=dynamic_shapes,
            verbose=False)
        return names
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        dynamic_axes.update({n: {0: 'batch', 2: f'{n}_height', 3: f'{n}_width'} for n in names})
    with warnings.catch_warnings(), torch.no_grad():
        # the tracer warns about every Python-level shape check (input validation); harmless here
        warnings.simplefilter('ignore')
        torch.onnx.export(
            model, (x, ),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=['input'],
            output_names=names,
            dynamic_axes=dynamic_axes)
    return names


def compare_with_onnxruntime(model: nn.Module, path: str,
                             shapes: Sequence[Sequence[int]]) -> Dict[Tuple[int, ...], float]:
    """Max abs difference between ``model`` and the ONNX model in onnxruntime, per input shape."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    input_name = session.get_inputs()[0].name
    model = model.eval()
    diffs = {}
    g = torch.Generator().manual_seed(0)
    for shape in shapes:
        x = torch.randn(*shape, generator=g)
        with torch.no_grad():
            expected = _flatten(model(x))
        got = session.run(None, {input_name: x.numpy()})
        if len(got) != len(expected):
            raise AssertionError(f'ONNX model gives {len(got)} outputs, PyTorch {len(expected)}')
        for o, e in zip(got, expected):
            if o.shape != tuple(e.shape):
                raise AssertionError(f'input {list(shape)}: ONNX output shape {o.shape} != PyTorch {tuple(e.shape)}')
        diffs[tuple(shape)] = max(float(np.abs(o - e.numpy()).max()) for o, e in zip(got, expected))
    return diffs
