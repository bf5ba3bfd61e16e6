"""Reading a saved run runs no code: ``report``, ``compare``, ``runs list/show`` and ``lstmbt.load``
keep the plug-ins a config names as text; only the commands that train import them, from the
environment and the folders named with ``--plugin-path``, never from the working directory or a
run folder.

A hostile module (``HOSTILE``) writes a marker file when it is imported, when its class is built
and when its rule is called. It sits in a copied run folder and in the working directory, which
is also put on ``sys.path`` as ``python -m`` and ``python -c`` put it, and the run's config.toml
names it in ``model.custom`` and ``strategy.custom``. A real plug-in run (``plugin_run``) is trained
from a temporary folder named by ``--plugin-path``, which is then removed.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

import lstmbt
from lstmbt.backtest.campaign.executors import make_executor
from lstmbt.backtest.campaign.sweep_file import read_sweep
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.partial import partial_dir, start_partial
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.plugins import plugin_folders
from lstmbt.backtest.universe.io import load_universe_run
from lstmbt.models.plugins import import_object
from helpers import LINEAR_FLAGS, call_main, save_with_report, set_args

HOSTILE = "lstmbt_hostile_mod"
PLUGIN = "lstmbt_inert_plugin"
HOSTILE_CODE = '''
import pathlib
MARKS = pathlib.Path({marks!r})
MARKS.joinpath("imported").write_text(__file__)


class Evil:
    def __init__(self):
        MARKS.joinpath("built").write_text(__file__)


def rule(predictions, prices):
    MARKS.joinpath("called").write_text(__file__)
    return predictions["y_pred"] * 0
'''
#: a plug-in model and rule in a module of their own, which only a named folder holds
PLUGIN_CODE = """from custom_rules import half  # noqa: F401
from plugin_models import RowLogit


class TinyLogit(RowLogit):
    pass
"""
PLUGIN_VALUES = {**LINEAR_FLAGS, "model.custom": [f"{PLUGIN}:TinyLogit"], "strategy.custom": f"{PLUGIN}:half"}


def missing_line(module: str, entry: str) -> str:
    """The one line a command that trains prints for a plug-in module it cannot find."""
    return (f"error: model.custom entry '{entry}': module {module} cannot be imported (ModuleNotFoundError: No "
            f"module named '{module}'); check the spelling, install it, or name the folder that holds {module}.py "
            "with --plugin-path DIR (plugin_path= in Python)")


def name_plugins(run_dir: Path, model: list[str], strategy: str) -> None:
    """Rewrite ``run_dir``'s config.toml so that it names these plug-ins, as a forged download would."""
    path = run_dir / "config.toml"
    config = tomllib.loads(path.read_text(encoding="utf-8"))
    config["model"]["custom"], config["strategy"]["custom"] = model, strategy
    path.write_text(tomli_w.dumps(config), encoding="utf-8")


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A finished linear-only run directory (seconds)."""
    return save_with_report(run(RunConfig().with_values(LINEAR_FLAGS)), tmp_path_factory.mktemp("inert") / "good")


@pytest.fixture
def hostile(good, tmp_path, monkeypatch) -> Path:
    """``tmp_path/runs`` with ``good``, ``evil`` (naming the hostile module, which it holds) and ``uni``
    (a universe of ``evil``); the working directory ``tmp_path`` holds the module too and is first on
    sys.path. Returns the root."""
    root = tmp_path / "runs"
    shutil.copytree(good, root / "good")
    shutil.copytree(good, root / "evil")
    name_plugins(root / "evil", [f"{HOSTILE}:Evil"], f"{HOSTILE}:rule")
    make_universe(root, "uni", root / "evil")
    (tmp_path / "marks").mkdir()
    for folder in (tmp_path, root / "evil"):
        (folder / f"{HOSTILE}.py").write_text(HOSTILE_CODE.format(marks=str(tmp_path / "marks")), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", str(tmp_path), *sys.path])
    monkeypatch.delitem(sys.modules, HOSTILE, raising=False)
    return root


def make_universe(root: Path, name: str, source: Path) -> None:
    """A universe run directory ``root/name`` holding ``source``'s run as its one ticker (enough for its reader)."""
    uni = root / name
    shutil.copytree(source, uni / "tickers" / "spx")
    for file in ("config.toml", "metrics.json", "returns.parquet", "report.html"):
        shutil.copy(source / file, uni / file)
    positions = pd.read_parquet(source / "positions.parquet")  # wide: one column per strategy
    weights = positions.rename_axis(index="date", columns="strategy").stack().rename("weight").reset_index()
    weights.assign(ticker="spx")[["date", "strategy", "ticker", "weight"]].to_parquet(uni / "weights.parquet")
    manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    manifest.update({"universe": ["spx"], "tickers": [{"name": "spx", "run_dir": "tickers/spx"}]})
    (uni / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def assert_untouched(tmp_path: Path, before: dict[str, bytes], changes: tuple[str, ...] = ()) -> None:
    """No marker, no module cached or compiled, and every file as it was but ``changes``."""
    assert not list((tmp_path / "marks").iterdir())
    assert HOSTILE not in sys.modules
    assert not list(tmp_path.rglob("__pycache__"))
    after = files(tmp_path)
    assert {k: v for k, v in after.items() if k not in changes} == {k: v for k, v in before.items() if k not in changes}


@pytest.mark.parametrize("argv, cwd, changes", [
    (["report", "runs/evil"], ".", ("runs/evil/report.html",)),
    (["report", "."], "runs/evil", ("runs/evil/report.html",)),
    (["compare", "runs/evil", "runs/good", "--out", "compare.html"], ".", ("compare.html",)),
    (["runs", "list", "--root", "runs"], ".", ("runs/.lstmbt-runs.sqlite",)),
    (["runs", "show", "evil", "--root", "runs"], ".", ("runs/.lstmbt-runs.sqlite",)),
], ids=["report", "report-dot", "compare", "runs-list", "runs-show"])
def test_reading_a_run_that_names_a_hostile_module_runs_none_of_it(hostile, argv, cwd, changes, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path / cwd)
    before = files(tmp_path)
    code, out, err = call_main(argv)
    assert code == 0 and "Traceback" not in err, err
    assert "evil" in out or argv[0] != "runs"
    assert_untouched(tmp_path, before, changes)


def test_load_and_its_report_run_none_of_it(hostile, tmp_path):
    before = files(tmp_path)
    result = lstmbt.load(hostile / "evil")
    result.report(tmp_path / "page.html")
    assert result.config.model.custom == (f"{HOSTILE}:Evil",) and result.config.strategy.custom == f"{HOSTILE}:rule"
    assert_untouched(tmp_path, before, ("page.html",))


def test_the_universe_reader_runs_none_of_it(hostile, tmp_path):
    before = files(tmp_path)
    assert load_universe_run(hostile / "uni").config.model.custom == (f"{HOSTILE}:Evil",)
    assert_untouched(tmp_path, before)


def test_python_m_lstmbt_report_inside_the_run_folder_runs_none_of_it(hostile, tmp_path):
    """The real thing: ``python -m`` puts the working directory (the run folder) first on sys.path;
    ``this:s`` would print the Zen of Python if it were imported."""
    name_plugins(hostile / "evil", ["this:s", f"{HOSTILE}:Evil"], f"{HOSTILE}:rule")
    before = files(tmp_path)
    done = subprocess.run([sys.executable, "-m", "lstmbt", "report", "."], cwd=hostile / "evil",
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == f"report: {hostile / 'evil' / 'report.html'}\n" and "Zen" not in done.stderr
    assert_untouched(tmp_path, before, ("runs/evil/report.html",))


def test_this_s_in_a_saved_config_prints_nothing_of_the_zen(hostile, monkeypatch):
    monkeypatch.delitem(sys.modules, "this", raising=False)  # so an import would print it again
    name_plugins(hostile / "good", ["this:s"], "this:s")
    code, out, err = call_main(["report", str(hostile / "good")])
    assert code == 0 and out.startswith("report: ") and err == "", err
    assert "Zen" not in out and "this" not in sys.modules


@pytest.mark.parametrize("command", ["run", "predict", "importance"])
def test_a_command_that_trains_never_imports_from_the_working_directory(hostile, command, tmp_path):
    """The module is in the working directory and on sys.path: not named by --plugin-path, it is not found."""
    before = files(tmp_path)
    code, _, err = call_main([command, *set_args({**LINEAR_FLAGS, "model.custom": [f"{HOSTILE}:Evil"]})])
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == missing_line(HOSTILE, f"{HOSTILE}:Evil")
    assert_untouched(tmp_path, before)


def test_lstmbt_run_imports_plugins_from_plugin_path_only(hostile, tmp_path):
    with pytest.raises(ConfigError) as caught:
        lstmbt.run(set={**LINEAR_FLAGS, "model.custom": [f"{HOSTILE}:Evil"]})
    assert str(caught.value) == missing_line(HOSTILE, f"{HOSTILE}:Evil").removeprefix("error: ")
    with pytest.raises(ConfigError, match=r"^--plugin-path \S+/nowhere is not a folder; name the folder that holds"):
        lstmbt.run(set={**LINEAR_FLAGS, "model.custom": [f"{HOSTILE}:Evil"]}, plugin_path=tmp_path / "nowhere")
    assert not list((tmp_path / "marks").iterdir()) and HOSTILE not in sys.modules
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / f"{PLUGIN}_api.py").write_text(PLUGIN_CODE, encoding="utf-8")
    result = lstmbt.run(set={**LINEAR_FLAGS, "model.custom": [f"{PLUGIN}_api:TinyLogit"]},
                        plugin_path=[tmp_path / "plugins"])
    assert sys.modules.pop(f"{PLUGIN}_api").__file__ == str(tmp_path / "plugins" / f"{PLUGIN}_api.py")
    assert "tinylogit_classification" in result.metrics.index


def test_resume_takes_no_plugin_from_the_interrupted_run(hostile, tmp_path):
    """A downloaded partial directory naming the module, which it holds, is refused: nothing imported."""
    config = RunConfig().with_values({**LINEAR_FLAGS, "model.custom": [f"{HOSTILE}:Evil"],
                                      "strategy.custom": f"{HOSTILE}:rule"})
    partial = start_partial(hostile / "again", config)
    shutil.copy(hostile / "evil" / f"{HOSTILE}.py", partial)
    before = files(tmp_path)
    code, _, err = call_main(["run", "--resume", str(hostile / "again")])
    assert code == 2 and err.splitlines()[-1] == missing_line(HOSTILE, f"{HOSTILE}:Evil")
    assert_untouched(tmp_path, before)


def test_a_sweep_over_plugins_imports_them_from_named_folders_only(hostile, tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(f'[params]\n"model.custom" = [["{HOSTILE}:Evil"]]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_sweep(path)
    line = missing_line(HOSTILE, f"{HOSTILE}:Evil").removeprefix("error: ")
    assert str(caught.value) == f"sweep file {path}: [params] {line}"
    assert not list((tmp_path / "marks").iterdir())
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / f"{PLUGIN}_sweep.py").write_text(PLUGIN_CODE, encoding="utf-8")
    path.write_text(f'[params]\n"model.custom" = [["{PLUGIN}_sweep:TinyLogit"], []]\n', encoding="utf-8")
    with plugin_folders([plugins]):
        assert len(read_sweep(path).params) == 1
    sys.modules.pop(f"{PLUGIN}_sweep")


@pytest.mark.parametrize("kind", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_worker_processes_import_from_the_folders_the_caller_named(kind, tmp_path):
    """A universe's or a sweep's workers start without the caller's --plugin-path; the executor hands it on."""
    (tmp_path / f"{PLUGIN}_pool.py").write_text("WHERE = __file__\n", encoding="utf-8")
    if kind == "ray":
        ray = pytest.importorskip("ray")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with plugin_folders(str(tmp_path)):
            found = make_executor(kind, workers=2 if kind == "local" else None).map(
                functools.partial(import_object, what="test plug-in"), [f"{PLUGIN}_pool:WHERE"] * 2)
    finally:
        if kind == "ray":
            ray.shutdown()
    assert found == [str(tmp_path / f"{PLUGIN}_pool.py")] * 2
    assert f"{PLUGIN}_pool" not in sys.modules  # imported in the workers only


# --------------------------------------------------------------------------- a real plug-in run


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory) -> Path:
    """A run trained with a plug-in model and rule from a folder named by --plugin-path; the folder is
    then removed (and the module forgotten), as on another machine."""
    base = tmp_path_factory.mktemp("plugin")
    (base / "plugins").mkdir()
    (base / "plugins" / f"{PLUGIN}.py").write_text(PLUGIN_CODE, encoding="utf-8")
    out = base / "runs" / "made"
    code, _, err = call_main(["run", *set_args(PLUGIN_VALUES), "--plugin-path", str(base / "plugins"),
                              "--out", str(out)])
    assert code == 0, err
    shutil.rmtree(base / "plugins")
    sys.modules.pop(PLUGIN)
    return out


def test_a_plugin_run_rerenders_compares_lists_and_loads_without_its_plugin(plugin_run, good, tmp_path):
    runs = str(plugin_run.parent)
    pages = {("report", str(plugin_run)): plugin_run / "report.html",
             ("compare", str(plugin_run), str(good), "--out", str(tmp_path / "c.html")): tmp_path / "c.html",
             ("runs", "list", "--root", runs): None, ("runs", "show", "made", "--root", runs): None}
    for argv, page in pages.items():
        code, out, err = call_main(list(argv))
        assert code == 0 and "Traceback" not in err, (argv, err)
        assert "tinylogit_classification" in (out if page is None else page.read_text(encoding="utf-8")), argv
    result = lstmbt.load(plugin_run)
    assert "tinylogit_classification" in result.metrics.index
    assert "tinylogit_classification" in result.report(tmp_path / "page.html").read_text(encoding="utf-8")
    assert PLUGIN not in sys.modules


def test_resume_and_predict_without_the_plugin_folder_say_how_to_provide_it(plugin_run, tmp_path):
    config = RunConfig.from_saved(tomllib.loads((plugin_run / "config.toml").read_text(encoding="utf-8")))
    partial = start_partial(tmp_path / "again", config)
    before = files(tmp_path)
    for argv in (["run", "--resume", str(tmp_path / "again")],
                 ["predict", "--config", str(plugin_run / "config.toml"), "--root", str(plugin_run.parent)]):
        code, _, err = call_main(argv)
        assert code == 2 and "Traceback" not in err and "damaged" not in err, err
        assert err.splitlines()[-1] == missing_line(PLUGIN, f"{PLUGIN}:TinyLogit")
        assert files(tmp_path) == before
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / f"{PLUGIN}.py").write_text(PLUGIN_CODE, encoding="utf-8")
    code, _, err = call_main(["run", "--resume", str(tmp_path / "again"), "--plugin-path", str(tmp_path / "plugins")])
    sys.modules.pop(PLUGIN)
    assert code == 0, err
    assert not partial.exists() and partial == partial_dir(tmp_path / "again")
    assert (tmp_path / "again" / "metrics.json").read_bytes() == (plugin_run / "metrics.json").read_bytes()
