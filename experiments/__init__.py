"""Short experiment entry points (``python -m experiments.<name>``).

Importing this package applies the CPU defaults (:func:`fer_jax.runtime.configure`) before
any entry point starts JAX.
"""

from fer_jax import runtime

runtime.configure()
