"""The task interface: each task owns its prompts, parser, reward and metrics."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

SPLITS = ("train", "test")


def read_jsonl(path: str | Path, fields: Sequence[str]) -> list[tuple[str, dict]]:
    """Return ("file:line", record) for each non-blank line of a JSON-lines file (gzipped if `.gz`).

    Raises ValueError naming the file and line for invalid JSON, a line that is not an object,
    or a record without one of `fields`.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: invalid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object with fields {', '.join(fields)}")
            missing = next((name for name in fields if name not in record), None)
            if missing is not None:
                raise ValueError(f'{where}: missing field "{missing}"; expected fields {", ".join(fields)}')
            records.append((where, record))
    return records


@dataclass(frozen=True)
class Problem:
    """One task instance.

    `prompt` is the text the model is conditioned on, `answer` a reference completion used to
    pretrain the base model, and `meta` whatever the reward needs (the puzzle, the numbers, ...).
    """

    prompt: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


def split_of(prompt: str, test_fraction: float) -> str:
    """Assign a prompt to "train" or "test" by a stable hash, so the splits never share a prompt."""
    digest = hashlib.sha256(prompt.encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def check_split(split: str) -> None:
    """Raise ValueError unless `split` is one of SPLITS."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def check_batch(problems: Sequence[Problem], completions: Sequence[str]) -> None:
    """Raise ValueError unless there is one completion per problem and at least one problem."""
    if len(problems) != len(completions):
        raise ValueError(
            f"got {len(problems)} problems but {len(completions)} completions; pass one each"
        )
    if not problems:
        raise ValueError("metrics need at least one problem")


def mean(values: Sequence[float]) -> float:
    """Return the arithmetic mean of a non-empty sequence as a float."""
    return float(sum(values) / len(values))


# A request may take this many draws per problem before `sample_problems` gives up. A draw is
# lost to the other split (about 9 in 10 for a test fraction of 0.1), to a duplicate prompt, or
# to the task's own rejection, so this leaves a wide margin over the expected count.
ATTEMPTS_PER_PROBLEM = 200


def sample_problems(
    draw: Callable[[random.Random], Problem | None],
    *,
    task: str,
    split: str,
    count: int,
    seed: int,
    test_fraction: float,
    max_count: int,
) -> list[Problem]:
    """Draw `count` distinct problems of `split` from a generator seeded by task, split and seed.

    `draw` returns one candidate, or None when the candidate is rejected. A candidate is kept
    only if `split_of(prompt, test_fraction)` is `split` and its prompt is new, so the splits
    never share a prompt. Raises ValueError for an unknown split or a `count` outside
    0..`max_count`, and RuntimeError if the attempt budget runs out first.
    """
    check_split(split)
    if not 0 <= count <= max_count:
        raise ValueError(
            f"invalid count {count} for {task} {split} problems; request 0 to {max_count}"
        )

    # `random.Random` turns a string seed into an integer with SHA-512 (CPython seed version 2),
    # so the stream does not depend on PYTHONHASHSEED and stays the same across processes.
    rng = random.Random(f"{task}:{split}:{seed}")
    problems: list[Problem] = []
    seen: set[str] = set()
    attempts = ATTEMPTS_PER_PROBLEM * count
    for _ in range(attempts):
        if len(problems) == count:
            break
        problem = draw(rng)
        if problem is None or problem.prompt in seen:
            continue
        if split_of(problem.prompt, test_fraction) != split:
            continue
        seen.add(problem.prompt)
        problems.append(problem)

    if len(problems) < count:
        raise RuntimeError(
            f"drew only {len(problems)} of {count} distinct {task} {split} problems in "
            f"{attempts} attempts; request fewer problems"
        )
    return problems


class Task(ABC):
    """A registry entry: prompt format, parser, reward and metrics of one task.

    Completions are passed to `reward` and `metrics` as decoded text that already stops at the
    first end-of-sequence token.
    """

    name: str
    max_prompt_chars: int  # prompts are left-padded to this many characters
    completion_length: int  # generated tokens per completion
    headroom_metric: str  # the metric whose band stops base pretraining
    # Tokens the default sampler commits per denoising step. Long completions commit more per
    # step, which keeps their sampling cost on 2 CPU cores close to that of short ones.
    tokens_per_step: int = 2

    @abstractmethod
    def problems(self, split: str, count: int, seed: int) -> list[Problem]:
        """Return `count` problems of `split`, the same ones for the same seed."""

    @abstractmethod
    def reward(self, problem: Problem, completion: str) -> float:
        """Score one completion in [0, 1]."""

    def parse_answer(self, completion: str) -> str | None:
        """Return the answer that the reward reads from `completion`, for sample logs.

        The default is the stripped completion; tasks that extract an answer override this and
        return None when there is none.
        """
        return completion.strip()

    def rewards(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[float]:
        """Score a batch of completions, one per problem.

        Tasks whose reward is expensive (running code in the sandbox) override this to score the
        batch in parallel. The default calls `reward` on each pair.
        """
        check_batch(problems, completions)
        return [self.reward(problem, text) for problem, text in zip(problems, completions)]

    @abstractmethod
    def metrics(self, problems: Sequence[Problem], completions: Sequence[str]) -> dict[str, float]:
        """Return evaluation metrics (each a mean over the problems); always includes "accuracy"."""


class GeneratedTask(Task):
    """A task whose problems come from a seeded generator, split into train and test by prompt hash.

    Subclasses set `test_fraction` and `max_problems` (the cap on one request per split) and
    implement `draw`.
    """

    test_fraction: float
    max_problems: dict[str, int]

    @abstractmethod
    def draw(self, rng: random.Random, split: str) -> Problem | None:
        """Draw one candidate problem for `split`, or None when the draw breaks a rule of the task."""

    def problems(self, split: str, count: int, seed: int) -> list[Problem]:
        """Generate `count` distinct problems of `split`, the same ones for the same seed."""
        return sample_problems(
            lambda rng: self.draw(rng, split),
            task=self.name,
            split=split,
            count=count,
            seed=seed,
            test_fraction=self.test_fraction,
            max_count=self.max_problems.get(split, 0),
        )
