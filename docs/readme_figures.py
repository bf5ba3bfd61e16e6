"""Rewrite the figures README.md quotes from runs, from real runs.

Every region of README.md between ``<!-- figures:NAME -->`` and ``<!-- /figures -->`` is replaced
by what ``RENDERERS[NAME]`` makes of its sources; nothing else in the file changes. The sources:

- ``--default RUN_DIR``: a saved ``lstmbt run`` with the default config (head-to-head sentence,
  the refit-off rows of the refit table);
- ``--refit RUN_DIR``: the same with ``--set train.refit=true`` (the refit-on rows);
- ``--predict DIR``: a folder holding ``predict.txt`` and ``predict.json``, the output of
  ``lstmbt predict --quick`` and ``lstmbt predict --quick --json`` after ``lstmbt run --quick
  --out runs/quick-spx`` in the same working directory.

``--make ROOT`` makes whichever of them is not given, under ROOT (three runs and two predictions,
a few minutes on 2 cores); ``make readme-figures`` does that under ``runs/readme``. A region whose
sources are missing is left as it is and named on stderr; ``--check`` rewrites nothing and exits 1
when README.md differs from what the sources give.

    python docs/readme_figures.py --default runs/default [--refit runs/refit] [--predict DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

REGION = re.compile(r"(?P<open><!-- figures:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(?P<close><!-- /figures -->)",
                    re.DOTALL)
#: the two LSTMs of the default run, as its first head-to-head pair names them
PAIR = ("lstm_regression", "lstm_classification")
#: the models and figures of the refit table: (model, label of its figures, metric keys)
REFIT_ROWS = (("lstm_regression", "hit rate / Sharpe / total return", ("hit_rate", "sharpe", "total_return")),
              ("lstm_classification", "hit rate / Sharpe / log loss", ("hit_rate", "sharpe", "log_loss")))
#: the commands ``--make`` runs for each source, in a working directory ROOT
COMMANDS = {
    "default": [["run", "--out", "default"]],
    "refit": [["run", "--set", "train.refit=true", "--out", "refit"]],
    "predict": [["run", "--quick", "--out", "runs/quick-spx"], ["predict", "--quick"], ["predict", "--quick", "--json"]],
}


# ----------------------------------------------------------------------------------- sources


def read_run(run_dir: Path) -> dict[str, Any]:
    """The parts of a saved run the renderers read: ``metrics``, ``comparisons`` and ``folds`` (records)."""
    import pandas as pd  # only for the fold table

    run_dir = Path(run_dir)
    folds = pd.read_parquet(run_dir / "folds.parquet") if (run_dir / "folds.parquet").exists() else pd.DataFrame()
    return {"metrics": json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")),
            "comparisons": json.loads((run_dir / "comparisons.json").read_text(encoding="utf-8")),
            "folds": folds.to_dict("records"), "path": str(run_dir)}


def read_predict(folder: Path) -> dict[str, Any]:
    """``lstmbt predict --quick`` as printed (``predict.txt``) and as JSON (``predict.json``)."""
    folder = Path(folder)
    return {"text": (folder / "predict.txt").read_text(encoding="utf-8"),
            "json": json.loads((folder / "predict.json").read_text(encoding="utf-8"))}


# ----------------------------------------------------------------------------------- renderers


def head_to_head(default: dict[str, Any]) -> str:
    """The sentence on the default run's two LSTMs: Sharpe difference, disagreement, the classifier's up calls."""
    pair = next(p for p in default["comparisons"]["pairs"] if (p["a"], p["b"]) == PAIR)
    low, high, diff = pair["sharpe_diff_ci_low"], pair["sharpe_diff_ci_high"], pair["sharpe_diff"]
    told = "cannot be told apart on" if low <= 0 <= high else "differ on"
    base = default["metrics"]["buy_and_hold"]["hit_rate"]
    text = (f"On the default run the two LSTMs {told} Sharpe ({diff:+.2f} [{low:+.2f}, {high:+.2f}]) though they "
            f"disagree on {1 - pair['agreement']:.0%} of days (McNemar p = {_p(pair['mcnemar_pvalue'])}): the "
            f"classifier calls up on {pair['up_share_b']:.0%} of days")
    if pair["hit_rate_b"] > pair["hit_rate_a"] and pair["hit_rate_b"] <= base:
        text += (f", and its hit rate ({pair['hit_rate_b']:.1%}, against the regression's {pair['hit_rate_a']:.1%}) "
                 f"is no higher than always calling up ({base:.1%}), so its edge over the regression is the "
                 "market's drift")
    else:
        text += (f"; hit rates {pair['hit_rate_b']:.1%} (classifier) and {pair['hit_rate_a']:.1%} (regression), "
                 f"always calling up {base:.1%}")
    return _wrap(text + ".", indent="  ")  # inside a list item of README


def refit_table(default: dict[str, Any], refit: dict[str, Any]) -> str:
    """The refit table's rows of the default run, refit off and on, and the refit epochs of the refit run."""
    lines = ["| | refit off | refit on |", "|---|---|---|"]
    for model, label, keys in REFIT_ROWS:
        cells = [" / ".join(_figure(key, run["metrics"][model][key]) for key in keys) for run in (default, refit)]
        lines.append(f"| default run, seed 0: {model} {label} | {cells[0]} | {cells[1]} |")
    added = {model: sum(int(f["refit_epochs"]) for f in refit["folds"] if f["model"] == model) for model, *_ in
             REFIT_ROWS}
    folds = {model: sum(1 for f in refit["folds"] if f["model"] == model) for model, *_ in REFIT_ROWS}
    counts = " and ".join(f"{added[m]} epochs over {m}'s {folds[m]} folds" for m in added)
    return "\n".join(lines) + "\n\n" + _wrap(f"On the default run the refit adds {counts} (seed 0).")


def predict_console(predict: dict[str, Any]) -> str:
    """The console of ``lstmbt predict --quick`` after the quick run, as a code block."""
    return "\n".join(["```", "$ lstmbt run --quick --out runs/quick-spx   # first: the walk-forward of the same config",
                      "$ lstmbt predict --quick", predict["text"].rstrip("\n"), "```"]) + "\n"


def predict_json(predict: dict[str, Any]) -> str:
    """A few keys of ``lstmbt predict --quick --json`` (the first entry of each list), as a code block."""
    data = predict["json"]
    shown = {"actions": data["actions"][:1], "agreement": data["agreement"],
             "skill": {"run": data["skill"]["run"], "models": data["skill"]["models"][:1],
                       "any_skill": data["skill"]["any_skill"]}}
    return "```\n" + "\n".join(f'"{key}": {json.dumps(value)},' for key, value in shown.items()) + "\n```\n"


#: region name -> (the sources it needs, its renderer)
RENDERERS: dict[str, tuple[tuple[str, ...], Callable[..., str]]] = {
    "head-to-head": (("default",), head_to_head),
    "refit-table": (("default", "refit"), refit_table),
    "predict-quick": (("predict",), predict_console),
    "predict-json": (("predict",), predict_json),
}


# ----------------------------------------------------------------------------------- rewriting


def render_all(sources: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Every region's text that ``sources`` (name -> what ``read_run``/``read_predict`` gave) allow."""
    return {name: render(*(sources[s] for s in needs)) for name, (needs, render) in RENDERERS.items()
            if all(s in sources for s in needs)}


def rewrite(text: str, rendered: dict[str, str]) -> tuple[str, list[str]]:
    """``text`` with each region named in ``rendered`` replaced by its text, and the names of the
    regions left as they were. A region of a name no renderer knows is a ``ValueError``."""
    unknown = sorted({m["name"] for m in REGION.finditer(text)} - set(RENDERERS))
    if unknown:
        raise ValueError(f"README regions with no renderer: {', '.join(unknown)}")
    left: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in rendered:
            left.append(name)
            return match[0]
        body = rendered[name] if rendered[name].endswith("\n") else rendered[name] + "\n"
        indent = re.search(r"[ \t]*\Z", match["body"])[0]  # of the closing marker, in a list item
        return match["open"] + body + indent + match["close"]

    return REGION.sub(replace, text), left


def region_bodies(text: str) -> dict[str, str]:
    """The text inside each region of ``text``, by name."""
    return {m["name"]: m["body"] for m in REGION.finditer(text)}


def make_sources(root: Path, wanted: list[str]) -> None:
    """Run ``COMMANDS`` of each source in ``wanted`` in ``root``, the prediction outputs into files."""
    root.mkdir(parents=True, exist_ok=True)
    lstmbt = str(Path(sys.executable).with_name("lstmbt"))
    for source in wanted:
        for args in COMMANDS[source]:
            done = subprocess.run([lstmbt, *args], cwd=root, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"error: lstmbt {' '.join(args)} failed in {root}: {done.stderr.strip()[-300:]}")
            if args[0] == "predict":
                name = "predict.json" if "--json" in args else "predict.txt"
                (root / name).write_text(done.stdout, encoding="utf-8")


# ----------------------------------------------------------------------------------- helpers


def _figure(key: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key == "total_return":
        return f"{value:.1%}"
    return f"{value:.5f}" if key == "log_loss" else f"{value:.3f}" if key == "hit_rate" else f"{value:.2f}"


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _wrap(text: str, indent: str = "", width: int = 100) -> str:
    """``text`` as lines of at most ``width`` characters, each after the first indented by ``indent``."""
    lines, line = [], indent
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = indent + word
        else:
            line = f"{line} {word}" if line.strip() else line + word
    return "\n".join(lines + [line]) + "\n"


def main(argv: list[str] | None = None) -> int:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--default", type=Path)
    parser.add_argument("--refit", type=Path)
    parser.add_argument("--predict", type=Path)
    parser.add_argument("--make", type=Path, metavar="ROOT", help="make the sources not given, under ROOT")
    parser.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[1] / "README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md differs; write nothing")
    args = parser.parse_args(argv)
    given = {name: getattr(args, name) for name in ("default", "refit", "predict")}
    if args.make is not None:
        make_sources(args.make, [name for name, path in given.items() if path is None])
        given = {name: path or (args.make if name == "predict" else args.make / name) for name, path in given.items()}
    sources = {name: (read_predict if name == "predict" else read_run)(path)
               for name, path in given.items() if path is not None}
    text = args.readme.read_text(encoding="utf-8")
    new, left = rewrite(text, render_all(sources))
    for name in left:
        print(f"readme_figures: region {name} left as it is (its sources were not given)", file=sys.stderr)
    if args.check:
        return int(new != text)
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
