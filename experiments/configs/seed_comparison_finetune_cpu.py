"""The seed's 6-class setting, every model fine-tuned from the flat CPU classifier: each flat
and two-tier member starts from ``checkpoints/cpu`` (``cpu.py``, 7 classes, 36 epochs; the
head is re-initialised for the member's classes) and trains 6 more epochs at a lower learning
rate, with and without oversampling. Scored on val beside the seed's per-class recall.
About 80 minutes on ONE core of this machine, after ``cpu.py`` has finished.

    nohup taskset -c 1 python -m experiments.ablation \\
        --config experiments/configs/seed_comparison_finetune_cpu.py \\
        --data ../shared/data/fer2013/fer2013_images.zip \\
        --workdir checkpoints/seed_comparison_finetune_cpu \\
        > checkpoints/seed_comparison_finetune_cpu.log 2>&1 &
"""

from experiments.configs import seed_comparison_cpu

PRETRAINED = "checkpoints/cpu"


def get_config():
    config = seed_comparison_cpu.get_config()
    config.models = ("two_tier", "flat")
    config.variants = ("oversampling", "none")
    config.classifier.init_from = PRETRAINED
    config.classifier.num_epochs = 6
    config.classifier.learning_rate = 5e-4
    config.classifier.warmup_epochs = 0.3
    return config
