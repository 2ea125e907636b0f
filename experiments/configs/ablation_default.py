"""Ablation on the embedded SYNTHETIC faces: the schema's defaults (the numbers are NOT
FER-2013 results). Reuses a pipeline's synthetic faces when ``synthetic_npz`` is set.

    python -m experiments.ablation [--config experiments/configs/ablation_default.py] \\
        [--config.synthetic_npz=checkpoints/pipeline/synthetic.npz]
"""

from experiments.configs import ablation_base


def get_config():
    return ablation_base.get_config()
