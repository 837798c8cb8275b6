"""The profiler's user-input errors: each derives from ValueError and carries a one-line message that the CLI
prints without a traceback."""

from __future__ import annotations


class ProfilingSetupError(ValueError):
    """A run that cannot start as asked (bad list, no GPU, inconsistent trace, ...)."""


def user_errors() -> tuple[type[ValueError], ...]:
    """Every error class that means bad input or an unusable machine, not a bug (imported late: torch)."""
    from profiling.energy import NvmlUnavailableError
    from profiling.pipelines import PipelineBuildError
    from profiling.quality import ClipModelError
    from profiling.registry import UnknownModelError
    from traces.profile_schema import TraceSchemaError
    from traces.prompts import PromptFileError

    return (
        ProfilingSetupError,
        NvmlUnavailableError,
        PipelineBuildError,
        ClipModelError,
        UnknownModelError,
        TraceSchemaError,
        PromptFileError,
    )
