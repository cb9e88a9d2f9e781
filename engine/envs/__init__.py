"""Environment backends: local (in-process tau2), aenv-local, aenv."""
