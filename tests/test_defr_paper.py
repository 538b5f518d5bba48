"""DEFR's paper table: defr_paper.yaml runs exactly the paper's 13 rows with C.6's per-row recipe, and `report`
lays results out on those rows (missing ones as "–", never invented; other rows kept apart)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest

from raysweep.cli import main
from raysweep.results.tables import default_layout, render_table
from raysweep.spec.load import flatten, load_sweep
from raysweep.tasks.defr.paper import DEFR_TABLE
from raysweep.tasks.defr.task import DefrTask

REPO = Path(__file__).resolve().parents[1]
PAPER_SPACE = REPO / "search_spaces" / "defr_paper.yaml"

# Spec C.6 per paper row (C.7 order): (lr, epochs). Rows without a shipped config take their group's pattern.
EXPECTED_RECIPE = [
    (1e-4, 20), (1e-4, 10),  # IN-1K random BCE / Sign: im1k_rand_{bce,sign}
    (1e-4, 20), (1e-4, 10),  # IN-1K BERT: im1k_bert_{bce,sign}
    (1e-4, 20), (1e-4, 10),  # IN-1K CLIP: (pattern) / im1k_clip_sign
    (1e-4, 10),  # IN-1K SimCSE Sign: im1k_simcselinear_sign
    (1.5e-5, 40), (1.5e-5, 40),  # CLIP random: clip_rand_bce, clip_rand_sign (40 epochs too)
    (1.5e-5, 40), (1.5e-5, 10),  # CLIP BERT: pattern
    (1.5e-5, 40), (1.5e-5, 10),  # CLIP CLIP: clip_clip_{bce,sign}
]


@pytest.fixture(scope="module")
def paper_configs():
    sweep = load_sweep(PAPER_SPACE)
    return sweep, [sweep.config_for(point) for point in sweep.grid_points()]


def test_paper_space_is_the_13_paper_rows_in_order(paper_configs) -> None:
    sweep, configs = paper_configs
    assert len(configs) == 13 and sweep.num_trials == 13
    labels = [DEFR_TABLE.row_labels(flatten(c.model_dump(mode="json"))) for c in configs]
    assert labels == list(DEFR_TABLE.rows)
    assert len({tuple(row.values()) for row in labels}) == 13
    assert len(DEFR_TABLE.published) == 13 and DEFR_TABLE.published[-1] == {"Full": 60.50, "Few@1": 49.61, "Few@5": 52.60,
                                                              "Few@10": 52.86}


def test_the_task_links_its_table_and_the_published_numbers_fill_its_columns() -> None:
    assert DefrTask.paper_table([]) is DEFR_TABLE
    assert DEFR_TABLE.published[0] == {"Full": 37.77, "Few@1": 7.91, "Few@5": 13.45, "Few@10": 14.88}
    assert all(list(numbers) == ["Full", "Few@1", "Few@5", "Few@10"] for numbers in DEFR_TABLE.published)
    assert [d for d in DEFR_TABLE.columns if d not in DEFR_TABLE.known_object] == list(DEFR_TABLE.published[0])
    assert str(DEFR_TABLE.unit) == "mAP in %" and DEFR_TABLE.unit.show(0.6050) == "60.50"


def test_row_labels_name_the_papers_rows() -> None:
    row = DEFR_TABLE.row_labels({"model.backbone": "ImageNet1k-ViT-B", "model.weights": "hub",
                                 "classifier.init": "language", "classifier.text_encoder": "bert",
                                 "classifier.head": "cosine", "loss.name": "lse_sign"})
    assert row == {"backbone init": "IN-1K", "classifier init": "BERT", "loss": "LSE-Sign"}
    row = DEFR_TABLE.row_labels({"model.backbone": "CLIP-ViT-B", "model.weights": "hub", "classifier.init": "rand",
                                 "classifier.head": "linear", "loss.name": "bce"})
    assert row == {"backbone init": "CLIP", "classifier init": "random, linear", "loss": "BCE"}


def test_paper_space_rows_carry_c6_hyper_parameters(paper_configs) -> None:
    sweep, configs = paper_configs
    assert [(c.optim.lr, c.train.epochs) for c in configs] == EXPECTED_RECIPE
    for c in configs:
        assert c.classifier.log_scale == 4.61 and not c.classifier.log_scale_trainable
        assert c.classifier.head == "cosine" and c.model.weights == "hub" and c.model.patch_size == 32
        assert (c.data.image_size, c.data.min_samples, c.data.root) == (672, 40, "/data/hico_20150920")
        assert (c.optim.weight_decay, c.optim.schedule, c.optim.t0) == (0.0, "cosine_restarts", 5)
        assert (c.train.batch_size, c.train.eval_every) == (16, 5)
    resources = sweep.spec.resources
    assert (resources.num_workers, resources.use_gpu, sweep.spec.scheduler.type) == (8, True, "none")
    assert sweep.max_epochs == 40


def test_validate_prints_13_grid_points_without_the_data(tmp_path: Path, capsys) -> None:
    main(["validate", str(PAPER_SPACE), "trials.num_samples=2", f"data.root={tmp_path / 'absent'}"])
    out = capsys.readouterr().out
    assert "26 trials (13 grid points × 2)" in out and "OK" in out


def _trial(backbone: str, init: str, encoder: str, loss: str, full: float, outcome: str = "completed",
           seed: int = 0) -> dict:
    """One results-parquet row; the four Few/KO metrics are fixed fractions of Full so each cell is checkable."""
    return {"experiment": "e", "task": "defr", "trial_id": f"t{seed}{full}", "status": "TERMINATED",
            "outcome": outcome, "config.model.backbone": backbone, "config.model.weights": "hub",
            "config.classifier.init": init, "config.classifier.text_encoder": encoder,
            "config.classifier.head": "cosine", "config.classifier.shuffle": False, "config.loss.name": loss,
            "config.train.seed": seed, "last.map": full, "last.map_few1": full / 2, "last.map_few5": full / 4,
            "last.map_few10": full / 5, "last.map_ko": full + 0.1}


@pytest.fixture()
def frame() -> pd.DataFrame:
    return pd.DataFrame([
        _trial("CLIP-ViT-B", "language", "clip", "lse_sign", 0.60, seed=0),
        _trial("CLIP-ViT-B", "language", "clip", "lse_sign", 0.62, seed=1),  # mean 61.00, std 1.41
        _trial("ImageNet1k-ViT-B", "rand", "minilm", "bce", 0.40),
        _trial("ImageNet1k-ViT-B", "language", "bert", "bce", 0.99, outcome="pruned"),  # not completed
        _trial("ImageNet21k-ViT-B", "rand", "minilm", "bce", 0.30),  # not a paper row
    ])


def _markdown_rows(table: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| backbone")]


def test_paper_layout_shows_exactly_the_paper_rows_and_marks_missing(frame) -> None:
    assert default_layout(frame) == "paper"
    text = render_table(frame)
    paper_part, _, extra_part = text.partition("Not in the paper")
    rows = _markdown_rows(paper_part)
    assert [row[:3] for row in rows] == [list(r.values()) for r in DEFR_TABLE.rows]
    assert rows[-1][3:] == ["61.00 ± 1.41", "30.50 ± 0.71", "15.25 ± 0.35", "12.20 ± 0.28", "2"]
    assert rows[0][3:] == ["40.00", "20.00", "10.00", "8.00", "1"]  # one trial: no std
    assert rows[2][3:] == ["–", "–", "–", "–", "0"]  # only a pruned trial: missing, not 99
    missing = [row for row in rows if row[3] == "–"]
    assert len(missing) == 11 and all(row[3:7] == ["–"] * 4 for row in missing)
    assert "IN-21K" not in paper_part and "Known-Object" not in text
    assert _markdown_rows(extra_part) == [["IN-21K", "random", "BCE", "30.00", "15.00", "7.50", "6.00", "1"]]


def test_paper_layout_options_and_formats(frame) -> None:
    with_ko = _markdown_rows(render_table(frame, with_ko=True).partition("Not in the paper")[0])
    assert with_ko[-1][3:] == ["61.00 ± 1.41", "30.50 ± 0.71", "15.25 ± 0.35", "12.20 ± 0.28", "71.00 ± 1.41", "2"]
    latex = render_table(frame, "latex").splitlines()
    assert latex.count(r"\midrule") == 2 and latex[latex.index(r"\midrule", 4) + 1].split()[0] == "IN-21K"
    csv = pd.read_csv(io.StringIO(render_table(frame, "csv")))
    assert list(csv["in_paper"]) == [True] * 13 + [False] and list(csv["n"])[:3] == [1, 0, 0]
    assert math.isnan(csv["Full mean"][1]) and csv["Full mean"][12] == pytest.approx(0.61)
    results = _markdown_rows(render_table(frame, layout="results"))
    assert len(results) == 3 and {row[0] for row in results} == {"CLIP", "IN-1K", "IN-21K"}
    everything = _markdown_rows(render_table(frame, statuses=None).partition("Not in the paper")[0])
    assert everything[2][3] == "99.00"


def test_results_layout_is_the_default_for_non_paper_sweeps(frame) -> None:
    embedded = frame.assign(**{"config.model.backbone": "vit_tiny", "config.model.weights": "random"})
    assert default_layout(embedded) == "results"
    assert "Not in the paper" not in render_table(embedded) and "–" not in render_table(embedded)
