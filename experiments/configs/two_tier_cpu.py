"""Two-tier at convergence on real FER-2013 on this CPU (#16 item 5): the flat model, the
seed's three separate networks (tier 1, one per group) and one shared backbone with tier-1 and
tier-2 heads trained jointly (``two_tier_joint``: a hierarchical softmax), at equal compute, in
the seed's 6-class setting and in 7 classes, three seeds, no imbalance handling (``none``).

Every run fine-tunes the converged ``cpu.py`` classifier (``checkpoints/cpu``) as
``ablation_cpu.py``'s runs do: 4 epochs at lr 5e-4, warmup 0.3, no EMA (the new heads start
fresh, the backbone from the checkpoint). Equal compute: the flat and joint runs train 4 epochs
on the N training images; the two-tier members 2 epochs each (``two_tier_epoch_scale`` 0.5:
tier 1 on all N images, the two group networks on N together). The classifier section is
``ablation_cpu.py``'s, so in its workdir the finished flat ``none`` runs and cells are reused.

Estimate (not measured): a 4-epoch flat run takes ~7 min on one core, so per seed 2 x 7 (flat)
+ 2 x 7 (joint) + 7 (7-class members; the positive member is shared by both settings) + 5
(6-class tier 1 and negative) ~ 40 min, ~2 h for three seeds on one core; ~1.3 h when the
flat runs are reused. Runs of different seeds are disjoint, so seeds may run in parallel (one
core each; settings may not: they share the positive member): seeds 0 and 1 on the two
cores, then once more without ``--config.seeds`` (seed 2, then the combined report):

    python -m experiments.train_classifier --config experiments/configs/cpu.py \\
        --data ../shared/data/fer2013/fer2013_images.zip --workdir checkpoints/cpu
    for seed in 0 1; do
      nohup taskset -c $seed python -m experiments.ablation \\
        --config experiments/configs/two_tier_cpu.py \\
        --data ../shared/data/fer2013/fer2013_images.zip --workdir checkpoints/ablation_cpu \\
        --config.classifier.init_from=checkpoints/cpu "--config.seeds=($seed,)" \\
        > checkpoints/two_tier_cpu_$seed.log 2>&1 &
    done
"""

from experiments.configs import ablation_base, cpu, pipeline_base


def get_config():
    config = ablation_base.get_config()
    config.data.synthetic_sizes = None             # real data: pass --data
    config.settings = ("six", "seven")
    config.models = ("flat", "two_tier", "two_tier_joint")
    config.variants = ("none",)
    config.seeds = (0, 1, 2)
    config.equal_epoch_size = True
    config.two_tier_epoch_scale = 0.5
    # ablation_cpu.py's classifier section (tests/test_configs.py checks they stay equal).
    config.classifier = pipeline_base.classifier(cpu.get_config(), num_epochs=4,
                                                 learning_rate=5e-4, warmup_epochs=0.3,
                                                 ema_decay=0.0, synthetic_balance="gap")
    return config
