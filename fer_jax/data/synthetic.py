"""The embedded default: procedural 48x48 grayscale faces in the 7 expression classes.

Each face has a random identity (face shape, skin tone, feature placement), pose (shift,
scale, in-plane rotation), lighting (gradient, contrast) and sensor noise. The expression
moves brows, eyes and mouth (and, for disgust, wrinkles the nose and lifts one side of the
upper lip) by an amount scaled by a random intensity, so weak expressions resemble neutral
and classes overlap: a small CNN learns it well above chance and well below 100%.
Class frequencies follow FER-2013's training split, so disgust is rare.
"""

from __future__ import annotations

import numpy as np

from fer_jax.classes import EMOTIONS
from fer_jax.data.dataset import IMAGE_SIZE, FerData, Split

# FER-2013 Training counts per canonical class: the imbalance the default reproduces.
FER_TRAIN_COUNTS = np.array([3995, 436, 4097, 7215, 4830, 3171, 4965])

# Expression parameters: brow inner lift, brow outer lift, eye openness, mouth half-width,
# mouth corner lift (smile > 0), mouth opening, lip asymmetry, nose wrinkle.
_PARAMS = ("brow_in", "brow_out", "eye", "mouth_w", "curve", "mouth_open", "asym", "wrinkle")
_NEUTRAL = np.array([0.0, 0.0, 1.0, 0.33, 0.0, 0.0, 0.0, 0.0])
_EXPRESSION = {
    "angry":    [-0.11, 0.05, 0.75, 0.30, -0.05, 0.00, 0.00, 0.3],
    "disgust":  [-0.07, 0.00, 0.70, 0.31, -0.07, 0.02, 0.10, 1.0],
    "fear":     [0.11, 0.02, 1.40, 0.40, -0.05, 0.08, 0.00, 0.0],
    "happy":    [0.00, 0.00, 0.80, 0.43, 0.14, 0.05, 0.00, 0.0],
    "sad":      [0.10, -0.06, 0.80, 0.29, -0.11, 0.00, 0.00, 0.0],
    "surprise": [0.15, 0.14, 1.50, 0.22, 0.00, 0.22, 0.00, 0.0],
    "neutral":  list(_NEUTRAL),
}
_TARGETS = np.array([_EXPRESSION[name] for name in EMOTIONS])
_IDENTITY_SPREAD = np.array([0.035, 0.035, 0.15, 0.035, 0.03, 0.025, 0.02, 0.15])

_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)


def _stroke_alpha(u, v, points, width):
    """Soft coverage of a polyline given by sampled points (face coordinates)."""
    d2 = (u[..., None] - points[:, 0]) ** 2 + (v[..., None] - points[:, 1]) ** 2
    distance = np.sqrt(d2.min(axis=-1))
    return np.clip((width - distance) / 0.025 + 0.5, 0.0, 1.0)


def _ellipse_alpha(u, v, cx, cy, rx, ry):
    r = np.sqrt(((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2)
    return np.clip((1.0 - r) * min(rx, ry) / 0.025 + 0.5, 0.0, 1.0)


def _quadratic(p0, p1, p2, n=16):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t ** 2 * np.asarray(p2)


def render_face(params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Renders one face (uint8 [48,48]) from expression ``params`` and random identity/pose."""
    brow_in, brow_out, eye, mouth_w, curve, mouth_open, asym, wrinkle = params
    # Pose: face coordinates (u right, v down) with the face spanning about [-1, 1].
    scale = rng.uniform(17.0, 21.0)
    angle = np.deg2rad(rng.normal(0.0, 7.0))
    cx, cy = 24 + rng.normal(0, 1.5), 25 + rng.normal(0, 1.5)
    x, y = (_XX - cx) / scale, (_YY - cy) / scale
    u = np.cos(angle) * x + np.sin(angle) * y
    v = -np.sin(angle) * x + np.cos(angle) * y

    background = rng.uniform(20, 200)
    skin = rng.uniform(90, 230)
    dark = skin * rng.uniform(0.15, 0.45)
    image = np.full((IMAGE_SIZE, IMAGE_SIZE), background, np.float32)
    face = _ellipse_alpha(u, v, 0.0, 0.05, rng.uniform(0.78, 0.92), rng.uniform(1.0, 1.15))
    image = image * (1 - face) + skin * face

    def paint(alpha, level):
        nonlocal image
        image = image * (1 - alpha) + level * alpha

    eye_x, eye_y = rng.uniform(0.32, 0.42), rng.uniform(-0.22, -0.1)
    eye_h = 0.075 * max(eye, 0.2)
    brow_y = eye_y - rng.uniform(0.17, 0.24)
    for side in (-1.0, 1.0):
        paint(_ellipse_alpha(u, v, side * eye_x, eye_y, 0.11, eye_h), dark)
        inner = (side * 0.12, brow_y - brow_in)
        outer = (side * (eye_x + 0.2), brow_y - brow_out)
        middle = (side * (eye_x + 0.02), brow_y - 0.04 - 0.5 * (brow_in + brow_out))
        paint(_stroke_alpha(u, v, _quadratic(inner, middle, outer), 0.035), dark)

    nose_y = eye_y + rng.uniform(0.3, 0.38)
    paint(0.6 * _stroke_alpha(u, v, _quadratic((-0.06, nose_y), (0, nose_y + 0.04),
                                               (0.06, nose_y)), 0.02), dark)
    if wrinkle > 0.25:
        for side in (-1.0, 1.0):
            line = _quadratic((side * 0.08, eye_y + 0.08), (side * 0.14, eye_y + 0.15),
                              (side * 0.1, nose_y - 0.05), 8)
            paint(min(wrinkle, 1.0) * 0.7 * _stroke_alpha(u, v, line, 0.015), dark)

    mouth_y = nose_y + rng.uniform(0.24, 0.32)
    left = (-mouth_w, mouth_y - curve + asym)
    right = (mouth_w, mouth_y - curve - asym)
    centre = (0.0, mouth_y + curve - asym * 0.5)
    if mouth_open > 0.04:
        paint(_ellipse_alpha(u, v, 0.0, mouth_y + 0.5 * curve, mouth_w * 0.8, mouth_open), dark)
    paint(_stroke_alpha(u, v, _quadratic(left, centre, right), 0.03), dark)

    # Lighting: a linear gradient and contrast change, then sensor noise.
    gradient = rng.normal(0, 0.25) * (_XX - 24) / 24 + rng.normal(0, 0.15) * (_YY - 24) / 24
    image = image * (1 + gradient) * rng.uniform(0.7, 1.2)
    image = image + rng.normal(0, rng.uniform(3, 14), image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def sample_params(label: int, rng: np.random.Generator) -> np.ndarray:
    """Expression parameters of one face: neutral + intensity * (target - neutral) + identity."""
    intensity = rng.uniform(0.3, 1.15)
    params = _NEUTRAL + intensity * (_TARGETS[label] - _NEUTRAL)
    return params + rng.normal(0, 1, len(_PARAMS)) * _IDENTITY_SPREAD


def class_counts(total: int) -> np.ndarray:
    """Per-class counts summing to ``total`` in FER-2013's training proportions (>= 1 each)."""
    if total < len(EMOTIONS):
        raise ValueError(f"a synthetic split needs at least {len(EMOTIONS)} images (one per "
                         f"class), got {total}")
    counts = np.maximum(1, np.floor(total * FER_TRAIN_COUNTS / FER_TRAIN_COUNTS.sum())).astype(int)
    counts[np.argmax(counts)] += total - counts.sum()
    return counts


def generate_split(total: int, seed: int) -> Split:
    """One shuffled split of ``total`` procedural faces."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(EMOTIONS)), class_counts(total))
    rng.shuffle(labels)
    images = np.stack([render_face(sample_params(int(c), rng), rng) for c in labels])
    return Split(images, labels.astype(np.int32))


def generate(num_train: int = 2400, num_val: int = 600, num_test: int = 600,
             seed: int = 0) -> FerData:
    """The embedded synthetic FER-like dataset (deterministic in ``seed``)."""
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    splits = {name: generate_split(n, seed * 1000 + i) if n else Split.empty()
              for i, (name, n) in enumerate(sizes.items())}
    return FerData(splits, source=f"synthetic(seed={seed}, train={num_train}, val={num_val}, "
                   f"test={num_test})", synthetic=True)
