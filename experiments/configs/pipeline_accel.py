"""Pipeline on real FER-2013 on one accelerator: the accelerator conditional GAN
(``gan_accel.py``, half its steps), up to 4000 synthetic faces per minority class, and the
engine's accelerator classifier (``accel.py``: ``vgg_fer``, bf16, batch 256) as it is for
the flat model and, fine-tuning it on oversampled epochs with GAN faces, each two-tier member;
evaluation with TTA and calibrated 6-class decisions. Unverified: no accelerator was lent to a session yet.

    python -m experiments.pipeline --config experiments/configs/pipeline_accel.py \\
        --data ../shared/data/fer2013/fer2013_images.zip --workdir checkpoints/pipeline_accel
"""

from experiments.configs import accel, gan_accel, pipeline_base


def member(num_epochs: int, **overrides):
    """The engine's accelerator classifier for ``num_epochs`` class-balanced epochs, mixing
    the pipeline's GAN faces."""
    return pipeline_base.classifier(accel.get_config(), num_epochs=num_epochs, **overrides)


def get_config():
    config = pipeline_base.get_config()
    config.data.synthetic_sizes = None            # real data: pass --data
    config.gan = gan_accel.get_config()
    config.gan.num_steps = 20000
    config.synthesize.max_per_class = 4000
    # The flat model is the accel recipe as it is (no oversampling, no GAN faces): the
    # two-tier members add them.
    # The gate's judge: the accel classifier for 10 epochs on the real training split.
    config.judge = member(num_epochs=10, oversample=False, gan_mixing=False)
    config.judge.grouping = config.get_ref("setting")
    config.flat = member(num_epochs=40, oversample=False, gan_mixing=False)
    config.flat.grouping = config.get_ref("setting")
    # Members fine-tune the flat model (on CPU this lifted two-tier from 61.8% to 65.5%).
    config.two_tier.init_from_flat = True
    config.two_tier.tier1 = member(num_epochs=10, learning_rate=0.005, warmup_epochs=0.5)
    config.two_tier.negative = member(num_epochs=10, learning_rate=0.005, warmup_epochs=0.5)
    config.two_tier.positive = member(num_epochs=10, learning_rate=0.005, warmup_epochs=0.5)
    config.eval.tta = True
    config.eval.gan_samples_per_class = 500
    return config
