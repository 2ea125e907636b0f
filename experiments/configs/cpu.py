"""Real FER-2013 on a 2-core CPU within an hour: the ``compact`` narrow VGG-style net (one
conv at 48 px, two per stage at 24/12/6 px with 32/96/256 channels), AdamW with warmup +
cosine, label smoothing, shift/flip/rotation/photometric augmentation, 36 epochs.

Measured on the idle 2-core machine (2026-11-29): 50 minutes (~82 s per epoch, 360 img/s),
val (PublicTest, 7 classes) 65.3% final, 66.2% with ``experiments.evaluate --tta``.

    python -m experiments.train_classifier --config experiments/configs/cpu.py \\
        --data ../shared/data/fer2013/fer2013_images.zip
"""

from experiments.configs import classifier_base


def get_config():
    config = classifier_base.get_config()
    config.model = "compact"
    config.model_kwargs = {"width": 16, "multipliers": (2, 6, 16), "dense": 256, "dropout": 0.3}
    config.batch_size = 128
    config.num_epochs = 36
    config.optimizer = "adamw"
    config.learning_rate = 2e-3
    config.weight_decay = 0.05        # decoupled (AdamW), kernels only
    config.schedule = "cosine"
    config.warmup_epochs = 1.0
    config.label_smoothing = 0.1
    config.log_every_steps = 20
    config.checkpoint_every_steps = 100
    return config
