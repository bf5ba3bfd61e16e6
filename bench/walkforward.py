"""Benchmark: walk-forward retraining on the reference workload W, per training mode and against darts.

W: S&P 500 daily log returns in percent (``arch.data.sp500``, 1999-2018); input the last 60
returns, target the next one; LSTM 2 x 64, last hidden state -> Linear; MSE, Adam lr 1e-3,
batch 64, 5 epochs, no early stopping, float32; expanding window, first fold trained on 2520
days, retrained every 126 days: 20 folds, 2510 out-of-sample predictions.

Every (mode, seed) runs in its own subprocess, one after another, so timings, peak RSS and
thread counts never interfere. darts runs the same W from its own venv (``bench/.darts-venv``,
created on first use; darts is never a project dependency).

    python bench/walkforward.py                        # every mode on both series, darts; 3 seeds
    python bench/walkforward.py --mode sequence+warm --seeds 1 --no-darts
    python bench/walkforward.py --data planted         # the quality check on a planted signal
    python bench/walkforward.py --profile              # torch.profiler top ops, before/after
    python bench/walkforward.py --family lstm,gru,transformer,tcn --mode sequence+warm,window --no-darts
                                                       # each network family's time and quality on W
    python bench/walkforward.py --data planted --mode sequence+warm --no-darts --val-fraction 0.2 --refit \
        --out /tmp/refit.md                            # early stopping on a validation tail, then refit
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

LOOKBACK, HIDDEN, LAYERS, FIRST_TEST, STEP, N_TEST = 60, 64, 2, 2520, 126, 2510
MODES = {
    # name: (TrainSettings overrides, warm_start)
    "window": ({"mode": "window"}, False),
    "window+warm": ({"mode": "window"}, True),
    "sequence": ({"mode": "sequence"}, False),
    "sequence+warm": ({"mode": "sequence"}, True),
}
FASTEST = "sequence+warm"
DARTS_VERSION = "0.48.1"
DARTS_VENV = HERE / ".darts-venv"


# ------------------------------------------------------------------------------------- workload


def load_returns(data: str) -> np.ndarray:
    """Daily log returns in percent: the real S&P 500, or a synthetic series with a planted signal.

    ``planted``: r[t+1] = 0.6 * sign(r[t-4]) + N(0, 1), so the past 60 returns hold a signal
    worth a hit rate near 0.73 while each return alone looks like noise.
    """
    if data == "sp500":
        from arch.data import sp500

        close = sp500.load()["Close"].to_numpy()
        return 100.0 * np.diff(np.log(close))
    rng = np.random.default_rng(2024)
    r = rng.normal(0.0, 1.0, 5030)
    for t in range(5, len(r)):
        r[t] += 0.6 * np.sign(r[t - 5])
    return r


def run_w(args: argparse.Namespace) -> dict:
    """One walk-forward of W in this process; returns the JSON-ready figures."""
    import pandas as pd
    import torch

    from lstmbt.backtest.splits import WalkForwardSplit
    from lstmbt.backtest.walkforward import make_sample_grid, walk_forward_predict
    from lstmbt.models.estimators import LSTMRegressor
    from lstmbt.models.specs import NetSpec, TrainSettings
    from lstmbt.models.specs import available_cores

    torch.set_num_threads(args.threads or available_cores())
    returns = load_returns(args.data)
    index = pd.bdate_range("1999-01-05", periods=len(returns))
    features = pd.DataFrame({"ret_pct": returns}, index=index)
    target = features["ret_pct"].shift(-1)  # the next return, known after the next close
    grid = make_sample_grid(features, target, LOOKBACK)
    min_train = FIRST_TEST - LOOKBACK  # sample i predicts return i + L: the first test target is 2520
    folds = WalkForwardSplit(min_train=min_train, step=STEP, horizon=1, val_fraction=args.val_fraction).split(grid.n)
    folds = folds[: args.folds]
    overrides, warm = MODES[args.worker]
    settings = TrainSettings(lr=1e-3, weight_decay=0.0, batch_size=64, max_epochs=args.epochs, lr_patience=10**6,
                             clip_norm=0.0, chunk_len=args.chunk_len, chunks_per_batch=args.chunks_per_batch,
                             warm_epochs=args.warm_epochs, refit=args.refit, warmup_steps=args.warmup_steps,
                             lr_scaling=args.lr_scaling, **overrides)
    if settings.mode == "sequence" and args.seq_lr:
        settings = TrainSettings(**{**settings.__dict__, "lr": args.seq_lr})
    estimator = LSTMRegressor(net=NetSpec(hidden_size=HIDDEN, num_layers=LAYERS, dropout=0.0, head=()),
                              train=settings, device=args.device, random_state=args.seed, warm_start=warm,
                              family=args.family)
    profiler = _profiler() if args.profile_worker else None
    started = time.perf_counter()
    if profiler:
        profiler.__enter__()
    preds, log = walk_forward_predict(estimator, features, target, grid, folds)
    wall = time.perf_counter() - started
    if profiler:
        profiler.__exit__(None, None, None)
    flops = _flop_estimate(log) if args.family == "lstm" else float("nan")
    y, p = preds["y_true"].to_numpy(), preds["y_pred"].to_numpy()
    mode = args.worker + ("+refit" if args.refit else "")
    if args.family != "lstm":  # the mode it really trained in: the transformer has no sequence mode
        mode = f"{args.family} {mode.replace('sequence', estimator._settings().mode)}"
    out = {
        "mode": mode + _knob_label(args), "data": args.data, "val_fraction": args.val_fraction, "seed": args.seed, "device": args.device,
        "threads": torch.get_num_threads(), "folds": len(folds), "n_pred": int(len(preds)),
        "wall_s": round(wall, 2), "s_per_fold": round(wall / len(folds), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "gflop": round(flops / 1e9, 1), "gflops_per_s": round(flops / 1e9 / wall, 1),  # NaN off the LSTM
        "epochs": int(log["epochs"].sum()),
        "hit_rate": float(np.mean((p > 0) == (y > 0))),
        "rmse": float(np.sqrt(np.mean((p - y) ** 2))),
        "rmse_zero": float(np.sqrt(np.mean(y**2))),
        "base_rate": float(np.mean(y > 0)),
    }
    if profiler:
        out["profile"] = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return out


def _knob_label(args: argparse.Namespace) -> str:
    """``+warmup<N>`` and ``+linear-lr`` for the learning-rate knobs that differ from their defaults."""
    return (f"+warmup{args.warmup_steps}" if args.warmup_steps else "") + (
        "+linear-lr" if args.lr_scaling == "linear" else "")


def _flop_estimate(log) -> float:
    """LSTM FLOPs: 8 H (in + H) per layer per time step forward, backward about twice that."""
    per_step = sum(8 * HIDDEN * ((1 if layer == 0 else HIDDEN) + HIDDEN) for layer in range(LAYERS))
    return float(per_step * (3 * log["train_steps"].sum() + log["eval_steps"].sum()))


def _profiler():
    from torch.profiler import ProfilerActivity, profile

    return profile(activities=[ProfilerActivity.CPU])


# ------------------------------------------------------------------------------------ orchestration


def run_worker(args: argparse.Namespace, mode: str, seed: int, profile: bool = False, family: str = "lstm") -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--seed", str(seed), "--data", args.data, "--family", family,
           "--folds", str(args.folds), "--epochs", str(args.epochs), "--device", args.device,
           "--chunk-len", str(args.chunk_len), "--chunks-per-batch", str(args.chunks_per_batch),
           "--warm-epochs", str(args.warm_epochs), "--threads", str(args.threads),
           "--val-fraction", str(args.val_fraction), "--warmup-steps", str(args.warmup_steps),
           "--lr-scaling", args.lr_scaling]
    if args.refit:
        cmd.append("--refit")
    if args.seq_lr:
        cmd += ["--seq-lr", str(args.seq_lr)]
    if profile:
        cmd.append("--profile-worker")
    return json.loads(_run(cmd).strip().splitlines()[-1])


def _run(cmd: list[str]) -> str:
    """Run a worker; on failure show its stderr tail instead of a bare CalledProcessError."""
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"worker failed ({' '.join(cmd[:3])} ...):\n{tail}")
    return done.stdout


def run_darts(args: argparse.Namespace, seed: int) -> dict:
    python = DARTS_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {DARTS_VENV} with darts {DARTS_VERSION} (first run only)...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(DARTS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "torch==2.13.0", f"darts[torch]=={DARTS_VERSION}"], check=True)
    returns_file = HERE / f".w-{args.data}.npy"
    np.save(returns_file, load_returns(args.data))
    n_test = min(N_TEST, args.folds * STEP)
    cmd = [str(python), str(HERE / "darts_w.py"), "--returns", str(returns_file), "--first-test", str(FIRST_TEST),
           "--n-test", str(n_test), "--step", str(STEP), "--epochs", str(args.epochs), "--seed", str(seed),
           "--threads", str(args.threads or _cores())]
    out = json.loads(_run(cmd).strip().splitlines()[-1])
    out.update(data=args.data, folds=-(-n_test // STEP), s_per_fold=round(out["wall_s"] / -(-n_test // STEP), 3))
    return out


def _cores() -> int:
    from lstmbt.models.specs import available_cores

    return available_cores()


def summarize(rows: list[dict]) -> dict[str, dict]:
    """Per mode: median wall time and mean/min/max of the quality figures over seeds."""
    out: dict[str, dict] = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        part = [r for r in rows if r["mode"] == mode]
        entry = {"runs": len(part)}
        for key in ("wall_s", "s_per_fold", "gflop", "gflops_per_s"):
            values = [r[key] for r in part if key in r]
            entry[key] = float(np.median(values)) if values else float("nan")
        for key in ("hit_rate", "rmse", "rmse_zero", "base_rate", "peak_rss_mb"):
            values = np.array([r.get(key, np.nan) for r in part])
            entry[key] = (float(values.mean()), float(values.min()), float(values.max()))
        out[mode] = entry
    return out


def quality_check(summary: dict[str, dict], reference: str = "window") -> dict[str, bool]:
    """A mode keeps quality if its mean hit rate and mean RMSE are no worse than the reference's seed range.

    That is: mean hit rate >= the reference's lowest seed, mean RMSE <= its highest seed.
    """
    ref = summary.get(reference)
    if ref is None:
        return {}
    return {mode: bool(entry["hit_rate"][0] >= ref["hit_rate"][1] and entry["rmse"][0] <= ref["rmse"][2])
            for mode, entry in summary.items()}


def machine_info() -> dict[str, str]:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores available": str(_cores()), "python": platform.python_version(),
        "torch": torch.__version__, "numpy": np.__version__, "platform": platform.platform(),
        "darts": DARTS_VERSION, "date": time.strftime("%Y-%m-%d"),
    }


def results_table(rows: list[dict]) -> list[str]:
    """Markdown rows for one dataset: time, ratios to darts and window mode, quality per mode."""
    summary = summarize(rows)
    verdict = quality_check(summary)
    darts = summary.get("darts", {}).get("wall_s")
    window = summary.get("window", {}).get("wall_s")
    lines = ["| mode | wall s | vs darts | vs window | hit rate | RMSE | base rate | RMSE of 0 | peak RSS MB "
             "| quality >= window |", "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, entry in summary.items():
        ratio_d = f"{darts / entry['wall_s']:.1f}x" if darts else "-"
        ratio_w = f"{window / entry['wall_s']:.1f}x" if window else "-"
        fmt = lambda key, p=4: "{:.{p}f} [{:.{p}f}, {:.{p}f}]".format(*entry[key], p=p)  # noqa: E731
        lines.append(f"| {mode} | {entry['wall_s']:.1f} | {ratio_d} | {ratio_w} | {fmt('hit_rate')} | {fmt('rmse')} "
                     f"| {entry['base_rate'][0]:.4f} | {entry['rmse_zero'][0]:.4f} | {entry['peak_rss_mb'][0]:.0f} | "
                     f"{'yes' if verdict.get(mode) else ('-' if mode not in verdict else 'no')} |")
    return lines


def write_results(path: Path, args: argparse.Namespace, rows: list[dict], profiles: dict[str, str]) -> str:
    lines = ["# Walk-forward benchmark: workload W", "",
             "Generated by `python bench/walkforward.py` (`make bench`). Wall time is the median over seeds of the "
             "walk-forward alone (imports and data loading excluded); quality is mean [min, max] over seeds of the "
             "out-of-sample hit rate and RMSE (returns in percent).", "",
             "| machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine_info().items()]
    lines += ["", f"Settings: {args.folds} folds, {args.epochs} epochs (warm refits: {args.warm_epochs}), "
              f"chunk_len {args.chunk_len}, chunks_per_batch {args.chunks_per_batch}, device {args.device}, "
              f"{args.seeds} seeds per mode, {args.darts_seeds} for darts, validation tail {args.val_fraction}"
              f"{' with refit on fit + validation' if args.refit else ''}.", "",
              "quality >= window: mean hit rate not below window mode's worst seed and mean RMSE not above its "
              "worst seed. RMSE of 0 is the persistence forecast (tomorrow's return = 0)."]
    for data in dict.fromkeys(r["data"] for r in rows):
        part = [r for r in rows if r["data"] == data]
        title = "S&P 500 returns (W)" if data == "sp500" else "planted signal (W's shape, r[t+1] = 0.6 sign(r[t-4]) + noise)"
        lines += ["", f"## {title}", ""] + results_table(part)
    lines += ["", "## Per run", "", "```"] + [json.dumps({k: v for k, v in r.items() if k != "profile"}) for r in rows]
    lines += ["```"]
    for name, table in profiles.items():
        lines += ["", f"## Profile: {name} (torch.profiler, top ops by self CPU time)", "", "```", table.strip(), "```"]
    text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", "--mode", dest="modes", default=",".join([FASTEST, "sequence", "window+warm", "window"]),
                        help=f"comma-separated from {', '.join(MODES)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per mode (0, 1, ...)")
    parser.add_argument("--darts-seeds", type=int, default=1, help="seeds for darts (each takes ~5 minutes)")
    parser.add_argument("--no-darts", action="store_true", help="skip the darts run")
    parser.add_argument("--data", default="sp500,planted", help="comma-separated from sp500, planted")
    parser.add_argument("--folds", type=int, default=20, help="first N folds of W")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--warm-epochs", type=int, default=2)
    parser.add_argument("--chunk-len", type=int, default=64)
    parser.add_argument("--chunks-per-batch", type=int, default=2)
    parser.add_argument("--seq-lr", type=float, default=0.0, help="learning rate for sequence modes (0 = W's 1e-3)")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="validation tail for early stopping (0 = W: fixed epochs, no validation)")
    parser.add_argument("--refit", action="store_true",
                        help="train.refit: after early stopping, retrain on fit + validation (needs --val-fraction)")
    parser.add_argument("--family", default="lstm",
                        help="comma-separated network families (lstm, gru, transformer, tcn), each run in every mode")
    parser.add_argument("--warmup-steps", type=int, default=0, help="train.warmup_steps (0 = no warm-up)")
    parser.add_argument("--lr-scaling", default="none", choices=("none", "linear"), help="train.lr_scaling")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = the cores available)")
    parser.add_argument("--profile", action="store_true", help="profile 2 folds of window and the fastest mode")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--worker", choices=tuple(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--profile-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def print_summary(rows: list[dict]) -> None:
    """One JSON line per mode: medians of the speed figures, mean/min/max of the quality ones."""
    data = rows[0]["data"]
    for mode, entry in summarize(rows).items():
        line = {"summary": True, "data": data, "mode": mode, **entry}
        print(json.dumps({k: _rounded(v) for k, v in line.items()}), flush=True)


def _rounded(value):
    if isinstance(value, float):
        return None if np.isnan(value) else round(value, 4)
    if isinstance(value, tuple):
        return {"mean": _rounded(value[0]), "min": _rounded(value[1]), "max": _rounded(value[2])}
    return value


def print_ratios(rows: list[dict]) -> None:
    summary = summarize(rows)
    fastest = min((m for m in summary if m != "darts"), key=lambda m: summary[m]["wall_s"], default=None)
    if fastest is None:
        return
    data = rows[0]["data"]
    for other in ("darts", "window"):
        if other in summary and other != fastest:
            ratio = summary[other]["wall_s"] / summary[fastest]["wall_s"]
            print(f"[{data}] {fastest} {summary[fastest]['wall_s']:.1f} s vs {other} {summary[other]['wall_s']:.1f} s: "
                  f"{ratio:.1f}x faster", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_w(args)))
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    datasets = [d.strip() for d in args.data.split(",") if d.strip()]
    families = [f.strip() for f in args.family.split(",") if f.strip()]
    bad = ([m for m in modes if m not in MODES] + [d for d in datasets if d not in ("sp500", "planted")]
           + [f for f in families if f not in ("lstm", "gru", "transformer", "tcn")])
    if bad:
        raise SystemExit(f"unknown mode, data or family {bad}; modes: {', '.join(MODES)}; data: sp500, planted; "
                         "families: lstm, gru, transformer, tcn")
    rows: list[dict] = []
    for data in datasets:
        run_args = argparse.Namespace(**{**vars(args), "data": data})
        part = []
        for family in families:
            for mode in modes:
                for seed in range(args.seeds):
                    part.append(run_worker(run_args, mode, seed, family=family))
                    print(json.dumps(part[-1]), flush=True)
        if not args.no_darts and data == "sp500":  # the speed ratio needs one darts dataset
            for seed in range(args.darts_seeds):
                part.append(run_darts(run_args, seed))
                print(json.dumps(part[-1]), flush=True)
        rows += part
        print_ratios(part)
    profiles = {}
    if args.profile:
        short = argparse.Namespace(**{**vars(args), "folds": min(args.folds, 2), "data": datasets[0]})
        for mode in dict.fromkeys(["window", FASTEST]):
            profiles[f"{mode}, {short.folds} folds"] = run_worker(short, mode, 0, profile=True)["profile"]
    text = write_results(args.out, args, rows, profiles)
    for data in dict.fromkeys(r["data"] for r in rows):
        print_summary([r for r in rows if r["data"] == data])
        print_ratios([r for r in rows if r["data"] == data])
    shown = args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out
    print(f"wrote {shown} ({len(text.splitlines())} lines)")


if __name__ == "__main__":
    main()
