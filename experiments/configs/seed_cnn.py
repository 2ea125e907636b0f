"""The seed project's recipe: its Keras CNN, Adam 1e-4, batch 64, shift + flip augmentation,
the 6-class setting (disgust dropped), 50 epochs. A baseline; slow on CPU (~30-80 img/s).

    python -m experiments.train_classifier --config experiments/configs/seed_cnn.py \\
        --data ../shared/data/fer2013/fer2013_images.zip
"""

from experiments.configs import classifier_base


def get_config():
    config = classifier_base.get_config()
    config.model = "seed_cnn"
    config.model_kwargs = {}
    config.grouping = "six"
    config.batch_size = 64
    config.num_epochs = 50
    config.optimizer = "adam"
    config.learning_rate = 1e-4
    config.weight_decay = 0.0
    config.schedule = "constant"
    config.warmup_epochs = 0.0
    config.augment.max_shift = 4
    config.augment.flip = True
    config.augment.max_rotation_deg = 0.0
    config.augment.brightness = 0.0
    config.augment.contrast = 0.0
    config.log_every_steps = 50
    config.checkpoint_every_steps = 500
    return config
