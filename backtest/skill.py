"""A model's walk-forward skill in one line: hit rate against the base rate with its p-value, and
Sharpe against buy-and-hold with the run's verdict (pure functions of ``metrics.json`` entries).

``predict`` reads them from the latest matching saved run, ``importance`` from its own
out-of-sample predictions scored here exactly as ``lstmbt run`` scores them
(``score_predictions``: the same positions, backtest with costs and ``collect_metrics``).
A model shows **evidence of skill** when a family-wise test says so, as the scorecard's verdicts
do: its hit rate beats the better constant guess with a p-value below ``SKILL_PVALUE`` after a
Bonferroni adjustment over the models tested together (``backtest.seeds.family_hit_pvalues``: the models with a
hit-rate p-value, so a p of 0.046 among 4 models is 0.184 and no skill), or its family-wise Sharpe
verdict is "beats buy-and-hold" (Bonferroni over the run's models). A bare p < 0.05 never is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.design import Design
from lstmbt.backtest.pipeline import simulate
from lstmbt.backtest.relative import VERDICT_WORDS, verdict
from lstmbt.backtest.scoring import BENCHMARK, model_plan
from lstmbt.backtest.seeds import SKILL_PVALUE, family_hit_pvalues
from lstmbt.models.key import insert_key_columns

@dataclass(frozen=True, kw_only=True)
class Skill:
    """One model's walk-forward skill, as fractions (0.492 = 49.2 %) and annualised Sharpe ratios.

    ``base_rate``: the better constant guess, max(share of up days, 1 - it), what the hit-rate
    p-value tests against (one-sided binomial). ``hit_rate_pvalue_adjusted``: that p-value
    adjusted over the ``n_tested`` models with one (Bonferroni, ``family_hit_pvalues``).
    ``verdict``: ``beats``, ``inconclusive``, ``worse`` or None (``backtest.relative.verdict``).
    ``skilled``: evidence of skill by either family-wise test (module docstring). NaN where the run
    has no value (a model that calls no direction).
    """

    model: str
    hit_rate: float
    base_rate: float
    hit_rate_pvalue: float
    hit_rate_pvalue_adjusted: float
    n_tested: int
    sharpe: float
    bh_sharpe: float
    verdict: str | None
    skilled: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN as None."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def model_skill(metrics: Mapping[str, Mapping[str, Any]], models: list[str]) -> list[Skill]:
    """The ``Skill`` of each of ``models`` found in ``metrics`` (``{strategy: {metric: value}}``),
    its hit-rate p-value adjusted over ``models`` (``family_hit_pvalues``)."""
    bench = metrics.get(BENCHMARK, {})
    adjusted = family_hit_pvalues(metrics, models)
    out = []
    for name in models:
        if name not in metrics:
            continue
        m = metrics[name]
        share = _number(m.get("base_rate", bench.get("hit_rate")))
        # the run index keeps numbers only: its verdict is re-read from the interval that made it
        called = m.get("verdict") or verdict(_number(m.get("verdict_ci_low")), _number(m.get("verdict_ci_high")))
        p_family = adjusted.get(name, math.nan)
        out.append(Skill(model=name, hit_rate=_number(m.get("hit_rate")),
                         base_rate=max(share, 1.0 - share) if math.isfinite(share) else math.nan,
                         hit_rate_pvalue=_number(m.get("hit_rate_pvalue")), hit_rate_pvalue_adjusted=p_family,
                         n_tested=len(adjusted), sharpe=_number(m.get("sharpe")),
                         bh_sharpe=_number(bench.get("sharpe")), verdict=called,
                         skilled=bool(p_family < SKILL_PVALUE) or called == "beats"))
    return out


def skill_line(s: Skill) -> str:
    """``ridge_regression: no evidence of skill - hit rate 52.1% vs base rate 50.6% (p 0.046, 0.184
    adjusted over 4 models), Sharpe 0.13 vs buy-and-hold 0.24 (inconclusive)``."""
    if math.isfinite(s.hit_rate):
        p = f"p {format_pvalue(s.hit_rate_pvalue)}" if math.isfinite(s.hit_rate_pvalue) else "no p-value"
        if math.isfinite(s.hit_rate_pvalue_adjusted) and s.n_tested > 1:
            p += f", {format_pvalue(s.hit_rate_pvalue_adjusted)} adjusted over {s.n_tested} models"
        hit = f"hit rate {s.hit_rate:.1%} vs base rate {s.base_rate:.1%} ({p})"
    else:
        hit = "no direction call"
    verdict = VERDICT_WORDS.get(s.verdict or "", "no verdict")
    head = "evidence of skill" if s.skilled else "no evidence of skill"
    return f"{s.model}: {head} - {hit}, Sharpe {_fmt(s.sharpe)} vs buy-and-hold {_fmt(s.bh_sharpe)} ({verdict})"


def score_predictions(design: Design, predictions: pd.DataFrame, config: RunConfig) -> dict[str, dict[str, Any]]:
    """``metrics.json`` of out-of-sample ``predictions`` (the run's long layout: date, key columns,
    fold, y_true, y_pred, p_up, close) on ``design``'s primary-horizon folds, computed as
    ``backtest.pipeline`` computes a run's: the same majority baseline, positions, backtest with
    costs and ``collect_metrics`` (``pipeline.simulate``). Equal to a run's figures when the predictions are a run's."""
    return simulate(design, predictions, config)["metrics"]


def oos_metrics(design: Design, oos: Mapping[str, pd.DataFrame], config: RunConfig) -> dict[str, dict[str, Any]]:
    """``score_predictions`` of per-model out-of-sample predictions ``{model: walk_forward_predict
    frame}`` (as ``backtest.importance`` collects them), put in the run's long layout first."""
    keys = {key.name: key for key in model_plan(config)}
    frames = []
    for name, preds in oos.items():
        frame = insert_key_columns(preds.reset_index(drop=True), keys[name], 1)
        frame["close"] = design.prices["Close"].reindex(frame["date"]).to_numpy()
        frames.append(frame)
    return score_predictions(design, pd.concat(frames, ignore_index=True), config)


def importance_skill(design: Design, oos: Mapping[str, pd.DataFrame], config: RunConfig) -> dict[str, Any]:
    """The skill header of ``lstmbt importance``: ``{"source", "models" (``Skill`` dicts), "lines"}``,
    from the command's own out-of-sample predictions ``oos`` scored as a run scores them."""
    metrics = oos_metrics(design, oos, config)
    skills = model_skill(metrics, list(oos))
    source = ("computed from this command's own walk-forward: the unaltered model of every fold predicting its "
              "test block, scored as `lstmbt run` scores a run (same folds, positions, costs and tests)")
    caveats = []
    if len(config.train.members) > 1:
        caveats.append(f"networks trained with the first seed of train.seeds ({config.train.run_seed}) only, where a "
                       f"run scores the mean of {len(config.train.members)} seeds")
    if len(config.target.all_horizons) > 1:
        caveats.append("the primary horizon's models only, so the verdicts' family-wise level covers fewer models "
                       "than a run's")
    if caveats:
        source += " (" + "; ".join(caveats) + ")"
    lines = [f"walk-forward skill, {source}:"] + [f"  {skill_line(s)}" for s in skills]
    lines.append(no_skill_statement(skills))
    return {"source": source, "models": [s.to_dict() for s in skills], "any_skill": any(s.skilled for s in skills),
            "lines": [line for line in lines if line]}


def no_skill_statement(skills: list[Skill]) -> str:
    """The sentence that keeps an importance ranking from being read as insight: which models'
    importances describe a model without demonstrated skill ("" when every model shows skill)."""
    without = [s.model for s in skills if not s.skilled]
    if not without:
        return ""
    if len(without) == len(skills):
        return ("No model shows evidence of skill: the importances below describe models without demonstrated "
                "skill (what they fit, which may be noise), not what drives returns.")
    return (f"The importances of {', '.join(without)} describe models without demonstrated skill (what they fit, "
            "which may be noise), not what drives returns.")


def format_pvalue(p: float) -> str:
    """A p-value as the report writes it: three decimals, ``<0.001`` below 0.001."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "n/a"


__all__ = ["Skill", "model_skill", "skill_line", "score_predictions", "oos_metrics",
           "importance_skill", "no_skill_statement", "SKILL_PVALUE"]
