"""The suite's SLURM launcher (``hydra/launcher=slurm``): hydra-submitit-launcher plus failure reports.

Hydra only instantiates launchers it found by scanning the ``hydra_plugins`` namespace at start-up,
hence this top-level package. The launcher is exposed only when the ``slurm`` extra
(hydra-submitit-launcher) is installed, so runs without it see no plugin import warning.
"""

from importlib.util import find_spec

if find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
    from hydra_plugins.sinkmech_slurm._launcher import SinkmechSlurmLauncher

    __all__ = ["SinkmechSlurmLauncher"]
