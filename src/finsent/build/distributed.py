"""Training on several processes (``torchrun`` / ``accelerate launch``): who this process is, and the few
collective steps ``finsent finetune`` adds around the Trainer's own (rank 0 writes, the others wait).

Every other stage runs in one process (``require_single_process``).
"""

from __future__ import annotations

import os

from finsent.core.errors import FinsentError, UsageError
from finsent.core.recipes import FinetuneSection


class DistributedError(FinsentError, RuntimeError):
    """Another process of a distributed run failed (rank 0 could not write the output, ...)."""


def launch_world() -> tuple[int, int]:
    """(rank, number of processes) as ``torchrun`` / ``accelerate launch`` set them (RANK, WORLD_SIZE); (0, 1)
    in a plain process."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UsageError(f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} "
                         "are not integers: launch with torchrun or accelerate launch") from None


def require_single_process(command: str) -> None:
    """Refuse ``command`` under a distributed launch: only ``finsent finetune`` trains on several processes.

    Every stage but fine-tuning would run N times over the same folders; a release is built by launching the
    fine-tuning distributed, then running the other stages in one process (the release reuses the adapter).
    """
    _, world = launch_world()
    if world > 1:
        raise UsageError(
            f"{command} runs in one process, not under torchrun/accelerate launch (WORLD_SIZE={world}): launch "
            "only the training on several devices, and each other stage in one process:\n"
            "  finsent release RECIPE --only prune\n"
            "  torchrun --nproc_per_node N -m finsent.cli finetune --recipe RECIPE --base runs/NAME/pruned "
            "--out runs/NAME/adapter\n"
            "  finsent release RECIPE --only merge   (then --only eval, --only card, --only push)")


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def on_rank0(world: int, rank: int, work, what: str):
    """Run ``work()`` on rank 0 only; the other ranks wait for it and raise DistributedError if it failed
    (instead of hanging at the next collective). Returns ``work()``'s value on rank 0, None elsewhere."""
    if world <= 1:
        return work()
    import torch.distributed as dist

    result, error, failure = None, None, [None]
    if rank == 0:
        try:
            result = work()
        except Exception as exc:  # noqa: BLE001 - passed on to the other ranks, then raised here
            error, failure[0] = exc, f"{type(exc).__name__}: {exc}"
    dist.broadcast_object_list(failure, src=0)
    if error is not None:
        raise error
    if failure[0] is not None:
        raise DistributedError(f"rank 0 failed while it {what}: {failure[0]}")
    return result


def fsdp_arguments(f: FinetuneSection) -> dict:
    """The TrainingArguments of ``finetune.fsdp``: transformers' FSDP2, each decoder layer its own shard unit
    (the model's ``_no_split_modules``); ``full_shard`` also frees the gathered weights after the forward."""
    if not f.fsdp:
        return {}
    return {"fsdp": True, "fsdp_config": {"version": 2, "reshard_after_forward": f.fsdp == "full_shard"}}


def end_process_group(world: int) -> None:
    """Tear the process group down once every rank has arrived: a rank that destroys it while another still
    uses its connections can abort at exit (gloo), after the output was written."""
    if world > 1:
        import torch.distributed as dist

        barrier(world)
        dist.destroy_process_group()
