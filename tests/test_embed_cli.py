"""`raysweep embed` and the once-per-sweep preparation of every text encoder × prompt combination."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raysweep.commands.embed import nearest_classes, project_2d
from raysweep.spec.load import load_sweep
from raysweep.sweep import task_cache
from raysweep.sweep.prepare import prepare_combinations
from raysweep.tasks.defr.task import DefrTask
from support import run_cli

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.synth.num_train=40", "data.synth.num_test=100", "data.synth.image_size=32", "data.image_size=32"]


def test_embed_prints_every_combination_writes_cache_and_png(tmp_path: Path, capsys) -> None:
    png = tmp_path / "plots" / "embeddings.png"
    argv = ["embed", str(REPO / "search_spaces/defr.yaml"), *TINY, "--out", str(tmp_path / "cache"), "--plot", str(png)]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    blocks = out.split("\n[")[1:]
    assert [re.search(r"template '(\w+)'", b).group(1) for b in blocks] == ["default", "gerund", "ensemble"]
    assert all("encoder minilm" in b and "classes: 34, width: 384" in b for b in blocks)
    files = [Path(re.search(r"cache file: (\S+)", b).group(1)) for b in blocks]
    assert len(set(files)) == 3 and all(f.is_file() and f.parent == tmp_path / "cache" / "embeddings" for f in files)
    assert np.load(files[0]).shape == (34, 384)
    assert all(len(re.findall(r"\(\d\.\d\d\)", b)) == 5 * 3 for b in blocks)  # 5 probes × 3 neighbours
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 500 and image.height > 500
    stamps = [f.stat().st_mtime_ns for f in files]
    code, again, _ = run_cli(argv[:-2], capsys)  # second run: read from the cache, nothing rewritten
    assert code == 0 and [f.stat().st_mtime_ns for f in files] == stamps and str(files[2]) in again


def test_embed_rejects_bad_method_and_non_defr_tasks(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["embed", str(REPO / "search_spaces/defr.yaml"), "--method", "umap"], capsys)
    assert code == 2 and "--method: 'umap' is not one of pca, tsne" in err
    space = tmp_path / "hqm.yaml"
    space.write_text("task: hqm\n")
    code, _, err = run_cli(["embed", str(space)], capsys)
    assert code == 2 and "`embed` is for task 'defr'" in err


def test_nearest_classes_and_pca_on_hand_made_vectors() -> None:
    vectors = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    near = dict(nearest_classes(vectors, probes=2, k=2))
    assert list(near) == [0, 3]
    assert [j for j, _ in near[0]] == [1, 2] and near[0][0][1] == pytest.approx(0.8)
    assert near[3][0][1] == pytest.approx(0.0)
    xy, note = project_2d(np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]]), "pca")
    assert np.allclose(np.abs(xy[:, 0]), [2.0, 0.0, 2.0]) and np.allclose(xy[:, 1], 0.0) and "100%" in note


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_prepare_combinations_respect_conditions_and_rows(tmp_path: Path) -> None:
    sweep = load_sweep(_write(tmp_path, """
        task: defr
        config: {classifier: {text_encoder: minilm}}
        search:
          classifier.init: {distribution: choice, values: [language, rand]}
          classifier.text_encoder: {distribution: grid, values: [minilm, bert], when: {classifier.init: language}}
          prompts.template: {distribution: choice, values: [default, gerund], when: {classifier.text_encoder: minilm}}
          optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2}
          loss.name: {distribution: choice, values: [bce, lse_sign]}
    """))
    combos = [(c["classifier.init"], c["classifier.text_encoder"], c["prompts.template"])
              for c in prepare_combinations(sweep)]
    # rand keeps the fixed encoder, whose template condition then holds (minilm); bert keeps the default template.
    assert combos == [("language", "minilm", "default"), ("language", "minilm", "gerund"),
                      ("language", "bert", "default"), ("rand", "minilm", "default"), ("rand", "minilm", "gerund")]
    assert all(set(c) == set(DefrTask.prepare_keys) for c in prepare_combinations(sweep))
    paper = prepare_combinations(load_sweep(REPO / "search_spaces/defr_paper.yaml"))
    # The backbone is a prepare key: `clip` text embeddings come from the CLIP backbone's own model.
    assert [(c["model.backbone"], c["classifier.init"], c["classifier.text_encoder"]) for c in paper] == [
        ("ImageNet1k-ViT-B", "rand", "minilm"), ("ImageNet1k-ViT-B", "language", "bert"),
        ("ImageNet1k-ViT-B", "language", "clip"), ("ImageNet1k-ViT-B", "language", "simcse"),
        ("CLIP-ViT-B", "rand", "minilm"), ("CLIP-ViT-B", "language", "bert"), ("CLIP-ViT-B", "language", "clip")]
    fixed = prepare_combinations(load_sweep(_write(tmp_path, "task: defr\nconfig: {prompts: {template: photo}}\n")))
    assert len(fixed) == 1 and fixed[0]["prompts.template"] == "photo"


def test_prepare_task_runs_prepare_once_per_combination(tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(DefrTask, "prepare", classmethod(
        lambda cls, config, cache: calls.append((config.prompts.template, str(cache))) or {}))
    sweep = load_sweep(REPO / "search_spaces/defr.yaml", [f"storage.cache_dir={tmp_path}"])
    task_cache.prepare_in_process(sweep)  # what prepare_task's child process runs
    assert calls == [("default", str(tmp_path)), ("gerund", str(tmp_path)), ("ensemble", str(tmp_path)),
                     ("default", str(tmp_path))]
