"""nnU-Net experiment planners of nnunet-cdl and their lookup by class name.

`PLANNERS` maps a planner class name to its dotted path; add yours with one line. `resolve_planner` accepts these
names and the names of nnU-Net's own planners (`ExperimentPlanner`, `nnUNetPlannerResEncM`, ...).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from nnunet_cdl.errors import CdlError

PLANNERS: dict[str, str] = {
    "LightUNetPlanner": "nnunet_cdl.planning.light_unet.LightUNetPlanner",
    "SwinXSegPlanner": "nnunet_cdl.planning.swinxseg.SwinXSegPlanner",
}
"""Planner class name -> dotted path of the class."""

PLANNER_TRAINERS: dict[str, str] = {
    "LightUNetPlanner": "nnUNetTrainerLightUNet",
    "SwinXSegPlanner": "nnUNetTrainerSwinXSeg",
}
"""Planner class name -> the trainer its plans are meant for (shown in `nnunet-cdl plan`'s next steps)."""

DEFAULT_PLANNER = "LightUNetPlanner"


def _import_dotted(path: str) -> type:
    module_name, _, class_name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def nnunet_planner_names() -> list[str]:
    """Names of the experiment planner classes shipped with nnU-Net (imports nnU-Net's planning modules)."""
    from nnunetv2.experiment_planning import experiment_planners
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    names: set[str] = set()
    prefix = experiment_planners.__name__ + "."
    for info in pkgutil.walk_packages(experiment_planners.__path__, prefix):
        module = importlib.import_module(info.name)
        names |= {
            name
            for name, obj in vars(module).items()
            if isinstance(obj, type) and issubclass(obj, ExperimentPlanner) and obj.__module__ == module.__name__
        }
    return sorted(names)


def resolve_planner(name: str) -> type:
    """The planner class for `name`: ours from `PLANNERS` first, then nnU-Net's; a typo is a `CdlError`."""
    if name in PLANNERS:
        return _import_dotted(PLANNERS[name])
    from os.path import join

    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    planner = recursive_find_python_class(
        join(nnunetv2.__path__[0], "experiment_planning"), name, current_module="nnunetv2.experiment_planning"
    )
    if planner is not None:
        return planner
    known = sorted(PLANNERS) + nnunet_planner_names()
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise CdlError(f"unknown experiment planner {name!r}: {hint}known planners: {', '.join(known)}")
