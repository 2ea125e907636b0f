"""The GAN dose-response study on real FER-2013 on this 2-core CPU, about 3.5 hours on ONE core
(measured: 100 min of stages for k = 50 and 436): disgust training faces cut to k = 50, 100,
218 and 436 (all of them), three paired seeds, oversampling as the baseline recipe (the best
imbalance recipe of the 3-seed ablation, README).

Per k: a conditional GAN of ``gan_cpu``'s widths for 2000 steps (classes drawn ∝ √count,
DiffAugment always on: ADA between p = 0.2 and 0.8), sampled at truncation 0.5 (``gan_cpu``
measured disgust 12% -> 84% recognizable at 0.5), 4000 faces of each class filtered one by
one by the judge (the CPU classifier trained for 2 balanced epochs of 1000 faces per class on
the subsampled real split): a face is kept when the judge assigns it to its class; then 3 arms
x 3 seeds of ``cpu.py``'s network from scratch for 3 balanced epochs of 2000 faces per class
without EMA. Every class gets the same number of GAN faces (that of the class with the fewest
kept, at most 1/4 of a class: 500), the other arms as many real repeats.
Nothing fine-tunes ``checkpoints/cpu``: it saw every disgust face.

Estimate from measured one-core speeds: a run is 3 epochs of 14k images at ~350 img/s,
~2-3 min, x 36 = 75-100 min; a GAN 13-20 min (2.5 it/s while the other core trains), x 4;
judges, synthesis and scoring ~10 min: 2.5-3 h in all. Measured: see README.

    nohup taskset -c 0 python -m experiments.gan_dose \\
        --config experiments/configs/gan_dose_cpu.py \\
        --data ../shared/data/fer2013/fer2013_images.zip --workdir checkpoints/gan_dose_cpu \\
        > checkpoints/gan_dose_cpu.log 2>&1 &
"""

from experiments.configs import cpu, dose_base, gan_base, pipeline_base


def get_config():
    config = dose_base.get_config()
    config.data.synthetic_sizes = None             # real data: pass --data
    config.ks = (50, 100, 218, 436)
    config.seeds = (0, 1, 2)
    config.classifier = pipeline_base.classifier(cpu.get_config(), oversample=False,
                                                 gan_mixing=False, num_epochs=3,
                                                 warmup_epochs=0.3, ema_decay=0.0)
    config.classifier.data.max_synthetic_share = 0.25
    config.classifier.data.synthetic_balance = "equal"
    gan = config.gan_pipeline.gan
    gan.cgan = gan_base.gan_hparams(embed_dim=32, latent_dim=64, ema_decay=0.999,
                                    ema_warmup_steps=500, augment_p=0.2, ada_target=0.6,
                                    ada_speed=0.001, ada_min_p=0.2)
    gan.batch_size = 64
    gan.num_steps = 2000
    gan.log_every = 50
    gan.checkpoint_every = 500
    gan.sample_every = 1000
    config.gan_pipeline.synthesize.max_per_class = 600
    # The 2-epoch judge (~31% val accuracy) kept no whole class at the gate at k = 50: faces are
    # filtered one by one instead, from 4000 per class (fear, the hardest, keeps ~3.5%).
    config.face_selection = "face"
    config.face_candidates = 4000
    config.gan_pipeline.synthesize.truncation = 0.5
    config.gan_pipeline.judge = pipeline_base.classifier(cpu.get_config(), gan_mixing=False,
                                                         num_epochs=2, ema_decay=0.0)
    config.gan_pipeline.judge.data.target_per_class = 1000
    config.gan_pipeline.judge.grouping = config.gan_pipeline.get_ref("setting")
    # The best imbalance recipe of the 3-seed ablation (README; logit adjustment cost accuracy
    # and macro-F1 there), in balanced epochs of 2000 faces per class (half the real split).
    config.baseline = "oversampling"
    config.classifier.data.target_per_class = 2000
    return config
