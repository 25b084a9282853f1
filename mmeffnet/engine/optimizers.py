"""RMSProp exactly as TF1's ``tf.train.RMSPropOptimizer``, which trained the released EfficientNets.

TF1 and ``torch.optim.RMSprop`` share the names (decay/alpha, momentum, epsilon) but not the update::

    TF1:   ms  = rho * ms + (1 - rho) * g^2            (ms starts at 1)
           mom = momentum * mom + lr * g / sqrt(ms + eps)
           w  -= mom
    torch: v   = alpha * v + (1 - alpha) * g^2         (v starts at 0)
           buf = momentum * buf + g / (sqrt(v) + eps)
           w  -= lr * buf

so TF's ``epsilon=1e-3`` is *inside* the square root: it bounds the step of a parameter with tiny
gradients by ``lr * g / sqrt(1e-3)``, i.e. it acts like torch's ``eps = sqrt(1e-3) = 0.0316`` only
when ``v`` is negligible, and ``eps=1e-3`` given to torch's RMSprop is a 30x weaker guard. TF's
``ms`` starting at 1 also makes the first steps about ``lr * g`` where torch's are about
``3 * lr * sign(g)``.
Keeping ``lr`` inside the momentum buffer matters when the LR changes (warm-up, decay).
"""
from typing import Callable, Iterable, Optional

import torch
from torch.optim import Optimizer

from ..registry import OPTIMIZERS


@OPTIMIZERS.register_module()
class RMSpropTF(Optimizer):
    """TF1 RMSProp: epsilon inside the square root, mean square initialised to one, and the LR
    applied inside the momentum buffer.

    Args:
        params: parameters or parameter groups.
        lr (float): learning rate.
        alpha (float): decay of the running mean square (TF ``decay``). Defaults to 0.9.
        momentum (float): momentum (TF ``momentum``). Defaults to 0.9.
        eps (float): added to the mean square *before* the square root (TF ``epsilon``).
            Defaults to 1e-3, the EfficientNet value.
        weight_decay (float): L2 penalty added to the gradient (``g + wd * w``), like TF's
            ``weight_decay * l2_loss(w)`` term in the loss. Defaults to 0.
    """

    def __init__(self,
                 params: Iterable,
                 lr: float,
                 alpha: float = 0.9,
                 momentum: float = 0.9,
                 eps: float = 1e-3,
                 weight_decay: float = 0.) -> None:
        for name, value, low, high in (('lr', lr, 0., float('inf')), ('alpha', alpha, 0., 1.),
                                       ('momentum', momentum, 0., 1.), ('eps', eps, 0., float('inf')),
                                       ('weight_decay', weight_decay, 0., float('inf'))):
            if not low <= value < high:
                raise ValueError(f'RMSpropTF: {name}={value!r} is out of range [{low}, {high})')
        super().__init__(params, dict(lr=lr, alpha=alpha, momentum=momentum, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group['params'] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError('RMSpropTF does not support sparse gradients')
            grads = [p.grad for p in params]
            if group['weight_decay']:
                grads = torch._foreach_add(grads, params, alpha=group['weight_decay'])
            square_avgs, buffers = [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state['square_avg'] = torch.ones_like(p, memory_format=torch.preserve_format)
                    state['momentum_buffer'] = torch.zeros_like(p, memory_format=torch.preserve_format)
                square_avgs.append(state['square_avg'])
                buffers.append(state['momentum_buffer'])
            torch._foreach_mul_(square_avgs, group['alpha'])
            torch._foreach_addcmul_(square_avgs, grads, grads, value=1. - group['alpha'])
            denoms = torch._foreach_add(square_avgs, group['eps'])
            torch._foreach_sqrt_(denoms)
            torch._foreach_mul_(buffers, group['momentum'])
            torch._foreach_addcdiv_(buffers, grads, denoms, value=group['lr'])
            torch._foreach_sub_(params, buffers)
        return loss
