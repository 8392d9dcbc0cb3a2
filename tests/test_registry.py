"""The registries of settings, scorers and engines: one kind of lookup, one "known: ..." error."""

import subprocess
import sys

import pytest

from inocray.registry import BACKENDS, SCORERS, SETTINGS, Registry


def test_an_unknown_name_lists_the_known_ones():
    for registry, kind in ((SETTINGS, "setting"), (SCORERS, "scorer"), (BACKENDS, "engine")):
        with pytest.raises(KeyError) as e:
            registry.get("nope")
        assert e.value.args[0] == f"unknown {kind} 'nope' (known: {', '.join(registry.names())})"
    assert BACKENDS.names() == ("transformers", "vllm")
    assert {"toy", "pair_traits"} <= set(SETTINGS.names()) and {"judge", "classifier"} <= set(SCORERS.names())


def test_built_in_entries_load_on_first_use_and_plug_ins_register():
    from inocray.settings.toy import toy

    assert SETTINGS.get("toy") is toy
    kinds = Registry("colour", {"red": "inocray.config._plan:NONE"})
    assert kinds.get("red") == "none"  # "module:attr", imported when first asked for

    @kinds.register("blue")
    def blue():
        return "b"

    assert kinds.get("blue") is blue and kinds.names() == ("blue", "red")


def test_naming_an_engine_loads_no_engine():
    code = ("import sys, inocray.evaluation.backends, inocray.config._spec, inocray.registry as r; r.BACKENDS.names(); "
            "print([m for m in ('vllm', 'inocray.evaluation.backends.vllm', 'inocray.evaluation.backends.hf') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
