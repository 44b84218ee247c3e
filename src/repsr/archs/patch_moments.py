"""First and second moments of a feature map's 3x3 patches, without unfolding them.

Why: in the batch-statistics phase a RepSR block is still linear *given* its BN statistics, and
the statistics of every hidden channel ``z = w . patch + b`` are quadratic forms of the patch
moments: ``mean(z) = w . m + b`` and ``var(z) = w^T (S - m m^T) w``. So the block can be computed
as one merged 3x3 conv without ever materializing its r*C-wide hidden features (see
:class:`repsr.archs.protocol.ForwardMode`), if the moments are cheap.

They are. The 9C x 9C second moment ``S`` of zero-padded 3x3 patches is, up to the pixels at
the image border, translation invariant: ``S[(a, d), (b, d')]`` is the correlation of channels a
and b at offset ``d' - d`` (25 offsets in a 5x5 window). One conv weight-gradient call computes
all of them (25 C^2 multiply-adds per pixel, against 9 r P C^2 for the hidden features), and
the border terms are sums over the first and last rows and columns. Exact, and differentiable
with a single 5x5 conv in the backward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..bn import global_sums


class _Autocorrelation(torch.autograd.Function):
    """``A[a, b, i, j] = sum_{n,p} x[n, a, p] * x[n, b, p + (i - 2, j - 2)]`` (zero outside the image)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102 - see the class docstring
        ctx.save_for_backward(x)
        c = x.shape[1]
        # A[a, b, -d] = A[b, a, d]: compute the offsets with dy >= 0 (3 of 5 rows), mirror the rest
        lower = torch.nn.grad.conv2d_weight(F.pad(x, (2, 2, 0, 2)), (c, c, 3, 5), x)
        upper = lower[:, :, 1:].flip(2, 3).transpose(0, 1)
        return torch.cat([upper, lower], 2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        (x,) = ctx.saved_tensors
        # x appears twice: as itself (a conv with grad) and shifted (a transposed conv with grad)
        return F.conv2d(x, grad + grad.transpose(0, 1).flip(2, 3), padding=2)


def _border_rows(x: Tensor, corners: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
    """The autocorrelation restricted to the first and to the last row of ``x`` (as in
    :class:`_Autocorrelation`, each ``(C, C, 5, 5)``), and (``corners``) to the 4 corner pixels
    ``(2, 2, C, C, 5, 5)`` indexed (first/last row, first/last column). Only narrow bands of ``x``
    are touched."""
    h, w = x.shape[2:]
    rows = min(3, h)
    short = 3 - rows  # images under 3 rows: the rest of the 5-row window is zero padding
    top = F.pad(x[:, :, :rows], (2, 2, 2, short))
    bottom = F.pad(x[:, :, h - rows :], (2, 2, short, 2))
    n, c = x.shape[:2]
    # both border rows in one conv weight gradient, top and bottom as two groups; each band's centre
    # row against the band
    bands = torch.cat([top, bottom], 1)  # (N, 2C, 5, W + 4)
    inner = bands[:, :, 2:3, 2 : w + 2]
    strips = torch.nn.grad.conv2d_weight(bands, (2 * c, c, 5, 5), inner, groups=2).view(2, c, c, 5, 5)
    if not corners:
        return strips[0], strips[1], None
    # the first and last pixels of each border row against their 5x5 windows: (C x N) @ (N x 25 C)
    pixels = inner[:, :, 0, [0, w - 1]].reshape(n, 2, c, 2).permute(1, 3, 2, 0)  # (row, col, a, n)
    windows = torch.stack([bands[..., :5], bands[..., w - 1 :]], 2)  # (N, 2C, col, 5, 5)
    windows = windows.reshape(n, 2, c, 2, 25).permute(1, 3, 0, 2, 4).reshape(2, 2, n, c * 25)
    corners = (pixels @ windows).view(2, 2, c, c, 5, 5)
    return strips[0], strips[1], corners


def _autocorrelation_sums(x: Tensor) -> Tensor:
    """``sum P P^T`` over the zero-padded 3x3 patches P of ``x``, (C*9, C*9) in conv weight order."""
    c = x.shape[1]
    full = _Autocorrelation.apply(x)
    first_row, last_row, corners = _border_rows(x)
    first_col, last_col, _ = _border_rows(x.transpose(2, 3), corners=False)  # the rows have them
    first_col, last_col = first_col.transpose(2, 3), last_col.transpose(2, 3)
    # a patch offset d reaches pixels q = p + d of the image only where q - d is in the image too:
    # offset -1 never reaches the last row (column), offset +1 never the first
    missed_row = {-1: last_row, 0: None, 1: first_row}
    missed_col = {-1: last_col, 0: None, 1: first_col}
    corner_index = {-1: 1, 1: 0}
    corr = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            s = full
            if dy:
                s = s - missed_row[dy]
            if dx:
                s = s - missed_col[dx]
            if dy and dx:
                s = s + corners[corner_index[dy], corner_index[dx]]
            corr.append(s)
    # S[(a, d), (b, d')] = corr[d][a, b, d' - d + 2]
    d = torch.arange(9, device=x.device)
    iy = d[None, :] // 3 - d[:, None] // 3 + 2
    ix = d[None, :] % 3 - d[:, None] % 3 + 2
    second = torch.stack(corr)[d[:, None], :, :, iy, ix]  # (d, d', a, b)
    return second.permute(2, 0, 3, 1).reshape(c * 9, c * 9)


def _overlap_ranges(size: int) -> tuple[list[list[int]], list[list[int]]]:
    """For offsets d, d' in {-1, 0, 1}: the pixels q of a line of ``size`` with q - d and q - d + d'
    inside it, as [start, stop) tables indexed by (d + 1, d' + 1)."""
    starts = [[min(size, max(0, d, d - e)) for e in (-1, 0, 1)] for d in (-1, 0, 1)]
    stops = [[max(start, min(size, size + d, size + d - e)) for start, e in zip(row, (-1, 0, 1), strict=True)]
             for row, d in zip(starts, (-1, 0, 1), strict=True)]
    return starts, stops


def patch_moments(x: Tensor, sync: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Mean (C*9) and covariance (C*9, C*9) of the zero-padded 3x3 patches of ``x`` (N, C, H, W),
    flattened in conv weight order ``(channel, ky, kx)``, and the number of patches.

    For a 3x3 conv (padding 1) with flattened weight ``W``, the outputs have batch mean
    ``W @ mean + bias`` and variances ``((W @ cov) * W).sum(1)``. Equal to unfolding the patches
    and taking their moments, at a fraction of the cost. ``sync``: over all ranks (DDP).

    Accuracy: ``x`` is centred per channel first, so the float32 sums are of the spread, not the
    offset; the zero padding (which does not move with the centring) enters through a 0/1 mask
    M(p) of the patch positions inside the image, whose sums are rectangle sums.
    """
    n, c, h, w = x.shape
    center = x.detach().mean((0, 2, 3))
    if sync:
        center = global_sums(center) / global_sums(center.new_ones(()))
    centered = x - center[None, :, None, None]
    # sum over p of P~(p) M(p)^T: P~ entry (a, d) times mask entry d' is x~_a summed over a rectangle
    integral = F.pad(centered.sum(0).cumsum(1).cumsum(2), (1, 0, 1, 0))  # (C, H+1, W+1)
    r0, r1 = (torch.tensor(t, device=x.device) for t in _overlap_ranges(h))
    c0, c1 = (torch.tensor(t, device=x.device) for t in _overlap_ranges(w))
    y0, y1 = r0[:, None, :, None], r1[:, None, :, None]  # index (dy, dx, dy', dx')
    x0, x1 = c0[None, :, None, :], c1[None, :, None, :]
    cross = (integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0] + integral[:, y0, x0])
    cross = cross.reshape(c * 9, 9)
    rows = (r1 - r0).double()[:, None, :, None]
    cols = (c1 - c0).double()[None, :, None, :]
    mask = (n * rows * cols).reshape(9, 9)  # sum over p of M(p) M(p)^T, exact
    second = _autocorrelation_sums(centered)
    if sync:
        k = c * 9
        total = global_sums(torch.cat([second.flatten(), cross.flatten(), mask.to(x.dtype).flatten()]))
        second, cross, mask = total[: k * k].view(k, k), total[k * k : -81].view(k, 9), total[-81:].view(9, 9).double()
    count = mask[4, 4]  # the centre tap of every patch is inside the image
    mask_mean = mask.diagonal() / count  # E[M]
    mask_cov = (mask / count - torch.outer(mask_mean, mask_mean)).to(x.dtype)  # float64: no cancellation
    mask_mean, n_patches = mask_mean.to(x.dtype), count.to(x.dtype)
    first = cross.view(c, 9, 9).diagonal(dim1=1, dim2=2).reshape(c * 9)  # d' = d: sum of P~
    mean_centered = first / n_patches
    expand = center.repeat_interleave(9)  # (a, d) -> c_a
    offsets = expand * mask_mean.repeat(c)  # E[Q] with Q = c * M
    # cov(P~ + Q) = cov(P~) + cov(P~, Q) + cov(Q, P~) + cov(Q)
    cov_centered = second / n_patches - torch.outer(mean_centered, mean_centered)
    cross_cov = (cross / n_patches - torch.outer(mean_centered, mask_mean)).repeat(1, c) * expand[None, :]
    cov = cov_centered + cross_cov + cross_cov.T + torch.outer(expand, expand) * mask_cov.repeat(c, c)
    return mean_centered + offsets, cov, count
