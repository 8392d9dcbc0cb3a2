"""Base models: presets built once into the model cache, Hugging Face Hub ids, or the user's own
directories.

    resolve(name)     a preset's cached directory (built on first use), a Hub id's snapshot
                      directory (_hub.py), or the user's directory
    is_hub_id, hub    a Hub id (ORG/NAME[@REVISION]) and its resolution (commit, directory)
    pin_hub           a Hub id held at the commit a run directory recorded
    resolve_all(...)  a sweep's models at once, with the Hub commits it records
    toy               the toy trait world and its tiny Llama (docs/toy-world.md)
"""

from inocray.models._cache import cached_build, default_cache_root
from inocray.models._hub import HubModel, is_hub_id
from inocray.models._hub import fetch as hub
from inocray.models._hub import pin as pin_hub
from inocray.models._presets import (PackagedGGUF, Preset, ToyPreset, check_available, is_preset, preset_names,
                                     resolve, resolve_all)

__all__ = ["HubModel", "PackagedGGUF", "Preset", "ToyPreset", "cached_build", "check_available", "default_cache_root",
           "hub", "is_hub_id", "is_preset", "pin_hub", "preset_names", "resolve",
           "resolve_all"]
