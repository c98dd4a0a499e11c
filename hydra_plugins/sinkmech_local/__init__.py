"""The suite's parallel launcher for one machine (``hydra/launcher=local_parallel``).

Hydra instantiates only launchers it found by scanning the ``hydra_plugins`` namespace at start-up,
hence this top-level package.
"""

from hydra_plugins.sinkmech_local._launcher import ForkingLauncher

__all__ = ["ForkingLauncher"]
