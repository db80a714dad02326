"""The job handler registry.

A handler is a function of a :class:`JobContext` returning a JSON-serialisable
result; ``async def`` handlers run on the event loop, plain functions in a
thread. Handlers come from registrars - functions ``register(registry)`` -
found through the ``conveyor.handlers`` entry-point group (installed packages)
and the ``CONVEYOR_HANDLER_MODULES`` setting (``"pkg.module:register"``), so a
third-party handler never needs an edit of the worker.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "conveyor.handlers"

log = logging.getLogger(__name__)

HandlerFunc = Callable[["JobContext"], Awaitable[Any]] | Callable[["JobContext"], Any]
Registrar = Callable[["HandlerRegistry"], None]


@dataclass
class JobContext:
    """What a handler gets: the job's input and where it stands in its retry budget."""

    job_id: str
    type: str
    payload: dict[str, Any]
    attempt: int  # 1-based number of this attempt
    max_retries: int
    is_last_attempt: bool
    # Set when the job should stop (shutdown or cancellation); sync handlers poll it.
    stop_requested: threading.Event = field(default_factory=threading.Event)
    # Where ``progress`` reports go (the worker sets it); thread-safe to call.
    progress_sink: Callable[[float, str | None], None] | None = field(default=None, repr=False)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job is, ``fraction`` from 0 to 1 with an optional
        short ``message``. Cheap to call often: the worker writes at most one
        report per second per job (and always the last one, with the outcome).
        Callable from ``async`` and plain (threaded) handlers alike."""
        if not 0.0 <= fraction <= 1.0:  # also refuses NaN
            raise ValueError(f"progress fraction must be within 0..1, not {fraction!r}")
        if self.progress_sink is not None:
            self.progress_sink(float(fraction), None if message is None else str(message)[:200])


@dataclass(frozen=True)
class HandlerSpec:
    name: str
    func: HandlerFunc
    is_async: bool
    description: str = ""


class UnknownJobTypeError(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown job type {self.name!r}; known types: {', '.join(self.known)}"


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, HandlerSpec] = {}

    def register(self, name: str, func: HandlerFunc, *, description: str = "") -> None:
        if name in self._handlers and self._handlers[name].func is not func:
            raise ValueError(f"job type {name!r} is already registered")
        self._handlers[name] = HandlerSpec(
            name=name,
            func=func,
            is_async=inspect.iscoroutinefunction(func),
            description=description or (inspect.getdoc(func) or "").split("\n")[0],
        )

    def handler(self, name: str) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorator form of :meth:`register`."""

        def deco(func: HandlerFunc) -> HandlerFunc:
            self.register(name, func)
            return func

        return deco

    def get(self, name: str) -> HandlerSpec:
        try:
            return self._handlers[name]
        except KeyError:
            raise UnknownJobTypeError(name, self.names()) from None

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def specs(self) -> list[HandlerSpec]:
        return [self._handlers[n] for n in self.names()]


def _load_registrar(path: str) -> Registrar:
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    registrar = getattr(module, attr or "register")
    if not callable(registrar):
        raise TypeError(f"{path} is not callable")
    return registrar  # type: ignore[no-any-return]


def load_registry(extra_registrars: Iterable[str] = ()) -> HandlerRegistry:
    """Build the registry from entry points, then from ``module:function`` paths."""
    registry = HandlerRegistry()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        ep.load()(registry)
        log.debug("loaded handlers from entry point %s", ep.value)
    for path in extra_registrars:
        _load_registrar(path)(registry)
        log.debug("loaded handlers from %s", path)
    return registry
