"""4x4 sudoku: fill the empty cells of a puzzle that has exactly one solution.

A grid is 16 digits in row-major order. Each row, column and 2x2 box contains 1, 2, 3 and 4 once,
and a puzzle writes `0` for an empty cell. The prompt is the puzzle and the completion is the
full solved grid.
"""

from __future__ import annotations

import csv
import functools
import itertools
import random
from pathlib import Path
from typing import Sequence

from benchmarks.tasks.base import GeneratedTask, Problem, check_batch, mean

SIZE = 4
CELLS = SIZE * SIZE
EMPTY = "0"
DIGITS = "1234"

# Every test puzzle has this many empty cells. NOTE: the count is meant to match the public 4x4
# test set, which was not available here to check.
TEST_BLANKS = 8
# Train puzzles draw their number of empty cells uniformly from this range, so that a model
# trains on easy puzzles as well as ones harder than the test puzzles.
TRAIN_BLANKS = range(4, 11)
TEST_FRACTION = 0.1

# Counted by checking every (grid, empty-cell set) pair against all 288 grids: 2,961,024
# puzzles with 8 empty cells have a unique solution, so the test split contains about 296,000
# of them. Each train blank count from 4 to 10 has at least 522,624 such puzzles. These caps keep
# a request well below the split's pool, where rejection sampling of distinct puzzles stays fast.
MAX_PROBLEMS = {"train": 1_000_000, "test": 100_000}


@functools.cache
def all_grids() -> tuple[str, ...]:
    """Return all 288 valid 4x4 sudoku grids as 16-digit strings, in lexicographic order."""
    rows = ["".join(row) for row in itertools.permutations(DIGITS)]
    grids = ("".join(stacked) for stacked in itertools.product(rows, repeat=SIZE))
    return tuple(grid for grid in grids if _columns_and_boxes_valid(grid))


def _columns_and_boxes_valid(grid: str) -> bool:
    columns = [grid[column::SIZE] for column in range(SIZE)]
    boxes = [
        grid[top * SIZE + left : top * SIZE + left + 2]
        + grid[(top + 1) * SIZE + left : (top + 1) * SIZE + left + 2]
        for top in (0, 2)
        for left in (0, 2)
    ]
    return all(set(group) == set(DIGITS) for group in columns + boxes)


@functools.cache
def _difference_masks() -> dict[str, tuple[int, ...]]:
    """Map each grid to the bit masks of cells where it differs from each other grid.

    A puzzle built from grid g has another solution exactly when some other grid differs from g
    only in the puzzle's empty cells, that is when a difference mask is a subset of the
    empty-cell mask.
    """
    grids = all_grids()
    return {
        grid: tuple(
            _cell_mask(a != b for a, b in zip(grid, other)) for other in grids if other != grid
        )
        for grid in grids
    }


def _cell_mask(flags) -> int:
    return sum(1 << cell for cell, flag in enumerate(flags) if flag)


def count_solutions(puzzle: str) -> int:
    """Return how many of the 288 grids agree with every given (non-zero) cell of `puzzle`."""
    return sum(
        all(given in (EMPTY, digit) for given, digit in zip(puzzle, grid)) for grid in all_grids()
    )


def _is_unique(grid: str, empty_mask: int) -> bool:
    return all(difference & ~empty_mask for difference in _difference_masks()[grid])


def _make_puzzle(grid: str, blanks: int, rng: random.Random) -> str | None:
    """Return `grid` with `blanks` cells emptied so that the puzzle keeps a unique solution.

    Cells are tried in random order, and a cell whose removal would allow a second solution
    stays given. Returns None when that order cannot reach `blanks` empty cells.
    """
    cells = list(range(CELLS))
    rng.shuffle(cells)
    empty_mask = 0
    for cell in cells:
        if empty_mask.bit_count() == blanks:
            break
        if _is_unique(grid, empty_mask | 1 << cell):
            empty_mask |= 1 << cell
    if empty_mask.bit_count() != blanks:
        return None
    return "".join(EMPTY if empty_mask >> cell & 1 else digit for cell, digit in enumerate(grid))


def make_problem(puzzle: str, solution: str) -> Problem:
    """Build the Problem for a puzzle and its solution, both 16-digit strings."""
    return Problem(prompt=puzzle, answer=solution, meta={"puzzle": puzzle, "solution": solution})


def cell_fraction(puzzle: str, solution: str, completion: str) -> float:
    """Return the fraction of the puzzle's empty cells that the completion fills correctly.

    The completion is compared position by position after stripping surrounding whitespace.
    Positions past its end count as wrong, and characters past the 16th are ignored. A puzzle
    without empty cells scores 1.0 because there is nothing left to get wrong.
    """
    text = completion.strip()
    blanks = [cell for cell, given in enumerate(puzzle) if given == EMPTY]
    if not blanks:
        return 1.0
    correct = sum(cell < len(text) and text[cell] == solution[cell] for cell in blanks)
    return correct / len(blanks)


class SudokuTask(GeneratedTask):
    """4x4 sudoku with a dense reward: the fraction of empty cells filled correctly."""

    name = "sudoku"
    max_prompt_chars = CELLS
    completion_length = CELLS
    primary_metric = "cell_accuracy"
    headroom_metric = "puzzle_accuracy"

    test_fraction = TEST_FRACTION
    max_problems = MAX_PROBLEMS

    def draw(self, rng: random.Random, split: str) -> Problem | None:
        """Draw a puzzle with a unique solution: 8 empty cells for test, 4 to 10 for train."""
        grid = rng.choice(all_grids())
        blanks = TEST_BLANKS if split == "test" else rng.choice(TRAIN_BLANKS)
        puzzle = _make_puzzle(grid, blanks, rng)
        return None if puzzle is None else make_problem(puzzle, grid)

    def reward(self, problem: Problem, completion: str) -> float:
        """Return the fraction of empty cells that the completion fills correctly."""
        return cell_fraction(problem.meta["puzzle"], problem.meta["solution"], completion)

    def metrics(self, problems: Sequence[Problem], completions: Sequence[str]) -> dict[str, float]:
        """Return cell accuracy, puzzle accuracy (all empty cells right) and mean reward.

        "accuracy" repeats "cell_accuracy", and so does "reward" because the reward is the
        cell fraction.
        """
        check_batch(problems, completions)
        fractions = [self.reward(problem, text) for problem, text in zip(problems, completions)]
        cell_accuracy = mean(fractions)
        return {
            "accuracy": cell_accuracy,
            "cell_accuracy": cell_accuracy,
            "puzzle_accuracy": mean([fraction == 1.0 for fraction in fractions]),
            "reward": mean(fractions),
        }


def load_sudoku_csv(path: str | Path) -> list[Problem]:
    """Load puzzles from a CSV file with the header `Puzzle,Solution`.

    Each row contains a 16-digit puzzle (`0` for an empty cell) and its 16-digit solution. Lines
    may end in CRLF, and empty lines are skipped. Raises ValueError naming the file and line
    for a wrong header, a malformed row, or a solution that is not a valid grid or does not keep
    the puzzle's given digits.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header != ["Puzzle", "Solution"]:
            raise ValueError(f"{path}:1: invalid header {header!r}; expected Puzzle,Solution")
        problems = []
        for row in reader:
            if not row:
                continue
            puzzle, solution = _parse_row(row, f"{path}:{reader.line_num}")
            problems.append(make_problem(puzzle, solution))
    return problems


def _parse_row(row: list[str], where: str) -> tuple[str, str]:
    """Validate one CSV row; `where` is the "file:line" prefix of error messages."""
    if len(row) != 2:
        raise ValueError(f"{where}: expected 2 fields (puzzle, solution), got {len(row)}")
    puzzle, solution = (field.strip() for field in row)
    _check_digits(puzzle, EMPTY + DIGITS, "puzzle", where)
    _check_digits(solution, DIGITS, "solution", where)
    if solution not in all_grids():
        raise ValueError(f"{where}: solution {solution} is not a valid 4x4 sudoku grid")
    for cell, (given, digit) in enumerate(zip(puzzle, solution)):
        if given not in (EMPTY, digit):
            raise ValueError(
                f"{where}: solution {solution} has {digit} at cell {cell} "
                f"but puzzle {puzzle} gives {given}"
            )
    return puzzle, solution


def _check_digits(text: str, allowed: str, label: str, where: str) -> None:
    if len(text) != CELLS:
        raise ValueError(f"{where}: {label} {text!r} has {len(text)} characters, expected {CELLS}")
    invalid = sorted(set(text) - set(allowed))
    if invalid:
        raise ValueError(
            f"{where}: {label} {text!r} contains {''.join(invalid)!r}; allowed digits are {allowed}"
        )
