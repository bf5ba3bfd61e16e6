"""RunConfig: defaults, TOML files, layering, round trips, and one-line errors that name the fix."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from lstmbt.backtest.config import (
    QUICK_PRESET,
    DataConfig,
    ModelConfig,
    RunConfig,
    parse_overrides,
    read_toml,
)
from lstmbt.backtest.errors import ConfigError, LstmbtError


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    """The CLI prints the message as-is after 'error: ', so it must be one non-empty line."""
    message = str(excinfo.value)
    assert message and "\n" not in message and message.strip() == message
    return message


def write_toml(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def resolve_set(*items: str) -> RunConfig:
    return RunConfig.resolve(overrides=parse_overrides(list(items)))


# --------------------------------------------------------------------------- defaults and files


def test_defaults_validate_and_match_the_design():
    cfg = RunConfig()
    assert cfg.data.source == "sample:sp500"
    assert cfg.target.task == "both" and cfg.target.tasks == ("regression", "classification")
    assert cfg.backtest.fee_rate == 0.001 and cfg.backtest.slippage == 0.0005
    assert cfg.backtest.execution == "next_open"
    assert cfg.split.scheme == "expanding"
    # defaults survive a trip through the validating path unchanged
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert RunConfig.resolve() == cfg


def test_configs_are_frozen_and_keyword_only():
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.hidden_size = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        ModelConfig(60)  # type: ignore[misc]


def test_from_toml_reads_a_file(tmp_path):
    path = write_toml(tmp_path, """
[data]
source = "sample:nasdaq"
start = "2005-01-01"

[model]
hidden_size = 8
head = [16, 8]

[train]
lr = 1          # an integer where a float is expected is fine
""")
    cfg = RunConfig.from_toml(path)
    assert cfg.data.source == "sample:nasdaq" and cfg.data.start == "2005-01-01"
    assert cfg.model.hidden_size == 8 and cfg.model.head == (16, 8)
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.model.lookback == ModelConfig().lookback  # untouched keys keep their defaults


def test_from_toml_applies_overrides_after_the_file(tmp_path):
    path = write_toml(tmp_path, "[model]\nhidden_size = 8\nlookback = 30\n")
    cfg = RunConfig.from_toml(path, ["model.hidden_size=12"])
    assert cfg.model.hidden_size == 12 and cfg.model.lookback == 30


def test_unquoted_toml_dates_are_read_as_iso_strings(tmp_path):
    """``start = 2010-01-01`` is a TOML date literal; it means the same as the quoted string."""
    path = write_toml(tmp_path, "[data]\nstart = 2010-01-01\nend = 2012-06-30\n")
    cfg = RunConfig.from_toml(path)
    assert (cfg.data.start, cfg.data.end) == ("2010-01-01", "2012-06-30")
    assert resolve_set("data.start=2011-02-03").data.start == "2011-02-03"


# --------------------------------------------------------------------------- precedence


def test_precedence_defaults_preset_file_flags_overrides(tmp_path):
    path = write_toml(tmp_path, """
[split]
min_train = 500
[model]
hidden_size = 24
lookback = 15
[train]
max_epochs = 7
""")
    cfg = RunConfig.resolve(
        path=path,
        preset=QUICK_PRESET,
        flags={"data.source": "sample:nasdaq", "model.lookback": 12, "target.task": "regression"},
        overrides={"model.lookback": 9, "train.seed": 3},
    )
    assert cfg.split.step == QUICK_PRESET["split.step"]          # preset beats default
    assert cfg.model.num_layers == QUICK_PRESET["model.num_layers"]
    assert cfg.split.min_train == 500                            # file beats preset
    assert cfg.model.hidden_size == 24
    assert cfg.train.max_epochs == 7
    assert cfg.data.source == "sample:nasdaq"                    # flag beats default
    assert cfg.target.task == "regression"
    assert cfg.model.lookback == 9                               # --set beats flag and file
    assert cfg.train.seed == 3
    assert cfg.backtest == RunConfig().backtest                  # nobody touched it


def test_quick_preset_is_small_and_valid():
    cfg = RunConfig.resolve(preset=QUICK_PRESET)
    default = RunConfig()
    assert cfg.model.hidden_size < default.model.hidden_size
    assert cfg.split.min_train < default.split.min_train
    assert cfg.model.head == ()
    assert cfg.train.max_epochs < default.train.max_epochs


def test_with_values_returns_a_new_config():
    cfg = RunConfig()
    changed = cfg.with_values({"model.hidden_size": 5})
    assert changed.model.hidden_size == 5 and cfg.model.hidden_size == 32
    assert changed.data is cfg.data  # untouched sections are shared, not rebuilt


# --------------------------------------------------------------------------- TOML round trip


@pytest.mark.parametrize("values", [
    {},
    QUICK_PRESET,
    {"data.source": "csv:/tmp/prices with space.csv", "data.symbol": "005930", "data.start": "2010-01-04",
     "data.end": "2015-12-31", "data.refresh": True, "features.groups": ("returns", "lags"),
     "features.n_lags": 3, "target.regression": "price", "target.horizon": 5, "split.scheme": "rolling",
     "model.head": (64, 32), "model.bidirectional": True, "model.pooling": "mean", "train.mode": "window", "train.lr": 0.0005,
     "strategy.long_short": True, "backtest.execution": "next_close", "backtest.fee_rate": 0.0},
    {"strategy.sizing": "confidence", "strategy.confidence_gain": 4, "strategy.return_gain": 0.25,
     "strategy.vol_window": 63, "strategy.long_short": True},
])
def test_to_toml_round_trips(values):
    cfg = RunConfig().with_values(values)
    text = cfg.to_toml()
    assert RunConfig.from_dict(tomllib.loads(text)) == cfg


def test_to_toml_omits_none_and_writes_tuples_as_arrays():
    cfg = RunConfig().with_values({"model.head": (), "features.groups": ("returns",)})
    assert cfg.data.symbol is None and cfg.data.start is None
    raw = tomllib.loads(cfg.to_toml())
    assert set(raw) == {"data", "features", "target", "split", "model", "train", "strategy", "backtest", "portfolio"}
    assert "symbol" not in raw["data"] and "start" not in raw["data"] and "end" not in raw["data"]
    assert raw["model"]["head"] == [] and raw["features"]["groups"] == ["returns"]
    back = RunConfig.from_dict(raw)
    assert back.model.head == () and isinstance(back.features.groups, tuple)
    assert back.data.symbol is None


def test_symbol_that_looks_like_a_number_round_trips_as_text():
    cfg = resolve_set("data.symbol=005930")
    assert cfg.data.symbol == "005930"
    assert 'symbol = "005930"' in cfg.to_toml()
    assert RunConfig.from_dict(tomllib.loads(cfg.to_toml())) == cfg


# --------------------------------------------------------------------------- --set parsing


def test_parse_overrides_reads_toml_literals_and_bare_strings():
    parsed = parse_overrides([
        "model.hidden_size=64",
        "train.lr=1e-4",
        "model.bidirectional=true",
        "model.head=[64,32]",
        "model.pooling=mean",             # bare string
        "data.source=csv:x.csv",          # bare string with a colon
        "data.symbol=005930",             # not a valid TOML integer: stays the text
        'data.end="2018-12-31"',          # quoted string
        "  strategy.cutoff = 0.55 ",      # spaces around key and value
        "data.source=csv:a=b.csv",        # only the first '=' separates
    ])
    assert parsed == {
        "model.hidden_size": 64,
        "train.lr": 1e-4,
        "model.bidirectional": True,
        "model.head": [64, 32],
        "model.pooling": "mean",
        "data.source": "csv:a=b.csv",
        "data.symbol": "005930",
        "data.end": "2018-12-31",
        "strategy.cutoff": 0.55,
    }
    assert isinstance(parsed["data.symbol"], str)


def test_overrides_apply_with_types_checked():
    cfg = resolve_set("model.head=[64,32]", "data.source=csv:x.csv", "data.symbol=005930", "train.lr=1",
                      "model.head=[]", "data.symbol=1234")
    assert cfg.model.head == ()                 # the last --set for a key wins
    assert cfg.data.source == "csv:x.csv"
    assert cfg.data.symbol == "1234"            # a bare numeric ticker is kept as text
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("items, words", [
    (["modle.hidden_size=3"], ["unknown config key 'modle.hidden_size'", "did you mean 'model'", "section"]),
    (["model.hiden_size=3"], ["unknown config key 'model.hiden_size'", "did you mean 'model.hidden_size'",
                              "hidden_size"]),
    (["model=3"], ["config key 'model' names the section [model]", "model.KEY=VALUE", "hidden_size"]),
    (["model.=3"], ["names the section [model]"]),
    (["model.hidden_size=abc"], ["model.hidden_size", "must be an integer", "'abc'"]),
    (["model.hidden_size=true"], ["model.hidden_size", "must be an integer", "True"]),
    (["model.hidden_size=3.5"], ["model.hidden_size", "must be an integer"]),
    (["train.lr=fast"], ["train.lr", "must be a number"]),
    (["model.bidirectional=1"], ["model.bidirectional", "true or false"]),
    (["data.source=true"], ["data.source", "must be a string"]),
    (["model.head=64"], ["model.head", "must be a list", "model.head=[...]"]),
    (["features.groups=returns"], ["features.groups", "must be a list"]),
    (["model.head=[64, true]"], ["model.head entry", "must be an integer"]),
    (["model.hidden_size=0"], ["model.hidden_size = 0", "out of range", ">= 1"]),
    (["split.val_fraction=0.5"], ["split.val_fraction = 0.5", "out of range", "< 0.5"]),
    (["backtest.fee_rate=-0.001"], ["backtest.fee_rate", "out of range", ">= 0"]),
    (["model.dropout=1.0"], ["model.dropout", "out of range", "< 1.0"]),
    (["strategy.cutoff=0.4"], ["strategy.cutoff", "out of range", ">= 0.5"]),
    (["model.head=[0]"], ["model.head entry = 0", "out of range"]),
    (["train.lr=nan"], ["train.lr", "not a finite number"]),
    (["strategy.threshold=inf"], ["strategy.threshold", "not a finite number"]),
    (["target.task=clasification"], ["target.task", "did you mean 'classification'",
                                     "regression, classification, both"]),
    (["backtest.execution=same_close"], ["backtest.execution", "next_open, next_close"]),
    (["model.pooling=max"], ["model.pooling", "use one of: last, mean"]),
    (["train.device=gpu"], ["train.device", "auto, cpu, cuda"]),
    (["features.groups=[\"returns\", \"rsii\"]"], ["features.groups entry", "did you mean 'rsi'"]),
    (["features.groups=[]"], ["features.groups is empty", "pick at least one"]),
    (["features.groups=[\"rsi\", \"rsi\"]"], ["lists a group twice"]),
    (["data.source=sp500"], ["data.source", "no scheme", "sample:sp500"]),
    (["data.source=smaple:sp500"], ["scheme", "did you mean 'sample'", "sample, csv, fdr"]),
    (["data.start=2015-13-01"], ["data.start", "not a date", "YYYY-MM-DD"]),
    (["data.end=yesterday"], ["data.end", "not a date", "YYYY-MM-DD"]),
    (["data.start=2015-01-01T09:30:00"], ["data.start", "not a date"]),
    (["data.start=2016-01-01", "data.end=2015-01-01"], ["data.start 2016-01-01 is after data.end 2015-01-01", "swap"]),
    (["strategy.sizing=kelly"], ["strategy.sizing = 'kelly'", "use one of: threshold, confidence"]),
    (["strategy.sizing=confidance"], ["strategy.sizing", "did you mean 'confidence'"]),
    (["strategy.confidence_gain=0"], ["strategy.confidence_gain = 0.0", "out of range", "> 0.0"]),
    (["strategy.confidence_gain=-10"], ["strategy.confidence_gain", "out of range", "> 0.0"]),
    (["strategy.return_gain=0.0"], ["strategy.return_gain = 0.0", "out of range", "> 0.0"]),
    (["strategy.return_gain=inf"], ["strategy.return_gain", "not a finite number"]),
    (["strategy.return_gain=high"], ["strategy.return_gain", "must be a number"]),
    (["strategy.vol_window=1"], ["strategy.vol_window = 1", "out of range", ">= 2"]),
    (["strategy.vol_window=21.5"], ["strategy.vol_window", "must be an integer"]),
])
def test_bad_overrides_raise_one_line_config_errors(items, words):
    with pytest.raises(ConfigError) as excinfo:
        resolve_set(*items)
    message = one_line(excinfo)
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("item", ["model.hidden_size", "=3", " =3", ""])
def test_malformed_set_is_a_config_error(item):
    with pytest.raises(ConfigError) as excinfo:
        parse_overrides([item])
    message = one_line(excinfo)
    assert "is not key=value" in message and "--set model.hidden_size=64" in message


def test_config_error_is_the_user_facing_error_type():
    assert issubclass(ConfigError, LstmbtError)


def test_start_equal_to_end_is_allowed():
    assert DataConfig(start="2015-01-02", end="2015-01-02").start == "2015-01-02"


def test_start_after_end_compares_dates_not_text():
    # "20150101" and "2014-06-30" sort the wrong way as text; the check must compare dates
    with pytest.raises(ConfigError, match="is after"):
        DataConfig(start="20150101", end="2014-06-30")
    assert DataConfig(start="2014-06-30", end="20150101").end == "20150101"


@pytest.mark.parametrize("text, words", [
    ("[modle]\nhidden_size = 3\n", ["unknown config section [modle]", "did you mean 'model'", "sections are"]),
    ("[model]\nhiden_size = 3\n", ["unknown config key 'model.hiden_size'", "did you mean 'model.hidden_size'"]),
    ('[model]\nhidden_size = "64"\n', ["model.hidden_size", "must be an integer", "'64'"]),
    ("[model]\nhead = 64\n", ["model.head", "must be a list"]),
    ("[split]\nmin_train = 5\n", ["split.min_train = 5", "out of range", ">= 20"]),
    ('[split]\nscheme = "expandng"\n', ["split.scheme", "did you mean 'expanding'"]),
    ('[data]\nstart = "2020-02-30"\n', ["data.start", "not a date"]),
    ('[strategy]\nsizing = "confidence"\nvol_window = 0\n', ["strategy.vol_window = 0", "out of range", ">= 2"]),
    ("model = 3\n", ["config entry 'model'", "[model] table"]),
    ('data = "sample:sp500"\n', ["config entry 'data'", "[data] table"]),
])
def test_bad_config_files_raise_one_line_config_errors(tmp_path, text, words):
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as excinfo:
        RunConfig.from_toml(path)
    message = one_line(excinfo)
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("text", [
    "[model\nhidden_size = 3\n",
    "[model]\nhidden_size = \n",
    "[model]\nhidden_size = 3\nhidden_size = 4\n",
    "[model]\nhead = [1, 2\n",
])
def test_invalid_toml_syntax_is_a_config_error(tmp_path, text):
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as excinfo:
        read_toml(path)
    message = one_line(excinfo)
    assert str(path) in message and "not valid TOML" in message and "(at " in message  # where: line or end


def test_non_utf8_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[data]\nsymbol = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as excinfo:
        RunConfig.from_toml(path)
    assert "not valid TOML" in one_line(excinfo)


def test_missing_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as excinfo:
        RunConfig.from_toml(path)
    message = one_line(excinfo)
    assert str(path) in message and "does not exist" in message and "--config" in message


def test_a_directory_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match="is not a file; pass a .toml file"):
        RunConfig.resolve(path=tmp_path)


def test_errors_in_a_preset_or_flag_layer_are_config_errors_too():
    with pytest.raises(ConfigError, match="target.task"):
        RunConfig.resolve(flags={"target.task": "up"})
    with pytest.raises(ConfigError, match="unknown config key"):
        RunConfig.resolve(preset={"model.size": 3})


def test_strategy_sizing_defaults_and_a_confidence_section(tmp_path):
    default = RunConfig().strategy
    assert (default.sizing, default.confidence_gain, default.return_gain, default.vol_window) == (
        "threshold", 10.0, 1.0, 21)
    path = write_toml(tmp_path, '[strategy]\nsizing = "confidence"\nconfidence_gain = 5\nvol_window = 10\n')
    cfg = RunConfig.from_toml(path, ["strategy.return_gain=0.5"])
    s = cfg.strategy
    assert (s.sizing, s.confidence_gain, s.return_gain, s.vol_window) == ("confidence", 5.0, 0.5, 10)
    assert isinstance(s.confidence_gain, float)
    assert RunConfig.from_dict(tomllib.loads(cfg.to_toml())) == cfg
