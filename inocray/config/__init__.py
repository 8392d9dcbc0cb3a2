"""The sweep file and its plan: what to run, checked before anything runs.

    load_sweep(path)       the file read, its fields typed and checked (_spec.py, each rule beside
                           its field), its grid checked (_grid.py), then checked against the world:
                           settings, prompts, models, data files (_validate.py)
    make_plan(spec)        the Plan (_plan.py): the cells, every trial carrying its cell, the base
                           model's and the training data's measurements, each with its id; and its
                           Placement (_placement.py): what engines, workers and trials reserve

Everything downstream takes the Plan or one of its Trials; nothing else expands the grid or
makes an id.
"""

from inocray.config._grid import AXES, BASE_AXES, BY, Cell, axis_type, shown
from inocray.config._grid import entries as setting_entries
from inocray.config._parse import load_spec, parse_spec
from inocray.config._placement import Holds, Placement, engine_replica, own_engine, training_worker
from inocray.config._plan import (BASE, DATA, Measurement, Plan, Probe, Ptst, Trial, make_plan, measured_prompts,
                                  probe_names, prompt_catalogue, trial_id)
from inocray.config._spec import (ID_PATTERN, NONE, PLACEMENTS, ClassifierSpec, DataSpec, EngineSpec, EvalSpec,
                                  LoraSpec, SettingEntry, SweepSpec, TrainSpec)
from inocray.config._validate import check_spec, load_sweep, one_setting, parse_sweep

__all__ = [
    # the sweep file
    "ClassifierSpec", "DataSpec", "EngineSpec", "EvalSpec", "ID_PATTERN", "LoraSpec", "NONE", "PLACEMENTS",
    "SettingEntry", "SweepSpec", "TrainSpec", "check_spec", "load_spec", "load_sweep", "one_setting", "parse_spec",
    "parse_sweep",
    # the grid
    "AXES", "BASE_AXES", "BY", "Cell", "axis_type", "setting_entries", "shown",
    # the plan
    "BASE", "DATA", "Measurement", "Plan", "Probe", "Ptst", "Trial", "make_plan", "measured_prompts", "probe_names",
    "prompt_catalogue", "trial_id",
    # the placement
    "Holds", "Placement", "engine_replica", "own_engine", "training_worker",
]
