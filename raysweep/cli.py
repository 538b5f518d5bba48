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
app.add_typer(eval_app, name="eval")
app.add_typer(data_app, name="data")
data_app.add_typer(synth_app, name="synth")

OVERRIDES = typer.Argument(None, help="key=value overrides, e.g. trials.num_samples=4 data.root=/data/hico")


@app.command()
def tune(space: str = typer.Argument(..., help="search-space YAML, e.g. search_spaces/defr.yaml"),
         overrides: Optional[List[str]] = OVERRIDES,
         name: Optional[str] = typer.Option(None, help="experiment name (default: the file's `name:` or its stem)"),
         storage: Optional[str] = typer.Option(None, help="folder or URI holding experiments (default: storage.path)"),
         resume: bool = typer.Option(False, "--resume", help="continue an interrupted experiment of this name"),
         address: Optional[str] = typer.Option(None, help="join a Ray cluster: auto or ray://host:10001"),
         force_unlock: bool = typer.Option(False, "--force-unlock", help="take over the experiment's lock even if "
                                           "its owner may still run (see docs/fault_tolerance.md)")) -> None:
    """Run a sweep; ends with the results table and the path of results.parquet."""
    from raysweep.commands.tune import run

    run(space, overrides or [], name=name, storage=storage, resume=resume, address=address, force_unlock=force_unlock)


@app.command()
def validate(space: str = typer.Argument(..., help="search-space YAML"),
             overrides: Optional[List[str]] = OVERRIDES) -> None:
    """Check a space file and print the resolved search space and fixed config (does not start Ray)."""
    from raysweep.commands.validate import run

    run(space, overrides or [])


@app.command()
def collect(experiment: str = typer.Argument(..., help="experiment folder or URI (<storage>/<name>)"),
            output: Optional[str] = typer.Option(None, "-o", "--output", help="parquet to write "
                                                 "(default: <experiment>/results.parquet)")) -> None:
    """Rebuild the parquet from an experiment, also while it runs or after a crash."""
    from raysweep.commands.collect import run

    run(experiment, output)


@app.command()
def report(source: str = typer.Argument(..., help="experiment folder/URI or a results parquet"),
           format: str = typer.Option("markdown", "--format", "-f", help="markdown | latex | csv"),
           outcome: str = typer.Option("completed", help="trials to include: completed, pruned, error "
                                                         "(comma list) or all"),
           layout: Optional[str] = typer.Option(None, help="paper: the paper's rows in its order, missing ones "
                                                "as '–' | results: one row per result row (default: paper when "
                                                "the experiment has paper rows)"),
           with_ko: bool = typer.Option(False, "--with-ko", help="paper layout: add the Known-Object column")) -> None:
    """Print the paper's table (mean ± std over seeds)."""
    from raysweep.commands.report import run

    run(source, format, outcome, layout, with_ko)


@app.command()
def embed(space: str = typer.Argument(..., help="search-space YAML of a DEFR sweep"),
          overrides: Optional[List[str]] = OVERRIDES,
          out: Optional[str] = typer.Option(None, "--out", help="cache folder to fill and read (default: the "
                                            "space's storage.cache_dir, else ~/.cache/raysweep)"),
          plot: Optional[str] = typer.Option(None, "--plot", help="write a 2-D scatter of the classes, e.g. "
                                             "embeddings.png"),
          method: str = typer.Option("pca", "--method", help="pca | tsne")) -> None:
    """Compute (or read cached) class text embeddings for every text encoder × prompt of a sweep; show neighbours."""
    from raysweep.commands.embed import run

    run(space, overrides or [], out, plot, method)


@app.command()
def env() -> None:
    """Print a copy-paste block for bug reports."""
    from raysweep.commands.env import run

    run()


@eval_app.command("hico")
def eval_hico(anno: str = typer.Option(..., help="anno.pkl (DEFR's HICO annotations)"),
              scores: str = typer.Option(..., help="N_test × C scores (.npy), rows in files_test order"),
              few_shot_lists: Optional[str] = typer.Option(None, help="JSON with published Few@1/5/10 lists"),
              json_out: bool = typer.Option(False, "--json", help="one JSON object instead of a table")) -> None:
    """HICO mAP: Full / Few@1 / Few@5 / Few@10 / Known-Object."""
    from raysweep.metrics.hico_eval_cli import evaluate_files

    print(evaluate_files(anno, scores, few_shot_lists, as_json=json_out))


@eval_app.command("hico-det")
def eval_hicodet(anno_dir: str = typer.Option(..., help="HICO-DET root (with annotations/)"),
                 pred: str = typer.Option(..., help="predictions (.json; .pkl needs --allow-pickle)"),
                 protocol: str = typer.Option("qpic", help="qpic | official"),
                 json_out: bool = typer.Option(False, "--json", help="one JSON object instead of a table"),
                 allow_pickle: bool = typer.Option(False, "--allow-pickle", help="read .pkl (executes code!)")) -> None:
    """HICO-DET mAP: Full / Rare / Non-rare, Default and Known-Object."""
    from raysweep.metrics.hicodet_eval_cli import evaluate_files

    if protocol not in ("qpic", "official"):
        raise UserError(f"--protocol: {protocol!r} is not one of qpic, official")
    print(evaluate_files(anno_dir, pred, protocol, json_out, allow_pickle))


@synth_app.command("hico")
def synth_hico(out: str = typer.Option(..., help="folder to create"), seed: int = typer.Option(0),
               num_train: int = typer.Option(800), num_test: int = typer.Option(300),
               image_size: int = typer.Option(64)) -> None:
    """Synthetic HICO (anno.pkl + images/train2015, test2015) for the embedded default."""
    from raysweep.commands.data import synth_hico as run

    run(out, seed, num_train, num_test, image_size)


@synth_app.command("hicodet")
def synth_hicodet(out: str = typer.Option(..., help="folder to create"), seed: int = typer.Option(0),
                  num_train: int = typer.Option(600), num_test: int = typer.Option(200),
                  image_size: int = typer.Option(128)) -> None:
    """Synthetic HICO-DET in QPIC's layout (annotations/*.json, corre_hico.npy, images/)."""
    from raysweep.commands.data import synth_hicodet as run

    run(out, seed, num_train, num_test, image_size)


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
    print(f"raysweep: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


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
