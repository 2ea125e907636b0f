"""``vgg_fer`` (Khaireddin & Chen 2021) on real FER-2013 for one accelerator (H100-class):
bf16 compute, batch 256, SGD + Nesterov (as the paper) with warmup + cosine instead of its
300-epoch reduce-on-plateau, label smoothing, strong augmentation; aimed at >= 73% on the
test split within ~10 minutes. Use ``--config.parallel=pmap`` (or jit, which shards over all
local devices) on several accelerators.

    python -m experiments.train_classifier --config experiments/configs/accel.py \\
        --data ../shared/data/fer2013/fer2013_images.zip
"""

from experiments.configs import classifier_base


def get_config():
    config = classifier_base.get_config()
    config.model = "vgg_fer"
    config.model_kwargs = {}
    config.dtype = "bfloat16"
    config.batch_size = 256
    config.eval_batch_size = 1024
    config.num_epochs = 60
    config.optimizer = "sgd"
    config.learning_rate = 0.02
    config.momentum = 0.9
    config.nesterov = True
    config.weight_decay = 1e-4
    config.schedule = "cosine"
    config.warmup_epochs = 2.0
    config.label_smoothing = 0.1
    config.grad_clip_norm = 5.0
    config.augment.max_shift = 6
    config.augment.max_rotation_deg = 15.0
    config.augment.brightness = 0.2
    config.augment.contrast = 0.2
    config.log_every_steps = 50
    config.checkpoint_every_steps = 1000
    return config
