"""Report writer: tables, CSV files and figures of one run directory.

    python -m benchmarks.report reports/<run-id>

regenerates `summary.md`, `results.csv`, `summary.csv` and the PNG figures from the raw records
of the run alone (`records.json`, `metrics.jsonl`, `config.json`, `provenance.json`). The output
depends on nothing else, so regenerating it gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402
from tabulate import tabulate  # noqa: E402

from benchmarks.io import atomic_write, atomic_write_text  # noqa: E402
from benchmarks.stats import (  # noqa: E402
    CONFIDENCE,
    SMOOTHING_WINDOW,
    Interval,
    is_collapsed,
    max_drawdown,
    mean_interval,
    smooth,
)

from baselines import BASE_NAME as BASE  # noqa: E402

BUDGET_COLUMNS = ("rollouts", "scored", "gradient_steps", "forward_passes", "forward_rows")
GENERATED_FILES = ("summary.md", "results.csv", "summary.csv", "accuracy.png")
FIGURE_DPI = 120


@dataclass(frozen=True)
class RunRecords:
    """The raw records of one run directory."""

    config: dict
    provenance: dict
    evaluations: pd.DataFrame  # one row per evaluation: task, method, seed, step, final, metrics
    pretrain: dict
    metrics: pd.DataFrame  # one row per training step


def load_run(run_dir: Path) -> RunRecords:
    config = json.loads((run_dir / "config.json").read_text())
    provenance = json.loads((run_dir / "provenance.json").read_text())
    raw = json.loads((run_dir / "records.json").read_text())
    return RunRecords(config, provenance, evaluations_frame(raw["evaluations"]), raw["pretrain"], load_metrics(run_dir))


def load_metrics(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return pd.DataFrame()
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def evaluations_frame(records: list[dict]) -> pd.DataFrame:
    """Return one row per evaluation with every metric as a column.

    Records written before checkpoints existed have no step and count as final.
    """
    rows = [
        {
            "task": r["task"],
            "method": r["method"],
            "seed": r["seed"],
            "step": r.get("step"),
            "final": r.get("final", True),
            **r["metrics"],
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=None if rows else ["task", "method", "seed", "step", "final"])


def method_order(methods: list[str]) -> list[str]:
    """Order the methods for tables and figures: the base row first, then the run's order."""
    return [BASE] + [m for m in methods if m != BASE]


def method_colors(methods: list[str]) -> dict[str, tuple]:
    """Give every method one color, the same in every figure of the run."""
    palette = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
    return {method: palette[index % len(palette)] for index, method in enumerate(method_order(methods))}


# Aggregates


def primary_intervals(evaluations: pd.DataFrame, primary: dict[str, str], methods: list[str], final: bool = True) -> dict:
    """Return {(task, method): Interval} of the primary metric over seeds.

    With `final`, the value per seed is the evaluation after the last step; otherwise it is the
    best evaluation of that seed over all checkpoints, the final one included. The base is
    evaluated once (its copies per seed are identical), so it gets no interval.
    """
    intervals = {}
    for task, metric in primary.items():
        for method in method_order(methods):
            rows = evaluations[(evaluations.task == task) & (evaluations.method == method)]
            if rows.empty or metric not in rows:
                continue
            if final:
                per_seed = rows[rows.final].groupby("seed")[metric].mean()
            else:
                per_seed = rows.groupby("seed")[metric].max()
            per_seed = per_seed.dropna()
            if method == BASE:
                per_seed = per_seed.iloc[:1]
            if len(per_seed):
                intervals[task, method] = mean_interval(per_seed.tolist())
    return intervals


def ranking(intervals: dict, task: str) -> list[tuple[str, Interval]]:
    """Return the trained methods of `task` (not the base) from best to worst mean."""
    entries = [(method, interval) for (name, method), interval in intervals.items() if name == task and method != BASE]
    return sorted(entries, key=lambda entry: -entry[1].mean)


def stability_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    """Return one row per (task, method, seed): smoothed final reward, max drawdown, collapse flag."""
    columns = ["task", "method", "seed", "final_reward", "max_drawdown", "collapsed"]
    if metrics.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (task, method, seed), run in metrics.groupby(["task", "method", "seed"], sort=True):
        run = run.sort_values("step")
        rewards = run["reward"].tolist()
        degenerate = run["degenerate_fraction"].tolist() if "degenerate_fraction" in run else None
        smoothed = smooth(rewards)
        rows.append(
            {
                "task": task,
                "method": method,
                "seed": seed,
                "final_reward": smoothed[-1],
                "max_drawdown": max_drawdown(smoothed),
                "collapsed": is_collapsed(rewards, degenerate),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def budget_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    """Return each run's total budget: the cumulative counters of its last step."""
    present = [column for column in BUDGET_COLUMNS if column in metrics]
    if metrics.empty or not present:
        return pd.DataFrame(columns=["task", "method", "seed", *BUDGET_COLUMNS])
    last = metrics.sort_values("step").groupby(["task", "method", "seed"], sort=True).tail(1)
    return last[["task", "method", "seed", *present]].sort_values(["task", "method", "seed"]).reset_index(drop=True)


# Tables


def format_interval(interval: Interval | None) -> str:
    if interval is None:
        return ""
    if interval.half_width is None:
        return f"{interval.mean:.3f}"
    return f"{interval.mean:.3f} ± {interval.half_width:.3f}"


def accuracy_table(intervals: dict, primary: dict[str, str], methods: list[str]) -> str:
    """Return the task-by-method markdown table; the best trained method of each task is bold."""
    best = {task: ranking(intervals, task)[0][0] for task in primary if ranking(intervals, task)}
    table = []
    for method in method_order(methods):
        row = {"method": method}
        for task, metric in primary.items():
            text = format_interval(intervals.get((task, method)))
            row[f"{task} ({metric})"] = f"**{text}**" if text and best.get(task) == method else text
        table.append(row)
    return tabulate(table, headers="keys", tablefmt="github", disable_numparse=True)


def best_versus_runner_up(intervals: dict, primary: dict[str, str]) -> list[str]:
    """Return one sentence per task naming the best method and whether its interval overlaps the runner-up's."""
    lines = []
    for task in primary:
        ranked = ranking(intervals, task)
        if not ranked:
            continue
        best, best_interval = ranked[0]
        if len(ranked) == 1:
            lines.append(f"- {task}: {best} is the only trained method.")
            continue
        runner_up, runner_interval = ranked[1]
        overlap = best_interval.overlaps(runner_interval)
        if overlap is None:
            verdict = "no interval with one seed, so the two cannot be told apart"
        elif overlap:
            verdict = "the intervals overlap, so the difference is not significant at this level"
        else:
            verdict = "the intervals do not overlap"
        lines.append(f"- {task}: best {best} ({best_interval.mean:.3f}), runner-up {runner_up} ({runner_interval.mean:.3f}); {verdict}.")
    return lines


def stability_table(stability: pd.DataFrame, tasks: list[str], methods: list[str]) -> str:
    if stability.empty:
        return "No training steps were logged."
    rows = []
    for task in tasks:
        for method in method_order(methods):
            runs = stability[(stability.task == task) & (stability.method == method)]
            if runs.empty:
                continue
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "final smoothed reward": f"{runs.final_reward.mean():.3f}",
                    "max drawdown (mean, worst)": f"{runs.max_drawdown.mean():.3f}, {runs.max_drawdown.max():.3f}",
                    "collapsed seeds": f"{int(runs.collapsed.sum())}/{len(runs)}",
                }
            )
    return tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True)


def budget_table(budgets: pd.DataFrame, tasks: list[str], methods: list[str]) -> str:
    if budgets.empty:
        return "No budget counters were logged."
    rows = []
    for task in tasks:
        for method in method_order(methods):
            runs = budgets[(budgets.task == task) & (budgets.method == method)]
            if runs.empty:
                continue
            row = {"task": task, "method": method}
            for column in BUDGET_COLUMNS:
                if column in runs:
                    row[column.replace("_", " ")] = f"{runs[column].mean():.0f}"
            rows.append(row)
    return tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True)


def summary_frame(records: RunRecords) -> pd.DataFrame:
    """Return the aggregate table behind summary.md, one row per (task, method), for summary.csv."""
    primary, methods = records.config["primary_metrics"], records.config["methods"]
    final = primary_intervals(records.evaluations, primary, methods, final=True)
    best = primary_intervals(records.evaluations, primary, methods, final=False)
    stability = stability_frame(records.metrics)
    budgets = budget_frame(records.metrics)
    rows = []
    for (task, method), interval in final.items():
        row = {
            "task": task,
            "method": method,
            "metric": primary[task],
            "seeds": interval.count,
            "final_mean": interval.mean,
            "final_ci_low": interval.low,
            "final_ci_high": interval.high,
            "best_checkpoint_mean": best[task, method].mean if (task, method) in best else None,
        }
        runs = stability[(stability.task == task) & (stability.method == method)]
        if not runs.empty:
            row.update(
                max_drawdown_mean=runs.max_drawdown.mean(),
                collapsed_seeds=int(runs.collapsed.sum()),
            )
        spent = budgets[(budgets.task == task) & (budgets.method == method)]
        for column in BUDGET_COLUMNS:
            if column in spent and not spent.empty:
                row[column] = spent[column].mean()
        rows.append(row)
    return pd.DataFrame(rows)


# Figures


def plot_reward_curves(metrics: pd.DataFrame, task: str, methods: list[str], path: Path) -> None:
    """Smoothed rollout reward per RL step: one line per method (mean over seeds), a min-max band over seeds."""
    colors = method_colors(methods)
    figure, axis = plt.subplots(figsize=(7.5, 4))
    for method in method_order(methods):
        runs = metrics[(metrics.task == task) & (metrics.method == method)]
        if runs.empty:
            continue
        curves = {
            seed: pd.Series(smooth(run.sort_values("step")["reward"].tolist()), index=run.sort_values("step")["step"].tolist())
            for seed, run in runs.groupby("seed")
        }
        table = pd.DataFrame(curves)
        axis.plot(table.index, table.mean(axis=1), label=method, color=colors[method])
        if table.shape[1] > 1:
            axis.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=colors[method], alpha=0.2, linewidth=0)
    axis.set_xlabel("RL step")
    axis.set_ylabel(f"rollout reward (trailing mean of {SMOOTHING_WINDOW})")
    axis.set_title(f"{task}: mean over seeds, band = min to max over seeds")
    axis.grid(alpha=0.3)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    _save(figure, path)


def plot_accuracy_bars(intervals: dict, primary: dict[str, str], methods: list[str], path: Path) -> None:
    """Final test metric per task, one bar per method in a fixed order, error bars = confidence interval."""
    colors = method_colors(methods)
    ordered = method_order(methods)
    tasks = list(primary)
    width = 0.8 / len(ordered)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.8 * len(tasks) + 2.5), 4))
    for index, method in enumerate(ordered):
        positions, heights, errors = [], [], []
        for task_index, task in enumerate(tasks):
            interval = intervals.get((task, method))
            if interval is None:
                continue
            positions.append(task_index + (index - (len(ordered) - 1) / 2) * width)
            heights.append(interval.mean)
            errors.append(interval.half_width or 0.0)
        if positions:
            axis.bar(positions, heights, width, yerr=errors, capsize=2, label=method, color=colors[method])
    axis.set_xticks(range(len(tasks)), [f"{task}\n({primary[task]})" for task in tasks])
    axis.set_ylabel("test score after the last step")
    axis.set_title(f"error bars: {CONFIDENCE:.0%} t-interval over seeds")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    _save(figure, path)


def _save(figure, path: Path) -> None:
    # No software or date metadata, so the same data gives the same bytes.
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=FIGURE_DPI, metadata={"Software": None}))
    plt.close(figure)


# Summary


def _test_size_phrase(test_problems: int | dict[str, int]) -> str:
    """Describe the test set: one count for every task, or (runs on task files) a count per task."""
    if isinstance(test_problems, dict):
        return "the test problems of each task (" + ", ".join(f"{task}: {n}" for task, n in test_problems.items()) + ")"
    return f"{test_problems} held-out problems per task"


def render_summary(run_dir: Path, records: RunRecords) -> str:
    config, provenance = records.config, records.provenance
    primary, methods = config["primary_metrics"], config["methods"]
    final = primary_intervals(records.evaluations, primary, methods, final=True)
    best = primary_intervals(records.evaluations, primary, methods, final=False)
    seeds = config["seeds"]
    checkpoint_steps = sorted({int(s) for s in records.evaluations.step.dropna() if s > 0}) if "step" in records.evaluations else []
    lines = [
        f"# Run {run_dir.name}",
        "",
        f"Command: `{provenance['command']}`",
        "",
        "## Test score after the last RL step",
        "",
        f"Primary metric at temperature 0 on {_test_size_phrase(config['test_problems'])}, "
        f"{_seed_phrase(seeds)}. The `base` row is {config.get('base', 'the pretrained model')} before RL, "
        "evaluated once. "
        + _interval_phrase(seeds)
        + " Bold marks the best trained method of each task.",
        "",
        accuracy_table(final, primary, methods),
        "",
        *best_versus_runner_up(final, primary),
        "",
        "![test score per task](accuracy.png)",
        "",
        "## Best checkpoint (optimistic)",
        "",
        "The best of the evaluations at steps "
        + (", ".join(map(str, checkpoint_steps)) or "(none)")
        + " for each seed, then averaged. The reference papers report this number; it selects on the "
        "test set, so it overstates what a method delivers and is not the primary result.",
        "",
        accuracy_table(best, primary, methods),
        "",
        "## Stability",
        "",
        f"Rollout reward per step, smoothed by a trailing mean over {SMOOTHING_WINDOW} steps. Max drawdown "
        "is the largest fall of the smoothed reward below its running maximum. A seed has collapsed when "
        "its smoothed reward ends at or below 10% of its starting value, or when at least half of the "
        f"completions of its last {SMOOTHING_WINDOW} steps are empty or one repeated token.",
        "",
        stability_table(stability_frame(records.metrics), list(primary), methods),
        "",
        *[f"![{task}](reward_{task}.png)" for task in primary if (run_dir / f"reward_{task}.png").exists()],
        "",
        "## Budget per run",
        "",
        "Totals of one training run (mean over seeds): completions sampled and scored, optimizer steps, "
        "model forward calls (policy, old policy and reference, in sampling and in the loss) and the "
        "sequences those calls processed. Evaluations are not counted.",
        "",
        budget_table(budget_frame(records.metrics), list(primary), methods),
        "",
        "## All final metrics",
        "",
        _all_metrics_table(records.evaluations),
        "",
        "## Base models",
        "",
        tabulate(
            [{"task": task, **{k: v for k, v in record.items() if k not in ("history", "task")}} for task, record in records.pretrain.items()],
            headers="keys",
            tablefmt="github",
        ),
        "",
        "## Provenance",
        "",
        _provenance_text(provenance),
        "",
    ]
    return "\n".join(lines)


def _all_metrics_table(evaluations: pd.DataFrame) -> str:
    if evaluations.empty:
        return "No evaluations were recorded."
    final = evaluations[evaluations.final].drop(columns=["final"]).sort_values(["task", "method", "seed"])
    return tabulate(_blank_missing(final.round(4)), headers="keys", tablefmt="github", showindex=False)


def _provenance_text(provenance: dict) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in provenance.get("versions", {}).items())
    phases = ", ".join(f"{key} {value}" for key, value in _phases_then_total(provenance["wall_seconds"]))
    return (
        f"Git commit `{provenance['git_commit']}`, Python {provenance.get('python', '?')}, {versions}. "
        f"Hardware: {provenance['hardware']}. Wall time per phase (seconds): {phases}."
    )


def _seed_phrase(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return f"mean over seeds {', '.join(map(str, seeds))}"


def _interval_phrase(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return "With one seed there is no confidence interval."
    return (
        f"± is the half-width of the {CONFIDENCE:.0%} Student-t interval over the {len(seeds)} seeds, "
        f"mean ± t(0.975, n-1)·s/√n with s the sample standard deviation; it covers seed-to-seed "
        "variation of RL only, since every seed starts from the same base and test set."
    )


def _blank_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """Replace NaN (a metric the task does not report) by an empty cell."""
    return frame.astype(object).where(frame.notna(), "")


def _phases_then_total(wall_seconds: dict[str, float]) -> list[tuple[str, float]]:
    phases = [(key, value) for key, value in wall_seconds.items() if key != "total"]
    return phases + [("total", wall_seconds["total"])] if "total" in wall_seconds else phases


def write_report(run_dir: Path) -> None:
    """Regenerate every generated file of `run_dir` from its raw records."""
    records = load_run(run_dir)
    primary, methods = records.config["primary_metrics"], records.config["methods"]
    ordered = records.evaluations.sort_values(["task", "method", "seed", "step"], na_position="first")
    atomic_write_text(run_dir / "results.csv", ordered.to_csv(index=False))
    atomic_write_text(run_dir / "summary.csv", summary_frame(records).to_csv(index=False))
    for task in primary:
        if not records.metrics.empty and (records.metrics.task == task).any():
            plot_reward_curves(records.metrics, task, methods, run_dir / f"reward_{task}.png")
    final = primary_intervals(records.evaluations, primary, methods, final=True)
    plot_accuracy_bars(final, primary, methods, run_dir / "accuracy.png")
    # The summary links only the figures written above, so it goes last.
    atomic_write_text(run_dir / "summary.md", render_summary(run_dir, records))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description="Regenerate a run's report from its raw records.")
    parser.add_argument("run_dir", type=Path, help="a directory written by benchmarks.run")
    args = parser.parse_args(argv)
    if not (args.run_dir / "records.json").exists():
        parser.exit(2, f"error: {args.run_dir} has no records.json; pass a directory written by benchmarks.run\n")
    write_report(args.run_dir)
    print(args.run_dir / "summary.md")


if __name__ == "__main__":
    main()
