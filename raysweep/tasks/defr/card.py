"""DEFR's card: what the sweep's process knows of the task without importing it (raysweep.tasks.card)."""

from __future__ import annotations

from raysweep.tasks.card import TaskCard
from raysweep.tasks.defr.config import DefrConfig
from raysweep.tasks.defr.paper import DEFR_TABLE

CARD = TaskCard(
    name="defr",
    config_model=DefrConfig,
    metric_names=("map", "map_few1", "map_few5", "map_few10", "map_ko"),
    task_class="raysweep.tasks.defr.task:DefrTask",
    # The model keys: `clip` text embeddings come from the CLIP backbone's own model (tasks/defr/text_tower.py).
    prepare_keys=(
        "classifier.init",
        "classifier.text_encoder",
        "classifier.text_encoder_weights",
        "prompts.template",
        "prompts.no_interaction",
        "data.vocabulary",
        "model.backbone",
        "model.patch_size",
        "model.weights",
    ),
    paper_table=lambda configs: DEFR_TABLE,  # DEFR's main table (tasks/defr/paper.py)
)
