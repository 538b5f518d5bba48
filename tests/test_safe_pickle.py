"""No file runs code: the restricted unpickler admits what DEFR's anno.pkl is made of and refuses everything else,
through every command that reads anno.pkl (`eval hico`, `tune`'s preparation, `embed`); `--allow-pickle` is the
full unpickler for trusted files."""

from __future__ import annotations

import collections
import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from raysweep.safe_pickle import PickleRefused, load_pickle, load_pickle_file
from support import run_cli
from test_bad_input_catalogue import BASE_FILES, CreatesFile, _anno, _pickle, _write_files, tune


def test_admits_what_anno_pkl_is_made_of() -> None:
    record = np.zeros(2, dtype=[("vname", "U8"), ("nname", "O")])
    record["nname"] = [np.array(["bicycle"]), np.array(["cup"])]
    anno = {**_anno(), "hoi_list": record, "extra": [np.float32(2.5), np.int64(3), {1, 2}, frozenset({3}), 1j, b"x",
                                                   collections.OrderedDict(a=1), np.array([True]), slice(1, 2)]}
    for protocol in (0, 2, 4, 5):
        loaded = load_pickle(io.BytesIO(pickle.dumps(anno, protocol=protocol)))
        np.testing.assert_array_equal(loaded["anno_test"], anno["anno_test"])
        assert list(loaded["files_test"]) == list(anno["files_test"])
        assert loaded["hoi_list"]["vname"].tolist() == ["", ""]
        assert loaded["hoi_list"]["nname"][0].tolist() == ["bicycle"]
        assert loaded["extra"][:4] == [2.5, 3, {1, 2}, frozenset({3})]
        assert loaded["extra"][6] == {"a": 1}


def test_reads_old_module_spellings(tmp_path: Path) -> None:
    """Protocol-2 pickles name `__builtin__` and numpy 1.x's `numpy.core.multiarray`: both are the admitted types."""
    py3 = pickle.dumps({"anno_test": np.array([[1.0, -1.0]])}, protocol=2)
    py2 = py3.replace(b"numpy._core.multiarray", b"numpy.core.multiarray").replace(b"\x8c\x08builtins", b"")
    path = tmp_path / "anno.pkl"
    path.write_bytes(py2)
    np.testing.assert_array_equal(load_pickle_file(path)["anno_test"], [[1.0, -1.0]])


@pytest.mark.parametrize("payload", [(eval, ("1",)), (open, ("x", "w")), (__import__("os").system, ("true",)),
                                     (getattr, ((), "count")), (__import__("subprocess").Popen, (["true"],))],
                         ids=["eval", "open", "os.system", "getattr", "Popen"])
def test_refuses_anything_that_could_run_code(payload) -> None:
    class Crafted:
        def __reduce__(self):
            return payload

    with pytest.raises(PickleRefused, match="could run code"):
        load_pickle(io.BytesIO(pickle.dumps({"anno_test": Crafted()})))


def test_the_crafted_file_really_runs_code_with_the_full_unpickler(tmp_path: Path) -> None:
    """The payload the command tests use is live: the full unpickler creates the file, so its absence means refusal."""
    target = tmp_path / "pwned"
    load_pickle(io.BytesIO(_pickle({"x": CreatesFile(str(target))})), allow_pickle=True)
    assert target.exists()


def _crafted_dataset(tmp_path: Path) -> Path:
    _write_files(tmp_path, BASE_FILES)
    (tmp_path / "hico" / "anno.pkl").write_bytes(_pickle(_anno(hoi_list=CreatesFile(str(tmp_path / "pwned")))))
    return tmp_path / "pwned"


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    import raysweep.sweep.runner as runner

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was about to start")

    monkeypatch.setattr(runner, "init_ray", refuse)


def test_no_command_runs_a_crafted_anno_pkl(tmp_path: Path, capsys) -> None:
    pwned = _crafted_dataset(tmp_path)
    anno = str(tmp_path / "hico" / "anno.pkl")
    commands = {
        "eval hico": ["eval", "hico", "--anno", anno, "--scores", str(tmp_path / "scores.npy")],
        "tune": [a.replace("<tmp>", str(tmp_path)) for a in tune("good.yaml", "data.root=<tmp>/hico")],
        "validate": ["validate", str(tmp_path / "good.yaml"), f"data.root={tmp_path}/hico"],
        "embed": ["embed", str(tmp_path / "good.yaml"), f"data.root={tmp_path}/hico", "classifier.init=language",
                  "--out", str(tmp_path / "cache")],
    }
    for label, argv in commands.items():
        code, _, err = run_cli(argv, capsys)
        assert not pwned.exists(), f"{label} ran the pickle's code"
        if label == "validate":  # validate reads no dataset
            assert code == 0, err
            continue
        assert code == 2 and "refused to unpickle: it names io.open" in err, (label, err)
        assert err.count("\n") == 1 and "Traceback" not in err


def test_allow_pickle_reads_a_trusted_file_with_an_unlisted_type(tmp_path: Path, capsys) -> None:
    """A harmless type outside the list (a datetime) is refused by default and read with --allow-pickle."""
    import datetime

    _write_files(tmp_path, BASE_FILES)
    anno = tmp_path / "a.pkl"
    anno.write_bytes(_pickle({**_anno(), "created": datetime.date(2015, 9, 20)}))
    argv = ["eval", "hico", "--anno", str(anno), "--scores", str(tmp_path / "scores.npy"), "--json"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "it names datetime.date" in err and "pass --allow-pickle for a file you trust" in err
    code, out, err = run_cli([*argv, "--allow-pickle"], capsys)
    assert code == 0 and '"full"' in out, err
    # the task's loader follows data.allow_pickle, which --allow-pickle sets
    from raysweep.data.hico import load_hico

    (tmp_path / "hico" / "anno.pkl").write_bytes(anno.read_bytes())
    with pytest.raises(Exception, match="refused to unpickle"):
        load_hico(tmp_path / "hico")
    assert load_hico(tmp_path / "hico", allow_pickle=True).num_classes == 3
