"""The exception hierarchy: everything a user of ember can see derives from `EmberError`."""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "CodegenError",
    "EmberError",
    "InputError",
    "PassError",
    "ServiceError",
    "ShapeError",
    "TuningError",
    "UnsupportedError",
    "UsageError",
    "VerifyError",
]


class EmberError(Exception):
    """Base class: everything a user can see derives from it."""


class UnsupportedError(EmberError, NotImplementedError):
    """A frontend met ops or attributes ember cannot import."""


class ShapeError(EmberError, ValueError):
    """An op's shape or dtype rule rejected its inputs."""


class InputError(EmberError, ValueError):
    """A compiled model was called with the wrong number, shape or dtype of inputs."""


class ArtifactError(EmberError):
    """An exported model file is missing, damaged, not ember's, or from an incompatible version."""


class UsageError(EmberError):
    """A command line or option that cannot work: bad syntax, a missing file, a wrong flag."""


class PassError(EmberError):
    """A failure inside a graph pass, with the pass and its predecessors named."""


class CodegenError(EmberError):
    """TVM lowering or build failed."""


class TuningError(EmberError):
    """Autotuning failed."""


class ServiceError(TuningError):
    """The tuning service refused a request or could not be reached (`--service URL`)."""


class VerifyError(EmberError):
    """Broken IR: always ember's bug, never the user's."""
