"""Tests of the math task: generator, format terms, answer extraction, rewards and loaders."""

from __future__ import annotations

import json
import re
import threading

import pytest
import torch

from benchmarks.model import decode_completions
from benchmarks.tasks import mathematics
from benchmarks.tasks.base import split_of
from benchmarks.tasks.mathematics import (
    MAX_TOTAL,
    TEMPLATES,
    MathTask,
    extract_strict_answer,
    format_completion,
    has_soft_format,
    has_strict_format,
    is_correct_flexible,
    is_correct_strict,
    last_boxed,
    last_number,
    latex_equal,
    load_gsm8k_jsonl,
    load_math500_jsonl,
    make_problem,
    parse_number,
    score,
    xml_count,
)
from benchmarks.tokenizer import CHARACTERS, build_tokenizer

REFERENCE = "<reasoning>\n7+5=12\n12-3=9\n</reasoning>\n<answer>\n9\n</answer>"
NUMBER_META = {"answer": "9", "answer_kind": "number"}
HALF_META = {"answer": "\\frac{1}{2}", "answer_kind": "latex"}
EQUATION = re.compile(r"(\d+)([+*-])(\d+)=(\d+)")


def tagged(reasoning: str, answer: str) -> str:
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>"


@pytest.fixture(scope="module")
def task() -> MathTask:
    return MathTask()


@pytest.fixture(scope="module")
def problem() -> mathematics.Problem:
    return make_problem("Ann has 7 pens, buys 5 and sells 3. How many?", ["7+5=12", "12-3=9"], "9")


@pytest.fixture(scope="module")
def drawn_train(task):
    return task.problems("train", 5000, seed=0)


@pytest.fixture(scope="module")
def drawn_test(task):
    return task.problems("test", 1000, seed=0)


# Task attributes and requests


def test_math_task_attributes():
    assert MathTask.name == "math"
    assert MathTask.primary_metric == "accuracy"
    assert MathTask.headroom_metric == "accuracy"
    assert MathTask.completion_length == 64
    longest = "Ann has 99 cards, gives away 99 and gives away 99. How many?"
    assert MathTask.max_prompt_chars == len(longest)
    assert MathTask.max_prompt_chars + MathTask.completion_length <= 127


def test_problems_unknown_split(task):
    with pytest.raises(ValueError, match="unknown split 'dev'; valid splits: train, test"):
        task.problems("dev", 1, seed=0)


def test_problems_count_over_cap(task):
    with pytest.raises(ValueError, match="invalid count 100001 for math test problems"):
        task.problems("test", 100_001, seed=0)


# Generator


def test_generator_deterministic(task, drawn_test):
    again = task.problems("test", 1000, seed=0)
    assert [p.prompt for p in again] == [p.prompt for p in drawn_test]
    assert [p.answer for p in again] == [p.answer for p in drawn_test]
    assert [p.meta for p in again] == [p.meta for p in drawn_test]


def test_generator_seeds_differ(task, drawn_test):
    other = task.problems("test", 1000, seed=1)
    assert [p.prompt for p in other] != [p.prompt for p in drawn_test]


def test_generator_splits_disjoint(drawn_train, drawn_test):
    train_prompts = {p.prompt for p in drawn_train}
    test_prompts = {p.prompt for p in drawn_test}
    assert len(train_prompts) == len(drawn_train)
    assert len(test_prompts) == len(drawn_test)
    assert not train_prompts & test_prompts
    assert all(split_of(prompt, mathematics.TEST_FRACTION) == "train" for prompt in train_prompts)
    assert all(split_of(prompt, mathematics.TEST_FRACTION) == "test" for prompt in test_prompts)


def test_generator_lengths_fit(task, drawn_train, drawn_test):
    allowed = set(CHARACTERS)
    for problem in drawn_train + drawn_test:
        assert len(problem.prompt) <= task.max_prompt_chars, problem.prompt
        assert len(problem.answer) < task.completion_length, problem.answer
        assert set(problem.prompt) <= allowed, problem.prompt
        assert set(problem.answer) <= allowed, problem.answer


def test_generator_longest_prompt_reached(task, drawn_train):
    # The bound is tight enough to matter: real prompts come within 3 characters of it.
    assert max(len(p.prompt) for p in drawn_train) >= task.max_prompt_chars - 3


def test_generator_equations_hold(drawn_train):
    for problem in drawn_train:
        reasoning = problem.answer.split("\n</reasoning>")[0].removeprefix("<reasoning>\n")
        lines = reasoning.split("\n")
        assert len(lines) == 2, problem.answer
        for line in lines:
            left, operator, right, result = EQUATION.fullmatch(line).groups()
            left_value, right_value = int(left), int(right)
            values = {
                "+": left_value + right_value,
                "-": left_value - right_value,
                "*": left_value * right_value,
            }
            assert values[operator] == int(result), line
            assert all(0 <= int(n) <= mathematics.MAX_VALUE for n in (left, right, result)), line
        assert EQUATION.fullmatch(lines[-1]).group(4) == problem.meta["answer"]
        assert problem.meta["answer_kind"] == "number"


def test_generator_uses_every_template(drawn_train):
    starts = {
        "change_twice": re.compile(r"\w+ has \d+ \w+, "),
        "buy_containers": re.compile(r"\w+ buys \d+ \w+ of "),
        "add_containers": re.compile(r"\w+ has \d+ \w+ and buys "),
        "give_each": re.compile(r"\w+ has \d+ \w+ and gives \d+ to each "),
    }
    assert set(starts) == set(TEMPLATES)
    for name, pattern in starts.items():
        assert any(pattern.match(p.prompt) for p in drawn_train), name
    operators = {match for p in drawn_train for match in re.findall(r"\d([+*-])\d", p.answer)}
    assert operators == {"+", "-", "*"}


def test_references_score_one(task, drawn_train, drawn_test):
    for problem in drawn_train + drawn_test:
        assert task.reward(problem, problem.answer) == 1.0, problem.answer
        assert is_correct_strict(problem.meta, problem.answer)
        assert is_correct_flexible(problem.meta, problem.answer)


def test_numbers_skip_math_verify(task, drawn_train, monkeypatch):
    def fail(*args):
        raise AssertionError("math-verify called for a number answer")

    monkeypatch.setattr(mathematics, "latex_equal", fail)
    assert task.reward(drawn_train[0], drawn_train[0].answer) == 1.0


# Format terms


def test_reference_format_terms():
    assert has_strict_format(REFERENCE)
    assert has_soft_format(REFERENCE)
    assert xml_count(REFERENCE) == 0.5


def test_format_multiline_reasoning():
    # d1's regexes lack re.DOTALL and would reject both. Here the text inside a tag may span lines.
    many_lines = tagged("7+5=12\nthen\n12-3=9", "9")
    assert has_strict_format(many_lines)
    assert has_soft_format(many_lines)
    assert xml_count(many_lines) == 0.5


def test_format_multiline_answer():
    completion = tagged("7+5=12\n12-3=9", "9\napples")
    assert has_strict_format(completion)
    assert extract_strict_answer(completion) == "9\napples"
    assert parse_number("9\napples") == 9


def test_format_trailing_newline():
    assert has_strict_format(REFERENCE + "\n")
    assert xml_count(REFERENCE + "\n") == 0.5
    assert not has_strict_format(REFERENCE + "\n\n")


def test_format_duplicate_closing_tag_same_line():
    completion = REFERENCE + "</answer>"
    assert not has_strict_format(completion)
    assert has_soft_format(completion)
    # Both answer-tag shares lose 0.001 for each of the 9 characters of the second tag.
    assert xml_count(completion) == pytest.approx(0.5 - 2 * 9 * 0.001)
    assert extract_strict_answer(completion) == "9"


def test_format_duplicate_closing_tag_next_line():
    completion = REFERENCE + "\n</answer>"
    assert not has_strict_format(completion)
    assert has_soft_format(completion)
    # `\n</answer>` now occurs twice, so its share is lost. The opening share loses 9 * 0.001.
    assert xml_count(completion) == pytest.approx(0.375 - 9 * 0.001)


def test_format_trailing_text_penalty():
    completion = REFERENCE + "\njunk"
    assert not has_strict_format(completion)
    assert has_soft_format(completion)
    assert xml_count(completion) == pytest.approx(0.5 - 2 * 4 * 0.001)


def test_format_missing_newlines():
    completion = "<reasoning>7+5=12</reasoning><answer>12</answer>"
    assert not has_strict_format(completion)
    assert has_soft_format(completion)
    assert xml_count(completion) == 0.0


def test_format_text_before_tags():
    completion = "Sure.\n" + REFERENCE
    assert not has_strict_format(completion)
    assert not has_soft_format(completion)
    assert xml_count(completion) == 0.5


def test_format_missing_answer_block():
    completion = "<reasoning>\n7+5=12\n</reasoning>\n"
    assert not has_strict_format(completion)
    assert not has_soft_format(completion)
    assert xml_count(completion) == 0.25


def test_format_nested_answer_tag():
    completion = tagged("7+5=12", "<answer>\n12")
    assert not has_strict_format(completion)
    assert extract_strict_answer(completion) == "12"


# Answer extraction


def test_strict_answer_needs_closing_tag():
    assert extract_strict_answer("<reasoning>\nx\n</reasoning>\n<answer>\n9\n") is None
    assert extract_strict_answer("9") is None


def test_strict_answer_uses_last_opening_tag():
    completion = "<answer>1</answer> then <answer> 2 </answer>"
    assert extract_strict_answer(completion) == "2"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("9", 9),
        ("1,000", 1000),
        ("1,234,567", 1234567),
        ("1,000.50", 1000.5),
        ("$5", 5),
        ("$1,000", 1000),
        ("5 apples", 5),
        ("5 dollars", 5),
        ("$5 dollars", 5),
        ("25%", 25),
        ("9.0", 9),
        ("9.00", 9),
        ("9.", 9),
        (".5", 0.5),
        ("-3", -3),
        ("-$3", -3),
        ("$-3", -3),
        ("  12 ", 12),
    ],
)
def test_parse_number_accepts(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize(
    "text", ["(1, 2)", "1,2,3", "1,2", "10,00", "-$-3", "x", "", "9 + 1", "about 9 or 10"]
)
def test_parse_number_rejects(text):
    assert parse_number(text) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("7+5=12\n12-3=9", 9),
        ("12-3", 3),
        ("x = -5", -5),
        ("The answer is 9.", 9),
        ("first 4, then 7", 7),
        ("(1, 2)", 2),
        ("$1,000 in total", 1000),
        ("3.5 and 4", 4),
        ("it costs 2.5", 2.5),
    ],
)
def test_last_number(text, value):
    assert last_number(text) == value


def test_last_number_none():
    assert last_number("no digits here") is None


@pytest.mark.parametrize(
    ("text", "content"),
    [
        ("\\boxed{5}", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\sqrt{\\frac{1}{2}}} end", "\\sqrt{\\frac{1}{2}}"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{1} then \\boxed{2", "1"),
        ("\\boxed{\\frac{1}{2}", None),
        ("\\boxed{", None),
        ("no box", None),
    ],
)
def test_last_boxed(text, content):
    assert last_boxed(text) == content


# Correctness


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("1,000", "1000"),
        ("1000", "1,000"),
        ("$1,000", "1000"),
        ("1000 dollars", "1000"),
        ("1000.00", "1000"),
        ("-7", "-7"),
    ],
)
def test_strict_correct_normalised(answer, expected):
    meta = {"answer": expected, "answer_kind": "number"}
    assert is_correct_strict(meta, tagged("work", answer))


@pytest.mark.parametrize(
    ("answer", "expected"), [("(1, 2)", "2"), ("1,2,3", "123"), ("7", "-7"), ("-7", "7")]
)
def test_strict_wrong_numbers(answer, expected):
    meta = {"answer": expected, "answer_kind": "number"}
    assert not is_correct_strict(meta, tagged("work", answer))


def test_strict_rejects_sentence_flexible_accepts():
    completion = tagged("7+5=12\n12-3=9", "She has 9 pens left")
    assert not is_correct_strict(NUMBER_META, completion)
    assert is_correct_flexible(NUMBER_META, completion)


def test_flexible_takes_last_number():
    assert is_correct_flexible(NUMBER_META, "Start with 3, then 9")
    assert not is_correct_flexible(NUMBER_META, "Start with 9, then 3")


def test_flexible_without_tags():
    assert is_correct_flexible(NUMBER_META, "7+5=12, 12-3=9")
    assert not is_correct_strict(NUMBER_META, "7+5=12, 12-3=9")


def test_latex_strict_nested_braces():
    assert is_correct_strict(HALF_META, tagged("half", "\\boxed{\\frac{1}{2}}"))
    assert is_correct_strict(HALF_META, tagged("half", "so \\boxed{0.5}"))
    assert not is_correct_strict(HALF_META, tagged("half", "\\boxed{\\frac{1}{3}}"))


def test_latex_strict_unclosed_box():
    # math-verify would read 1/2 from the unclosed box, so the extractor must not pass it on.
    assert not is_correct_strict(HALF_META, tagged("half", "\\boxed{\\frac{1}{2}"))
    assert is_correct_strict(HALF_META, tagged("half", "\\boxed{\\frac{1}{2}} not \\boxed{3"))


def test_latex_strict_without_box():
    assert is_correct_strict(HALF_META, tagged("half", "\\frac{1}{2}"))


def test_latex_flexible_box_anywhere():
    assert is_correct_flexible(HALF_META, "so \\boxed{\\dfrac{1}{2}} is it")
    assert not is_correct_flexible(HALF_META, "\\boxed{\\frac{1}{2}} no, \\boxed{2}")


def test_latex_equal_tuple_and_text():
    assert latex_equal("(3, \\frac{\\pi}{2})", "(3,\\frac{\\pi}{2})")
    assert latex_equal("\\text{Evelyn}", "\\text{Evelyn}")
    assert not latex_equal("10", "11")


def test_latex_equal_outside_main_thread():
    results = []
    worker = threading.Thread(target=lambda: results.append(latex_equal("\\frac{1}{2}", "0.5")))
    worker.start()
    worker.join()
    assert results == [True]


def test_latex_equal_returns_false_on_error(monkeypatch):
    import math_verify

    def fail(*args, **kwargs):
        raise ValueError("signal only works in main thread")

    monkeypatch.setattr(math_verify, "verify", fail)
    assert latex_equal("\\frac{1}{2}", "\\frac{1}{2}") is False


def test_unknown_answer_kind():
    with pytest.raises(ValueError, match="unknown answer kind 'text'; valid kinds: number, latex"):
        score({"answer": "9", "answer_kind": "text"}, REFERENCE)
    with pytest.raises(ValueError, match="unknown answer kind None; valid kinds: number, latex"):
        score({"answer": "9"}, REFERENCE)
    with pytest.raises(ValueError, match="unknown answer kind 'text'"):
        make_problem("p", ["s"], "9", kind="text")


def test_non_numeric_reference_answer():
    with pytest.raises(ValueError, match="reference answer 'nine' is not a number"):
        is_correct_strict({"answer": "nine", "answer_kind": "number"}, REFERENCE)


# Reward values. The weights are xml count 0.5, soft 0.5, strict 0.5, integer or boxed answer 0.5,
# correct 2.0, out of MAX_TOTAL = 4.0.


def test_max_total():
    assert MAX_TOTAL == 4.0


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (REFERENCE, 1.0),
        (REFERENCE + "\n", 1.0),
        # Right format, wrong answer: every term but correctness.
        (tagged("7+5=12\n12-3=9", "8"), 2.0 / 4),
        # Right answer in a sentence: not a number, so neither correct nor the integer term.
        (tagged("7+5=12\n12-3=9", "She has 9"), 1.5 / 4),
        # Right with a unit: correct, but `9 pens` is not an integer answer.
        (tagged("7+5=12\n12-3=9", "9 pens"), 3.5 / 4),
        # Right, but `9.0` is not an integer answer.
        (tagged("7+5=12\n12-3=9", "9.0"), 3.5 / 4),
        # Duplicated closing tag: strict fails and the tag count loses 2 * 9 * 0.001.
        (REFERENCE + "</answer>", (0.482 + 0.5 + 0.5 + 2.0) / 4),
        # No tags at all.
        ("9", 0.0),
        # Cut off before the closing tag: only the three tag lines that occur count.
        ("<reasoning>\n7+5=12\n12-3=9\n</reasoning>\n<answer>\n9", 0.375 / 4),
    ],
)
def test_reward_table(task, problem, completion, expected):
    assert task.reward(problem, completion) == pytest.approx(expected)


def test_reward_negative_answer(task):
    problem = make_problem("p", ["3-10=-7"], "-7")
    assert task.reward(problem, problem.answer) == 1.0


def test_reward_clamped_at_zero():
    # Text before the tags fails the soft format, and 500 trailing characters cost both answer
    # shares 0.5 each, so the tag count is 0.25 - 0.75 = -0.5 and the sum is negative.
    completion = "x" + tagged("r", "wrong") + "\n" + "y" * 500
    result = score(NUMBER_META, completion)
    assert result.xml_count == pytest.approx(-0.5)
    assert not result.soft_format
    assert result.reward == 0.0


def test_reward_latex_reference(task):
    problem = make_problem("p", ["half of one"], "\\frac{1}{2}", kind="latex")
    assert problem.answer == tagged("half of one", "\\boxed{\\frac{1}{2}}")
    assert task.reward(problem, problem.answer) == 1.0
    # Right but unboxed: loses the 0.5 of the boxed-answer term.
    assert task.reward(problem, tagged("half", "0.5")) == pytest.approx(3.5 / 4)


def test_reward_ignores_text_after_eos(task, problem):
    tokenizer = build_tokenizer()
    junk = "\n<answer>\n8\n</answer> trailing junk"
    ids = tokenizer(REFERENCE, add_special_tokens=False).input_ids
    junk_ids = tokenizer(junk, add_special_tokens=False).input_ids
    row = ids + [tokenizer.eos_token_id] + junk_ids
    (decoded,) = decode_completions(tokenizer, torch.tensor([row]))
    assert decoded == REFERENCE
    assert task.reward(problem, decoded) == 1.0
    # The same junk without the end-of-sequence token changes the answer and the format.
    assert task.reward(problem, REFERENCE + junk) < 0.5


# Metrics


def test_metrics_values(task, problem):
    completions = [
        REFERENCE,
        tagged("7+5=12\n12-3=9", "She has 9"),  # flexible only
        "<reasoning>7+5=12</reasoning> <answer>8</answer>",  # soft format, wrong integer
        "9",  # flexible only, no format
    ]
    metrics = task.metrics([problem] * 4, completions)
    assert metrics["accuracy"] == 0.25
    assert metrics["accuracy_flexible"] == 0.75
    assert metrics["strict_format"] == 0.5
    assert metrics["soft_format"] == 0.75
    # Rewards 4/4, 1.5/4 (three format terms), 1/4 (soft and integer terms) and 0.
    assert metrics["reward"] == pytest.approx((1.0 + 0.375 + 0.25 + 0.0) / 4)


def test_metrics_length_mismatch(task, problem):
    with pytest.raises(ValueError, match="2 problems but 1 completions"):
        task.metrics([problem, problem], [REFERENCE])


def test_metrics_empty_batch(task):
    with pytest.raises(ValueError, match="at least one problem"):
        task.metrics([], [])


# Loaders


def write_jsonl(path, records) -> None:
    lines = [record if isinstance(record, str) else json.dumps(record) for record in records]
    path.write_text("\n".join(lines) + "\n")


GSM8K_RECORDS = [
    {
        "question": "Natalia sold 48 clips in April and half as many in May. How many in all?",
        "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\n"
        "In all she sold 48+24 = <<48+24=72>>72 clips.\n#### 72",
    },
    "",
    {
        "question": "A car costs $1,000 more than a bike at $200. How much is the car?",
        "answer": "#### 1,200",
    },
]


def test_gsm8k_loader_round_trip(task, tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    write_jsonl(path, GSM8K_RECORDS)
    first, second = load_gsm8k_jsonl(path)

    assert first.prompt == f"{mathematics.INSTRUCTION}\n\n{GSM8K_RECORDS[0]['question']}"
    assert "<reasoning>" in first.prompt
    assert "<answer>" in first.prompt
    assert first.answer == tagged(
        "In May she sold 48/2 = 24 clips.\nIn all she sold 48+24 = 72 clips.", "72"
    )
    assert first.meta == {"answer": "72", "answer_kind": "number"}
    assert second.meta == {"answer": "1200", "answer_kind": "number"}
    assert task.reward(first, first.answer) == 1.0
    assert task.reward(second, tagged("1000+200", "$1,200")) == pytest.approx(3.5 / 4)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "q", "answer": "#### 1"', ':2: invalid JSON'),
        ('["q", "#### 1"]', ":2: expected a JSON object with fields question, answer"),
        ('{"question": "q"}', ':2: missing field "answer"; expected fields question, answer'),
        ('{"answer": "#### 1"}', ':2: missing field "question"'),
        ('{"question": "q", "answer": 1}', ':2: field "answer" must be a string'),
        ('{"question": "q", "answer": "it is 5"}', ':2: field "answer" has no final "#### N" line'),
        ('{"question": "q", "answer": "#### five"}', ":2: final answer 'five' is not a number"),
        ('{"question": "q", "answer": "#### 1,2"}', ":2: final answer '1,2' is not a number"),
    ],
)
def test_gsm8k_loader_invalid(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [GSM8K_RECORDS[0], line])
    with pytest.raises(ValueError, match=re.escape(f"{path}{message}")):
        load_gsm8k_jsonl(path)


MATH500_RECORD = {
    "problem": "What is $\\frac{2}{4}$ in lowest terms?",
    "solution": "Divide by 2:\n$\\frac{2}{4} = \\boxed{\\frac{1}{2}}$.",
    "answer": "\\frac{1}{2}",
    "subject": "Prealgebra",
    "level": 1,
    "unique_id": "test/prealgebra/1.json",
}


def test_math500_loader_round_trip(task, tmp_path):
    path = tmp_path / "math500.jsonl"
    write_jsonl(path, [MATH500_RECORD, ""])
    (problem,) = load_math500_jsonl(path)

    assert problem.prompt == (
        f"{mathematics.INSTRUCTION}\n{mathematics.BOXED_INSTRUCTION}\n\n{MATH500_RECORD['problem']}"
    )
    assert "\\boxed{" in problem.prompt
    assert problem.answer == tagged(MATH500_RECORD["solution"], "\\boxed{\\frac{1}{2}}")
    assert problem.meta == {
        "answer": "\\frac{1}{2}",
        "answer_kind": "latex",
        "subject": "Prealgebra",
        "level": 1,
        "unique_id": "test/prealgebra/1.json",
    }
    assert task.reward(problem, problem.answer) == 1.0
    assert task.reward(problem, tagged("so", "\\boxed{0.5}")) == 1.0
    assert task.reward(problem, tagged("so", "\\boxed{\\frac{1}{4}}")) == pytest.approx(2.0 / 4)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", ":1: invalid JSON"),
        (
            '{"problem": "p", "answer": "1"}',
            ':1: missing field "solution"; expected fields problem, solution, answer',
        ),
        ('{"problem": "p", "solution": "s", "answer": "  "}', ':1: field "answer" is empty'),
        ('{"problem": "p", "solution": "s", "answer": 2}', ':1: field "answer" must be a string'),
    ],
)
def test_math500_loader_invalid(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [line])
    with pytest.raises(ValueError, match=re.escape(f"{path}{message}")):
        load_math500_jsonl(path)


def test_format_completion_matches_reference():
    assert format_completion(["7+5=12", "12-3=9"], "9") == REFERENCE
