"""Search-space files: good files load, every bad one fails with one line naming the key path; overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raysweep.cli import main
from raysweep.errors import ConfigError
from raysweep.spec import load_sweep, parse_override
from raysweep.spec.schema import Choice, Grid
from raysweep.sweep.optuna_space import DefineByRun, grid_points_to_evaluate
from support import FixedTrial, write_space

REPO = Path(__file__).resolve().parents[1]
MINIMAL = """
task: defr
config:
  train: {epochs: 3}
search:
  optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2}
"""


@pytest.mark.parametrize("path", sorted((REPO / "search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_space_file_loads(path: Path) -> None:
    sweep = load_sweep(path)
    assert sweep.num_trials >= 1
    assert sweep.task_metric in sweep.task_cls.metric_names and sweep.metric.split(".")[0] in ("val", "test")


def test_max_epochs_comes_from_the_declared_train_section(tmp_path: Path) -> None:
    """ASHA's max_t is the task's `train.epochs` over every value the search can set; a searched key that merely
    ends in `epochs` (optim.warmup_epochs) does not count."""
    warmup = MINIMAL + "  optim.warmup_epochs: {distribution: choice, values: [0.5, 7.0]}\n"
    assert load_sweep(write_space(tmp_path, warmup)).max_epochs == 3
    for dist in ("{distribution: uniform, low: 0.0, high: 9.0}", "{distribution: randint, low: 0, high: 9}"):
        assert load_sweep(write_space(tmp_path, MINIMAL + f"  optim.warmup_epochs: {dist}\n")).max_epochs == 3
    searched = MINIMAL + "  train.epochs: {distribution: randint, low: 2, high: 5}\n"
    assert load_sweep(write_space(tmp_path, searched)).max_epochs == 5
    rows = MINIMAL + ("  recipe: {distribution: rows, keys: [train.epochs, optim.warmup_epochs], "
                      "values: [[2, 20.0], [4, 0.5]]}\n")
    assert load_sweep(write_space(tmp_path, rows)).max_epochs == 4


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    sweep = load_sweep(write_space(tmp_path, MINIMAL))
    assert sweep.name == "space"
    assert sweep.metric == "val.map" and sweep.mode == "max"
    assert sweep.max_epochs == 3
    assert sweep.base_config["train"]["epochs"] == 3
    assert sweep.spec.trials.num_samples == 8


BAD_FILES = {
    "unknown top-level key": ("task: defr\nsaerch: {}\n", "saerch: unknown key (did you mean 'search'?)"),
    "unknown task": ("task: defrr\n", "unknown task 'defrr' (did you mean 'defr'?); allowed: defr, hqm"),
    "unknown config key": ("task: defr\nconfig: {optim: {lrr: 1}}\n", "config.optim.lrr: unknown key (did you mean 'lr'?)"),
    "bad literal": ("task: defr\nconfig: {loss: {name: lse}}\n", "config.loss.name: got 'lse'"),
    "wrong type": ("task: defr\ntrials: {num_samples: many}\n", "trials.num_samples: Input should be a valid integer"),
    "out of range": ("task: defr\ntrials: {num_samples: 0}\n", "trials.num_samples: Input should be greater than or equal to 1"),
    "empty choice": ("task: defr\nsearch: {loss.name: {distribution: choice, values: []}}\n", "search.loss.name.choice.values"),
    "unknown distribution": ("task: defr\nsearch: {optim.lr: {distribution: logunifrom, low: 1, high: 2}}\n",
                             "'logunifrom' (did you mean 'loguniform'?)"),
    "missing distribution": ("task: defr\nsearch: {optim.lr: {low: 1, high: 2}}\n", "missing 'distribution:'"),
    "low above high": ("task: defr\nsearch: {optim.lr: {distribution: uniform, low: 2, high: 1}}\n", "`low < high` must hold"),
    "loguniform zero": ("task: defr\nsearch: {optim.lr: {distribution: loguniform, low: 0, high: 1}}\n", "`low > 0` must hold"),
    "searched key unknown": ("task: defr\nsearch: {optim.lrr: {distribution: uniform, low: 0.1, high: 1}}\n",
                             "search.optim.lrr: unknown key 'optim.lrr' (did you mean 'lr'?)"),
    "searched section": ("task: defr\nsearch: {optim: {distribution: choice, values: [1]}}\n", "'optim' is a section"),
    "choice value invalid": ("task: defr\nsearch: {loss.name: {distribution: choice, values: [bce, hinge]}}\n",
                             "search.loss.name.values[1]: value 'hinge' is invalid"),
    "negative lr in range": ("task: defr\nsearch: {optim.lr: {distribution: uniform, low: -1, high: 1}}\n",
                             "search.optim.lr.low: value -1.0 is invalid"),
    "condition never holds (choice)": (
        "task: defr\nsearch:\n  classifier.init: {distribution: choice, values: [rand]}\n"
        "  classifier.text_encoder: {distribution: choice, values: [minilm], when: {classifier.init: language}}\n",
        "condition can never hold: ['language'] is not among search.classifier.init's values ['rand']"),
    "condition never holds (fixed)": (
        "task: defr\nconfig: {classifier: {init: rand}}\nsearch:\n"
        "  classifier.text_encoder: {distribution: choice, values: [minilm], when: {classifier.init: language}}\n",
        "'classifier.init' is fixed at 'rand'"),
    "condition on later key": (
        "task: defr\nsearch:\n  classifier.text_encoder: {distribution: choice, values: [minilm], when: {classifier.init: language}}\n"
        "  classifier.init: {distribution: choice, values: [rand, language]}\n",
        "must be defined before"),
    "unknown metric": ("task: defr\nobjective: {metric: mAP}\n", "objective.metric: 'mAP' (did you mean 'map'?)"),
    "gpu without use_gpu": ("task: defr\nresources: {gpus_per_worker: 1}\n", "Either set use_gpu: true"),
    "top level list": ("- task: defr\n", "top level must be a mapping"),
    "empty file": ("", "empty file"),
    "malformed yaml": ("task: defr\nconfig: {data: [1, 2\n", "malformed YAML"),
    "cross-field": ("task: defr\nconfig: {classifier: {head: mixing, init: rand}}\n", "mixing"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES), ids=str)
def test_bad_file_fails_with_key_path(tmp_path: Path, case: str) -> None:
    text, expected = BAD_FILES[case]
    path = write_space(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    message = str(info.value)
    assert expected in message, message
    assert "\n" not in message
    assert str(path) in message


@pytest.mark.parametrize("case", ["unknown config key", "malformed yaml", "condition never holds (choice)"])
def test_validate_and_tune_exit_2_with_one_line(tmp_path: Path, capsys, case: str) -> None:
    text, expected = BAD_FILES[case]
    path = write_space(tmp_path, text)
    for command in (["validate", str(path)], ["tune", str(path), "--storage", str(tmp_path / "store")]):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and "Traceback" not in err
    assert not (tmp_path / "store").exists()  # nothing written before validation passed


def test_missing_file_exit_2(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", str(tmp_path / "nope.yaml")])
    assert exit_info.value.code == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("text,key,value", [
    ("trials.num_samples=4", "trials.num_samples", 4),
    ("data.root=/data/hico", "data.root", "/data/hico"),
    ("resources.use_gpu=true", "resources.use_gpu", True),
    ("optim.lr=1e-4", "optim.lr", 1e-4),
    ("data.aug_crop_scale=[0.5, 1.0]", "data.aug_crop_scale", [0.5, 1.0]),
    ("data.root=null", "data.root", None),
    ("name=a=b", "name", "a=b"),
])
def test_parse_override(text: str, key: str, value) -> None:
    assert parse_override(text) == (key, value)


@pytest.mark.parametrize("text,expected", [
    ("trials.num_samples", "expected key=value"),
    ("=3", "empty key"),
    ("a..b=3", "empty key"),
    ("optim.lr=[1, 2", "cannot parse the value"),
    ("search.optim.lr=1", "search parameters are edited in the YAML file"),
])
def test_bad_override(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[")):
        parse_override(text) if "search" not in text else load_sweep(REPO / "search_spaces/defr.yaml", [text])


def test_overrides_reach_sections_task_config_and_fix_searched_keys(tmp_path: Path) -> None:
    path = write_space(tmp_path, MINIMAL)
    sweep = load_sweep(path, ["trials.num_samples=4", "data.image_size=32", "config.train.seed=7",
                              "resources.num_workers=2", "optim.lr=0.01", "name=exp1"])
    assert sweep.spec.trials.num_samples == 4
    assert sweep.spec.resources.num_workers == 2
    assert sweep.base_config["data"]["image_size"] == 32
    assert sweep.base_config["train"]["seed"] == 7
    assert sweep.base_config["optim"]["lr"] == 0.01
    assert "optim.lr" not in sweep.params  # fixed by the override
    assert sweep.name == "exp1"
    with pytest.raises(ConfigError, match="config.data.image_sise: unknown key .*did you mean 'image_size'"):
        load_sweep(path, ["data.image_sise=32"])


def test_conditional_parameter_only_sampled_when_condition_holds(tmp_path: Path) -> None:
    sweep = load_sweep(REPO / "search_spaces/defr.yaml")
    space = DefineByRun(sweep)
    language = FixedTrial({"classifier.init": "language", "loss.name": "bce", "prompts.template": "gerund", "optim.lr": 1e-3})
    assert space(language)["prompts.template"] == "gerund"
    rand = FixedTrial({"classifier.init": "rand", "loss.name": "bce", "optim.lr": 1e-3})
    sampled = space(rand)
    assert "prompts.template" not in sampled and "prompts.template" not in rand.asked


def test_fixing_a_condition_key_by_override_settles_its_dependants(tmp_path: Path) -> None:
    # classifier.init=rand: prompts.template can never be sampled, so it leaves the search (no error)
    rand = load_sweep(REPO / "search_spaces/defr.yaml", ["classifier.init=rand"])
    assert "prompts.template" not in rand.params and "classifier.init" not in rand.params
    # classifier.init=language: the condition always holds, so prompts.template is searched unconditionally
    language = load_sweep(REPO / "search_spaces/defr.yaml", ["classifier.init=language"])
    assert "prompts.template" in language.params and not language.spec.search["prompts.template"].when
    # a chain: b depends on a, c on b; fixing a against b's condition drops both
    path = write_space(tmp_path, MINIMAL.replace("search:", """search:
  classifier.init: {distribution: choice, values: [language, rand]}
  prompts.template: {distribution: choice, values: [default, gerund], when: {classifier.init: language}}
  classifier.text_encoder: {distribution: choice, values: [minilm, bert], when: {prompts.template: gerund}}"""))
    chained = load_sweep(path, ["classifier.init=rand"])
    assert not {"prompts.template", "classifier.text_encoder"} & set(chained.params)
    # written into the file (not an override), a condition that can never hold is still an error
    fixed = write_space(tmp_path, MINIMAL.replace("search:", """search:
  prompts.template: {distribution: choice, values: [default, gerund], when: {classifier.init: language}}""")
                  .replace("config:", "config:\n  classifier: {init: rand}"), name="fixed.yaml")
    with pytest.raises(ConfigError, match="condition can never hold"):
        load_sweep(fixed)


def test_grid_runs_every_combination_num_samples_times(tmp_path: Path) -> None:
    path = write_space(tmp_path, """
        task: defr
        search:
          classifier.init: {distribution: grid, values: [rand, language]}
          loss.name: {distribution: grid, values: [bce, lse_sign]}
          train.seed: {distribution: grid, values: [0, 1, 2]}
          optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2}
        trials: {num_samples: 2}
    """)
    sweep = load_sweep(path)
    assert isinstance(sweep.params["loss.name"], Grid) and not isinstance(sweep.params["loss.name"], Choice)
    assert sweep.num_trials == 2 * 2 * 3 * 2
    points = grid_points_to_evaluate(sweep)
    assert len(points) == sweep.num_trials
    combos = {(p["classifier.init"], p["loss.name"], p["train.seed"]) for p in points}
    assert len(combos) == 12 and all("optim.lr" not in p for p in points)


def test_non_primitive_choice_values_round_trip(tmp_path: Path) -> None:
    path = write_space(tmp_path, """
        task: defr
        search:
          data.aug_crop_scale: {distribution: choice, values: [[0.5, 1.0], [0.7, 1.0]]}
    """)
    sweep = load_sweep(path)
    trial = FixedTrial({"data.aug_crop_scale": "[0.7, 1.0]"})
    assert DefineByRun(sweep)(trial) == {"data.aug_crop_scale": [0.7, 1.0]}
    assert sweep.config_for({"data.aug_crop_scale": [0.7, 1.0]}).data.aug_crop_scale == (0.7, 1.0)


def test_validate_prints_resolved_space_and_fixed_config(capsys) -> None:
    main(["validate", str(REPO / "search_spaces/defr.yaml"), "trials.num_samples=3"])
    out = capsys.readouterr().out
    assert "OK" in out and "3 trials" in out
    printed = yaml.safe_load("\n".join(line for line in out.splitlines() if not line.startswith("#")))
    assert set(printed["search"]) == {"classifier.init", "loss.name", "prompts.template", "optim.lr"}
    assert printed["fixed"]["model.backbone"] == "vit_tiny"
    assert "optim.lr" not in printed["fixed"]
    assert printed["trials"]["num_samples"] == 3


def test_dashboard_off_loopback_warns_once_at_validation(tmp_path: Path, caplog) -> None:
    import logging

    caplog.set_level(logging.WARNING)
    load_sweep(write_space(tmp_path, MINIMAL), ["ray.dashboard_host=127.0.0.1"])
    load_sweep(write_space(tmp_path, MINIMAL), ["ray.dashboard_host=0.0.0.0", "ray.dashboard=false"])
    assert caplog.records == []
    load_sweep(write_space(tmp_path, MINIMAL), ["ray.dashboard_host=0.0.0.0"])
    assert [r.getMessage() for r in caplog.records if "ray.dashboard_host '0.0.0.0' is not a loopback" in
            r.getMessage()] != []


def test_yaml_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    """Bounded loading keeps ordinary YAML: a shared anchor and a merge key are neither a bomb nor a duplicate."""
    text = MINIMAL + """
optuna: &opt {sampler: tpe, seed: 3}
trials:
  <<: {num_samples: 2}
  max_concurrent: 1
"""
    sweep = load_sweep(write_space(tmp_path, text))
    assert sweep.spec.optuna.seed == 3 and sweep.spec.trials.num_samples == 2


@pytest.mark.parametrize("levels, ok", [(4, True), (6, False)])
def test_alias_expansion_is_capped_without_expanding(levels: int, ok: bool) -> None:
    """Aliases that expand to ~11 000 values load; ~1.1 million are refused, and nothing is expanded to find out."""
    from raysweep.spec.load import MAX_YAML_VALUES, parse_yaml_text

    lines = ["a0: &a0 [" + ", ".join(["x"] * 10) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")  # a{i}: 10**(i+1) leaves
    text = "\n".join(lines) + "\n"
    if ok:
        assert len(parse_yaml_text(text, "f.yaml")) == levels
    else:
        with pytest.raises(ConfigError, match=f"f.yaml: a5.*: expands to more than {MAX_YAML_VALUES} values"):
            parse_yaml_text(text, "f.yaml")
