"""The ``lstmbt`` command line: help, tiny end-to-end runs, re-rendering, and every bad-input path.

End-to-end runs use a tiny model on a ~650-row CSV cut from the embedded sample, so each takes a
couple of seconds. Every case goes through the real entry point ``backtest.cli.main`` (in-process
through conftest's ``run_cli`` fixture, and once or twice as a subprocess): it is what turns an
``LstmbtError`` into one ``error: ...`` line on stderr and exit status 2. ``CliRunner`` invokes
``app`` itself, which lets the error propagate instead; one test shows the difference.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import lstmbt.backtest.cli.app as cli
from lstmbt.backtest.config import RunConfig, parse_overrides
from lstmbt.backtest.errors import ConfigError, DataError, LstmbtError
from lstmbt.backtest.rundir import RUN_FILES, load_run, save_run
from helpers import TINY, TINY_SETS, call_main

ROOT = Path(__file__).resolve().parents[1]
FIRST_DAY = "2016-06-01"  # ~650 rows: 4 folds of the tiny setup below


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory) -> Path:
    """Small CSV files cut from the embedded samples, good and bad."""
    from arch.data import nasdaq, sp500

    folder = tmp_path_factory.mktemp("csv")
    spx = sp500.load().loc[FIRST_DAY:]
    ndx = nasdaq.load().loc[FIRST_DAY:]
    spx.to_csv(folder / "wide.csv")
    spx.iloc[:200].to_csv(folder / "short.csv")
    long = pd.concat([_long(spx, "AAA"), _long(ndx, "BBB")]).sort_values(["date", "symbol"])
    long.to_csv(folder / "long.csv", index=False)

    text = spx.copy().astype({"Close": object})
    text.iloc[10, text.columns.get_loc("Close")] = "2,071.50"  # thousands separator
    text.to_csv(folder / "text_close.csv")
    spx.drop(columns=["Close"]).to_csv(folder / "no_close.csv")
    order = list(range(len(spx)))
    order[5], order[6] = 6, 5
    spx.iloc[order].to_csv(folder / "unsorted.csv")
    spx.iloc[[*range(6), 5, *range(6, len(spx))]].to_csv(folder / "duplicate.csv")
    _malformed(spx, folder)
    return folder


def _malformed(spx: pd.DataFrame, folder: Path) -> None:
    """More broken copies of the same prices, one defect each."""
    (folder / "empty.csv").write_text("")
    (folder / "header_only.csv").write_text("Date,Open,High,Low,Close,Volume\n")
    lines = spx.rename_axis("Date").to_csv().splitlines()
    lines[5] = "08/01/2016" + lines[5][10:]  # US-style date among ISO ones
    (folder / "mixed_dates.csv").write_text("\n".join(lines) + "\n")
    for name, value in (("zero_close", 0.0), ("negative_close", -5.0)):
        bad = spx.copy()
        bad.iloc[10, bad.columns.get_loc("Close")] = value
        bad.to_csv(folder / f"{name}.csv")
    spx.assign(Volume=np.nan).to_csv(folder / "nan_volume.csv")
    pd.concat([spx.iloc[:300], spx.iloc[-300:]]).to_csv(folder / "gap.csv")
    intraday = spx.copy()
    intraday.index = pd.date_range("2020-01-02 09:30", periods=len(spx), freq="1min", name="Date")
    intraday.to_csv(folder / "intraday.csv")
    spx.rename(columns={"Close": "종가"}).to_csv(folder / "euc_kr.csv", encoding="euc-kr")
    (folder / "bom.csv").write_text(spx.rename_axis("Date").to_csv(), encoding="utf-8-sig")


def _long(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """The seed's prices.csv shape: date, symbol, open, close, low, high, volume."""
    out = frame.reset_index().rename(columns=str.lower)[["date", "open", "close", "low", "high", "volume"]]
    out.insert(1, "symbol", symbol)
    return out


@pytest.fixture(scope="module")
def wide_run(csv_dir, tmp_path_factory) -> tuple[Path, list[str], str]:
    """One tiny ``lstmbt run`` on the wide CSV: (run dir, its stdout lines, the source)."""
    parent = tmp_path_factory.mktemp("runs")
    out = parent / "wide"
    source = f"csv:{csv_dir / 'wide.csv'}"
    code, stdout, err = call_main(["run", "--source", source, *TINY, "--out", str(out)])
    assert code == 0, err
    return out, stdout.strip().splitlines(), source




def assert_one_error_line(code: int, out: str, err: str, words: list[str]) -> str:
    assert code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: ") and len(line) > len("error: ") + 10
    assert "Traceback" not in err and "Traceback" not in out
    for word in words:
        assert word in line, (word, line)
    return line


def assert_run_files(run_dir: Path) -> None:
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES)
    assert all((run_dir / name).is_file() and (run_dir / name).stat().st_size > 0 for name in RUN_FILES)


def lstmbt_script() -> Path:
    script = Path(sys.executable).with_name("lstmbt")
    if not script.is_file():
        pytest.skip("the lstmbt console script is not installed next to this Python")
    return script


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["report", "--help"], ["data", "--help"],
                                  ["data", "show", "--help"]])
def test_help_works_everywhere(argv, run_cli):
    code, out, err = run_cli(argv)
    assert code == 0, out + err
    assert "Usage" in out


def test_run_help_lists_the_documented_options(run_cli):
    text = run_cli(["run", "--help"])[1]
    for option in ("--config", "--source", "--start", "--end", "--target", "--set", "--out", "--quick", "--symbol"):
        assert option in text, option


def test_no_arguments_shows_help(run_cli):
    _, out, err = run_cli([])
    assert "Usage" in out + err and "run" in out + err


_HELP_PROBE = """
import sys
sys.argv = ["lstmbt", *sys.argv[1:]]
from lstmbt.backtest.cli.app import main
try:
    main()
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "vectorbt", "shap", "lightgbm"))
print("HEAVY:", heavy)
"""


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["report", "--help"], ["data", "--help"],
                                  ["importance", "--help"]])
def test_help_imports_neither_torch_nor_vectorbt_nor_shap(argv):
    proc = subprocess.run([sys.executable, "-c", _HELP_PROBE, *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY: []"


def test_python_dash_m_lstmbt_help(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lstmbt", "--help"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout and "run" in proc.stdout and "report" in proc.stdout


def test_only_lstmbt_enters_the_import_namespace(tmp_path):
    """Installed, the folders are lstmbt's subpackages: a user's own ``models`` is never shadowed."""
    code = ("import importlib.util as u, lstmbt.models.features, lstmbt.backtest.pipeline; "
            "print([n for n in ('backtest', 'models', 'strategies', 'reports') if u.find_spec(n)])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------- end to end


def test_run_prints_the_report_path_last(wide_run):
    out, lines, _ = wide_run
    assert lines[-1] == f"report: {(out / 'report.html').resolve()}"
    assert Path(lines[-1].removeprefix("report: ")).is_absolute()


def test_run_directory_holds_exactly_the_run_files(wide_run):
    out, _, _ = wide_run
    assert_run_files(out)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp dir left beside it


def test_run_predictions_and_metrics(wide_run):
    out, _, _ = wide_run
    preds = pd.read_parquet(out / "predictions.parquet")
    assert {"date", "target", "fold", "y_true", "y_pred", "p_up"} <= set(preds.columns)
    assert set(preds["target"]) == {"regression", "classification"}
    assert preds.groupby("target")["fold"].nunique().min() >= 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"buy_and_hold", "lstm_regression", "lstm_classification"} <= set(metrics)
    for name, entry in metrics.items():
        for key in ("total_return", "sharpe", "max_drawdown", "hit_rate", "n_trades"):
            assert key in entry, (name, key)
    returns = pd.read_parquet(out / "returns.parquet")
    assert "buy_and_hold" in returns.columns


def test_run_writes_the_fully_resolved_config(wide_run):
    out, _, source = wide_run
    expected = RunConfig.resolve(flags={"data.source": source}, overrides=parse_overrides(TINY_SETS))
    written = RunConfig.from_dict(tomllib.loads((out / "config.toml").read_text()))
    assert written == expected
    raw = tomllib.loads((out / "config.toml").read_text())
    assert set(raw) == {"data", "features", "target", "split", "model", "train", "strategy", "backtest", "portfolio"}
    assert raw["train"]["max_epochs"] == 1 and raw["backtest"]["fee_rate"] == 0.001  # defaults written out too


def test_run_manifest_records_data_provenance(wide_run):
    out, _, source = wide_run
    manifest = json.loads((out / "manifest.json").read_text())
    data = manifest["data"]
    assert data["source"] == source and data["first_date"] == "2016-06-01" and data["last_date"] == "2018-12-31"
    assert data["rows"] == 651 and len(data["sha256"]) == 64
    assert manifest["seed"] == 0 and manifest["out_of_sample"]["folds"] >= 2


def test_run_on_a_long_csv_with_a_symbol_and_the_default_out(csv_dir, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    source = f"csv:{csv_dir / 'long.csv'}"
    code, out, err = run_cli(["run", "--source", source, "--symbol", "BBB", "--target", "classification", *TINY])
    assert code == 0, err
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("csv-")
    run_dir = runs[0]
    assert out.strip().splitlines()[-1] == f"report: {(run_dir / 'report.html').resolve()}"
    assert_run_files(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data"]["symbol"] == "BBB" and manifest["data"]["rows"] == 651
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"lstm_classification", "logistic_classification", "majority", "buy_and_hold"}
    cfg = RunConfig.from_dict(tomllib.loads((run_dir / "config.toml").read_text()))
    assert cfg.data.symbol == "BBB" and cfg.target.task == "classification"
    # the BBB series is the nasdaq sample, not the sp500 rows of the same file
    from arch.data import nasdaq

    preds = pd.read_parquet(run_dir / "predictions.parquet")
    closes = nasdaq.load()["Close"].reindex(pd.DatetimeIndex(preds["date"]))
    assert preds["close"].to_numpy() == pytest.approx(closes.to_numpy())


def test_report_rerenders_a_saved_run(wide_run, tmp_path, run_cli):
    run_dir = tmp_path / "copy"
    shutil.copytree(wide_run[0], run_dir)
    (run_dir / "report.html").write_text("stale")
    code, out, err = run_cli(["report", str(run_dir)])
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"report: {(run_dir / 'report.html').resolve()}"
    html = (run_dir / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and 'id="metrics-table"' in html
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES)  # no temp file left


def test_report_to_another_file(wide_run, tmp_path, run_cli):
    target = tmp_path / "elsewhere.html"
    code, _, err = run_cli(["report", str(wide_run[0]), "--out", str(target)])
    assert code == 0, err
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["elsewhere.html"]


def test_data_show_prints_range_and_rows(run_cli):
    code, text, err = run_cli(["data", "show", "--source", "sample:sp500"])
    assert code == 0, err
    assert "first_date: 1999-01-04" in text and "last_date: 2018-12-31" in text and "rows: 5031" in text
    assert "sha256:" in text and "Close" in text


def test_data_show_on_a_long_csv_with_dates(csv_dir, run_cli):
    code, out, err = run_cli(["data", "show", "--source", f"csv:{csv_dir / 'long.csv'}", "--symbol", "AAA",
                              "--start", "2017-01-01", "--end", "2017-12-31"])
    assert code == 0, err
    assert "first_date: 2017-01-03" in out and "last_date: 2017-12-29" in out
    assert "symbol: AAA" in out


# --------------------------------------------------------------------------- error paths


def test_cli_runner_lets_the_error_propagate_but_main_converts_it(tmp_path, run_cli):
    """``app`` raises LstmbtError (CliRunner records it, exit code 1); ``main`` prints it, exit 2."""
    argv = ["run", "--set", "model.hiden_size=4", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli.app, argv)
    assert isinstance(result.exception, ConfigError) and result.exit_code == 1
    code, out, err = run_cli(argv)
    assert_one_error_line(code, out, err, ["model.hiden_size"])


def _config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    return path


def _sweep_args(tmp_path: Path, text: str) -> list[str]:
    """argv of ``lstmbt sweep`` on a sweep file holding ``text``."""
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return ["sweep", "--config", str(path)]


_GRID = '[params]\n"strategy.threshold" = [0.0, 0.001]\n'  # a valid [params] for the sweep cases below


# (argv builder, words the one error line must hold); argv gets --out PARENT/out appended, and
# "run" prepended unless it starts with "sweep"
ERROR_CASES = {
    "set_unknown_key": (lambda d, t: ["--set", "model.hiden_size=4"],
                        ["unknown config key 'model.hiden_size'", "did you mean 'model.hidden_size'"]),
    "set_unknown_section": (lambda d, t: ["--set", "modle.hidden_size=4"], ["did you mean 'model'"]),
    "set_wrong_type": (lambda d, t: ["--set", "model.hidden_size=big"], ["model.hidden_size must be an integer"]),
    "set_bool_for_int": (lambda d, t: ["--set", "train.max_epochs=true"], ["train.max_epochs must be an integer"]),
    "set_out_of_range": (lambda d, t: ["--set", "split.val_fraction=0.9"], ["split.val_fraction", "out of range"]),
    "set_malformed": (lambda d, t: ["--set", "model.hidden_size"], ["is not key=value"]),
    "config_unknown_key": (lambda d, t: ["--config", str(_config_file(t, "[train]\nmax_epoch = 1\n"))],
                           ["unknown config key 'train.max_epoch'", "did you mean 'train.max_epochs'"]),
    "config_bad_toml": (lambda d, t: ["--config", str(_config_file(t, "[train\nmax_epochs = 1\n"))],
                        ["is not valid TOML"]),
    "config_missing": (lambda d, t: ["--config", str(t / "missing.toml")], ["missing.toml does not exist"]),
    "bad_target": (lambda d, t: ["--target", "clasification"], ["did you mean 'classification'"]),
    "pooled_one_ticker": (lambda d, t: ["--set", "model.pooled=true"], ["model.pooled = true", "names one"]),
    "csv_text_close": (lambda d, t: ["--source", f"csv:{d / 'text_close.csv'}", *TINY],
                       ["column Close is not numeric", "'2,071.50'", "2016-06-15"]),
    "csv_no_close": (lambda d, t: ["--source", f"csv:{d / 'no_close.csv'}", *TINY], ["missing column(s) Close"]),
    "csv_unsorted": (lambda d, t: ["--source", f"csv:{d / 'unsorted.csv'}", *TINY], ["not in ascending order"]),
    "csv_duplicate": (lambda d, t: ["--source", f"csv:{d / 'duplicate.csv'}", *TINY], ["duplicate date"]),
    "csv_missing_file": (lambda d, t: ["--source", f"csv:{t / 'nope.csv'}", *TINY], ["file not found"]),
    "too_short": (lambda d, t: ["--source", f"csv:{d / 'short.csv'}"],
                  ["has 200 rows", "needs at least", "min_train"]),
    "start_after_end": (lambda d, t: ["--source", f"csv:{d / 'wide.csv'}", "--start", "2018-01-01",
                                      "--end", "2017-01-01"], ["is after", "swap"]),
    "bad_start_date": (lambda d, t: ["--start", "2018-02-30"], ["data.start", "not a date", "YYYY-MM-DD"]),
    "range_without_rows": (lambda d, t: ["--source", f"csv:{d / 'wide.csv'}", "--start", "2030-01-01", *TINY],
                           ["no rows between 2030-01-01", "2016-06-01 to 2018-12-31"]),
    "unknown_scheme": (lambda d, t: ["--source", "ftp:prices.csv"], ["data.source scheme", "'ftp'", "csv"]),
    "no_scheme": (lambda d, t: ["--source", "prices.csv"], ["no scheme", "csv:PATH"]),
    "unknown_sample": (lambda d, t: ["--source", "sample:dow"], ["unknown sample 'dow'", "sample:sp500"]),
    "long_unknown_symbol": (lambda d, t: ["--source", f"csv:{d / 'long.csv'}", "--symbol", "CCC", *TINY],
                            ["no rows for symbol 'CCC'", "AAA, BBB"]),
    # without --symbol a long CSV is a universe of its 2 symbols (tests/test_universe.py), refused here for top_k
    "long_without_symbol_top_k_over_universe": (
        lambda d, t: ["--source", f"csv:{d / 'long.csv'}", *TINY, "--set", "portfolio.top_k=3"],
        ["portfolio.top_k = 3", "larger than the universe (2 tickers)"]),
    "symbol_on_wide_csv": (lambda d, t: ["--source", f"csv:{d / 'wide.csv'}", "--symbol", "AAA", *TINY],
                           ["no symbol column"]),
    "csv_empty": (lambda d, t: ["--source", f"csv:{d / 'empty.csv'}"], ["is empty", "header row"]),
    "csv_header_only": (lambda d, t: ["--source", f"csv:{d / 'header_only.csv'}"], ["holds no rows"]),
    "csv_mixed_date_formats": (lambda d, t: ["--source", f"csv:{d / 'mixed_dates.csv'}"],
                               ["dates mix formats", "'08/01/2016'", "YYYY-MM-DD"]),
    "csv_zero_price": (lambda d, t: ["--source", f"csv:{d / 'zero_close.csv'}"], ["non-positive", "first 0 on"]),
    "csv_negative_price": (lambda d, t: ["--source", f"csv:{d / 'negative_close.csv'}"], ["first -5 on"]),
    "csv_all_nan_volume": (lambda d, t: ["--source", f"csv:{d / 'nan_volume.csv'}"], ["Volume has", "missing"]),
    "csv_gap_of_years": (lambda d, t: ["--source", f"csv:{d / 'gap.csv'}"], ["a gap of", "days between", "--start"]),
    "csv_intraday": (lambda d, t: ["--source", f"csv:{d / 'intraday.csv'}"], ["intraday timestamps", "daily bars"]),
    "csv_euc_kr": (lambda d, t: ["--source", f"csv:{d / 'euc_kr.csv'}"], ["is not UTF-8", "iconv"]),
    "negative_fee": (lambda d, t: ["--set", "backtest.fee_rate=-0.001"], ["backtest.fee_rate", "out of range"]),
    "lookback_longer_than_data": (lambda d, t: ["--source", f"csv:{d / 'short.csv'}", "--set", "model.lookback=500",
                                                "--set", "split.min_train=20", "--set", "split.step=10"],
                                  ["has 200 rows", "lookback"]),
    "unknown_horizon_layout": (lambda d, t: ["--set", "target.horizons=[5, 10]"], ["set target.horizon = 5"]),
    "sweep_missing_file": (lambda d, t: ["sweep", "--config", str(t / "nope.toml")], ["nope.toml does not exist"]),
    "sweep_not_toml": (lambda d, t: _sweep_args(t, "[sweep\nsearch = 'grid'\n"), ["is not valid TOML"]),
    "sweep_unknown_sweep_key": (lambda d, t: _sweep_args(t, '[sweep]\nserach = "grid"\n' + _GRID),
                                ["unknown [sweep] key 'serach'", "did you mean 'search'"]),
    "sweep_unknown_param_key": (lambda d, t: _sweep_args(t, '[params]\n"model.lookbak" = [5, 6]\n'),
                                ["unknown config key 'model.lookbak'", "did you mean 'model.lookback'"]),
    "sweep_empty_values": (lambda d, t: _sweep_args(t, '[params]\n"strategy.threshold" = []\n'),
                           ["strategy.threshold is an empty list"]),
    "sweep_range_in_grid": (lambda d, t: _sweep_args(t, '[params]\n"backtest.fee_rate" = {low = 0.0, high = 0.002}\n'),
                            ["backtest.fee_rate is a range", 'search = "random"']),
    "sweep_random_without_n_trials": (lambda d, t: _sweep_args(t, '[sweep]\nsearch = "random"\n' + _GRID),
                                      ["needs n_trials"]),
    "sweep_wrong_type": (lambda d, t: _sweep_args(t, '[params]\n"model.lookback" = [20, "sixty"]\n'),
                         ["model.lookback must be an integer", "'sixty'"]),
    "sweep_unknown_search": (lambda d, t: _sweep_args(t, '[sweep]\nsearch = "grdi"\n' + _GRID),
                             ["search = 'grdi'", "did you mean 'grid'"]),
    "sweep_data_key": (lambda d, t: _sweep_args(t, '[params]\n"data.source" = ["sample:sp500", "sample:nasdaq"]\n'),
                       ["cannot be swept", "[sweep.set]"]),
    "sweep_bad_data": (lambda d, t: _sweep_args(t, f'[sweep.set]\n"data.source" = "csv:{d / "no_close.csv"}"\n'
                                                   + _GRID), ["missing column(s) Close"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_is_one_error_line_and_leaves_nothing(case, csv_dir, tmp_path, run_cli):
    build, words = ERROR_CASES[case]
    parent = tmp_path / "runs"
    parent.mkdir()
    args = build(csv_dir, tmp_path)
    argv = [*([] if args[0] == "sweep" else ["run"]), *args, "--out", str(parent / "out")]
    code, out, err = run_cli(argv)
    assert_one_error_line(code, out, err, words)
    assert list(parent.iterdir()) == []  # no run directory, no hidden temp dir


def test_existing_out_is_refused_and_left_alone(csv_dir, tmp_path, run_cli):
    out_dir = tmp_path / "runs" / "taken"
    out_dir.mkdir(parents=True)
    (out_dir / "sentinel.txt").write_text("keep me")
    argv = ["run", "--source", f"csv:{csv_dir / 'wide.csv'}", *TINY, "--out", str(out_dir)]
    code, out, err = run_cli(argv)
    assert_one_error_line(code, out, err, ["already exists", "--out"])
    assert [p.name for p in out_dir.iterdir()] == ["sentinel.txt"]
    assert (out_dir / "sentinel.txt").read_text() == "keep me"
    assert [p.name for p in out_dir.parent.iterdir()] == ["taken"]


def test_report_on_a_directory_that_is_not_a_run(tmp_path, run_cli):
    code, out, err = run_cli(["report", str(tmp_path)])
    assert_one_error_line(code, out, err, ["lacks", "config.toml", "lstmbt run"])
    code, out, err = run_cli(["report", str(tmp_path / "nope")])
    assert_one_error_line(code, out, err, ["does not exist"])
    assert list(tmp_path.iterdir()) == []


def test_data_show_bad_source_is_one_error_line(run_cli):
    code, out, err = run_cli(["data", "show", "--source", "sample:dow"])
    assert_one_error_line(code, out, err, ["unknown sample 'dow'"])


def test_subprocess_config_error(tmp_path):
    parent = tmp_path / "runs"
    parent.mkdir()
    proc = subprocess.run([sys.executable, "-m", "lstmbt", "run", "--set", "model.hiden_size=4",
                           "--out", str(parent / "out")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert_one_error_line(proc.returncode, proc.stdout, proc.stderr, ["did you mean 'model.hidden_size'"])
    assert list(parent.iterdir()) == []


def test_subprocess_data_error_through_the_console_script(csv_dir, tmp_path):
    parent = tmp_path / "runs"
    parent.mkdir()
    proc = subprocess.run([str(lstmbt_script()), "run", "--source", f"csv:{csv_dir / 'no_close.csv'}", *TINY,
                           "--out", str(parent / "out")], capture_output=True, text=True, cwd=tmp_path,
                          timeout=240)
    assert_one_error_line(proc.returncode, proc.stdout, proc.stderr, ["missing column(s) Close"])
    assert list(parent.iterdir()) == []


# --------------------------------------------------------------------------- failures while saving


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("exc", [_Boom("write failed"), KeyboardInterrupt()])
def test_a_failure_while_saving_leaves_nothing_behind(exc, wide_run, tmp_path, monkeypatch):
    import lstmbt.backtest.rundir as rundir

    result = load_run(wide_run[0])
    written = []
    real = rundir.write_parquet

    def explode_on_third(path, frame, index=False):
        written.append(path)
        if len(written) == 3:  # some files are already in the staged directory
            raise exc
        return real(path, frame, index=index)

    monkeypatch.setattr(rundir, "write_parquet", explode_on_third)
    target = tmp_path / "runs" / "doomed"
    with pytest.raises(type(exc)):
        save_run(result, target, pages={"report.html": "<html></html>"})
    assert len(written) == 3
    assert not target.exists()
    assert list(target.parent.glob(f".{target.name}.tmp-*")) == []
    assert list(target.parent.iterdir()) == []


def test_save_run_writes_the_run_files_and_refuses_to_overwrite(wide_run, tmp_path):
    result = load_run(wide_run[0])
    target = save_run(result, tmp_path / "again", pages={"report.html": "<html></html>"})
    assert_run_files(target)
    assert [p.name for p in tmp_path.iterdir()] == ["again"]
    before = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    with pytest.raises(ConfigError, match="already exists"):
        save_run(result, target)
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == before


def test_interrupting_a_run_writes_nothing(wide_run, csv_dir, tmp_path, monkeypatch, run_cli):
    """Ctrl-C during the final write: the CLI says so, exits 130, and no directory is left."""
    import lstmbt.backtest.pipeline as pipeline
    from lstmbt import reports

    def interrupt(_result):
        raise KeyboardInterrupt

    saved = load_run(wide_run[0])  # stands in for the walk-forward, which is tested above
    monkeypatch.setattr(pipeline, "run", lambda cfg, progress=None, **kwargs: saved)
    monkeypatch.setattr(reports, "render_report", interrupt)
    parent = tmp_path / "runs"
    parent.mkdir()
    argv = ["run", "--source", f"csv:{csv_dir / 'wide.csv'}", *TINY, "--out", str(parent / "out")]
    code, out, err = run_cli(argv)
    assert code == 130 and err.strip() == "interrupted: nothing was written"
    assert list(parent.iterdir()) == []


def test_errors_share_one_base_class():
    assert issubclass(ConfigError, LstmbtError) and issubclass(DataError, LstmbtError)


def test_a_utf8_bom_is_read_like_plain_utf8(csv_dir):
    from lstmbt.backtest.config import DataConfig
    from lstmbt.backtest.data import load_prices

    plain = load_prices(DataConfig(source=f"csv:{csv_dir / 'wide.csv'}"))
    bom = load_prices(DataConfig(source=f"csv:{csv_dir / 'bom.csv'}"))
    pd.testing.assert_frame_equal(plain, bom, check_freq=False)
