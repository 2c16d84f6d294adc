"""The report on a hand-built run directory: intervals, best marks, stability, budgets, regeneration."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from benchmarks import report

METHODS = ["gdsd", "elbo_grpo", "rft"]
SEEDS = [0, 1, 2]
# Final accuracy per (method, seed): gdsd clearly best on sudoku, elbo_grpo close behind on math.
FINAL = {
    ("sudoku", "gdsd"): [0.80, 0.82, 0.84],
    ("sudoku", "elbo_grpo"): [0.60, 0.61, 0.62],
    ("sudoku", "rft"): [0.50, 0.50, 0.50],
    ("math", "gdsd"): [0.30, 0.40, 0.50],
    ("math", "elbo_grpo"): [0.35, 0.38, 0.41],
    ("math", "rft"): [0.20, 0.20, 0.20],
}
BASE = {"sudoku": 0.45, "math": 0.20}


def _write_run(run_dir, steps=10):
    run_dir.mkdir()
    config = {
        "methods": METHODS,
        "tasks": ["sudoku", "math"],
        "seeds": SEEDS,
        "primary_metrics": {"sudoku": "accuracy", "math": "accuracy"},
        "test_problems": 64,
    }
    provenance = {
        "command": "python -m benchmarks.run --methods gdsd,elbo_grpo",
        "git_commit": "0" * 40,
        "python": "3.11.7",
        "versions": {"torch": "2.13.0+cpu"},
        "hardware": "x86_64 CPU, 2 cores, 2 torch threads",
        "wall_seconds": {"sudoku/pretrain": 1.0, "total": 9.0},
    }
    evaluations, metrics = [], []
    for task in config["tasks"]:
        for seed in SEEDS:
            evaluations.append(_evaluation(task, "base", seed, 0, True, BASE[task]))
        for method in METHODS:
            for seed, final in zip(SEEDS, FINAL[task, method]):
                # The checkpoint at step 5 is 0.1 better than the final one for gdsd only.
                midway = final + (0.1 if method == "gdsd" else -0.1)
                evaluations.append(_evaluation(task, method, seed, 5, False, midway))
                evaluations.append(_evaluation(task, method, seed, steps, True, final))
                metrics += _curve(task, method, seed, steps)
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "provenance.json").write_text(json.dumps(provenance))
    records = {"pretrain": {"sudoku": {"status": "in_band", "steps": 100}}, "evaluations": evaluations}
    (run_dir / "records.json").write_text(json.dumps(records))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in metrics))


def _evaluation(task, method, seed, step, final, accuracy):
    return {"task": task, "method": method, "seed": seed, "step": step, "final": final, "metrics": {"accuracy": accuracy}}


def _curve(task, method, seed, steps):
    """Reward curves: rft on math collapses to zero, every other run rises steadily."""
    entries = []
    for step in range(1, steps + 1):
        if task == "math" and method == "rft":
            reward = 0.5 if step <= 2 else 0.0
        else:
            reward = 0.1 * step / steps + 0.01 * seed
        entries.append(
            {
                "task": task,
                "method": method,
                "seed": seed,
                "step": step,
                "reward": reward,
                "degenerate_fraction": 0.0,
                "rollouts": 48 * step,
                "scored": 48 * step,
                "gradient_steps": 2 * step,
                "forward_passes": 30 * step,
                "forward_rows": 30 * 48 * step,
            }
        )
    return entries


@pytest.fixture
def run_dir(tmp_path):
    path = tmp_path / "run"
    _write_run(path)
    report.write_report(path)
    return path


def _half_width(values):
    mean = sum(values) / len(values)
    deviation = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return 4.302653 * deviation / math.sqrt(len(values))  # t(0.975, 2) from the standard table


def test_summary_marks_best_with_interval(run_dir):
    summary = (run_dir / "summary.md").read_text()
    sudoku_gdsd = f"**0.820 ± {_half_width(FINAL['sudoku', 'gdsd']):.3f}**"
    math_gdsd = f"**0.400 ± {_half_width(FINAL['math', 'gdsd']):.3f}**"

    assert sudoku_gdsd in summary
    assert math_gdsd in summary
    assert "| base      | 0.450 " in summary
    assert "0.450 ±" not in summary  # the base is one deterministic evaluation


def test_summary_states_overlap_with_runner_up(run_dir):
    summary = (run_dir / "summary.md").read_text()

    assert "- sudoku: best gdsd (0.820), runner-up elbo_grpo (0.610); the intervals do not overlap." in summary
    assert "- math: best gdsd (0.400), runner-up elbo_grpo (0.380); the intervals overlap" in summary


def test_best_checkpoint_column(run_dir):
    summary = pd.read_csv(run_dir / "summary.csv")
    row = summary[(summary.task == "sudoku") & (summary.method == "gdsd")].iloc[0]
    other = summary[(summary.task == "sudoku") & (summary.method == "elbo_grpo")].iloc[0]

    assert row.final_mean == pytest.approx(0.82)
    assert row.best_checkpoint_mean == pytest.approx(0.92)  # the better step-5 checkpoint
    assert other.best_checkpoint_mean == pytest.approx(0.61)  # its final evaluation was its best


def test_stability_flags_collapse(run_dir):
    summary = pd.read_csv(run_dir / "summary.csv")
    collapsed = summary.set_index(["task", "method"]).collapsed_seeds

    assert collapsed["math", "rft"] == 3
    assert collapsed["math", "gdsd"] == 0
    text = (run_dir / "summary.md").read_text()
    stability_rows = [line for line in text.splitlines() if line.rstrip(" |").endswith("/3")]
    collapsed_rows = [line for line in stability_rows if line.rstrip(" |").endswith(" 3/3")]
    assert len(stability_rows) == 6  # 2 tasks x 3 trained methods
    assert len(collapsed_rows) == 1
    assert collapsed_rows[0].startswith("| math   | rft ")


def test_budget_totals(run_dir):
    summary = pd.read_csv(run_dir / "summary.csv").set_index(["task", "method"])

    assert summary.loc[("sudoku", "gdsd"), "rollouts"] == 480
    assert summary.loc[("sudoku", "gdsd"), "gradient_steps"] == 20
    assert summary.loc[("sudoku", "gdsd"), "forward_passes"] == 300


def test_report_files_and_figures(run_dir):
    for name in ("summary.md", "results.csv", "summary.csv", "accuracy.png", "reward_sudoku.png", "reward_math.png"):
        assert (run_dir / name).stat().st_size > 0, name
    results = pd.read_csv(run_dir / "results.csv")
    assert len(results) == 2 * (3 + 3 * 3 * 2)  # base per seed, and two evaluations per trained run


def test_regeneration_is_byte_identical(run_dir):
    generated = sorted(p.name for p in run_dir.iterdir() if p.suffix in (".md", ".csv", ".png"))
    before = {name: (run_dir / name).read_bytes() for name in generated}
    for name in generated:
        (run_dir / name).unlink()

    report.main([str(run_dir)])

    assert {name: (run_dir / name).read_bytes() for name in generated} == before


def test_one_seed_has_no_interval(tmp_path):
    path = tmp_path / "run"
    _write_run(path)
    records = json.loads((path / "records.json").read_text())
    records["evaluations"] = [r for r in records["evaluations"] if r["seed"] == 0]
    (path / "records.json").write_text(json.dumps(records))
    config = json.loads((path / "config.json").read_text())
    config["seeds"] = [0]
    (path / "config.json").write_text(json.dumps(config))

    report.write_report(path)

    summary = (path / "summary.md").read_text()
    assert "With one seed there is no confidence interval." in summary
    assert "**0.800**" in summary
    assert "no interval with one seed" in summary


def test_missing_records_exits_with_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path)])

    assert exit_info.value.code == 2
    assert "has no records.json" in capsys.readouterr().err


def test_readme_table_comes_from_summary(run_dir, tmp_path):
    from benchmarks import readme_table

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{readme_table.START}\nold table\n{readme_table.END}\nrest\n")

    assert readme_table.main([str(run_dir), "--readme", str(readme)]) == 0

    text = readme.read_text()
    assert "old table" not in text
    assert text.startswith("intro\n")
    assert text.endswith(f"{readme_table.END}\nrest\n")
    assert f"| gdsd      | 0.820 ± {_half_width(FINAL['sudoku', 'gdsd']):.3f}" in text
    assert "| base      | 0.450 " in text
    assert "`python -m benchmarks.run --methods gdsd,elbo_grpo`" in text
    assert "- sudoku: holds. gdsd 0.820 ≥ elbo_grpo 0.610, and their intervals do not overlap." in text
    assert "- math: holds. gdsd 0.400 ≥ elbo_grpo 0.380, and their intervals overlap." in text


def test_readme_table_needs_markers(run_dir, tmp_path, capsys):
    from benchmarks import readme_table

    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")

    assert readme_table.main([str(run_dir), "--readme", str(readme)]) == 2
    assert "has no <!-- results:start -->" in capsys.readouterr().err
    assert readme.read_text() == "no markers\n"


def test_readme_ordering_names_the_failing_task():
    from benchmarks.readme_table import ordering_lines

    nan = float("nan")
    summary = pd.DataFrame([
        {"task": "code", "method": "gdsd", "final_mean": 0.30, "final_ci_low": 0.25, "final_ci_high": 0.35},
        {"task": "code", "method": "gdsd_tlc", "final_mean": 0.32, "final_ci_low": 0.30, "final_ci_high": 0.34},
        {"task": "code", "method": "espo", "final_mean": 0.40, "final_ci_low": 0.38, "final_ci_high": 0.42},
        {"task": "code", "method": "wd1", "final_mean": 0.20, "final_ci_low": 0.10, "final_ci_high": 0.30},
        {"task": "math", "method": "gdsd", "final_mean": 0.10, "final_ci_low": nan, "final_ci_high": nan},
        {"task": "math", "method": "spg", "final_mean": 0.10, "final_ci_low": nan, "final_ci_high": nan},
        {"task": "sudoku", "method": "gdsd", "final_mean": 0.80, "final_ci_low": 0.7, "final_ci_high": 0.9},
    ])

    lines = ordering_lines(summary, ["code", "math", "sudoku"])

    assert lines == [
        "- code: does not hold. gdsd_tlc 0.320 < espo 0.400, and their intervals do not overlap.",
        "- math: holds. gdsd 0.100 ≥ spg 0.100 (one seed, no interval).",
    ]
