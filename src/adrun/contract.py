"""The method contract, checked: a built-in or a user's own class, its config values, and what its `score` returns.

A method is a class, importable by its `_target_`, that subclasses `adrun.AnomalyModule`, overrides `score`, takes
`image_size` and `channels`, and trains for `epochs` (a parameter) or says how long itself (`trainer_epochs`). Its
constructor's annotations are the types of its config values: `int`, `float`, `bool`, `str`, `list[int]`, `X | None`,
`Literal[...]`, and `Count` (an int ≥ 1: epochs, iterations, sizes). Each value is checked against them before
anything is built, so `method.epochs=abc`, `1.5` or `0` is one line, for every key of every method, own ones included.
What `score(batch)` returns is held to the score contract by `adrun.scores.check_scores`, here once on two images
before training (`probe`, own methods), and at every validation, test and predict step.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Literal, Union

from adrun.errors import UserError


@dataclass(frozen=True)
class AtLeast:
    """`Annotated[int, AtLeast(1)]`: the value's lower bound, checked with its type."""

    minimum: int


Count = Annotated[int, AtLeast(1)]  # epochs, iterations, widths: a positive integer
BUILT_IN = "adrun.methods."
GIVEN_BY_DATA = ("image_size", "channels")  # the runner passes them from the data config


def method_class(target: str) -> type:
    """The class a method's `_target_` names, imported; a target that cannot be imported says what to do."""
    from adrun.methods.base import AnomalyModule

    module_name, _, class_name = str(target).rpartition(".")
    if not module_name:
        raise UserError(f"method._target_={target!r} names no module: write it as module.Class (e.g. tiny_ae.TinyAE)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not module_name.startswith(error.name):
            raise  # the module exists but imports something missing: its own traceback says what
        raise UserError(
            f"method._target_={target}: cannot import '{module_name}'; put the folder that holds {module_name}.py on "
            f"PYTHONPATH (PYTHONPATH=DIR adrun …) or pip install it — adrun does not import from the config dir"
        ) from error
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise UserError(f"method._target_={target}: module '{module_name}' has no class '{class_name}'")
    if not issubclass(cls, AnomalyModule):
        raise UserError(f"method {target}: {class_name} must subclass adrun.AnomalyModule (from adrun import …)")
    if cls.score is AnomalyModule.score:
        raise UserError(f"method {target}: {class_name} has no score(batch) -> Scores; every method implements it")
    return cls


def parameters(cls: type) -> dict[str, inspect.Parameter]:
    return dict(list(inspect.signature(cls.__init__).parameters.items())[1:])


def check_method_config(config: dict) -> None:
    """The method's class keeps the contract and every value in its config fits its constructor: known keys, the
    required ones given, each value of its annotated type and bound."""
    target = config.get("_target_")
    if target is None:
        raise UserError("method has no _target_: give method=<name>, or +method._target_=module.Class")
    cls = method_class(target)
    name, params = cls.__name__, parameters(cls)
    missing = [key for key in GIVEN_BY_DATA if key not in params]
    if missing and not takes_any(params):
        raise UserError(f"method {target}: {name}.__init__ must take {' and '.join(missing)} (adrun passes them)")
    if "epochs" not in params and cls.trainer_epochs is base_trainer_epochs():
        raise UserError(f"method {target}: {name} takes no `epochs` and does not override trainer_epochs")
    given = {key: value for key, value in config.items() if key != "_target_"}
    for key in given:
        if key not in params and not takes_any(params):
            close = difflib.get_close_matches(key, list(params), n=1)
            hint = f" (did you mean method.{close[0]}?)" if close else ""
            raise UserError(
                f"method.{key}: {name} has no such parameter{hint}; a `method._target_=` override keeps the old "
                f"method's keys: use method=<name> with its own yaml, or drop the key with ~method.{key}"
            )
    for key, param in params.items():
        variadic = param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL)
        required = param.default is inspect.Parameter.empty and not variadic
        if required and key not in given and key not in GIVEN_BY_DATA:
            raise UserError(f"method.{key} is required by {name} and not set; add it to the method's yaml")
    hints = annotations(cls)
    for key, value in given.items():
        if key in hints:
            check_value(f"method.{key}", value, hints[key])
    if "epochs" in given:  # the Trainer's max_epochs, whatever its annotation says: 0 would train nothing
        check_value("method.epochs", given["epochs"], Count)


def takes_any(params: dict[str, inspect.Parameter]) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in params.values())


def base_trainer_epochs():
    from adrun.methods.base import AnomalyModule

    return AnomalyModule.trainer_epochs


def annotations(cls: type) -> dict:
    """The constructor's annotations, resolved (string annotations too); {} where they cannot be."""
    try:
        return typing.get_type_hints(cls.__init__, include_extras=True)
    except Exception:
        return {}


def check_value(key: str, value, hint) -> None:
    if not fits(value, hint):
        raise UserError(f"{key} must be {describe(hint)}, got {value!r}")


def fits(value, hint) -> bool:
    """Whether a config value (after OmegaConf: int, float, bool, str, None, list) fits an annotation."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is inspect.Parameter.empty:
        return True
    if origin is Annotated:
        bounds = [m.minimum for m in hint.__metadata__ if isinstance(m, AtLeast)]
        return fits(value, args[0]) and all(value >= low for low in bounds)
    if origin in (Union, types.UnionType):
        return any(fits(value, option) for option in args)
    if origin is Literal:
        return value in args
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        items = args[:1] if origin is not tuple or (len(args) == 2 and args[1] is Ellipsis) else ()
        return isinstance(value, list | tuple) and all(fits(v, items[0]) for v in value) if items else True
    return True  # a type adrun cannot check from a config value: the constructor's own checks decide


def describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        bounds = [m.minimum for m in hint.__metadata__ if isinstance(m, AtLeast)]
        low = f" ≥ {bounds[0]}" if bounds else ""
        return (f"an integer{low}" if args[0] is int else describe(args[0]) + low) if bounds else describe(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(describe(option) for option in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (list, tuple):
        plural = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}
        return f"a list of {plural.get(args[0], describe(args[0]))}" if args else "a list"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def probe(module, datamodule, method: str) -> None:
    """Scores two test images with the untrained model and holds the result to the contract. A method whose score
    needs training first (a memory bank filled at fit's end) may fail here: that is not a fault, and is let pass. Runs
    with the random generators forked, so the run draws the numbers it would have drawn without it."""
    import torch

    from adrun.scores import check_scores

    batch = {key: value.cpu() for key, value in datamodule.test_batch(torch.arange(2)).items()}
    grad = module.trainer_overrides.get("inference_mode", True) is False
    with torch.random.fork_rng(devices=[]), torch.set_grad_enabled(grad):
        was_training = module.training
        module.eval()
        try:
            scores = module.score(batch)
        except Exception:
            return
        finally:
            module.train(was_training)
    check_scores(scores, batch, method)
