"""A real tiny sweep → history.parquet, per_class.parquet, `raysweep plots` and `report --html`, and the page
opened in a real headless Chromium: no console errors, no network, every figure drawn."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support import run_cli_process

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "defr.yaml"
pytestmark = pytest.mark.slow
TINY = ["data.synth.num_train=80", "data.synth.num_test=40", "data.synth.image_size=32", "data.image_size=32",
        "model.depth=1", "model.patch_size=8", "train.batch_size=16", "train.eval_batch_size=40",
        "scheduler.grace_period=1", "trials.num_samples=3", "train.epochs=2"]
FIGURES = ("history", "parallel", "importance", "curves", "per_class", "groups")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("plots")
    run_cli_process(["tune", str(SPACE), *TINY, f"storage.cache_dir={work / 'cache'}", "--storage",
                     str(work / "store"), "--name", "viz"], cwd=work)
    return work / "store" / "viz"


def test_tune_writes_the_history_and_per_class_files(experiment: Path) -> None:
    results = pd.read_parquet(experiment / "results.parquet")
    history = pd.read_parquet(experiment / "history.parquet")
    classes = pd.read_parquet(experiment / "per_class.parquet")
    assert set(history["trial_id"]) == set(results["trial_id"]) == set(classes["trial_id"])
    reported = history.set_index(["trial_id", "epoch", "metric"])["value"]
    for row in results.to_dict("records"):
        mine = history[history["trial_id"] == row["trial_id"]]
        assert sorted(mine["epoch"].unique()) == list(range(1, row["epochs_done"] + 1))
        for split in ("val", "test"):
            if f"last.{split}.map" in row and not pd.isna(row[f"last.{split}.map"]):
                last = mine[(mine["metric"] == f"{split}.map")]["value"].iloc[-1]
                assert last == pytest.approx(row[f"last.{split}.map"])
    # Full mAP is the mean of the per-class APs: every saved evaluation holds the classes its metric was computed on
    evaluations = classes.groupby(["trial_id", "split", "epoch"])
    assert len(evaluations) >= len(results)
    for (trial_id, split, epoch), rows in evaluations:
        assert rows["class_index"].tolist() == list(range(34)) and (rows["n_train"] >= 0).all()
        assert rows["ap"].mean() == pytest.approx(reported[(trial_id, epoch, f"{split}.map")])
    assert {"loss", "lr", "images_per_s"} <= set(history["metric"])
    assert any(m.endswith("map_few1") for m in history["metric"])


def _browser():
    from selenium import webdriver

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver must be installed in CI (.ci/run installs them)")
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1300,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def _drawn_pixels(png: bytes) -> float:
    """Fraction of strongly coloured pixels: data (lines, markers, bars) is coloured, while axes, grid and text are
    grey, so an empty plot area scores about 0."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return float(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).mean())


def _empty_png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(8, 4.5))
    ax.set_xscale("log")
    ax.set_xlim(1, 100)
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _open(driver, page: Path) -> dict[str, float]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && [...document.querySelectorAll('div.plotly-graph-div')]"
        ".every(e => e.classList.contains('js-plotly-plot') && e.querySelector('svg.main-svg'))"))
    drawn = {}
    for element in driver.find_elements(By.CSS_SELECTOR, "div.plotly-graph-div"):
        driver.execute_script("arguments[0].scrollIntoView()", element)
        drawn[element.get_attribute("id").removeprefix("fig-")] = _drawn_pixels(element.screenshot_as_png)
    return drawn


def test_plots_page_renders_every_figure_in_headless_chromium(experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "plots"
    proc = run_cli_process(["plots", str(experiment), "--out", str(out)], cwd=tmp_path)
    assert "not shown" not in proc.stdout, proc.stdout  # 3 trials at a common rung: every view has data
    for name in FIGURES:
        png = (out / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and _drawn_pixels(png) > 0.0005, name
    assert _drawn_pixels(_empty_png()) < 0.0001  # the check itself: axes without data score as blank
    assert "| backbone init" in (out / "table.md").read_text()
    page = out / "index.html"
    text = page.read_text()

    driver = _browser()
    try:
        drawn = _open(driver, page)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        # plotly.js is inlined: no script or stylesheet is loaded from anywhere, nothing was fetched
        external = driver.execute_script("return document.querySelectorAll('script[src], link[href]').length")
        fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        # The check itself: a page with one empty figure scores as blank.
        blank = tmp_path / "blank.html"
        blank.write_text(text.split("</head>")[0] + "</head><body><div id='fig-empty' class='plotly-graph-div' "
                         "style='height:400px;width:900px'></div><script>Plotly.newPlot('fig-empty', [], "
                         "{template: {layout: {paper_bgcolor: 'white'}}})</script></body></html>")
        empty = _open(driver, blank)
    finally:
        driver.quit()
    assert errors == [], errors
    assert external == 0
    assert [u for u in fetched if not u.startswith("file:")] == []
    assert sorted(drawn) == sorted(FIGURES)
    for name, share in drawn.items():
        assert share > 0.0005, f"{name}: plot area looks empty ({share:.4f} coloured pixels)"
    assert empty["empty"] < 0.0001


def test_report_html_writes_the_same_page(experiment: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    proc = run_cli_process(["report", str(experiment / "results.parquet"), "--html", str(target)], cwd=tmp_path)
    assert "| backbone init" in proc.stdout and f"HTML report: {target}" in proc.stdout
    page = target.read_text()
    assert all(f"id=\"fig-{name}\"" in page for name in FIGURES) and "Paper table" in page
    bad = run_cli_process(["report", str(experiment), "--html", str(tmp_path / "missing" / "r.html")], cwd=tmp_path,
                          check=False)
    assert bad.returncode == 2 and "--html" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "missing").exists()
