"""Efficient SR networks people pick instead of a plain VGG-style net: benchmark subjects for ``repsr bench``.

They are timed with random weights (their speed does not depend on the weights), next to their published
parameter counts, MACs and x4 PSNR, each with its source (``../shared/docs/efficient_sr.md`` collects them).
Nothing here is imported by ``import repsr``; SPAN, SAFMN and SwinIR-light come from spandrel, the others are
written from their papers (:mod:`.classic`, :mod:`.distillation`). ``tests/test_peers.py`` checks every
network against its published parameter count (1%) and MACs (3%), so the timings are of the real networks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..errors import RepsrError

X4_SETS = ("Set5", "Set14", "B100", "Urban100")


@dataclass(frozen=True)
class Published:
    """A published number, where it was read and, where its convention differs from ours, how to count ours its
    way: for parameters ``count(model) -> int`` (default: the parameters that run, :func:`inference_params`), for
    MACs ``count(per_operator_macs, model, x) -> int`` (default: all of them)."""

    value: float
    source: str
    lr_size: tuple[int, int] | None = None  # for MACs: the LR input they are counted on
    count: Callable | None = None


def _all_params(model: nn.Module) -> int:
    """CARN-M as published is one network with the x2, x3 and x4 upsamplers."""
    return sum(p.numel() for p in model.parameters())


def _without_position_bias(model: nn.Module) -> int:
    """SwinIR's published count leaves out the relative-position bias tables (32,400 entries in SwinIR-light)."""
    return sum(p.numel() for n, p in model.named_parameters() if "relative_position_bias_table" not in n)


def _dense_transposed(macs: dict[str, int], model: nn.Module, x: Tensor) -> int:
    """FSRCNN's published MACs count its stride-s transposed conv as a dense conv on the HR grid (s^2 times ours)."""
    d = model.deconv
    per_pixel = d.in_channels * d.out_channels * d.kernel_size[0] * d.kernel_size[1]
    return sum(macs.values()) + (d.stride[0] * d.stride[1] - 1) * per_pixel * x.shape[-2] * x.shape[-1]


def _without_attention_products(macs: dict[str, int], model: nn.Module, x: Tensor) -> int:
    """SwinIR's published MACs count its convs and linear layers, not the attention score and value products."""
    return sum(v for op, v in macs.items() if op != "bmm")


@dataclass(frozen=True)
class Peer:
    name: str
    title: str  # how tables and figures name it
    build: Callable[[int], nn.Module]  # scale -> a network in eval mode with random weights
    params: Published | None = None  # x4, the deployed form
    macs: Published | None = None  # x4
    psnr: dict[str, float] = field(default_factory=dict)  # x4, Y channel, DIV2K-trained
    psnr_source: str = ""


def _spandrel_arch(module: str, cls: str):
    from .spandrel_import import import_spandrel

    try:
        import_spandrel()
    except ImportError:
        raise RepsrError(f"{cls} comes from spandrel: pip install spandrel") from None
    import importlib

    return getattr(importlib.import_module(f"spandrel.architectures.{module}"), cls)


def span(channels: int) -> Callable[[int], nn.Module]:
    def build(scale: int) -> nn.Module:
        return _spandrel_arch("SPAN", "SPAN")(num_in_ch=3, num_out_ch=3, feature_channels=channels, upscale=scale)
    return build


def safmn(scale: int) -> nn.Module:
    return _spandrel_arch("SAFMN", "SAFMN")(dim=36, n_blocks=8, ffn_scale=2.0, upscaling_factor=scale)


def swinir_light(scale: int) -> nn.Module:
    return _spandrel_arch("SwinIR", "SwinIR")(upscale=scale, in_chans=3, img_size=64, window_size=8, img_range=1.0,
                                              depths=[6, 6, 6, 6], embed_dim=60, num_heads=[6, 6, 6, 6],
                                              mlp_ratio=2, upsampler="pixelshuffledirect", resi_connection="1conv")


def compact(blocks: int, feat: int) -> Callable[[int], nn.Module]:
    def build(scale: int) -> nn.Module:
        from ..archs.networks import CompactSRNet

        return CompactSRNet(num_in_ch=3, num_out_ch=3, num_feat=feat, num_conv=blocks, upscale=scale)
    return build


def _classic(name: str) -> Callable[[int], nn.Module]:
    def build(scale: int) -> nn.Module:
        from . import classic, distillation

        makers = {"fsrcnn": classic.FSRCNN, "carn_m": classic.CARNM, "edsr_baseline": classic.EDSRBaseline,
                  "imdn": distillation.imdn, "rfdn": distillation.rfdn, "rlfn": distillation.rlfn}
        return makers[name](scale=scale)
    return build


ETDS = "ETDS (CVPR 2023) Table 2, RGB retrained on DIV2K [3P]"
SAFMN_TABLE = "SAFMN (ICCV 2023) efficient-SR table [3P]"
PEERS: dict[str, Peer] = {p.name: p for p in [
    Peer("fsrcnn", "FSRCNN", _classic("fsrcnn"), Published(24_680, ETDS),
         Published(52.68e9, ETDS + "; the transposed conv counted densely on the HR grid", (360, 640),
                   _dense_transposed),
         {"Set5": 30.76, "Set14": 27.74, "B100": 27.01, "Urban100": 24.66}, ETDS),
    Peer("carn_m", "CARN-M", _classic("carn_m"), Published(412_000, "CARN (ECCV 2018) table [V]; one network with "
                                                           "the x2, x3 and x4 upsamplers", count=_all_params),
         Published(32.5e9, "CARN table, 720p output [V]", (180, 320)),
         {"Set5": 31.92, "Set14": 28.42, "B100": 27.44, "Urban100": 25.62}, "CARN table [V]"),
    Peer("imdn", "IMDN", _classic("imdn"), Published(715_000, "SwinIR Table 3 / SAFMN table [3P]"),
         Published(40.9e9, "SwinIR Table 3, 720p output [3P]", (180, 320)),
         {"Set5": 32.21, "Set14": 28.58, "B100": 27.56, "Urban100": 26.04}, "SwinIR Table 3 [3P]"),
    Peer("rfdn", "RFDN", _classic("rfdn"), Published(433_450, "NTIRE 2022 ESR baseline (AIM 2020 winner) [V]"),
         Published(27.10e9, "NTIRE 2022 ESR README, 256x256 LR [V]", (256, 256)),
         {"B100": 27.60}, "SAFMN's comparison with the NTIRE winners (figs/esr_winner.png) [3P]"),
    Peer("rlfn", "RLFN", _classic("rlfn"), Published(543_740, "SAFMN figs/esr_winner.png [3P]"),
         Published(29.88e9, "SAFMN figs/esr_winner.png, 720p output [3P]", (180, 320)),
         {"Set5": 32.24, "Set14": 28.62, "B100": 27.60, "Urban100": 26.17}, "RLFN paper Table 1 [3P]"),
    Peer("span", "SPAN (48 ch)", span(48), Published(426_288, "hongyuanyu/SPAN definition, 48 channels [D]"),
         Published(27.87e9, "from the definition, 256x256 LR [D]", (256, 256)),
         {"Set14": 28.66}, "SPAN results.png, read off the plot [V, approx.]"),
    Peer("span28", "SPAN (28 ch, NTIRE)", span(28), Published(150_688, "NTIRE 2026 ESR README: 0.151 M [V]"),
         Published(9.83e9, "NTIRE 2026 ESR README, 256x256 LR [V]", (256, 256))),
    Peer("safmn", "SAFMN", safmn, Published(239_520, "SAFMN figs/esr_winner.png [V]"),
         Published(13.56e9, "SAFMN figs/esr_winner.png, 720p output [V]", (180, 320)),
         {"Set5": 32.18, "Set14": 28.60, "B100": 27.58, "Urban100": 25.97}, "SAFMN figs/efficient_sr.png [V]"),
    Peer("edsr_baseline", "EDSR-baseline", _classic("edsr_baseline"),
         Published(1_517_571, "BasicSR edsr_arch.py, f64 b16 [D]; 1,518K in the tables"),
         Published(114e9, SAFMN_TABLE + ", 720p output", (180, 320)),
         {"Set5": 32.09, "Set14": 28.58, "B100": 27.57, "Urban100": 26.04}, SAFMN_TABLE),
    Peer("swinir_light", "SwinIR-light", swinir_light,
         Published(897_000, "SwinIR Table 3 [3P]; without the relative-position bias tables",
                   count=_without_position_bias),
         Published(49.6e9, "SwinIR Table 3 [3P]: convs and linear layers, not the attention products; matches a "
                   "176x320 LR input exactly (180 rows are padded to 184)", (176, 320), _without_attention_products),
         {"Set5": 32.44, "Set14": 28.77, "B100": 27.69, "Urban100": 26.47}, "SwinIR Table 3 [3P]"),
    Peer("m4c8", "plain M4C8", compact(4, 8)),
    Peer("m4c16", "plain M4C16", compact(4, 16), Published(16_770, ETDS), Published(3.83e9, ETDS, (360, 640)),
         {"Set5": 30.87, "Set14": 27.80, "B100": 27.06, "Urban100": 24.75}, "ECBSR-M4C16, " + ETDS),
    Peer("m4c32", "plain M4C32", compact(4, 32), Published(51_920, ETDS), Published(11.91e9, ETDS, (360, 640)),
         {"Set5": 31.24, "Set14": 28.04, "B100": 27.21, "Urban100": 25.07}, "ECBSR-M4C32, " + ETDS),
    Peer("m6c40", "plain M6C40", compact(6, 40), Published(105_370, ETDS), Published(24.20e9, ETDS, (360, 640)),
         {"Set5": 31.41, "Set14": 28.20, "B100": 27.33, "Urban100": 25.37}, "ECBSR-M6C40, " + ETDS),
    Peer("m10c32", "plain M10C32", compact(10, 32), Published(107_600, "from the layer shapes [D]")),
    Peer("m16c64", "plain M16C64", compact(16, 64),
         Published(621_424, "from the layer shapes [D]; Real-ESRGAN's realesr-animevideov3 has this size"),
         Published(35.67e9, "from the layer shapes, 720p output [D]", (180, 320)),
         {"Set5": 31.92, "Set14": 28.34, "B100": 27.48, "Urban100": 25.81},
         "ECBSR-M16C64, Y-channel model (ECBSR paper via " + SAFMN_TABLE + ")"),
]}


def peer_names() -> list[str]:
    return list(PEERS)


def build_peer(name: str, scale: int = 4) -> nn.Module:
    """A peer network with random weights, in eval mode (SPAN then uses its re-parameterized convs)."""
    if name not in PEERS:
        from ..zoo import closest_name

        close = closest_name(name, PEERS)
        raise RepsrError(f"{name}: no such network{'; did you mean ' + close + '?' if close else ''} "
                         f"(repsr bench --list)")
    model = PEERS[name].build(scale).eval()
    for module in model.modules():  # SPAN's Conv3XC merges its branches into eval_conv when updated
        if hasattr(module, "update_params") and hasattr(module, "eval_conv"):
            module.update_params()
    return model
