"""Figures of a run: the right curves with the right numbers, saved in every format, headless."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

import demons
import horde
from horde import plots
from horde.evaluation import error_curve


@pytest.fixture(scope="module")
def run_result():
    learner = horde.HordeLearner(
        demons.nexting(4, timescales=(1, 10)) + demons.reward_demons(timescales=(1, 10)),
        hidden_sizes=(8,),
        step_size=0.01,
        diagnostics=True,
    )
    return horde.run(learner, "CartPole-v1", steps=400, progress=False)


def info(name, *, z=0.0):
    """The ``DemonInfo`` of a demon named ``stem@T``: cumulant ``stem``, timescale ``T`` steps."""
    stem, _, steps = name.partition("@")
    return demons.DemonInfo(
        name=name,
        cumulant=f"observation({stem})",
        cumulant_kind="observation",
        discount_kind="timescale",
        timescale=float(steps),
        lamda=0.0,
        z=z,
        off_policy=False,
    )


def synthetic(
    td,
    *,
    names=None,
    infos=None,
    record_every=1,
    predictions=None,
    cumulants=None,
    discounts=None,
    terminated=None,
    rupee=None,
    ude=None,
):
    """A RunResult with given per-step arrays ``(n_seeds, k, n_demons)``; its demons are
    ``infos`` (default: ``info(name)`` for each name)."""
    td = np.asarray(td, np.float64)
    if td.ndim == 2:
        td = td[None]
    S, k, n = td.shape
    names = tuple(names or (f"d{i}@{10 ** (i % 3)}" for i in range(n)))
    zeros = np.zeros((S, k, n))
    term = np.zeros((S, k), bool) if terminated is None else np.asarray(terminated, bool).reshape(S, k)
    return horde.RunResult(
        demon_names=names,
        steps=np.arange(k) * record_every,
        predictions=zeros if predictions is None else np.asarray(predictions, np.float64).reshape(S, k, n),
        td_errors=td,
        cumulants=zeros if cumulants is None else np.asarray(cumulants, np.float64).reshape(S, k, n),
        discounts=zeros if discounts is None else np.asarray(discounts, np.float64).reshape(S, k, n),
        rewards=np.zeros((S, k)),
        terminated=term,
        truncated=np.zeros((S, k), bool),
        valid=np.ones((S, k), bool),
        episode_seed=np.zeros(0, np.int64),
        episode_end_step=np.zeros(0, np.int64),
        episode_return=np.zeros(0),
        episode_length=np.zeros(0, np.int64),
        wall_time=1.0,
        total_steps=k * record_every,
        record_every=record_every,
        config={},
        rupee=rupee,
        ude=ude,
        demons=tuple(info(name) for name in names) if infos is None else tuple(infos),
    )


def legend_labels(ax):
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


# ---------------------------------------------------------------------------------------------
# Smoothing: exact numbers


def test_moving_average_is_trailing_and_nan_aware():
    np.testing.assert_allclose(plots.moving_average([1, 2, 3, 4, 5], 2), [1, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(plots.moving_average([1, 2, 3, 4, 5], 1), [1, 2, 3, 4, 5])
    np.testing.assert_allclose(plots.moving_average([1, 2, 3], 10), [1, 1.5, 2])
    out = plots.moving_average([1.0, np.nan, 3.0, np.nan, np.nan, 6.0], 2)
    np.testing.assert_allclose(out, [1, 1, 3, 3, np.nan, 6])
    x = np.arange(12.0).reshape(2, 6)
    np.testing.assert_allclose(plots.moving_average(x, 3, axis=1)[1], [6, 6.5, 7, 8, 9, 10])
    with pytest.raises(ValueError, match="window"):
        plots.moving_average([1.0], 0)


def test_learning_curve_averages_seeds_then_smooths_squared_td_errors():
    # seed 0: δ² = 1, 4, 9, 16; seed 1: δ² = 3, 4, 5, NaN  ->  seed mean 2, 4, 7, 16
    td = np.stack([np.sqrt([1.0, 4, 9, 16]), np.sqrt([3.0, 4, 5, np.nan])])[:, :, None]
    fig = plots.learning_curves(synthetic(td, names=["x@1"]), smoothing=3)
    (line,) = fig.axes[0].lines
    np.testing.assert_allclose(line.get_xdata(), [0, 1, 2, 3])
    np.testing.assert_allclose(line.get_ydata(), [2, 3, 13 / 3, 9])


def test_smoothing_window_is_in_steps_not_records():
    td = np.sqrt(np.array([1.0, 3, 5, 7]))[None, :, None]
    fig = plots.learning_curves(synthetic(td, names=["x@1"], record_every=5), smoothing=10)
    (line,) = fig.axes[0].lines
    np.testing.assert_allclose(line.get_xdata(), [0, 5, 10, 15])
    np.testing.assert_allclose(line.get_ydata(), [1, 2, 4, 6])  # 10 steps = 2 records


def test_default_smoothing_is_one_percent_of_the_run():
    td = np.ones((1, 1000, 1))
    fig = plots.learning_curves(synthetic(td, names=["x@1"]))
    assert "over 10 steps" in fig.axes[0].get_title()
    fig = plots.learning_curves(synthetic(np.ones((1, 50, 1)), names=["x@1"]))
    assert "unsmoothed" in fig.axes[0].get_title()


def test_long_curves_are_thinned_for_plotting():
    k = 10_000
    td = np.sqrt(np.arange(k, dtype=np.float64))[None, :, None]
    fig = plots.learning_curves(synthetic(td, names=["x@1"]), smoothing=1)
    (line,) = fig.axes[0].lines
    x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    assert len(x) <= 2000 and x[0] == 0 and x[-1] == k - 1
    np.testing.assert_allclose(y, x)  # window 1: the squared values themselves


# ---------------------------------------------------------------------------------------------
# Lines, groups, legends


def test_one_line_per_demon_with_legend(run_result):
    fig = plots.learning_curves(run_result)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.lines) == run_result.n_demons == 10
    assert legend_labels(ax) == list(run_result.demon_names)
    assert not bands(ax)
    assert ax.get_xlabel() == "steps" and ax.get_ylabel() == "squared TD error"
    assert ax.get_title()


def test_choosing_demons_by_name_and_index(run_result):
    fig = plots.learning_curves(run_result, demons=["obs[2]@10", 9, "obs[2]@10"])
    assert legend_labels(fig.axes[0]) == ["obs[2]@10", "reward@10"]
    fig = plots.learning_curves(run_result, demons="reward@1")
    assert legend_labels(fig.axes[0]) == ["reward@1"]


def test_grouped_by_timescale_draws_median_and_band_per_group(run_result):
    fig = plots.learning_curves(run_result, group_by="timescale")
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(bands(ax)) == 2
    assert legend_labels(ax) == ["timescale 1 step (5 demons)", "timescale 10 steps (5 demons)"]
    assert "median" in ax.get_title()


def test_grouped_median_is_exact():
    # three demons at timescale 10: per-step median and quartiles over them
    td = np.sqrt(np.array([[1.0, 2.0, 3.0], [5.0, 6.0, 10.0]]))[None]
    result = synthetic(td, names=["a@10", "b@10", "c@10"])
    fig = plots.learning_curves(result, smoothing=1, group_by="timescale")
    ax = fig.axes[0]
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_ydata(), [2.0, 6.0])
    (band,) = bands(ax)
    ys = band.get_paths()[0].vertices[:, 1]
    assert np.isclose(ys.min(), 1.5) and np.isclose(ys.max(), 8.0)


def test_grouped_by_cumulant(run_result):
    fig = plots.learning_curves(run_result, group_by="cumulant")
    ax = fig.axes[0]
    assert len(ax.lines) == 5 and len(bands(ax)) == 5
    assert [t.split(" ")[0] for t in legend_labels(ax)] == ["obs[0]", "obs[1]", "obs[2]", "obs[3]", "reward"]


def test_groups_come_from_the_recorded_demons_not_their_names():
    # The names say nothing (or the wrong thing); RunResult.demons says what each demon is.
    td = np.sqrt(np.array([[1.0, 4.0, 9.0], [1.0, 4.0, 9.0]]))[None]
    infos = [info("p@10"), info("p@100"), info("q@100")]
    infos = [d._replace(name=n) for d, n in zip(infos, ["fast", "slow@1", "x@1"])]
    result = synthetic(td, names=["fast", "slow@1", "x@1"], infos=infos)
    ax = plots.learning_curves(result, smoothing=1, group_by="timescale").axes[0]
    assert legend_labels(ax) == ["timescale 10 steps (1 demon)", "timescale 100 steps (2 demons)"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [6.5, 6.5])  # median of 4 and 9
    ax = plots.learning_curves(result, smoothing=1, group_by="cumulant").axes[0]
    # "fast" and "slow@1" share a cumulant but no name stem: the label is the description.
    assert legend_labels(ax) == ["observation(p) (2 demons)", "x (1 demon)"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [2.5, 2.5])  # median of 1 and 4


def test_a_result_without_demon_data_has_no_timescales_and_one_cumulant_group():
    td = np.ones((1, 3, 2))
    result = synthetic(td, names=["a@1", "b@10"], infos=())
    ax = plots.learning_curves(result, group_by="timescale").axes[0]
    assert legend_labels(ax) == ["no timescale (2 demons)"]
    ax = plots.learning_curves(result, group_by="cumulant").axes[0]
    assert legend_labels(ax) == ["unknown cumulant (2 demons)"]


def test_demon_data_for_other_demons_is_refused():
    # Refused when the result is built ...
    for infos in ([info("a@1")], [info("b@10"), info("a@1")]):
        with pytest.raises(ValueError, match="demons must describe the demon_names in order"):
            synthetic(np.ones((1, 3, 2)), names=["a@1", "b@10"], infos=infos)
    # ... and by the reports, for demon data replaced after that.
    result = synthetic(np.ones((1, 3, 2)), names=["a@1", "b@10"])
    result.demons = (info("a@1"),)
    with pytest.raises(ValueError, match=r"one DemonInfo per demon \(2\) or none, got 1"):
        plots.learning_curves(result, group_by="timescale")
    result.demons = (info("b@10"), info("a@1"))
    with pytest.raises(ValueError, match=r"describes demon 'b@10', expected 'a@1'"):
        plots.learning_curves(result, group_by="timescale")


def test_many_demons_are_grouped_automatically(run_result):
    fig = plots.learning_curves(run_result, max_lines=4)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(bands(ax)) == 2  # by timescale


def test_draws_on_a_given_axes(run_result):
    fig = Figure()
    ax = fig.add_subplot()
    out = plots.learning_curves(run_result, demons=[0, 1], ax=ax)
    assert out is fig and len(ax.lines) == 2


def test_normalized_rmse_matches_error_curve(run_result):
    fig = plots.learning_curves(run_result, metric="normalized_rmse", demons=["reward@10", 0], smoothing=50)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and ax.get_ylabel().startswith("normalised RMSE")
    expected = error_curve(run_result, window=50)
    for line, i in zip(ax.lines, (9, 0)):
        np.testing.assert_allclose(line.get_xdata(), expected.steps)
        np.testing.assert_allclose(line.get_ydata(), expected.normalized_rmse[0, :, i], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Log scale


def test_log_scale_when_values_span_decades():
    wide = synthetic(np.sqrt(np.array([1e-4, 1e-2, 1.0]))[None, :, None], names=["x@1"])
    narrow = synthetic(np.sqrt(np.array([1.0, 5.0, 10.0]))[None, :, None], names=["x@1"])
    assert plots.learning_curves(wide, smoothing=1).axes[0].get_yscale() == "log"
    assert plots.learning_curves(narrow, smoothing=1).axes[0].get_yscale() == "linear"
    assert plots.learning_curves(narrow, smoothing=1, logy=True).axes[0].get_yscale() == "log"
    assert plots.learning_curves(wide, smoothing=1, logy=False).axes[0].get_yscale() == "linear"


# ---------------------------------------------------------------------------------------------
# Seeds


def test_seed_curves_mean_and_standard_error():
    td = np.sqrt(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]]))[:, :, None]  # 3 seeds, 2 steps
    fig = plots.seed_curves(synthetic(td, names=["x@1"]), smoothing=1)
    ax = fig.axes[0]
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_ydata(), [3.0, 5.0])
    se = np.std([[1, 2], [3, 4], [5, 9]], axis=0, ddof=1) / np.sqrt(3)
    (band,) = bands(ax)
    ys = band.get_paths()[0].vertices[:, 1]
    assert np.isclose(ys.min(), 3.0 - se[0]) and np.isclose(ys.max(), 5.0 + se[1])
    assert "s.e." in ax.get_title()


def test_seed_curves_per_demon_and_per_group():
    rng = np.random.default_rng(0)
    td = rng.normal(size=(3, 50, 6))
    names = ["a@1", "a@10", "b@1", "b@10", "c@1", "c@10"]
    fig = plots.seed_curves(synthetic(td, names=names))
    ax = fig.axes[0]
    assert len(ax.lines) == 6 and len(bands(ax)) == 6 and legend_labels(ax) == names
    fig = plots.seed_curves(synthetic(td, names=names), group_by="timescale")
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(bands(ax)) == 2


def test_seed_curves_with_one_seed_draw_no_band(run_result):
    ax = plots.seed_curves(run_result, demons=[0, 1, 2]).axes[0]
    assert len(ax.lines) == 3 and not bands(ax)
    assert "no error band" in ax.get_title()


# ---------------------------------------------------------------------------------------------
# Prediction vs return


def test_prediction_vs_return_panels(run_result):
    fig = plots.prediction_vs_return(run_result, demons=["obs[2]@10", "reward@10"])
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    for ax, name in zip(fig.axes, ["obs[2]@10", "reward@10"]):
        assert len(ax.lines) == 2 and ax.get_title(loc="left") == name
        pred, ret = ax.lines
        assert len(pred.get_xdata()) == 400  # the whole run: shorter than 1000 steps
        assert np.isnan(np.asarray(ret.get_ydata())[-1])  # the return at the log's end is unknown
    assert fig.axes[-1].get_xlabel() == "steps"
    ends = run_result.terminated[0] | run_result.truncated[0]
    vlines = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    assert len(vlines) == 1 and len(vlines[0].get_segments()) == int(ends.sum())


def test_prediction_vs_return_window_and_exact_returns():
    k = 20
    term = np.zeros(k, bool)
    term[[4, 11]] = True
    result = synthetic(
        np.zeros((1, k, 1)),
        names=["ones@2"],
        predictions=np.arange(k, dtype=np.float64),
        cumulants=np.ones(k),
        discounts=np.full(k, 0.5),
        terminated=term,
    )
    fig = plots.prediction_vs_return(result, demons=0, start=2, length=10)
    (ax,) = fig.axes
    pred, ret = ax.lines
    np.testing.assert_allclose(pred.get_xdata(), np.arange(2, 12))
    np.testing.assert_allclose(pred.get_ydata(), np.arange(2, 12))
    # G_t = 1 + 0.5 G_{t+1}, G = 1 at a terminal step
    np.testing.assert_allclose(ret.get_ydata()[:3], [1.75, 1.5, 1.0])
    np.testing.assert_allclose(ret.get_ydata()[-1], 1.0)
    (vl,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    np.testing.assert_allclose(sorted(seg[0][0] for seg in vl.get_segments()), [4, 11])


def test_prediction_vs_return_uses_the_recorded_terminal_outcome():
    k = 6
    term = np.zeros(k, bool)
    term[2] = True
    result = synthetic(
        np.zeros((1, k, 1)),
        names=["ones@2"],
        infos=[info("ones@2", z=2.0)],
        cumulants=np.ones(k),
        discounts=np.full(k, 0.5),
        terminated=term,
    )
    (ax,) = plots.prediction_vs_return(result, demons=0).axes
    # G_2 = c + z = 3 at the terminal step, then G_t = 1 + 0.5 G_{t+1}
    np.testing.assert_allclose(ax.lines[1].get_ydata()[:3], [2.25, 2.5, 3.0])


def test_prediction_vs_return_arguments(run_result):
    with pytest.raises(ValueError, match="demons must be given"):
        plots.prediction_vs_return(run_result, demons=None)
    with pytest.raises(ValueError, match="seed"):
        plots.prediction_vs_return(run_result, demons=[0], seed=1)
    with pytest.raises(ValueError, match="start"):
        plots.prediction_vs_return(run_result, demons=[0], start=10_000)
    with pytest.raises(ValueError, match="record_every=1"):
        plots.prediction_vs_return(synthetic(np.zeros((1, 4, 1)), record_every=2), demons=[0])


# ---------------------------------------------------------------------------------------------
# Diagnostics


def test_diagnostics_curves(run_result):
    fig = plots.diagnostics_curves(run_result)
    assert len(fig.axes) == 2
    assert [ax.get_ylabel().split(" ")[0] for ax in fig.axes] == ["RUPEE", "UDE"]
    assert all(len(ax.lines) == 10 for ax in fig.axes)
    fig = plots.diagnostics_curves(run_result, which="ude", group_by="timescale")
    (ax,) = fig.axes
    assert len(ax.lines) == 2 and len(bands(ax)) == 2


def test_diagnostics_values_are_smoothed_exactly():
    rupee = np.array([1.0, 3.0, 5.0])[None, :, None]
    result = synthetic(np.zeros((1, 3, 1)), names=["x@1"], rupee=rupee, ude=2 * rupee)
    fig = plots.diagnostics_curves(result, which="both", smoothing=2)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [1, 2, 4])
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), [2, 4, 8])


def test_diagnostics_missing_is_a_clear_error():
    with pytest.raises(ValueError, match=r"diagnostics=True"):
        plots.diagnostics_curves(synthetic(np.zeros((1, 3, 1))))


# ---------------------------------------------------------------------------------------------
# Saving


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_every_figure_saves_in_every_format(run_result, tmp_path, suffix):
    calls = {
        "learning": lambda p: plots.learning_curves(run_result, path=p),
        "grouped": lambda p: plots.learning_curves(run_result, metric="normalized_rmse", group_by="timescale", path=p),
        "seeds": lambda p: plots.seed_curves(run_result, demons=[0, 9], path=p),
        "nexting": lambda p: plots.prediction_vs_return(run_result, demons=["obs[2]@10"], path=p),
        "diagnostics": lambda p: plots.diagnostics_curves(run_result, demons=[0, 9], path=p),
    }
    magic = {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}[suffix]
    for name, call in calls.items():
        path = tmp_path / "sub" / f"{name}{suffix}"
        assert isinstance(call(path), Figure)
        data = path.read_bytes()
        assert len(data) > 1000 and data.startswith(magic), name


def test_unknown_file_suffix(run_result, tmp_path):
    with pytest.raises(ValueError, match=r"\.png"):
        plots.learning_curves(run_result, path=tmp_path / "curve.jpg")


# ---------------------------------------------------------------------------------------------
# Argument errors


def test_unknown_demon_names_the_demon_and_lists_valid_ones(run_result):
    with pytest.raises(ValueError, match=r"obs\[9\]@10") as info:
        plots.learning_curves(run_result, demons=["obs[2]@10", "obs[9]@10"])
    assert "obs[0]@1" in str(info.value)
    with pytest.raises(ValueError, match="did you mean 'reward@10'"):
        plots.seed_curves(run_result, demons="reward@100")
    with pytest.raises(ValueError, match="out of range"):
        plots.learning_curves(run_result, demons=[10])
    with pytest.raises(ValueError, match="must not be empty"):
        plots.learning_curves(run_result, demons=[])


def test_unknown_choices_list_the_valid_ones(run_result):
    with pytest.raises(ValueError, match="'td_error', 'normalized_rmse'"):
        plots.learning_curves(run_result, metric="mse")
    with pytest.raises(ValueError, match="'timescale', 'cumulant'"):
        plots.learning_curves(run_result, group_by="gamma")
    with pytest.raises(ValueError, match="'rupee', 'ude', 'both'"):
        plots.diagnostics_curves(run_result, which="rupe")
    with pytest.raises(ValueError, match="smoothing"):
        plots.learning_curves(run_result, smoothing=0)
    with pytest.raises(ValueError, match="max_lines"):
        plots.learning_curves(run_result, max_lines=0)


def test_rmse_metrics_need_every_step_recorded():
    with pytest.raises(ValueError, match="record_every=1"):
        plots.learning_curves(synthetic(np.zeros((1, 4, 1)), record_every=3), metric="normalized_rmse")


# ---------------------------------------------------------------------------------------------
# Headless


def test_works_without_a_display_and_without_pyplot(tmp_path):
    code = f"""
import sys
import numpy as np
import horde
from horde import plots
k, n = 50, 2
r = horde.RunResult(
    demon_names=("a@1", "b@10"), steps=np.arange(k), predictions=np.zeros((1, k, n)),
    td_errors=np.ones((1, k, n)), cumulants=np.zeros((1, k, n)), discounts=np.zeros((1, k, n)),
    rewards=np.zeros((1, k)), terminated=np.zeros((1, k), bool), truncated=np.zeros((1, k), bool),
    valid=np.ones((1, k), bool), episode_seed=np.zeros(0, int), episode_end_step=np.zeros(0, int),
    episode_return=np.zeros(0), episode_length=np.zeros(0, int), wall_time=1.0, total_steps=k,
    record_every=1, config={{}},
)
plots.learning_curves(r, path={str(tmp_path / "c.png")!r})
plots.prediction_vs_return(r, demons=[0], path={str(tmp_path / "p.pdf")!r})
assert "matplotlib.pyplot" not in sys.modules, "horde.plots imported pyplot"
"""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "c.png").stat().st_size > 1000 and (tmp_path / "p.pdf").stat().st_size > 1000


def test_import_horde_does_not_import_matplotlib():
    code = """
import sys
import horde
assert "matplotlib" not in sys.modules, "import horde imported matplotlib"
horde.plots.learning_curves
assert "matplotlib" in sys.modules
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def demon_info(name, timescale, cumulant, *, off_policy=False, discount_kind="timescale"):
    return demons.DemonInfo(
        name=name,
        cumulant=cumulant,
        cumulant_kind="observation",
        discount_kind=discount_kind,
        timescale=timescale,
        lamda=0.0,
        z=0.0,
        off_policy=off_policy,
    )


def test_flat_returns_marks_returns_that_barely_vary():
    """γ = 0, so G_t = c_{t+1}: a constant 1 (std 0), a 0/1 alternation (std 0.5 = mean), 1 ±
    0.01 (std = 1% of the mean), all zeros, and a γ = 1 demon that never completes."""
    k = 40
    alternate = np.arange(k) % 2
    c = np.stack([np.ones(k), alternate, 1 + 0.01 * (2 * alternate - 1), np.zeros(k), np.ones(k)], axis=1)
    g = np.zeros((k, 5))
    g[:, 4] = 1.0
    result = synthetic(np.zeros((1, k, 5)), cumulants=c, discounts=g)
    from horde.evaluation import FLAT_RETURN_FRACTION, flat_returns

    assert FLAT_RETURN_FRACTION == 0.05
    np.testing.assert_array_equal(flat_returns(result), [True, False, True, True, False])
    np.testing.assert_array_equal(flat_returns(result, fraction=0.005), [True, False, False, True, False])
    with pytest.raises(ValueError, match=r"fraction must be a number in \[0, 1\), got 1.5"):
        flat_returns(result, fraction=1.5)


def test_informative_demons_puts_declared_questions_first_and_spreads_timescales():
    rng = np.random.default_rng(0)
    k = 60
    infos = [
        demon_info("a@1", 1.0, "observation(0)"),
        demon_info("a@10", 10.0, "observation(0)"),
        demon_info("a@100", 100.0, "observation(0)"),
        demon_info("b@10", 10.0, "observation(1)"),
        demon_info("b@100", 100.0, "observation(1)"),
        demon_info("fall", None, "constant(1)", discount_kind="until"),
        demon_info("off@10", 10.0, "observation(0)", off_policy=True),
        demon_info("flat@10", 10.0, "constant(1)"),
    ]
    c = rng.normal(size=(k, 8))
    c[:, 7] = 1.0  # a constant return: flat
    result = synthetic(np.zeros((1, k, 8)), names=[i.name for i in infos], infos=infos, cumulants=c)
    names = lambda idx: [result.demon_names[i] for i in idx]  # noqa: E731
    # The declared question first; then timescales 10 and 100 (the one-step question only
    # echoes the next observation), each from the cumulant used least so far; off-policy and
    # flat demons never.
    assert names(plots.informative_demons(result)) == ["fall", "a@10", "b@100", "a@100"]
    assert names(plots.informative_demons(result, 2)) == ["fall", "a@10"]
    assert names(plots.informative_demons(result, 8)) == ["fall", "a@1", "a@10", "b@10", "b@100", "a@100"]
    with pytest.raises(ValueError, match="max_lines must be a positive integer, got 0"):
        plots.informative_demons(result, 0)


def test_a_group_without_values_leaves_the_legend():
    """Timescale-100 demons whose returns never complete (γ = 1, no episode end) have no
    normalised RMSE: their group is neither drawn nor in the legend."""
    rng = np.random.default_rng(1)
    k = 50
    g = np.zeros((k, 4))
    g[:, 2:] = 1.0
    result = synthetic(
        np.zeros((1, k, 4)),
        names=["a@1", "b@1", "c@100", "d@100"],
        predictions=rng.normal(size=(k, 4)),
        cumulants=rng.normal(size=(k, 4)),
        discounts=g,
    )
    (ax,) = plots.learning_curves(result, metric="normalized_rmse", group_by="timescale", smoothing=10).axes
    assert legend_labels(ax) == ["timescale 1 step (2 demons)"]
    assert len(ax.lines) == 1


def test_normalized_rmse_groups_leave_out_flat_returns():
    rng = np.random.default_rng(2)
    k = 60
    c = rng.normal(size=(k, 3))
    c[:, 2] = 1.0 + 0.001 * rng.normal(size=k)  # std(G) 0.1% of mean |G|: RMSE / std(G) is no score
    result = synthetic(
        np.zeros((1, k, 3)), names=["a@1", "b@1", "c@1"], predictions=rng.normal(size=(k, 3)), cumulants=c
    )
    (ax,) = plots.learning_curves(result, metric="normalized_rmse", group_by="all", smoothing=10).axes
    (two,) = plots.learning_curves(
        result, metric="normalized_rmse", demons=["a@1", "b@1"], group_by="all", smoothing=10
    ).axes
    np.testing.assert_allclose(ax.lines[0].get_ydata(), two.lines[0].get_ydata())
    assert "1 demon whose return barely varies left out" in ax.get_title()
