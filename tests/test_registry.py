"""The run registry: lists, filters, sorts and shows saved runs, and follows the directories on disk."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import DataWarning
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
    assert "duplicate of spx-both (same config, data and results)" in stdout
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


# --------------------------------------------------------------------------- malformed runs, names, twins


def _edit_metrics(run_dir, edit) -> None:
    """Rewrite ``run_dir``'s metrics.json as ``edit(metrics)`` returns it (text: written as is)."""
    path = run_dir / "metrics.json"
    value = edit(json.loads(path.read_text()))
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")


def _huge_number(metrics):
    metrics["ridge_regression"]["n_trades"] = 2**64
    return metrics


def _digits(metrics):  # 5,000 digits: more than Python reads back from JSON
    return json.dumps(metrics).replace('"n_trades": ', '"n_trades": ' + "9" * 5000 + ', "x": ', 1)


def _surrogate(metrics):  # a key JSON can spell but UTF-8 cannot hold
    return json.dumps(metrics).replace('"ridge_regression"', '"ridge\\ud800"', 1)


MALFORMED = {  # setup of the run "bad" -> the words of its one skipped line
    "integer-beyond-64-bits": (lambda bad: _edit_metrics(bad, _huge_number),
                               "metrics.json has a number too large to index (ridge_regression.n_trades = 1844"),
    "5000-digit-number": (lambda bad: _edit_metrics(bad, _digits),
                          "metrics.json is not a JSON file lstmbt wrote (Exceeds the limit (4300 digits)"),
    "key-not-utf8": (lambda bad: _edit_metrics(bad, _surrogate), "metrics.json has text that is not UTF-8 (ridge\\ud800)"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_one_malformed_run_is_skipped_with_a_line_and_the_rest_are_listed(case, root, tmp_path, run_cli):
    from test_error_paths import assert_nothing_lost, snapshot

    runs = tmp_path / "runs"
    shutil.copytree(root / "spx-both", runs / "good")
    shutil.copytree(root / "spx-both", runs / "bad")
    setup, words = MALFORMED[case]
    setup(runs / "bad")
    before = snapshot(runs)
    code, out, err = run_cli(["runs", "list", "--root", str(runs)])
    assert code == 0 and "Traceback" not in out + err, err
    line = err.strip()
    assert "\n" not in line and line.startswith(f"warning: skipped {runs / 'bad'}: {words}"), err
    assert line.endswith("; restore the file, or move the run directory out of the root"), err
    assert out.startswith("1 run under ") and "\ngood " in out and "\nbad " not in out
    code, out, err = run_cli(["runs", "show", "good", "--root", str(runs)])
    assert code == 0 and err == "" and "ridge_regression" in out  # its neighbour neither stops nor concerns it
    code, out, err = run_cli(["runs", "show", "bad", "--root", str(runs)])
    assert code == 2 and err.startswith(f"error: run 'bad' under {runs} cannot be shown: {words}"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == ""
    assert_nothing_lost(before, snapshot(runs), {runs / INDEX_NAME})


def test_a_folder_name_that_is_not_utf8_is_skipped_and_shown_escaped(root, tmp_path, run_cli):
    runs = tmp_path / "runs"
    shutil.copytree(root / "spx-both", runs / "good")
    shutil.copytree(root / "spx-both", os.fsdecode(os.fsencode(runs) + b"/bad\xff"))
    code, out, err = run_cli(["runs", "list", "--root", str(runs)])
    assert code == 0 and "Traceback" not in err, err
    assert err.strip() == (f"warning: skipped {runs}/bad\\xff: bad\\xff is a folder name that is not UTF-8 text; "
                           "restore the file, or move the run directory out of the root")
    assert out.startswith("1 run under ") and "\ngood " in out


def test_rich_markup_in_a_name_is_shown_as_it_is(root, tmp_path, run_cli):
    runs = tmp_path / "runs"
    shutil.copytree(root / "spx-both", runs / "[bold]run[red]")
    _edit_metrics(runs / "[bold]run[red]", lambda m: {**m, "[/]model": m["ridge_regression"]})
    for argv in (["runs", "list", "--root", str(runs)], ["runs", "show", "[bold]run[red]", "--root", str(runs)]):
        code, out, err = run_cli(argv)
        assert code == 0 and err == "", err
        assert "[bold]run[red]" in out and "[/]model" in out, out


#: a window title, a clear screen, a bell, a carriage return, a C1 control and a right-to-left override
HOSTILE = "t\x1b]0;owned\x07\x1b[2J\r\x9b\u202eexe"
SHOWN = "t\\x1b]0;owned\\x07\\x1b[2J\\x0d\\x9b\\u202eexe"


def test_escape_sequences_in_names_never_reach_the_terminal(root, tmp_path, run_cli):
    runs = tmp_path / "runs"
    shutil.copytree(root / "spx-both", runs / HOSTILE)
    _edit_metrics(runs / HOSTILE, lambda m: {**m, f"m{HOSTILE}": m["ridge_regression"]})
    for argv in (["runs", "list", "--root", str(runs)], ["runs", "show", HOSTILE, "--root", str(runs)],
                 ["runs", "show", f"no{HOSTILE}", "--root", str(runs)]):
        code, out, err = run_cli(argv)
        assert code == (2 if argv[2].startswith("no") else 0) and "Traceback" not in err, err
        assert not any(c in out + err for c in "\x1b\x07\r\x9b\u202e"), (out + err).encode()
        assert SHOWN in out + err, out + err  # every character there, each control as a visible escape


def test_the_same_config_and_data_with_other_results_is_a_warning_not_a_duplicate(root, tmp_path, run_cli):
    runs = tmp_path / "runs"
    shutil.copytree(root / "spx-both", runs / "first")
    shutil.copytree(root / "spx-both", runs / "same")  # equal results: a duplicate
    shutil.copytree(root / "spx-both", runs / "other")  # a plug-in's other draw: -41.6% instead
    _edit_metrics(runs / "other", lambda m: {**m, "ridge_regression": {**m["ridge_regression"], "total_return": -0.416}})
    for name, created in (("same", "2998-01-01"), ("other", "2999-01-01")):
        manifest = json.loads((runs / name / "manifest.json").read_text())
        (runs / name / "manifest.json").write_text(json.dumps({**manifest, "created": f"{created}T00:00:00+00:00"}))
    marks = list_runs(runs).drop_duplicates("id").set_index("id")[["duplicate_of", "differs_from"]]
    assert marks.loc["same"].tolist() == ["first", "other"] and marks.loc["other"].tolist() == [None, "first"]
    code, out, err = run_cli(["runs", "list", "--root", str(runs)])
    assert code == 0 and err.strip() == (
        "warning: runs first, same and other have the same config and data but different results: the run is not "
        "deterministic (a plug-in, a GPU or another machine?); compare their figures before trusting either")
    header = next(line for line in out.splitlines() if line.startswith("other "))
    assert "duplicate" not in header and "[same config and data as first, different results: see the warning]" in header
    assert "[duplicate of first (same config, data and results)]" in out
    code, out, err = run_cli(["runs", "show", "other", "--root", str(runs)])
    assert code == 0 and "different results" in err and "duplicate" not in out
    assert " same config: first has different results: see the warning" in out


def test_twins_made_with_other_versions_blame_the_versions_not_the_run(root, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(root / "spx-both", runs / "old")
    shutil.copytree(root / "spx-both", runs / "new")
    _edit_metrics(runs / "new", lambda m: {**m, "buy_and_hold": {**m["buy_and_hold"], "sharpe": 0.1}})
    manifest = json.loads((runs / "new" / "manifest.json").read_text())
    manifest.update(created="2999-01-01T00:00:00+00:00", packages={**manifest["packages"], "torch": "9.9.9"})
    (runs / "new" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(DataWarning, match=r"^runs old and new have the same config and data but different results: they "
                                         r"were computed with other versions or devices \(torch \S+ vs 9\.9\.9\)"):
        list_runs(runs)


def test_an_index_of_the_previous_layout_is_rebuilt_with_the_results_digest(root, tmp_path):
    import contextlib
    import sqlite3

    from lstmbt.backtest.campaign.index_file import APPLICATION_ID, SCHEMA_VERSION

    runs = tmp_path / "runs"
    shutil.copytree(root / "spx-both", runs / "spx-both")
    with contextlib.closing(sqlite3.connect(runs / INDEX_NAME)) as db:  # layout 2: no results digest
        db.executescript(f"PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 2; CREATE TABLE runs "
                         "(id TEXT PRIMARY KEY, path TEXT, stamp REAL, created TEXT, source TEXT, symbol TEXT, task "
                         "TEXT, regression TEXT, horizon INTEGER, first_date TEXT, last_date TEXT, days INTEGER, "
                         "part_of TEXT, config_digest TEXT, data_sha256 TEXT); CREATE TABLE metrics (run_id TEXT, "
                         "strategy TEXT, metric TEXT, value REAL);")
    assert set(list_runs(runs)["id"]) == {"spx-both"}
    with contextlib.closing(sqlite3.connect(runs / INDEX_NAME)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION > 2
        assert db.execute("SELECT results_digest FROM runs").fetchone()[0]
