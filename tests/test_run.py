import json
import subprocess
import sys

import pandas as pd

from benchmarks import report
from benchmarks.run import main


def test_unknown_method_exits_with_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--methods", "nope"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: unknown method 'nope'; valid methods: dmpo, elbo_grpo, elbo_pg, espo, gdsd, gdsd_logits, gdsd_tlc, spg, wd1, rft"]


def test_no_rft_leaves_out_reference_row(tmp_path):
    code = main([
        "--methods", "gdsd", "--tasks", "sudoku", "--preset", "smoke", "--no-rft",
        "--output-dir", str(tmp_path), "--run-id", "plain", "--no-progress",
    ])
    assert code == 0
    assert sorted(set(pd.read_csv(tmp_path / "plain" / "results.csv").method)) == ["base", "gdsd"]


def test_unknown_task_and_preset_rejected(capsys):
    assert main(["--tasks", "chess"]) == 2
    assert "valid tasks: code, countdown, math, sudoku" in capsys.readouterr().err
    assert main(["--preset", "huge"]) == 2
    assert "valid presets: paper-tiny, smoke, tiny" in capsys.readouterr().err


def test_smoke_run_writes_report(tmp_path):
    code = main([
        "--methods", "gdsd,elbo_grpo", "--tasks", "sudoku,countdown", "--preset", "smoke",
        "--output-dir", str(tmp_path), "--run-id", "smoke", "--no-progress",
    ])
    run_dir = tmp_path / "smoke"
    assert code == 0
    results = pd.read_csv(run_dir / "results.csv")
    assert sorted(set(zip(results.task, results.method))) == [
        (task, method) for task in ("countdown", "sudoku") for method in ("base", "elbo_grpo", "gdsd", "rft")
    ]
    summary = (run_dir / "summary.md").read_text()
    for row in ("| base", "| gdsd", "| elbo_grpo", "| rft"):
        assert row in summary
    for name in ("reward_sudoku.png", "reward_countdown.png", "metrics.jsonl", "config.json", "provenance.json"):
        assert (run_dir / name).stat().st_size > 0
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2 * 3 * 2  # tasks x methods x steps

    # The report regenerates the same tables from the raw records alone.
    before = (run_dir / "summary.md").read_text(), (run_dir / "results.csv").read_text()
    (run_dir / "summary.md").unlink()
    (run_dir / "results.csv").unlink()
    report.main([str(run_dir)])
    assert ((run_dir / "summary.md").read_text(), (run_dir / "results.csv").read_text()) == before


def test_invalid_override_rejected_before_training(capsys):
    assert main(["--methods", "gdsd", "--set", "gdsd.rho=1"]) == 2
    assert "gdsd has no option rho; valid options:" in capsys.readouterr().err
    assert main(["--methods", "wd1", "--set", "wd1.beta=0.1"]) == 2
    assert "beta" in capsys.readouterr().err
    assert main(["--methods", "gdsd", "--set", "espo.epsilon=0.1"]) == 2
    assert "which is not in this run" in capsys.readouterr().err
    assert main(["--methods", "gdsd", "--set", "rft.learning_rate=1"]) == 2
    assert "rft has no options to set" in capsys.readouterr().err
    assert main(["--methods", "gdsd", "--set", "gdsd.psi=abc"]) == 2
    assert "invalid value 'abc' for gdsd.psi: expected a number" in capsys.readouterr().err
    assert main(["--methods", "gdsd", "--set", "gdsd.mc_draws=1.5"]) == 2
    assert "expected an integer" in capsys.readouterr().err
    assert main(["--methods", "gdsd", "--set", "gdsd.psi=true"]) == 2
    assert "expected a number" in capsys.readouterr().err
    assert main(["--methods", "gdsd", "--set", "gdsd.psi"]) == 2
    assert "expected METHOD.OPTION=VALUE" in capsys.readouterr().err


def test_interrupted_run_keeps_finished_results(tmp_path, monkeypatch):
    import benchmarks.run as run_module

    calls = []
    real_train_policy = run_module.train_policy

    def train_then_interrupt(*args, **kwargs):
        calls.append(args[2].name)
        if len(calls) == 2:  # the second method is interrupted mid-training
            raise KeyboardInterrupt
        return real_train_policy(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_policy", train_then_interrupt)
    code = main([
        "--methods", "gdsd,elbo_grpo", "--tasks", "sudoku", "--preset", "smoke", "--no-rft",
        "--output-dir", str(tmp_path), "--run-id", "stopped", "--no-progress",
    ])

    run_dir = tmp_path / "stopped"
    assert code == 130
    assert calls == ["gdsd", "elbo_grpo"]
    results = pd.read_csv(run_dir / "results.csv")
    assert sorted(set(results.method)) == ["base", "gdsd"]
    summary = (run_dir / "summary.md").read_text()
    assert "- sudoku: gdsd is the only trained method." in summary
    assert not [path for path in run_dir.rglob("*") if path.name.startswith(".")]  # no temporary files


def test_log_samples_writes_every_evaluation(tmp_path):
    code = main([
        "--methods", "gdsd", "--tasks", "sudoku", "--preset", "smoke", "--no-rft",
        "--output-dir", str(tmp_path), "--run-id", "logged", "--no-progress", "--log-samples",
    ])

    samples = tmp_path / "logged" / "samples" / "sudoku"
    assert code == 0
    assert sorted(path.name for path in samples.iterdir()) == ["base-seed0-step0.jsonl", "gdsd-seed0-step2.jsonl"]
    rows = [json.loads(line) for line in (samples / "gdsd-seed0-step2.jsonl").read_text().splitlines()]
    assert len(rows) == 32  # the smoke preset's test problems
    assert set(rows[0]) == {"prompt", "completion", "parsed_answer", "reward"}
    assert all(0.0 <= row["reward"] <= 1.0 for row in rows)
    assert rows[0]["parsed_answer"] == rows[0]["completion"].strip()
