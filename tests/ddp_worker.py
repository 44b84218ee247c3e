"""Run under torchrun by tests/test_train.py: train, or check SyncBN, in several CPU processes (gloo)."""

import copy
import os
import sys

import torch
import torch.distributed as dist

from repsr.archs import RepSRBlock, branch_forward
from repsr.bn import SwitchableBatchNorm2d, set_bn_sync
from repsr.config import load_config
from repsr.training import Trainer


def check_sync_bn(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    full = torch.randn(4 * world, 3, 5, 5, requires_grad=True)
    ref = SwitchableBatchNorm2d(3)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-1, 1)
    bn = SwitchableBatchNorm2d(3)
    bn.load_state_dict(ref.state_dict())
    bn.sync = True
    expected = ref(full)
    (expected * torch.arange(expected.numel()).reshape(expected.shape)).sum().backward()
    mine = full.detach()[rank * 4 : (rank + 1) * 4].clone().requires_grad_(True)
    out_mine = bn(mine)
    weights = torch.arange(expected.numel()).reshape(expected.shape)[rank * 4 : (rank + 1) * 4]
    (out_mine * weights).sum().backward()
    errors = [
        (out_mine - expected[rank * 4 : (rank + 1) * 4]).abs().max().item(),
        ((mine.grad - full.grad[rank * 4 : (rank + 1) * 4]).abs().max() / full.grad.abs().max()).item(),
        (bn.running_mean - ref.running_mean).abs().max().item(),
        (bn.running_var - ref.running_var).abs().max().item(),
    ]
    # a RepSR block in the batch phase with synced BNs (one conv from all ranks' patch moments)
    # equals the two-path module on the global batch
    ref_block = RepSRBlock(32).double().train()
    block = copy.deepcopy(ref_block)
    set_bn_sync(block, True)
    assert block._batch_moments_apply(torch.zeros(1, 32, 2, 2, dtype=torch.float64))
    full = torch.randn(2 * world, 32, 6, 7, dtype=torch.float64, requires_grad=True)
    with branch_forward(ref_block):
        expected = ref_block(full)
    weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (expected * weights).sum().backward()
    mine = full.detach()[rank * 2 : (rank + 1) * 2].clone().requires_grad_(True)
    out_mine = block(mine)
    (out_mine * weights[rank * 2 : (rank + 1) * 2]).sum().backward()
    errors += [
        (out_mine - expected[rank * 2 : (rank + 1) * 2]).abs().max().item(),
        ((mine.grad - full.grad[rank * 2 : (rank + 1) * 2]).abs().max() / full.grad.abs().max()).item(),
        max((a.double() - b.double()).abs().max().item() for a, b in zip(block.buffers(), ref_block.buffers(),
                                                                          strict=True)),
    ]
    with open(os.path.join(out, f"syncbn_rank{rank}.txt"), "w") as f:
        f.write(" ".join(str(e) for e in errors))
    dist.barrier()  # no rank tears gloo down while the other still has a collective in flight (SIGABRT)
    dist.destroy_process_group()


def main() -> None:
    mode, config_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "syncbn":
        check_sync_bn(out)
        return
    config = load_config(config_path, sys.argv[4:])
    trainer = Trainer(config, out, resume=mode == "resume")
    trainer.run()
    torch.save(trainer.model.state_dict(), os.path.join(out, f"rank{trainer.dist.rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
