"""Training configuration: BasicSR-style YAML, checked against a typed schema before any work starts.

A config is a YAML file or the name of a preset shipped in ``repsr/presets``. ``--opt a.b=value``
overrides any key (the value is parsed as YAML). Unknown keys (with a did-you-mean), wrong types,
bad values and missing data folders are reported with the key's full name.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from .archs.registry import BLOCKS
from .degradation import DegradationConfig, parse_degradations
from .errors import RepsrError


@dataclass
class NetworkConfig:
    num_feat: int = 16
    num_block: int = 4
    block: str = "repsr"
    expand: int = 2


@dataclass
class TrainDataConfig:
    paths: list[str] = field(default_factory=list)  # HR folders or paired folders, relative to data_root
    lr_patch: int = 48
    batch_size: int = 16
    repeat: int = 1  # each epoch visits every image this many times
    augment: bool = True
    num_workers: int = 2
    on_device: bool = False  # keep the decoded set on the training device and crop there (GPU input pipeline)
    cache_dir: str | None = None  # LR cache for HR-only folders; None: ~/.cache/repsr/lr
    # the real-world model: LR made from each HR patch by the second-order degradation ({} for the published
    # settings; see repsr.degradation.second_order); null: the LR images of the training sets (bicubic)
    degradation: DegradationConfig | None = None


@dataclass
class ValDataConfig:
    paths: list[str] = field(default_factory=list)
    every: int = 1000  # iterations between validations (0: only at the end)
    save_images: int = 2  # SR images of the first N validation images logged to TensorBoard
    # each validation set is also scored on these named degradations of its LR (repsr.degradation.named),
    # e.g. [jpeg40, real]; "clean" is the bicubic LR, which is always scored
    degradations: list[str] = field(default_factory=list)
    degradation_seed: int = 0


@dataclass
class DataConfig:
    color: Literal["rgb", "y"] = "rgb"
    train: TrainDataConfig = field(default_factory=TrainDataConfig)
    val: ValDataConfig = field(default_factory=ValDataConfig)


@dataclass
class OptimizerConfig:
    lr: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0


@dataclass
class SchedulerConfig:
    type: Literal["constant", "multistep", "cosine"] = "cosine"
    milestones: list[int] = field(default_factory=list)  # multistep
    gamma: float = 0.5  # multistep
    min_lr: float = 1e-7  # cosine
    warmup_iter: int = 0


@dataclass
class BNConfig:
    # When BN switches to population statistics: a fraction of total_iter (< 1), an iteration (>= 1),
    # or null for never (the "BN without the switch" variant).
    switch: int | float | None = 0.9
    recompute_batches: int = 50  # training batches over which population statistics are re-estimated
    train_affine: bool = True  # keep training BN's gamma/beta after the switch
    sync: bool = True  # multi-GPU: batch statistics over the global batch (SyncBN semantics)


@dataclass
class TrainConfig:
    total_iter: int = 10000
    # wall-clock limit of this process's training loop in seconds (0: none): past it, or on SIGTERM, the run stops
    # at the end of an iteration and still finishes (checkpoint, merge, evaluation, results.json): for time boxes
    max_seconds: float = 0.0
    loss: Literal["l1", "l2"] = "l1"
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    grad_clip: float = 0.0  # max gradient norm; 0 disables
    ema_decay: float = 0.999  # 0 disables EMA
    bn: BNConfig = field(default_factory=BNConfig)
    # torch.compile the training forward: no gain on a 2-core CPU (benchmarks/RESULTS.md, train_profile),
    # meant for GPUs, where small networks are bound by kernel launches
    compile: bool = False


@dataclass
class CheckpointConfig:
    every: int = 1000
    keep: int = 3


@dataclass
class LoggerConfig:
    print_every: int = 100
    tensorboard: bool | None = None  # None: use TensorBoard if it is installed
    progress: bool | None = None  # None: a progress bar when stderr is a terminal


@dataclass
class Config:
    name: str = "repsr"
    scale: int = 4
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    data_root: str = "."
    network: NetworkConfig = field(default_factory=NetworkConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def data_path(self, path: str) -> Path:
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else Path(os.path.expanduser(self.data_root)) / p

    def switch_iteration(self) -> int | None:
        """The iteration after which BN uses population statistics (None: never)."""
        s = self.train.bn.switch
        if s is None:
            return None
        return int(round(s * self.train.total_iter)) if isinstance(s, float) and s < 1 else int(s)


# ----------------------------------------------------------------------------- typed loading

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


_SCALARS = {  # YAML scalar checks; bool is no integer here, an integer is a valid float
    type(None): lambda v: v is None,
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}
_NAMES = {int: "integer", float: "number", bool: "true/false", str: "string"}


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        sections = [o for o in typing.get_args(tp) if dataclasses.is_dataclass(o)]
        if isinstance(value, dict) and len(sections) == 1:  # a section: its own messages (did-you-mean) count
            return from_dict(sections[0], value, key)
        for option in typing.get_args(tp):  # first option that accepts the value
            try:
                return _convert(value, option, key)
            except RepsrError:
                continue
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is dict:
        if isinstance(value, dict):
            return {str(k): _convert(v, typing.get_args(tp)[1], f"{key}.{k}") for k, v in value.items()}
    elif origin is list:
        if isinstance(value, list):
            return [_convert(v, typing.get_args(tp)[0], f"{key}[{i}]") for i, v in enumerate(value)]
    elif tp in _SCALARS and _SCALARS[tp](value):
        return float(value) if tp is float else value
    raise RepsrError(f"config key {key}: expected {_type_name(tp)}, got {value!r}")


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """An instance of dataclass ``cls`` from a YAML mapping, every key and type checked (did-you-mean for
    unknown keys); ``prefix`` names the section in messages. Used for configs and ablation specs."""
    if not isinstance(data, dict):
        raise RepsrError(f"config key {prefix or '(top level)'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {(prefix + '.' if prefix else '') + close[0]}?" if close else ""
            raise RepsrError(f"unknown config key {full}{hint}")
        kwargs[key] = _convert(value, hints[key], full)
    return cls(**kwargs)


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts, creating sections as needed. A dict or list value is copied, so
    that a later ``a.b.c`` override never writes through into the caller's value (a spec's shared opt)."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RepsrError(f"--opt {dotted}: {part} is not a section")
    node[parts[-1]] = copy.deepcopy(value)


DATA_ROOT_VARIABLE = "REPSR_DATA_ROOT"


def preset_names() -> list[str]:
    folder = resources.files("repsr").joinpath("presets")
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".yml"))


def read_config_dict(source: str) -> dict[str, Any]:
    """The raw mapping of a YAML path or a preset name; ``$REPSR_DATA_ROOT``, when set, replaces its ``data_root``
    (an ``--opt data_root=...`` on top still wins)."""
    path = Path(source)
    if path.suffix in (".yml", ".yaml") or path.exists():
        if not path.is_file():
            raise RepsrError(f"{path}: no such config file")
        text = path.read_text()
    else:
        preset = resources.files("repsr").joinpath("presets", f"{source}.yml")
        if not preset.is_file():
            close = difflib.get_close_matches(source.lower().replace("-", "_"), preset_names(), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise RepsrError(f"{source}: neither a config file nor a preset{hint} ({', '.join(preset_names())})")
        text = preset.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise RepsrError(f"{source}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RepsrError(f"{source}: a config must be a YAML mapping")
    if os.environ.get(DATA_ROOT_VARIABLE):  # the user's data, wherever the file or preset thinks it is
        data["data_root"] = os.environ[DATA_ROOT_VARIABLE]
    return data


def load_config(source: str | dict, overrides: list[str] | None = None, check_paths: bool = True) -> Config:
    """Read (a file, a preset or a mapping built in code), override, type-check and validate a config. Relative
    paths resolve from the current folder."""
    data = copy.deepcopy(source) if isinstance(source, dict) else read_config_dict(source)
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise RepsrError(f"--opt {item}: expected key.sub=value")
        set_dotted(data, key.strip(), yaml.safe_load(text))
    config = from_dict(Config, data)
    validate(config, check_paths)
    return config


def validate(config: Config, check_paths: bool = True) -> None:
    """Value checks the types cannot express; every message names its key."""
    def require(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise RepsrError(f"config key {key}: {message}")

    t, d = config.train, config.data.train
    require(config.scale >= 1, "scale", f"must be >= 1, got {config.scale}")
    require(config.network.num_feat >= 1, "network.num_feat", "must be >= 1")
    require(config.network.num_block >= 0, "network.num_block", "must be >= 0")
    require(config.network.expand >= 1, "network.expand", "must be >= 1")
    require(config.network.block in BLOCKS, "network.block", f"unknown block {config.network.block!r}; "
            f"known: {', '.join(sorted(BLOCKS))}")
    require(t.total_iter >= 1, "train.total_iter", "must be >= 1")
    require(t.max_seconds >= 0, "train.max_seconds", "must be >= 0 (0: no limit)")
    require(t.optimizer.lr > 0, "train.optimizer.lr", "must be > 0")
    require(len(t.optimizer.betas) == 2 and all(0 <= b < 1 for b in t.optimizer.betas), "train.optimizer.betas",
            "must be two numbers in [0, 1)")
    require(0 <= t.ema_decay < 1, "train.ema_decay", "must be in [0, 1)")
    require(t.grad_clip >= 0, "train.grad_clip", "must be >= 0")
    require(t.scheduler.warmup_iter >= 0, "train.scheduler.warmup_iter", "must be >= 0")
    require(t.scheduler.warmup_iter < t.total_iter, "train.scheduler.warmup_iter", "must be below train.total_iter")
    require(all(0 < m < t.total_iter for m in t.scheduler.milestones), "train.scheduler.milestones",
            "must lie between 0 and train.total_iter")
    require(t.bn.recompute_batches >= 1, "train.bn.recompute_batches", "must be >= 1")
    if t.bn.switch is not None:
        require(t.bn.switch > 0, "train.bn.switch", "must be > 0 (a fraction below 1 or an iteration)")
        switch = config.switch_iteration()
        require(switch < t.total_iter, "train.bn.switch",
                f"iteration {switch} is not before the last iteration {t.total_iter}")
    require(d.lr_patch >= 1, "data.train.lr_patch", "must be >= 1")
    require(d.batch_size >= 1, "data.train.batch_size", "must be >= 1")
    require(d.repeat >= 1, "data.train.repeat", "must be >= 1")
    require(d.num_workers >= 0, "data.train.num_workers", "must be >= 0")
    require(bool(d.paths), "data.train.paths", "needs at least one folder")
    require(config.data.val.every >= 0, "data.val.every", "must be >= 0")
    if d.degradation is not None:
        d.degradation.check("data.train.degradation")
    for i, name in enumerate(config.data.val.degradations):
        try:
            parse_degradations([name])
        except RepsrError as e:
            raise RepsrError(f"config key data.val.degradations[{i}]: {e}") from None
    require(config.checkpoint.every >= 1, "checkpoint.every", "must be >= 1")
    require(config.checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1")
    require(config.logger.print_every >= 1, "logger.print_every", "must be >= 1")
    if check_paths:
        for section, paths in (("data.train.paths", d.paths), ("data.val.paths", config.data.val.paths)):
            for i, p in enumerate(paths):
                require(config.data_path(p).is_dir(), f"{section}[{i}]", f"folder {config.data_path(p)} does not exist")
