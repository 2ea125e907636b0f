"""The seed's 6-class setting, every model fine-tuned from the flat CPU classifier: each flat
and two-tier member starts from ``checkpoints/cpu`` (``cpu.py``, 7 classes, 36 epochs; the
head is re-initialised for the member's classes) and trains 6 more epochs at a lower learning
rate, with and without oversampling. Scored on val beside the seed's per-class recall.
About 80 minutes on ONE core of this machine, after ``cpu.py`` has finished.

    nohup taskset -c 1 python -m experiments.ablation \\
        --config experiments/configs/seed_comparison_finetune_cpu.py \\
        --data ../shared/data/fer2013/fer2013_images.zip \\
        --workdir checkpoints/seed_comparison_finetune_cpu \\
        --config.classifier.init_from=checkpoints/cpu \\
        > checkpoints/seed_comparison_finetune_cpu.log 2>&1 &
"""

from experiments.configs import ablation_base, cpu, pipeline_base


def get_config():
    config = ablation_base.get_config()
    config.data.synthetic_sizes = None             # real data: pass --data
    config.settings = ("six",)
    config.models = ("two_tier", "flat")
    config.variants = ("oversampling", "none")
    config.seeds = (0,)
    config.equal_epoch_size = True
    # Fine-tunes --config.classifier.init_from (the cpu.py run) at a lower learning rate.
    config.classifier = pipeline_base.classifier(cpu.get_config(), num_epochs=6,
                                                 learning_rate=5e-4, warmup_epochs=0.3)
    return config
