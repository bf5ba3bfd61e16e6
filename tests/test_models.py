"""models/: windows, the LSTM network, training, the estimators' scikit-learn contract, features, targets."""

from __future__ import annotations

import copy
import itertools
import math
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import nn

from lstmbt.backtest.config import DataConfig
from lstmbt.backtest.data import load_prices
from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor
from lstmbt.models.features import GROUPS, make_features, warmup_rows
from lstmbt.models.networks import LSTMNet, NetSpec
from lstmbt.models.targets import make_target
from lstmbt.models.training import TrainSettings, evaluate_loss, train_network
from lstmbt.models.windows import sliding_windows

CPU = torch.device("cpu")
SPEC = NetSpec(hidden_size=4, num_layers=1, dropout=0.0, head=())
SETTINGS = TrainSettings(max_epochs=3, batch_size=16, mode="window")  # arbitrary windows
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------------------- windows


def test_sliding_windows_is_a_read_only_view_with_the_right_windows():
    values = np.arange(30, dtype=np.float64).reshape(10, 3)
    windows = sliding_windows(values, 4)
    assert windows.shape == (7, 4, 3)
    assert np.shares_memory(windows, values)
    assert not windows.flags.writeable
    for i in range(7):
        np.testing.assert_array_equal(windows[i], values[i : i + 4])
    np.testing.assert_array_equal(sliding_windows(values, 10)[0], values)
    np.testing.assert_array_equal(sliding_windows(values, 1)[:, 0, :], values)


@pytest.mark.parametrize("shape, lookback", [((10,), 2), ((10, 3), 0), ((10, 3), 11), ((2, 3, 4), 1)])
def test_sliding_windows_rejects_bad_input(shape, lookback):
    with pytest.raises(ValueError):
        sliding_windows(np.zeros(shape), lookback)


# ----------------------------------------------------------------------------------------- network


def test_lstmnet_output_shapes_over_the_options():
    x = torch.randn(7, 6, 3)  # (B, L, F)
    heads = ((), (8,), (8, 4))
    for k, (pooling, bidirectional, layer_norm) in enumerate(itertools.product(("last", "mean"), (False, True),
                                                                                (False, True))):
        spec = NetSpec(hidden_size=5, num_layers=1 + k % 2, pooling=pooling, head=heads[k % 3],
                       bidirectional=bidirectional, layer_norm=layer_norm)
        n_outputs = 1 + k % 2
        assert LSTMNet(3, n_outputs, spec)(x).shape == (7, n_outputs), spec


def test_seed_head_structure():
    """The seed notebook's LSTM -> ReLU -> Linear(H, 128) -> ReLU -> Linear(128, 1)."""
    net = LSTMNet(4, 1, NetSpec(hidden_size=50, num_layers=1, dropout=0.0, head=(128,)))
    assert isinstance(net.lstm, nn.LSTM)
    assert (net.lstm.input_size, net.lstm.hidden_size, net.lstm.num_layers) == (4, 50, 1)
    assert net.lstm.batch_first
    assert isinstance(net.norm, nn.Identity)
    head = list(net.head)
    assert [type(m) for m in head] == [nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert (head[1].in_features, head[1].out_features) == (50, 128)
    assert (head[3].in_features, head[3].out_features) == (128, 1)


def test_empty_head_is_a_linear_readout_and_widths_follow_the_options():
    net = LSTMNet(3, 2, NetSpec(hidden_size=6, head=()))
    assert [type(m) for m in net.head] == [nn.Linear]
    assert (net.head[0].in_features, net.head[0].out_features) == (6, 2)
    bi = LSTMNet(3, 1, NetSpec(hidden_size=6, bidirectional=True, layer_norm=True, head=(5,)))
    assert isinstance(bi.norm, nn.LayerNorm) and bi.norm.normalized_shape == (12,)
    assert bi.head[1].in_features == 12


def _pooled(net: LSTMNet, x: torch.Tensor) -> torch.Tensor:
    """What the network feeds its head (captured at the norm layer, an Identity here)."""
    seen = []
    handle = net.norm.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    net(x)
    handle.remove()
    return seen[0]


@torch.no_grad()
def test_pooling_reads_the_right_time_steps():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 3)
    uni = LSTMNet(3, 1, NetSpec(hidden_size=5, num_layers=2, dropout=0.0)).eval()
    out, (h_n, _) = uni.lstm(x)
    torch.testing.assert_close(_pooled(uni, x), h_n[-1], rtol=0, atol=0)
    bi = LSTMNet(3, 1, NetSpec(hidden_size=5, num_layers=1, bidirectional=True, dropout=0.0)).eval()
    out, (h_n, _) = bi.lstm(x)
    # forward direction's state after the last step, backward direction's after the first
    torch.testing.assert_close(_pooled(bi, x), torch.cat([h_n[-2], h_n[-1]], dim=1), rtol=0, atol=0)
    mean = LSTMNet(3, 1, NetSpec(hidden_size=5, num_layers=1, pooling="mean", dropout=0.0)).eval()
    out, _ = mean.lstm(x)
    torch.testing.assert_close(_pooled(mean, x), out.mean(dim=1), rtol=0, atol=0)


def test_dropout_with_one_layer_does_not_warn_and_two_layers_use_it():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = LSTMNet(3, 1, NetSpec(num_layers=1, dropout=0.5))
    assert one.lstm.dropout == 0.0 and one.dropout.p == 0.5
    assert LSTMNet(3, 1, NetSpec(num_layers=2, dropout=0.5)).lstm.dropout == 0.5


def test_bad_pooling_raises():
    with pytest.raises(ValueError, match="pooling"):
        LSTMNet(3, 1, NetSpec(pooling="max"))


# -------------------------------------------------------------------------------------- estimators


def make_windows(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows (n, 5, 3), a regression target and a direction label driven by the last step."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5, 3)).astype(np.float32)
    y = X[:, -1, 0].astype(np.float64) + 0.1 * rng.normal(size=n)
    return X, y, (y > 0).astype(np.float64)


def regressor(**kw) -> LSTMRegressor:
    return LSTMRegressor(**{"net": SPEC, "train": SETTINGS, "device": "cpu", "random_state": 3, **kw})


def classifier(**kw) -> LSTMClassifier:
    return LSTMClassifier(**{"net": SPEC, "train": SETTINGS, "device": "cpu", "random_state": 3, **kw})


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


PARAMS = {"net", "train", "device", "random_state", "warm_start", "family"}


@pytest.mark.parametrize("make", [regressor, classifier])
def test_init_only_stores_its_arguments(make):
    est = make(warm_start=True)
    assert set(vars(est)) == PARAMS
    assert est.get_params() == {"net": SPEC, "train": SETTINGS, "device": "cpu", "random_state": 3,
                                "warm_start": True, "family": "lstm"}


@pytest.mark.parametrize("make", [regressor, classifier])
def test_clone_gives_an_unfitted_copy_with_equal_params(make):
    X, y, up = make_windows()
    est = make().fit(X, y if make is regressor else up)
    copy_ = clone(est)
    assert type(copy_) is type(est)
    assert copy_.get_params() == est.get_params()
    assert not hasattr(copy_, "net_")
    with pytest.raises(NotFittedError):
        copy_.predict(X)


@pytest.mark.parametrize("make", [regressor, classifier])
def test_predict_before_fit_raises_not_fitted(make):
    X, _, _ = make_windows()
    with pytest.raises(NotFittedError):
        make().predict(X)
    if make is classifier:
        with pytest.raises(NotFittedError):
            make().predict_proba(X)


@pytest.mark.parametrize("make", [regressor, classifier])
def test_fit_returns_self_and_fitted_attributes_end_in_underscore(make):
    X, y, up = make_windows()
    est = make()
    assert est.fit(X, y if make is regressor else up, X[:16], (y if make is regressor else up)[:16]) is est
    fitted = set(vars(est)) - PARAMS
    assert {"net_", "n_features_in_", "lookback_", "log_", "n_epochs_", "best_epoch_", "best_loss_"} <= fitted
    assert all(name.endswith("_") for name in fitted), fitted
    assert (est.n_features_in_, est.lookback_) == (3, 5)
    assert est.get_params()["net"] is SPEC  # fit does not touch the parameters
    if make is classifier:
        np.testing.assert_array_equal(est.classes_, [0.0, 1.0])


@pytest.mark.parametrize("make", [regressor, classifier])
def test_second_fit_rebuilds_the_network(make):
    """No weight carry-over between fits (the Qlib bug walk-forward must never have)."""
    X1, y1, up1 = make_windows(seed=1)
    X2, y2, up2 = make_windows(seed=2)
    t1, t2 = (y1, y2) if make is regressor else (up1, up2)
    refit = make().fit(X1, t1)
    first_net = refit.net_
    refit.fit(X2, t2)
    fresh = make().fit(X2, t2)
    assert refit.net_ is not first_net
    assert state_equal(refit.net_, fresh.net_)
    np.testing.assert_array_equal(refit.predict(X1), fresh.predict(X1))


def test_warm_start_continues_the_old_weights():
    X1, y1, _ = make_windows(seed=1)
    X2, y2, _ = make_windows(seed=2)
    warm = regressor(warm_start=True).fit(X1, y1)
    net, after_first = warm.net_, copy.deepcopy(warm.net_)
    warm.fit(X2, y2)
    assert warm.net_ is net
    assert not state_equal(warm.net_, after_first)  # it trained further...
    assert not state_equal(warm.net_, regressor().fit(X2, y2).net_)  # ...from the old weights


@pytest.mark.parametrize("make", [regressor, classifier])
def test_pickle_round_trip_predicts_identically(make):
    X, y, up = make_windows()
    est = make().fit(X, y if make is regressor else up)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    if make is classifier:
        np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    assert loaded.get_params() == est.get_params()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_pickling_a_gpu_model_leaves_the_live_model_on_the_gpu():
    X, y, _ = make_windows()
    est = regressor(device="cuda").fit(X, y)
    before = est.predict(X)
    loaded = pickle.loads(pickle.dumps(est))
    assert next(est.net_.parameters()).is_cuda
    np.testing.assert_array_equal(est.predict(X), before)
    # the pickled copy holds exactly the trained weights, on the CPU
    for live, copied in zip(est.net_.parameters(), loaded.net_.parameters()):
        assert copied.device.type == "cpu"
        torch.testing.assert_close(copied, live.detach().cpu(), rtol=0, atol=0)
    # cuDNN may compute in TF32, so CPU predictions agree to a few parts in a thousand, not bit for bit
    gap = np.max(np.abs(loaded.predict(X) - before)) / np.max(np.abs(before))
    print(f"relative CPU/GPU prediction gap: {gap:.2e}")
    assert gap < 1e-2


@pytest.mark.parametrize("make", [regressor, classifier])
def test_seed_makes_runs_repeatable_and_distinct(make):
    X, y, up = make_windows()
    target = y if make is regressor else up
    out = (lambda e: e.predict(X)) if make is regressor else (lambda e: e.predict_proba(X))
    a = out(make(random_state=11).fit(X, target))
    b = out(make(random_state=11).fit(X, target))
    c = out(make(random_state=12).fit(X, target))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fit_leaves_the_global_torch_rng_alone_and_ignores_it():
    X, y, _ = make_windows()
    est = regressor(net=NetSpec(hidden_size=4, num_layers=1, dropout=0.3, head=(4,)))  # dropout draws too
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        state = torch.get_rng_state()
        first = clone(est).fit(X, y).predict(X)
        assert torch.equal(torch.get_rng_state(), state)
        torch.manual_seed(456)
        second = clone(est).fit(X, y).predict(X)
    np.testing.assert_array_equal(first, second)


def test_classifier_probabilities():
    X, _, up = make_windows()
    clf = classifier().fit(X, up)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])


def test_classifier_keeps_arbitrary_labels():
    X, _, up = make_windows()
    labels = np.where(up > 0, 1, -1)
    clf = classifier().fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, [-1, 1])
    assert set(np.unique(clf.predict(X))) <= {-1, 1}


def test_classifier_rejects_single_class_and_unknown_validation_labels():
    X, _, up = make_windows()
    with pytest.raises(ValueError, match="two classes"):
        classifier().fit(X, np.ones(len(X)))
    with pytest.raises(ValueError, match="outside the fitted classes"):
        classifier().fit(X, up, X[:8], np.full(8, 2.0))


@pytest.mark.parametrize("case", ["2d", "nan_x", "inf_x", "nan_y", "short_y", "y_2d", "empty", "val_half",
                                  "val_shape"])
def test_fit_validates_its_input(case):
    X, y, _ = make_windows()
    bad_x, bad_y = X.copy(), y.copy()
    kwargs = {}
    if case == "2d":
        bad_x = X[:, :, 0]
    elif case == "nan_x":
        bad_x[3, 2, 1] = np.nan
    elif case == "inf_x":
        bad_x[0, 0, 0] = np.inf
    elif case == "nan_y":
        bad_y[5] = np.nan
    elif case == "short_y":
        bad_y = y[:-1]
    elif case == "y_2d":
        bad_y = y[:, None]
    elif case == "empty":
        bad_x, bad_y = X[:0], y[:0]
    elif case == "val_half":
        kwargs = {"X_val": X[:8]}
    elif case == "val_shape":
        kwargs = {"X_val": X[:8, 1:], "y_val": y[:8]}
    with pytest.raises(ValueError):
        regressor().fit(bad_x, bad_y, **kwargs)


def test_predict_validates_window_shape():
    X, y, _ = make_windows()
    est = regressor().fit(X, y)
    for bad in (X[:, 1:], X[:, :, :2], X[:, :, 0]):
        with pytest.raises(ValueError):
            est.predict(bad)
    nan_x = X.copy()
    nan_x[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.predict(nan_x)


# ------------------------------------------------------------------------------- early stopping


def test_early_stopping_on_a_validation_loss_that_cannot_improve():
    """lr = 0: the validation loss is constant, so the first epoch stays best and patience ends it."""
    X, y, _ = make_windows()
    est = regressor(train=TrainSettings(lr=0.0, max_epochs=20, patience=2, batch_size=16, mode="window"))
    est.fit(X, y, X[:16], y[:16])
    assert est.best_epoch_ == 0
    assert est.n_epochs_ == 3 < 20
    assert est.log_.stopped_early
    # without a validation set nothing stops it: it runs max_epochs, as documented
    est.fit(X, y)
    assert est.n_epochs_ == 20 and not est.log_.stopped_early


def test_early_stopping_restores_the_best_weights():
    """Validation labels are the opposite of the training relation, so learning hurts validation."""
    X, y, up = make_windows(n=96)
    X_val, _, up_val = make_windows(n=32, seed=5)
    anti = 1.0 - up_val
    settings = TrainSettings(lr=0.05, max_epochs=40, patience=2, batch_size=16, mode="window")
    clf = classifier(train=settings).fit(X, up, X_val, anti)
    assert clf.n_epochs_ < settings.max_epochs
    assert clf.n_epochs_ == clf.best_epoch_ + settings.patience + 1
    assert clf.best_epoch_ == int(np.argmin(clf.log_.val_loss))
    assert clf.best_loss_ == min(clf.log_.val_loss)
    # the returned model is the best epoch's: its validation loss is best_loss_, bit for bit
    assert evaluate_loss(clf.net_, clf._loss, (X_val, anti.astype(np.int64)), CPU, settings) == clf.best_loss_
    proba = clf.predict_proba(X_val)[:, 1]
    nll = -np.mean(np.log(np.where(anti == 1, proba, 1 - proba)))
    assert nll == pytest.approx(clf.best_loss_, rel=1e-5)


def test_train_network_ends_holding_the_best_epochs_weights():
    X, _, up = make_windows(n=96)
    X_val, _, up_val = make_windows(n=32, seed=5)
    anti = (1.0 - up_val).astype(np.int64)
    torch.manual_seed(0)
    net = LSTMNet(3, 2, SPEC)
    snapshots = []
    log = train_network(net, LSTMClassifier._loss, (X, up.astype(np.int64)), (X_val, anti),
                        TrainSettings(lr=0.05, max_epochs=40, patience=2, batch_size=16, mode="window"), device=CPU,
                        generator=torch.Generator().manual_seed(0),
                        on_epoch=lambda *_: snapshots.append(copy.deepcopy(net.state_dict())))
    assert len(snapshots) == log.n_epochs
    assert log.best_epoch < log.n_epochs - 1  # otherwise the restore proves nothing
    final = net.state_dict()
    assert all(torch.equal(final[k], snapshots[log.best_epoch][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[-1][k]) for k in final)


# ---------------------------------------------------------------------------------------- features

EXPECTED_COLUMNS = {
    "returns": ["ret_1d", "ret_5d", "ret_10d", "ret_20d"],
    "ohlc": ["open_to_close", "high_to_close", "low_to_close"],
    "volume": ["volume_z20"],
    "ma": ["close_to_ma5", "close_to_ma10", "close_to_ma20", "close_to_ma60"],
    "rsi": ["rsi14"],
    "macd": ["macd", "macd_signal", "macd_diff"],
    "bollinger": ["bb_pct_b", "bb_width"],
    "atr": ["atr14_to_close"],
    "lags": ["lag1_to_close", "lag2_to_close", "lag3_to_close"],  # features.lag_scale = "relative", the default
}
ALL_GROUPS = tuple(EXPECTED_COLUMNS)


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    """The real S&P 500 sample (arch's sp500, 1999-2018), as the pipeline loads it."""
    return load_prices(DataConfig(source="sample:sp500"))


def test_every_group_has_a_test():
    assert set(EXPECTED_COLUMNS) == set(GROUPS)


def test_each_group_makes_its_named_columns(prices):
    for group, columns in EXPECTED_COLUMNS.items():
        frame = make_features(prices, (group,), n_lags=3)
        assert list(frame.columns) == columns, group
        assert frame.index.equals(prices.index)
    combined = make_features(prices, ("rsi", "returns", "lags"), n_lags=3)
    assert list(combined.columns) == EXPECTED_COLUMNS["rsi"] + EXPECTED_COLUMNS["returns"] + EXPECTED_COLUMNS["lags"]
    with pytest.raises(ValueError, match="unknown feature group"):
        make_features(prices, ("returns", "momentum"))


def test_feature_values_by_hand(prices):
    frame = make_features(prices, ALL_GROUPS, n_lags=3)
    close, t = prices["Close"].to_numpy(), 200
    row = frame.iloc[t]
    assert row["ret_1d"] == pytest.approx(math.log(close[t] / close[t - 1]), rel=1e-12)
    assert row["ret_20d"] == pytest.approx(math.log(close[t] / close[t - 20]), rel=1e-12)
    assert row["open_to_close"] == pytest.approx(math.log(prices["Open"].iloc[t] / close[t]), rel=1e-12)
    assert row["close_to_ma5"] == pytest.approx(close[t] / close[t - 4 : t + 1].mean() - 1.0, rel=1e-9)
    assert row["close_to_ma60"] == pytest.approx(close[t] / close[t - 59 : t + 1].mean() - 1.0, rel=1e-9)
    assert row["lag1_to_close"] == pytest.approx(math.log(close[t - 1] / close[t]), rel=1e-12)
    assert row["lag3_to_close"] == pytest.approx(math.log(close[t - 3] / close[t]), rel=1e-12)
    level = make_features(prices, ("lags",), n_lags=3, lag_scale="level")
    assert list(level.columns) == ["close_lag0", "close_lag1", "close_lag2"]
    assert level.iloc[t]["close_lag0"] == close[t] and level.iloc[t]["close_lag2"] == close[t - 2]
    log_vol = np.log1p(prices["Volume"].to_numpy()[t - 19 : t + 1])
    assert row["volume_z20"] == pytest.approx((log_vol[-1] - log_vol.mean()) / log_vol.std(ddof=1), rel=1e-9)
    assert 0.0 <= frame["rsi14"].min() and frame["rsi14"].max() <= 1.0
    assert (frame["bb_width"].dropna() > 0).all() and (frame["atr14_to_close"].dropna() > 0).all()


@pytest.mark.parametrize("group", ALL_GROUPS + ("all",))
def test_features_are_causal(prices, group):
    """Rows up to D computed from prices truncated at D equal the full computation, bit for bit."""
    groups = ALL_GROUPS if group == "all" else (group,)
    full = make_features(prices, groups, n_lags=3).to_numpy()
    for day in (45, 70, 400, 2517, len(prices) - 2):
        cut = make_features(prices.iloc[: day + 1], groups, n_lags=3).to_numpy()
        assert cut.shape == (day + 1, full.shape[1])
        np.testing.assert_array_equal(cut, full[: day + 1], err_msg=f"{group} at day {day}")


@pytest.mark.parametrize("group", ALL_GROUPS + ("all",))
def test_warmup_rows_counts_the_leading_nan_rows(prices, group):
    groups = ALL_GROUPS if group == "all" else (group,)
    frame = make_features(prices, groups, n_lags=3)
    incomplete = frame.isna().any(axis=1).to_numpy()
    leading = int(np.argmin(incomplete))
    assert incomplete[:leading].all() and not incomplete[leading:].any()
    assert warmup_rows(groups, n_lags=3) == leading
    assert warmup_rows(("lags",), n_lags=7) == 7  # relative: close[t - 7] is needed
    assert warmup_rows(("lags",), n_lags=7, lag_scale="level") == 6  # level: lag 0 is today's close


def test_relative_lags_are_scale_free_and_causal_and_level_lags_are_not(prices):
    """The same prices x 3 give the same relative lags, and other raw closes; both stay causal."""
    tripled = prices.assign(**{c: prices[c] * 3.0 for c in ("Open", "High", "Low", "Close")})
    rel, rel3 = (make_features(p, ("lags",), n_lags=4) for p in (prices, tripled))
    np.testing.assert_allclose(rel3.to_numpy(), rel.to_numpy(), rtol=0, atol=1e-12)
    level, level3 = (make_features(p, ("lags",), n_lags=4, lag_scale="level") for p in (prices, tripled))
    np.testing.assert_allclose(level3.to_numpy(), 3.0 * level.to_numpy())
    for scale in ("relative", "level"):
        full = make_features(prices, ("lags",), n_lags=4, lag_scale=scale).to_numpy()
        cut = make_features(prices.iloc[:301], ("lags",), n_lags=4, lag_scale=scale).to_numpy()
        np.testing.assert_array_equal(cut, full[:301])
    with pytest.raises(ValueError, match="lag_scale"):
        make_features(prices, ("lags",), lag_scale="raw")


def test_flat_stretches_are_forward_filled_not_left_as_gaps():
    n = 120
    close = np.r_[np.linspace(100, 120, 60), np.full(30, 120.0), np.linspace(120, 110, 30)]
    volume = np.r_[np.linspace(1e6, 2e6, 60), np.full(n - 60, 1.5e6)]
    flat = pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close, "Volume": volume},
                        index=pd.bdate_range("2001-01-01", periods=n))
    frame = make_features(flat, ALL_GROUPS, n_lags=3)
    assert not frame.iloc[warmup_rows(ALL_GROUPS, n_lags=3):].isna().any().any()
    assert np.isfinite(frame.iloc[60:].to_numpy()).all()


# ----------------------------------------------------------------------------------------- targets

CLOSES = [100.0, 110.0, 99.0, 99.0, 120.0, 60.0, 121.0, 98.0]


@pytest.fixture()
def tiny_prices() -> pd.DataFrame:
    close = np.array(CLOSES)
    return pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close, "Volume": 1.0},
                        index=pd.bdate_range("2022-01-03", periods=len(close)))


def _check(series: pd.Series, expected: list[float], name: str, index: pd.Index) -> None:
    assert series.name == name
    assert series.index.equals(index)
    assert series.dtype == np.float64
    np.testing.assert_allclose(series.to_numpy(), expected, rtol=1e-15, atol=0, equal_nan=True)


def test_targets_h1(tiny_prices):
    log = math.log
    nan = float("nan")
    idx = tiny_prices.index
    _check(make_target(tiny_prices, "return", 1),
           [log(110 / 100), log(99 / 110), 0.0, log(120 / 99), log(60 / 120), log(121 / 60), log(98 / 121), nan],
           "ret_fwd_1d", idx)
    _check(make_target(tiny_prices, "direction", 1), [1, 0, 0, 1, 0, 1, 0, nan], "up_fwd_1d", idx)  # flat is down
    _check(make_target(tiny_prices, "price", 1), [110, 99, 99, 120, 60, 121, 98, nan], "price_1d", idx)


def test_targets_h5(tiny_prices):
    log = math.log
    nan = float("nan")
    idx = tiny_prices.index
    _check(make_target(tiny_prices, "return", 5), [log(60 / 100), log(121 / 110), log(98 / 99)] + [nan] * 5,
           "ret_fwd_5d", idx)
    _check(make_target(tiny_prices, "direction", 5), [0, 1, 0] + [nan] * 5, "up_fwd_5d", idx)
    _check(make_target(tiny_prices, "price", 5), [60, 121, 98] + [nan] * 5, "price_5d", idx)


def test_week_mean_is_the_mean_of_the_next_five_closes_over_today(tiny_prices):
    # closes: 100, 110, 99, 99, 120, 60, 121, 98
    log = math.log
    expected = [log((110 + 99 + 99 + 120 + 60) / 5 / 100), log((99 + 99 + 120 + 60 + 121) / 5 / 110),
                log((99 + 120 + 60 + 121 + 98) / 5 / 99)] + [float("nan")] * 5
    _check(make_target(tiny_prices, "week_mean", 5), expected, "mean_fwd_5d", tiny_prices.index)
    bumped = tiny_prices.copy()
    bumped.iloc[5, bumped.columns.get_loc("Close")] *= 3.0  # day 5 is inside the next-5 window of rows 0..2
    changed = ~np.isclose(make_target(bumped, "week_mean", 5), make_target(tiny_prices, "week_mean", 5),
                          equal_nan=True)
    assert np.flatnonzero(changed).tolist() == [0, 1, 2]


def test_target_row_t_uses_only_closes_t_to_t_plus_h(tiny_prices):
    h = 2
    base = make_target(tiny_prices, "return", h)
    bumped = tiny_prices.copy()
    bumped.iloc[5, bumped.columns.get_loc("Close")] *= 3.0  # day 5 feeds only rows 3..5
    changed = ~np.isclose(make_target(bumped, "return", h), base, equal_nan=True)
    assert np.flatnonzero(changed).tolist() == [3, 5]  # row 4's label is close[6] / close[4]


@pytest.mark.parametrize("kind, horizon", [("log_return", 1), ("return", 0)])
def test_bad_target_arguments_raise(tiny_prices, kind, horizon):
    with pytest.raises(ValueError):
        make_target(tiny_prices, kind, horizon)
