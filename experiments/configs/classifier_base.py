"""The classifier schema: every key of a classifier (engine) config with its default. Presets
(``smoke.py``, ``cpu.py``, ``accel.py``, ``seed_cnn.py``) start from it and override what they
change; code reads configs by attribute only, so every default lives here."""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = "compact"          # see fer_jax.models.MODELS
    config.model_kwargs = ml_collections.ConfigDict(
        {"width": 8, "multipliers": (2, 4, 8), "dense": 64})
    config.dtype = "float32"          # compute dtype: "float32" | "bfloat16" (params stay f32)
    # Layers (fer_jax.models): "onednn" (fast BatchNorm/max-pool, oneDNN convolutions on CPU)
    # | "fast" (the same with XLA's convolutions) | "flax" (flax's layers)
    config.layer_impl = "onednn"
    config.grouping = "seven"         # fer_jax.classes grouping: "seven", "six" (no disgust), ...
    # Output head: None: one dense softmax over the grouping's classes | "two_tier": a
    # hierarchical softmax, tier-1 (negative/positive) and per-group heads on the one backbone,
    # trained jointly (fer_jax.models.HierarchicalHead; grouping "seven" or "six"). None, not
    # "flat": runs recorded before this key existed match it.
    config.head = config_dict.placeholder(str)

    config.data = ml_collections.ConfigDict({
        "source": config_dict.placeholder(str),         # None: the synthetic faces
        "synthetic_sizes": {"num_train": 2400, "num_val": 600, "num_test": 600},
        "val_fraction": 0.1,                            # val carved from train if a source has none
        "split_seed": 0,
        "strict": True,                                 # False: skip bad records (--skip-bad)
        "resize": False,                                # True: non-48x48 images resized to it
        "oversample": False,                            # class-balanced epochs (sampling contract)
        "target_per_class": config_dict.placeholder(int),
        "synthetic_npz": config_dict.placeholder(str),  # GAN images .npz to mix in
        "max_synthetic_share": 0.5,
        # "gap": synthetic faces top minority classes up to the target | "equal": every class
        # with synthetic faces gets the same number (sampling.build_training_mix)
        "synthetic_balance": "gap",
        "gan_mixing": False,                            # pipelines: mix the pipeline's GAN faces
    })
    # fer_jax.data.augment.AugmentConfig: crops of a side drawn from [min_crop, max_crop] px
    # resized back to 48 (48, 48: plain shifts); RandomErasing with probability erase_prob
    config.augment = ml_collections.ConfigDict({
        "max_shift": 4, "flip": True, "max_rotation_deg": 10.0, "brightness": 0.15,
        "contrast": 0.15, "pad_mode": "edge", "min_crop": 48, "max_crop": 48,
        "erase_prob": 0.0,
    })

    config.init_from = config_dict.placeholder(str)  # trained classifier workdir: fine-tune it
    config.seed = 0
    config.parallel = "jit"           # "jit" | "pmap"
    config.batch_size = 64
    config.eval_batch_size = 256
    config.num_epochs = 10

    config.optimizer = "adamw"        # "sgd" (momentum, nesterov) | "adam" | "adamw"
    config.learning_rate = 1e-2
    config.momentum = 0.9
    config.nesterov = True
    config.weight_decay = 1e-4
    config.schedule = "cosine"        # "cosine" (with warmup) | "constant" | "plateau"
    config.warmup_epochs = 0.5
    config.plateau_factor = 0.5       # schedule="plateau": lr x factor after `patience` epochs
                                      # without a lower val loss
    config.plateau_patience = 3
    config.loss = "cross_entropy"     # | "logit_adjusted": + tau log prior in the loss (Menon 2021)
    config.logit_adjustment_tau = 1.0
    config.label_smoothing = 0.0
    config.grad_clip_norm = 0.0       # 0 = off
    config.ema_decay = 0.0            # weight EMA that predicts (e.g. 0.999); 0 = off
    config.ema_warmup_steps = 200     # the EMA starts from the weights at this step
    config.ensemble_size = 1          # K > 1: K members (seeds seed..seed+K-1) in one vmapped step

    config.log_every_steps = 10
    config.checkpoint_every_steps = 0  # 0: only at epoch ends (and on SIGTERM/SIGINT)
    config.keep_checkpoints = 2        # latest N, plus the best by val accuracy
    config.max_rollbacks = 3           # divergence guard: NaN/Inf -> last checkpoint, lr x factor
    config.rollback_lr_factor = 0.5
    config.progress = True             # progress bar (plain periodic lines when not a terminal)
    return config
