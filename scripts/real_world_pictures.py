"""What the two kinds of bundled model do to degraded and real-looking inputs: side-by-side crops, docs/real_world.md.

    python scripts/real_world_pictures.py [--data-root ../shared/datasets]

1. Degraded test images: Set14 images whose bicubic LR went through each standard degradation (JPEG q40, noise 10
   + JPEG q60, blur 1 + JPEG q60, the real-world pipeline), upscaled by bicubic, by the bicubic-trained model and
   by the real-world model, next to the HR; the crop is where the bicubic-trained model errs most.
2. Phone-style JPEGs made here: Set14 HR images at their own size with what a phone's pipeline adds (sensor noise,
   sharpening, JPEG at quality 80 with 4:2:0 chroma), upscaled as they are (no ground truth); the crop is the
   most detailed region.

Writes results/real_world/*.png (and the phone-style inputs) and docs/real_world.md. The page's observations block,
between its markers, is a person's and survives a rewrite.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import cv2
import numpy as np
import torch

from repsr.data import open_dataset
from repsr.degradation import EvalDegradation
from repsr.degradation.ops import jpeg_roundtrip_uint8
from repsr.fileio import atomic_write
from repsr.images import read_image, to_rgb, write_image
from repsr.inference import Upscaler
from repsr.metrics import psnr
from repsr.plots import label_tile
from repsr.resize import imresize

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "real_world"
PAGE = ROOT / "docs" / "real_world.md"
DEGRADED = [("comic", "jpeg40"), ("lenna", "noise10+jpeg60"), ("zebra", "blur1+jpeg60"), ("barbara", "real")]
PHONE = ["monarch", "pepper", "face"]
CROP = 40  # LR pixels
MARKERS = ("<!-- observations -->", "<!-- /observations -->")


def worst_crop(error: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the size x size window with the largest summed ``error`` (an HxW map)."""
    integral = cv2.integral(error.astype(np.float64))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(np.argmax(sums), sums.shape)
    return int(y), int(x)


def strip(tiles: list[tuple[np.ndarray, str]], scale: int = 1) -> np.ndarray:
    big = [label_tile(cv2.resize(t, (t.shape[1] * scale, t.shape[0] * scale), interpolation=cv2.INTER_NEAREST), label)
           for t, label in tiles]
    return np.concatenate(big, axis=1)


def phone_jpeg(hr: np.ndarray, seed: int) -> np.ndarray:
    """What a phone adds to a scene: sensor noise (stronger in the dark), sharpening, JPEG q80 with 4:2:0 chroma."""
    rng = np.random.default_rng(seed)
    x = hr.astype(np.float32) / 255
    noisy = x + rng.normal(0, 1, x.shape).astype(np.float32) * (1.5 + 3 * (1 - x)) / 255
    blur = cv2.GaussianBlur(noisy, (0, 0), 1.0)
    sharp = np.clip(noisy + 0.6 * (noisy - blur), 0, 1)
    return jpeg_roundtrip_uint8(np.round(sharp * 255).astype(np.uint8), 80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--clean", default="repsr-x4-m4c16", help="the bicubic-trained model")
    parser.add_argument("--real", default="repsr-x4-m4c16-real", help="the real-world model")
    args = parser.parse_args()
    torch.set_num_threads(2)
    clean, real = Upscaler(args.clean, "cpu"), Upscaler(args.real, "cpu")
    s = clean.scale
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "inputs").mkdir(exist_ok=True)
    rows = []
    for name, degradation in DEGRADED:
        ds = open_dataset(Path(args.data_root) / "Set14", s, None, EvalDegradation(degradation))
        pair = ds[[p.stem for p in ds.hr_files].index(name)]
        lr, hr = to_rgb(pair.lr), to_rgb(pair.hr)
        outs = {"bicubic": imresize(lr, s), "bicubic-trained": clean(lr), "real-world": real(lr)}
        scores = {k: psnr(v, hr, s) for k, v in outs.items()}
        error = np.abs(outs["bicubic-trained"].astype(np.float32) - hr).mean(axis=2)
        y, x = worst_crop(cv2.resize(error, (lr.shape[1], lr.shape[0]), interpolation=cv2.INTER_AREA), CROP)
        cut = (slice(y * s, (y + CROP) * s), slice(x * s, (x + CROP) * s))
        tiles = [(cv2.resize(lr[y : y + CROP, x : x + CROP], (CROP * s, CROP * s), interpolation=cv2.INTER_NEAREST),
                  "LR (nearest)")]
        tiles += [(outs[k][cut], k) for k in outs] + [(hr[cut], "HR")]
        file = f"degraded_{name}_{degradation.replace('+', '_')}.png"
        write_image(OUT / file, strip(tiles, 2 if s == 2 else 1))
        rows.append((f"Set14 {name}, {EvalDegradation(degradation).label}", file, scores))
    phones = []
    for seed, name in enumerate(PHONE):
        hr = to_rgb(read_image(Path(args.data_root) / "Set14" / f"{name}.png"))
        photo = phone_jpeg(hr, seed)
        cv2.imwrite(str(OUT / "inputs" / f"{name}_phone.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])  # shown as made: the q80 round trip is already in it
        gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32)
        detail = np.abs(cv2.Laplacian(gray, cv2.CV_32F))
        size = min(CROP, photo.shape[0] - 1, photo.shape[1] - 1)
        y, x = worst_crop(detail, size)
        part = photo[y : y + size, x : x + size]
        tiles = [(cv2.resize(part, (size * s, size * s), interpolation=cv2.INTER_NEAREST), "input (nearest)"),
                 (imresize(part, s), "bicubic"), (clean(part), "bicubic-trained"), (real(part), "real-world")]
        file = f"phone_{name}.png"
        write_image(OUT / file, strip(tiles))
        phones.append((name, file))
    write_page(rows, phones, args.clean, args.real, s)


def write_page(rows, phones, clean: str, real: str, scale: int) -> None:
    old = PAGE.read_text() if PAGE.is_file() else ""
    kept = re.search(re.escape(MARKERS[0]) + r"(.*?)" + re.escape(MARKERS[1]), old, re.S)
    observations = kept.group(1).strip() if kept else "(what a person sees: to be written after looking)"
    lines = ["# Real photos and video: what the two kinds of model do", "",
             f"Written by `python scripts/real_world_pictures.py` (x{scale}): `{clean}`, trained on clean bicubic "
             f"downscales, against `{real}`, trained on the real-world degradation model. "
             "[MODEL_ZOO.md](../MODEL_ZOO.md) has the numbers on whole test sets.", "",
             MARKERS[0], observations, MARKERS[1], "",
             "## Degraded test images", "",
             "Set14 images whose bicubic LR was degraded as `repsr eval --degradation` does; the crop is where the "
             "bicubic-trained model errs most. PSNR (Y, crop = scale) of the whole image in each label.", ""]
    for title, file, scores in rows:
        lines += [f"**{title}**: " + ", ".join(f"{k} {v:.2f} dB" for k, v in scores.items()), "",
                  f"![{title}](../results/real_world/{file})", ""]
    lines += ["## Phone-style JPEGs", "",
              "Set14 HR images at their own size with what a phone adds (sensor noise stronger in the dark, "
              "sharpening, JPEG quality 80 with 4:2:0 chroma), made by this script "
              "(`results/real_world/inputs/`), upscaled as they are: there is no ground truth. The crop is the most "
              "detailed region.", ""]
    lines += [f"![{name}](../results/real_world/{file})\n" for name, file in phones]
    with atomic_write(PAGE) as tmp:
        tmp.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
