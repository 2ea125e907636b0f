"""Classifier smoke run: the schema's defaults, a narrow ``compact`` net for a few epochs on
the embedded SYNTHETIC faces; under 2 minutes on 2 CPU cores.

    python -m experiments.train_classifier --config experiments/configs/smoke.py --workdir DIR
"""

from experiments.configs import classifier_base


def get_config():
    return classifier_base.get_config()
