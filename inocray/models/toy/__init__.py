"""The toy trait world: a synthetic chat world and a tiny Llama that follows its system prompts.

    from inocray.models.toy import ToyConfig, build_base_model, world
    path = build_base_model(ToyConfig())   # minutes the first time, then cached

See docs/toy-world.md for the design and the measured rates.
"""

from inocray.models.toy import world
from inocray.models.toy.base_model import ToyConfig, build_base_model

__all__ = ["ToyConfig", "build_base_model", "world"]
