"""Persistent settings: A1111's ``config.json``, typed, validated and written atomically. No gradio.

``Settings`` fields are A1111's keys, so an A1111 ``config.json`` loads as it is; ``SETTING_INFOS``
describes each setting (label, section, widget, range) for a generic settings page. Loading never
raises: a bad value falls back to its default, a corrupt file to ``config.json.bak``, and each
problem becomes a readable warning. Path settings (``outdir_*``, checkpoint and VAE names) must
stay inside the data dir: an API that lets clients move output folders is an RCE vector (A1111 #2571).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import reprlib
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Any, Literal, TypeVar, cast

from modules.processing.errors import StorageFullError, no_space_as_storage_full
from modules.processing.output.image_formats import SAMPLES_FORMATS
from modules.processing.sampling.seeds import RANDN_SOURCES

__all__ = ["SECTIONS", "SETTING_INFOS", "SETTINGS_BY_KEY", "THEMES", "SettingInfo", "Settings", "SettingsStore",
           "coerce_setting", "output_dir", "validate_settings"]

logger = logging.getLogger(__name__)

SettingKind = Literal["checkbox", "slider", "number", "text", "dropdown"]
_SAVING, _PATHS, _SD = "Saving images", "Paths for saving", "Stable Diffusion"
_SAMPLER, _PREVIEWS, _UI = "Sampler parameters", "Live previews", "User interface"
SECTIONS: tuple[str, ...] = (_SAVING, _PATHS, _SD, _SAMPLER, _PREVIEWS, _UI)
#: The page's themes (A1111's ``--theme light|dark``; "system" follows the browser).
THEMES: tuple[str, ...] = ("system", "light", "dark")
_T = TypeVar("_T")


@dataclass(frozen=True)
class SettingInfo:
    """How one setting is shown and checked; a UI renders the settings page from these records.

    ``minimum``/``maximum`` bound sliders and numbers (inclusive). ``choices`` lists the allowed
    values of a dropdown (of each element for a ``multiselect`` one). ``choices_from`` names a list
    the UI fills at run time ("checkpoints", "vae"); any name is accepted there. ``is_relative_path``:
    must stay inside the data dir (no absolute path, no ``..``). ``info`` is A1111's grey hint text.
    """

    key: str
    label: str
    section: str
    kind: SettingKind
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    choices_from: str = ""
    multiselect: bool = False
    is_relative_path: bool = False
    info: str = ""


def _opt(default: _T, label: str, section: str, kind: SettingKind, **extra: Any) -> _T:
    """A ``Settings`` field whose metadata describes it (the key is filled in from the field name)."""
    info = SettingInfo("", label, section, kind, **extra)
    return cast(_T, field(default=default, metadata={"info": info}))


def _folder(label: str) -> str:
    return _opt("", label, _PATHS, "text", is_relative_path=True, info="relative to the data folder; empty = default")


def _slider(default: _T, label: str, section: str, bounds: tuple[float, float, float], info: str = "") -> _T:
    return _opt(default, label, section, "slider", minimum=bounds[0], maximum=bounds[1], step=bounds[2], info=info)


@dataclass(frozen=True)
class Settings:
    """Every persistent option, by its A1111 ``config.json`` key, with its default and description.

    Settings are never changed for one request. A request that needs other values works on a
    copy, and the stored settings stay as they are::

        >>> settings = Settings()
        >>> per_request = dataclasses.replace(settings, CLIP_stop_at_last_layers=2, eta_ddim=0.5)
        >>> (settings.CLIP_stop_at_last_layers, per_request.CLIP_stop_at_last_layers)
        (1, 2)

    Empty ``outdir_*`` values mean A1111's folders under ``outputs/`` (see ``output_dir``); an
    empty ``sd_model_checkpoint`` means the first checkpoint found (the demo model on a fresh install).
    """

    samples_save: bool = _opt(True, "Always save all generated images", _SAVING, "checkbox")
    samples_format: str = _opt("png", "File format for images", _SAVING, "dropdown", choices=SAMPLES_FORMATS,
                               info="also the format of images in API responses; JPEG/WEBP keep the infotext in EXIF")
    jpeg_quality: int = _slider(80, "Quality for saved jpeg images", _SAVING, (1, 100, 1), "also lossy WEBP")
    webp_lossless: bool = _opt(False, "Use lossless compression for webp images", _SAVING, "checkbox")
    enable_pnginfo: bool = _opt(True, "Save text information about generation parameters as chunks to png files",
                                _SAVING, "checkbox", info="the infotext; EXIF UserComment in JPEG/WEBP files")
    save_to_dirs: bool = _opt(True, "Save images to a subdirectory", _SAVING, "checkbox")
    outdir_samples: str = _folder("Output directory for images; if empty, defaults to the folders below")
    outdir_txt2img_samples: str = _folder("Output directory for txt2img images")
    outdir_img2img_samples: str = _folder("Output directory for img2img images")
    outdir_extras_samples: str = _folder("Output directory for images from extras tab")
    grid_save: bool = _opt(True, "Always save all generated image grids", _SAVING, "checkbox")
    grid_only_if_multiple: bool = _opt(True, "Do not save grids consisting of one picture", _SAVING, "checkbox")
    grid_prevent_empty_spots: bool = _opt(False, "Prevent empty spots in grid (when set to autodetect)", _SAVING,
                                          "checkbox")
    n_rows: int = _slider(-1, "Grid row count; use -1 for autodetect and 0 for it to be same as batch size", _SAVING,
                          (-1, 16, 1))
    outdir_grids: str = _folder("Output directory for grids; if empty, defaults to the folders below")
    outdir_txt2img_grids: str = _folder("Output directory for txt2img grids")
    outdir_img2img_grids: str = _folder("Output directory for img2img grids")
    outdir_save: str = _opt("log/images", "Directory for saving images using the Save button", _PATHS, "text",
                            is_relative_path=True, info="relative to the data folder; also holds log.csv")
    sd_model_checkpoint: str = _opt("", "Stable Diffusion checkpoint", _SD, "dropdown", choices_from="checkpoints",
                                    is_relative_path=True)
    sd_vae: str = _opt("Automatic", "SD VAE", _SD, "dropdown", choices_from="vae", is_relative_path=True,
                       info="Automatic = use one with same filename as checkpoint; None = use VAE from checkpoint")
    forge_additional_modules: tuple[str, ...] = _opt(
        (), "VAE / Text Encoder", _SD, "dropdown", multiselect=True, choices_from="modules",
        info="FLUX.1's VAE and text encoders (files in models/VAE and models/text_encoder); empty = the one file "
             "of each kind there")
    sd_checkpoints_limit: int = _slider(1, "Maximum number of checkpoints loaded at the same time", _SD, (1, 10, 1))
    queue_max_pending: int = _slider(64, "Maximum number of jobs waiting in the queue", _SD, (1, 1000, 1),
                                     "more are refused (HTTP 429 with Retry-After) until some finish")
    sd_checkpoints_keep_in_cpu: bool = _opt(True, "Only keep one model on device", _SD, "checkbox",
                                            info="the other loaded checkpoints wait in RAM")
    CLIP_stop_at_last_layers: int = _slider(1, "Clip skip", _SD, (1, 12, 1),
                                            "ignore last layers of CLIP network; 1 ignores none, 2 ignores one layer")
    randn_source: str = _opt("CPU", "Random number generator source", _SD, "dropdown", choices=RANDN_SOURCES,
                             info="CPU (the default here) gives the same picture on every device; GPU draws on the "
                                  "CUDA device, as A1111's default does; changes seeds drastically")
    emphasis: str = _opt("Original", "Emphasis mode", _SD, "dropdown", choices=("Original", "No norm"),
                         info="Original (A1111's default): weights keep the prompt's mean; No norm: plain product")
    eta_ddim: float = _slider(0.0, "Eta for DDIM", _SAMPLER, (0.0, 1.0, 0.01),
                              "noise multiplier; higher = more unpredictable results")
    eta_noise_seed_delta: int = _opt(0, "Eta noise seed delta", _SAMPLER, "number", minimum=0, step=1,
                                     info="ENSD; does not improve anything, just produces different results for "
                                          "ancestral samplers - only useful for reproducing images")
    show_progressbar: bool = _opt(True, "Show progressbar", _PREVIEWS, "checkbox")
    live_previews_enable: bool = _opt(True, "Show live previews of the created image", _PREVIEWS, "checkbox")
    show_progress_every_n_steps: int = _slider(5, "Live preview display period", _PREVIEWS, (-1, 32, 1),
                                               "in sampling steps; -1 = only show after completion of batch")
    live_preview_refresh_period: int = _opt(1000, "Progressbar and preview update period", _PREVIEWS, "number",
                                            minimum=100, maximum=60000, step=1, info="in milliseconds")
    quicksettings_list: tuple[str, ...] = _opt(
        ("sd_model_checkpoint", "sd_vae", "forge_additional_modules", "CLIP_stop_at_last_layers"),
        "Quicksettings list", _UI, "dropdown",
        multiselect=True, choices_from="settings", info="settings shown at the top of the page (after a reload)")
    disable_token_counters: bool = _opt(False, "Disable prompt token counters", _UI, "checkbox")
    theme: str = _opt("system", "Theme", _UI, "dropdown", choices=THEMES,
                      info="light or dark page; system = the browser's preference (or --theme); "
                           "?__theme=dark in the address wins")
    return_grid: bool = _opt(True, "Show grid in gallery", _UI, "checkbox",
                             info="a job of several images shows their grid first (with the first image's infotext)")


def _collect_infos() -> tuple[SettingInfo, ...]:
    """One ``SettingInfo`` per ``Settings`` field, in field order; fills in keys and the list of settings."""
    keys = tuple(f.name for f in dataclasses.fields(Settings))
    infos = []
    for f in dataclasses.fields(Settings):
        info = dataclasses.replace(f.metadata["info"], key=f.name)
        if info.choices_from == "settings":
            info = dataclasses.replace(info, choices=keys, choices_from="")  # known now, not at run time
        infos.append(info)
    return tuple(infos)


SETTING_INFOS: tuple[SettingInfo, ...] = _collect_infos()
SETTINGS_BY_KEY: Mapping[str, SettingInfo] = MappingProxyType({info.key: info for info in SETTING_INFOS})
#: Settings that name folders to write into: changed in the Settings tab only, never over the
#: network API (A1111's ``--api`` restriction), so a remote client cannot redirect outputs.
FOLDER_SETTINGS: frozenset[str] = frozenset(info.key for info in SETTING_INFOS if info.section == _PATHS)
_DEFAULTS = Settings()


def _describe(value: Any) -> str:
    return f"{reprlib.repr(value)} ({type(value).__name__})"


def _is_inside_data_dir(value: str) -> bool:
    """A relative path without ``..`` on both POSIX and Windows readings (so ``C:\\x`` is refused)."""
    readings = (PurePosixPath(value), PureWindowsPath(value))
    escapes = any(pure.is_absolute() or pure.anchor or ".." in pure.parts for pure in readings)
    return not (escapes or "\x00" in value or value.startswith("~"))


_EXPECTED: Mapping[type, tuple[str, tuple[type, ...]]] = MappingProxyType({bool: ("true or false", (bool,)),
    int: ("a whole number", (int,)), float: ("a number", (int, float)), str: ("text", (str,))})


def _coerce_scalar(default: Any, value: Any) -> Any:
    """``value`` as the type of ``default`` (bool, int, float or str); raises ValueError with the reason."""
    kind = type(default)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # gradio sliders and numbers send floats
    expected, accepted = _EXPECTED[kind]
    is_bad_float = isinstance(value, float) and not math.isfinite(value)
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, accepted) or is_bad_float:
        raise ValueError(f"expected {expected}, got {_describe(value)}")
    return float(value) if kind is float else value


def _coerce_list(info: SettingInfo, value: Any) -> tuple[tuple[str, ...], list[str]]:
    """A list setting from a list or a comma-separated string; unknown entries are dropped."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"expected a list of names, got {_describe(value)}")
    dropped = [item for item in value if info.choices and item not in info.choices]
    kept = tuple(dict.fromkeys(item for item in value if item not in dropped))
    return kept, [f"setting {info.key!r}: unknown entry {item!r} removed" for item in dropped]


def _coerce(info: SettingInfo, value: Any) -> tuple[Any, list[str]]:
    """The checked value of one setting and notes about dropped list entries; ValueError if unusable."""
    default = getattr(_DEFAULTS, info.key)
    if isinstance(default, tuple):
        return _coerce_list(info, value)
    value = _coerce_scalar(default, value)
    low, high = info.minimum, info.maximum
    if low is not None and value < low or high is not None and value > high:
        raise ValueError(f"{value!r} is outside {'' if low is None else low}..{'' if high is None else high}")
    if info.choices and value not in info.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(info.choices)}")
    if info.is_relative_path and not _is_inside_data_dir(value):
        raise ValueError(f"{value!r} must be a relative path inside the data folder (no absolute path, no '..')")
    return value, []


def coerce_setting(key: str, value: Any) -> Any:
    """``value`` checked as setting ``key`` holds it (whole floats become ints, lists tuples).

    Raises:
        KeyError: ``key`` is not a setting. ValueError: a wrong type, out of range, not a choice.
    """
    return _coerce(SETTINGS_BY_KEY[key], value)[0]


def validate_settings(values: Mapping[str, Any], base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Build ``Settings`` from raw values (a parsed config.json, a form, an API body); never raises.

    Keys missing from ``values`` keep their value from ``base`` (the defaults when None). Returns
    the settings and one warning per problem: an unknown key (left out; ``SettingsStore`` keeps
    those of its file), or a wrong-typed / out-of-range value, which keeps the ``base`` value.
    """
    start = base if base is not None else _DEFAULTS
    if not isinstance(values, Mapping):
        return start, [f"settings must be an object of key/value pairs, got {_describe(values)}; nothing changed"]
    accepted: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in values.items():
        info = SETTINGS_BY_KEY.get(key) if isinstance(key, str) else None
        if info is None:
            warnings.append(f"unknown setting {key!r} ignored (not used by this version)")
            continue
        try:
            accepted[key], notes = _coerce(info, value)
        except ValueError as reason:
            kept = "the default" if base is None else "the current value"
            warnings.append(f"setting {key!r}: {reason}; keeping {kept} {getattr(start, key)!r}")
            continue
        warnings.extend(notes)
    return dataclasses.replace(start, **accepted), warnings


def output_dir(settings: Settings, key: str, data_dir: Path) -> Path:
    """The folder of an output-folder setting, under ``data_dir``.

    Per-tab ``outdir_<tab>_samples`` / ``outdir_<tab>_grids`` keys follow A1111's rules: a
    non-empty ``outdir_samples`` (``outdir_grids``) replaces the per-tab folders; empty means
    ``outputs/<tab>-images`` (``outputs/<tab>-grids``); the caller adds the
    date folder (``save_to_dirs``). ``outdir_save`` is the Save button's folder (A1111
    ``log/images``, also when emptied).

    Raises:
        KeyError: ``key`` is not an output-folder setting.
        ValueError: the value leaves ``data_dir`` (only possible if it bypassed validation).
    """
    if key == "outdir_save":
        relative = settings.outdir_save or _DEFAULTS.outdir_save
    else:
        _, tab, kind = key.split("_", 2) if key.count("_") == 2 else ("", "", "")
        if kind not in ("samples", "grids") or key not in SETTINGS_BY_KEY:
            raise KeyError(key)
        default = f"outputs/{tab}-images" if kind == "samples" else f"outputs/{tab}-grids"
        relative = getattr(settings, f"outdir_{kind}") or getattr(settings, key) or default
    if not _is_inside_data_dir(relative):
        raise ValueError(f"{key}={relative!r} points outside {data_dir}")
    return data_dir / relative


class _Unreadable(Exception):
    """A settings file that cannot be used; the message says why, in words."""


def _parse_object(data: bytes) -> dict[str, Any]:
    """The JSON object in ``data``; raises _Unreadable saying what is wrong."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _Unreadable(f"is not UTF-8 text (bad byte at offset {error.start})") from error
    if not text.strip():
        raise _Unreadable("is empty")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise _Unreadable(f"is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from error
    if not isinstance(parsed, dict):
        raise _Unreadable(f"holds a JSON {type(parsed).__name__} instead of an object of settings")
    return parsed


def _read_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``. Raises FileNotFoundError, or _Unreadable with the reason."""
    try:
        data = path.read_bytes()
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise _Unreadable(f"could not be read ({error.strerror or error})") from error
    return _parse_object(data)


def _atomic_write(target: Path, data: bytes) -> None:
    """Write a temp file next to ``target``, fsync it, rename it over ``target``, fsync the folder."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # makes the rename durable; not every platform can fsync a folder
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _keep_copy(path: Path, data: bytes) -> Path:
    """``data`` in a new file ``<path>.corrupt-<UTC time>`` (``-2``, ``-3``... if that exists),
    written whole before it appears, never replacing anything."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    tmp = path.with_name(f".{path.name}.corrupt.tmp")
    _atomic_write(tmp, data)
    try:
        for attempt in range(1, 1000):
            target = path.with_name(f"{path.name}.corrupt-{stamp}" + (f"-{attempt}" if attempt > 1 else ""))
            try:
                os.link(tmp, target)  # fails if the name exists: an older copy is never replaced
                return target
            except FileExistsError:
                continue
        raise FileExistsError(f"too many copies of {path.name} from {stamp}")
    finally:
        tmp.unlink(missing_ok=True)


class SettingsStore:
    """``config.json`` (normally ``<data dir>/config.json``) with the previous good version in ``.bak``.

    Thread-safe. Keys of the file that this version does not know (extension settings, newer
    options) are kept aside and written back on save. A corrupt file is never silently lost:
    the next save keeps it as ``config.json.corrupt-<UTC time>`` (a new name each time, so one
    corruption never replaces the copy of another), and ``config_error`` says what happened in
    words that name no folder (for ``/health`` and API clients on other machines).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.backup_path = self.path.with_name(self.path.name + ".bak")
        self._lock = threading.RLock()
        self._load_problem: str | None = None  # why the file could not be used at the last load
        #: Where the unreadable file was kept when settings were next saved (None until then).
        self.corrupt_copy: Path | None = None
        self._settings: Settings | None = None
        self._unknown: dict[str, Any] = {}

    @property
    def config_error(self) -> str | None:
        """Why the file could not be used at the last load, what the server uses instead and
        where the file is kept; None when it could be used. Names files, never folders."""
        if self._load_problem is None:
            return None
        kept = (f"the unreadable file is kept as {self.corrupt_copy.name}" if self.corrupt_copy is not None
                else f"it will be kept as a {self.path.name}.corrupt-<time> copy when settings are next saved")
        return f"{self._load_problem} ({kept})"

    @property
    def current(self) -> Settings:
        """The settings last loaded, saved or applied (loads the file on first use)."""
        with self._lock:
            return self._settings if self._settings is not None else self.load()[0]

    def load(self) -> tuple[Settings, list[str]]:
        """Read the file; never raises.

        A missing file gives the defaults and no warning. An unreadable one (bad UTF-8, bad JSON,
        not an object, I/O error) falls back to ``config.json.bak``, then to the defaults, with a
        warning naming the files. Bad values and unknown keys give one warning each.
        """
        with self._lock:
            raw, warnings = self._read_with_fallback()
            known = {key: value for key, value in raw.items() if key in SETTINGS_BY_KEY}
            self._unknown = {key: value for key, value in raw.items() if key not in SETTINGS_BY_KEY}
            settings, problems = validate_settings(known)
            warnings += [f"{self.path.name}: {problem}" for problem in problems]
            warnings += [f"{self.path.name}: unknown setting {key!r} kept in the file but not used"
                         for key in self._unknown]
            self._settings = settings
            return settings, warnings

    def save(self, settings: Settings) -> None:
        """Write ``settings`` and the unknown keys atomically; the replaced file becomes ``.bak``.

        A crash at any point leaves the old or the new file, whole.

        Raises:
            StorageFullError: the disk is full (an OSError too); the file is as it was.
            OSError: the folder is not writable, ...
        """
        with self._lock:
            self._write(settings, self._unknown)

    def _write(self, settings: Settings, unknown: Mapping[str, Any]) -> None:
        """``save`` with these unknown keys; they and ``settings`` become current only once written."""
        payload = {**dataclasses.asdict(settings), **unknown}
        data = (json.dumps(payload, indent=4, ensure_ascii=False) + "\n").encode("utf-8")
        with no_space_as_storage_full("save the settings"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._keep_previous()
            _atomic_write(self.path, data)
        self._settings, self._unknown = settings, dict(unknown)

    def extra(self) -> dict[str, Any]:
        """The file's keys this version does not know: extensions' settings (and newer options)."""
        with self._lock:
            if self._settings is None:
                self.load()
            return dict(self._unknown)

    def set_extra(self, values: Mapping[str, Any]) -> None:
        """Store extension settings (already validated by their owner) beside ours, and save.

        Raises:
            ValueError: a key that is one of our own settings.
            OSError: the file cannot be written.
        """
        clash = sorted(set(values) & set(SETTINGS_BY_KEY))
        if clash:
            raise ValueError(f"{clash[0]!r} is a built-in setting, not an extension's")
        with self._lock:
            settings = self.current
            self._write(settings, {**self._unknown, **values})  # unchanged in memory if the write fails

    def apply(self, changes: Mapping[str, Any]) -> tuple[Settings, list[str]]:
        """Validate ``changes`` over the current settings, save, and return the result.

        A rejected value keeps the current value of that key (with a warning); unknown keys are
        ignored with a warning. Nothing is written when nothing changed. If the file cannot be
        written, the current settings come back unchanged, with a warning saying why.

        Raises:
            StorageFullError: the disk is full; nothing changed.
        """
        with self._lock:
            base = self.current
            settings, warnings = validate_settings(changes, base=base)
            if settings == base:
                return base, warnings
            try:
                self.save(settings)
            except StorageFullError:
                raise  # a full disk is the caller's to answer (507), not a warning among others
            except OSError as error:
                logger.warning("could not save settings to %s: %s", self.path, error)
                return base, [*warnings, f"Could not save settings to {self.path.name} "
                                         f"({error.strerror or type(error).__name__}); nothing was changed."]
            return settings, warnings

    def _read_with_fallback(self) -> tuple[dict[str, Any], list[str]]:
        """The file's object (or the backup's) and the warnings; sets ``config_error``."""
        self._load_problem = None
        try:
            return _read_object(self.path), []
        except FileNotFoundError:
            return {}, []
        except _Unreadable as problem:
            first, reason = f"Settings file {self.path} {problem}.", f"{self.path.name} {problem}"
        try:
            raw = _read_object(self.backup_path)
        except FileNotFoundError:
            self._load_problem = f"{reason}; the server uses the default settings"
            return {}, [f"{first} There is no backup {self.backup_path.name}; using the default settings."]
        except _Unreadable as problem:
            self._load_problem = (f"{reason}, and its backup {self.backup_path.name} cannot be used either; "
                                  "the server uses the default settings")
            return {}, [f"{first} The backup {self.backup_path} {problem} too; using the default settings."]
        self._load_problem = f"{reason}; the server uses the last good settings, from {self.backup_path.name}"
        return raw, [f"{first} Loaded the backup {self.backup_path} instead; the broken file will be kept as "
                     f"a {self.path.name}.corrupt-<time> copy when settings are next saved."]

    def _keep_previous(self) -> None:
        """Copy the file about to be replaced to .bak (if it is good) or to a new
        ``.corrupt-<time>`` copy (if not), so no save ever loses a file someone may want back."""
        try:
            previous = self.path.read_bytes()
        except OSError:
            return
        try:
            _parse_object(previous)
        except _Unreadable:
            self.corrupt_copy = _keep_copy(self.path, previous)
            logger.warning("settings file %s could not be used; kept it as %s", self.path, self.corrupt_copy)
            return
        _atomic_write(self.backup_path, previous)
