"""Base models: presets built once into the model cache, or the user's own directories.

    resolve(name)     a preset's cached directory (built on first use) or the user's directory
    toy               the toy trait world and its tiny Llama (docs/toy-world.md)
"""

from inocray.models._cache import cached_build, default_cache_root
from inocray.models._presets import (PackagedGGUF, Preset, ToyPreset, check_available, is_preset, preset_names,
                                     resolve)

__all__ = ["PackagedGGUF", "Preset", "ToyPreset", "cached_build", "check_available", "default_cache_root",
           "is_preset", "preset_names", "resolve"]
