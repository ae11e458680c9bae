"""Backends by name: built-ins, ``register()`` calls and the ``brevitas_amed.hw_backends`` entry points.

A third-party package adds a backend with, in its ``pyproject.toml``::

    [project.entry-points."brevitas_amed.hw_backends"]
    mysim = "mysim_plugin:MySimBackend"

The object an entry point names is a factory called as ``factory(profile=..., **kwargs)``; it may
have an ``available_profiles()`` callable listing the profiles it accepts (the shipped ones if not).
Entry points are loaded on the first call of :func:`get` or :func:`available`.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Callable

from hw_backends.base import Backend
from hw_backends.errors import HWBackendError, UnknownBackendError
from hw_backends.profile import shipped_profiles

ENTRY_POINT_GROUP = "brevitas_amed.hw_backends"

_factories: dict[str, Callable[..., Backend]] = {}
_entry_points_loaded = False


def register(name: str, factory: Callable[..., Backend], overwrite: bool = False) -> None:
    """Make a backend available as ``hw_backends.get(name, ...)``.

    Args:
        name: The backend's name.
        factory: Called as ``factory(profile=profile, **kwargs)``; returns a :class:`Backend`.
        overwrite: Replace an existing registration of ``name``.

    Raises:
        ValueError: If ``name`` is empty or already registered and ``overwrite`` is false.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"backend name must be a non-empty string, got {name!r}")
    if name in _factories and not overwrite and _factories[name] is not factory:
        raise ValueError(f"backend {name!r} is already registered; pass overwrite=True to replace it")
    _factories[name] = factory


def available() -> dict[str, list[str]]:
    """Every registered backend with the profiles it accepts.

    Returns:
        ``{backend_name: [profile_name, ...]}``, sorted by backend name.
    """
    _load_entry_points()
    listing = {}
    for name in sorted(_factories):
        lister = getattr(_factories[name], "available_profiles", shipped_profiles)
        listing[name] = list(lister())
    return listing


def get(name: str, profile: Any = "scalesim", **kwargs: Any) -> Backend:
    """Build the backend ``name`` for one hardware profile.

    Args:
        name: A registered backend name (``"analytic"``, ``"scalesim"``, or a plugin's).
        profile: A shipped profile name, a path to a profile YAML, or a :class:`Profile`.
        **kwargs: Passed to the backend (for ``scalesim``: ``cache``, ``workers``, ``timeout_s``).

    Returns:
        The backend.

    Raises:
        UnknownBackendError: If no backend has that name (the message lists the known ones).
        ProfileError: If the profile cannot be loaded.
    """
    _load_entry_points()
    factory = _factories.get(name)
    if factory is None:
        known = ", ".join(sorted(_factories)) or "none"
        raise UnknownBackendError(f"unknown hardware backend {name!r}; known backends: {known}")
    return factory(profile=profile, **kwargs)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _factories:
            _factories[entry.name] = _lazy_entry_point(entry)


def _lazy_entry_point(entry: metadata.EntryPoint) -> Callable[..., Backend]:
    """A factory that imports the plugin only when its backend is built or listed."""

    def load() -> Callable[..., Backend]:
        try:
            return entry.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must name itself
            raise HWBackendError(
                f"hardware backend plugin {entry.name!r} ({entry.value}) failed to load: {exc}; "
                "reinstall or uninstall the package that provides it") from exc

    def factory(**kwargs: Any) -> Backend:
        return load()(**kwargs)

    def available_profiles() -> list[str]:
        return list(getattr(load(), "available_profiles", shipped_profiles)())

    factory.available_profiles = available_profiles  # type: ignore[attr-defined]
    return factory
