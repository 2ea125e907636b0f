"""Conditional GAN on real FER-2013 for one accelerator (H100-class): full widths, batch 256,
R1-free hinge + spectral norm + DiffAugment/ADA, DCGAN baselines for every class, evaluated
with the classifier of ``experiments/configs/accel.py`` (train it first). Use
``--config.parallel=pmap`` on several devices.

Stronger conditioning (#16): BigGAN-style hierarchical latent + shared class embedding
(latent_dim 160: five chunks of 32), classes drawn in proportion to the square root of their
counts, and DiffAugment always on (ADA moves p within [0.2, ada_max_p]). These settings are not
yet measured on real data.

    python -m experiments.train_gan --config experiments/configs/gan_accel.py \\
        --data ../shared/data/fer2013/fer2013_images.zip --workdir checkpoints/gan_accel \\
        --config.eval.classifier_workdir=checkpoints/accel
"""

from experiments.configs import gan_base
from fer_jax.classes import EMOTIONS


def get_config():
    config = gan_base.get_config()
    config.cgan = gan_base.gan_hparams(
        g_channels=(512, 256, 128, 64), d_channels=(64, 128, 256, 512), embed_dim=128,
        conditioning="hierarchical", latent_dim=160,  # 160 = 32 per chunk x (1 + 3 blocks + 1)
        g_lr=1e-4, d_lr=4e-4, ema_decay=0.9999, ema_warmup_steps=2000,
        augment_p=0.2, ada_min_p=0.2, ada_target=0.6, ada_speed=0.0005)
    config.dcgan = gan_base.gan_hparams(
        g_channels=(512, 256, 128), d_channels=(128, 256, 512), latent_dim=128,
        loss="nonsaturating", g_lr=2e-4, d_lr=2e-4, betas=(0.5, 0.999),
        augment_policy=(), augment_p=0.0, ada_target=0.0)
    config.class_sampling = "sqrt"
    config.batch_size = 256
    config.num_steps = 40000
    config.log_every = 100
    config.checkpoint_every = 2000
    config.sample_every = 2000
    config.overfit_every = 2000
    config.baseline.classes = EMOTIONS
    config.baseline.num_steps = 10000
    config.eval.samples_per_class = 2000
    config.eval.cas_config = "cpu"
    config.eval.cas_overrides = {"num_epochs": 15}
    config.eval.cas_samples_per_class = 5000
    return config
