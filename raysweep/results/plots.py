"""The sweep's views from its own files, offline: one self-contained HTML page (plotly, JS inlined) and PNGs
(matplotlib).

Views: optimisation history (best so far), parallel coordinates and hyper-parameter importance (Optuna's own
functions on the experiment's study), learning curves per trial with pruned trials marked at their rung, per-class
AP against training samples (log x, the rare boundary at 10), Rare vs Non-rare (HICO-DET) or Few@1 vs Full (HICO)
across trials, and the paper table.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from raysweep.errors import UserError
from raysweep.experiment import per_class as per_class_files
from raysweep.experiment import storage
from raysweep.experiment.layout import META_FILE, PLOTS_DIR, ExperimentLayout
from raysweep.experiment.meta import load_saved_sweep
from raysweep.results.collect import collect_frame, trial_rows
from raysweep.results.history import history_frame

log = logging.getLogger(__name__)
FORMATS = ("html", "png")
PAGE_FILE = "index.html"
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)  # matplotlib's tab10, used by both backends so a trial has one colour everywhere
OUTCOME_STYLE = {"completed": ("circle", "o"), "pruned": ("x", "X"), "error": ("triangle-down", "v")}


@dataclass
class Experiment:
    """Everything the views read, collected fresh from the experiment folder (nothing re-evaluated)."""

    path: str
    name: str
    task: str
    trials: list[dict[str, Any]]  # collect.trial_rows' records, in the order Tune created the trials
    results: pd.DataFrame  # collect_frame
    history: pd.DataFrame  # history_frame (tidy)
    per_class: pd.DataFrame  # gathered per-class files
    sweep: Any  # spec.load.Sweep of the saved space copy, or None
    metric: str
    mode: str

    def outcome(self, trial_id: str) -> str:
        row = self.results[self.results["trial_id"] == trial_id]
        return str(row["outcome"].iloc[0]) if len(row) else "unknown"

    def colour(self, trial_id: str) -> str:
        order = [t["trial_id"] for t in self.trials]
        return PALETTE[order.index(trial_id) % len(PALETTE)] if trial_id in order else "#333333"

    def label(self, trial_id: str) -> str:
        order = [t["trial_id"] for t in self.trials]
        return f"#{order.index(trial_id)} {trial_id}" if trial_id in order else trial_id

    def described(self, trial_id: str) -> str:
        """The label with the trial's sampled values, e.g. `#0 ed9a1bd5: rand, lse_sign, 0.00079`."""
        sampled = next((t.get("sampled") or {} for t in self.trials if t["trial_id"] == trial_id), {})
        values = [f"{v:.2g}" if isinstance(v, float) else str(v) for v in sampled.values()]
        return f"{self.label(trial_id)}: {', '.join(values)}" if values else self.label(trial_id)

    def metric_label(self, metric: Optional[str] = None) -> str:
        metric = metric or self.metric
        display = {m: d for d, m in self._table_columns().items()}.get(metric.split(".")[-1])
        return f"{metric} ({display})" if display else metric

    def _table_columns(self) -> dict[str, str]:
        from raysweep.results.tables import task_table, trial_configs

        try:
            return dict(task_table(self.task, trial_configs(self.results)).columns)
        except Exception:  # noqa: BLE001 - an unknown task name in a foreign experiment
            return {}


def load_experiment(experiment_dir: str) -> Experiment:
    experiment_dir = storage.normalise(experiment_dir)
    read = trial_rows(experiment_dir)
    trials, meta = read
    trials.sort(key=_creation_index)
    sweep = _saved_sweep(experiment_dir, meta)
    metric = sweep.metric if sweep is not None else "map"
    return Experiment(
        path=experiment_dir,
        name=str(meta.get("name")),
        task=str(meta.get("task")),
        trials=trials,
        results=collect_frame(experiment_dir, read),
        history=history_frame(trials, meta),
        per_class=per_class_files.gather(experiment_dir, [t["trial_id"] for t in trials]),
        sweep=sweep,
        metric=metric,
        mode=sweep.mode if sweep is not None else "max",
    )


def _creation_index(trial: dict[str, Any]) -> tuple[int, str]:
    """Tune numbers trials as it creates them in their folder names (`<trainable>_<id>_<n>_<params>_<date>`)."""
    match = re.search(rf"_{re.escape(str(trial['trial_id']))}_(\d+)_", str(trial.get("dir") or ""))
    return (int(match.group(1)) if match else 1 << 30, str(trial["trial_id"]))


def _saved_sweep(experiment_dir: str, meta: dict[str, Any]):
    """The experiment's own copy of its space file with its overrides, or None when it is missing or unreadable."""
    layout = ExperimentLayout(experiment_dir)
    if not storage.exists(layout.space_copy):
        return None
    try:
        return load_saved_sweep(layout, meta.get("overrides", []))
    except UserError as err:
        log.warning("%s: %s; the Optuna views are left out", layout.space_copy, err)
        return None


# ---- views ---------------------------------------------------------------------------------------------------------


@dataclass
class View:
    """One section of the page: a plotly figure (and its PNG drawer), or HTML, or a note saying why it is empty."""

    key: str
    title: str
    caption: str
    figure: Any = None  # plotly Figure
    png: Optional[Callable[[Path], None]] = None  # writes the matplotlib version
    html: Optional[str] = None
    note: Optional[str] = None
    facts: dict[str, Any] = field(default_factory=dict)  # what the view shows, in numbers (for reports and tests)


def build_views(exp: Experiment) -> list[View]:
    views: list[View] = []
    study, source = _study(exp)
    views += _optuna_views(exp, study, source)
    views.append(learning_curves(exp))
    views.append(per_class_ap(exp))
    views.append(group_scatter(exp))
    views.append(paper_table(exp))
    return views


def _study(exp: Experiment):
    if exp.sweep is None:
        return None, "no space file in the experiment"
    from raysweep.results.study_view import load_study

    return load_study(exp.path, exp.sweep, exp.trials)


def _optuna_views(exp: Experiment, study: Any, source: str) -> list[View]:
    import optuna.visualization as ov
    import optuna.visualization.matplotlib as om
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState

    from raysweep.experiment.study import TRIAL_ID_ATTR
    from raysweep.results.study_view import common_rung, study_at_epoch

    specs: list[tuple[str, str, str, Callable[..., Any], Callable[..., Any], int]] = [
        (
            "history",
            "Optimisation history",
            f"{exp.metric_label()} of each completed trial in start order, and the best so far ({exp.mode}).",
            ov.plot_optimization_history,
            om.plot_optimization_history,
            1,
        ),
        (
            "parallel",
            "Parallel coordinates",
            f"Each completed trial's searched values and its {exp.metric_label()}.",
            ov.plot_parallel_coordinate,
            om.plot_parallel_coordinate,
            1,
        ),
        (
            "importance",
            "Hyper-parameter importance",
            f"fANOVA importance of each searched parameter for "
            f"{exp.metric_label()} over the completed trials (parameters set in every one of them).",
            ov.plot_param_importances,
            om.plot_param_importances,
            2,
        ),
    ]
    views = []
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE] if study is not None else []
    rung = common_rung(study) if study is not None else None
    equal_budget = study_at_epoch(study, rung) if rung is not None else None
    for key, title, caption, plotly_fn, mpl_fn, needed in specs:
        view = View(key, title, caption + f" Study: {source}.")
        views.append(view)
        if study is None:
            view.note = f"no Optuna study ({source})"
            continue
        shown = study
        if key != "history" and equal_budget is not None and len(equal_budget.trials) > len(complete):
            # Few trials ran to the end (ASHA): compare every trial at the last epoch all of them reached.
            shown, complete_here = equal_budget, equal_budget.trials
            view.caption += (
                f" Only {len(complete)} of {len(study.trials)} trials ran to the end, so this view "
                f"compares every trial at epoch {rung}, the last epoch all of them reached (pruned "
                f"ones included)."
            )
        else:
            complete_here = complete
        if len(complete_here) < needed:
            view.note = (
                f"needs {needed} completed trial{'s' * (needed > 1)}; this experiment has "
                f"{len(complete_here)} (of {len(study.trials)})"
            )
            continue
        kwargs: dict[str, Any] = {"target_name": exp.metric_label()}
        if key == "importance":
            kwargs["evaluator"] = FanovaImportanceEvaluator(seed=0)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    importances = get_param_importances(shown, evaluator=FanovaImportanceEvaluator(seed=0))
                    view.facts = {"importance": {k: float(v) for k, v in importances.items()}}
            except (RuntimeError, ValueError) as exc:
                view.note = f"importance cannot be computed: {exc}"
                continue
            if not view.facts["importance"]:
                view.note = "no parameter is set in every completed trial"
                continue
        if key == "history":
            values = [t.value for t in complete]
            best = max(values) if exp.mode == "max" else min(values)
            best_trial = next(t for t in complete if t.value == best)
            view.facts = {
                "completed": len(complete),
                "best": best,
                "best_trial": best_trial.user_attrs.get(TRIAL_ID_ATTR, best_trial.number),
            }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's matplotlib backend is marked experimental
            view.figure = plotly_fn(shown, **kwargs)
        view.figure.update_layout(title=None, template="plotly_white", height=420)
        view.png = _optuna_png(mpl_fn, shown, kwargs)
        if shown is not study:
            view.facts["epoch"] = rung
            view.facts["trials"] = len(shown.trials)
    return views


def _optuna_png(mpl_fn: Callable, study: Any, kwargs: dict[str, Any]) -> Callable[[Path], None]:
    def draw(path: Path) -> None:
        import matplotlib
        import matplotlib.pyplot as plt

        with warnings.catch_warnings(), matplotlib.rc_context():  # Optuna switches the global style to ggplot
            warnings.simplefilter("ignore")
            result = mpl_fn(study, **kwargs)
            figure = (result.flat[0] if hasattr(result, "flat") else result).figure
            figure.set_size_inches(9, 5)
            figure.tight_layout()
            figure.savefig(path, dpi=100)
            plt.close(figure)

    return draw


def _curves(exp: Experiment, metric: str, evaluated_only: bool) -> dict[str, pd.DataFrame]:
    rows = exp.history[exp.history["metric"] == metric]
    if evaluated_only:
        rows = rows[rows["evaluated"]]
    return {str(t): g.sort_values("epoch") for t, g in rows.groupby("trial_id", sort=False)}


def learning_curves(exp: Experiment) -> View:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    view = View(
        "curves",
        "Learning curves",
        f"{exp.metric_label()} at each evaluated epoch (left) and the training "
        "loss (right) of every trial; ✕ marks a trial pruned at that rung, ▼ a failed one.",
    )
    objective, loss = _curves(exp, exp.metric, True), _curves(exp, "loss", False)
    if not objective and not loss:
        view.note = "no trial has reported an epoch yet"
        return view
    fig = make_subplots(rows=1, cols=2, subplot_titles=(exp.metric_label(), "training loss"))
    order = [t["trial_id"] for t in exp.trials]
    stopped = {}
    for col, curves in ((1, objective), (2, loss)):
        for trial_id in [t for t in order if t in curves]:
            g, outcome = curves[trial_id], exp.outcome(trial_id)
            fig.add_trace(
                go.Scatter(
                    x=g["epoch"],
                    y=g["value"],
                    mode="lines+markers",
                    name=exp.described(trial_id),
                    legendgroup=trial_id,
                    showlegend=col == 1,
                    line={"color": exp.colour(trial_id)},
                    marker={"size": 5},
                    hovertemplate=f"{exp.label(trial_id)} ({outcome})<br>epoch %{{x}}<br>%{{y:.4f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
            if outcome in ("pruned", "error"):
                last = g.iloc[-1]
                stopped[trial_id] = int(last["epoch"])
                fig.add_trace(
                    go.Scatter(
                        x=[last["epoch"]],
                        y=[last["value"]],
                        mode="markers",
                        legendgroup=trial_id,
                        showlegend=False,
                        marker={
                            "symbol": OUTCOME_STYLE[outcome][0],
                            "size": 13,
                            "color": exp.colour(trial_id),
                            "line": {"width": 1, "color": "black"},
                        },
                        hovertemplate=f"{exp.label(trial_id)} {outcome} at epoch %{{x}}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_layout(template="plotly_white", height=430, legend={"title": "trial"})
    view.figure = fig
    view.facts = {"trials": len(set(objective) | set(loss)), "stopped_at_epoch": stopped}

    def draw(path: Path) -> None:
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, curves, title in ((axes[0], objective, exp.metric_label()), (axes[1], loss, "training loss")):
            for trial_id in [t for t in order if t in curves]:
                g, outcome = curves[trial_id], exp.outcome(trial_id)
                ax.plot(g["epoch"], g["value"], "-o", ms=3, color=exp.colour(trial_id), label=exp.described(trial_id))
                if outcome in ("pruned", "error"):
                    ax.plot(
                        g["epoch"].iloc[-1],
                        g["value"].iloc[-1],
                        OUTCOME_STYLE[outcome][1],
                        ms=11,
                        color=exp.colour(trial_id),
                        mec="black",
                    )
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        legend_at = axes[0] if axes[0].get_legend_handles_labels()[0] else axes[1]
        legend_at.legend(fontsize=7, title="trial (✕ pruned)" if stopped else "trial", title_fontsize=7)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)

    view.png = draw
    return view


def _reference_trial(exp: Experiment) -> Optional[str]:
    """The trial whose per-class AP is shown: the best completed one by its best objective, else any with rows."""
    with_rows = set(exp.per_class["trial_id"]) if len(exp.per_class) else set()
    frame = exp.results[exp.results["trial_id"].isin(with_rows)] if len(exp.results) else exp.results
    if frame.empty:
        return None
    split = exp.metric.split(".", 1)[0] if "." in exp.metric else ""
    column = next((c for c in (f"best_{split}.{exp.metric}", f"best.{exp.metric}") if c in frame), f"last.{exp.metric}")
    completed = frame[frame["outcome"] == "completed"]
    pool = completed if len(completed) else frame
    if column not in pool:
        return str(pool["trial_id"].iloc[0])
    values = pd.to_numeric(pool[column], errors="coerce")
    index = values.idxmax() if exp.mode == "max" else values.idxmin()
    return str(pool.loc[index, "trial_id"]) if not pd.isna(index) else str(pool["trial_id"].iloc[0])


def per_class_ap(exp: Experiment) -> View:
    import plotly.graph_objects as go

    view = View(
        "per_class",
        "Per-class AP vs training samples",
        f"AP of every class at the last evaluation of the best trial, against its number of training "
        f"samples (log scale); the dashed line is the rare boundary ({per_class_files.RARE_BOUNDARY}).",
    )
    trial_id = _reference_trial(exp)
    if trial_id is None:
        view.note = "no per-class results saved yet (they are written at each evaluation)"
        return view
    rows = exp.per_class[exp.per_class["trial_id"] == trial_id]
    split = "test" if (rows["split"] == "test").any() else str(rows["split"].iloc[0])
    rows = rows[rows["split"] == split]
    epoch = int(rows["epoch"].max())
    rows = rows[rows["epoch"] == epoch].copy()
    view.caption += f" Trial {exp.label(trial_id)}, epoch {epoch}, {split} split."
    rows["x"] = rows["n_train"].clip(lower=0).astype(float).where(rows["n_train"] > 0, 0.5)
    groups = _class_groups(rows)
    fig = go.Figure()
    for (name, colour), members in groups:
        fig.add_trace(
            go.Scatter(
                x=members["x"],
                y=100 * members["ap"],
                mode="markers",
                name=name,
                marker={"color": colour, "size": 8, "opacity": 0.8, "line": {"width": 0.5, "color": "black"}},
                text=members["class_name"],
                hovertemplate="%{text}<br>training samples %{customdata}<br>AP %{y:.1f}<extra></extra>",
                customdata=members["n_train"],
            )
        )
    boundary = per_class_files.RARE_BOUNDARY  # a trace, not a shape: shapes on log axes autorange oddly
    fig.add_trace(
        go.Scatter(
            x=[boundary, boundary],
            y=[-3, 103],
            mode="lines",
            name=f"rare < {boundary}",
            line={"dash": "dash", "color": "#555"},
            hoverinfo="skip",
        )
    )
    fig.update_xaxes(type="log", title_text="training samples of the class (0 drawn at 0.5)")
    fig.update_yaxes(title_text="AP (%)", range=[-3, 103])
    fig.update_layout(template="plotly_white", height=430)
    view.figure = fig
    below = rows[rows["n_train"] < per_class_files.RARE_BOUNDARY]["ap"]
    above = rows[rows["n_train"] >= per_class_files.RARE_BOUNDARY]["ap"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant AP (e.g. all 0 early on) has no rank correlation: NaN
        spearman = float(rows["ap"].corr(rows["n_train"], method="spearman")) if len(rows) > 2 else math.nan
    view.facts = {
        "trial": trial_id,
        "epoch": epoch,
        "classes": len(rows),
        "mean_ap_below_10": float(below.mean()) if len(below) else math.nan,
        "mean_ap_from_10": float(above.mean()) if len(above) else math.nan,
        "spearman_ap_vs_n_train": spearman,
    }

    def draw(path: Path) -> None:
        import matplotlib.pyplot as plt

        figure, ax = plt.subplots(figsize=(8, 4.5))
        for (name, colour), members in groups:
            ax.scatter(
                members["x"],
                100 * members["ap"],
                s=28,
                color=colour,
                edgecolor="black",
                linewidth=0.4,
                alpha=0.85,
                label=name,
            )
        ax.axvline(per_class_files.RARE_BOUNDARY, ls="--", color="#555")
        ax.text(per_class_files.RARE_BOUNDARY, 101, f" rare < {per_class_files.RARE_BOUNDARY}", fontsize=8, va="top")
        ax.set_xscale("log")
        ax.set_ylim(-3, 103)
        ax.set_xlabel("training samples of the class (0 drawn at 0.5)")
        ax.set_ylabel("AP (%)")
        ax.set_title(f"Per-class AP, {exp.label(trial_id)}, epoch {epoch}")
        _save_scatter(figure, ax, path)

    view.png = draw
    return view


def _class_groups(rows: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """Classes split by HICO-DET's rare flag, or by HICO's smallest Few@k list, or not at all."""
    if "rare" in rows and rows["rare"].notna().any():
        rare = rows["rare"].astype("boolean")  # null: no training instance
        parts = [
            (("rare", PALETTE[3]), rows[rare.fillna(False).to_numpy(bool)]),
            (("non-rare", PALETTE[0]), rows[(~rare).fillna(False).to_numpy(bool)]),
            (("no training instance", PALETTE[7]), rows[rare.isna().to_numpy(bool)]),
        ]
    elif "few_shot_k" in rows:
        k = pd.to_numeric(rows["few_shot_k"], errors="coerce")
        parts = [
            ((f"Few@{int(v)}", colour), rows[k == v])
            for v, colour in ((1, PALETTE[3]), (5, PALETTE[1]), (10, PALETTE[8]))
        ]
        parts.append((("not few-shot", PALETTE[0]), rows[k.isna()]))
    else:
        parts = [(("class", PALETTE[0]), rows)]
    return [(name, members) for name, members in parts if len(members)]


def group_scatter(exp: Experiment) -> View:
    import plotly.graph_objects as go

    detection = exp.task == "hqm" or any(str(c).endswith("map_rare") for c in exp.results.columns)
    x_metric, y_metric = ("map_rare", "map_non_rare") if detection else ("map_few1", "map")
    # the paper's numbers are test numbers: `last.test.*` when the sweep also evaluates a validation split
    prefixes = ["test.", exp.metric.rsplit(".", 1)[0] + "." if "." in exp.metric else "", ""]
    prefix = next(
        (p for p in prefixes if f"last.{p}{x_metric}" in exp.results and f"last.{p}{y_metric}" in exp.results),
        prefixes[0],
    )
    x_col, y_col = f"last.{prefix}{x_metric}", f"last.{prefix}{y_metric}"
    title = "Rare vs Non-rare" if detection else "Few@1 vs Full"
    view = View(
        "groups",
        title,
        f"Every trial's last {exp.metric_label(prefix + x_metric)} against its "
        f"{exp.metric_label(prefix + y_metric)} (in %), by outcome"
        + ("; points above the diagonal do better on non-rare classes." if detection else "."),
    )
    if exp.results.empty or x_col not in exp.results or y_col not in exp.results:
        view.note = f"no trial has reported {x_col} and {y_col} yet"
        return view
    frame = exp.results[["trial_id", "outcome", x_col, y_col]].copy()
    frame[[x_col, y_col]] = frame[[x_col, y_col]].apply(pd.to_numeric, errors="coerce") * 100
    frame = frame.dropna()
    if frame.empty:
        view.note = f"{x_col} / {y_col} are not finite for any trial (e.g. no rare class in the test set)"
        return view
    fig = go.Figure()
    for outcome, members in frame.groupby("outcome", sort=True):
        symbol = OUTCOME_STYLE.get(str(outcome), ("diamond", "D"))[0]
        fig.add_trace(
            go.Scatter(
                x=members[x_col],
                y=members[y_col],
                mode="markers",
                name=str(outcome),
                marker={
                    "symbol": symbol,
                    "size": 14,
                    "color": [exp.colour(t) for t in members["trial_id"]],
                    "line": {"width": 1, "color": "black"},
                },
                text=[exp.label(t) for t in members["trial_id"]],
                hovertemplate="%{text}<br>%{x:.2f} / %{y:.2f}<extra></extra>",
            )
        )
    low = min(frame[x_col].min(), frame[y_col].min())
    high = max(frame[x_col].max(), frame[y_col].max())
    pad = max(1.0, 0.05 * (high - low))
    if detection:
        fig.add_shape(
            type="line", x0=low - pad, y0=low - pad, x1=high + pad, y1=high + pad, line={"dash": "dot", "color": "#888"}
        )
    fig.update_xaxes(title_text=f"{x_metric} (%)")
    fig.update_yaxes(title_text=f"{y_metric} (%)")
    fig.update_layout(template="plotly_white", height=430, legend={"title": "outcome"})
    view.figure = fig
    view.facts = {
        "trials": len(frame),
        "x": x_col,
        "y": y_col,
        "corr": float(frame[x_col].corr(frame[y_col])) if len(frame) > 2 else math.nan,
    }

    def draw(path: Path) -> None:
        import matplotlib.pyplot as plt

        figure, ax = plt.subplots(figsize=(6.5, 5))
        for outcome, members in frame.groupby("outcome", sort=True):
            ax.scatter(
                members[x_col],
                members[y_col],
                s=120,
                marker=OUTCOME_STYLE.get(str(outcome), ("", "D"))[1],
                c=[exp.colour(t) for t in members["trial_id"]],
                edgecolor="black",
                label=str(outcome),
            )
        if detection:
            ax.plot([low - pad, high + pad], [low - pad, high + pad], ":", color="#888")
        ax.set_xlabel(f"{x_metric} (%)")
        ax.set_ylabel(f"{y_metric} (%)")
        ax.set_title(title)
        _save_scatter(figure, ax, path)

    view.png = draw
    return view


def _save_scatter(figure: Any, ax: Any, path: Path) -> None:
    """A scatter view's PNG: grid and legend on its axes, written to `path`, the figure freed."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def paper_table(exp: Experiment) -> View:
    from raysweep.results.tables import render_table

    view = View(
        "table",
        "Paper table",
        "Completed trials, mean ± std over trials (seeds) sharing a row, as `raysweep report` prints it.",
    )
    if exp.results.empty:
        view.note = "no trials yet"
        return view
    try:
        text = render_table(exp.results, "markdown", statuses=("completed",))
        if text.startswith("(no trials"):
            view.caption = "No trial has completed yet: every trial, whatever its outcome."
            text = render_table(exp.results, "markdown", statuses=None)
    except Exception as exc:  # noqa: BLE001 - the plots stay useful when the table cannot be laid out
        log.warning("the paper table could not be rendered: %s: %s", type(exc).__name__, exc)
        view.note = f"the table could not be rendered ({type(exc).__name__}: {exc}); try `raysweep report`"
        return view
    view.html = f"<pre class='table'>{html.escape(text)}</pre>"
    view.facts = {"markdown": text}
    return view


# ---- output --------------------------------------------------------------------------------------------------------


def render_page(exp: Experiment, views: list[View]) -> str:
    """One HTML document with plotly.js inlined: it opens from a file with no network."""
    from plotly.offline import get_plotlyjs

    counts = exp.results["outcome"].value_counts().to_dict() if len(exp.results) else {}
    summary = ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "no trials yet"
    sections, toc = [], []
    for view in views:
        toc.append(f"<li><a href='#{view.key}'>{html.escape(view.title)}</a></li>")
        body = ""
        if view.figure is not None:
            body = view.figure.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"fig-{view.key}",
                config={"displaylogo": False, "responsive": True},
            )
        elif view.html is not None:
            body = view.html
        if view.note:
            body += f"<p class='note'>Not shown: {html.escape(view.note)}.</p>"
        sections.append(
            f"<section id='{view.key}'><h2>{html.escape(view.title)}</h2>"
            f"<p class='caption'>{html.escape(view.caption)}</p>{body}</section>"
        )
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>raysweep: {html.escape(exp.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1150px; color: #222; }}
section {{ margin-top: 2em; }} .caption {{ color: #555; }} .note {{ color: #a33; }}
pre.table {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 13px; }}
</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>{html.escape(exp.name)} <small>({html.escape(exp.task)})</small></h1>
<p>{html.escape(exp.path)} — {len(exp.results)} trials ({html.escape(summary)}); objective
{html.escape(exp.metric_label())}, {exp.mode}; generated {stamp}.</p>
<ul>{"".join(toc)}</ul>
{"".join(sections)}
</body></html>
"""


def write_plots(
    experiment_dir: str, out_dir: Optional[str] = None, formats: tuple[str, ...] = FORMATS
) -> tuple[list[Path], list[View]]:
    """Write the page (index.html) and/or one PNG per view into `out_dir` (default `<experiment>/plots`)."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UserError(f"--format: {bad[0]!r} is not one of {', '.join(FORMATS)}")
    exp = load_experiment(experiment_dir)
    out = Path(out_dir or default_out_dir(exp.path)).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    import matplotlib

    matplotlib.use("Agg")
    views = build_views(exp)
    written = []
    if "html" in formats:
        page = out / PAGE_FILE
        storage.write_text_atomic(str(page), render_page(exp, views))
        written.append(page)
    if "png" in formats:
        for view in views:
            if view.png is not None:
                path = out / f"{view.key}.png"
                view.png(path)
                written.append(path)
        table = next((v for v in views if v.key == "table" and "markdown" in v.facts), None)
        if table is not None:
            (out / "table.md").write_text(table.facts["markdown"] + "\n")
            written.append(out / "table.md")
    return written, views


def default_out_dir(experiment_dir: str) -> str:
    """`<experiment>/plots` for a local experiment; `./<name>-plots` for one behind a URI."""
    if storage.is_uri(experiment_dir):
        return f"{experiment_dir.rstrip('/').rsplit('/', 1)[-1]}-plots"
    return str(Path(experiment_dir) / PLOTS_DIR)


def experiment_of(source: str) -> str:
    """The experiment folder behind `raysweep report`'s source: the folder itself, or the experiment holding a
    results parquet."""
    source = storage.normalise(source)
    if source.endswith(".parquet"):
        folder = source.rsplit("/", 1)[0]
        if storage.exists(storage.join(folder, META_FILE)):
            return folder
        raise UserError(
            f"--html: {source} is not inside an experiment folder; the plots read the experiment's "
            f"files, so give the experiment folder (<storage>/<name>)"
        )
    return source


def check_html_target(source: str, target: str) -> None:
    experiment_of(source)
    path = Path(target).expanduser()
    if path.is_dir():
        raise UserError(f"--html {target}: is a folder; give a file name such as report.html")
    if not path.parent.is_dir():
        raise UserError(f"--html {target}: no such folder {path.parent}")


def write_report_page(source: str, target: str) -> Path:
    """The HTML page of `raysweep plots` (every view and the paper table) written to `target`."""
    exp = load_experiment(experiment_of(source))
    path = Path(target).expanduser().resolve()
    storage.write_text_atomic(str(path), render_page(exp, build_views(exp)))
    return path
