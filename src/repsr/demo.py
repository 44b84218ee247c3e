"""``repsr demo``: the whole RepSR path in a minute on a CPU, on synthetic images.

build RepSRNet -> train with mini-batch BN -> re-estimate population statistics -> switch BN to
population statistics and keep training -> merge into a plain Compact network -> verify the merge
-> write the deploy file -> measure the speed-up of the merged network.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .archs.networks import RepSRNet
from .archs.protocol import branch_forward
from .checkpoint import save_checkpoint
from .data import HRFolder, TrainPatches
from .errors import RepsrError
from .export import save_deploy
from .images import write_image
from .loading import load_deploy
from .reparam import max_merge_error, reparameterize_model
from .speed import time_forward
from .training.bn_schedule import BNSchedule

# `repsr demo` writes here; `make demo` (runs/demo-upscale) and `repsr train demo` (runs/demo) have their own folders
DEFAULT_OUT = "runs/demo-method"


def synthetic_image(rng: np.random.Generator, size: int = 160) -> np.ndarray:
    """A uint8 RGB image with edges, stripes, gradients and texture: something to super-resolve."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    img = np.zeros((size, size, 3))
    for _ in range(3):
        angle, freq = rng.uniform(0, np.pi), rng.uniform(2, 12)
        wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 6.3))
        img += wave[:, :, None] * rng.uniform(0, 0.25, size=3)
    img = (img - img.min()) / (np.ptp(img) + 1e-9)
    canvas = np.ascontiguousarray((img * 200).astype(np.uint8))
    for _ in range(6):
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        center = tuple(int(c) for c in rng.integers(0, size, size=2))
        if rng.random() < 0.5:
            cv2.circle(canvas, center, int(rng.integers(5, size // 4)), color, -1, lineType=cv2.LINE_AA)
        else:
            end = tuple(int(c) for c in rng.integers(0, size, size=2))
            cv2.line(canvas, center, end, color, int(rng.integers(1, 5)), lineType=cv2.LINE_AA)
    return canvas


def run_demo(out: Path, scale: int = 4, num_feat: int = 16, num_block: int = 4, steps: int = 60,
             seed: int = 0, batch_size: int = 16, lr_patch: int = 24) -> dict:
    if steps < 2:
        raise RepsrError(f"--steps must be >= 2, got {steps}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data_dir = out / "synthetic_hr"
    data_dir.mkdir(parents=True, exist_ok=True)
    for i in range(8):
        write_image(data_dir / f"img{i:02d}.png", synthetic_image(rng, lr_patch * scale + 32))
    train_set = TrainPatches(HRFolder(data_dir, scale), lr_patch, repeat=64, seed=seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True)
    batches = itertools.cycle(loader)

    model = RepSRNet(upscale=scale, num_feat=num_feat, num_block=num_block)
    print(f"RepSRNet x{scale} M{num_block}C{num_feat}: {sum(p.numel() for p in model.parameters()):,} "
          "training parameters")
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    # the trainer's BN switch (exact re-estimation, EMA restart and affine freezing when configured)
    bn = BNSchedule(model, None, lambda count: (next(batches)["lr"] for _ in range(count)), recompute_batches=8,
                    switch_at=max(1, int(steps * 0.75)), log=print)
    model.train()
    for step in range(1, steps + 1):
        if bn.due(step - 1):
            bn.switch(step - 1)
            print(f"step {step - 1}: BN -> population")
        batch = next(batches)
        loss = F.l1_loss(model(batch["lr"]), batch["hr"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bn.restore_frozen()
        if step % max(1, steps // 6) == 0 or step == steps:
            print(f"step {step:4d}  L1 {loss.item():.4f}")

    checkpoint = save_checkpoint(out / "checkpoint.pth", model, iteration=steps)
    deploy = reparameterize_model(model)
    x = torch.rand(2, 3, 17, 23)
    abs_err, rel_err = max_merge_error(model, deploy, x)
    deploy64 = reparameterize_model(model.double())
    abs64, _ = max_merge_error(model, deploy64, x.double())
    model.float()
    print(f"merge check: max |train(eval) - merged| = {abs_err:.2e} (fp32, relative {rel_err:.1e}), "
          f"{abs64:.1e} (fp64)")
    if rel_err > 1e-5 or abs64 > 1e-10:
        raise RepsrError("merged network does not match the training network")

    deploy_path = save_deploy(deploy, out / "model_deploy.safetensors")
    reloaded, meta = load_deploy(deploy_path)
    with torch.no_grad():
        same = torch.equal(reloaded(x), deploy(x))
    print(f"wrote {deploy_path} ({deploy_path.stat().st_size / 1024:.1f} KiB, SRVGGNetCompact, x{meta['scale']}); "
          f"reload identical: {same}; checkpoint {checkpoint}")

    frame = torch.rand(1, 3, 180, 320)
    with branch_forward(model):  # the multi-branch network as trained, not its online-merged form
        t_train = time_forward(model, frame, repeat=5)
    t_deploy = time_forward(deploy.to(memory_format=torch.channels_last), frame.to(memory_format=torch.channels_last),
                            repeat=5)
    print(f"speed, 180x320 -> {180 * scale}x{320 * scale} on CPU: training net {t_train * 1e3:.1f} ms, "
          f"merged net {t_deploy * 1e3:.1f} ms, speed-up {t_train / t_deploy:.2f}x")
    return {"merge_abs_error": abs_err, "merge_rel_error": rel_err, "speedup": t_train / t_deploy,
            "deploy": str(deploy_path), "checkpoint": str(checkpoint)}
