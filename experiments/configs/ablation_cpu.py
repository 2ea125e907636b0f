"""Ablation on real FER-2013 on this 2-core CPU, one seed, as a background run of about two
hours on ONE core: both settings, both models, the four training-data variants, with the
engine's CPU classifier (``cpu.py``) trained for 2 epochs per run (28 runs: 7 groupings x 4
variants). Oversampled epochs are as long as the real split (``equal_epoch_size``), so the
variants compare at about equal compute.

GAN faces: the 6000-step ``gan_cpu`` generator sampled at truncation 0.5, for the classes it
makes recognizable there (disgust 84%, surprise 96%; fear only 7%, angry 37%):

    python -m experiments.synthesize --workdir checkpoints/gan_cpu --truncation 0.5 \\
        --per-class disgust=2000,surprise=2000 \\
        --out checkpoints/gan_cpu/synthetic_disgust_surprise_t0.5.npz
    nohup taskset -c 1 python -m experiments.ablation --config experiments/configs/ablation_cpu.py \\
        --data ../shared/data/fer2013/fer2013_images.zip --workdir checkpoints/ablation_cpu \\
        --config.synthetic_npz=checkpoints/gan_cpu/synthetic_disgust_surprise_t0.5.npz \\
        > checkpoints/ablation_cpu.log 2>&1 &

A second seed in the same workdir (finished cells are kept; measured: 117 min on one core):
``--config.seeds=(0,1)``.
"""

from experiments.configs import ablation_base, cpu, pipeline_base


def get_config():
    config = ablation_base.get_config()
    config.data.synthetic_sizes = None             # real data: pass --data
    config.seeds = (0,)
    config.equal_epoch_size = True
    config.classifier = pipeline_base.classifier(cpu.get_config(), num_epochs=2,
                                                 warmup_epochs=0.3)
    return config
