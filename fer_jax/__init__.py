"""fer-jax: facial expression recognition on FER-2013 in JAX/Flax."""

from fer_jax.errors import FerDataError, FerError

__all__ = ["FerDataError", "FerError"]
