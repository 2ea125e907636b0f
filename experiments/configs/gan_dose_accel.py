"""The GAN dose-response study on real FER-2013 on one accelerator: disgust training faces cut
to k = 50, 100, 218 and 436 (all of them), five paired seeds, oversampling as the baseline
recipe (the best imbalance recipe of the 3-seed ablation, README). Per k: a mid-width
conditional GAN for 10000 steps at batch 256 sampled at truncation 0.5, 2000 faces of each
class judged by the accelerator classifier (``accel.py``)
trained for 10 epochs on the subsampled real split, the gate at 0.5; then 3 arms x 5 seeds of
``accel.py`` from scratch for 15 epochs (every kept class the same number of GAN faces, at
most 1/4 of a class; classes drawn ∝ √count and DiffAugment always on in the GAN).
Unverified: no accelerator has run it; at the accel check's ~5 s per epoch the 60 runs take
~1.5 h, the GANs are not timed.

    python -m experiments.gan_dose --config experiments/configs/gan_dose_accel.py \\
        --data ../shared/data/fer2013/fer2013_images.zip --workdir checkpoints/gan_dose_accel
"""

from experiments.configs import accel, dose_base, gan_base, pipeline_base


def get_config():
    config = dose_base.get_config()
    config.data.synthetic_sizes = None             # real data: pass --data
    config.ks = (50, 100, 218, 436)
    config.seeds = (0, 1, 2, 3, 4)
    config.classifier = pipeline_base.classifier(accel.get_config(), oversample=False,
                                                 gan_mixing=False, num_epochs=15,
                                                 warmup_epochs=1.0)
    config.classifier.data.max_synthetic_share = 0.25
    config.classifier.data.synthetic_balance = "equal"
    gan = config.gan_pipeline.gan
    gan.cgan = gan_base.gan_hparams(
        g_channels=(256, 128, 64, 32), d_channels=(32, 64, 128, 256), embed_dim=64,
        latent_dim=128, g_lr=1e-4, d_lr=4e-4, ema_decay=0.999, ema_warmup_steps=1000,
        augment_p=0.2, ada_target=0.6, ada_speed=0.0005, ada_min_p=0.2)
    gan.batch_size = 256
    gan.num_steps = 10000
    gan.log_every = 100
    gan.checkpoint_every = 2000
    gan.sample_every = 5000
    config.gan_pipeline.synthesize.max_per_class = 2000
    config.gan_pipeline.synthesize.truncation = 0.5
    config.gan_pipeline.judge = pipeline_base.classifier(accel.get_config(), oversample=False,
                                                         gan_mixing=False, num_epochs=10)
    config.gan_pipeline.judge.grouping = config.gan_pipeline.get_ref("setting")
    # The best imbalance recipe of the 3-seed ablation (README; logit adjustment cost accuracy
    # and macro-F1 there); balanced epochs of ~4100 faces per class, about as long as the
    # real split, as in ablation_cpu (equal_epoch_size).
    config.baseline = "oversampling"
    config.classifier.data.target_per_class = 4100
    return config
