"""Multi-process training under torchrun: sharded feature extraction and DistributedDataParallel for the LFDN.

    torchrun --nproc_per_node 4 tools/train.py --data fmnist-ood --out runs/ddp/ckpt.pt     (one node, 4 GPUs)
    torchrun --nproc_per_node 2 -m lfdn_edge train ...                                       (the same command)

torchrun starts N processes and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; :func:`from_env` reads
them (without them, or with WORLD_SIZE 1, training is the plain single-process path, unchanged). Backend: NCCL
with one CUDA GPU per process (``cuda:LOCAL_RANK``) when CUDA is available, else gloo on the CPU.

What each rank does:
- features: the images are cut into the extraction batches a single process would use (``FEATURE_BATCH``), and
  rank r extracts a contiguous run of whole batches (cached on disk per shard); the shards are gathered, so
  every rank holds the features a single process would have computed, batch for batch; rank 0 also stores
  the full array in the feature cache (a rerun, on any number of ranks, loads it).
- training (:func:`lfdn_edge.train.train_lfdn` with ``dist``): every rank draws the same permutation, levels
  and noise as a single process (same generators), takes its slice of each global batch of ``batch_size``
  items (``--batch-size`` is the global batch), and DDP averages the gradients; the loss of a slice is
  scaled so that the average is exactly the single-process mean over the global batch (also for a last,
  smaller batch). Parameters, optimiser and EMA stay identical on every rank; rank 0 writes the checkpoint
  (atomically) after every epoch and calibrates; the others wait at a barrier. Resuming works as for one
  process: rerun the same command (any number of processes).
The result equals single-process training up to float rounding of the gradient sum (the all-reduce adds
per-rank partial gradients in another order): tests/test_distributed.py states the measured difference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

FEATURE_BATCH = 128  # extraction batch of lfdn_edge.features.extract_features (shards are whole batches)


@dataclass
class DistContext:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        import torch.distributed as td

        if self.backend == "nccl":
            td.barrier(device_ids=[self.device.index])
        else:
            td.barrier()

    def slice(self, n: int) -> tuple[int, int]:
        """This rank's part [lo, hi) of a global batch of n items (sizes differ by at most one)."""
        return self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size

    def all_sum(self, value: float) -> float:
        import torch.distributed as td

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        td.all_reduce(t)
        return float(t.item())

    def close(self) -> None:
        import torch.distributed as td

        if td.is_initialized():
            td.destroy_process_group()


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an integer, got {os.environ.get('WORLD_SIZE')!r}") from None


def from_env(backend: str = "auto") -> DistContext | None:
    """Join the torchrun job described by the environment; None when there is none (or it has one process)."""
    world = env_world_size()
    if world <= 1:
        return None
    import torch.distributed as td

    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: start multi-process training "
                         "with torchrun (torchrun --nproc_per_node N tools/train.py ...)")
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"distributed backend must be auto, nccl or gloo, got {backend!r}")
    if backend == "nccl":
        if not torch.cuda.is_available() or local >= torch.cuda.device_count():
            raise ValueError(f"the nccl backend needs one CUDA GPU per process (local rank {local}, "
                             f"{torch.cuda.device_count()} GPU(s) visible); use --dist-backend gloo")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    td.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank, world, local, backend, device)


def shard_batches(n: int, world: int, rank: int, batch: int = FEATURE_BATCH) -> tuple[int, int]:
    """Items [lo, hi) of rank ``rank``: a contiguous run of whole extraction batches."""
    nb = -(-n // batch)
    b0, b1 = rank * nb // world, (rank + 1) * nb // world
    return min(n, b0 * batch), min(n, b1 * batch)


def gather_rows(dist: DistContext, part: np.ndarray, n: int, dim: int) -> np.ndarray:
    """Concatenate every rank's (n_r, dim) float32 rows in rank order (all_gather of padded tensors)."""
    import torch.distributed as td

    sizes = [shard_batches(n, dist.world_size, r)[1] - shard_batches(n, dist.world_size, r)[0]
             for r in range(dist.world_size)]
    assert part.shape == (sizes[dist.rank], dim), (part.shape, sizes[dist.rank], dim)
    width = max(sizes)
    padded = torch.zeros((width, dim), dtype=torch.float32, device=dist.device)
    padded[:part.shape[0]] = torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32)).to(dist.device)
    bufs = [torch.empty_like(padded) for _ in range(dist.world_size)]
    td.all_gather(bufs, padded)
    return np.concatenate([b[:s].cpu().numpy() for b, s in zip(bufs, sizes)])


def sharded_features(dist: DistContext, extractor, images: np.ndarray, cache_root=None, desc: str = "features",
                     progress: bool = True) -> np.ndarray:
    """The features of ``images`` on every rank, each rank extracting its shard (see the module docstring)."""
    from .feature_cache import cached_features, default_cache_root, feature_key

    root = default_cache_root() if cache_root is None else cache_root
    full = os.path.join(root, "features", f"{feature_key(images, extractor.config)}.npy")
    have = torch.tensor([1.0 if os.path.isfile(full) else 0.0], device=dist.device)
    import torch.distributed as td

    td.all_reduce(have, op=td.ReduceOp.MIN)  # all ranks take the same path (a shared or a local cache)
    if have.item() == 1.0:
        return cached_features(extractor, images, cache_root, desc=desc, progress=False)
    lo, hi = shard_batches(len(images), dist.world_size, dist.rank)
    dev = dist.device
    if dev.type == "cuda":
        extractor = extractor.to(dev)
    part = (cached_features(extractor, images[lo:hi], cache_root, desc=f"{desc} [rank {dist.rank}]",
                            progress=progress and dist.is_main) if hi > lo
            else np.zeros((0, extractor.layout.dim), np.float32))
    feats = gather_rows(dist, part, len(images), extractor.layout.dim)
    if dist.is_main:
        from ._atomic import atomic_write

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.save(fh, feats)

        atomic_write(full, write)
    dist.barrier()
    return feats


def ddp_model(dist: DistContext, model, ema, opt, z: torch.Tensor, ab: torch.Tensor):
    """Move the training state to this rank's device and wrap the model in DDP: (model, ema, opt, net, z, ab)."""
    from torch.nn.parallel import DistributedDataParallel

    dev = dist.device
    model.to(dev)
    ema.to(dev)
    for st in opt.state.values():  # a resumed optimizer's moments (Adam's step counter stays on the CPU)
        for k, v in list(st.items()):
            if isinstance(v, torch.Tensor) and k != "step":
                st[k] = v.to(dev)
    net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    return model, ema, opt, net, z.to(dev), ab.to(dev)


def ddp_loss(dist: DistContext, net, z0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, ab: torch.Tensor):
    """(loss to backpropagate, this rank's sum of per-item MSEs) for this rank's slice of a global batch.

    The loss is sum of squared errors * world / (b * C): DDP's gradient average over the ranks then equals
    the gradient of the single-process loss, the mean over all b * C values of the global batch. A rank whose
    slice is empty (a last batch smaller than the world) runs one item with weight 0, so that every rank
    takes part in the gradient all-reduce."""
    from .diffusion import q_sample

    b, c = z0.shape
    lo, hi = dist.slice(b)
    weight = dist.world_size / (b * c)
    if hi == lo:
        lo, hi, weight = 0, 1, 0.0
    dev = dist.device
    zr, tr, er = z0[lo:hi].to(dev), t[lo:hi].to(dev), eps[lo:hi].to(dev)
    sq = (net(q_sample(zr, ab[tr][:, None], er), tr) - zr).pow(2).sum()
    return sq * weight, (float(sq.detach()) / c if weight else 0.0)
