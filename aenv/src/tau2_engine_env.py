"""tau2-engine's environment for `python -m aenv.main /app/src` (the image's command):
aenv loads this module while it builds its server; the module puts tau2-engine's tau2
env on it (functions, reward, tools; the episode from the TAU2_* variables)."""

from engine.envs.aenv_server import install_into_aenv_server

SERVICE = install_into_aenv_server()
