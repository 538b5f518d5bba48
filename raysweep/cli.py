"""The `raysweep` command: builds the parser and dispatches to one thin module per command."""

from __future__ import annotations

import logging
import sys
from typing import List, Optional

import typer

from raysweep.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Sweep HOI training recipes with Ray Tune + Optuna over Ray Train; collect paper tables.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate saved predictions offline (no Ray, no model).")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: generate the embedded synthetic ones.")
synth_app = typer.Typer(no_args_is_help=True, help="Write a synthetic dataset in the real on-disk layout.")
detect_app = typer.Typer(no_args_is_help=True, help="Two-stage HOI detection with a trained recognition model.")
app.add_typer(eval_app, name="eval")
app.add_typer(data_app, name="data")
app.add_typer(detect_app, name="detect")
data_app.add_typer(synth_app, name="synth")

OVERWRITE = typer.Option(False, "--overwrite", help="replace a folder at --out made with other parameters (or "
                         "left incomplete); without it such a folder is an error")
OVERRIDES = typer.Argument(None, help="key=value overrides, e.g. trials.num_samples=4 data.root=/data/hico")
ALLOW_PICKLE = typer.Option(False, "--allow-pickle", help="read anno.pkl with the full unpickler (it can run code): "
                            "only for a file you trust; same as data.allow_pickle=true")
OUTCOMES = ("completed", "pruned", "error", "terminated", "running", "pending", "paused")
MAX_MESSAGE_CHARS = 2000  # an error line quotes input; never echo a whole (expanded) document


@app.command()
def tune(space: str = typer.Argument(..., help="search-space YAML, e.g. search_spaces/defr.yaml"),
         overrides: Optional[List[str]] = OVERRIDES,
         name: Optional[str] = typer.Option(None, help="experiment name (default: the file's `name:` or its stem)"),
         storage: Optional[str] = typer.Option(None, help="folder or URI holding experiments (default: storage.path)"),
         resume: bool = typer.Option(False, "--resume", help="continue an interrupted experiment of this name"),
         address: Optional[str] = typer.Option(None, help="join a Ray cluster: auto or ray://host:10001"),
         allow_pickle: bool = ALLOW_PICKLE,
         force_unlock: bool = typer.Option(False, "--force-unlock", help="take over the experiment's lock even if "
                                           "its owner may still run (see docs/fault_tolerance.md)")) -> None:
    """Run a sweep; ends with the results table and the path of results.parquet."""
    from raysweep.progress import notice

    notice(f"Checking {space} (loading the task code) ...")
    from raysweep.commands.tune import run
    from raysweep.spec.names import name_problem, storage_problem

    if name is not None and name_problem(name):
        raise UserError(f"--name {_quoted(name)}: {name_problem(name)}; give {_name_rule()}")
    if storage is not None and storage_problem(storage):
        raise UserError(f"--storage {_quoted(storage)}: {storage_problem(storage)}")
    run(space, _with_pickle(overrides, allow_pickle), name=name, storage=storage, resume=resume, address=address,
        force_unlock=force_unlock)


@app.command()
def validate(space: str = typer.Argument(..., help="search-space YAML"),
             overrides: Optional[List[str]] = OVERRIDES, allow_pickle: bool = ALLOW_PICKLE) -> None:
    """Check a space file and print the resolved search space and fixed config (does not start Ray)."""
    from raysweep.commands.validate import run

    run(space, _with_pickle(overrides, allow_pickle))


@app.command()
def collect(experiment: str = typer.Argument(..., help="experiment folder or URI (<storage>/<name>)"),
            output: Optional[str] = typer.Option(None, "-o", "--output", help="file to write: *.parquet or *.csv "
                                                 "(default: <experiment>/results.parquet)"),
            flat_names: bool = typer.Option(False, "--flat-names", help="SQL-safe column names: "
                                            "config.optim.lr -> config__optim__lr")) -> None:
    """Rebuild the parquet (or a CSV) from an experiment, also while it runs or after a crash."""
    from raysweep.commands.collect import run

    run(experiment, output, flat_names)


@app.command()
def report(source: str = typer.Argument(..., help="experiment folder/URI or a results parquet"),
           format: str = typer.Option("markdown", "--format", "-f", help="markdown | latex | csv"),
           outcome: str = typer.Option("completed", help="trials to include: completed, pruned, error "
                                                         "(comma list) or all"),
           layout: Optional[str] = typer.Option(None, help="paper: the paper's rows in its order, missing ones "
                                                "as '–' | results: one row per result row | trials: one row per "
                                                "trial, best first, with the best configuration as overrides "
                                                "(default: paper when the experiment has paper rows)"),
           with_ko: bool = typer.Option(False, "--with-ko", help="paper layout: add the Known-Object column"),
           epoch: str = typer.Option("last", "--epoch", help="each trial's numbers at: last (the last epoch) | "
                                     "best_val (the epoch with the best validation objective) | best_test (the "
                                     "best test evaluation: only to reproduce a published protocol)"),
           html: Optional[str] = typer.Option(None, "--html", help="also write the HTML report with every plot "
                                              "(raysweep plots) to this file, e.g. report.html")) -> None:
    """Print the paper's table: test numbers, mean ± std over seeds of one configuration, with the validation
    objective that selected it."""
    from raysweep.commands.report import run

    wanted = [part.strip().lower() for part in outcome.split(",")]
    unknown = [part for part in wanted if part not in OUTCOMES] if outcome.strip().lower() != "all" else []
    if unknown or not any(wanted):
        from raysweep.errors import did_you_mean

        bad = unknown[0] if unknown else outcome
        raise UserError(f"--outcome: {_quoted(bad)}{did_you_mean(bad, OUTCOMES)} is not one of "
                        f"{', '.join(OUTCOMES)}, a comma list of them, or all")

    run(source, format, outcome, layout, with_ko, epoch, html=html)


@app.command()
def dashboard(experiment: str = typer.Argument(..., help="experiment folder (<storage>/<name>)"),
              port: Optional[int] = typer.Option(None, help="port to listen on (default: a free one)")) -> None:
    """Start optuna-dashboard on the experiment's Optuna study (127.0.0.1; works while the sweep runs)."""
    from raysweep.commands.dashboard import run

    run(experiment, port)


@app.command()
def plots(experiment: str = typer.Argument(..., help="experiment folder or URI (<storage>/<name>)"),
          out: Optional[str] = typer.Option(None, "--out", help="folder to write (default: <experiment>/plots)"),
          format: Optional[str] = typer.Option(None, "--format", "-f", help="html | png (default: both)")) -> None:
    """Optimisation history, parallel coordinates, importance, learning curves, per-class AP, Rare/Few views and the
    paper table: one self-contained HTML page (index.html) and PNGs."""
    from raysweep.commands.plots import run

    run(experiment, out, format)


@app.command()
def embed(space: str = typer.Argument(..., help="search-space YAML of a DEFR sweep"),
          overrides: Optional[List[str]] = OVERRIDES,
          out: Optional[str] = typer.Option(None, "--out", help="cache folder to fill and read (default: the "
                                            "space's storage.cache_dir, else ~/.cache/raysweep)"),
          plot: Optional[str] = typer.Option(None, "--plot", help="write a 2-D scatter of the classes, e.g. "
                                             "embeddings.png"),
          method: str = typer.Option("pca", "--method", help="pca | tsne"),
          allow_pickle: bool = ALLOW_PICKLE) -> None:
    """Compute (or read cached) class text embeddings for every text encoder × prompt of a sweep; show neighbours."""
    from raysweep import progress
    from raysweep.commands.embed import run

    with progress.shown():
        run(space, _with_pickle(overrides, allow_pickle), out, plot, method)


@app.command()
def env() -> None:
    """Print a copy-paste block for bug reports."""
    from raysweep.commands.env import run

    run()


@eval_app.command("hico")
def eval_hico(anno: str = typer.Option(..., help="anno.pkl (DEFR's HICO annotations)"),
              scores: str = typer.Option(..., help="N_test × C scores (.npy), rows in files_test order"),
              few_shot_lists: Optional[str] = typer.Option(
                  None, help="Few@1/5/10 class lists: a JSON file, 'defr' (DEFR's lists) or 'derived' (from "
                             "anno_train); default: 'defr' for the 600 HICO classes, else 'derived'"),
              ties: str = typer.Option("index", help="equal scores: index (lower image index first), pessimistic "
                                                     "or optimistic (bounds over every tie order)"),
              json_out: bool = typer.Option(False, "--json", help="one JSON object instead of a table"),
              allow_pickle: bool = typer.Option(False, "--allow-pickle", help="read anno.pkl with the full "
                                                "unpickler (it can run code): only for a file you trust")) -> None:
    """HICO mAP: Full / Few@1 / Few@5 / Few@10 / Known-Object."""
    from raysweep.metrics.hico_eval_cli import evaluate_files

    print(evaluate_files(anno, scores, few_shot_lists, as_json=json_out, ties=ties, allow_pickle=allow_pickle))


@eval_app.command("hico-det")
def eval_hicodet(anno_dir: str = typer.Option(..., help="HICO-DET root (with annotations/)"),
                 pred: str = typer.Option(..., help="predictions (.json, or .pkl of numpy arrays and built-in "
                                          "types; other pickles need --allow-pickle)"),
                 protocol: str = typer.Option("qpic", help="qpic | official"),
                 json_out: bool = typer.Option(False, "--json", help="one JSON object instead of a table"),
                 allow_pickle: bool = typer.Option(False, "--allow-pickle", help="read .pkl predictions (the full "
                                                   "unpickler can run code): only for a file you trust")) -> None:
    """HICO-DET mAP: Full / Rare / Non-rare, Default and Known-Object."""
    from raysweep import progress
    from raysweep.metrics.hicodet_eval_cli import evaluate_files

    if protocol not in ("qpic", "official"):
        raise UserError(f"--protocol: {protocol!r} is not one of qpic, official")
    with progress.shown():
        print(evaluate_files(anno_dir, pred, protocol, json_out, allow_pickle))


@detect_app.command("hico-det")
def detect_hicodet(
        checkpoint: str = typer.Option(..., help="a DEFR trial: <experiment>/_train/<trial id> (latest checkpoint), a "
                                       "checkpoint_* folder or its state.pt"),
        anno_dir: str = typer.Option(..., help="HICO-DET root in QPIC's layout (annotations/, images/test2015)"),
        detections: Optional[str] = typer.Option(None, help="detection JSON (raysweep's format) or a folder of "
                                                 "per-image <stem>.json; default <anno-dir>/detections/test2015.json"),
        out: str = typer.Option(..., help="predictions to write (.json, the layout `eval hico-det --pred` reads)"),
        mask_mode: Optional[str] = typer.Option(None, help="additive_one (the reference as coded) | hard"),
        mask_layers: Optional[int] = typer.Option(None, help="last blocks run under the pair mask (reference: 1)"),
        rescoring: Optional[str] = typer.Option(None, help="cache (eval/cache.py, default) | test (test.py)"),
        score_thresh: Optional[float] = typer.Option(None, help="detection score threshold (0.2)"),
        nms_thresh: Optional[float] = typer.Option(None, help="class-wise NMS IoU (0.5)"),
        max_human: Optional[int] = typer.Option(None, help="humans kept per image (15)"),
        max_object: Optional[int] = typer.Option(None, help="non-human objects kept per image (15)"),
        resize: Optional[str] = typer.Option(None, help="bilinear (reference) | bicubic (as in training)"),
        evaluate: bool = typer.Option(False, "--eval", help="also print the HICO-DET mAP of the predictions"),
        protocol: str = typer.Option("official", help="with --eval: official | qpic"),
        device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 (default: cuda when available)")) -> None:
    """DEFR on HICO-DET: pair offline detections, score each pair with the recognition model's per-pair mask.
    Options not given keep the trial's `detection:` block (reference defaults)."""
    from raysweep.commands.detect import run

    run(checkpoint, anno_dir, detections, out, evaluate, protocol, device, mask_mode=mask_mode,
        mask_layers=mask_layers, rescoring=rescoring, score_thresh=score_thresh, nms_thresh=nms_thresh,
        max_human=max_human, max_object=max_object, resize=resize)
@eval_app.command("vcoco")
def eval_vcoco(anno_dir: str = typer.Option(..., help="V-COCO folder: QPIC's layout (annotations/test_vcoco.json) "
                                            "or the official files (vcoco_test.json, instances, ids)"),
               pred: str = typer.Option(..., help="detections in the official structure (.json; .pkl needs "
                                        "--allow-pickle)"),
               scenario: str = typer.Option("both", help="1 | 2 | both"),
               json_out: bool = typer.Option(False, "--json", help="one JSON object instead of a table"),
               gt: str = typer.Option("auto", help="auto | qpic | official: which ground truth (auto: the official "
                                      "files when present)"),
               numerics: str = typer.Option("float32", help="float32 (as the official evaluator) | float64 (exact)"),
               persons_without_hoi: str = typer.Option("ignore", help="QPIC layout only: ignore | negative"),
               protocol: str = typer.Option("official", help="official | qpic (QPIC's internal evaluator; --pred "
                                            "then holds QPIC's post-processor outputs aligned with test_vcoco.json)"),
               allow_pickle: bool = typer.Option(False, "--allow-pickle", help="read .pkl (executes code!)")) -> None:
    """V-COCO agent AP and role AP, Scenario 1 and 2 (the official evaluator's definitions)."""
    from raysweep.commands.eval_vcoco import run

    run(anno_dir, pred, scenario, json_out, gt, numerics, persons_without_hoi, allow_pickle, protocol)


@synth_app.command("hico")
def synth_hico(out: str = typer.Option(..., help="folder to create"), seed: int = typer.Option(0),
               num_train: int = typer.Option(800), num_test: int = typer.Option(300),
               image_size: int = typer.Option(64), overwrite: bool = OVERWRITE) -> None:
    """Synthetic HICO (anno.pkl + images/train2015, test2015) for the embedded default."""
    from raysweep.commands.data import synth_hico as run

    run(out, seed, num_train, num_test, image_size, overwrite)


@synth_app.command("hicodet")
def synth_hicodet(out: str = typer.Option(..., help="folder to create"),
                  seed: Optional[int] = typer.Option(None, show_default="hqm's data.synth.seed"),
                  num_train: Optional[int] = typer.Option(None, show_default="hqm's data.synth.num_train"),
                  num_test: Optional[int] = typer.Option(None, show_default="hqm's data.synth.num_test"),
                  image_size: Optional[int] = typer.Option(None, show_default="hqm's data.synth.image_size"),
                  overwrite: bool = OVERWRITE,
                  detections: bool = typer.Option(False, "--detections", help="also write DEFR's detection views: "
                                                  "detections/test2015.json and the recognition view anno.pkl")) -> None:
    """Synthetic HICO-DET in QPIC's layout (annotations/*.json, corre_hico.npy, images/): by default the hqm task's
    embedded dataset (what data.root: null uses); with --detections every class (DEFR's detection views)."""
    from raysweep.commands.data import synth_hicodet as run

    run(out, seed, num_train, num_test, image_size, detections, overwrite)


@synth_app.command("vcoco")
def synth_vcoco(out: str = typer.Option(..., help="folder to create"), seed: int = typer.Option(0),
                num_train: int = typer.Option(600), num_test: int = typer.Option(200),
                image_size: int = typer.Option(128), overwrite: bool = OVERWRITE) -> None:
    """Synthetic V-COCO in QPIC's layout (annotations/*.json, corre_vcoco.npy, images/) + official GT files."""
    from raysweep.commands.data import synth_vcoco as run

    run(out, seed, num_train, num_test, image_size, overwrite)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=argv, prog_name="raysweep", standalone_mode=False)
    except UserError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        print("raysweep: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if isinstance(exc, _click_types("ClickException")):  # usage: unknown option, missing or invalid value
            ctx = getattr(exc, "ctx", None)
            _fail(exc.format_message() + (f" (see '{ctx.command_path} --help')" if ctx is not None else ""))
        if isinstance(exc, (typer.Abort, *_click_types("Abort"))):
            print("raysweep: interrupted", file=sys.stderr)
            sys.exit(130)
        if isinstance(exc, OSError) and exc.filename:  # a path the user gave that the system refuses
            _fail(f"{exc.filename}: {exc.strerror or exc}")
        raise


def _fail(message: str) -> None:
    line = " ".join(message.split())
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[: MAX_MESSAGE_CHARS - 1] + "…"
    print(f"raysweep: error: {line}", file=sys.stderr)
    sys.exit(2)


def _with_pickle(overrides: Optional[List[str]], allow_pickle: bool) -> list[str]:
    """--allow-pickle is the override data.allow_pickle=true (tasks that read pickles: defr)."""
    return [*(overrides or []), *(["data.allow_pickle=true"] if allow_pickle else [])]


def _quoted(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:79] + "…"


def _name_rule() -> str:
    from raysweep.spec.names import NAME_RULE

    return NAME_RULE


def _click_types(name: str) -> tuple[type, ...]:
    """click's exception class `name`, from click itself and from the copy newer typer versions vendor."""
    import importlib

    found = []
    for module in ("click.exceptions", "typer._click.exceptions"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


if __name__ == "__main__":
    main()
