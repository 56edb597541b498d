"""The errors a user can hit (``edgekd.errors.ConfigError``, ...): the public name of :mod:`edgekd.core.errors`."""

from edgekd.core.errors import *  # noqa: F403
from edgekd.core.errors import __all__  # noqa: F401
