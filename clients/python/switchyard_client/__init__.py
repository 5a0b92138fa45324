"""Call a Switchyard server with the reference docs' code-first API.

    from switchyard_client import Switchyard
    sy = Switchyard(url="http://127.0.0.1:7400", token=..., product="shop", env="prd")
    sy.fallback.run("checkout", {"amount": 1099})
"""

from ._builders import DataTypes, FallbackContext, FeatureEventTypes, HealthcheckContext, OptionBuilder, ProbeBuilder, QuotaContext
from ._client import AsyncHealthchecks, AsyncResource, AsyncRoutes, AsyncSwitchyard, Healthchecks, Resource, Routes, Switchyard
from ._errors import (
    ERROR_CODES,
    AllFailedError,
    AmbiguousError,
    DeadlineError,
    ExistsError,
    ForbiddenError,
    InProgressError,
    NetworkError,
    NoProviderError,
    NotFoundError,
    OverloadedError,
    Reconcile,
    RejectedError,
    SwitchyardError,
    UnauthorizedError,
    ValidationError,
)
from ._mapping import MappingError, to_template
from ._ops import RetryPolicy, RunResult

__all__ = [
    "ERROR_CODES",
    "AllFailedError",
    "AmbiguousError",
    "AsyncHealthchecks",
    "AsyncResource",
    "AsyncRoutes",
    "AsyncSwitchyard",
    "DataTypes",
    "DeadlineError",
    "ExistsError",
    "FallbackContext",
    "FeatureEventTypes",
    "ForbiddenError",
    "HealthcheckContext",
    "Healthchecks",
    "InProgressError",
    "MappingError",
    "NetworkError",
    "NoProviderError",
    "NotFoundError",
    "OptionBuilder",
    "OverloadedError",
    "ProbeBuilder",
    "QuotaContext",
    "Reconcile",
    "RejectedError",
    "Resource",
    "RetryPolicy",
    "Routes",
    "RunResult",
    "Switchyard",
    "SwitchyardError",
    "UnauthorizedError",
    "ValidationError",
    "to_template",
]
__version__ = "0.1.0"
