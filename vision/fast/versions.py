"""The torch and transformers releases the speed paths' private APIs are known to work with.

A speed path that reaches past a library's public API (its module's docstring names the calls) asks
`known_to_work` before it plugs in. Outside the known range it says so in one log line and the plain path
runs instead: slower, never wrong. Private APIs change without notice, so the ranges end at the newest
release the tests passed on; widen one after the suite's step and packed-linear tests pass on the new
release.
"""

from __future__ import annotations

import functools
import logging

from packaging.specifiers import SpecifierSet
from packaging.version import Version

log = logging.getLogger(__name__)

# from the project's floor (pyproject.toml) to the newest release tested
KNOWN_TO_WORK = {
    "torch": SpecifierSet(">=2.4,<2.15"),
    "transformers": SpecifierSet(">=5.0,<5.26"),
}
_told: set[str] = set()  # the speed paths already said to be off: one line each per process


@functools.cache
def installed(package: str) -> Version:
    """The installed release of torch or transformers, as the package itself reports it."""
    module = __import__(package)
    return Version(module.__version__)


def known_to_work(path: str, *packages: str) -> bool:
    """Whether the installed `packages` are releases `path`'s private calls are known to work with; if not,
    one log line (the first time `path` asks) says which is not, and the caller takes the plain path."""
    for package in packages:
        version = installed(package)
        if not KNOWN_TO_WORK[package].contains(version, prereleases=True):
            if path not in _told:
                _told.add(path)
                log.warning(
                    "%s off: they use private %s APIs known to work with %s %s, and this is %s; the plain path runs",
                    path,
                    package,
                    package,
                    KNOWN_TO_WORK[package],
                    version,
                )
            return False
    return True
