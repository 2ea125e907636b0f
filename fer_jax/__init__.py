"""fer-jax: facial expression recognition on FER-2013 in JAX/Flax."""

from fer_jax.errors import FerError, FerDataError

__all__ = ["FerError", "FerDataError"]
