"""ncnn export: the deploy network as ``NAME.param`` + ``NAME.bin`` for realesrgan-ncnn-vulkan, Upscayl, mobile ncnn.

The two files are written directly, in the layout of Real-ESRGAN's own ``realesr-animevideov3``
files (Input, Split, Convolution + PReLU, PixelShuffle, Interp nearest, BinaryOp add; input blob
``data``, output blob ``output``): the format is small and fixed, so exporting needs neither a
converter (pnnx) nor the ncnn runtime, and weights stay float32 (the GPU tools convert to fp16 at
load time themselves). The ``ncnn`` package (``pip install 'repsr[ncnn]'``) is only needed to run
the result, e.g. to verify it with :func:`check_ncnn`.

Upscayl and upscayl-bin take a model's native scale from its file name (``x2``/``2x``, ``x3``/``3x``,
else 4), so a model's name must say its scale; :func:`check_ncnn_name` enforces that.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .archs.networks import CompactSRNet
from .errors import RepsrError
from .fileio import atomic_write, make_output_folder

INPUT_BLOB = "data"
OUTPUT_BLOB = "output"
PARAM_MAGIC = 7767517
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
# the order in which upscayl-bin looks for a scale tag in a model name (case-sensitive; first match wins)
_UPSCAYL_BIN_TAGS = ((1, ("x1", "1x")), (2, ("x2", "2x")), (3, ("x3", "3x")), (4, ("x4", "4x")),
                     (8, ("x8", "8x")), (16, ("x16", "16x")))


def upscayl_scales(name: str) -> tuple[int, int]:
    """The scale Upscayl's app and its upscayl-bin each read from a model name (both default to 4).

    The app (lower-cased) knows x2/2x and x3/3x; upscayl-bin (case-sensitive) checks x1, x2, x3, x4,
    x8, x16 (and the reversed forms) in that order. Both must agree with the model's scale.
    """
    lower = name.lower()
    app = 2 if ("x2" in lower or "2x" in lower) else 3 if ("x3" in lower or "3x" in lower) else 4
    binary = next((scale for scale, tags in _UPSCAYL_BIN_TAGS if any(t in name for t in tags)), 4)
    return app, binary


def check_ncnn_name(name: str, scale: int) -> None:
    """Refuse a name that is no plain file name or from which Upscayl would read another scale."""
    if not _NAME_RE.fullmatch(name):
        raise RepsrError(f"{name!r}: an ncnn model name is 1-100 letters, digits, '-', '_', '.', '+' "
                         "(it becomes NAME.param/NAME.bin and the -n argument)")
    if name.lower().endswith((".param", ".bin")):
        raise RepsrError(f"{name}: give the model name without .param/.bin")
    if name == "realesr-animevideov3":
        raise RepsrError(f"{name}: realesrgan-ncnn-vulkan loads {name}-x<scale> for this name; "
                         f"call it {name}-x{scale}")
    app, binary = upscayl_scales(name)
    if app not in (scale, binary) and scale not in (2, 3, 4):
        app = scale  # Upscayl's app knows only x2-x4 (the CLI says so); upscayl-bin's reading is what counts
    if app != scale or binary != scale:
        read = app if app != scale else binary
        raise RepsrError(f"{name}: Upscayl reads scale x{read} from this name but the model is x{scale}; "
                         f"name it with 'x{scale}' and no other scale tag, e.g. my-model-x{scale}")


def default_ncnn_name(stem: str, scale: int) -> str:
    """``stem`` if Upscayl reads ``x<scale>`` from it, else ``stem-x<scale>``, else ``repsr-x<scale>``."""
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "-", stem).strip("-.")[:90]
    for candidate in (stem, f"{stem}-x{scale}"):
        if f"x{scale}" in candidate and not _other_tags(candidate, scale):
            try:
                check_ncnn_name(candidate, scale)
                return candidate
            except RepsrError:
                pass
    return f"repsr-x{scale}"


def _other_tags(name: str, scale: int) -> bool:
    """Whether ``name`` mentions a scale other than ``scale`` (``x4`` in an x2 model's name misleads people too)."""
    lower = name.lower().replace(f"x{scale}", "").replace(f"{scale}x", "")
    return any(t in lower for s, tags in _UPSCAYL_BIN_TAGS if s != scale for t in tags)


def ncnn_param(model: CompactSRNet) -> str:
    """The ``.param`` text: one layer a line, ``Type name n_in n_out inputs... outputs... key=value...``."""
    layers: list[str] = []

    def add(kind: str, name: str, inputs: list[str], outputs: list[str], params: str = "") -> None:
        layers.append(f"{kind:<16} {name:<16} {len(inputs)} {len(outputs)} {' '.join(inputs + outputs)}"
                      + (f" {params}" if params else ""))

    add("Input", INPUT_BLOB, [], [INPUT_BLOB])
    add("Split", "splitncnn_0", [INPUT_BLOB], ["data_body", "data_skip"])  # ncnn wants one consumer per blob
    blob = "data_body"
    for i, m in enumerate(model.body):
        if isinstance(m, nn.Conv2d):
            if m.kernel_size != (3, 3) or m.bias is None or m.padding != (1, 1) or m.stride != (1, 1):
                raise RepsrError(f"body.{i}: expected a 3x3 conv with bias, stride 1, padding 1")
            add("Convolution", f"conv{i}", [blob], [f"conv{i}"],
                f"0={m.out_channels} 1=3 4=1 5=1 6={m.weight.numel()}")  # 4=1: pad 1 on every side
            blob = f"conv{i}"
        elif isinstance(m, nn.PReLU):
            add("PReLU", f"prelu{i}", [blob], [f"prelu{i}"], f"0={m.weight.numel()}")
            blob = f"prelu{i}"
        else:
            raise RepsrError(f"body.{i}: {type(m).__name__} has no ncnn export")
    s = model.upscale
    add("PixelShuffle", "pixelshuffle", [blob], ["pixelshuffle"], f"0={s}")  # mode 0 (default): PyTorch's order
    add("Interp", "upsample", ["data_skip"], ["upsample"], f"0=1 1={float(s):e} 2={float(s):e}")  # 0=1: nearest
    add("BinaryOp", "add", ["pixelshuffle", "upsample"], [OUTPUT_BLOB], "0=0")  # 0=0: add
    blobs = len(layers) + 1  # every layer makes one blob, the Split two
    return "\n".join([str(PARAM_MAGIC), f"{len(layers)} {blobs}", *layers]) + "\n"


def _f32(t: torch.Tensor) -> bytes:
    return np.ascontiguousarray(t.detach().cpu().float().numpy(), dtype="<f4").tobytes()


def ncnn_weights(model: CompactSRNet) -> bytes:
    """The ``.bin`` bytes in layer order: per conv a zero 4-byte tag (raw float32), weights, bias; per PReLU slopes."""
    parts: list[bytes] = []
    for m in model.body:
        if isinstance(m, nn.Conv2d):
            parts += [b"\0\0\0\0", _f32(m.weight), _f32(m.bias)]
        elif isinstance(m, nn.PReLU):
            parts.append(_f32(m.weight))
    return b"".join(parts)


def export_ncnn(model: CompactSRNet, folder: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write ``folder/name.param`` and ``folder/name.bin`` (fp32), each via a temporary file and a rename.

    ``folder`` is created if missing. Returns the two paths.
    """
    folder = Path(folder)
    check_ncnn_name(name, model.upscale)
    make_output_folder(folder)
    param, weights = folder / f"{name}.param", folder / f"{name}.bin"
    for path in (param, weights):
        if path.is_dir():
            raise RepsrError(f"{path}: is a folder")
    text, data = ncnn_param(model), ncnn_weights(model)
    try:
        # the .bin is renamed into place after the .param (inner context exits first)
        with atomic_write(weights) as tmp_bin, atomic_write(param) as tmp_param:
            tmp_bin.write_bytes(data)
            tmp_param.write_text(text, encoding="ascii")
    except OSError as e:
        raise RepsrError(f"{folder}: cannot write {name}.param/.bin ({e.strerror or e})") from None
    return param, weights


def run_ncnn(param: str | os.PathLike, weights: str | os.PathLike, x: np.ndarray, threads: int = 0,
             vulkan: bool = False, fp16: bool = False) -> np.ndarray:
    """Run the ncnn files on ``x`` (float32 NCHW) with the ``ncnn`` runtime; returns NCHW.

    By default on CPU in fp32. ``vulkan=True, fp16=True`` is how realesrgan-ncnn-vulkan and Upscayl
    run a model (fp16 storage, fp32 arithmetic), on the first Vulkan device.
    """
    import ncnn

    net = ncnn.Net()
    opt = net.opt
    opt.use_vulkan_compute = vulkan
    opt.use_fp16_storage = opt.use_fp16_packed = fp16
    opt.use_fp16_arithmetic = opt.use_bf16_storage = False
    if threads:
        opt.num_threads = threads
    if vulkan:
        if ncnn.get_gpu_count() < 1:
            raise RepsrError(f"{param}: no Vulkan device to run ncnn on")
        net.set_vulkan_device(0)
    if net.load_param(str(param)) != 0:
        raise RepsrError(f"{param}: ncnn cannot load this .param file")
    if net.load_model(str(weights)) != 0:
        raise RepsrError(f"{weights}: ncnn cannot load this .bin file")
    outputs = [_extract(net, image, param) for image in np.asarray(x, dtype=np.float32)]
    net.clear()
    return np.stack(outputs)


def _extract(net: object, image: np.ndarray, param: str | os.PathLike) -> np.ndarray:
    """One CHW image through ``net``; the extractor and its output Mat (the net's memory) die here, before the net."""
    import ncnn

    # copied channel by channel into ncnn's own (row-aligned) layout: a Mat wrapping the numpy
    # buffer works on CPU but is uploaded wrongly to Vulkan when H*W is not a multiple of 4
    c, h, w = image.shape
    mat = ncnn.Mat(w, h, c)
    for q in range(c):
        np.array(mat.channel(q), copy=False)[:] = image[q]
    ex = net.create_extractor()
    ex.input(INPUT_BLOB, mat)
    ret, out = ex.extract(OUTPUT_BLOB)
    if ret != 0:
        raise RepsrError(f"{param}: ncnn failed to run the network (code {ret})")
    result = np.stack([np.array(out.channel(q), dtype=np.float32, copy=True) for q in range(out.c)])
    del out, ex
    return result


def check_ncnn(model: CompactSRNet, param: str | os.PathLike, weights: str | os.PathLike,
               shape: tuple[int, int, int, int]) -> float:
    """Max absolute difference between the ncnn runtime on the files and ``model`` on a random input."""
    x = torch.rand(*shape)
    with torch.no_grad():
        expected = model.float().cpu().eval()(x).numpy()
    got = run_ncnn(param, weights, x.numpy())
    if got.shape != expected.shape:
        raise RepsrError(f"{param}: ncnn output has shape {got.shape}, expected {expected.shape}")
    return float(np.abs(got - expected).max())


def ncnn_report(model: CompactSRNet, folder: Path, name: str, param: Path, weights: Path) -> list[str]:
    """What ``repsr export --ncnn`` says of the files it wrote: their error against PyTorch, the blobs, and how
    realesrgan-ncnn-vulkan and Upscayl take them (with what they cannot do)."""
    import shlex

    from .export import channels_text

    c, s = model.num_in_ch, model.upscale
    try:
        note = f"; ncnn max |error| {check_ncnn(model, param, weights, (1, c, 37, 45)):.1e}"
    except ImportError:
        note = " (install repsr[ncnn] to verify it)"
    lines = [f"wrote {param} + {weights.name} (fp32){note}",
             f"  input blob {INPUT_BLOB!r}: float32 CHW {channels_text(c)} in [0,1]; output blob {OUTPUT_BLOB!r}: x{s}",
             f"  realesrgan-ncnn-vulkan -i in.png -o out.png -m {shlex.quote(str(folder))} -n {name} -s {s}"]
    notes = []
    if folder.resolve().name == "models":
        lines.append(f"  Upscayl: Settings > Add Custom Models > select this 'models' folder; then pick {name!r}")
    else:
        notes.append("Upscayl accepts only a folder named 'models', and realesrgan-ncnn-vulkan needs 'models' "
                     "in its -m path: put the two files in such a folder")
    if c != 3 or model.num_out_ch != 3:
        notes.append(f"{c}-channel input: realesrgan-ncnn-vulkan and Upscayl feed RGB, so only your own ncnn "
                     "code can run this model")
    if model.num_conv + 2 > 10:
        notes.append(f"realesrgan-ncnn-vulkan and Upscayl overlap tiles by 10 px and this network sees "
                     f"{model.num_conv + 2} px, so tile seams can differ slightly from one pass "
                     "(as with Real-ESRGAN's own Compact models)")
    if len(f"{folder}/{name}.param") > 255:
        notes.append("realesrgan-ncnn-vulkan cuts model paths at 255 characters: use a shorter -m path")
    return lines + [f"  note: {text}" for text in notes]
