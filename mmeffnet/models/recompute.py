"""The 'recompute-pointwise' memory policy: keep recipes, not elementwise results, for backward.

In an MBConv block the depthwise conv keeps its input (the expand activation's output), the SE
multiplication keeps the depthwise activation's output, the projection conv keeps the SE
product: three expanded-width tensors, each one elementwise pass away from tensors that are kept
anyway (the BatchNorm inputs and the SE gate). Inside :func:`recompute_pointwise`,
:func:`~.memory_saving.batch_norm_act` registers its output with a :class:`BNActRecipe` and the SE
product registers a :class:`ProductRecipe`; when autograd saves a registered tensor, the scope's
``saved_tensors_hooks`` keep the recipe instead and rebuild the tensor in backward.

Why hooks and not ``torch.utils.checkpoint`` with a selective policy (saving the convolutions,
recomputing the rest): checkpointing recomputes the BatchNorm statistics (a reduction) and the
SE branch, dispatches every op through a Python mode, and measured 1.3-1.45x today's step time
(B3 at 384 px, 1 thread); the recipes recompute only the elementwise ops, once per backward (a
rebuilt activation is cached until its BatchNorm's backward, which needs the pre-activation
anyway, takes it). Forward results are untouched (the recipes run only in backward).
Saved tensors that are not rebuilt go to the saved-tensor hooks that enclose the scope, if any
(``torch.autograd.graph.save_on_cpu``, a measurement), as they would without it.
"""
import contextlib
import threading
import weakref
from typing import Callable, Iterator, Optional, Tuple, Union

import torch
import torch.nn.functional as F

_state = threading.local()


def activate(z: torch.Tensor, act: str, inplace: bool) -> torch.Tensor:
    """``act(z)`` for an activation name ('identity', 'silu', 'relu', 'relu6'), written into ``z``
    when ``inplace`` (out of place where ``z`` is still needed, as by a cached recipe)."""
    if act == 'identity':
        return z
    if act == 'silu':
        return F.silu(z, inplace=inplace)
    if act == 'relu':
        return z.clamp_(min=0) if inplace else z.clamp(min=0)
    return z.clamp_(0., 6.) if inplace else z.clamp(0., 6.)


def activation_backward_(grad: torch.Tensor, z: torch.Tensor, act: str) -> torch.Tensor:
    """The gradient of ``act(z)`` with respect to ``z``, written over ``z`` (the rebuilt pre-activation, which
    nothing reads afterwards): a fresh map costs its page faults, about as much as the pass.
    Only where the layouts agree: otherwise the layout autograd's kernel would pick (and hence
    BatchNorm's backward kernel and its rounding) could differ from ``z``'s."""
    if grad.dtype != z.dtype or grad.shape != z.shape or grad.stride() != z.stride():
        if act == 'silu':
            return torch.ops.aten.silu_backward(grad, z)
        if act == 'relu':
            return torch.ops.aten.threshold_backward(grad, z, 0.)
        return torch.ops.aten.hardtanh_backward(grad, z, 0., 6.)
    if act == 'silu':
        return torch.ops.aten.silu_backward.grad_input(grad, z, grad_input=z)
    if act == 'relu':
        return torch.ops.aten.threshold_backward.grad_input(grad, z, 0., grad_input=z)
    return torch.ops.aten.hardtanh_backward.grad_input(grad, z, 0., 6., grad_input=z)


def scale_and_shift(weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], mean: torch.Tensor,
                    invstd: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel float32 ``scale``, ``shift`` with ``batch_norm(x) == x * scale + shift``."""
    scale = invstd if weight is None else invstd * weight
    shift = -mean * scale if bias is None else bias - mean * scale
    return scale, shift


def normalize(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """BatchNorm's output again, as BatchNorm computes it (float32 multiply-add), in ``x``'s dtype."""
    shape = (1, -1) + (1, ) * (x.dim() - 2)
    return torch.addcmul(shift.view(shape), x, scale.view(shape)).to(x.dtype)


class BNActRecipe:
    """``act(pre_activation())``: a memory-saving BatchNorm + activation's output, where
    ``pre_activation`` rebuilds the normalized tensor from the kept BN input and statistics.

    The rebuilt pair (pre-activation, output) is cached from the first reader until the
    BatchNorm's own backward takes the pre-activation (:meth:`take_pre_activation`); autograd
    runs that backward after every reader of the output, so nothing is rebuilt twice. A BatchNorm
    without activation needs nothing rebuilt in its backward: its output is cached while saved
    copies remain unread (:meth:`retain` counts them), as a BiFPN node's output read by several
    fusions.
    """
    __slots__ = ('pre_activation', 'act', '_cached', '_unread')

    def __init__(self, pre_activation: Callable[[], torch.Tensor], act: str):
        self.pre_activation, self.act = pre_activation, act
        self._cached: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self._unread = 0

    def retain(self) -> None:
        """One more saved copy of the output will be read in backward."""
        self._unread += 1

    def output(self) -> torch.Tensor:
        if self.act == 'identity':
            self._unread -= 1
            out = self._cached[1] if self._cached is not None else self.pre_activation()
            # kept for the copies still unread (none left, or a graph run again: not kept)
            self._cached = (out, out) if self._unread > 0 else None
            return out
        if self._cached is None:
            z = self.pre_activation()
            self._cached = (z, activate(z, self.act, inplace=False))
        return self._cached[1]

    def take_pre_activation(self) -> torch.Tensor:
        """The pre-activation for the BatchNorm's backward, which may overwrite it; the rebuilt
        output has no reader left and is let go."""
        cached, self._cached = self._cached, None
        return self.pre_activation() if cached is None else cached[0]


class ProductRecipe:
    """``source * gate``: the SE product, from its (rebuilt) input and the kept gate."""
    __slots__ = ('source', 'gate')

    def __init__(self, source: 'Recipe', gate: torch.Tensor):
        self.source, self.gate = source, gate

    def retain(self) -> None:
        self.source.retain()

    def output(self) -> torch.Tensor:
        return self.source.output() * self.gate


class PadRecipe:
    """``F.pad(source, pad)``: the asymmetric part of TF 'SAME' padding before a strided conv."""
    __slots__ = ('source', 'pad')

    def __init__(self, source: 'Recipe', pad: Tuple[int, ...]):
        self.source, self.pad = source, pad

    def retain(self) -> None:
        self.source.retain()

    def output(self) -> torch.Tensor:
        # F.pad fills the whole new map before copying the source in: a pass (and, on a fresh
        # allocation, a page-fault round) that the borders alone do not need
        source = self.source.output()
        left, right, top, bottom = self.pad
        height, width = source.shape[-2:]
        channels_last = source.dim() == 4 and not source.is_contiguous() and source.is_contiguous(
            memory_format=torch.channels_last)  # the layout F.pad gives (the source's)
        out = torch.empty(
            source.shape[:-2] + (top + height + bottom, left + width + right),
            dtype=source.dtype,
            device=source.device,
            memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        out[..., top:top + height, left:left + width].copy_(source)
        for border in (out[..., :top, :], out[..., top + height:, :], out[..., top:top + height, :left],
                       out[..., top:top + height, left + width:]):
            border.zero_()
        return out


Recipe = Union[BNActRecipe, ProductRecipe, PadRecipe]


class _OuterPacked:
    """What an enclosing ``saved_tensors_hooks`` (offloading, checkpointing, a measurement)
    packed for a tensor that is not ours to rebuild."""
    __slots__ = ('packed', )

    def __init__(self, packed):
        self.packed = packed


def _enclosing_hooks() -> Optional[tuple]:
    # saved-tensor hooks do not nest: the innermost pair sees every saved tensor, so a scope
    # hands the tensors it does not rebuild to the pair that was active when it was entered
    top = getattr(torch._C._autograd, '_top_saved_tensors_default_hooks', None)
    return top(False) if top is not None else None


class RecipeScope:
    """The tensors of one forward that can be rebuilt, and the saved-tensor hooks that use them."""

    def __init__(self):
        # id -> (weak reference, recipe): an id alone could name a later tensor at the same address
        self._recipes = {}
        self._outer = _enclosing_hooks()

    def close(self) -> None:
        """Forget the registrations (the saved recipes live on in the graph)."""
        self._recipes.clear()

    def register(self, tensor: torch.Tensor, recipe: Recipe) -> None:
        self._recipes[id(tensor)] = (weakref.ref(tensor), recipe)

    def recipe_of(self, tensor: torch.Tensor) -> Optional[Recipe]:
        entry = self._recipes.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def pack(self, tensor: torch.Tensor) -> Union[torch.Tensor, Recipe, _OuterPacked]:
        recipe = self.recipe_of(tensor)
        if recipe is not None:
            recipe.retain()
            return recipe
        if self._outer is not None:
            return _OuterPacked(self._outer[0](tensor))
        # detached: a node that saves its own output (sigmoid) would otherwise hold that output
        # with its grad_fn, a reference cycle that keeps the whole graph alive
        return tensor.detach()

    def unpack(self, packed: Union[torch.Tensor, Recipe, _OuterPacked]) -> torch.Tensor:
        if isinstance(packed, torch.Tensor):
            return packed
        if isinstance(packed, _OuterPacked):
            return self._outer[1](packed.packed)
        return packed.output()


def current_scope() -> Optional[RecipeScope]:
    """The innermost active :func:`recompute_pointwise` scope of this thread, if any."""
    return getattr(_state, 'scope', None)


@contextlib.contextmanager
def recompute_pointwise() -> Iterator[RecipeScope]:
    """Within: registered elementwise results are saved for backward as recipes (see module doc)."""
    scope, previous = RecipeScope(), current_scope()
    _state.scope = scope
    try:
        with torch.autograd.graph.saved_tensors_hooks(scope.pack, scope.unpack):
            yield scope
    finally:
        _state.scope = previous
        scope.close()


def register_product(out: torch.Tensor, source: torch.Tensor, gate: torch.Tensor) -> None:
    """Record ``out = source * gate`` when ``source`` can be rebuilt (in an active scope)."""
    scope = current_scope()
    recipe = scope.recipe_of(source) if scope is not None else None
    if recipe is not None:
        scope.register(out, ProductRecipe(recipe, gate.detach()))


def register_pad(out: torch.Tensor, source: torch.Tensor, pad: Tuple[int, ...]) -> None:
    """Record ``out = F.pad(source, pad)`` when ``source`` can be rebuilt (in an active scope)."""
    scope = current_scope()
    recipe = scope.recipe_of(source) if scope is not None else None
    if recipe is not None:
        scope.register(out, PadRecipe(recipe, pad))
