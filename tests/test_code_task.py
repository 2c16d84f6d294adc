"""Tests of the code task: generator, format rules, sandboxed reward, metrics and loaders.

Every reward test runs the completions through the real sandbox (`benchmarks.sandbox`).
"""

from __future__ import annotations

import gzip
import json
import re

import pytest

from benchmarks.sandbox import SandboxLimits
from benchmarks.tasks import coding
from benchmarks.tasks.base import split_of
from benchmarks.tasks.coding import (
    EXAMPLE_COUNT,
    GENERATED_LIMITS,
    HIDDEN_TEST_COUNT,
    MAX_PROBLEMS,
    CodeTask,
    build_program,
    extract_code,
    fenced,
    function_space,
    is_determined,
    load_humaneval,
    load_mbpp_jsonl,
    make_problem,
    reference_completion,
)
from benchmarks.tokenizer import CHARACTERS

# 2*x+1 shown at 1, 2, 4 and 6, and tested at 0, 3, 5 and 7.
LINEAR = make_problem("2*x+1", [1, 2, 4, 6], [0, 3, 5, 7])
# Right at 0 and 3, wrong at 5 and 7.
HALF_RIGHT = fenced("def f(x):\n    return 2*x+1 if x < 4 else 0")


def candidate(expression):
    return next(
        candidate
        for candidates in function_space().values()
        for candidate in candidates
        if candidate.expression == expression
    )


@pytest.fixture(scope="module")
def task() -> CodeTask:
    return CodeTask()


@pytest.fixture(scope="module")
def benchmark_task() -> CodeTask:
    return CodeTask(limits=SandboxLimits())


@pytest.fixture
def recorded_jobs(monkeypatch):
    """Record the jobs of every `run_tests` call the task makes, and still run them."""
    calls = []
    real_run_tests = coding.run_tests

    def recording_run_tests(jobs, limits=None):
        calls.append([program for program, _ in jobs])
        return real_run_tests(jobs, limits)

    monkeypatch.setattr(coding, "run_tests", recording_run_tests)
    return calls


# Attributes and family space


def test_task_attributes(task):
    assert CodeTask.name == "code"
    assert CodeTask.primary_metric == "accuracy"
    assert CodeTask.headroom_metric == "accuracy"
    assert CodeTask.max_prompt_chars == len("f(9)=90,f(9)=90,f(9)=90,f(9)=90")
    assert CodeTask.completion_length == 48
    assert CodeTask.max_prompt_chars + CodeTask.completion_length <= 127


def test_task_limits():
    assert CodeTask().limits == GENERATED_LIMITS
    assert GENERATED_LIMITS.wall_seconds == 1.0
    assert CodeTask(limits=SandboxLimits()).limits == SandboxLimits()


def test_function_space_sizes():
    sizes = {family: len(candidates) for family, candidates in function_space().items()}
    assert sizes == {
        "linear": 90,
        "square": 10,
        "modulo": 8,
        "floor_division": 8,
        "max": 9,
        "min": 9,
    }


def test_function_space_distinct_functions():
    candidates = [c for candidates in function_space().values() for c in candidates]
    assert len({c.expression for c in candidates}) == 134
    assert len({c.outputs for c in candidates}) == 134


@pytest.mark.parametrize(
    ("expression", "outputs"),
    [
        ("x", (0, 1, 2, 3)),
        ("2*x+1", (1, 3, 5, 7)),
        ("x+9", (9, 10, 11, 12)),
        ("x*x+2", (2, 3, 6, 11)),
        ("x%3", (0, 1, 2, 0)),
        ("x//2", (0, 0, 1, 1)),
        ("max(x,2)", (2, 2, 2, 3)),
        ("min(x,2)", (0, 1, 2, 2)),
    ],
)
def test_function_space_outputs(expression, outputs):
    assert candidate(expression).outputs[:4] == outputs


def test_all_lengths_fit_budget():
    candidates = [c for candidates in function_space().values() for c in candidates]
    longest_answer = max(len(reference_completion(c.expression)) for c in candidates)
    assert longest_answer == len(reference_completion("max(x,9)")) == 43
    assert longest_answer < CodeTask.completion_length
    largest_shown_output = max(max(c.outputs[:10]) for c in candidates)
    assert largest_shown_output == 90


# Problems


def test_make_problem_values():
    assert LINEAR.prompt == "f(1)=3,f(2)=5,f(4)=9,f(6)=13"
    assert LINEAR.answer == "```python\ndef f(x):\n    return 2*x+1\n```"
    assert LINEAR.meta["tests"] == (
        "assert f(0) == 1",
        "assert f(3) == 7",
        "assert f(5) == 11",
        "assert f(7) == 15",
    )
    assert LINEAR.meta["examples"] == ((1, 3), (2, 5), (4, 9), (6, 13))
    assert LINEAR.meta["hidden"] == ((0, 1), (3, 7), (5, 11), (7, 15))


def test_make_problem_unknown_expression():
    with pytest.raises(ValueError, match=r"unknown expression '3\*x\*x'; .* linear, square"):
        make_problem("3*x*x", [1, 2, 3, 4], [5])


def test_make_problem_input_outside_domain():
    with pytest.raises(ValueError, match=r"invalid input 20; inputs lie in 0\.\.19"):
        make_problem("x", [1, 2, 3, 4], [20])


@pytest.mark.parametrize(
    ("expression", "shown_inputs", "determined"),
    [
        ("2*x+1", [1, 2, 4, 6], True),
        # x%7 equals x, x%8, x%9 and min(x,9) at inputs below 7.
        ("x%7", [1, 2, 3, 5], False),
        ("x%7", [1, 2, 3, 8], True),
        ("x%3", [1, 2, 3, 4], True),
        # max(x,3) equals x at inputs of 3 or more.
        ("max(x,3)", [3, 5, 7, 9], False),
        ("max(x,3)", [0, 5, 7, 9], True),
        # x//d is 0 at inputs below d, so outputs at 0..3 fit x//4 to x//9 alike.
        ("x//9", [0, 1, 2, 3], False),
        ("x//9", [0, 1, 8, 9], True),
    ],
)
def test_is_determined(expression, shown_inputs, determined):
    assert is_determined(candidate(expression), shown_inputs) is determined


# Generator


@pytest.fixture(scope="module")
def test_problems(task):
    return task.problems("test", 200, seed=3)


@pytest.fixture(scope="module")
def train_problems(task):
    return task.problems("train", 1000, seed=3)


def test_generator_deterministic(task, test_problems):
    assert task.problems("test", 200, seed=3) == test_problems
    assert task.problems("test", 200, seed=4) != test_problems


def test_generator_counts_distinct(test_problems, train_problems):
    assert len({problem.prompt for problem in test_problems}) == 200
    assert len({problem.prompt for problem in train_problems}) == 1000


def test_generator_splits_disjoint(test_problems, train_problems):
    test_prompts = {problem.prompt for problem in test_problems}
    train_prompts = {problem.prompt for problem in train_problems}
    assert not test_prompts & train_prompts
    for prompt in test_prompts:
        assert split_of(prompt, 0.1) == "test"
    for prompt in train_prompts:
        assert split_of(prompt, 0.1) == "train"


def test_generator_covers_every_family(train_problems):
    families = {candidate(p.meta["expression"]).family for p in train_problems}
    assert families == set(function_space())


def test_generator_problems_well_posed(test_problems, train_problems):
    for problem in test_problems + train_problems:
        function = candidate(problem.meta["expression"])
        shown = [x for x, _ in problem.meta["examples"]]
        hidden = [x for x, _ in problem.meta["hidden"]]
        assert len(shown) == EXAMPLE_COUNT
        assert len(hidden) == HIDDEN_TEST_COUNT
        assert shown == sorted(set(shown))
        assert all(0 <= x <= 9 for x in shown)
        assert not set(shown) & set(hidden)
        assert is_determined(function, shown)
        for x, y in problem.meta["examples"] + problem.meta["hidden"]:
            assert function.outputs[x] == y


def test_generator_prompt_format(train_problems):
    for problem in train_problems:
        assert re.fullmatch(r"f\(\d\)=\d+(,f\(\d\)=\d+){3}", problem.prompt)
        for (x, y), test in zip(problem.meta["hidden"], problem.meta["tests"]):
            assert test == f"assert f({x}) == {y}"


def test_generator_lengths_fit(task, test_problems, train_problems):
    for problem in test_problems + train_problems:
        assert len(problem.prompt) <= task.max_prompt_chars
        assert len(problem.answer) < task.completion_length
        assert set(problem.prompt + problem.answer) <= set(CHARACTERS)


def test_generator_reaches_caps(task):
    assert len(task.problems("test", MAX_PROBLEMS["test"], seed=0)) == MAX_PROBLEMS["test"]
    assert len(task.problems("train", MAX_PROBLEMS["train"], seed=0)) == MAX_PROBLEMS["train"]


def test_generator_count_over_cap(task):
    with pytest.raises(ValueError, match=r"invalid count 1001 for code test problems"):
        task.problems("test", 1001, seed=0)


def test_generator_unknown_split(task):
    with pytest.raises(ValueError, match=r"unknown split 'dev'; valid splits: train, test"):
        task.problems("dev", 1, seed=0)


# Format rules


@pytest.mark.parametrize(
    ("completion", "code"),
    [
        ("```python\nx = 1\n```", "x = 1\n"),
        ("```python\nx = 1```", "x = 1"),
        ("Here it is:\n```python\nx = 1\n```", "x = 1\n"),
        ("```python\nx = 1\n```\n  \n\t", "x = 1\n"),
        ("```python\n```", ""),
    ],
)
def test_extract_code_accepts(completion, code):
    assert extract_code(completion) == code


@pytest.mark.parametrize(
    "completion",
    [
        "",
        "def f(x):\n    return x",
        "```python\nx = 1\n",  # no closing fence
        "```\nx = 1\n```",  # no language tag
        "```py\nx = 1\n```",
        "```Python\nx = 1\n```",
        "```python x = 1\n```",
        "```python\nx = 1\n```\nDone.",  # text after the block
        "```python\nx = 1\n```\n```python\ny = 2\n```",  # two blocks
        "```python\nx = 1\n```\n```\nnot python\n```",  # the final block is not python
        "```\nnotes\n```\n```python\nx = 1\n```",  # an earlier block
    ],
)
def test_extract_code_rejects(completion):
    assert extract_code(completion) is None


@pytest.mark.parametrize(
    ("code", "program"),
    [
        ("def f(x):\n    return x\n", "def f(x):\n    return x\n"),
        ("x = 1", "x = 1"),
        ("def f(x)\n    return x\n", None),
        ("    return x\n", None),
        ("", None),
        ("  \n", None),
        ("x = 1\x00", None),
        ("(" * 300 + ")" * 300, None),  # SyntaxError: too many nested parentheses
        ("-" * 100_000 + "1", None),  # MemoryError in the parser
        ("1" + "+1" * 200_000, None),  # RecursionError in the parser
    ],
)
def test_build_program_generated(code, program):
    assert build_program(code, {"tests": ()}) == program


def test_build_program_humaneval_rules():
    meta = {"entry_point": "add", "code_prompt": "def add(a, b):\n    '''Add.'''\n"}
    body = "    return a + b\n"
    whole = "def add(a, b):\n    return a + b\n"
    helper_only = "def helper():\n    return 1\n"
    assert build_program(body, meta) == meta["code_prompt"] + body
    assert build_program(whole, meta) == whole
    assert build_program(helper_only, meta) == meta["code_prompt"] + helper_only
    assert build_program("        return (\n", meta) is None
    assert build_program("", meta) is None


# Reward through the sandbox


def test_reference_completions_score_one(task, test_problems, train_problems):
    # One problem per function of the family space, then generated problems of both splits.
    space = [
        make_problem(c.expression, [1, 3, 5, 7], [0, 9, 12, 19])
        for candidates in function_space().values()
        for c in candidates
    ]
    problems = space + test_problems[:50] + train_problems[:50]
    assert task.rewards(problems, [problem.answer for problem in problems]) == [1.0] * len(problems)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (LINEAR.answer, 1.0),
        (fenced("def f(x):\n    return x + x + 1"), 1.0),
        ("The rule is f(x) = 2x + 1.\n" + LINEAR.answer + "\n", 1.0),
        (HALF_RIGHT, 0.75),
        (fenced("def f(x):\n    return x"), 0.5),
        (fenced("raise ValueError('no')"), 0.5),
        (fenced("x = 1"), 0.5),
        (fenced("def f(x):\n    return 2*x+1 +"), 0.25),
        ("```python\n```", 0.25),
        ("```\ndef f(x):\n    return 2*x+1\n```", 0.0),
        (LINEAR.answer + "\nDone.", 0.0),
        (LINEAR.answer + "\n" + LINEAR.answer, 0.0),
        ("def f(x):\n    return 2*x+1", 0.0),
        ("", 0.0),
    ],
)
def test_reward_table(task, completion, expected):
    assert task.reward(LINEAR, completion) == expected


def test_reward_timeout(task):
    loop = fenced("def f(x):\n    while True:\n        pass")
    assert task.reward(LINEAR, loop) == 0.5


def test_rewards_one_sandbox_call(task, recorded_jobs):
    completions = [
        LINEAR.answer,
        "```\nx = 1\n```",
        HALF_RIGHT,
        fenced("def f(x) return x"),
        LINEAR.answer + "\ntrailing text",
    ]
    rewards = task.rewards([LINEAR] * len(completions), completions)
    assert rewards == [1.0, 0.0, 0.75, 0.25, 0.0]
    assert recorded_jobs == [[extract_code(LINEAR.answer), extract_code(HALF_RIGHT)]]


def test_rewards_malformed_batch_runs_nothing(task, recorded_jobs):
    assert task.rewards([LINEAR, LINEAR], ["no code", fenced("def")]) == [0.0, 0.25]
    assert recorded_jobs == []


def test_metrics_values(task, recorded_jobs):
    completions = [LINEAR.answer, HALF_RIGHT, "```\nx = 1\n```", fenced("def")]
    metrics = task.metrics([LINEAR] * 4, completions)
    assert metrics["accuracy"] == 0.25
    assert metrics["reward"] == pytest.approx((1.0 + 0.75 + 0.0 + 0.25) / 4)
    assert metrics["tests_passed"] == pytest.approx((1.0 + 0.5) / 4)
    assert metrics["well_formed"] == 0.5
    assert len(recorded_jobs) == 1


def test_metrics_length_mismatch(task):
    with pytest.raises(ValueError, match="1 problems but 2 completions"):
        task.metrics([LINEAR], ["a", "b"])


def test_rewards_empty_batch(task):
    with pytest.raises(ValueError, match="at least one problem"):
        task.rewards([], [])


# HumanEval


@pytest.fixture(scope="module")
def humaneval():
    return load_humaneval()


def test_humaneval_loads_package_data(humaneval):
    assert len(humaneval) == 164
    assert [p.meta["task_id"] for p in humaneval] == [f"HumanEval/{i}" for i in range(164)]
    first = humaneval[0]
    assert first.meta["entry_point"] == "has_close_elements"
    assert first.prompt.startswith(coding.ANSWER_INSTRUCTION + "\n\n")
    assert first.prompt.endswith(first.meta["code_prompt"])
    assert first.meta["tests"][0].endswith("\ncheck(has_close_elements)\n")
    assert first.answer == fenced(first.meta["code_prompt"] + first.meta["canonical_solution"])


def test_humaneval_canonical_solutions_pass(benchmark_task, humaneval, recorded_jobs):
    completions = [problem.answer for problem in humaneval]
    metrics = benchmark_task.metrics(humaneval, completions)
    assert metrics == {"accuracy": 1.0, "reward": 1.0, "tests_passed": 1.0, "well_formed": 1.0}
    assert len(recorded_jobs) == 1
    assert len(recorded_jobs[0]) == 164


def test_humaneval_body_only_solutions_pass(benchmark_task, humaneval):
    completions = [fenced(problem.meta["canonical_solution"]) for problem in humaneval]
    assert benchmark_task.rewards(humaneval, completions) == [1.0] * 164


def test_humaneval_empty_bodies_fail(benchmark_task, humaneval):
    completions = [fenced(problem.meta["code_prompt"] + "    pass\n") for problem in humaneval]
    metrics = benchmark_task.metrics(humaneval, completions)
    assert metrics == {"accuracy": 0.0, "reward": 0.5, "tests_passed": 0.0, "well_formed": 1.0}


HUMANEVAL_RECORD = {
    "task_id": "Toy/0",
    "prompt": "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n",
    "canonical_solution": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
    "entry_point": "add",
}


def test_humaneval_file_round_trip(benchmark_task, tmp_path):
    plain = tmp_path / "toy.jsonl"
    plain.write_text(json.dumps(HUMANEVAL_RECORD) + "\n\n")
    packed = tmp_path / "toy.jsonl.gz"
    with gzip.open(packed, "wt") as file:
        file.write(json.dumps(HUMANEVAL_RECORD) + "\n")
    (problem,) = load_humaneval(plain)
    assert load_humaneval(packed) == [problem]
    assert problem.meta["tests"] == (HUMANEVAL_RECORD["test"] + "\ncheck(add)\n",)
    assert problem.meta["code_prompt"] == HUMANEVAL_RECORD["prompt"]
    assert benchmark_task.reward(problem, problem.answer) == 1.0
    assert benchmark_task.reward(problem, fenced("    return a - b")) == 0.5


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"task_id": "Toy/1"', r":2: invalid JSON"),
        ('["Toy/1"]', r":2: expected a JSON object with fields task_id, prompt"),
        (
            json.dumps({k: v for k, v in HUMANEVAL_RECORD.items() if k != "test"}),
            r':2: missing field "test"; expected fields task_id, prompt',
        ),
        (json.dumps({**HUMANEVAL_RECORD, "entry_point": 3}), r':2: field "entry_point" must be'),
    ],
)
def test_humaneval_file_invalid(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(HUMANEVAL_RECORD) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=re.escape(str(path)) + message):
        load_humaneval(path)


# MBPP


MBPP_RECORDS = [
    {"question": "Write a function add(a, b) that adds two numbers.", "test_cases": [
        "assert add(1, 2) == 3",
        "assert add(-1, 1) == 0",
    ]},
    {"question": "Write a function double(x).", "test_cases": ["assert double(4) == 8"], "id": 7},
]


def write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n")


def test_mbpp_round_trip(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    write_jsonl(path, [json.dumps(MBPP_RECORDS[0]), "", json.dumps(MBPP_RECORDS[1])])
    problems = load_mbpp_jsonl(path)
    assert len(problems) == 2
    assert problems[0].prompt == (
        "Write a function add(a, b) that adds two numbers.\n"
        "Your code should pass this test:\nassert add(1, 2) == 3\n\n"
        + coding.ANSWER_INSTRUCTION
    )
    assert problems[0].answer == ""
    assert problems[0].meta["tests"] == ("assert add(1, 2) == 3", "assert add(-1, 1) == 0")
    assert problems[1].meta["tests"] == ("assert double(4) == 8",)


def test_mbpp_loaded_rewards(benchmark_task, tmp_path):
    path = tmp_path / "mbpp.jsonl"
    write_jsonl(path, [json.dumps(MBPP_RECORDS[0])])
    (problem,) = load_mbpp_jsonl(path)
    right = fenced("def add(a, b):\n    return a + b")
    # abs(a) + b is 3 at (1, 2) but 2 at (-1, 1).
    half = fenced("def add(a, b):\n    return abs(a) + b")
    assert benchmark_task.rewards([problem, problem], [right, half]) == [1.0, 0.75]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ('{"question": "q"', r":2: invalid JSON"),
        ('"just text"', r":2: expected a JSON object with fields question, test_cases"),
        ('{"test_cases": ["assert True"]}', r':2: missing field "question"'),
        ('{"question": "q"}', r':2: missing field "test_cases"; expected fields question'),
        ('{"question": "", "test_cases": ["assert True"]}', r':2: field "question" must be'),
        ('{"question": 5, "test_cases": ["assert True"]}', r':2: field "question" must be'),
        ('{"question": "q", "test_cases": []}', r':2: field "test_cases" must be a non-empty'),
        ('{"question": "q", "test_cases": "assert True"}', r':2: field "test_cases" must be'),
        ('{"question": "q", "test_cases": ["assert True", 3]}', r':2: field "test_cases"'),
        ('{"question": "q", "test_cases": [" "]}', r':2: field "test_cases"'),
    ],
)
def test_mbpp_invalid(tmp_path, record, message):
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [json.dumps(MBPP_RECORDS[1]), record])
    with pytest.raises(ValueError, match=re.escape(str(path)) + message):
        load_mbpp_jsonl(path)


def test_parse_warning_stays_silent():
    import warnings

    from benchmarks.tasks.coding import _parse

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a SyntaxWarning would fail the parse and the test
        tree = _parse("x = 1if True else 2")
    assert tree is not None
