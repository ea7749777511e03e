"""Max-pooling for the CNNs: ``nn.MaxPool2d``'s numbers from torch's faster CPU kernel.

On a CPU, torch's max-pool kernel for the default layout (NCHW) scans each window one element at a
time, while its channels-last kernel vectorizes over the channels: several times faster, copies to and
from channels last included (``make bench``, section pooling, measures what that buys a CNN's training
step and evaluation pass). :class:`MaxPool2d` therefore pools an NCHW CPU tensor in
channels-last and hands the result back in NCHW; the backward pass is torch's NCHW max-pool backward,
fed the indices the forward found. Both kernels pick the same cell of each window (the first maximum in
row-major order; a NaN counts as the maximum), so the values, the indices and the gradients are
``nn.MaxPool2d``'s bit for bit, ties, infinities, NaNs and signed zeros included
(``tests/test_tasks.py::test_max_pool_equals_torchs_bit_for_bit``). Everywhere else (a GPU, activations
already channels last, inside ``torch.func`` transforms such as a population's vmap) it is
``nn.MaxPool2d`` itself.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: whether a tensor is a torch.func (vmap, grad) wrapper; a torch without the query: every tensor might be
_is_wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)


def _is_transformed(x: Tensor) -> bool:
    return _is_wrapped is None or _is_wrapped(x)


def _pair(v) -> list[int]:
    return list(v) if isinstance(v, tuple | list) else [v, v]


class _ChannelsLastPool(torch.autograd.Function):
    """Forward: torch's channels-last max-pool kernel; backward: its NCHW kernel, from those indices."""

    @staticmethod
    def forward(ctx, x: Tensor, kernel: list[int], stride: list[int], padding: list[int],
                dilation: list[int], ceil_mode: bool) -> Tensor:
        out, index = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), kernel, stride, padding, dilation, ceil_mode)
        index = index.contiguous()
        ctx.save_for_backward(x, index)
        ctx.settings = kernel, stride, padding, dilation, ceil_mode
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, index = ctx.saved_tensors
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, *ctx.settings, index)
        return grad_x, None, None, None, None, None


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` (same arguments, same numbers), pooling NCHW CPU tensors with the faster kernel."""

    def forward(self, x: Tensor) -> Tensor:
        if (x.device.type != "cpu" or x.dim() != 4 or self.return_indices or _is_transformed(x)
                or not x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x)  # (NCHW and channels-last at once: one channel, nothing to gain)
        if not (torch.is_grad_enabled() and x.requires_grad):
            return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()
        return _ChannelsLastPool.apply(x, _pair(self.kernel_size), _pair(self.stride), _pair(self.padding),
                                       _pair(self.dilation), self.ceil_mode)
