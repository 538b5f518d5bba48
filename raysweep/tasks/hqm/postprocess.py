"""QPIC's PostProcessHOI: raw predictions -> per-image detections in original-image pixels.

No NMS, no top-k and no verb/object validity masking here: the evaluator does those, as QPIC's does
(docs/hicodet_protocols.md).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torchvision.ops import box_convert


@torch.no_grad()
def postprocess_hoi(outputs: Mapping[str, torch.Tensor], orig_sizes: torch.Tensor,
                    subject_label: int = 0) -> list[dict[str, np.ndarray]]:
    """outputs: pred_obj_logits [B, Q, C+1], pred_verb_logits [B, Q, V], pred_{sub,obj}_boxes [B, Q, 4] cxcywh-n;
    orig_sizes [B, 2] (h, w) of the original images.

    -> per image: boxes [2Q, 4] float32 xyxy original pixels (Q subjects, then Q objects), labels [2Q] int64
    (subjects `subject_label`, objects argmax over the real classes), verb_scores [Q, V] float32
    (sigmoid(verb) * object score), sub_ids [Q] = 0..Q-1, obj_ids [Q] = Q..2Q-1.
    """
    prob = outputs["pred_obj_logits"].float().softmax(-1)  # no-object stays in the softmax, not in the argmax
    obj_scores, obj_labels = prob[..., :-1].max(-1)
    verb_scores = outputs["pred_verb_logits"].float().sigmoid() * obj_scores[..., None]
    h, w = orig_sizes.float().unbind(1)
    scale = torch.stack([w, h, w, h], 1)[:, None, :]
    sub = box_convert(outputs["pred_sub_boxes"].float(), "cxcywh", "xyxy") * scale
    obj = box_convert(outputs["pred_obj_boxes"].float(), "cxcywh", "xyxy") * scale
    q = sub.shape[1]
    results = []
    for i in range(sub.shape[0]):
        subject_labels = torch.full((q,), subject_label, dtype=torch.int64, device=obj_labels.device)
        labels = torch.cat([subject_labels, obj_labels[i]])
        results.append({
            "boxes": torch.cat([sub[i], obj[i]]).cpu().numpy().astype(np.float32),
            "labels": labels.cpu().numpy(),
            "verb_scores": verb_scores[i].cpu().numpy().astype(np.float32),
            "sub_ids": np.arange(q, dtype=np.int64),
            "obj_ids": np.arange(q, 2 * q, dtype=np.int64),
        })
    return results
