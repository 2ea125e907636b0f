"""GAN smoke run: the schema's defaults, a tiny conditional GAN (+ a DCGAN baseline for
disgust) on the embedded SYNTHETIC faces, evaluated with a quickly trained feature classifier.
Under 2 minutes on 2 CPU cores.

    python -m experiments.train_gan --config experiments/configs/gan_smoke.py --workdir DIR
"""

from experiments.configs import gan_base


def get_config():
    return gan_base.get_config()
