"""Conditional GAN augmentation for FER-2013: models, losses, training, sampling, metrics."""
