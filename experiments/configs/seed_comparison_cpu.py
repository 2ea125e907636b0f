"""The seed's setting at a real budget: a two-tier model in the 6-class setting with
oversampling (the seed's recipe), each member the engine's CPU classifier (``cpu.py``) for 20
balanced epochs as long as the real split; scored on val beside the seed's per-class recall.
About 90 minutes on ONE core of this machine.

    nohup taskset -c 0 python -m experiments.ablation \\
        --config experiments/configs/seed_comparison_cpu.py \\
        --data ../shared/data/fer2013/fer2013_images.zip --workdir checkpoints/seed_comparison_cpu \\
        > checkpoints/seed_comparison_cpu.log 2>&1 &
"""

from experiments.configs import ablation_base, cpu, pipeline_base


def get_config():
    config = ablation_base.get_config()
    config.data.synthetic_sizes = None             # real data: pass --data
    config.settings = ("six",)
    config.models = ("two_tier",)
    config.variants = ("oversampling",)
    config.seeds = (0,)
    config.equal_epoch_size = True
    config.classifier = pipeline_base.classifier(cpu.get_config(), num_epochs=20,
                                                 warmup_epochs=1.0)
    return config
