"""The GAN schema: every key of a GAN config with its default (a tiny conditional GAN, a
DCGAN baseline for disgust, the evaluation). Presets (``gan_smoke.py``, ``gan_cpu.py``,
``gan_accel.py``) start from it and override what they change."""

import ml_collections

from fer_jax.classes import EMOTIONS


def gan_hparams(**overrides) -> ml_collections.ConfigDict:
    """Hyperparameters of one GAN model (``config.cgan`` / ``config.dcgan``)."""
    hparams = ml_collections.ConfigDict({
        "g_channels": (64, 32, 16, 8),   # generator widths at 6, 12, 24, 48 px (dcgan: 6, 12, 24)
        "d_channels": (8, 16, 32, 64),   # discriminator widths, each block halves (but the last)
        "embed_dim": 16,                 # cgan: size of the class embedding
        # cgan: "embedding" (a class embedding concatenated to z + per-class batch-norm tables)
        # | "hierarchical" (BigGAN: one shared class embedding + z split into len(g_channels)+1
        # equal chunks: the input, each block, the final norm; latent_dim must divide evenly).
        # dcgan: "embedding" only (unconditional, unused)
        "conditioning": "embedding",
        "latent_dim": 32,
        "loss": "hinge",                 # "hinge" | "nonsaturating"
        "r1_gamma": 0.0,                 # R1 penalty weight (0 = off)
        # cgan: weight of the AC-GAN terms (0 = off): D gets a class head trained with
        # cross-entropy on real faces, G is pushed to make fakes that head puts in their class
        "aux_weight": 0.0,
        "g_aux_scale": 1.0,              # cgan: G's AC term weighs aux_weight x g_aux_scale
        "g_lr": 2e-4, "d_lr": 4e-4, "betas": (0.0, 0.9),
        "ema_decay": 0.99,               # generator EMA used for sampling
        "ema_warmup_steps": 20,          # the EMA follows the weights until this step
        "augment_policy": ("translation", "cutout", "brightness"),  # DiffAugment ops
        "augment_p": 0.5,                # per-op probability (start value when ADA is on)
        "ada_target": 0.6,               # adapt p towards E[sign D(real)] = target (0 = fixed p)
        # ADA keeps p in [ada_min_p, ada_max_p]: a floor > 0 keeps DiffAugment always on
        "ada_speed": 0.005, "ada_min_p": 0.0, "ada_max_p": 0.8,
        # convolutions: "onednn" (oneDNN's kernels on CPU, fer_jax.onednn_conv; XLA's on
        # accelerators) | "xla"
        "conv_impl": "onednn",
    })
    hparams.update(overrides)
    return hparams


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = "cgan"             # "cgan" | "dcgan" (baseline: one DCGAN per class)
    config.data = ml_collections.ConfigDict({
        "source": ml_collections.config_dict.placeholder(str),   # None: synthetic faces
        "synthetic_sizes": {"num_train": 1200, "num_val": 300, "num_test": 0},
        "val_fraction": 0.1, "split_seed": 0,
        "strict": True, "resize": False})  # strict=False: skip bad records; resize=True: to 48x48
    config.classes = EMOTIONS         # classes drawn uniformly for every batch
    config.class_sampling = "uniform"  # "uniform" | "sqrt": classes drawn equally or ∝ √count
    config.seed = 0
    # A cgan workdir: start from its latest state (weights, EMA, optimizer moments, ADA's p,
    # step) and train on to num_steps under this config (same architecture, e.g. another
    # cgan.g_aux_scale): a fine-tune in a new workdir. None: a fresh start from seed.
    config.init_from = ml_collections.config_dict.placeholder(str)
    config.parallel = "jit"           # "jit" | "pmap"
    config.batch_size = 32
    config.num_steps = 100
    config.log_every = 20
    config.checkpoint_every = 40
    config.sample_every = 50
    config.grid_columns = 8
    # The discriminator's per-class overfitting (gan.quality.d_gap_per_class on up to
    # overfit_per_class held-out val, training and fake faces per class) logged to
    # metrics.jsonl every overfit_every steps (0 = off).
    config.overfit_every = 50
    config.overfit_per_class = 64
    config.keep_checkpoints = 2
    config.max_rollbacks = 3          # divergence guard: NaN/inf -> last checkpoint, lr x factor
    config.rollback_lr_factor = 0.5
    config.progress = True            # progress bar (plain periodic lines when not a terminal)

    config.cgan = gan_hparams()
    config.dcgan = gan_hparams(g_channels=(64, 32, 16), d_channels=(16, 32, 64),
                               loss="nonsaturating", g_lr=2e-4, d_lr=2e-4, betas=(0.5, 0.999),
                               augment_policy=(), augment_p=0.0, ada_target=0.0)
    # DCGAN baseline trained (per class) beside a cgan run, and compared with it.
    config.baseline = ml_collections.ConfigDict({"classes": ("disgust",), "num_steps": 100})

    config.eval = ml_collections.ConfigDict({
        # Workdir of a classifier trained on real data (experiments.train_classifier); unset
        # or empty: train one here (<workdir>/feature_classifier) with classifier_config.
        "classifier_workdir": ml_collections.config_dict.placeholder(str),
        "classifier_config": "smoke",    # experiments/configs/<name>.py (classifier presets)
        "classifier_overrides": {"num_epochs": 3},
        "samples_per_class": 100,        # generated images per class for recognizability
        # Measure against the val faces the GAN never saw: leave out val's exact copies of
        # training faces (FER-2013's PublicTest holds 280; fer_jax.data.duplicates) from FID,
        # KID, precision/recall, memorization, recognizability's real recall. CAS keeps all val.
        "val_without_train_copies": True,
        "truncations": (0.0,),           # latent truncations evaluated (0: plain normal z)
        "cas": True,                     # CAS: train cas_config on generated images only
        "cas_config": "smoke",
        "cas_overrides": {"num_epochs": 3},
        "cas_samples_per_class": 100,
        # gan_eval.json in each run's workdir (gan.quality), of faces sampled at this truncation
        # (one of truncations): KID against val from kid_subsets random subsets of at most
        # kid_subset_size faces (and half the smaller set); precision/recall with k-NN radii
        # of precision_recall_k; label sensitivity from sensitivity_latents latents per class
        # (1000: a 95% interval of about +-1 point; 100 left +-3, measured on gan_cpu at 24k steps).
        "quality_truncation": 0.0,
        "kid_subsets": 100,
        "kid_subset_size": 1000,
        "precision_recall_k": 3,
        "sensitivity_latents": 1000,
    })
    return config
