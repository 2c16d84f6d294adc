"""Math word problems with a tagged worked solution, scored like d1's diffu-GRPO GSM8K reward.

A generated prompt is a two-step arithmetic word problem over small numbers, such as
`Ann has 7 pens, buys 5 and sells 3. How many?`. Its reference completion writes one
equation per step and then the answer:

    <reasoning>
    7+5=12
    12-3=9
    </reasoning>
    <answer>
    9
    </answer>

Completions end at the end-of-sequence token, so none needs a newline after `</answer>`.
`load_gsm8k_jsonl` and `load_math500_jsonl` read the public GSM8K and MATH-500 files into the
same completion format, with an instruction in front of each question. NOTE: their prompts run
to hundreds of characters, beyond `MathTask.max_prompt_chars`, and may contain characters
outside printable ASCII, so they suit a larger model than the character-level denoiser.

The reward follows the terms and weights of d1 (dllm-reasoning/d1, diffu-grpo/reward_func.py),
whose GSM8K run sums five terms: tag counting (at most 0.5), a soft format match (0.5), a strict
format match (0.5), an integer answer (0.5) and a correct answer (2.0). Here the sum is divided
by its maximum of 4.0, so a reward lies in [0, 1]. A LaTeX answer (MATH-500) earns the 0.5 of
the integer term when its answer contains a complete `\\boxed{}`, which keeps one reward for
both kinds where d1's MATH run used only correctness and a boxed-answer term. These parts
deliberately differ from d1's code:

- d1's format regexes lack re.DOTALL, so they reject every reasoning longer than one line.
  Here the text inside a tag may span lines but may not contain another format tag.
- d1's strict format requires a newline after `</answer>`. Here one is optional.
- d1's tag counting subtracts 0.001 per character of the whole completion when no newline
  follows `</answer>`, because its split then finds no separator. Here both penalties count
  only the characters after the closing tag.
- d1 reads the answer after the last `<answer>` even without a closing tag, tests the integer
  term with str.isdigit and compares answers as strings. Here the answer needs its closing tag,
  the integer term accepts `-?[0-9]+` (so a negative integer earns it), and numbers compare by
  value.

Correctness reads the answer strictly, from a well-formed `<answer>...</answer>`, and flexibly,
from the last number (or, for LaTeX answers, the last complete `\\boxed{}`) anywhere in the
completion, as lm-evaluation-harness reports "strict-match" and "flexible-extract" for GSM8K.
Numbers compare as exact fractions after normalisation. LaTeX answers compare with
math-verify, which the generated problems never call.
"""

from __future__ import annotations

import functools
import random
import re
import threading
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from benchmarks.tasks.base import GeneratedTask, Problem, check_batch, mean, read_jsonl

TEST_FRACTION = 0.1

# Caps on one request. Counting operand, verb, name, item and container choices gives about
# 3.2e7 distinct prompts, most of them `change_twice`. The smallest template, `give_each`, has
# 39,000, about 35,000 of them in the train split, so its quarter of a full train request (15,000)
# stays under half of its train pool and requests keep the four templates in equal shares.
MAX_PROBLEMS = {"train": 60_000, "test": 6_000}

# Answer kinds stored in `Problem.meta["answer_kind"]`.
NUMBER, LATEX = "number", "latex"
ANSWER_KINDS = (NUMBER, LATEX)

# Every operand, intermediate result and answer of a generated problem lies in 0..MAX_VALUE.
# The tiny character-level denoiser learns sums and products this small from examples: with
# numbers up to 99 its held-out accuracy stayed near 1% for the first 300 pretraining steps.
# Products of two factors stay below MAX_VALUE, so every template can add or take away from them.
MAX_VALUE = 30
MIN_FACTOR, MAX_FACTOR = 2, 5
COMPLETION_LENGTH = 64

# Reward weights of d1's GSM8K run (its reward functions return these values and its trainer
# weights each function by 1.0). `xml_count` returns at most XML_COUNT_WEIGHT itself.
XML_COUNT_WEIGHT = 0.5
SOFT_FORMAT_WEIGHT = 0.5
STRICT_FORMAT_WEIGHT = 0.5
ANSWER_FORM_WEIGHT = 0.5
CORRECT_WEIGHT = 2.0
MAX_TOTAL = (
    XML_COUNT_WEIGHT
    + SOFT_FORMAT_WEIGHT
    + STRICT_FORMAT_WEIGHT
    + ANSWER_FORM_WEIGHT
    + CORRECT_WEIGHT
)
# d1 subtracts this much from the tag count per character after the closing answer tag.
TRAILING_CHAR_PENALTY = 0.001

# Seconds that math-verify may spend on parsing and on comparing one pair.
MATH_VERIFY_TIMEOUT_S = 5

INSTRUCTION = (
    "Think step by step inside <reasoning></reasoning>, then give only the final answer inside "
    "<answer></answer>, in this format:\n"
    "<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>"
)
BOXED_INSTRUCTION = "Write the final answer as \\boxed{...} inside the answer tags."


def format_completion(steps: Sequence[str], answer: str) -> str:
    """Return a completion with one reasoning line per step and the answer, in the tag format."""
    reasoning = "\n".join(steps)
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>"


def make_problem(prompt: str, steps: Sequence[str], answer: str, kind: str = NUMBER) -> Problem:
    """Build the Problem whose reference completion writes `steps` and then `answer`.

    `answer` is the reference answer text: a number for NUMBER, a LaTeX expression (without
    `\\boxed`) for LATEX. A LATEX reference completion boxes it, as BOXED_INSTRUCTION requests.
    """
    if kind not in ANSWER_KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; valid kinds: {', '.join(ANSWER_KINDS)}")
    written = f"\\boxed{{{answer}}}" if kind == LATEX else answer
    return Problem(
        prompt=prompt,
        answer=format_completion(steps, written),
        meta={"answer": answer, "answer_kind": kind},
    )


# Format terms

# The text inside a tag: any characters, newlines included, that do not start a format tag.
_TAG_CONTENT = r"(?:(?!</?reasoning>|</?answer>).)*"
_STRICT_FORMAT = re.compile(
    rf"<reasoning>\n{_TAG_CONTENT}\n</reasoning>\n<answer>\n{_TAG_CONTENT}\n</answer>\n?",
    re.DOTALL,
)
# Matched at the start of the completion only, so text after `</answer>` does not matter.
_SOFT_FORMAT = re.compile(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", re.DOTALL)
_INTEGER = re.compile(r"-?[0-9]+")


def has_strict_format(text: str) -> bool:
    """Return whether `text` is exactly one reasoning block and one answer block.

    Each tag is on its own line and one newline may follow `</answer>`. A tag's text may
    span lines but contain no format tag, so `</answer></answer>` is not strict.
    """
    return _STRICT_FORMAT.fullmatch(text) is not None


def has_soft_format(text: str) -> bool:
    """Return whether `text` starts with a reasoning block followed by an answer block.

    Whitespace may separate the blocks and any text may follow, as in d1's soft format.
    """
    return _SOFT_FORMAT.match(text) is not None


def xml_count(text: str) -> float:
    """Score the four tag lines: 0.125 for each that occurs exactly once, at most 0.5.

    The answer tags' shares each lose 0.001 per character after `\\n</answer>` (a single
    newline right after it is free), so the score falls below 0 only for long trailing text.
    """
    trailing = _text_after_answer(text)
    count = 0.0
    if text.count("<reasoning>\n") == 1:
        count += 0.125
    if text.count("\n</reasoning>\n") == 1:
        count += 0.125
    if text.count("\n<answer>\n") == 1:
        count += 0.125 - TRAILING_CHAR_PENALTY * len(trailing)
    if text.count("\n</answer>") == 1:
        count += 0.125 - TRAILING_CHAR_PENALTY * len(trailing)
    return count


def _text_after_answer(text: str) -> str:
    """Return the text after the first `\\n</answer>` less one leading newline, or ""."""
    _, found, after = text.partition("\n</answer>")
    if not found:
        return ""
    return after[1:] if after.startswith("\n") else after


# Answer extraction


def extract_strict_answer(text: str) -> str | None:
    """Return the stripped text between the last `<answer>` and the next `</answer>`.

    Returns None when no `</answer>` follows the last `<answer>`, so an answer cut off before
    its closing tag never counts.
    """
    start = text.rfind("<answer>")
    if start < 0:
        return None
    content, found, _ = text[start + len("<answer>") :].partition("</answer>")
    return content.strip() if found else None


def last_boxed(text: str) -> str | None:
    """Return the content of the last `\\boxed{...}` whose braces close, or None.

    Braces nest, so `\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`. An unclosed `\\boxed{` is
    skipped in favour of an earlier complete one. The `\\boxed 5` form without braces is not
    read.
    """
    marker = "\\boxed{"
    start = text.rfind(marker)
    while start >= 0:
        content = _braced_content(text, start + len(marker))
        if content is not None:
            return content
        start = text.rfind(marker, 0, start)
    return None


def _braced_content(text: str, begin: int) -> str | None:
    """Return the text from `begin` up to the brace that closes an opening brace before it."""
    depth = 1
    for index in range(begin, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:index]
    return None


# A decimal number: digits with comma thousands separators (`1,000`), or plain digits.
_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
# A whole answer: a sign, a dollar sign, the number, then a percent sign or unit words, and an
# optional full stop. A tuple such as `(1, 2)` or `1,2,3` does not match.
_ANSWER_NUMBER = re.compile(
    rf"(?P<sign>-?)\s*\$?\s*(?P<inner_sign>-?)(?P<number>{_NUMBER}|\d+\.|\.\d+)"
    r"\s*(?:%|[A-Za-z]+(?:\s+[A-Za-z]+)*)?\s*\.?"
)
# A number inside running text. The look-behind keeps `12-3` from yielding -3 and `x2` or
# `1.5` from yielding a number that starts mid-token.
_TEXT_NUMBER = re.compile(rf"(?<![\w.,])(?P<sign>-?)\$?(?P<number>{_NUMBER})")


def parse_number(text: str) -> Fraction | None:
    """Return the value of an answer such as `9`, `-3`, `1,000`, `$5`, `5 apples`, `25%` or `9.00`.

    Returns None unless the whole stripped text is one number with those decorations. A percent
    sign is dropped, not divided by 100, so `25%` matches a reference written as plain `25`.
    """
    match = _ANSWER_NUMBER.fullmatch(text.strip())
    if match is None or (match["sign"] and match["inner_sign"]):
        return None
    value = _to_fraction(match["number"])
    return -value if match["sign"] or match["inner_sign"] else value


def last_number(text: str) -> Fraction | None:
    """Return the value of the last number anywhere in `text`, or None if it has none."""
    matches = list(_TEXT_NUMBER.finditer(text))
    if not matches:
        return None
    value = _to_fraction(matches[-1]["number"])
    return -value if matches[-1]["sign"] else value


def format_number(value: Fraction) -> str:
    """Write a value read by `parse_number` as plain decimal digits, such as `1000` or `-2.5`."""
    if value.denominator == 1:
        return str(value.numerator)
    # The value came from a decimal string, so the division is exact.
    return str(Decimal(value.numerator) / Decimal(value.denominator))


def _to_fraction(number: str) -> Fraction:
    return Fraction(Decimal(number.replace(",", "")))


# Correctness


def _answer_kind(meta: dict[str, Any]) -> str:
    kind = meta.get("answer_kind")
    if kind not in ANSWER_KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; valid kinds: {', '.join(ANSWER_KINDS)}")
    return kind


def is_correct_strict(meta: dict[str, Any], completion: str) -> bool:
    """Return whether the answer inside well-formed answer tags equals `meta["answer"]`.

    A LaTeX answer is read from its last complete `\\boxed{}`, or whole if it has no `\\boxed`.
    """
    answer = extract_strict_answer(completion)
    if answer is None:
        return False
    if _answer_kind(meta) == NUMBER:
        return _numbers_equal(meta["answer"], parse_number(answer))
    if "\\boxed" in answer:
        boxed = last_boxed(answer)
        return boxed is not None and latex_equal(meta["answer"], boxed)
    return latex_equal(meta["answer"], answer)


def is_correct_flexible(meta: dict[str, Any], completion: str) -> bool:
    """Return whether the last number, or last complete `\\boxed{}` for LaTeX, is the answer."""
    if _answer_kind(meta) == NUMBER:
        return _numbers_equal(meta["answer"], last_number(completion))
    boxed = last_boxed(completion)
    if boxed is not None:
        return latex_equal(meta["answer"], boxed)
    matches = list(_TEXT_NUMBER.finditer(completion))
    return bool(matches) and latex_equal(meta["answer"], matches[-1].group(0))


def _numbers_equal(reference: str, value: Fraction | None) -> bool:
    expected = parse_number(reference)
    if expected is None:
        raise ValueError(f"reference answer {reference!r} is not a number")
    return value is not None and value == expected


def latex_equal(reference: str, candidate: str) -> bool:
    """Return whether math-verify finds two LaTeX answers equal; False if it fails or times out.

    Both are wrapped in `\\boxed{}` so that math-verify parses them the same way.
    """
    import math_verify  # imported here: only LaTeX answers need it
    from math_verify.errors import TimeoutException

    # math-verify enforces its timeouts with signal.alarm, which works only in the main thread.
    # NOTE: elsewhere it runs without a time limit, so a pathological answer can block.
    in_main_thread = threading.current_thread() is threading.main_thread()
    timeout = MATH_VERIFY_TIMEOUT_S if in_main_thread else None
    try:
        gold = _parse_latex(reference, timeout)
        target = math_verify.parse(f"\\boxed{{{candidate}}}", parsing_timeout=timeout)
        if not gold or not target:
            return False
        return bool(math_verify.verify(list(gold), target, timeout_seconds=timeout))
    except (ValueError, TimeoutException):
        # raise_on_error is False by default, so math-verify returns []/False on its own errors.
        # These two still escape: a signal set up outside the main thread, and a timeout.
        return False


@functools.lru_cache(maxsize=4096)
def _parse_latex(reference: str, timeout: int | None) -> tuple:
    import math_verify

    return tuple(math_verify.parse(f"\\boxed{{{reference}}}", parsing_timeout=timeout))


# Reward


@dataclass(frozen=True)
class Score:
    """The reward terms of one completion and both correctness readings."""

    xml_count: float
    soft_format: bool
    strict_format: bool
    answer_form: bool  # an integer answer, or a boxed one for LaTeX answers
    correct: bool  # strict extraction
    correct_flexible: bool

    @property
    def reward(self) -> float:
        """Return the weighted sum of the terms over MAX_TOTAL, clamped to [0, 1]."""
        total = (
            self.xml_count
            + SOFT_FORMAT_WEIGHT * self.soft_format
            + STRICT_FORMAT_WEIGHT * self.strict_format
            + ANSWER_FORM_WEIGHT * self.answer_form
            + CORRECT_WEIGHT * self.correct
        )
        return min(1.0, max(0.0, total / MAX_TOTAL))


def score(meta: dict[str, Any], completion: str) -> Score:
    """Compute every reward term of `completion` against the answer in `meta`."""
    answer = extract_strict_answer(completion)
    if _answer_kind(meta) == NUMBER:
        answer_form = answer is not None and _INTEGER.fullmatch(answer) is not None
    else:
        answer_form = answer is not None and last_boxed(answer) is not None
    return Score(
        xml_count=xml_count(completion),
        soft_format=has_soft_format(completion),
        strict_format=has_strict_format(completion),
        answer_form=answer_form,
        correct=is_correct_strict(meta, completion),
        correct_flexible=is_correct_flexible(meta, completion),
    )


# Generator

NAMES = ("Ann", "Ben", "Dan", "Eve", "Gus", "Ian", "Joe", "Kim", "Liz", "Max", "Pam", "Sam", "Zoe")
ITEMS = ("pens", "cups", "eggs", "toys", "hats", "jars", "cards", "books", "coins", "beads")
CONTAINERS = ("boxes", "bags", "packs")
# Verbs that add to or take from what the person has; "+" and "-" are the operators they imply.
VERBS = {"+": ("buys", "finds", "gets"), "-": ("sells", "loses", "gives away")}
QUESTION = "How many?"

# Templates with their operand slots a, b, c. The comments give the reasoning lines.
TEMPLATES = {
    # a+b=x (or a-b), x+c=y (or x-c)
    "change_twice": "{name} has {a} {item}, {verb1} {b} and {verb2} {c}.",
    # a*b=x, x+c=y (or x-c)
    "buy_containers": "{name} buys {a} {container} of {b} {item} and {verb1} {c}.",
    # b*c=x, a+x=y
    "add_containers": "{name} has {a} {item} and buys {b} {container} of {c}.",
    # b*c=x, a-x=y
    "give_each": "{name} has {a} {item} and gives {b} to each of {c} kids.",
}


def _operand(rng: random.Random, value: int, operator: str) -> int | None:
    """Draw an operand that keeps `value operator operand` in 0..MAX_VALUE, or None if none."""
    if operator == "+":
        return rng.randint(1, MAX_VALUE - value) if value < MAX_VALUE else None
    return rng.randint(1, value) if value > 0 else None


def _apply(value: int, operator: str, operand: int) -> int:
    return value + operand if operator == "+" else value - operand


def _draw_change_twice(rng: random.Random) -> tuple[dict, list[str], int] | None:
    a = rng.randint(1, MAX_VALUE)
    operator1, operator2 = rng.choice("+-"), rng.choice("+-")
    b = _operand(rng, a, operator1)
    if b is None:
        return None
    x = _apply(a, operator1, b)
    c = _operand(rng, x, operator2)
    if c is None:
        return None
    y = _apply(x, operator2, c)
    slots = {
        "a": a,
        "b": b,
        "c": c,
        "verb1": rng.choice(VERBS[operator1]),
        "verb2": rng.choice(VERBS[operator2]),
    }
    return slots, [f"{a}{operator1}{b}={x}", f"{x}{operator2}{c}={y}"], y


def _draw_buy_containers(rng: random.Random) -> tuple[dict, list[str], int] | None:
    a, b = rng.randint(MIN_FACTOR, MAX_FACTOR), rng.randint(MIN_FACTOR, MAX_FACTOR)
    x = a * b
    operator = rng.choice("+-")
    c = _operand(rng, x, operator)
    if c is None:
        return None
    y = _apply(x, operator, c)
    slots = {"a": a, "b": b, "c": c, "verb1": rng.choice(VERBS[operator])}
    return slots, [f"{a}*{b}={x}", f"{x}{operator}{c}={y}"], y


def _draw_add_containers(rng: random.Random) -> tuple[dict, list[str], int] | None:
    b, c = rng.randint(MIN_FACTOR, MAX_FACTOR), rng.randint(MIN_FACTOR, MAX_FACTOR)
    x = b * c
    if x >= MAX_VALUE:
        return None
    a = rng.randint(1, MAX_VALUE - x)
    return {"a": a, "b": b, "c": c}, [f"{b}*{c}={x}", f"{a}+{x}={a + x}"], a + x


def _draw_give_each(rng: random.Random) -> tuple[dict, list[str], int] | None:
    b, c = rng.randint(MIN_FACTOR, MAX_FACTOR), rng.randint(MIN_FACTOR, MAX_FACTOR)
    x = b * c
    if x > MAX_VALUE:
        return None
    a = rng.randint(x, MAX_VALUE)
    return {"a": a, "b": b, "c": c}, [f"{b}*{c}={x}", f"{a}-{x}={a - x}"], a - x


_DRAWS = {
    "change_twice": _draw_change_twice,
    "buy_containers": _draw_buy_containers,
    "add_containers": _draw_add_containers,
    "give_each": _draw_give_each,
}


def _draw(rng: random.Random) -> Problem | None:
    """Draw a template, its words and operands; None if the draw breaks a rule.

    Every operand, intermediate result and answer lies in 0..MAX_VALUE. A draw whose reference
    completion would fill all COMPLETION_LENGTH positions (only `change_twice` with five
    two-digit numbers) is rejected, so an end-of-sequence token always follows the reference.
    """
    template = rng.choice(sorted(TEMPLATES))
    drawn = _DRAWS[template](rng)
    if drawn is None:
        return None
    slots, steps, answer = drawn
    words = {
        "name": rng.choice(NAMES),
        "item": rng.choice(ITEMS),
        "container": rng.choice(CONTAINERS),
    }
    prompt = f"{TEMPLATES[template].format(**words, **slots)} {QUESTION}"
    problem = make_problem(prompt, steps, str(answer))
    if len(problem.answer) >= COMPLETION_LENGTH:
        return None
    return problem


def longest_prompt_chars() -> int:
    """Return the length of the longest prompt the generator can write.

    Every template is filled with its longest words and two-digit numbers, which bounds the
    prompt because no operand has more than two digits.
    """
    longest_verb = max((verb for verbs in VERBS.values() for verb in verbs), key=len)
    words = {
        "name": max(NAMES, key=len),
        "item": max(ITEMS, key=len),
        "container": max(CONTAINERS, key=len),
        "verb1": longest_verb,
        "verb2": longest_verb,
    }
    numbers = {"a": MAX_VALUE, "b": MAX_VALUE, "c": MAX_VALUE}
    return max(
        len(f"{template.format(**words, **numbers)} {QUESTION}") for template in TEMPLATES.values()
    )


class MathTask(GeneratedTask):
    """Two-step word problems over numbers up to 99, answered in reasoning and answer tags."""

    name = "math"
    max_prompt_chars = longest_prompt_chars()
    completion_length = COMPLETION_LENGTH
    tokens_per_step = 4

    def parse_answer(self, completion: str) -> str | None:
        """Return the text inside a well-formed `<answer>` block (strict extraction), or None."""
        return extract_strict_answer(completion)
    primary_metric = "accuracy"
    headroom_metric = "accuracy"

    test_fraction = TEST_FRACTION
    max_problems = MAX_PROBLEMS

    def draw(self, rng: random.Random, split: str) -> Problem | None:
        """Draw a word problem with its worked solution, or None."""
        return _draw(rng)

    def reward(self, problem: Problem, completion: str) -> float:
        """Return the d1-weighted format and correctness terms over their maximum, in [0, 1]."""
        return score(problem.meta, completion).reward

    def metrics(self, problems: Sequence[Problem], completions: Sequence[str]) -> dict[str, float]:
        """Return strict and flexible accuracy, mean reward, and the shares in each format."""
        check_batch(problems, completions)
        scores = [score(problem.meta, text) for problem, text in zip(problems, completions)]
        return {
            "accuracy": mean([item.correct for item in scores]),
            "accuracy_flexible": mean([item.correct_flexible for item in scores]),
            "reward": mean([item.reward for item in scores]),
            "strict_format": mean([item.strict_format for item in scores]),
            "soft_format": mean([item.soft_format for item in scores]),
        }


# Loaders

# GSM8K solutions mark calculator calls as `<<48/2=24>>`. The loader drops them from the
# reasoning because the visible text already states each result.
_CALCULATOR_ANNOTATION = re.compile(r"<<[^<>]*>>")


def load_gsm8k_jsonl(path: str | Path) -> list[Problem]:
    """Load GSM8K JSON lines with "question" and "answer", whose last line is `#### N`.

    The prompt is INSTRUCTION and the question. The reference completion puts the solution
    lines before `####`, without calculator annotations, in the reasoning and N without
    thousands separators in the answer. Blank lines are skipped. Raises ValueError naming the
    file and line for invalid JSON, a missing or non-string field, or a missing or non-numeric
    final answer.
    """
    problems = []
    for where, record in _read_records(path, ("question", "answer")):
        solution, marker, final = record["answer"].rpartition("####")
        if not marker:
            raise ValueError(f'{where}: field "answer" has no final "#### N" line')
        value = parse_number(final)
        if value is None:
            raise ValueError(f"{where}: final answer {final.strip()!r} is not a number")
        reasoning = _CALCULATOR_ANNOTATION.sub("", solution).strip()
        prompt = f"{INSTRUCTION}\n\n{record['question'].strip()}"
        problems.append(make_problem(prompt, [reasoning], format_number(value)))
    return problems


def load_math500_jsonl(path: str | Path) -> list[Problem]:
    """Load MATH-500 JSON lines with "problem", "solution" and "answer" (LaTeX).

    The prompt is INSTRUCTION, BOXED_INSTRUCTION and the problem. The reference completion puts
    the solution in the reasoning and `\\boxed{answer}` in the answer. "subject", "level" and
    "unique_id", when present, are kept in `meta`. Blank lines are skipped. Raises ValueError
    naming the file and line for invalid JSON or a missing, non-string or empty field.
    """
    problems = []
    for where, record in _read_records(path, ("problem", "solution", "answer")):
        answer = record["answer"].strip()
        if not answer:
            raise ValueError(f'{where}: field "answer" is empty')
        prompt = f"{INSTRUCTION}\n{BOXED_INSTRUCTION}\n\n{record['problem'].strip()}"
        problem = make_problem(prompt, [record["solution"].strip()], answer, kind=LATEX)
        for key in ("subject", "level", "unique_id"):
            if key in record:
                problem.meta[key] = record[key]
        problems.append(problem)
    return problems


def _read_records(path: str | Path, fields: Sequence[str]) -> list[tuple[str, dict]]:
    """Return ("file:line", record) for each non-blank JSON line, whose `fields` must be strings."""
    records = read_jsonl(path, fields)
    for where, record in records:
        for name in fields:
            if not isinstance(record[name], str):
                raise ValueError(f'{where}: field "{name}" must be a string')
    return records
