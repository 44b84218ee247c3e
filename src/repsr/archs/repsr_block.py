"""The RepSR block (ACM MM 2022): a clean identity plus expand-and-squeeze paths with BatchNorm.

Besides the usual merge at population statistics it merges in the batch phase too, from the input's
patch moments (:mod:`repsr.archs.patch_moments`), so wide blocks train without their r*C features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..bn import SwitchableBatchNorm2d, bn_affine
from .patch_moments import patch_moments
from .protocol import ReparamBlock, identity_kernel


class ExpandSqueezePath(nn.Module):
    """Conv3x3 (C -> rC) -> BN(rC) -> Conv1x1 (rC -> C).

    In this order the merge is exact at image borders too: zero padding acts on the input
    exactly as in the merged conv, and BN and the 1x1 conv are pointwise.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, use_bn: bool = True) -> None:
        super().__init__()
        self.expand = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.bn = SwitchableBatchNorm2d(mid_channels) if use_bn else None
        self.squeeze = nn.Conv2d(mid_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.expand(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.squeeze(x)


class RepSRBlock(ReparamBlock):
    """RepSR block: a clean identity path plus ``num_paths`` expand-and-squeeze paths with BN.

    ``expand`` is the ratio r of the hidden width (rC). ``identity=False`` and ``use_bn=False``
    give the ablation variants of the paper.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        expand: int = 2,
        num_paths: int = 2,
        identity: bool = True,
        use_bn: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels or in_channels)
        if expand < 1 or num_paths < 1:
            raise ValueError(f"expand and num_paths must be >= 1, got {expand} and {num_paths}")
        if identity and self.in_channels != self.out_channels:
            raise ValueError("the identity path needs in_channels == out_channels")
        self.identity = identity
        mid = int(expand) * self.out_channels
        self.paths = nn.ModuleList(
            ExpandSqueezePath(self.in_channels, self.out_channels, mid, use_bn) for _ in range(num_paths)
        )

    def forward_branches(self, x: Tensor) -> Tensor:
        out = x if self.identity else 0
        for path in self.paths:
            out = out + path(x)
        return out

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        bns = [p.bn for p in self.paths]
        if bns[0] is None:
            return self._merge(self._joined_paths(), None, None)
        # all paths' channels at once: a few ops per training step instead of a few per BN
        inv_std = torch.rsqrt(torch.cat([bn.running_var + bn.eps for bn in bns]))
        mean = torch.cat([bn.running_mean for bn in bns])
        return self._merge(self._joined_paths(), *self._paths_bn_affine(mean, inv_std))

    def _paths_bn_affine(self, mean: Tensor, inv_std: Tensor) -> tuple[Tensor, Tensor]:
        """The BNs of all paths as one per-channel map ``z * scale + shift``, given their statistics."""
        bns = [p.bn for p in self.paths]
        if not bns[0].affine:
            return bn_affine(mean, inv_std, None, None)
        weight = torch.cat([bn.weight for bn in bns]).to(inv_std.dtype)
        return bn_affine(mean, inv_std, weight, torch.cat([bn.bias for bn in bns]).to(inv_std.dtype))

    def _joined_paths(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The paths as one: expand convs concatenated along outputs ``(M, C, 3, 3)`` with their biases,
        squeeze convs along inputs ``(C, M)`` with their summed biases."""
        return (torch.cat([p.expand.weight for p in self.paths]), torch.cat([p.expand.bias for p in self.paths]),
                torch.cat([p.squeeze.weight[:, :, 0, 0] for p in self.paths], dim=1),
                sum(p.squeeze.bias for p in self.paths))

    def _merge(self, joined: tuple[Tensor, Tensor, Tensor, Tensor], scale: Tensor | None, shift: Tensor | None
               ) -> tuple[Tensor, Tensor]:
        """The block as one 3x3 conv, given its :meth:`_joined_paths` and the per-channel affine map of
        its BNs over all paths' hidden channels (None: no BN); the sum of the paths is one product."""
        expand, expand_bias, squeeze, squeeze_bias = joined
        if scale is not None:  # BN between expand and squeeze: into the squeeze conv
            squeeze_bias = squeeze_bias + squeeze @ (expand_bias * scale + shift)
            squeeze = squeeze * scale
        else:
            squeeze_bias = squeeze_bias + squeeze @ expand_bias
        kernel = torch.einsum("om,mihw->oihw", squeeze, expand)
        if self.identity:
            kernel = kernel + identity_kernel(self.out_channels, kernel)
        return kernel, squeeze_bias

    # Below this width the patch-moment bookkeeping costs more than the hidden features it saves
    # (benchmarks/train_step.py, the train_step section of benchmarks/RESULTS.md).
    batch_merge_min_channels = 32

    def _batch_moments_apply(self, x: Tensor) -> bool:
        """The batch phase can run as one conv when every BN is a plain batch-statistics BN: not observed
        by hooks (recompute_population_stats watches the hidden features) and sharing eps."""
        bns = [p.bn for p in self.paths]
        if bns[0] is None or x.shape[1] < self.batch_merge_min_channels:
            return False
        if x.numel() // x.shape[1] <= 1:  # one value per channel: let BN raise its usual error
            return False
        return (all(isinstance(bn, SwitchableBatchNorm2d) and bn.uses_batch_stats() and bn.track_running_stats
                    and not bn._forward_pre_hooks and not bn._forward_hooks for bn in bns)
                and len({(bn.eps, bn.affine) for bn in bns}) == 1)

    def _batch_kernel_bias(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Batch-phase merge: BN statistics of the hidden channels from the input's patch moments.

        Same function and gradients as the paths with mini-batch BN (tests check it), but no
        r*C-wide features: the statistics cost a 5x5 autocorrelation, the output one 3x3 conv.
        """
        bns = [p.bn for p in self.paths]
        with torch.autocast(x.device.type, enabled=False):
            # statistics in at least float32, whatever autocast runs the convs in
            xm = x if x.dtype in (torch.float32, torch.float64) else x.float()
            mean_patch, cov, count = patch_moments(xm, sync=any(bn.sync for bn in bns))
            joined = self._joined_paths()
            expand, expand_bias = joined[0].flatten(1).to(xm.dtype), joined[1].to(xm.dtype)
            mean = expand @ mean_patch + expand_bias
            var = ((expand @ cov) * expand).sum(1).clamp_min(0)
            n = bns[0].num_features
            for i, bn in enumerate(bns):
                bn.update_running_stats(mean[i * n : (i + 1) * n], var[i * n : (i + 1) * n], count)
            kernel, bias = self._merge(joined, *self._paths_bn_affine(mean, torch.rsqrt(var + bns[0].eps)))
        return kernel.to(x.dtype), bias.to(x.dtype)
