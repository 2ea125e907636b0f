"""The imbalance ablation on real FER-2013 on this 2-core CPU: flat models in the 7-class and
the seed's 6-class setting, three independent fine-tuning seeds, four ways of handling the
imbalance at equal compute:

- ``none``: cross-entropy on the natural class frequencies;
- ``oversampling``: class-balanced epochs as long as the real split (``equal_epoch_size``);
- ``logit_adjusted``: the logit-adjusted loss (Menon et al. 2021, tau 1);
- ``posthoc_logit_adjusted``: the ``none`` runs with post-hoc logit adjustment, tau fitted on
  one half of val and scored on the other (2-fold cross-fitting: no image is scored by a tau
  fitted on it).

Every run fine-tunes the converged ``cpu.py`` classifier of commit 838c51e (36 epochs without
EMA, 7 classes, ``checkpoints/cpu``; the head is re-initialised for 6 classes) for 4 epochs at
a lower learning rate, without EMA: the question is how
the classifier handles the imbalance, asked of a network near convergence, not of 2-epoch
models. The seeds change the fine-tuning's data order, augmentation, dropout and new head; the
base network is shared (its seed-to-seed variance is not in the intervals). About 7 minutes
per run on one core; the two settings in parallel, one core each (same workdir, disjoint
cells), then once more without ``--config.settings`` to write the combined report:

    python -m experiments.train_classifier --config experiments/configs/cpu.py \\
        --data ../shared/data/fer2013/fer2013_images.zip --workdir checkpoints/cpu
    for setting in seven six; do core=$([ $setting = seven ] && echo 0 || echo 1)
      nohup taskset -c $core python -m experiments.ablation \\
        --config experiments/configs/ablation_cpu.py \\
        --data ../shared/data/fer2013/fer2013_images.zip --workdir checkpoints/ablation_cpu \\
        --config.classifier.init_from=checkpoints/cpu "--config.settings=('$setting',)" \\
        > checkpoints/ablation_cpu_$setting.log 2>&1 &
    done
"""

from experiments.configs import ablation_base, cpu, pipeline_base


def get_config():
    config = ablation_base.get_config()
    config.data.synthetic_sizes = None             # real data: pass --data
    config.models = ("flat",)
    config.variants = ("none", "oversampling", "logit_adjusted", "posthoc_logit_adjusted")
    config.seeds = (0, 1, 2)
    config.equal_epoch_size = True
    # No GAN variant here: synthetic_balance is unused; "gap" is the value the finished runs
    # in checkpoints/ablation_cpu were recorded with (run_guard.ADDED_KEYS), so they are reused.
    config.classifier = pipeline_base.classifier(cpu.get_config(), num_epochs=4,
                                                 learning_rate=5e-4, warmup_epochs=0.3,
                                                 ema_decay=0.0, synthetic_balance="gap")
    return config
