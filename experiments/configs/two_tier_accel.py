"""Two-tier at convergence on real FER-2013 on one accelerator (#16 item 5): flat vs the seed's
three separate networks vs one shared backbone with jointly trained tier-1 and tier-2 heads
(``two_tier_joint``), each from scratch with the engine's accelerator classifier (``accel.py``:
``vgg_fer``, bf16, batch 256) for 16 epochs; the two-tier members 8 epochs each
(``two_tier_epoch_scale`` 0.5: equal compute with flat); both settings, five seeds, no
imbalance handling. Unverified: no accelerator has run it yet (no timing, no accuracy).

    python -m experiments.ablation --config experiments/configs/two_tier_accel.py \\
        --data ../shared/data/fer2013/fer2013_images.zip --workdir checkpoints/two_tier_accel
"""

from experiments.configs import ablation_base, accel


def get_config():
    config = ablation_base.get_config()
    config.data.synthetic_sizes = None             # real data: pass --data
    config.settings = ("six", "seven")
    config.models = ("flat", "two_tier", "two_tier_joint")
    config.variants = ("none",)
    config.seeds = (0, 1, 2, 3, 4)
    config.two_tier_epoch_scale = 0.5
    config.classifier = accel.get_config()
    config.classifier.num_epochs = 16
    return config
