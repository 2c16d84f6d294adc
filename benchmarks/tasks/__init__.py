"""Task registry: look tasks up by the name that configs and the command line use."""

from __future__ import annotations

from benchmarks.tasks.base import SPLITS, Problem, Task, split_of
from benchmarks.tasks.coding import CodeTask, load_humaneval, load_mbpp_jsonl
from benchmarks.tasks.countdown import CountdownTask, load_countdown_jsonl
from benchmarks.tasks.mathematics import MathTask, load_gsm8k_jsonl, load_math500_jsonl
from benchmarks.tasks.sudoku import SudokuTask, load_sudoku_csv

TASKS: dict[str, type[Task]] = {
    CodeTask.name: CodeTask,
    CountdownTask.name: CountdownTask,
    MathTask.name: MathTask,
    SudokuTask.name: SudokuTask,
}


def get_task(name: str) -> Task:
    """Return a new instance of the task registered as `name`; raises ValueError if unknown."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]()


__all__ = [
    "SPLITS",
    "TASKS",
    "CodeTask",
    "CountdownTask",
    "MathTask",
    "Problem",
    "SudokuTask",
    "Task",
    "get_task",
    "load_countdown_jsonl",
    "load_gsm8k_jsonl",
    "load_humaneval",
    "load_math500_jsonl",
    "load_mbpp_jsonl",
    "load_sudoku_csv",
    "split_of",
]
