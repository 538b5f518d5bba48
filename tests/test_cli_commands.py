"""The thin commands, driven in-process as a user types them: env, data synth, eval hico / hico-det."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from support import run_cli


def test_env_prints_a_copy_paste_block(capsys) -> None:
    import ray
    import torch

    code, out, _ = run_cli(["env"], capsys)
    assert code == 0 and out.startswith("```") and out.rstrip().endswith("```")
    assert f"torch: {torch.__version__}" in out and f"ray: {ray.__version__}" in out
    assert "optuna:" in out and "GPUs:" in out and "RAY_ADDRESS:" in out and "CUDA available:" in out


def test_env_hides_credentials(capsys, monkeypatch) -> None:
    token = "aB3dE5gH7jK9mN1pQ3sT5vW7"
    monkeypatch.setenv("RAY_ADDRESS", f"ray://alice:s3cret-pass@head.example.org:10001?token={token}&x=1")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "plain-secret")
    monkeypatch.setenv("RAY_JOB_CONFIG", f"--header Bearer {'0f' * 20}")
    code, out, _ = run_cli(["env"], capsys)
    assert code == 0
    assert "RAY_ADDRESS: ray://***@head.example.org:10001?token=***&x=1" in out
    assert "RAY_AUTH_TOKEN: (set, hidden)" in out and "RAY_JOB_CONFIG: --header Bearer ***" in out
    for secret in ("alice", "s3cret-pass", token, "plain-secret", "0f" * 20):
        assert secret not in out


@pytest.mark.parametrize("value", ["ray://head-node-of-the-prod-cluster:10001", "auto", "10.0.0.12:6379",
                                   "ip-10-0-0-1.us-west-2.compute.internal:6379", "token"])
def test_env_leaves_plain_addresses_alone(value: str) -> None:
    from raysweep.commands.env import redact

    assert redact(value) == value


def test_synth_hico_then_eval_hico_json(tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "hico"
    code, out, err = run_cli(["data", "synth", "hico", "--out", str(out_dir), "--seed", "3", "--num-train", "60",
                          "--num-test", "30", "--image-size", "32"], capsys)
    assert code == 0, err
    assert (out_dir / "anno.pkl").exists() and len(list((out_dir / "images" / "test2015").iterdir())) == 30
    with open(out_dir / "anno.pkl", "rb") as handle:
        anno = pickle.load(handle)
    labels = anno["anno_test"].T
    perfect = np.where(labels == 1, 1.0, 0.0) + 0.01 * np.random.default_rng(0).random(labels.shape)
    np.save(tmp_path / "scores.npy", perfect)
    code, out, err = run_cli(["eval", "hico", "--anno", str(out_dir / "anno.pkl"), "--scores", str(tmp_path / "scores.npy"),
                          "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["full"] == pytest.approx(1.0)  # classes without test positives would pull this below 1
    assert set(result) >= {"full", "few@1", "few@5", "few@10", "known_object", "per_class_ap"}
    np.save(tmp_path / "bad.npy", perfect[:, :5])
    code, _, err = run_cli(["eval", "hico", "--anno", str(out_dir / "anno.pkl"), "--scores", str(tmp_path / "bad.npy")], capsys)
    assert code == 2 and err.count("\n") == 1 and "bad.npy" in err and "Traceback" not in err


def test_synth_hicodet_then_eval_hicodet(tmp_path: Path, capsys) -> None:
    root = tmp_path / "hicodet"
    code, _, err = run_cli(["data", "synth", "hicodet", "--out", str(root), "--num-train", "40", "--num-test", "20",
                        "--image-size", "64"], capsys)
    assert code == 0, err
    test = json.loads((root / "annotations" / "test_hico.json").read_text())
    preds = []
    for record in test:  # the ground truth itself as predictions: every annotated pair found with score 1
        boxes = [a["bbox"] for a in record["annotations"]]
        from raysweep.data.hicodet import coco_id_to_index

        labels = [coco_id_to_index(a["category_id"]) for a in record["annotations"]]
        verbs = np.zeros((max(1, len(record["hoi_annotation"])), 117))
        subs, objs = [], []
        for k, hoi in enumerate(record["hoi_annotation"]):
            verbs[k, hoi["category_id"] - 1] = 1.0
            subs.append(hoi["subject_id"])
            objs.append(hoi["object_id"])
        if not subs:
            boxes, labels, subs, objs = [[0, 0, 1, 1], [0, 0, 1, 1]], [0, 0], [0], [1]
        preds.append({"boxes": boxes, "labels": labels, "verb_scores": verbs[:len(subs)].tolist(),
                      "sub_ids": subs, "obj_ids": objs})
    (tmp_path / "preds.json").write_text(json.dumps(preds))
    for protocol in ("qpic", "official"):
        code, out, err = run_cli(["eval", "hico-det", "--anno-dir", str(root), "--pred", str(tmp_path / "preds.json"),
                              "--protocol", protocol, "--json"], capsys)
        assert code == 0, err
        result = json.loads(out)
        assert result["default"]["full"] == pytest.approx(1.0, abs=1e-9)
    code, _, err = run_cli(["eval", "hico-det", "--anno-dir", str(root), "--pred", str(tmp_path / "preds.json"),
                        "--protocol", "matlab"], capsys)
    assert code == 2 and "qpic, official" in err
    code, _, err = run_cli(["eval", "hico-det", "--anno-dir", str(root), "--pred", str(tmp_path / "missing.json")], capsys)
    assert code == 2 and "missing.json" in err and "Traceback" not in err
