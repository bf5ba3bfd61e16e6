"""The run registry: lists, filters, sorts and shows saved runs, and follows the directories on disk."""

from __future__ import annotations

import json
import shutil

import pytest

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.pipeline import run

from lstmbt.backtest.campaign.registry import INDEX_NAME, config_digest, list_runs, show_run
from helpers import LINEAR_FLAGS, save_with_report


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    save_with_report(run(RunConfig().with_values(LINEAR_FLAGS)), root / "spx-both")
    nasdaq = {**LINEAR_FLAGS, "data.source": "sample:nasdaq", "target.task": "classification"}
    save_with_report(run(RunConfig().with_values(nasdaq)), root / "ndx-clf")
    (root / "not-a-run").mkdir()
    return root


def test_lists_every_model_of_every_run_with_its_saved_metrics(root):
    frame = list_runs(root)
    assert set(zip(frame["id"], frame["strategy"])) == {
        ("spx-both", "ridge_regression"), ("spx-both", "logistic_classification"), ("ndx-clf", "logistic_classification")}
    saved = json.loads((root / "ndx-clf" / "metrics.json").read_text())["logistic_classification"]
    row = frame[frame["id"] == "ndx-clf"].iloc[0]
    assert row["sharpe"] == saved["sharpe"] and row["hit_rate"] == saved["hit_rate"]
    bench = json.loads((root / "ndx-clf" / "metrics.json").read_text())["buy_and_hold"]["sharpe"]
    assert row["bh_sharpe"] == bench  # buy-and-hold's Sharpe on the same run's days, beside the model's
    assert (root / INDEX_NAME).is_file()


def test_filters_and_sorting(root):
    assert set(list_runs(root, source="nasdaq")["id"]) == {"ndx-clf"}
    assert set(list_runs(root, target="regression")["strategy"]) == {"ridge_regression"}
    assert list_runs(root, since="2999-01-01").empty
    by_sharpe = list_runs(root, sort="sharpe")["sharpe"].tolist()
    assert by_sharpe == sorted(by_sharpe, reverse=True)
    by_p = list_runs(root, sort="hit_rate_pvalue")["hit_rate_pvalue"].tolist()
    assert by_p == sorted(by_p)


def test_index_follows_the_directories_and_is_rebuilt_when_missing_or_damaged(root, tmp_path):
    copy = tmp_path / "runs"
    shutil.copytree(root, copy)
    assert list_runs(copy)["id"].nunique() == 2
    shutil.rmtree(copy / "ndx-clf")
    assert set(list_runs(copy)["id"]) == {"spx-both"}
    (copy / INDEX_NAME).write_bytes(b"not a database")
    assert set(list_runs(copy)["id"]) == {"spx-both"}
    (copy / INDEX_NAME).unlink()
    assert set(list_runs(copy)["id"]) == {"spx-both"}


def test_show_gives_the_full_metrics_table(root):
    info, table = show_run(root, "spx-both")
    assert info["source"] == "sample:sp500" and info["task"] == "both"
    saved = json.loads((root / "spx-both" / "metrics.json").read_text())
    assert set(table.columns) == set(saved)
    assert table.loc["sharpe", "buy_and_hold"] == saved["buy_and_hold"]["sharpe"]


def test_cli_list_show_and_bad_input(root, run_cli):
    code, stdout, stderr = run_cli(["runs", "list", "--root", str(root), "--sort", "sharpe"])
    assert code == 0, stdout + stderr
    assert "spx-both" in stdout and "ndx-clf" in stdout and "B&H Sharpe" in stdout
    code, stdout, stderr = run_cli(["runs", "show", "ndx-clf", "--root", str(root)])
    assert code == 0 and "sample:nasdaq" in stdout
    for argv, words in ((["runs", "show", "nope", "--root", str(root)], "no run 'nope'"),
                        (["runs", "list", "--root", str(root), "--sort", "shrape"], "cannot sort by 'shrape'"),
                        (["runs", "list", "--root", str(root / "missing")], "does not exist"),
                        (["runs", "list", "--root", str(root), "--since", "yesterday-ish"], "is not a date")):
        code, stdout, stderr = run_cli(argv)
        assert code == 2 and words in stderr and len(stderr.strip().splitlines()) == 1, (argv, stderr)


@pytest.mark.parametrize("columns", ["60", "100", "400"])
def test_show_never_cuts_a_strategy_name_on_a_narrow_terminal(root, run_cli, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    code, stdout, stderr = run_cli(["runs", "show", "spx-both", "--root", str(root)])
    assert code == 0, stderr
    saved = json.loads((root / "spx-both" / "metrics.json").read_text())
    for strategy in saved:  # every name whole, however narrow the terminal
        assert strategy in stdout, (columns, strategy)
    assert "\u2026" not in stdout  # rich's ellipsis: nothing was truncated
    assert max(map(len, stdout.splitlines())) <= int(columns)
    tables = stdout.count("metrics (")
    assert (tables > 1) if columns == "60" else True
    assert stdout.count("│ hit_rate_pvalue ") == max(tables, 1)  # each table lists every metric


def test_every_network_family_and_lightgbm_is_listed(root, tmp_path):
    copy = tmp_path / "runs"
    shutil.copytree(root / "ndx-clf", copy / "ndx-clf")
    path = copy / "ndx-clf" / "metrics.json"
    metrics = json.loads(path.read_text())
    entry = metrics.pop("logistic_classification")
    renamed = ("gru_classification", "tcn_classification", "transformer_classification", "lightgbm_classification")
    path.write_text(json.dumps({**metrics, **{name: entry for name in renamed}}))
    assert set(list_runs(copy)["strategy"]) == set(renamed)


@pytest.fixture(scope="module")
def tree(root, tmp_path_factory):
    """The module's two runs plus: a sweep holding one of them as a trial, a run two folders down,
    and a copy of a run made later (same config, same data: a duplicate)."""
    tree = tmp_path_factory.mktemp("tree")
    shutil.copytree(root / "spx-both", tree / "spx-both")
    (tree / "sweep-a" / "trials").mkdir(parents=True)
    (tree / "sweep-a" / "sweep.toml").write_text("[sweep]\n")
    shutil.copytree(root / "ndx-clf", tree / "sweep-a" / "trials" / "t000-abcd1234")
    shutil.copytree(root / "ndx-clf", tree / "old" / "2025" / "ndx-copy")
    later = tree / "spx-again"
    shutil.copytree(root / "spx-both", later)
    manifest = json.loads((later / "manifest.json").read_text())
    manifest["created"] = "2999-01-01T00:00:00+00:00"
    (later / "manifest.json").write_text(json.dumps(manifest))
    return tree


def test_recursive_listing_finds_sweep_trials_and_nested_runs_and_names_what_holds_them(tree):
    top = list_runs(tree)
    assert set(top["id"]) == {"spx-both", "spx-again"} and top.attrs["nested"] == 2
    every = list_runs(tree, recursive=True)
    assert set(every["id"]) == {"spx-both", "spx-again", "sweep-a/trials/t000-abcd1234", "old/2025/ndx-copy"}
    held = every.drop_duplicates("id").set_index("id")["part_of"]
    assert held["sweep-a/trials/t000-abcd1234"] == "sweep sweep-a"
    assert held[["spx-both", "old/2025/ndx-copy"]].isna().all()  # a plain folder is not a sweep
    info, table = show_run(tree, "sweep-a/trials/t000-abcd1234")
    assert info["part_of"] == "sweep sweep-a" and "logistic_classification" in table.columns


def test_runs_with_the_same_config_and_data_are_marked_duplicates_of_the_oldest(tree, root):
    every = list_runs(tree, recursive=True).drop_duplicates("id").set_index("id")["duplicate_of"]
    assert every["spx-again"] == "spx-both" and every["spx-both"] is None
    # the two copies of the nasdaq run share created times: the id breaks the tie, the same on every call
    assert {every["old/2025/ndx-copy"], every["sweep-a/trials/t000-abcd1234"]} == {None, "old/2025/ndx-copy"}
    info, _ = show_run(tree, "spx-both")
    assert info["duplicate_of"] is None and info["duplicates"] == ["spx-again"]
    # a different config is no duplicate, even on the same data
    assert list_runs(root).drop_duplicates("id")["duplicate_of"].isna().all()


def test_config_digest_ignores_what_changes_no_figure_and_fills_older_configs():
    base = RunConfig()
    assert config_digest(base) == config_digest(base.with_values({"data.refresh": True}))
    assert config_digest(base) != config_digest(base.with_values({"strategy.threshold": 0.01}))
    saved = base.to_dict()
    del saved["train"]["warmup_steps"]  # a config saved before the key existed ran with its default
    assert config_digest(saved) == config_digest(base)
    # one ticker's run has no portfolio: runs saved under the old top_k default still match new ones
    two = base.with_values({"portfolio.top_k": 2})
    assert config_digest(two) == config_digest(base) and config_digest(two, True) != config_digest(base, True)


def test_an_index_of_the_old_layout_is_rebuilt(tree, tmp_path):
    import contextlib
    import sqlite3

    copy = tmp_path / "runs"
    shutil.copytree(tree / "spx-both", copy / "spx-both")
    with contextlib.closing(sqlite3.connect(copy / INDEX_NAME)) as db:  # what the first lstmbt versions wrote
        db.executescript("CREATE TABLE runs (id TEXT PRIMARY KEY, path TEXT, stamp REAL, created TEXT, source TEXT,"
                         " symbol TEXT, task TEXT, regression TEXT, horizon INTEGER, first_date TEXT, last_date TEXT,"
                         " days INTEGER); CREATE TABLE metrics (run_id TEXT, strategy TEXT, metric TEXT, value REAL);")
    assert set(list_runs(copy)["id"]) == {"spx-both"}


def test_cli_recursive_list_and_duplicate_marks(tree, run_cli):
    code, stdout, stderr = run_cli(["runs", "list", "--root", str(tree)])
    assert code == 0, stderr
    assert "duplicate of spx-both (same config and data)" in stdout
    assert "2 more runs inside sweeps, universes or sub-folders: --recursive lists them" in stdout
    assert "t000-abcd1234" not in stdout
    code, stdout, stderr = run_cli(["runs", "list", "--root", str(tree), "--recursive"])
    assert code == 0, stderr
    assert "sweep-a/trials/t000-abcd1234" in stdout and "[in sweep sweep-a]" in stdout and "more runs" not in stdout
    code, stdout, stderr = run_cli(["runs", "show", "spx-both", "--root", str(tree)])
    assert code == 0 and "duplicated by spx-again" in stdout


def test_plug_in_models_are_listed_and_the_naive_baselines_are_not(root, tmp_path):
    copy = tmp_path / "runs"
    shutil.copytree(root / "spx-both", copy / "spx-both")
    path = copy / "spx-both" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["myplugin_classification"] = {**metrics["logistic_classification"], "sharpe": 1.25}
    path.write_text(json.dumps(metrics))
    frame = list_runs(copy).set_index("strategy")
    assert frame.loc["myplugin_classification", "sharpe"] == 1.25
    assert not {"buy_and_hold", "persistence", "majority"} & set(frame.index)


def test_latest_matching_run_is_the_newest_run_of_that_config_on_those_prices(tree, tmp_path):
    from lstmbt.backtest.campaign.registry import latest_matching_run
    from lstmbt.backtest.readback import read_config

    cfg = read_config(tree / "spx-both" / "config.toml")
    sha = json.loads((tree / "spx-both" / "manifest.json").read_text())["data"]["sha256"]
    info, table = latest_matching_run(tree, cfg, sha)
    assert info["id"] == "spx-again" and "ridge_regression" in table.columns  # the copy made later
    assert latest_matching_run(tree, cfg.with_values({"strategy.threshold": 0.5}), sha) is None
    assert latest_matching_run(tree, cfg, "0" * 64) is None
    assert latest_matching_run(tmp_path / "no-such-root", cfg, sha) is None


def test_a_universes_tickers_are_listed_as_part_of_it(root, tmp_path):
    uni = tmp_path / "runs" / "uni"
    shutil.copytree(root / "spx-both", uni)  # a run directory holding tickers/: a universe's layout
    shutil.copytree(root / "ndx-clf", uni / "tickers" / "nasdaq")
    held = list_runs(tmp_path / "runs", recursive=True).drop_duplicates("id").set_index("id")["part_of"]
    assert held["uni/tickers/nasdaq"] == "universe uni" and not isinstance(held["uni"], str)


def test_a_linked_run_is_listed_and_a_link_back_up_the_tree_is_no_loop(root, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "linked").symlink_to(root / "spx-both", target_is_directory=True)
    (runs / "sub").mkdir()
    (runs / "sub" / "up").symlink_to(runs, target_is_directory=True)  # a loop, were links followed blindly
    assert set(list_runs(runs, recursive=True)["id"]) == {"linked"}
