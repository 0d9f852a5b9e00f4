"""One declaration per option: a tool's configuration is a typed dataclass whose fields carry their
help text, and its absl flags are generated from it and read back into it.

    @dataclasses.dataclass
    class EvalConfig(CheckpointSelection, Batching):          # reused groups of options
        eval_data_pattern: str = option("", "Glob of the evaluation TFRecord files.")
        run_once: bool = option(False, "Evaluate the newest checkpoint once.")
        top_k: int = override(TopK, "top_k", help="Predictions kept per video.")

    define_flags(EvalConfig, flags.FLAGS)      # --train_dir, --checkpoint, --batch_size, ...
    config = from_flags(EvalConfig, flags.FLAGS)

The flag's kind follows the field's type: bool, int, float, str (an enum with `choices`),
Optional[...] of those (default None), and list flags for tuple[X, ...] / list[X] fields (items
converted to X; errors name the flag). A field whose type is a dataclass with options is a nested
group: its flags are defined and read back at the same level. Fields without `option(...)` are
not flags (library-only settings, or values the tool computes).
"""
import collections.abc
import dataclasses
import sys
import types
import typing
from typing import Any, Callable, Mapping, Optional

from absl import flags

import yt8m  # noqa: F401
from yt8m.core import errors

# The flags belong to the module that calls define_flags (its --helpshort lists them), not here.
flags.disclaim_key_flags()

_METADATA_KEY = "yt8m.option"


@dataclasses.dataclass(frozen=True)
class Items:
    """Parser of a list-valued flag: converts each item; an error names the flag and the item.

    `what` completes "'x' is not ..."; `quote_value` also quotes the whole value, as in
    "--frame_buckets='60,x': 'x' is not an integer number of frames".
    """
    convert: Callable[[str], Any]
    what: str
    quote_value: bool = False

    def __call__(self, values, label):
        """values: a sequence of items (or a comma-separated string); label: '--flag_name'."""
        if isinstance(values, str):
            values = values.split(",")
        values = [str(value) for value in values]
        converted = []
        for value in values:
            try:
                converted.append(self.convert(value.strip()))
            except ValueError:
                where = f"{label}={','.join(values)!r}" if self.quote_value else label
                raise errors.InvalidInputError(
                    f"{where}: {value.strip()!r} is not {self.what}") from None
        return tuple(converted)


_ITEMS_BY_TYPE = {str: Items(str, "a string"), int: Items(int, "an integer"),
                  float: Items(float, "a number")}


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """What a field's metadata says about its flag (see `option`)."""
    help: str
    choices: Optional[tuple] = None
    lower: Optional[float] = None
    upper: Optional[float] = None
    flag: Optional[str] = None
    parse: Optional[Callable[[Any, str], Any]] = None
    required: bool = False
    deprecated_aliases: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    aliases: tuple = ()


def option(default=dataclasses.MISSING, help="", *, default_factory=dataclasses.MISSING,
           choices=None, lower=None, upper=None, flag=None, parse=None, required=False,
           deprecated_aliases=None, aliases=()):
    """A dataclass field that is also a command-line flag.

    help: the flag's help text (required). choices: allowed values (an enum flag). lower/upper:
    inclusive bounds of a number. flag: the flag's name when it is not the field's. parse:
    `(flag value, '--flag') -> field value`, raising ValueError naming the flag (list flags
    default to converting every item to the field's item type). required: the flag must be given.
    deprecated_aliases: {old boolean flag: the value it stands for}; setting one prints a one-line
    notice and sets this option. aliases: other names of the same flag (absl alias flags: a
    reference's own spelling, e.g. Willow's --max_step); the last one given wins.
    """
    if not help:
        raise TypeError("option() needs a help text")
    spec = OptionSpec(help=help, choices=tuple(choices) if choices is not None else None,
                      lower=lower, upper=upper, flag=flag, parse=parse, required=required,
                      deprecated_aliases=dict(deprecated_aliases or {}), aliases=tuple(aliases))
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={_METADATA_KEY: spec})


def override(group, name, default=dataclasses.MISSING, **changes):
    """The option `name` of dataclass `group` with another default and/or other spec fields
    (help=..., lower=...), for a config that shares the option but not its default."""
    (field,) = [field for field in dataclasses.fields(group) if field.name == name]
    spec = dataclasses.replace(_spec(field), **changes)
    if default is dataclasses.MISSING:
        default, default_factory = field.default, field.default_factory
    else:
        default_factory = dataclasses.MISSING
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={_METADATA_KEY: spec})


def _spec(field):
    return field.metadata.get(_METADATA_KEY)


# ----------------------------------------------------------------------------- field types

@dataclasses.dataclass(frozen=True)
class _Kind:
    scalar: type                # bool, int, float or str (the item type of a list)
    container: Optional[type]   # tuple or list for list flags, else None
    optional: bool


def _kind(hint, where):
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) != 1:
            raise TypeError(f"{where}: unsupported option type {hint}")
        hint, optional = args[0], True
    origin = typing.get_origin(hint)
    if origin in (tuple, list, collections.abc.Sequence):
        args = [arg for arg in typing.get_args(hint) if arg is not Ellipsis]
        if len(set(args)) != 1 or args[0] not in _ITEMS_BY_TYPE:
            raise TypeError(f"{where}: list options need one item type, got {hint}")
        return _Kind(args[0], tuple if origin is tuple else list, optional)
    if hint not in (bool, int, float, str):
        raise TypeError(f"{where}: unsupported option type {hint}")
    return _Kind(hint, None, optional)


def _default(field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _is_group(hint):
    return isinstance(hint, type) and dataclasses.is_dataclass(hint) and bool(option_fields(hint))


def option_fields(config_class):
    """(field, spec, flag name, kind, hint) of every option of `config_class`, nested groups
    included, in declaration order."""
    hints = typing.get_type_hints(config_class)
    result = []
    for field in dataclasses.fields(config_class):
        spec, hint = _spec(field), hints[field.name]
        if spec is not None:
            where = f"{config_class.__name__}.{field.name}"
            result.append((field, spec, spec.flag or field.name, _kind(hint, where), hint))
        elif _is_group(hint):
            result.extend(option_fields(hint))
    return result


def flag_names(config_class):
    """The flags `define_flags(config_class, ...)` defines (aliases last)."""
    names = [name for _, _, name, _, _ in option_fields(config_class)]
    return names + [alias for _, spec, _, _, _ in option_fields(config_class)
                    for alias in (*spec.deprecated_aliases, *spec.aliases)]


# ----------------------------------------------------------------------------- generation

def define_flags(config_class, flag_values=flags.FLAGS):
    """Defines one absl flag per option of `config_class` (and its nested groups) on
    `flag_values`, with the field's default, help, choices and bounds. Returns the flag names."""
    for field, spec, name, kind, _ in option_fields(config_class):
        default = _default(field)
        common = dict(flag_values=flag_values)
        if kind.container is not None:
            flags.DEFINE_list(name, [str(v) for v in default or ()], spec.help, **common)
        elif spec.choices is not None:  # a default outside the choices ('' for unset): no default
            flags.DEFINE_enum(name, default if default in spec.choices else None,
                              list(spec.choices), spec.help, **common)
        elif kind.scalar is bool:
            flags.DEFINE_bool(name, default, spec.help, **common)
        elif kind.scalar is int:
            flags.DEFINE_integer(name, default, spec.help, lower_bound=spec.lower,
                                 upper_bound=spec.upper, **common)
        elif kind.scalar is float:
            flags.DEFINE_float(name, default, spec.help, lower_bound=spec.lower,
                               upper_bound=spec.upper, **common)
        else:
            flags.DEFINE_string(name, default, spec.help, **common)
        if spec.required:
            flags.mark_flag_as_required(name, flag_values=flag_values)
        for alias, value in spec.deprecated_aliases.items():
            flags.DEFINE_bool(alias, False, f"Deprecated: use --{name}={value}.", **common)
        for alias in spec.aliases:
            flags.DEFINE_alias(alias, name, **common)
    return flag_names(config_class)


# ----------------------------------------------------------------------------- parsing back

def _aliased(spec, name, value, flag_values):
    """The option's value after its deprecated aliases (a notice on stderr for each one set)."""
    chosen = [alias for alias in spec.deprecated_aliases if flag_values[alias].value]
    if len(chosen) > 1:
        raise errors.InvalidInputError(
            f"{' and '.join('--' + alias for alias in chosen)} exclude each other: "
            f"choose one {name}")
    if not chosen:
        return value
    alias, aliased = chosen[0], spec.deprecated_aliases[chosen[0]]
    print(f"warning: --{alias} is deprecated; use --{name}={aliased}", file=sys.stderr,
          flush=True)
    if flag_values[name].present and value != aliased:
        raise errors.InvalidInputError(
            f"--{alias} contradicts --{name}={value}: give only --{name}")
    return aliased


def _read(field, spec, name, kind, flag_values):
    value = _aliased(spec, name, flag_values[name].value, flag_values)
    if value is None and spec.choices is not None:
        return _default(field)
    if kind.container is not None:
        if value is None or (kind.optional and not value):
            return None if kind.optional else kind.container()
        value = kind.container((spec.parse or _ITEMS_BY_TYPE[kind.scalar])(value, f"--{name}"))
    elif spec.parse is not None and value is not None:
        value = spec.parse(value, f"--{name}")
    return value


def from_flags(config_class, flag_values=flags.FLAGS, **values):
    """The `config_class` instance of the parsed flags. `values` give fields directly (those that
    are not flags, e.g. values the tool computed); nested groups are read back the same way."""
    hints = typing.get_type_hints(config_class)
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise TypeError(f"{config_class.__name__} has no field(s) {', '.join(unknown)}")
    arguments = {}
    for field in fields.values():
        spec = _spec(field)
        if field.name in values:
            arguments[field.name] = values[field.name]
        elif spec is not None:
            kind = _kind(hints[field.name], f"{config_class.__name__}.{field.name}")
            arguments[field.name] = _read(field, spec, spec.flag or field.name, kind,
                                          flag_values)
        elif _is_group(hints[field.name]):
            arguments[field.name] = from_flags(hints[field.name], flag_values)
    return config_class(**arguments)
