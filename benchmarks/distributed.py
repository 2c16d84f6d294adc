"""Data-parallel runs with accelerate: which rows each process owns, and the collective steps.

    accelerate launch --num_processes 2 --cpu -m benchmarks.run --methods gdsd --preset smoke

Every process draws the same prompts and per-row seeds from the shared generator and keeps its
own contiguous block of whole groups, so a row's completion and masks are the same whatever the
number of processes. Gradients are averaged across processes by the wrapped model (DDP, FSDP or
DeepSpeed, as the accelerate config selects). Metrics are averaged or summed, and only the main
process writes files. Without `accelerate launch` everything runs in this one process.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class Shard:
    """This process's place among `world` processes."""

    rank: int = 0
    world: int = 1

    def block(self, count: int) -> slice:
        """Return this process's contiguous block of `count` items; raises ValueError unless it divides."""
        if count % self.world:
            raise ValueError(f"{count} items do not split evenly over {self.world} processes")
        size = count // self.world
        return slice(self.rank * size, (self.rank + 1) * size)


def check_batch_split(prompts_per_step: int, group_size: int, world: int) -> None:
    """Raise ValueError unless every process gets whole groups of the global rollout batch."""
    if prompts_per_step % world:
        global_batch = prompts_per_step * group_size
        raise ValueError(
            f"the global batch of {global_batch} completions ({prompts_per_step} prompts x group size "
            f"{group_size}) does not split into whole groups over {world} processes; make "
            f"prompts_per_step a multiple of {world}"
        )


class Distributed:
    """The collective operations the harness needs; a single process unless launched by accelerate."""

    def __init__(self, accelerator: Any | None = None):
        self.accelerator = accelerator

    @classmethod
    def from_environment(cls) -> "Distributed":
        """Start accelerate when `accelerate launch` (or torchrun) set WORLD_SIZE above 1."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import Accelerator

        return cls(Accelerator())

    @property
    def shard(self) -> Shard:
        if self.accelerator is None:
            return Shard()
        return Shard(self.accelerator.process_index, self.accelerator.num_processes)

    @property
    def is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    def prepare(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, torch.optim.Optimizer]:
        """Wrap the trained model and its optimizer; returns (model to call for gradients, optimizer).

        The wrapper averages gradients over processes in backward. It gets the denoiser's token
        ids and prompt codec, which the sampler and estimators use, so it replaces the model in
        every policy forward. NOTE: only DDP has run (on CPU); the FSDP and ZeRO configs have not
        been tried, because no GPU machine was available.
        """
        if self.accelerator is None:
            return model, optimizer
        wrapped, optimizer = self.accelerator.prepare(model, optimizer)
        for name in ("mask_token_id", "eos_token_id", "pad_token_id", "tokenizer", "encode_prompts", "decode_completions"):
            setattr(wrapped, name, getattr(model, name))
        return wrapped, optimizer

    def clip_grad_norm(self, parameters, max_norm: float) -> float:
        if self.accelerator is None:
            return torch.nn.utils.clip_grad_norm_(parameters, max_norm).item()
        return float(self.accelerator.clip_grad_norm_(parameters, max_norm))

    def mean(self, value: float) -> float:
        """Average a per-process value over processes (equal local batches make it the global mean)."""
        if self.accelerator is None:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(tensor, reduction="mean").item()

    def sum(self, value: int) -> int:
        if self.accelerator is None:
            return value
        tensor = torch.tensor([value], dtype=torch.long, device=self.accelerator.device)
        return int(self.accelerator.reduce(tensor, reduction="sum").item())

    def gather(self, items: Sequence[Any]) -> list[Any]:
        """Concatenate every process's list, in rank order."""
        if self.accelerator is None:
            return list(items)
        from accelerate.utils import gather_object

        return gather_object(list(items))

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the block on the main process first, then on the others (for shared caches)."""
        if self.accelerator is None:
            yield
            return
        with self.accelerator.main_process_first():
            yield

    def wait(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()


SINGLE_PROCESS = Distributed()
