"""Pipeline on the embedded SYNTHETIC faces: the schema's defaults, sized to finish end to end
in under 5 minutes on 2 CPU cores. Its numbers show that the pipeline works; they are NOT
FER-2013 results.

    python -m experiments.pipeline [--config experiments/configs/pipeline_default.py]
"""

from experiments.configs import pipeline_base


def get_config():
    return pipeline_base.get_config()
