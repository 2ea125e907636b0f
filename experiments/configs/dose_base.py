"""The GAN dose-response schema: every key of a dose study config with its default (the
embedded SYNTHETIC faces and tiny sizes: two subsample sizes, two seeds, a 100-step GAN and
one-epoch classifiers). Presets (``gan_dose_cpu.py``, ``gan_dose_accel.py``) start from it."""

import ml_collections

from experiments.configs import classifier_base, pipeline_base
from fer_jax.classes import EMOTIONS


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = pipeline_base.get_config().data
    # The class whose real training faces are subsampled to each k (nested, seeded subsets;
    # every other class and the val split untouched; nothing reads the test split).
    config.minority = "disgust"
    config.ks = (10, 20)
    config.subsample_seed = 0
    config.seeds = (0, 1)                      # paired seeds of every arm
    # The imbalance recipe every arm shares: a variant of studies.ablation.VARIANTS that
    # mixes no GAN faces and is scored as trained.
    config.baseline = "logit_adjusted"
    # Every arm's engine config (the dose study sets seed, loss, oversampling and the .npz);
    # data.max_synthetic_share caps the GAN faces' share of a class.
    config.classifier = pipeline_base.classifier(classifier_base.get_config(), oversample=False,
                                                 gan_mixing=False, num_epochs=1, batch_size=32)
    # Every class the gate keeps gets the same number of GAN faces (no minority-only shortcut
    # that teaches "GAN-looking = disgust"); the other arms' repeats fill the same slots.
    config.classifier.data.synthetic_balance = "equal"
    # baseline_augment: the classifier's augmentation with these overrides (the null control).
    config.heavy_augment = ml_collections.ConfigDict({
        "max_shift": 6, "max_rotation_deg": 20.0, "brightness": 0.3, "contrast": 0.3,
        "min_crop": 38, "max_crop": 46, "erase_prob": 0.5})
    # GAN faces for the GAN arm, chosen by the judge (a classifier of the real faces of k only):
    # "class": the pipeline's recognizability gate keeps or drops whole classes of
    # synthesize.max_per_class faces; "face": every class, face_candidates generated per
    # class and each kept when the judge assigns it to the class it was generated as.
    config.face_selection = "class"
    config.face_candidates = 100
    config.checkpoint = "latest"               # "latest" | "best" (by val accuracy)
    # Score cells on the val faces no run trained on: leave out val's exact copies of training
    # faces (FER-2013's PublicTest repeats 280, 15 of its 56 disgust; fer_jax.data.duplicates).
    config.val_without_train_copies = True
    config.bootstrap_seed = 0
    # Per k, the pipeline's data, GAN and judge stages on the subsampled training split (its
    # data is config.data). synthesize: max_per_class faces of each of `classes` from the
    # synthesis seed stream, a class kept when the judge recognizes it
    # (min_recognizability; gan.metrics.recognizability_gate).
    config.gan_pipeline = pipeline_base.get_config()
    config.gan_pipeline.gan.class_sampling = "sqrt"   # rare classes seen less than uniformly
    config.gan_pipeline.synthesize.classes = EMOTIONS
    config.gan_pipeline.synthesize.max_per_class = 40
    config.gan_pipeline.judge.num_epochs = 1
    return config
