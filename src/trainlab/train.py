"""The engine's public names, as ``trainlab.train`` has always offered them; the code lives in
:mod:`trainlab.engine` (one module per concern: build, step, loop, evaluate, checkpoint, folder,
progress)."""

from trainlab.engine import *  # noqa: F403
from trainlab.engine import __all__  # noqa: F401
