"""Render a RunResult as one self-contained HTML file (Jinja2 + Plotly, plotly.js embedded once).

Reports only format what the run computed: numbers come from ``result.metrics``, the cost
table from ``result.costs`` (re-simulated at save time), trades and folds from their saved
frames, and curves from ``result.returns``/``result.predictions`` through ``backtest.metrics``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import tomli_w

from lstmbt.backtest import __version__
from lstmbt.backtest.regimes import MIN_DAYS as REGIME_MIN_DAYS, MIN_INVESTED_DAYS, REGIME_KINDS
from lstmbt.backtest.scoring import BENCHMARK
from lstmbt.models.key import keys_from_frame
from lstmbt.reports import scorecard, sections, seeds as seed_text, tables
from lstmbt.reports.cpcv import cpcv_block
from lstmbt.reports.embed import pack_figures, plotly_bundle
from lstmbt.reports.retraining import retraining_sentences
from lstmbt.reports.tables import format_metric

METRIC_HELP = {
    "total_return": "compounded net return over the out-of-sample period",
    "cagr": "compound annual growth rate (252 bars a year; 365 on a 7-day calendar, as the notes say)",
    "ann_volatility": "standard deviation of daily returns x sqrt(bars a year: 252, or 365 on a 7-day calendar)",
    "sharpe": "annualised mean / std of daily returns, risk-free rate 0",
    "sortino": "annualised mean / downside deviation",
    "max_drawdown": "worst fall from a running peak of equity",
    "calmar": "CAGR / |max drawdown|",
    "exposure": "mean |position|: the average share of capital in the market (a constant half position is 50%)",
    "time_invested": "share of days with a position of any size (a constant half position is 100%)",
    "turnover": "sum of |position changes| per year (1 = book traded once a year)",
    "hit_rate": "share of days whose predicted direction was the realised one; for buy-and-hold the share of up "
                "days (the base rate); persistence predicts no direction",
    "hit_rate_pvalue": "one-sided binomial p-value that the hit rate beats the better of always-up / always-down",
    "base_rate": "share of up moves at the model's horizon on its out-of-sample days: what always-up would hit",
    "hit_rate_ci_low": "lower end of the 95% Wilson interval of the hit rate",
    "hit_rate_ci_high": "upper end of the 95% Wilson interval of the hit rate",
    "pt_pvalue": "Pesaran-Timmermann one-sided p-value that the up/down calls carry information about the "
                 "realised direction (robust to the market's drift)",
    "dm_pvalue": "Diebold-Mariano one-sided p-value that the forecast's squared error is below persistence's "
                 "(Newey-West variance, HLN correction)",
    "dm_pvalue_abs": "Diebold-Mariano one-sided p-value for absolute error against persistence",
    "sharpe_ci_low": "lower end of the 95% stationary block bootstrap interval of the Sharpe ratio",
    "sharpe_ci_high": "upper end of that interval",
    "sharpe_diff_ci_low": "lower end of the 95% block bootstrap interval of Sharpe minus buy-and-hold's, this "
                          "strategy alone (not adjusted over the models); the verdict reads the family-wise "
                          "interval (verdict_ci_low) instead",
    "sharpe_diff_ci_high": "upper end of that interval",
    "psr": "probabilistic Sharpe ratio: probability that the true Sharpe is above 0, given skew and kurtosis",
    "verdict": "beats / inconclusive / worse: whether the family-wise interval of Sharpe minus buy-and-hold's lies "
               "above 0, straddles it, or lies below it; borderline (inconclusive, at the edge) when a bound lies "
               "within 5 Monte-Carlo standard errors of 0 after the most resamples",
    "verdict_ci_low": "lower end of Sharpe minus buy-and-hold's at the family-wise level (Bonferroni over the models: "
                      "all models' intervals hold together at 95%)",
    "verdict_ci_high": "upper end of that interval",
    "verdict_ci_low_mc_se": "Monte-Carlo standard error of verdict_ci_low: how far another bootstrap seed would move "
                            "it (the verdict needs the bound 5 of these from 0)",
    "verdict_ci_high_mc_se": "Monte-Carlo standard error of verdict_ci_high",
    "verdict_n_boot": "bootstrap resamples behind the verdict's interval: doubled from enough for 25 in each tail "
                      "until its side of 0 no longer depends on the seed, at most 32,000",
    "alpha": "annualised intercept (x bars a year) of daily net returns regressed on buy-and-hold's",
    "alpha_pvalue": "one-sided p-value that alpha is above 0 (Newey-West HAC standard error)",
    "beta": "slope of daily net returns on buy-and-hold's",
    "information_ratio": "annualised mean of returns minus buy-and-hold's, over its standard deviation",
    "beta_matched_bh_cagr": "CAGR of buy-and-hold scaled to the strategy's beta, the rest in cash: the same market "
                            "risk without timing (the strategy's CAGR above or below it is its alpha as a growth rate)",
    "n_trades": "round trips (an open position at the end counts)",
    "fees_paid": "fees as a fraction of initial capital",
    "slippage_paid": "value lost to slippage as a fraction of initial capital",
    "n_days": "out-of-sample decision days",
    "no_decision_days": "days the model could not decide on (no forecast, or under confidence sizing no trailing "
                        "volatility): held flat, and left out of its hit rate, base rate and hit-rate tests",
    "win_rate": "share of trades with a positive net return",
    "avg_holding_days": "mean trade length in trading days",
    "rmse": "root mean squared error of the regression target",
    "mae": "mean absolute error of the regression target",
    "mape": "mean absolute percentage error (price target)",
    "persistence_rmse": "RMSE of persistence: tomorrow's price = today's (return 0)",
    "persistence_mae": "MAE of persistence",
    "persistence_mape": "MAPE of persistence",
    "accuracy": "share of correct up/down calls at p_up > 0.5",
    "precision": "share of predicted up days that were up",
    "recall": "share of up days predicted up",
    "f1": "harmonic mean of precision and recall",
    "roc_auc": "probability a random up day gets a higher p_up than a random down day (0.5 = no skill)",
    "log_loss": "cross-entropy of p_up in nats (0.693 = coin flip)",
    "brier": "mean squared error of p_up (0.25 = coin flip)",
    "cpcv_sharpe_median": "median over the CPCV paths of the Sharpe ratio (see the CPCV section)",
    "cpcv_sharpe_p05": "5th percentile of the Sharpe ratio over the CPCV paths",
    "cpcv_sharpe_p95": "95th percentile of the Sharpe ratio over the CPCV paths",
    "cpcv_beats_bh_share": "share of the CPCV paths on which the Sharpe ratio is above buy-and-hold's on the same days",
}
SECTIONS = ("summary", "head-to-head", "regimes", "performance", "predictions", "folds", "cpcv", "costs", "trades",
            "details", "run")


def render_report(result: Any) -> str:
    """The HTML text of the report for ``result`` (a ``backtest.rundir.RunResult``)."""
    from lstmbt.reports.figures import report_figures  # loads plotly: only when called

    metrics = result.metrics
    strategies = list(metrics)
    models = tested_strategies(result)
    figures = report_figures(result)
    manifest = result.manifest or {}
    fold_columns, fold_rows = tables.frame_rows(result.folds, tables.FOLD_COLUMNS)
    trade_columns, trade_rows = tables.last_trades(result.trades) if len(result.trades) else ([], [])
    costed = len(result.costs) > 0
    cost_strategies, cost_returns = tables.cost_rows(result.costs, "total_return", models) if costed else ([], [])
    _, cost_sharpe = tables.cost_rows(result.costs, "sharpe", models) if costed else ([], [])
    comparisons = result.comparisons
    regimes = sections.regime_blocks(result.regimes, strategies, REGIME_KINDS)
    shown = shown_sections(result, bool(regimes))
    seeds = getattr(result, "seeds", None) or {}  # a seed ensemble's seeds.json (backtest.seeds)
    labels = seed_text.ensemble_labels(seeds)
    return _template().render(
        title=f"lstmbt report - {manifest.get('data', {}).get('source', result.config.data.source)}",
        version=__version__, sections=shown, strategies=strategies,
        rows=tables.metric_rows(metrics, strategies, METRIC_HELP, models),
        score_columns=scorecard.COLUMNS, score_rows=scorecard.scorecard_rows(metrics, models, labels),
        family_lines=scorecard.family_sentences(metrics, models, comparisons),
        retrain_lines=retraining_sentences(manifest.get("retraining", {})),
        **_seed_context(seeds, metrics),
        pair_lines=[scorecard.pair_sentence(p) for p in comparisons.get("pairs", [])],
        pairs=sections.pair_rows(comparisons.get("pairs", [])), pair_loss=comparisons.get("loss", ""),
        regimes=regimes, regime_lines=sections.regime_sentences(result.regimes), regime_min_days=REGIME_MIN_DAYS,
        regime_min_invested=MIN_INVESTED_DAYS, carry_text=carry_text(result.config.backtest),
        holding_text=holding_text(result.config.backtest),
        refit=result.config.train.refit,
        figure_ids=list(figures), plotly_gz=plotly_bundle(), figures_gz=pack_figures(figures),
        fold_columns=fold_columns, folds=fold_rows, cpcv=cpcv_block(getattr(result, "cpcv", {}), models, metrics),
        cost_strategies=cost_strategies, cost_returns=cost_returns, cost_sharpe=cost_sharpe,
        trade_summary=tables.trade_summary(metrics, strategies), trade_columns=trade_columns, trades=trade_rows,
        n_trades_total=len(result.trades),
        backtest=result.config.backtest, config_toml=_config_text(result), kind=manifest.get("kind", "run"),
        strategy_text=strategy_text(result),
        manifest=manifest, data=manifest.get("data", {}), warnings=manifest.get("warnings", []),
    )


def _seed_context(seeds: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The report's seed tables and sentences (``reports.seeds``); all empty without a seed ensemble."""
    return {"seed_columns": [header for _, header in seed_text.SPREAD_COLUMNS], "seed_rows": seed_text.seed_rows(seeds),
            "seed_lines": seed_text.stability_sentences(seeds, metrics), "seed_fold_rows": seed_text.fold_rows(seeds),
            "seed_tables": seed_text.seed_metric_tables(seeds, METRIC_HELP)}


def render_summary(result: Any) -> str:
    """The report's scorecard as a small self-contained HTML fragment (what Jupyter shows for a result):
    a caption with the source and out-of-sample period, the scorecard rows, the family-wise sentences
    and, for seed ensembles, how stable each verdict is over the seeds."""
    manifest, models = result.manifest or {}, tested_strategies(result)
    period = manifest.get("out_of_sample", {})
    costs = "returns as given" if manifest.get("kind") == "returns" else "net of costs"
    caption = (f"lstmbt - {manifest.get('data', {}).get('source', result.config.data.source)}: "
               f"{period.get('first_date', '')} to {period.get('last_date', '')} ({period.get('days', '')} days, "
               f"{costs})")
    seeds = getattr(result, "seeds", None) or {}
    return environment().get_template("summary.html.j2").render(
        caption=caption, score_columns=scorecard.COLUMNS,
        score_rows=scorecard.scorecard_rows(result.metrics, models, seed_text.ensemble_labels(seeds)),
        lines=scorecard.family_sentences(result.metrics, models, result.comparisons)
        + seed_text.stability_sentences(seeds, result.metrics))


def tested_strategies(result: Any) -> list[str]:
    """The strategies a report tests against buy-and-hold (its "models"): a run's models (its
    predictions' model keys), or every strategy of an ad-hoc backtest or tear sheet
    (``manifest["kind"]``) when it has a benchmark."""
    strategies = list(result.metrics)
    if (result.manifest or {}).get("kind", "run") == "run":
        keys = keys_from_frame(result.predictions)
        return [s for s in strategies if s in keys]
    return [s for s in strategies if s != BENCHMARK] if BENCHMARK in strategies else []


def shown_sections(result: Any, has_regimes: bool) -> list[str]:
    """The report's sections (``SECTIONS``) that have something to show: a result without
    predictions, folds, costs, trades, head-to-head pairs or regimes leaves those out."""
    present = {"head-to-head": bool(result.comparisons.get("pairs")), "regimes": has_regimes,
               "predictions": len(result.predictions) > 0, "folds": len(result.folds) > 0,
               "costs": len(result.costs) > 0, "trades": len(result.trades) > 0,
               "cpcv": bool(getattr(result, "cpcv", {}))}
    return [s for s in SECTIONS if present.get(s, True)]


def _config_text(result: Any) -> str:
    """The config the report shows: a run's whole config, an ad-hoc backtest's ``[backtest]`` costs,
    nothing for returns given as they are."""
    kind = (result.manifest or {}).get("kind", "run")
    if kind == "run":
        return result.config.to_toml()
    if kind == "backtest":
        return tomli_w.dumps({"backtest": result.config.to_dict()["backtest"]})
    return ""


def strategy_text(result: Any) -> str:
    """Which rule made a run's positions, when it is not the built-in sizing: the custom rule
    (``strategy.custom``, with the function the manifest recorded) and the volatility target."""
    manifest = result.manifest or {}
    if manifest.get("kind", "run") != "run":
        return ""
    s, parts = result.config.strategy, []
    if s.custom is not None:
        function = manifest.get("strategy", {}).get("function")
        named = f" ({function})" if function and function != s.custom else ""
        parts.append(f"positions by the custom rule {s.custom}{named} (strategy.custom), for every model and for the "
                     "persistence and majority baselines")
    if s.vol_target:
        parts.append(f"scaled to {100 * s.vol_target:.4g}% annual volatility over the trailing {s.vol_window} days, "
                     "never above a full position (strategy.vol_target); buy-and-hold is not scaled")
    text = "; ".join(parts)
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def carry_text(backtest: Any) -> str:
    """What idle cash earns and what shorts pay, in words (``backtest.cash_rate`` / ``borrow_rate``)."""
    cash, borrow = backtest.cash_rate, backtest.borrow_rate
    cash_part = (f"uninvested capital earns {100 * cash:.4g}% a year" if cash else
                 "uninvested capital earns nothing (backtest.cash_rate = 0)")
    borrow_part = (f"short positions pay {100 * borrow:.4g}% a year to borrow" if borrow else
                   "short positions pay no borrow fee (backtest.borrow_rate = 0)")
    return f"{cash_part}, and {borrow_part}."


def holding_text(backtest: Any) -> str:
    """How target positions are held between target changes, in words (``backtest.rebalance_band``)."""
    band = backtest.rebalance_band
    if band >= 1.0:
        return ("Positions drift with prices between target changes: no order restores a drifted position "
                "(backtest.rebalance_band = 1).")
    return (f"A held position that drifts more than {100 * band:.4g} percentage points of equity from its target "
            "is restored to it at the next fill, paying the same fee and slippage (backtest.rebalance_band).")


def run_pages(result: Any) -> dict[str, str]:
    """The pages of a run directory, rendered for ``backtest.rundir.save_run(result, out, pages=...)``."""
    return {"report.html": render_report(result)}


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    return environment().get_template("report.html.j2")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The Jinja2 environment of every lstmbt page: autoescaped, strict about missing names."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("lstmbt.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


__all__ = ["render_report", "render_summary", "format_metric", "run_pages", "tested_strategies", "shown_sections",
           "METRIC_HELP", "SECTIONS", "environment"]
