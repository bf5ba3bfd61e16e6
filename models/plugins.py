"""A user's own estimators: the protocol and the registry (``models.adapters`` runs them on folds).

The protocol is scikit-learn's: a class whose instances ``fit(X, y, sample_weight=None)`` and
``predict(X)``, plus ``predict_proba(X)`` (columns in ``classes_`` order) for a classifier, and
which ``sklearn.base.clone`` can copy (``get_params``). A classifier (``sklearn.base.is_classifier``)
runs on the up/down target, anything else on the regression target. The class declares what
it reads in a class attribute ``lstmbt_input``:

- ``"rows"`` (the default when absent): the decision day's feature row, ``(N, F)``, as the
  linear twins read it;
- ``"windows"``: the whole ``lookback``-day window, ``(N, L, F)``, as the networks read it.

Either way the features are standardised per fold on the training window only, and ``y`` is the
run's target (log return, or 0/1 for up). A plug-in is named by a dotted path
(``"mypkg.models:MyNet"``) in ``model.custom``, or by a name given to :func:`register_model`
from Python. Its strategy name is the class name in lower case plus the task
(``mynet_classification``), the registered name plus the task, or a name chosen in the entry
(``"hgb=mypkg.models:MyNet"`` gives ``hgb_classification``).

A config only names plug-ins: reading one (``check_spec``) checks the syntax and imports nothing,
so a saved run is read, rendered and compared without its plug-ins. ``resolve_plugin`` imports
them, for the commands that train. Modules are imported from the environment (``sys.path``, less
the working directory) and from the folders the user names (``plugin_search``), never implicitly
from the working directory or a run folder.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

#: what a plug-in may declare in ``lstmbt_input``
INPUTS = ("rows", "windows")
_REGISTRY: dict[str, type] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: a dotted path ``package.module:Name`` (``Name`` may be dotted), as a config writes one
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
#: the folders ``plugin_search`` names, searched before the environment (absolute paths)
_FOLDERS: tuple[str, ...] = ()


class PluginError(ValueError):
    """A plug-in that cannot be imported or breaks the protocol (one line naming it and the fix)."""


@dataclass(frozen=True)
class Plugin:
    """A resolved plug-in: ``spec`` as written in the config, ``cls``, its model ``stem`` (the
    strategy name before ``_regression``/``_classification``), its ``task`` and its ``input``."""

    spec: str
    cls: type
    stem: str
    task: str
    input: str

    @property
    def name(self) -> str:
        return f"{self.stem}_{self.task}"


def register_model(name: str, cls: type) -> None:
    """Make ``cls`` available as ``model.custom = ["name"]`` in this process.

    ``name``: lower case letters, digits and underscores, starting with a letter; it becomes the
    model's strategy name (``name_regression`` / ``name_classification``). The class is checked
    against the protocol now. Runs that cross processes (a process pool, Ray) import the class
    again there: give those a dotted path instead.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise PluginError(f"register_model name {name!r} must be lower case letters, digits and underscores, "
                          "starting with a letter (e.g. 'hgb')")
    resolve_plugin_class(cls, name)
    _REGISTRY[name] = cls


def resolve_plugin(spec: str) -> Plugin:
    """The ``Plugin`` behind a ``model.custom`` entry: a registered name or ``package.module:Class``,
    either optionally preceded by ``name=`` to choose the model's name (``hgb=mypkg.models:Boost``).

    Raises ``PluginError`` (one line) when it cannot be imported, is not a class, or breaks the protocol.
    """
    check_spec(spec)
    stem, _, path = str(spec).rpartition("=")
    if path in _REGISTRY:
        cls, stem = _REGISTRY[path], stem or path
    else:
        cls = import_object(path, f"model.custom entry {spec!r}")
        if not inspect.isclass(cls):
            raise PluginError(f"model.custom entry {spec!r} is a {type(cls).__name__}, not a class; "
                              "name an estimator class, e.g. 'mypkg.models:MyNet'")
        stem = stem or re.sub(r"[^a-z0-9_]", "_", cls.__name__.lower())
    task = "classification" if _is_classifier(build_instance(cls, spec)) else "regression"
    check_protocol(cls, spec, task)
    return Plugin(spec=spec, cls=cls, stem=stem, task=task, input=getattr(cls, "lstmbt_input", "rows"))


def check_spec(spec: str) -> None:
    """The syntax of a ``model.custom`` entry, importing nothing: ``[name=]package.module:Class``
    or ``[name=]registered_name``. Raises ``PluginError`` (one line) naming the entry and the fix."""
    stem, sep, path = str(spec).rpartition("=")
    if sep and not _NAME.match(stem):
        raise PluginError(f"model.custom entry {spec!r} names its model {stem!r}; use lower case letters, digits "
                          "and underscores, starting with a letter (e.g. 'hgb=mypkg.models:MyNet')")
    if not (DOTTED.match(path) or _NAME.match(path)):
        raise PluginError(f"model.custom entry {spec!r} is neither a dotted path nor a registered name; write it as "
                          "'package.module:Class' (e.g. 'mypkg.models:MyNet'), or register it from Python first")


def build_instance(cls: type, spec: str) -> Any:
    """``cls()``: every plug-in is built with its defaults; a failure is one ``PluginError`` line."""
    try:
        return cls()
    except Exception as exc:  # the user's constructor: whatever it raises is theirs to fix
        raise PluginError(f"model.custom entry {spec!r} cannot be built without arguments "
                          f"({type(exc).__name__}: {exc}); give every __init__ parameter a default") from None


def _is_classifier(instance: Any) -> bool:
    from sklearn.base import is_classifier  # loads scikit-learn (~1 s): only when a plug-in is named

    try:
        return bool(is_classifier(instance))
    except Exception:  # an object outside sklearn's tag system: its own declaration decides
        return getattr(instance, "_estimator_type", None) == "classifier"


def import_object(spec: str, what: str) -> Any:
    """The object a dotted path ``package.module:Name`` (``Name`` may be dotted) names, for the
    plug-in ``what`` (``"model.custom entry 'x:Y'"``, as messages start).

    The module is imported from the folders ``plugin_search`` names, then the environment
    (``sys.path`` without the working directory, which ``python -m`` and ``python -c`` put there,
    unless PYTHONPATH names it). Anything that fails is one ``PluginError`` line naming ``what`` and the fix.
    """
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"{what} is not a dotted path; write it as 'package.module:Name' "
                          "(or register it from Python first)")
    obj: Any = _import(module_name, what)
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            hint = difflib.get_close_matches(part, names, n=1)
            also = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise PluginError(f"{what}: {module_name} has no attribute {part!r}{also}; check the name after the colon")
        obj = getattr(obj, part)
    return obj


@contextmanager
def plugin_search(folders: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[str, ...]]:
    """While the block runs, plug-in modules are also imported from ``folders`` (after any named by
    an enclosing block; searched before the environment, as PYTHONPATH's folders are). Yields every
    folder now searched, as absolute paths; the previous folders apply again afterwards.

    Process-wide: a worker process enters the same block (``backtest.campaign.executors``)."""
    global _FOLDERS
    previous = _FOLDERS
    _FOLDERS = tuple(dict.fromkeys([*previous, *(os.path.abspath(f) for f in folders)]))
    try:
        yield _FOLDERS
    finally:
        _FOLDERS = previous


def plugin_folders() -> tuple[str, ...]:
    """The folders plug-in modules are imported from besides the environment (``plugin_search``)."""
    return _FOLDERS


def _import(module_name: str, what: str) -> Any:
    if module_name in sys.modules:  # imported already: no search, sys.path untouched while fits run
        return sys.modules[module_name]
    importlib.invalidate_caches()  # a module file written since the last import is seen
    try:
        with _search_path():
            return importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of the user's module is theirs to fix
        raise PluginError(_import_line(what, module_name, exc)) from None


@contextmanager
def _search_path() -> Iterator[None]:
    """``sys.path`` for one plug-in import: the named folders first, then the environment's entries
    less the working directory ('' or its path) unless a named folder or PYTHONPATH names it.
    Restored afterwards, keeping any entry the module added itself."""
    saved, cwd = list(sys.path), os.getcwd()
    pythonpath = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    hidden = set() if cwd in (*_FOLDERS, *pythonpath) else {p for p in saved if os.path.abspath(p or os.curdir) == cwd}
    sys.path[:] = [*_FOLDERS, *(p for p in saved if p not in hidden and p not in _FOLDERS)]
    try:
        yield
    finally:
        sys.path[:] = saved + [p for p in sys.path if p not in saved and p not in _FOLDERS]


def _import_line(what: str, module_name: str, exc: BaseException) -> str:
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    if isinstance(exc, ModuleNotFoundError) and _is_the_module(exc, module_name):
        top = module_name.partition(".")[0]
        holds = f"{top}.py" if top == module_name else f"the package {top}/"
        fix = (f"check the spelling, install it, or name the folder that holds {holds} with --plugin-path DIR "
               "(plugin_path= in Python)")
    else:
        fix = f"fix {module_name} so that it imports"
    return f"{what}: module {module_name} cannot be imported ({detail}); {fix}"


def _is_the_module(exc: ModuleNotFoundError, module_name: str) -> bool:
    """Whether the module not found is ``module_name`` or a package above it (not one it imports)."""
    return bool(exc.name) and (module_name == exc.name or module_name.startswith(f"{exc.name}."))


def resolve_plugin_class(cls: Any, spec: str) -> None:
    """Check a class given from Python as ``resolve_plugin`` checks one named in a config."""
    if not inspect.isclass(cls):
        raise PluginError(f"register_model({spec!r}, ...) got a {type(cls).__name__}, not a class; pass the "
                          "estimator class itself")
    task = "classification" if _is_classifier(build_instance(cls, spec)) else "regression"
    check_protocol(cls, spec, task)


def check_protocol(cls: Any, spec: str, task: str) -> None:
    """Refuse a class that lacks the methods a fold needs, or declares an unknown ``lstmbt_input``."""
    missing = [m for m in ("fit", "predict", "get_params") if not callable(getattr(cls, m, None))]
    if task == "classification" and not callable(getattr(cls, "predict_proba", None)):
        missing.append("predict_proba")
    if missing:
        raise PluginError(f"model.custom entry {spec!r} lacks {', '.join(missing)}; a plug-in is a scikit-learn "
                          "estimator (fit, predict, predict_proba for classifiers; subclass sklearn's BaseEstimator)")
    declared = getattr(cls, "lstmbt_input", "rows")
    if declared not in INPUTS:
        raise PluginError(f"model.custom entry {spec!r} declares lstmbt_input = {declared!r}; use 'rows' or 'windows'")


__all__ = ["Plugin", "PluginError", "register_model", "resolve_plugin", "check_spec", "check_protocol",
           "import_object", "plugin_search", "plugin_folders", "INPUTS", "DOTTED"]
