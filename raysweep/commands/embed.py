"""`raysweep embed`: compute (or read from the cache) the class text embeddings a DEFR sweep will use, and inspect them.

One entry per (text encoder, prompts) combination the search can pick, exactly the files the sweep's preparation
writes, so running this beforehand (e.g. on a machine with hub access, into a shared cache) leaves trials only reading.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from raysweep.errors import UserError
from raysweep.spec.load import load_sweep

METHODS = ("pca", "tsne")
NEAREST = 3  # neighbours printed per probe class
PROBES = 5  # classes whose neighbours are printed, spread over the class list
MAX_LABELS = 80  # class names written on a plot panel; beyond that every k-th class
_MARKERS = ("o", "s", "^", "D")


@dataclass
class EmbeddedClasses:
    """One combination's class embeddings with what is needed to print and plot them."""

    encoder: str
    weights: Optional[str]
    template: str
    embeddings: np.ndarray  # [C, D], unit rows
    labels: list[str]  # per class: "verb object", or its first prompt when the dataset names no classes
    objects: list[str]  # per class, for colours ("" when unknown)
    cache_file: Optional[Path]


def run(space: str, overrides: list[str], out: Optional[str], plot: Optional[str], method: str) -> None:
    if method not in METHODS:
        raise UserError(f"--method: {method!r} is not one of {', '.join(METHODS)}")
    if plot is not None and not plot.lower().endswith(".png"):
        raise UserError(f"--plot: {plot!r} must name a .png file")
    sweep = load_sweep(space, overrides)
    from raysweep.sweep.prepare import prepare_combinations
    from raysweep.sweep.task_cache import cache_dir
    from raysweep.tasks.defr.task import DefrTask

    if not issubclass(sweep.task_cls, DefrTask):
        raise UserError(f"{space}: task {sweep.spec.task!r} has no class text embeddings; `embed` is for task 'defr'")
    cache = Path(out).expanduser() if out else cache_dir(sweep)
    combinations = [c for c in prepare_combinations(sweep) if c["classifier.init"] == "language"]
    if not combinations:
        print("# no trial of this sweep initialises its classifier from text; showing the configured text encoder")
        combinations = [{**c, "classifier.init": "language"} for c in prepare_combinations(sweep)][:1]
    print(f"# {sweep.path}: {len(combinations)} text encoder × prompt combination(s); cache {cache}")
    results = []
    for index, combination in enumerate(combinations, start=1):
        item = embed_combination(sweep, combination, cache)
        results.append(item)
        print(f"\n[{index}/{len(combinations)}] encoder {item.encoder}"
              + (f" (weights {item.weights})" if item.weights else "") + f", template {item.template!r}")
        print(f"  classes: {item.embeddings.shape[0]}, width: {item.embeddings.shape[1]}")
        print(f"  cache file: {item.cache_file if item.cache_file else '(not cached)'}")
        print("  nearest classes (cosine):")
        for probe, neighbours in nearest_classes(item.embeddings, PROBES, NEAREST):
            listed = ", ".join(f"{item.labels[j]} ({similarity:.2f})" for j, similarity in neighbours)
            print(f"    {item.labels[probe]} -> {listed}")
    if plot is not None:
        path = plot_embeddings(results, Path(plot).expanduser(), method)
        print(f"\nPlot ({method.upper() if method == 'pca' else 't-SNE'}): {path}")


def embed_combination(sweep, combination: dict[str, Any], cache: Path) -> EmbeddedClasses:
    """Resolve the data (`DefrTask.prepare`, which also fills the cache) and read back this combination's embeddings."""
    from raysweep.errors import DataError
    from raysweep.tasks.defr.prompts import FILE_PREFIX, class_prompts
    from raysweep.tasks.defr.task import DefrTask
    from raysweep.tasks.defr.text_tower import resolve_text_encoder

    config = sweep.config_for(combination)
    updates = DefrTask.prepare(config, cache)
    config = sweep.config_for({**combination, **updates})
    task = DefrTask(config, cache)
    embeddings = task.class_embeddings()
    num_classes = embeddings.shape[0]
    names: Optional[list[tuple[str, str]]] = None
    try:
        names = task.class_names()
    except DataError:
        if not config.prompts.template.startswith(FILE_PREFIX):
            raise
    prompts = class_prompts(names or [("", "")] * num_classes, config.prompts)
    if names is not None:
        labels = [f"{verb} {obj}".replace("_", " ") for verb, obj in names]
        objects = [obj for _, obj in names]
    else:
        labels, objects = [sentences[0] for sentences in prompts], [""] * num_classes
    encoder, weights = resolve_text_encoder(config.model, config.classifier)  # `clip`: the CLIP backbone's own
    return EmbeddedClasses(encoder=encoder, weights=weights, template=config.prompts.template, embeddings=embeddings,
                           labels=labels, objects=objects, cache_file=find_cache_file(cache, encoder, weights, prompts))


def find_cache_file(cache: Path, encoder: str, weights: Optional[str], prompts: list[list[str]]) -> Optional[Path]:
    """The cached array whose JSON sidecar records this encoder, weights and prompts (None when not cached)."""
    for sidecar in sorted((cache / "embeddings").glob("*.json")):
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (meta.get("encoder"), meta.get("weights"), meta.get("prompts")) == (encoder, weights, prompts):
            array = sidecar.with_suffix(".npy")
            if array.is_file():
                return array
    return None


def nearest_classes(embeddings: np.ndarray, probes: int, k: int) -> list[tuple[int, list[tuple[int, float]]]]:
    """For `probes` classes spread evenly over the list: their `k` most cosine-similar other classes, best first."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    count = len(unit)
    picked = sorted(set(np.linspace(0, count - 1, min(probes, count)).round().astype(int).tolist()))
    out = []
    for i in picked:
        order = np.argsort(-similarity[i], kind="stable")[:min(k, count - 1)]
        out.append((i, [(int(j), float(similarity[i, j])) for j in order]))
    return out


def project_2d(embeddings: np.ndarray, method: str) -> tuple[np.ndarray, str]:
    """[C, D] -> ([C, 2], axis note). PCA: the top two principal directions (SVD of the centred rows); t-SNE: sklearn,
    seeded, perplexity capped below the number of classes."""
    x = np.asarray(embeddings, dtype=np.float64)
    if method == "tsne" and len(x) > 3:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(x)
        return xy, f"t-SNE, perplexity {perplexity:g}"
    centred = x - x.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2] if len(vt) >= 2 else np.vstack([vt, np.zeros_like(vt)])[:2]
    explained = singular ** 2 / max(float((singular ** 2).sum()), 1e-12)
    return centred @ components.T, f"PCA, {100 * explained[:2].sum():.0f}% of variance"


def plot_embeddings(results: list[EmbeddedClasses], path: Path, method: str) -> Path:
    """One scatter panel per combination: classes as points coloured (and shaped) by object, labelled by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(2, len(results))
    rows = math.ceil(len(results) / columns)
    scale = 1.0 if max(len(item.labels) for item in results) <= 100 else 1.6  # room for HICO's 600 classes
    figure, axes = plt.subplots(rows, columns, figsize=(9 * scale * columns, 8 * scale * rows), squeeze=False)
    palette = plt.get_cmap("tab20").colors
    for axis in axes.flat[len(results):]:
        axis.set_visible(False)
    for axis, item in zip(axes.flat, results):
        xy, note = project_2d(item.embeddings, method)
        objects = sorted(set(item.objects))
        for number, obj in enumerate(objects):
            members = [i for i, o in enumerate(item.objects) if o == obj]
            axis.scatter(xy[members, 0], xy[members, 1], s=28, color=palette[number % len(palette)],
                         marker=_MARKERS[(number // len(palette)) % len(_MARKERS)], label=obj or None)
        step = max(1, math.ceil(len(xy) / MAX_LABELS))
        for i in range(0, len(xy), step):
            axis.annotate(item.labels[i], xy[i], fontsize=7, xytext=(3, 2), textcoords="offset points")
        labelled = "" if step == 1 else f"; every {step}th class named"
        axis.set_title(f"{item.encoder} · {item.template} · {len(xy)} classes ({note}{labelled})", fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        if 1 < len(objects) <= 20:
            axis.legend(fontsize=7, loc="best", title="object", title_fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
