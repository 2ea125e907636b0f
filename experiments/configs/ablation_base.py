"""The ablation schema: every key of an ablation config with its default (the embedded
SYNTHETIC faces, both settings, the flat and three-network two-tier models, the four training-data variants, two seeds, the
pipeline schema's tiny classifier; every variant compared with ``none``). Presets (``ablation_default.py``, ``ablation_cpu.py``,
``seed_comparison_cpu.py``, ``seed_comparison_finetune_cpu.py``) start from it."""

import ml_collections
from ml_collections import config_dict

from experiments.configs import pipeline_base


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = pipeline_base.get_config().data
    config.settings = ("seven", "six")
    config.models = ("flat", "two_tier")
    config.variants = ("none", "oversampling", "gan", "gan_oversampling")
    config.seeds = (0, 1)
    config.routing = "soft"
    # Two-tier members train classifier.num_epochs * this (a whole number): tier 1 sees all N
    # images and the two group networks N together, so 0.5 is equal compute with flat.
    config.two_tier_epoch_scale = 1.0
    # Every run's engine config; each run sets grouping, seed, oversampling, synthetic .npz.
    config.classifier = pipeline_base.classifier(**pipeline_base.SMALL)
    # Oversampling draws each class up to the mean class count (epochs as long as the real
    # split, equal compute across variants) instead of the majority count.
    config.equal_epoch_size = False
    config.checkpoint = "latest"               # "latest" | "best" (by val accuracy)
    config.eval_split = "auto"                 # "auto" | "val": val; "test" only when asked
    # Every variant is compared with this one, seed by seed (paired CIs over seeds and images).
    config.reference_variant = "none"
    # ... and every model with this one, recipe by recipe (flat vs two-tier, paired the same way).
    config.reference_model = "flat"
    config.bootstrap_seed = 0
    config.matched_recall = 0.5                # disgust precision is compared at this recall
    config.posthoc_folds = 2                   # cross-fitting folds of post-hoc adjustment
    # Synthetic faces for the GAN variants: a .npz or a pipeline workdir holding synthetic.npz;
    # None: train the GAN here with `gan_pipeline` (a pipeline config; its data is config.data).
    config.synthetic_npz = config_dict.placeholder(str)
    config.gan_pipeline = pipeline_base.get_config()
    return config
