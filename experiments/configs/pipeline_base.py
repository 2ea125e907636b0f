"""The pipeline schema: every key of a pipeline config with its default (the embedded
SYNTHETIC faces, a tiny conditional GAN, a small synthetic top-up, narrow ``compact``
classifiers for a few epochs). Presets (``pipeline_default.py``, ``pipeline_cpu.py``,
``pipeline_accel.py``) start from it and override what they change."""

import ml_collections
from ml_collections import config_dict

from experiments.configs import classifier_base, gan_base
from fer_jax.classes import EMOTIONS

# The default's classifiers: smoke net, 6 epochs of batch 32 (about half a minute each here).
SMALL = {"num_epochs": 6, "batch_size": 32}


def classifier(base: ml_collections.ConfigDict | None = None, *, oversample: bool = True,
               gan_mixing: bool = True, synthetic_balance: str = "equal",
               **overrides) -> ml_collections.ConfigDict:
    """One classifier section: an engine config (default: the schema's, a narrow
    ``compact`` net) with ``overrides`` (e.g. ``num_epochs``). ``grouping`` is set by the
    pipeline (the setting for the flat model, the member groupings for two-tier);
    ``data.gan_mixing`` mixes the pipeline's synthetic faces into its training epochs, every
    class with kept faces the same number of them (``synthetic_balance="equal"``: no class is
    "the GAN-looking one")."""
    config = classifier_base.get_config() if base is None else base
    config.data.oversample = oversample
    config.data.gan_mixing = gan_mixing
    config.data.synthetic_balance = synthetic_balance
    config.update(overrides)
    return config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = ml_collections.ConfigDict({
        "source": config_dict.placeholder(str),      # None: the synthetic faces; --data PATH
        "synthetic_sizes": {"num_train": 1400, "num_val": 350, "num_test": 350},
        "val_fraction": 0.1, "split_seed": 0,
        "strict": True, "resize": False})  # strict=False: skip bad records; resize=True: to 48x48
    config.setting = "seven"                      # "seven" (with disgust) | "six" (the seed's)

    # A finished `experiments.train_gan` run to sample instead of training config.gan here.
    config.gan_workdir = config_dict.placeholder(str)
    config.gan = gan_base.get_config()            # see experiments/configs/gan_base.py
    config.gan.num_steps = 100
    config.gan.checkpoint_every = 50
    config.gan.sample_every = 100
    config.gan.log_every = 25

    # Synthetic faces of every class: per class, as many as the training mixes can use (up to
    # max_synthetic_share of a class's target), at most max_per_class. The
    # recognizability gate mixes a class only when the judge (below) labels at least
    # min_recognizability of its generated faces as that class, and at least that share of
    # the faces it labels as the class were generated as it (gan.metrics.recognizability_gate;
    # 0.5 = 3.5x chance in 7 classes; 0.0 mixes every class).
    config.synthesize = ml_collections.ConfigDict({
        "classes": EMOTIONS, "max_per_class": 200, "seed": 0,
        "truncation": 0.0,    # > 0: latents truncated to [-t, t] (synthesize --truncation)
        "min_recognizability": 0.5})
    # The gate's judge: a classifier trained on the real training split only (never on GAN
    # faces: its data.gan_mixing is ignored), with class-balanced epochs; or judge_workdir, a
    # finished `experiments.train_classifier` run on the same data to reuse instead.
    config.judge_workdir = config_dict.placeholder(str)
    config.judge = classifier(gan_mixing=False, **SMALL)
    config.judge.grouping = config.get_ref("setting")

    config.flat = classifier(**SMALL)
    config.flat.grouping = config.get_ref("setting")
    config.two_tier = ml_collections.ConfigDict({
        "setting": config.get_ref("setting"),
        "routing": "soft",                           # "soft": p(group) p(class|group) | "hard"
        "init_from_flat": False,                     # members fine-tune the flat model
        "tier1": classifier(**SMALL),
        "negative": classifier(**SMALL),
        "positive": classifier(**SMALL)})

    config.eval = ml_collections.ConfigDict({
        "checkpoint": "latest",                      # "latest": final model | "best": best on val
        "tta": False,
        # 6-class decision offsets (experiments.calibrate): "seed" (beat the seed's recall
        # profile) | "balanced" | None; fitted and cross-fitted on val, never on test.
        "calibration": "seed",
        "calibration_folds": 2,
        "gan_samples_per_class": 100})               # GAN recognizability by the flat model
    return config
