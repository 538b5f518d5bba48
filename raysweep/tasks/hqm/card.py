"""QPIC + HQM's card: what the sweep's process knows of the task without importing it (raysweep.tasks.card)."""

from __future__ import annotations

from raysweep.tasks.card import TaskCard
from raysweep.tasks.hqm.config import HqmConfig
from raysweep.tasks.hqm.paper import table_for

CARD = TaskCard(
    name="hqm",
    config_model=HqmConfig,
    # HICO-DET reports the first six; V-COCO reports map (= role_ap_s1, its headline number, so one objective serves
    # both datasets), role_ap_s1, role_ap_s2 and agent_ap.
    metric_names=(
        "map",
        "map_rare",
        "map_non_rare",
        "ko_map",
        "ko_map_rare",
        "ko_map_non_rare",
        "role_ap_s1",
        "role_ap_s2",
        "agent_ap",
    ),
    task_class="raysweep.tasks.hqm.task:HqmTask",
    # data: the synthetic HICO-DET; model: the pretrained checkpoint is checked against each searched model shape
    prepare_keys=(
        "data.dataset",
        "data.root",
        "data.synth.num_train",
        "data.synth.num_test",
        "data.synth.image_size",
        "data.synth.seed",
        "data.synth.objects",
        "data.synth.pairs_per_image",
        "data.synth.object_scale",
        "model.pretrained",
        "model.backbone",
        "model.d_model",
        "model.nhead",
        "model.enc_layers",
        "model.dec_layers",
        "model.dim_feedforward",
        "model.num_queries",
    ),
    # HICO-DET's table, V-COCO's (Scenario 1 / 2), or both side by side: whichever the trials' datasets need
    paper_table=table_for,
)
