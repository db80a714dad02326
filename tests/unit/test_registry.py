"""The handler registry: registration, lookup and loading from entry points / import paths."""

from __future__ import annotations

import pytest

from conveyor_kernel.handlers import builtin
from conveyor_kernel.registry import (
    HandlerRegistry,
    JobContext,
    UnknownJobTypeError,
    load_registry,
)
from tests.unit import plugin_example

BUILTIN_TYPES = ["echo", "email", "fail", "fail-absolute", "image-process", "report-gen", "sleep"]


async def async_handler(ctx: JobContext) -> int:
    """Async handler. Second line is not part of the description."""
    return ctx.attempt


def sync_handler(ctx: JobContext) -> int:
    return ctx.attempt


def test_register_and_get() -> None:
    reg = HandlerRegistry()
    reg.register("a", async_handler)
    spec = reg.get("a")
    assert spec.name == "a"
    assert spec.func is async_handler
    assert "a" in reg
    assert "b" not in reg


def test_names_and_specs_are_sorted() -> None:
    reg = HandlerRegistry()
    for name in ["zeta", "alpha", "mid"]:
        reg.register(name, sync_handler)
    assert reg.names() == ["alpha", "mid", "zeta"]
    assert [s.name for s in reg.specs()] == ["alpha", "mid", "zeta"]


def test_is_async_detection() -> None:
    reg = HandlerRegistry()
    reg.register("async", async_handler)
    reg.register("sync", sync_handler)
    assert reg.get("async").is_async is True
    assert reg.get("sync").is_async is False


def test_description_from_docstring_first_line_or_explicit() -> None:
    reg = HandlerRegistry()
    reg.register("doc", async_handler)
    reg.register("nodoc", sync_handler)
    reg.register("explicit", sync_handler, description="given")
    assert (
        reg.get("doc").description == "Async handler. Second line is not part of the description."
    )
    assert reg.get("nodoc").description == ""
    assert reg.get("explicit").description == "given"


def test_reregistering_same_function_is_allowed() -> None:
    reg = HandlerRegistry()
    reg.register("a", sync_handler)
    reg.register("a", sync_handler)
    assert reg.names() == ["a"]


def test_duplicate_name_with_other_function_raises() -> None:
    reg = HandlerRegistry()
    reg.register("a", sync_handler)
    with pytest.raises(ValueError, match="'a' is already registered"):
        reg.register("a", async_handler)
    assert reg.get("a").func is sync_handler


def test_decorator_registers() -> None:
    reg = HandlerRegistry()

    @reg.handler("deco")
    async def deco(ctx: JobContext) -> None:
        return None

    assert reg.get("deco").func is deco
    assert reg.get("deco").is_async


def test_unknown_type_error_lists_known_types() -> None:
    reg = HandlerRegistry()
    reg.register("b", sync_handler)
    reg.register("a", sync_handler)
    with pytest.raises(UnknownJobTypeError) as info:
        reg.get("nope")
    err = info.value
    assert isinstance(err, KeyError)
    assert err.name == "nope"
    assert err.known == ["a", "b"]
    assert str(err) == "unknown job type 'nope'; known types: a, b"


def test_load_registry_finds_builtin_entry_point() -> None:
    reg = load_registry()
    assert set(BUILTIN_TYPES) <= set(reg.names())
    assert reg.get("echo").func is builtin.echo
    assert reg.get("fail-absolute").func is builtin.fail_absolute
    assert all(reg.get(name).is_async for name in BUILTIN_TYPES)


def test_load_registry_loads_third_party_import_path() -> None:
    reg = load_registry(["tests.unit.plugin_example:register"])
    assert "plugin-shout" in reg
    assert "plugin-count" in reg
    assert reg.get("plugin-shout").func is plugin_example.shout
    assert reg.get("plugin-shout").is_async is True
    assert reg.get("plugin-count").is_async is False
    assert reg.get("plugin-shout").description == "Upper-cases payload.text."
    assert "echo" in reg  # entry points still loaded


def test_load_registry_import_path_defaults_to_register() -> None:
    reg = load_registry(["tests.unit.plugin_example"])
    assert "plugin-shout" in reg


def test_load_registry_non_callable_registrar() -> None:
    with pytest.raises(TypeError, match="not callable"):
        load_registry(["tests.unit.test_registry:BUILTIN_TYPES"])


def test_load_registry_missing_module() -> None:
    with pytest.raises(ModuleNotFoundError):
        load_registry(["tests.unit.does_not_exist:register"])


def test_load_registry_conflicting_plugin_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        load_registry(["tests.unit.test_registry:_conflicting"])


def _conflicting(registry: HandlerRegistry) -> None:
    registry.register("echo", sync_handler)


def test_progress_checks_its_fraction_and_forwards_reports() -> None:
    reports: list[tuple[float, str | None]] = []
    ctx = JobContext(
        job_id="j", type="t", payload={}, attempt=1, max_retries=0, is_last_attempt=True
    )
    ctx.progress(0.5)  # no sink (e.g. a handler called outside a worker): ignored
    ctx.progress_sink = lambda f, m: reports.append((f, m))
    ctx.progress(0, "start")
    ctx.progress(1, "x" * 500)
    for bad in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match=r"within 0\.\.1"):
            ctx.progress(bad)
    assert reports == [(0.0, "start"), (1.0, "x" * 200)]
