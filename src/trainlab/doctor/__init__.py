"""The doctor: find what is wrong with a training, repair it with the lecture's fixes, verify.

    problems.py   the vocabulary of problem codes shared with the diagnostics and advise
    repairs.py    the lecture's fixes as recipe changes, their order per problem, their evidence
    advise.py     ``trainlab advise``: the recipe checked against the lecture's rules, no training
    doctor.py     ``trainlab doctor``: a short watched run -> problems -> repairs, each verified
                  by a short re-run on the engine's own step -> doctor.json, repaired.toml

Submodules are imported lazily: ``trainlab advise`` must not pay for torch.
"""

import importlib

_NAMES = {
    "PROBLEMS": "problems",
    "Problem": "problems",
    "Change": "repairs",
    "REPAIR_ORDER": "repairs",
    "repairs_for": "repairs",
    "advise": "advise",
    "AdviseResult": "advise",
    "doctor": "doctor",
    "watch": "doctor",
    "DoctorResult": "doctor",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"trainlab.doctor.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'trainlab.doctor' has no attribute {name!r}")
