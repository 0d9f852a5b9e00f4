"""The hyper-parameter table of the model zoo: its rows, their checks and their absl flags.

Each model module declares the rows it uses next to its code (`HParam` records, names and defaults
from the reference code) and the registry records them here when the model registers; where a
reference default differs between models (the classifier's L2 penalty, probability gating), the
row's flag default is None and each model registers its own value (`defaults`), else the row's
`fallback` applies. `define_flags` turns the table into absl flags and `hparams_from_flags` reads
them back as the dict that `frame_level_models.build` takes.

A row may carry `aliases`: other flag names of the same option (a reference's own name for it,
e.g. Willow's `--moe_l2` for `l2_penalty`). Each alias is an absl alias flag that sets the row's
flag, and `build` accepts it as a keyword; the row stays the option's one declaration.

`feature_names` / `feature_sizes` are build arguments too, but their flags belong to the data flags
(`yt8m.training.flags`), so `define_flags` leaves them out.

This module is the mechanism only: it imports nothing from the project.
"""
import dataclasses
import types
from typing import Any, Dict, Optional, Tuple

from absl import flags

MODEL = "model"      # row group of the model hyper-parameters
INPUT_HPARAMS = ("feature_names", "feature_sizes")


@dataclasses.dataclass(frozen=True)
class HParam:
    name: str
    kind: str  # "integer", "float", "bool", "string" or "enum"
    default: Any  # the flag default; None: the model's registered default, else `fallback`
    help: str
    choices: Optional[Tuple[str, ...]] = None
    lower_bound: Optional[float] = None  # inclusive; checked for numbers
    upper_bound: Optional[float] = None
    fallback: Any = None  # value when neither the caller nor the model sets one
    aliases: Tuple[str, ...] = ()  # other names of this option (flags and build keywords)


def integer(name, default, help_text, lower=1):
    """An integer row, >= `lower` (1 unless said otherwise)."""
    return HParam(name, "integer", default, help_text, lower_bound=lower)


@dataclasses.dataclass(frozen=True)
class _Declaration:
    names: Tuple[str, ...]       # the rows the model declared
    defaults: Dict[str, Any]     # its values for rows whose flag default is None
    other_names: Tuple[str, ...]  # settings its builder checks itself (no row, no flag)
    every_hparam: bool           # it also takes every model row (e.g. any zoo model as a leaf)


_ROWS = {}    # name -> HParam, in declaration order (the flags' order)
_ALIASES = {}  # alias -> row name
_GROUPS = {}  # name -> row group (MODEL)
_MODELS = {}  # model name -> _Declaration


def add_rows(rows, group=MODEL):
    """Adds rows to the table; a name declared again must be the very same row."""
    for row in rows:
        known = _ROWS.get(row.name)
        if known is not None and (known != row or _GROUPS[row.name] != group):
            raise ValueError(f"hparam {row.name} is declared twice with different definitions:\n"
                             f"  {known}\n  {row}")
        for alias in row.aliases:
            if alias in _ROWS or _ALIASES.get(alias, row.name) != row.name:
                raise ValueError(f"hparam alias {alias} of {row.name} is already a name of "
                                 f"{_ALIASES.get(alias, alias)}")
            _ALIASES[alias] = row.name
        if row.name in _ALIASES:
            raise ValueError(f"hparam {row.name} is already an alias of {_ALIASES[row.name]}")
        _ROWS[row.name] = row
        _GROUPS[row.name] = group


def declare_model(model_name, rows, defaults=None, other_names=(), every_hparam=False):
    """Records the hparams model `model_name` uses: its rows (added to the table), its defaults for
    rows whose flag default is None, names its builder checks itself, and whether it also takes
    every model row (`every_hparam`: a composite whose leaf may be any zoo model)."""
    if model_name in _MODELS:
        raise ValueError(f"model {model_name} declares its hparams twice")
    add_rows(rows)
    names = tuple(dict.fromkeys(row.name for row in rows))  # a shared row listed twice counts once
    unknown = sorted(set(defaults or {}) - set(names))
    if unknown:
        raise ValueError(f"model {model_name} gives defaults for hparams it does not declare: "
                         f"{', '.join(unknown)}")
    _MODELS[model_name] = _Declaration(names, dict(defaults or {}), tuple(other_names),
                                       bool(every_hparam))


def all_hparams(group=MODEL):
    """Every row of `group` declared so far, in declaration order."""
    return tuple(row for name, row in _ROWS.items() if _GROUPS[name] == group)


def all_names():
    """Every name `build` accepts: the model rows and the input names, sorted (aliases aside)."""
    return tuple(sorted({row.name for row in all_hparams()} | set(INPUT_HPARAMS)))


def aliases():
    """{alias: row name} of every alias declared so far."""
    return dict(_ALIASES)


def canonical(model_name, hparams):
    """`hparams` with every alias replaced by its row's name; an alias given together with its
    row (or another alias of it) must carry the same value."""
    values = {}
    for name, value in hparams.items():
        target = _ALIASES.get(name, name)
        if target in values and values[target][1] != value:
            raise ValueError(f"{model_name}: hparams {values[target][0]}={values[target][1]!r} "
                             f"and {name}={value!r} name the same option ({target})")
        values[target] = (name, value)
    return {name: value for name, (_, value) in values.items()}


def _declaration(model_name):
    if model_name not in _MODELS:
        raise ValueError(f"unknown model {model_name!r}; models with hparams: "
                         f"{', '.join(_MODELS)}")
    return _MODELS[model_name]


def model_hparam_names(model_name):
    """The hyper-parameters model `model_name` uses (input hparams excluded), its own rows first."""
    declaration = _declaration(model_name)
    names = declaration.other_names + declaration.names
    if declaration.every_hparam:
        names += tuple(row.name for row in all_hparams() if row.name not in names)
    return names


def _define(hparam, flag_values):
    kwargs = {"flag_values": flag_values}
    if hparam.kind == "enum":
        flags.DEFINE_enum(hparam.name, hparam.default, list(hparam.choices), hparam.help,
                          **kwargs)
    elif hparam.kind == "bool":
        flags.DEFINE_bool(hparam.name, hparam.default, hparam.help, **kwargs)
    elif hparam.kind == "string":
        flags.DEFINE_string(hparam.name, hparam.default, hparam.help, **kwargs)
    else:
        define = flags.DEFINE_integer if hparam.kind == "integer" else flags.DEFINE_float
        define(hparam.name, hparam.default, hparam.help, lower_bound=hparam.lower_bound,
               upper_bound=hparam.upper_bound, **kwargs)


def _define_aliases(hparam, flag_values):
    for alias in hparam.aliases:
        flags.DEFINE_alias(alias, hparam.name, flag_values=flag_values)


def define_flag(hparam, flag_values=flags.FLAGS):
    """Defines the absl flag of one HParam (also used for hparams declared outside this table)."""
    _define(hparam, flag_values)
    _define_aliases(hparam, flag_values)


def define_flags(flag_values=flags.FLAGS):
    """Defines one absl flag per model hyper-parameter."""
    for hparam in all_hparams():
        _define(hparam, flag_values)
        _define_aliases(hparam, flag_values)


def values_from_flags(rows, flag_values=flags.FLAGS):
    """{name: flag value} of `rows`."""
    return {hparam.name: flag_values[hparam.name].value for hparam in rows}


def hparams_from_flags(flag_values=flags.FLAGS, model_name=None):
    """The model hyper-parameter flags as a dict for `build`.

    With `model_name`, only the hparams that model uses (what `model_flags.json` should record).
    """
    rows = all_hparams()
    if model_name is not None:
        used = set(model_hparam_names(model_name))
        rows = [row for row in rows if row.name in used]
    return values_from_flags(rows, flag_values)


def unused_flags(model_name, flag_values=flags.FLAGS):
    """The model hparam flags given on the command line that `model_name` does not use.

    The reference tools defined every model flag for every model and ignored the ones a model
    does not read; command lines copied between models carry such flags, so train.py warns
    about them rather than refusing."""
    used = set(model_hparam_names(model_name))
    return [row.name for row in all_hparams()
            if row.name not in used and row.name in flag_values and flag_values[row.name].present]


def check_value(hparam, value, model_name):
    """Checks one value against its HParam (type, choices, bounds); errors name model and hparam."""
    where = f"{model_name}: hparam {hparam.name}={value!r}"
    if hparam.kind == "bool":
        if not isinstance(value, (bool,)):
            raise TypeError(f"{where} must be true or false")
        return value
    if hparam.kind in ("string", "enum"):
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string")
        if hparam.choices and value not in hparam.choices:
            raise ValueError(f"{where} is not one of {', '.join(hparam.choices)}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where} must be a number")
    if hparam.kind == "integer":
        if int(value) != value:
            raise TypeError(f"{where} must be an integer")
        value = int(value)
    else:
        value = float(value)
    if hparam.lower_bound is not None and value < hparam.lower_bound:
        raise ValueError(f"{where} must be >= {hparam.lower_bound}")
    if hparam.upper_bound is not None and value > hparam.upper_bound:
        raise ValueError(f"{where} must be <= {hparam.upper_bound}")
    return value


def check_known(model_name, hparams):
    """Unknown names raise an error listing the known ones; names known but not used by this model
    are accepted (callers may pass every flag), aliases too."""
    known = set(all_names()) | set(_declaration(model_name).other_names) | set(_ALIASES)
    unknown = sorted(set(hparams) - known)
    if unknown:
        raise ValueError(f"{model_name}: unknown hparams {', '.join(unknown)}; known hparams: "
                         f"{', '.join(all_names())}")


def default_value(model_name, name):
    """The value a model uses for `name` when the caller leaves it out (None: unset)."""
    hparam = _ROWS[name]
    if hparam.default is not None:
        return hparam.default
    return _declaration(model_name).defaults.get(name, hparam.fallback)


def resolve(model_name, hparams, names=None):
    """Checks `hparams` and fills in defaults: a namespace of every hparam the model uses (or of
    `names`, a subset of them). A value that stays None (an optional row) is None."""
    check_known(model_name, hparams)
    hparams = canonical(model_name, hparams)
    declared = [name for name in model_hparam_names(model_name) if name in _ROWS]
    values = {}
    for name in (declared if names is None else names):
        if name not in declared:
            raise ValueError(f"{model_name} has no hparam row {name!r}")
        value = hparams.get(name)
        if value is None:
            value = default_value(model_name, name)
        values[name] = None if value is None else check_value(_ROWS[name], value, model_name)
    return types.SimpleNamespace(**values)
