"""Report writer: summary table, results CSV and reward curves of one run directory.

    python -m benchmarks.report reports/<run-id>

regenerates `summary.md`, `results.csv` and the figures from the raw records of the run
(`records.json`, `metrics.jsonl`, `config.json`, `provenance.json`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402
from tabulate import tabulate  # noqa: E402

from benchmarks.io import atomic_write, atomic_write_text  # noqa: E402

from baselines import BASE_NAME as BASE  # noqa: E402


def load_metrics(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return pd.DataFrame()
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def results_frame(records: list[dict]) -> pd.DataFrame:
    """One row per (task, method, seed) with every evaluation metric as a column."""
    rows = [{"task": r["task"], "method": r["method"], "seed": r["seed"], **r["metrics"]} for r in records]
    return pd.DataFrame(rows)


def method_order(methods: list[str]) -> list[str]:
    """Order the methods for tables: the base row first, then the run's own order."""
    return [BASE] + [m for m in methods if m != BASE]


def summary_table(results: pd.DataFrame, primary: dict[str, str], methods: list[str]) -> str:
    """Task-by-method table of the primary metric (mean over seeds), as GitHub markdown."""
    table = []
    for method in method_order(methods):
        row = {"method": method}
        for task, metric in primary.items():
            cell = results[(results.task == task) & (results.method == method)][metric]
            row[f"{task} ({metric})"] = f"{cell.mean():.3f}" if len(cell) else ""
        table.append(row)
    return tabulate(table, headers="keys", tablefmt="github")


def plot_reward_curves(metrics: pd.DataFrame, task: str, methods: list[str], path: Path, window: int = 5) -> None:
    """Rollout reward per RL step, smoothed by a centred moving average, one line per method."""
    figure, axis = plt.subplots(figsize=(7.5, 4))
    for method in methods:
        curve = metrics[(metrics.task == task) & (metrics.method == method)]
        if curve.empty:
            continue
        mean = curve.groupby("step")["reward"].mean()
        axis.plot(mean.index, mean.rolling(window, min_periods=1, center=True).mean(), label=method)
    axis.set_xlabel("RL step")
    axis.set_ylabel(f"rollout reward (moving average of {window})")
    axis.set_title(task)
    axis.grid(alpha=0.3)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120, metadata={"Software": None}))
    plt.close(figure)


def render_summary(run_dir: Path, config: dict, provenance: dict, records: list[dict], pretrain: dict) -> str:
    results = results_frame(records)
    primary = config["primary_metrics"]
    methods = config["methods"]
    lines = [
        f"# Run {run_dir.name}",
        "",
        f"Command: `{provenance['command']}`",
        "",
        f"Test accuracy at temperature 0 on {config['test_problems']} held-out problems per task, "
        f"{_seed_phrase(config['seeds'])}. The `base` row is the pretrained model before RL.",
        "",
        summary_table(results, primary, methods),
        "",
        "## All metrics",
        "",
        tabulate(_blank_missing(results.sort_values(["task", "method", "seed"]).round(4)), headers="keys", tablefmt="github", showindex=False),
        "",
        "## Base models",
        "",
        tabulate(
            [{"task": task, **{k: v for k, v in record.items() if k not in ("history", "task")}} for task, record in pretrain.items()],
            headers="keys",
            tablefmt="github",
        ),
        "",
        "## Reward curves",
        "",
        *[f"![{task}](reward_{task}.png)" for task in primary if (run_dir / f"reward_{task}.png").exists()],
        "",
        "## Provenance",
        "",
        f"Git commit `{provenance['git_commit']}`, {provenance['hardware']}. Wall time per phase (seconds): "
        + ", ".join(f"{k} {v}" for k, v in _phases_then_total(provenance["wall_seconds"])),
        "",
    ]
    return "\n".join(lines)


def _seed_phrase(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return f"mean over seeds {', '.join(map(str, seeds))}"


def _blank_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """Replace NaN (a metric the task does not report) by an empty cell."""
    return frame.astype(object).where(frame.notna(), "")


def _phases_then_total(wall_seconds: dict[str, float]) -> list[tuple[str, float]]:
    phases = [(key, value) for key, value in wall_seconds.items() if key != "total"]
    return phases + [("total", wall_seconds["total"])] if "total" in wall_seconds else phases


def write_report(run_dir: Path) -> None:
    """Regenerate summary.md, results.csv and reward curves from the raw records in `run_dir`."""
    config = json.loads((run_dir / "config.json").read_text())
    provenance = json.loads((run_dir / "provenance.json").read_text())
    raw = json.loads((run_dir / "records.json").read_text())
    records, pretrain = raw["evaluations"], raw["pretrain"]
    results = results_frame(records)
    atomic_write_text(run_dir / "results.csv", results.sort_values(["task", "method", "seed"]).to_csv(index=False))
    metrics = load_metrics(run_dir)
    for task in config["primary_metrics"]:
        if not metrics.empty and (metrics.task == task).any():
            plot_reward_curves(metrics, task, config["methods"], run_dir / f"reward_{task}.png")
    # The summary links only the figures written above, so it goes last.
    atomic_write_text(run_dir / "summary.md", render_summary(run_dir, config, provenance, records, pretrain))


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
