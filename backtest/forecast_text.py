"""The words of ``lstmbt predict``: each model's forecast, whether they agree, what the configured
strategy does next, and what the walk-forward run of the same config said about skill.

Formatting only: the numbers come from ``backtest.forecast.forecast_next`` and, for skill, from a
saved run's ``metrics.json`` (``backtest.skill``), which the CLI finds and passes in.
"""

from __future__ import annotations

from typing import Any, Mapping

from lstmbt.backtest.forecast import DOWN, NO_CALL, UP, Action, Forecast, ModelForecast, agreement
from lstmbt.backtest.skill import Skill, model_skill, skill_line

#: how each ``backtest.execution`` fills the order decided at the last close
FILLS = {"next_open": "at the next open", "next_close": "at the next close"}


def format_forecast(forecast: Forecast, skill: dict[str, Any] | None = None) -> str:
    """The lines ``lstmbt predict`` prints; ``skill``: ``skill_summary``'s dict, or None to say nothing of skill."""
    f, h = forecast, forecast.horizon
    day = f.last_date.date().isoformat()
    when = "next trading day" if h == 1 else f"close {h} trading days"
    lines = [f"last bar used: {day} (close {_price(f.last_close)}), {f.source}",
             f"{when} after {day} (horizon {h} day{'s' if h > 1 else ''}), per model:"]
    width = max(len(m.model) for m in f.models)
    drawdown = f.regression is not None and f.regression.target == "max_drawdown"
    lines += [f"  {m.model:<{width}}  {_arrow(m.direction):<4}  {_value(m, h, drawdown)}" for m in f.models]
    lines.append(agreement_line(f.models))
    fill = FILLS.get(f.execution, f.execution)
    lines.append(f"strategy, decided at the close of {day} (position now: decided at the close of "
                 f"{f.current_date.date().isoformat()}), filled {fill}:")
    lines += [f"  {action_line(a, fill)}" for a in f.actions]
    if skill is not None:
        lines += skill["lines"]
    lines.append(fit_line(f) + "; a forecast is not evidence of skill - see the walk-forward report.")
    return "\n".join(lines)


def fit_line(f: Forecast) -> str:
    """When the fit ends: ``fitted on 1999-04-27..2015-01-09 (3961 samples; 5 epochs lstm_regression);
    2015-01-13..2018-12-28 (990 samples) only picked the epoch count, so the weights were fitted on
    no later sample``, or where ``train.refit`` refitted which models on the whole window."""
    epochs = ", ".join(f"{_count(m.epochs, 'epoch')} {m.model}" for m in f.models if m.epochs)
    fit_end = (f.fit_end or f.train_end).date()
    text = f"fitted on {f.train_start.date()}..{fit_end} ({f.n_train} samples{'; ' + epochs if epochs else ''})"
    if f.val_start is None or f.val_end is None:
        return text + ", no validation tail"
    text += (f"; {f.val_start.date()}..{f.val_end.date()} ({f.n_val} samples) only picked the epoch count "
             "(early stopping)")
    if not f.refitted:
        return text + ", so the weights were fitted on no later sample"
    names = "every model" if len(f.refitted) == sum(m.family != "naive" for m in f.models) else ", ".join(f.refitted)
    rest = "" if names == "every model" else f"; the others' weights end at {fit_end}"
    return (text + f", then {names} refitted on {f.train_start.date()}..{f.train_end.date()} for those epochs "
            f"(train.refit = true), so {'their' if rest else 'the'} weights end at {f.train_end.date()}{rest}")


def agreement_line(models: tuple[ModelForecast, ...]) -> str:
    """``models disagree: 3 up (...), 2 down (...)`` or ``models agree: all 4 up``; naive baselines
    are not counted; models without a call are named apart."""
    calls = agreement(models)
    counted = [(calls[d], d) for d in (UP, DOWN, NO_CALL) if calls[d]]
    parts = [f"{len(names)} {'no call' if d == NO_CALL else d} ({', '.join(names)})" for names, d in counted]
    if calls["disagree"]:
        return "models disagree: " + ", ".join(parts)
    n = len(calls[UP]) + len(calls[DOWN])
    if not n:
        return "models make no direction call"
    direction = UP if calls[UP] else DOWN
    rest = f"; {parts[-1]}" if calls[NO_CALL] else ""
    if n == 1:  # nothing to agree with
        return f"one model calls a direction: {direction} ({calls[direction][0]}){rest}"
    return f"models agree: all {n} {direction}{rest}"


def action_line(a: Action, fill: str) -> str:
    """``lstm_classification: target +1.00 (long) from +0.00 -> BUY 1.00 at the next open``."""
    step = "HOLD" if a.order == "HOLD" else f"{a.order} {a.size:.2f} {fill}"
    return f"{a.strategy}: target {a.target:+.2f} ({_side(a.target)}) from {a.current:+.2f} -> {step}"


def skill_summary(metrics: Mapping[str, Mapping[str, Any]] | None, run: Mapping[str, Any] | None,
                  models: list[str], root: str) -> dict[str, Any]:
    """What the latest matching walk-forward run (``run``: its index record with ``id``, ``path``,
    ``created``; ``metrics``: its ``{strategy: {metric: value}}``) says of ``models``' skill;
    ``root``: where runs were looked for. Returns ``{"run", "models", "any_skill", "lines"}``."""
    if run is None or metrics is None:
        line = (f"skill: no walk-forward run of this config and data in {root}/; run `lstmbt run` with the same "
                "options to test its skill")
        return {"run": None, "runs_root": root, "models": [], "any_skill": None, "lines": [line]}
    skills = model_skill(metrics, models)
    head = f"skill in walk-forward run {run.get('path', run.get('id'))} ({run.get('created', '?')}): "
    lines = [head + _verdict(skills)] + [f"  {skill_line(s)}" for s in skills]
    return {"run": {k: run.get(k) for k in ("id", "path", "created")}, "runs_root": root,
            "models": [s.to_dict() for s in skills], "any_skill": any(s.skilled for s in skills), "lines": lines}


def _verdict(skills: list[Skill]) -> str:
    if not skills:
        return "it scored none of these models"
    shown = [s.model for s in skills if s.skilled]
    if not shown:
        return (f"no evidence of skill in any of its {len(skills)} models; these forecasts describe models "
                "without demonstrated skill")
    return f"evidence of skill: {', '.join(shown)} ({len(shown)} of {len(skills)}); none for the rest"


def _value(m: ModelForecast, h: int, drawdown: bool = False) -> str:
    naive = {"persistence": "   (naive baseline: no change)",
             "majority": f"   (naive baseline: training share of up {'days' if h == 1 else f'{h}-day moves'})"}
    if m.task == "classification":
        return f"p_up {m.p_up:.3f}" + naive.get(m.model, "")
    what = f"worst close of the next {h} days" if drawdown and m.model != "persistence" else "close"
    return f"{what} {_price(m.close)} ({m.simple_return:+.2%})" + naive.get(m.model, "")


def _arrow(direction: str) -> str:
    return {UP: "up", DOWN: "down"}.get(direction, "-")


def _side(position: float) -> str:
    return "long" if position > 0 else "short" if position < 0 else "flat"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _price(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"
