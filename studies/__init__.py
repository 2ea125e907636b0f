"""The studies built on fer_jax and gan: the pipeline and the ablation, as guarded stages."""
