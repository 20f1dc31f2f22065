"""Data-parallel outer loop on torch.distributed (``torchrun``): each rank collects its
share of an update's tasks, gradients are averaged across ranks before clipping, and
rank 0 alone writes checkpoints and logs.

One process (no ``WORLD_SIZE`` in the environment, or 1) is the plain trainer: every
function here is then a no-op, so a single-process run is bit-identical to one from
before this module existed. gloo on CPU, nccl where the policy runs on a GPU.
"""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Ranks", "setup", "training_device", "sync_and_clip", "all_mean", "all_sum", "any_rank",
           "broadcast_parameters", "barrier", "shutdown", "local_launcher"]


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def writer(self) -> bool:
        """Rank 0 writes the run folder; the others only read it (resume)."""
        return self.rank == 0


def setup(device: str = "cpu") -> Ranks:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size())


def training_device(device: str, ranks: Ranks) -> torch.device:
    """The device a rank trains on: ``"cpu"``, or ``"cuda"`` / ``"cuda:N"`` (under torchrun
    ``"cuda"`` is each rank's ``LOCAL_RANK`` GPU). Refused in one line where torch sees no GPU."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a torch device (cpu, cuda, cuda:N)") from e
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"device {device!r}: the trainer runs on cpu or cuda")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: torch {torch.__version__} sees no CUDA GPU here "
                         "(a CPU build, or no driver)")
    if dev.index is None and ranks.active:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    torch.cuda.set_device(dev)
    return dev


def sync_and_clip(params: list[torch.nn.Parameter], max_norm: float) -> None:
    """Average the gradients over the ranks (one flat all-reduce), then clip their norm:
    the same step on every rank, so the weights stay identical."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
    torch.nn.utils.clip_grad_norm_(params, max_norm)


def all_sum(values: list[float]) -> list[float]:
    """Sums over the ranks (the values themselves in one process)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return list(values)
    # nccl reduces GPU tensors only (training_device has set this rank's GPU)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_mean(values: dict[str, float]) -> dict[str, float]:
    """Means over the ranks of per-rank figures with the same keys on every rank."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return dict(values)
    keys = sorted(values)
    sums = all_sum([values[k] for k in keys])
    return {k: s / dist.get_world_size() for k, s in zip(keys, sums)}


def any_rank(flag: bool) -> bool:
    """True on every rank when it is True on one (a stop request reaches them all)."""
    return bool(all_sum([1.0 if flag else 0.0])[0] > 0)


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Rank 0's weights on every rank (after a resume or an init_from, read by each rank)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        for t in module.state_dict().values():
            dist.broadcast(t, 0)


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group on every rank together (a rank that exits while another
    still holds its gloo connections can abort that one)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def local_launcher(nproc: int) -> tuple[list[str], dict]:
    """The command prefix (before ``-m module ...``) that starts ``nproc`` ranks on this
    machine with torchrun (one plain process for 1), and its environment: rendezvous and
    gloo on loopback, the package importable from its source tree."""
    from l2l_ros.resources import SOURCE_ROOT

    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": str(SOURCE_ROOT)}
    if nproc <= 1:
        return [sys.executable], env
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--master-addr", "127.0.0.1", "--master-port", str(port)], env
