"""Tests of the sudoku and countdown tasks: rewards, metrics, generators, loaders and registry."""

from __future__ import annotations

import re

import pytest

from benchmarks.tasks import TASKS, Problem, get_task, load_countdown_jsonl, load_sudoku_csv
from benchmarks.tasks.base import split_of
from benchmarks.tasks.countdown import CountdownTask, make_problem as make_countdown
from benchmarks.tasks.countdown import render
from benchmarks.tasks.sudoku import SudokuTask, all_grids, count_solutions
from benchmarks.tasks.sudoku import make_problem as make_sudoku

# A puzzle with a unique solution and 8 empty cells, at positions 1, 2, 3, 4, 6, 7, 9 and 13.
PUZZLE = "1000040020434021"
SOLUTION = "1234341221434321"
BLANKS = [1, 2, 3, 4, 6, 7, 9, 13]


def replace_cells(grid: str, cells: list[int], digit: str = "9") -> str:
    return "".join(digit if cell in cells else char for cell, char in enumerate(grid))


@pytest.fixture(scope="module")
def sudoku() -> SudokuTask:
    return SudokuTask()


@pytest.fixture(scope="module")
def countdown() -> CountdownTask:
    return CountdownTask()


@pytest.fixture(scope="module")
def sudoku_problem() -> Problem:
    return make_sudoku(PUZZLE, SOLUTION)


# Registry


def test_registry_names():
    assert sorted(TASKS) == ["code", "countdown", "math", "sudoku"]


def test_get_task_returns_instances():
    assert isinstance(get_task("sudoku"), SudokuTask)
    assert isinstance(get_task("countdown"), CountdownTask)


def test_get_task_unknown_name():
    with pytest.raises(ValueError) as error:
        get_task("nope")
    assert str(error.value) == "unknown task 'nope'; valid tasks: code, countdown, math, sudoku"


@pytest.mark.parametrize("name", ["sudoku", "countdown"])
def test_problems_unknown_split(name):
    with pytest.raises(ValueError) as error:
        get_task(name).problems("dev", 1, seed=0)
    assert str(error.value) == "unknown split 'dev'; valid splits: train, test"


@pytest.mark.parametrize("name", ["sudoku", "countdown"])
def test_problems_count_over_cap(name):
    with pytest.raises(ValueError, match="invalid count 10000000"):
        get_task(name).problems("test", 10_000_000, seed=0)


@pytest.mark.parametrize("name", ["sudoku", "countdown"])
def test_problems_negative_count(name):
    with pytest.raises(ValueError, match="invalid count -1"):
        get_task(name).problems("train", -1, seed=0)


def test_task_attributes():
    assert SudokuTask.primary_metric == "cell_accuracy"
    assert SudokuTask.headroom_metric == "puzzle_accuracy"
    assert SudokuTask.max_prompt_chars == 16
    assert SudokuTask.completion_length == 16
    assert CountdownTask.primary_metric == "accuracy"
    assert CountdownTask.headroom_metric == "accuracy"
    assert CountdownTask.max_prompt_chars == len("100,100,100:999")
    assert CountdownTask.completion_length == 16


# Sudoku reward and metrics


def test_sudoku_fixture_is_valid():
    assert count_solutions(PUZZLE) == 1
    assert SOLUTION in all_grids()
    assert [cell for cell, given in enumerate(PUZZLE) if given == "0"] == BLANKS


def test_sudoku_reward_all_right(sudoku, sudoku_problem):
    assert sudoku.reward(sudoku_problem, SOLUTION) == 1.0


def test_sudoku_reward_three_of_eight(sudoku, sudoku_problem):
    completion = replace_cells(SOLUTION, BLANKS[3:])
    assert sudoku.reward(sudoku_problem, completion) == 0.375


def test_sudoku_reward_none_right(sudoku, sudoku_problem):
    assert sudoku.reward(sudoku_problem, PUZZLE) == 0.0


def test_sudoku_reward_short_completion(sudoku, sudoku_problem):
    # Cells 9 and 13 lie past the end of the completion, so 6 of 8 are right.
    assert sudoku.reward(sudoku_problem, SOLUTION[:8]) == 0.75


def test_sudoku_reward_empty_completion(sudoku, sudoku_problem):
    assert sudoku.reward(sudoku_problem, "") == 0.0


def test_sudoku_reward_ignores_givens(sudoku, sudoku_problem):
    givens = [cell for cell in range(16) if cell not in BLANKS]
    assert sudoku.reward(sudoku_problem, replace_cells(SOLUTION, givens)) == 1.0


def test_sudoku_reward_strips_whitespace(sudoku, sudoku_problem):
    assert sudoku.reward(sudoku_problem, f"  {SOLUTION}\n") == 1.0


def test_sudoku_reward_ignores_extra_text(sudoku, sudoku_problem):
    assert sudoku.reward(sudoku_problem, SOLUTION + "1234") == 1.0


def test_sudoku_metrics_values(sudoku, sudoku_problem):
    problems = [sudoku_problem, sudoku_problem]
    completions = [SOLUTION, replace_cells(SOLUTION, BLANKS[3:])]
    metrics = sudoku.metrics(problems, completions)
    assert metrics["cell_accuracy"] == 0.6875
    assert metrics["accuracy"] == 0.6875
    assert metrics["puzzle_accuracy"] == 0.5
    assert metrics["reward"] == 0.6875


def test_sudoku_metrics_length_mismatch(sudoku, sudoku_problem):
    with pytest.raises(ValueError, match="2 problems but 1 completions"):
        sudoku.metrics([sudoku_problem, sudoku_problem], [SOLUTION])


def test_sudoku_metrics_empty_batch(sudoku):
    with pytest.raises(ValueError, match="at least one problem"):
        sudoku.metrics([], [])


# Sudoku generator


@pytest.fixture(scope="module")
def sudoku_test_problems(sudoku):
    return sudoku.problems("test", 150, seed=7)


@pytest.fixture(scope="module")
def sudoku_train_problems(sudoku):
    return sudoku.problems("train", 600, seed=7)


def test_sudoku_grid_count():
    assert len(all_grids()) == 288
    assert len(set(all_grids())) == 288


def test_sudoku_generator_deterministic(sudoku, sudoku_test_problems):
    assert sudoku.problems("test", 150, seed=7) == sudoku_test_problems
    assert sudoku.problems("test", 150, seed=8) != sudoku_test_problems


def test_sudoku_generator_counts_distinct(sudoku_test_problems, sudoku_train_problems):
    assert len({problem.prompt for problem in sudoku_test_problems}) == 150
    assert len({problem.prompt for problem in sudoku_train_problems}) == 600


def test_sudoku_solutions_unique(sudoku_test_problems, sudoku_train_problems):
    for problem in sudoku_test_problems + sudoku_train_problems:
        assert count_solutions(problem.prompt) == 1
        assert problem.answer in all_grids()
        assert problem.meta["puzzle"] == problem.prompt
        assert problem.meta["solution"] == problem.answer


def test_sudoku_solutions_keep_givens(sudoku_train_problems):
    for problem in sudoku_train_problems:
        for given, digit in zip(problem.prompt, problem.answer):
            assert given in ("0", digit)


def test_sudoku_test_blanks_exactly_eight(sudoku_test_problems):
    for problem in sudoku_test_problems:
        assert problem.prompt.count("0") == 8


def test_sudoku_train_blanks_spread(sudoku_train_problems):
    blank_counts = {problem.prompt.count("0") for problem in sudoku_train_problems}
    assert blank_counts == set(range(4, 11))


def test_sudoku_splits_disjoint(sudoku_test_problems, sudoku_train_problems):
    test_prompts = {problem.prompt for problem in sudoku_test_problems}
    train_prompts = {problem.prompt for problem in sudoku_train_problems}
    assert not test_prompts & train_prompts
    for prompt in test_prompts:
        assert split_of(prompt, 0.1) == "test"
    for prompt in train_prompts:
        assert split_of(prompt, 0.1) == "train"


def test_sudoku_lengths_fit(sudoku, sudoku_test_problems, sudoku_train_problems):
    for problem in sudoku_test_problems + sudoku_train_problems:
        assert len(problem.prompt) <= sudoku.max_prompt_chars
        assert len(problem.answer) <= sudoku.completion_length


def test_sudoku_answers_score_one(sudoku, sudoku_train_problems):
    for problem in sudoku_train_problems:
        assert sudoku.reward(problem, problem.answer) == 1.0


# Sudoku loader


def test_sudoku_csv_round_trip(tmp_path):
    path = tmp_path / "sudoku.csv"
    content = f"Puzzle,Solution\r\n{PUZZLE},{SOLUTION}\r\n{SOLUTION},{SOLUTION}\r\n"
    path.write_bytes(content.encode())
    problems = load_sudoku_csv(path)
    assert [problem.prompt for problem in problems] == [PUZZLE, SOLUTION]
    assert [problem.answer for problem in problems] == [SOLUTION, SOLUTION]
    assert problems[0].meta == {"puzzle": PUZZLE, "solution": SOLUTION}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (f"Quiz,Solution\n{PUZZLE},{SOLUTION}\n", r":1: invalid header"),
        (f"Puzzle,Solution\n{PUZZLE[:15]},{SOLUTION}\n", r":2: puzzle .* has 15 characters"),
        (f"Puzzle,Solution\n{PUZZLE},{SOLUTION}x\n", r":2: solution .* has 17 characters"),
        (f"Puzzle,Solution\n{PUZZLE[:15]}x,{SOLUTION}\n", r":2: puzzle .* contains 'x'"),
        (f"Puzzle,Solution\n{PUZZLE},{SOLUTION[:15]}0\n", r":2: solution .* contains '0'"),
        (f"Puzzle,Solution\n{PUZZLE}\n", r":2: expected 2 fields"),
        (f"Puzzle,Solution\n{PUZZLE},1111222233334444\n", r":2: .* not a valid 4x4 sudoku grid"),
        (
            f"Puzzle,Solution\n{SOLUTION},{SOLUTION}\n2000040020434021,{SOLUTION}\n",
            r":3: solution .* has 1 at cell 0 but puzzle .* gives 2",
        ),
    ],
)
def test_sudoku_csv_invalid(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(str(path)) + message):
        load_sudoku_csv(path)


# Countdown reward and metrics


@pytest.fixture(scope="module")
def countdown_problem():
    return make_countdown((30, 100, 93), 23, answer="93+30-100")


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("93+30-100", 1.0),
        ("30-(100-93)", 1.0),
        ("(93+30)-100", 1.0),
        ("((93)+(30))-100", 1.0),
        (" 93 + 30 - 100\n", 1.0),
        ("93+30+100", 0.1),
        ("93+30-10", 0.1),
        ("93+30", 0.1),
        ("93+30-100+0", 0.1),
        ("93+30-100*1", 0.1),
        ("0", 0.1),
    ],
)
def test_countdown_reward_table(countdown, countdown_problem, completion, expected):
    assert countdown.reward(countdown_problem, completion) == expected


@pytest.mark.parametrize(
    "completion",
    [
        "",
        "   ",
        "2**10",
        "9**9**9",
        "7//2",
        "7%2",
        "-23",
        "93+30+-100",
        "+23",
        "x+1",
        "abs(23)",
        "math.pi",
        "23.0",
        "1e3",
        "23j",
        "0x17",
        "2_3",
        "'23'",
        "23==23",
        "True",
        "[23]",
        "(23,)",
        "lambda: 23",
        "93+30-",
        "93+30-100=23",
        "__import__('os').system('true')",
        "23\x00",
        "1+" * 40 + "1",
        "1+1+1+1+1+1+1+1+1",
    ],
)
def test_countdown_reward_malformed(countdown, countdown_problem, completion):
    assert countdown.reward(countdown_problem, completion) == 0.0


def test_countdown_reward_reused_number(countdown):
    # 2+2+4 reaches the target 8 but uses 2 twice and never uses 3.
    problem = make_countdown((2, 3, 4), 8, answer="")
    assert countdown.reward(problem, "2+2+4") == 0.1


def test_countdown_reward_repeated_given_number(countdown):
    problem = make_countdown((3, 3, 5), 14, answer="")
    assert countdown.reward(problem, "3*3+5") == 1.0
    assert countdown.reward(problem, "5+3+3+3") == 0.1
    assert countdown.reward(problem, "5+9") == 0.1


def test_countdown_reward_division_by_zero(countdown):
    problem = make_countdown((5, 3, 3), 1, answer="")
    assert countdown.reward(problem, "5/(3-3)") == 0.1


def test_countdown_reward_exact_fractions(countdown):
    problem = make_countdown((3, 4, 6), 8, answer="")
    assert countdown.reward(problem, "4/(3/6)") == 1.0
    assert countdown.reward(problem, "4/3/6") == 0.1


def test_countdown_metrics_values(countdown, countdown_problem):
    completions = ["93+30-100", "93+30+100", "x"]
    metrics = countdown.metrics([countdown_problem] * 3, completions)
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["reward"] == pytest.approx(1.1 / 3)
    assert metrics["well_formed"] == pytest.approx(2 / 3)


def test_countdown_metrics_length_mismatch(countdown, countdown_problem):
    with pytest.raises(ValueError, match="1 problems but 2 completions"):
        countdown.metrics([countdown_problem], ["1", "2"])


# Countdown generator


@pytest.fixture(scope="module")
def countdown_test_problems(countdown):
    return countdown.problems("test", 300, seed=11)


@pytest.fixture(scope="module")
def countdown_train_problems(countdown):
    return countdown.problems("train", 2000, seed=11)


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        (("-", 100, ("-", 93, 30)), "100-(93-30)"),
        (("+", ("-", 93, 30), 100), "93-30+100"),
        (("-", 93, ("+", 30, 100)), "93-(30+100)"),
        (("+", 93, ("-", 30, 100)), "93+30-100"),
        (("*", ("+", 1, 2), 3), "(1+2)*3"),
        (("+", 1, ("*", 2, 3)), "1+2*3"),
        (("/", 8, ("*", 2, 2)), "8/(2*2)"),
        (("/", 8, ("/", 4, 2)), "8/(4/2)"),
        (("*", 6, ("/", 4, 2)), "6*4/2"),
        (("/", ("*", 6, 4), 2), "6*4/2"),
        (("-", ("*", 6, 4), 2), "6*4-2"),
    ],
)
def test_countdown_render_minimal_parentheses(expression, text):
    assert render(expression) == text


def test_countdown_generator_deterministic(countdown, countdown_test_problems):
    assert countdown.problems("test", 300, seed=11) == countdown_test_problems
    assert countdown.problems("test", 300, seed=12) != countdown_test_problems


def test_countdown_generator_counts_distinct(countdown_test_problems, countdown_train_problems):
    assert len({problem.prompt for problem in countdown_test_problems}) == 300
    assert len({problem.prompt for problem in countdown_train_problems}) == 2000


def test_countdown_answers_score_one(countdown, countdown_test_problems, countdown_train_problems):
    for problem in countdown_test_problems + countdown_train_problems:
        assert countdown.reward(problem, problem.answer) == 1.0


def test_countdown_prompt_format(countdown_train_problems):
    for problem in countdown_train_problems:
        numbers, target = problem.meta["numbers"], problem.meta["target"]
        assert re.fullmatch(r"\d+,\d+,\d+:\d+", problem.prompt)
        assert problem.prompt == f"{numbers[0]},{numbers[1]},{numbers[2]}:{target}"
        assert all(1 <= number <= 100 for number in numbers)
        assert 1 <= target <= 999


def test_countdown_splits_disjoint(countdown_test_problems, countdown_train_problems):
    test_prompts = {problem.prompt for problem in countdown_test_problems}
    train_prompts = {problem.prompt for problem in countdown_train_problems}
    assert not test_prompts & train_prompts
    for prompt in test_prompts:
        assert split_of(prompt, 0.1) == "test"
    for prompt in train_prompts:
        assert split_of(prompt, 0.1) == "train"


def test_countdown_lengths_fit(countdown, countdown_test_problems, countdown_train_problems):
    for problem in countdown_test_problems + countdown_train_problems:
        assert len(problem.prompt) <= countdown.max_prompt_chars
        assert len(problem.answer) <= countdown.completion_length


# Countdown loader


def test_countdown_jsonl_round_trip(tmp_path):
    path = tmp_path / "countdown.jsonl"
    path.write_text(
        '{"input": "30,100,93", "output": "23"}\n'
        "\n"
        '{"input": "83,18,75", "output": "10"}\n'
    )
    problems = load_countdown_jsonl(path)
    assert [problem.prompt for problem in problems] == ["30,100,93:23", "83,18,75:10"]
    assert [problem.answer for problem in problems] == ["", ""]
    assert problems[0].meta == {"numbers": (30, 100, 93), "target": 23}
    assert problems[1].meta == {"numbers": (83, 18, 75), "target": 10}


def test_countdown_jsonl_loaded_reward(countdown, tmp_path):
    path = tmp_path / "countdown.jsonl"
    path.write_text('{"input": "30,100,93", "output": "23"}\n')
    (problem,) = load_countdown_jsonl(path)
    assert countdown.reward(problem, "93+30-100") == 1.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"input": "30,100,93", "output": "23"', r":2: invalid JSON"),
        ('["30,100,93", "23"]', r":2: expected a JSON object with fields input, output"),
        ('{"input": "30,100,93"}', r':2: missing field "output"; expected fields input, output'),
        ('{"input": "30,100", "output": "23"}', r":2: input '30,100' has 2 numbers"),
        ('{"input": "30,100,93,4", "output": "23"}', r":2: input .* has 4 numbers"),
        ('{"input": "30,abc,93", "output": "23"}', r":2: number 'abc' is not"),
        ('{"input": "30,0,93", "output": "23"}', r":2: number 0 is outside .* 1\.\.100"),
        ('{"input": "30,101,93", "output": "23"}', r":2: number 101 is outside"),
        ('{"input": "30,100,93", "output": "1000"}', r":2: target 1000 is outside .* 1\.\.999"),
        ('{"input": "30,100,93", "output": "-5"}', r":2: target '-5' is not"),
    ],
)
def test_countdown_jsonl_invalid(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "30,100,93", "output": "23"}\n' + line + "\n")
    with pytest.raises(ValueError, match=re.escape(str(path)) + message):
        load_countdown_jsonl(path)
