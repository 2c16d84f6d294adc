"""Countdown with three numbers: write an arithmetic expression that reaches the target.

The prompt is `30,100,93:23`, that is the numbers separated by commas, then a colon and the
target. A correct completion such as `93+30-100` uses each given number exactly once and only
+ - * / and parentheses.

Completions are model output, so the reward never passes them to eval or exec. It parses them
with `ast`, accepts only a small whitelist of node types, and evaluates the tree itself with
exact fractions.
"""

from __future__ import annotations

import ast
import operator
import random
from fractions import Fraction
from pathlib import Path
from typing import Sequence, Union

from benchmarks.tasks.base import GeneratedTask, Problem, check_batch, mean, read_jsonl

NUMBER_COUNT = 3
MIN_NUMBER, MAX_NUMBER = 1, 100
# Generated targets, and targets the loader accepts, lie in this range, which bounds the prompt
# at 15 characters ("100,100,100:999").
MIN_TARGET, MAX_TARGET = 1, 999
TEST_FRACTION = 0.1

# Caps on one request. NOTE: these are estimates, not counts. About a million ordered number
# triples, each with several reachable targets, give tens of millions of distinct prompts, but
# the number of prompts the generator reaches was not counted.
MAX_PROBLEMS = {"train": 1_000_000, "test": 100_000}

FORMAT_REWARD = 0.1  # a well-formed expression with the wrong numbers or value
TOLERANCE = Fraction(1, 100_000)
# The reward rejects longer completions before parsing and stops at more literals, which bounds
# the parser's and the evaluator's work on any model output.
MAX_COMPLETION_CHARS = 64
MAX_LITERALS = 8

_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_SYMBOL_OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}

# A generated expression: a number, or (operator symbol, left operand, right operand).
Expression = Union[int, tuple[str, "Expression", "Expression"]]


def format_prompt(numbers: Sequence[int], target: int) -> str:
    """Return the prompt text, for example `30,100,93:23`."""
    return f"{','.join(map(str, numbers))}:{target}"


def make_problem(numbers: Sequence[int], target: int, answer: str) -> Problem:
    """Build the Problem; `answer` is a correct expression, or "" when none is known."""
    return Problem(
        prompt=format_prompt(numbers, target),
        answer=answer,
        meta={"numbers": tuple(numbers), "target": target},
    )


# Reward


def parse_expression(text: str) -> tuple[ast.expr, list[int]] | None:
    """Parse `text` and return its expression tree and integer literals, or None if malformed.

    Well-formed means only binary + - * / over non-negative decimal integer literals, with any
    parentheses, in at most MAX_COMPLETION_CHARS characters and MAX_LITERALS literals.
    """
    if not text or len(text) > MAX_COMPLETION_CHARS:
        return None
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):  # ValueError: a null byte in the text
        return None
    literals: list[int] = []
    if not _collect_literals(tree.body, text, literals):
        return None
    return tree.body, literals


def _collect_literals(node: ast.expr, text: str, literals: list[int]) -> bool:
    """Append the literals of `node` to `literals`; return False at the first disallowed node."""
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _collect_literals(node.left, text, literals) and _collect_literals(
            node.right, text, literals
        )
    if not (isinstance(node, ast.Constant) and type(node.value) is int):
        return False
    # Python also reads 0x1e, 0b11 and 1_000 as int literals, so check the source text.
    source = ast.get_source_segment(text, node) or ""
    if not (source.isascii() and source.isdigit()):
        return False
    literals.append(node.value)
    return len(literals) <= MAX_LITERALS


def _evaluate(node: ast.expr) -> Fraction:
    """Evaluate a tree accepted by `parse_expression`; raises ZeroDivisionError on x/0."""
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    apply = _OPERATORS[type(node.op)]
    return apply(_evaluate(node.left), _evaluate(node.right))


def score(numbers: Sequence[int], target: int, completion: str) -> float:
    """Return 1.0 for a correct expression, 0.1 for a well-formed wrong one, else 0.0.

    Correct means it uses exactly the multiset `numbers` and evaluates to `target` within 1e-5.
    A division by zero makes a well-formed expression wrong.
    """
    parsed = parse_expression(completion.strip())
    if parsed is None:
        return 0.0
    tree, literals = parsed
    if sorted(literals) != sorted(numbers):
        return FORMAT_REWARD
    try:
        value = _evaluate(tree)
    except ZeroDivisionError:
        return FORMAT_REWARD
    return 1.0 if abs(value - target) <= TOLERANCE else FORMAT_REWARD


# Generator


def _value(expression: Expression) -> Fraction | None:
    """Evaluate a generated expression; None unless every intermediate is a positive integer."""
    if isinstance(expression, int):
        return Fraction(expression)
    symbol, left, right = expression
    left_value, right_value = _value(left), _value(right)
    if left_value is None or right_value is None:
        return None
    result = _SYMBOL_OPERATORS[symbol](left_value, right_value)
    return result if result.denominator == 1 and result > 0 else None


def render(expression: Expression) -> str:
    """Write an expression with only the parentheses that its value needs."""
    if isinstance(expression, int):
        return str(expression)
    symbol, left, right = expression
    left_text = _operand(left, symbol, is_right=False)
    right_text = _operand(right, symbol, is_right=True)
    return f"{left_text}{symbol}{right_text}"


def _operand(expression: Expression, parent: str, is_right: bool) -> str:
    text = render(expression)
    if isinstance(expression, int):
        return text
    precedence, parent_precedence = _PRECEDENCE[expression[0]], _PRECEDENCE[parent]
    # a-(b-c) and a/(b*c) need parentheses, but a+(b-c) and a*(b/c) have the same value
    # without them.
    needs_parentheses = precedence < parent_precedence or (
        is_right and precedence == parent_precedence and parent in "-/"
    )
    return f"({text})" if needs_parentheses else text


def _draw(rng: random.Random) -> Problem | None:
    """Draw three numbers and a random expression over them, or return None if it breaks a rule.

    Every intermediate result must be a positive integer, as in the Countdown game, and the
    target must lie in MIN_TARGET..MAX_TARGET.
    """
    numbers = tuple(rng.randint(MIN_NUMBER, MAX_NUMBER) for _ in range(NUMBER_COUNT))
    first, second, third = rng.sample(numbers, NUMBER_COUNT)
    inner = (rng.choice("+-*/"), first, second)
    outer_symbol = rng.choice("+-*/")
    if rng.random() < 0.5:
        expression = (outer_symbol, inner, third)
    else:
        expression = (outer_symbol, third, inner)

    target = _value(expression)
    if target is None or not MIN_TARGET <= target <= MAX_TARGET:
        return None
    return make_problem(numbers, int(target), render(expression))


class CountdownTask(GeneratedTask):
    """Countdown over three numbers from 1 to 100 and a target from 1 to 999."""

    name = "countdown"
    max_prompt_chars = len(format_prompt([MAX_NUMBER] * NUMBER_COUNT, MAX_TARGET))
    # A generated answer has 3 numbers of at most 3 digits, 2 operators and at most 1 pair of
    # parentheses, so it fits in 13 characters.
    completion_length = 16
    primary_metric = "accuracy"
    headroom_metric = "accuracy"

    test_fraction = TEST_FRACTION
    max_problems = MAX_PROBLEMS

    def draw(self, rng: random.Random, split: str) -> Problem | None:
        """Draw a solvable problem with a reference answer, or None."""
        return _draw(rng)

    def reward(self, problem: Problem, completion: str) -> float:
        """Return 1.0 if correct, 0.1 if well-formed but wrong, 0.0 if not well-formed."""
        return score(problem.meta["numbers"], problem.meta["target"], completion)

    def metrics(self, problems: Sequence[Problem], completions: Sequence[str]) -> dict[str, float]:
        """Return accuracy (reward 1.0), mean reward, and the share of well-formed completions."""
        check_batch(problems, completions)
        rewards = [self.reward(problem, text) for problem, text in zip(problems, completions)]
        return {
            "accuracy": mean([reward == 1.0 for reward in rewards]),
            "reward": mean(rewards),
            "well_formed": mean([reward > 0 for reward in rewards]),
        }


# Loader


def load_countdown_jsonl(path: str | Path) -> list[Problem]:
    """Load problems from JSON lines such as `{"input": "30,100,93", "output": "23"}`.

    Blank lines are skipped. The file gives no expression, so each answer is "". Raises
    ValueError naming the file and line for invalid JSON, a missing field, or a number or target
    outside the ranges this task supports.
    """
    problems = []
    for where, record in read_jsonl(path, ("input", "output")):
        numbers, target = _parse_record(record, where)
        problems.append(make_problem(numbers, target, answer=""))
    return problems


def _parse_record(record: dict, where: str) -> tuple[tuple[int, ...], int]:
    """Validate the numbers and target of one record; `where` is the "file:line" prefix of error messages."""
    fields = str(record["input"]).split(",")
    if len(fields) != NUMBER_COUNT:
        raise ValueError(
            f"{where}: input {record['input']!r} has {len(fields)} numbers, expected {NUMBER_COUNT}"
        )
    numbers = tuple(_parse_int(text, "number", MIN_NUMBER, MAX_NUMBER, where) for text in fields)
    target = _parse_int(str(record["output"]), "target", MIN_TARGET, MAX_TARGET, where)
    return numbers, target


def _parse_int(text: str, label: str, low: int, high: int, where: str) -> int:
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"{where}: {label} {text!r} is not a non-negative integer")
    value = int(digits)
    if not low <= value <= high:
        raise ValueError(f"{where}: {label} {value} is outside the supported range {low}..{high}")
    return value
