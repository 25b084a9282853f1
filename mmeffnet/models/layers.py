"""Building blocks of EfficientNet: conv-norm-activation, squeeze-and-excitation, MBConv.

Parameter names follow mmpretrain's EfficientNet (``conv``/``bn``, ``expand_conv``,
``depthwise_conv``, ``se.conv1``/``se.conv2``, ``linear_conv``), so OpenMMLab checkpoints load as-is.
"""
import contextlib
import math
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as torch_checkpoint
from mmcv.cnn import build_activation_layer, build_norm_layer

from ..arch import BlockSpec
from .memory_saving import batch_norm_act, bn_is_fusable, check_memory_policy, checkpoint_contexts, fusable_act
from .recompute import recompute_pointwise, register_pad, register_product

PADDING_MODES = ('same', 'symmetric')


@dataclass(frozen=True)
class LayerOptions:
    """How every layer of one network is built (the same for all its blocks).

    ``memory``: what training keeps for backward (:data:`.memory_saving.MEMORY_POLICIES`):
    'plain' (the modules as they are), 'save-bn-input' (BN + activation as one op that keeps
    only the BN input, :mod:`.memory_saving`), 'recompute-pointwise' (that, and each MBConv's
    activation outputs and SE product rebuilt in backward, :mod:`.recompute`).
    ``with_cp``: non-reentrant gradient checkpointing per MBConv block (keeps only its input).
    """
    norm_cfg: dict
    act_cfg: dict
    padding: str = 'same'
    with_cp: bool = False
    memory: str = 'recompute-pointwise'

    def __post_init__(self):
        check_memory_policy(self.memory)


def same_padding(size: int, kernel_size: int, stride: int, dilation: int) -> Tuple[int, int]:
    """TF 'SAME' padding (before, after) of one spatial dimension: the extra pixel goes after."""
    effective_k = (kernel_size - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective_k - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """A Conv2d with TF 'SAME' padding computed from the input size at run time.

    Only used where SAME can be asymmetric (stride > 1); elsewhere SAME equals the symmetric
    padding ``dilation * (k - 1) // 2`` and a plain ``nn.Conv2d`` is built. In eager mode the
    symmetric part of the padding goes into the convolution itself and only the extra trailing
    row/column is padded explicitly (no copy at all when SAME happens to be symmetric). When
    traced (torch.export, ONNX, torch.compile) the padding is written as shape arithmetic
    without branches, so one exported graph serves every input size.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _is_tracing():
            return self._forward_traceable(x)
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if bottom != top or right != left:
            pad = (0, right - left, 0, bottom - top)
            padded = F.pad(x, pad)
            register_pad(padded, x, pad)
            x = padded
        return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)

    def _forward_traceable(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for dim, i in ((-1, 1), (-2, 0)):  # F.pad order: last dim first
            size, stride = x.shape[dim], self.stride[i]
            effective_k = (self.kernel_size[i] - 1) * self.dilation[i] + 1
            total = ((size + stride - 1) // stride - 1) * stride + effective_k - size
            if effective_k < stride:  # only then can the total be negative
                total = torch.sym_max(total, 0)
            pads += [total // 2, total - total // 2]
        x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _is_tracing() -> bool:
    """True under torch.compile / torch.export / jit tracing (graph capture of any kind)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


#: devices on which an NCHW input runs internally in channels_last by default (measured faster)
CHANNELS_LAST_DEVICES = ('cpu', )


def runs_channels_last(x: torch.Tensor, option: Optional[bool]) -> bool:
    """Whether a module built with ``channels_last=option`` runs the NCHW input ``x`` internally in
    channels_last (and hands NCHW back). None decides per device: on the CPU depthwise convs and
    BatchNorm are 2-3x faster in channels_last. A channels_last input runs as it is; graph capture
    (scripting, tracing, export) keeps NCHW."""
    wanted = x.device.type in CHANNELS_LAST_DEVICES if option is None else option
    return (wanted and x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
            and not torch.jit.is_scripting() and not _is_tracing())


def _may_overwrite_intermediates() -> bool:
    """Whether an MBConv may write into its own intermediate tensors (the SE product and the
    shortcut sum in place): only when autograd records nothing, so no backward needs the
    overwritten values, and outside graph capture, whose exported graphs keep plain ops.
    Like an in-place ReLU after a conv, a forward hook on ``depthwise_conv`` or ``linear_conv``
    then sees that output after the overwrite (clone it in the hook to keep it)."""
    return not torch.is_grad_enabled() and not _is_tracing()


def bn_act_saves_memory(norm: Optional[nn.Module], act: Optional[nn.Module], memory: str) -> bool:
    """Whether ``act(norm(x))`` runs as the memory-saving op (:func:`batch_norm_act`): asked for
    (any ``memory`` policy but 'plain'), gradients recorded, a BatchNorm the op takes
    (:func:`.memory_saving.bn_is_fusable`) and a fusable activation, and no graph capture."""
    return (memory != 'plain' and torch.is_grad_enabled() and bn_is_fusable(norm) and fusable_act(act) is not None
            and not _is_tracing())


def recompute_scope(memory: str) -> ContextManager:
    """The :func:`.recompute.recompute_pointwise` scope where ``memory`` asks for it and autograd
    records (outside graph capture); a null context otherwise."""
    if memory == 'recompute-pointwise' and torch.is_grad_enabled() and not _is_tracing():
        return recompute_pointwise()
    return contextlib.nullcontext()


def make_conv(in_channels: int,
              out_channels: int,
              kernel_size: int,
              stride: int = 1,
              dilation: int = 1,
              groups: int = 1,
              bias: bool = False,
              padding: str = 'same') -> nn.Conv2d:
    """A conv with 'same' (TF) or 'symmetric' (PyTorch) padding; identical unless stride > 1."""
    if padding not in PADDING_MODES:
        raise ValueError(f'padding must be one of {PADDING_MODES}, got {padding!r}')
    if padding == 'same' and stride > 1:
        return Conv2dSame(in_channels, out_channels, kernel_size, stride, 0, dilation, groups, bias)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                     dilation * (kernel_size - 1) // 2, dilation, groups, bias)


class ConvBNAct(nn.Module):
    """conv -> norm (optional) -> activation (optional), named ``conv``, ``bn``, ``act``.

    With a ``memory`` policy other than 'plain', while training with gradients, a plain
    BatchNorm2d followed by SiLU/ReLU/ReLU6 runs as one op (:func:`batch_norm_act`) that keeps
    only the BN input for backward.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 stride: int = 1,
                 dilation: int = 1,
                 groups: int = 1,
                 padding: str = 'same',
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None,
                 memory: str = 'recompute-pointwise'):
        super().__init__()
        self.memory = check_memory_policy(memory)
        self.conv = make_conv(
            in_channels, out_channels, kernel_size, stride, dilation, groups, bias=norm_cfg is None, padding=padding)
        self.bn = build_norm_layer(norm_cfg, out_channels)[1] if norm_cfg is not None else None
        self.act = build_activation_layer(act_cfg) if act_cfg is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            if torch.is_grad_enabled() and not torch.jit.is_scripting() and self._memory_saving():
                return self._bn_act_memory_saving(x)
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x

    @torch.jit.unused
    def _memory_saving(self) -> bool:
        return bn_act_saves_memory(self.bn, self.act, self.memory)

    @torch.jit.unused
    def _bn_act_memory_saving(self, x: torch.Tensor) -> torch.Tensor:
        return batch_norm_act(x, self.bn, fusable_act(self.act))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation on the expanded features; the squeeze width is set by the caller
    (EfficientNet: 0.25 x the block's *input* channels, see the network plan)."""

    def __init__(self, channels: int, squeeze_channels: int, act_cfg: dict):
        super().__init__()
        self.conv1 = ConvBNAct(channels, squeeze_channels, 1, act_cfg=act_cfg)
        self.conv2 = ConvBNAct(squeeze_channels, channels, 1, act_cfg=dict(type='Sigmoid'))

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """``inplace``: write the product into ``x`` (for callers that own ``x``, no autograd)."""
        gate = self.conv2(self.conv1(x.mean((2, 3), keepdim=True)))
        if inplace:
            return x.mul_(gate)
        out = x * gate
        register_product(out, x, gate)
        return out


def drop_path_mask(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Stochastic depth mask: per sample 0 (dropped, probability ``rate``) or ``1 / (1 - rate)``."""
    keep = 1. - rate
    return x.new_empty((x.shape[0], ) + (1, ) * (x.dim() - 1)).bernoulli_(keep).div_(keep)


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation (MBConv in the paper).

    expand 1x1 (omitted when ``expand_ratio == 1``) -> depthwise kxk -> SE -> project 1x1 (no
    activation), plus an identity shortcut with stochastic depth when stride is 1 and the
    channel count is unchanged. ``block`` is its entry of the network plan
    (:meth:`mmeffnet.arch.NetworkSpec.blocks`), ``options`` how the network builds its layers.
    """

    def __init__(self, block: BlockSpec, options: LayerOptions):
        super().__init__()
        mid_channels = block.mid_channels
        norm_cfg, act_cfg, memory = options.norm_cfg, options.act_cfg, options.memory
        self.has_shortcut = block.has_shortcut
        self.drop_path_rate = block.drop_path_rate
        self.with_cp = options.with_cp
        self.memory = options.memory
        if block.expand_ratio != 1:
            self.expand_conv = ConvBNAct(
                block.in_channels, mid_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg, memory=memory)
        else:
            self.expand_conv = None
        self.depthwise_conv = ConvBNAct(
            mid_channels,
            mid_channels,
            block.kernel_size,
            block.stride,
            block.dilation,
            groups=mid_channels,
            padding=options.padding,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            memory=memory)
        self.se = SqueezeExcite(mid_channels, block.se_channels, act_cfg) if block.se_channels else None
        self.linear_conv = ConvBNAct(
            mid_channels, block.out_channels, 1, norm_cfg=norm_cfg, act_cfg=None, memory=memory)

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        overwrite = _may_overwrite_intermediates()
        out = x if self.expand_conv is None else self.expand_conv(x)
        out = self.depthwise_conv(out)
        if self.se is not None:
            out = self.se(out, inplace=overwrite)
        out = self.linear_conv(out)
        if not self.has_shortcut:
            return out
        if self.training and self.drop_path_rate > 0.:
            # one fused op: shortcut + residual * mask (no scaled copy of the residual)
            return torch.addcmul(x, out, drop_path_mask(out, self.drop_path_rate))
        return out.add_(x) if overwrite else out + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or torch.jit.is_scripting():
            return self._body(x)
        if self.with_cp and x.requires_grad:
            return torch_checkpoint.checkpoint(self._body, x, use_reentrant=False, context_fn=checkpoint_contexts)
        return self._body_in_memory_scope(x)

    @torch.jit.unused
    def _body_in_memory_scope(self, x: torch.Tensor) -> torch.Tensor:
        with recompute_scope(self.memory):
            return self._body(x)


def init_tf_style(module: nn.Module) -> None:
    """The TF reference initialisation: conv weights ~ N(0, 2 / fan_out) with fan_out =
    k*k*out/groups, zero biases, unit norm weights, zero norm biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0., math.sqrt(2. / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            if getattr(m, 'weight', None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, 'bias', None) is not None:
                nn.init.zeros_(m.bias)


def init_convs_and_norms(module: nn.Module, conv_init: Callable[[nn.Conv2d], None]) -> None:
    """``conv_init`` on every conv of ``module``; unit weights and zero biases on every affine norm."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            conv_init(m)
        elif isinstance(m, nn.modules.batchnorm._NormBase) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
