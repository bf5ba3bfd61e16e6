"""docs/readme_figures.py: README.md's run figures are what the script renders from saved runs, in
its marked regions, and nothing else of README.md changes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def figures():
    """The script, imported from its file (docs/ is no package)."""
    spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "docs" / "readme_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pair(**changes) -> dict:
    pair = {"a": "lstm_regression", "b": "lstm_classification", "sharpe_diff": -0.3554642757262004,
            "sharpe_diff_ci_low": -0.8661742884734548, "sharpe_diff_ci_high": 0.09404400499769762,
            "mcnemar_pvalue": 0.0041551256184934665, "agreement": 0.29138795986622074,
            "hit_rate_a": 0.48954849498327757, "hit_rate_b": 0.5392976588628763, "up_share_a": 0.2763377926421405,
            "up_share_b": 0.9113712374581939}
    return {**pair, **changes}


def _save_run(folder: Path, sharpe: float, refit_epochs: int, pair: dict | None = None) -> Path:
    """A run directory with the files the script reads, figures chosen here."""
    folder.mkdir(parents=True)
    metrics = {"lstm_regression": {"hit_rate": 0.4896, "sharpe": sharpe, "total_return": 0.4242},
               "lstm_classification": {"hit_rate": 0.5393, "sharpe": 0.7416, "log_loss": 0.690912},
               "buy_and_hold": {"hit_rate": 0.5460, "sharpe": 0.773}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "comparisons.json").write_text(json.dumps({"pairs": [pair or _pair()]}))
    folds = [{"model": m, "fold": k, "refit_epochs": refit_epochs if k == 0 else 0}
             for m in ("lstm_regression", "lstm_classification") for k in range(3)]
    pd.DataFrame(folds).to_parquet(folder / "folds.parquet")
    return folder


def _save_predict(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "predict.txt").write_text("last bar used: 2018-12-31 (close 2506.85), sample:sp500\n  lstm_regression up\n")
    data = {"actions": [{"strategy": "lstm_regression", "order": "HOLD"}, {"strategy": "x"}],
            "agreement": {"up": ["lstm_regression"], "disagree": False},
            "skill": {"run": {"id": "quick-spx"}, "models": [{"model": "lstm_regression", "sharpe": -0.38}, {}],
                      "any_skill": False, "lines": ["..."]}}
    (folder / "predict.json").write_text(json.dumps(data))
    return folder


@pytest.fixture
def sources(figures, tmp_path) -> dict:
    return {"default": figures.read_run(_save_run(tmp_path / "default", 0.3861, 0)),
            "refit": figures.read_run(_save_run(tmp_path / "refit", 0.3512, 7)),
            "predict": figures.read_predict(_save_predict(tmp_path / "predict"))}


def test_the_readme_has_one_region_per_renderer(figures):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    names = [m["name"] for m in figures.REGION.finditer(text)]
    assert sorted(names) == sorted(figures.RENDERERS)  # each once, none unknown


def test_what_the_script_renders_is_what_lands_in_the_regions(figures, sources):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rendered = figures.render_all(sources)
    assert set(rendered) == set(figures.RENDERERS)
    new, left = figures.rewrite(text, rendered)
    assert left == []
    bodies = figures.region_bodies(new)
    for name, body in rendered.items():
        assert bodies[name].rstrip(" ") == body, name
    blank = lambda t: figures.REGION.sub("", t)  # noqa: E731
    assert blank(new) == blank(text)  # outside the regions nothing changes
    assert figures.rewrite(new, rendered)[0] == new  # a second pass changes nothing


def test_the_figures_are_the_runs(figures, sources):
    sentence = " ".join(figures.head_to_head(sources["default"]).split())
    assert "cannot be told apart on Sharpe (-0.36 [-0.87, +0.09])" in sentence
    assert "disagree on 71% of days (McNemar p = 0.004)" in sentence and "calls up on 91% of days" in sentence
    assert "no higher than always calling up (54.6%)" in sentence and "market's drift" in sentence
    table = figures.refit_table(sources["default"], sources["refit"])
    assert "| default run, seed 0: lstm_regression hit rate / Sharpe / total return | 0.490 / 0.39 / 42.4% | " \
           "0.490 / 0.35 / 42.4% |" in table
    assert "0.539 / 0.74 / 0.69091" in table
    assert "7 epochs over lstm_regression's 3 folds and 7 epochs over lstm_classification's 3 folds" in " ".join(
        table.split())
    assert '"actions": [{"strategy": "lstm_regression", "order": "HOLD"}],' in figures.predict_json(sources["predict"])
    assert "  lstm_regression up\n```" in figures.predict_console(sources["predict"])


def test_the_words_follow_the_numbers(figures, tmp_path):
    apart = figures.read_run(_save_run(tmp_path / "a", 0.4, 0, _pair(sharpe_diff_ci_low=0.05, sharpe_diff=0.3)))
    sentence = " ".join(figures.head_to_head(apart).split())
    assert "differ on Sharpe (+0.30 [+0.05, +0.09])" in sentence and "cannot be told apart" not in sentence
    skilled = figures.read_run(_save_run(tmp_path / "b", 0.4, 0, _pair(hit_rate_b=0.58)))
    sentence = " ".join(figures.head_to_head(skilled).split())
    assert "market's drift" not in sentence and "hit rates 58.0% (classifier) and 49.0% (regression)" in sentence


def test_the_command_line_rewrites_a_readme_and_checks_it(figures, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- figures:head-to-head -->\n  old words\n  <!-- /figures -->\nafter\n")
    run = _save_run(tmp_path / "default", 0.3861, 0)
    args = ["--default", str(run), "--readme", str(readme)]
    assert figures.main([*args, "--check"]) == 1 and "old words" in readme.read_text()  # check writes nothing
    assert figures.main(args) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- figures:head-to-head -->\n  On the default run the two LSTMs")
    assert text.endswith("market's drift.\n  <!-- /figures -->\nafter\n") and "old words" not in text
    assert figures.main([*args, "--check"]) == 0
    readme.write_text("<!-- figures:nonesuch -->\nx\n<!-- /figures -->\n")
    with pytest.raises(ValueError, match="nonesuch"):
        figures.main(args)
