"""A1111 1.10's launch flags, accepted so that existing launch scripts run unchanged.

Every A1111 guide says ``./webui.sh --api``; scripts also pass ``--xformers``, ``--no-half-vae``,
``--skip-torch-cuda-test`` and the like. ``A1111_FLAGS`` is the one table of the flags A1111
has and we do not define ourselves (``NATIVE_FLAGS`` lists the A1111 names we do define, with
A1111's meaning): each row gives the flag, its arity and what AIGen Studio does with it.
``add_a1111_flags`` puts them in their own ``--help`` group; ``resolve_a1111_flags`` turns the
ones that map onto ours into our flags' values and names the rest in one start-up line.

Sources: A1111 1.10 ``modules/cmd_args.py`` and ``paths_internal.py``, the built-in
extensions' ``preload.py`` (Lora, LDSR, ScuNET, SwinIR) and sd-webui-controlnet's ``preload.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["A1111_FLAGS", "A1111_PRECISIONS", "CONTROLNET_DIRS", "NATIVE_FLAGS", "TEXT_ENCODER_DIRS", "UPSCALER_DIRS",
           "VAE_DIRS", "A1111Flag", "add_a1111_flags", "precision_value", "resolve_a1111_flags"]

#: A1111's ``--precision`` values and ours they mean (autocast = fp16 on a GPU, our "auto").
A1111_PRECISIONS = {"full": "fp32", "half": "fp16", "autocast": "auto"}

#: A1111 flags our own parser defines, with A1111's meaning (see their ``--help``).
NATIVE_FLAGS = (
    "--data-dir", "--ckpt", "--ckpt-dir", "--lora-dir", "--embeddings-dir", "--precision", "--no-half",
    "--medvram", "--lowvram", "--listen", "--port", "--server-name", "--share", "--gradio-auth",
    "--gradio-auth-path", "--api-auth", "--nowebui", "--enable-insecure-extension-access", "--autolaunch",
)

#: Where the resolved namespace gathers the extra folders for the context (modules.app reads them).
VAE_DIRS, UPSCALER_DIRS, CONTROLNET_DIRS, LORA_DIRS = "vae_dirs", "upscaler_dirs", "controlnet_dirs", "lora_dir"
TEXT_ENCODER_DIRS = "text_encoder_dirs"
_DISABLE_ORDER = ("none", "extra", "all")

#: How a flag is honoured: given the namespace's values (to update) and the flag's value, say
#: what was done ("as --device cpu"), or return None when this value is ignored after all.
Honour = Callable[[MutableMapping[str, Any], Any], str | None]


def precision_value(text: str) -> str:
    """``--precision``'s argparse type: A1111's full/half/autocast as our fp32/fp16/auto."""
    return A1111_PRECISIONS.get(text, text)


def _always_on(note: str) -> Honour:
    return lambda _values, _value: note


def _extra_folders(key: str, kind: str) -> Honour:
    def honour(values: MutableMapping[str, Any], folders: Any) -> str:
        values[key] = [*(values.get(key) or []), *folders]
        return f"extra {kind} folder"
    return honour


def _set(key: str, value: Any, note: str) -> Honour:
    def honour(values: MutableMapping[str, Any], _value: Any) -> str:
        values[key] = value
        return note
    return honour


def _disable_extensions(level: str) -> Honour:
    def honour(values: MutableMapping[str, Any], _value: Any) -> str:
        current = values.get("disable_extensions") or "none"
        values["disable_extensions"] = max(current, level, key=_DISABLE_ORDER.index)
        return f"as --disable-extensions {values['disable_extensions']}"
    return honour


def _use_cpu(values: MutableMapping[str, Any], modules: Any) -> str | None:
    """``--use-cpu all`` runs everything on the CPU; A1111's per-module lists have no equivalent."""
    if "all" not in modules or values.get("device"):
        return None  # a list of single modules, or --device was given: ours wins
    values["device"] = "cpu"
    return "as --device cpu"


def _device_id(values: MutableMapping[str, Any], index: Any) -> str | None:
    """A1111 picks the CUDA device only when CUDA is there; --device, when given, wins."""
    import torch

    if values.get("device") or not torch.cuda.is_available():
        return None
    values["device"] = f"cuda:{index}"
    return f"as --device cuda:{index}"


@dataclass(frozen=True)
class A1111Flag:
    """One A1111 launch flag.

    Attributes:
        flag: its name, as A1111 spells it.
        nargs: 0 for a switch, 1 for one value, "+" for one or more.
        effect: what AIGen Studio does with it (its ``--help`` text).
        honour: how it maps onto our flags; None = accepted and ignored.
        type: the value's type (values only).
    """

    flag: str
    nargs: int | str
    effect: str
    honour: Honour | None = None
    type: Callable[[str], Any] = str

    @property
    def dest(self) -> str:
        """The namespace attribute, A1111's name for it (``/sdapi/v1/cmd-flags`` shows it)."""
        return self.flag.lstrip("-").replace("-", "_")


_LAUNCHER = "ignored: an A1111 launcher step; nothing is installed or downloaded"
_ATTENTION = "ignored: attention always uses PyTorch SDPA (scaled dot product)"
_NOOP = "ignored (A1111 itself does nothing with it)"
_NO_FACES = "ignored: no face restorers are installed"
_NO_SUCH = "ignored: AIGen Studio has no such option"
_SERVE = "ignored: not supported by AIGen Studio's server (use a reverse proxy)"
_DATA = "ignored: AIGen Studio keeps this file in the --data-dir"


def _switch(flag: str, effect: str, honour: Honour | None = None) -> A1111Flag:
    return A1111Flag(flag, 0, effect, honour)


def _value(flag: str, effect: str, honour: Honour | None = None, type: Callable[[str], Any] = str) -> A1111Flag:
    return A1111Flag(flag, 1, effect, honour, type)


def _folder(flag: str, key: str, kind: str) -> A1111Flag:
    return A1111Flag(flag, 1, f"an extra {kind} folder, scanned with the data dir's own (repeatable)",
                     _extra_folders(key, kind), Path)


#: The A1111 flags we do not define ourselves, in A1111's order.
A1111_FLAGS: tuple[A1111Flag, ...] = (
    # launch.py
    _switch("-f", "ignored: A1111's webui.sh switch for running as root"),
    *(_switch(flag, _LAUNCHER) for flag in (
        "--update-all-extensions", "--skip-python-version-check", "--skip-torch-cuda-test",
        "--reinstall-xformers", "--reinstall-torch", "--update-check", "--test-server", "--log-startup",
        "--skip-prepare-environment", "--skip-install", "--dump-sysinfo", "--do-not-download-clip",
        "--no-download-sd-model", "--no-tests")),
    _value("--tests", _LAUNCHER),
    _value("--loglevel", "ignored: AIGen Studio logs warnings and errors"),
    # paths
    _value("--models-dir", "ignored: models live under --data-dir (models/...)"),
    _value("--config", "ignored: the model config is detected from the checkpoint"),
    _folder("--vae-dir", VAE_DIRS, "VAE"),
    _folder("--text-encoder-dir", TEXT_ENCODER_DIRS, "text encoder"),  # Forge's
    _value("--vae-path", "ignored: choose the VAE in Settings (sd_vae) or put it in models/VAE"),
    _value("--hypernetwork-dir", "ignored: hypernetworks are not supported"),
    _value("--textual-inversion-templates-dir", "ignored: no textual-inversion training"),
    _value("--localizations-dir", "ignored: no localizations"),
    _value("--gfpgan-dir", _NO_FACES), _value("--gfpgan-model", _NO_FACES),
    _value("--codeformer-models-path", _NO_FACES), _value("--gfpgan-models-path", _NO_FACES),
    *(_folder(flag, UPSCALER_DIRS, "upscaler") for flag in (
        "--esrgan-models-path", "--bsrgan-models-path", "--realesrgan-models-path", "--dat-models-path",
        "--swinir-models-path", "--scunet-models-path")),
    _value("--ldsr-models-path", "ignored: LDSR is not supported"),
    _value("--clip-models-path", "ignored: no CLIP interrogator is installed"),
    _folder("--lyco-dir-backcompat", LORA_DIRS, "LoRA/LyCORIS"),
    _folder("--controlnet-dir", CONTROLNET_DIRS, "ControlNet"),
    _value("--controlnet-annotator-models-path", "ignored: preprocessor weights live in models/annotators"),
    _value("--styles-file", _DATA), _value("--ui-config-file", _DATA), _value("--ui-settings-file", _DATA),
    # precision, memory and devices
    _switch("--no-half-vae", "ignored: the VAE already runs in fp32 where its config needs it (SDXL); "
                             "--no-half or --precision fp32 make everything fp32"),
    _switch("--upcast-sampling", "ignored: use --no-half or --precision fp32"),
    _switch("--no-half-controlnet", _NO_SUCH),
    _switch("--medvram-sdxl", "ignored: use --medvram"),
    *(_switch(flag, _NO_SUCH) for flag in ("--lowram", "--disable-model-loading-ram-optimization")),
    A1111Flag("--use-cpu", "+", "'all' runs on the CPU, as --device cpu; lists of single modules are ignored",
              _use_cpu, str.lower),
    _value("--device-id", "as --device cuda:N (when CUDA is available and --device is not given)",
           _device_id, int),
    _switch("--use-ipex", "ignored: Intel XPU is not supported; see --device"),
    # attention
    *(_switch(flag, _ATTENTION) for flag in (
        "--xformers", "--force-enable-xformers", "--xformers-flash-attention", "--opt-split-attention",
        "--opt-sub-quad-attention", "--opt-split-attention-invokeai", "--opt-split-attention-v1",
        "--opt-sdp-attention", "--opt-sdp-no-mem-attention", "--disable-opt-split-attention",
        "--opt-channelslast")),
    *(_value(flag, _ATTENTION, type=int) for flag in (
        "--sub-quad-q-chunk-size", "--sub-quad-kv-chunk-size", "--sub-quad-chunk-threshold")),
    # A1111's own no-ops
    *(_switch(flag, _NOOP) for flag in (
        "--always-batch-cond-uncond", "--unload-gfpgan", "--deepdanbooru", "--show-negative-prompt",
        "--add-stop-route", "--gradio-queue")),
    *(_value(flag, _NOOP) for flag in ("--gradio-img2img-tool", "--gradio-inpaint-tool", "--ngrok-region")),
    # the REST API and the server
    _switch("--api", "the REST API (/sdapi/v1, docs at /docs) is always on",
            _always_on("the REST API is always on")),
    _switch("--api-log", "ignored: requests are not logged"),
    _switch("--api-server-stop", "ignored: there are no /sdapi/v1/server-stop, -restart or -kill routes"),
    _value("--timeout-keep-alive", "ignored: the server's keep-alive default is used", type=int),
    *(_value(flag, _SERVE) for flag in (
        "--cors-allow-origins", "--cors-allow-origins-regex", "--tls-keyfile", "--tls-certfile", "--subpath",
        "--gradio-allowed-path")),
    _switch("--disable-tls-verify", _SERVE),
    *(_value(flag, "ignored: no ngrok tunnel (see --share)") for flag in ("--ngrok", "--ngrok-options")),
    _switch("--gradio-debug", "ignored: errors are shown and logged anyway"),
    _switch("--no-gradio-queue", "ignored: the UI always runs on gradio's queue"),
    _switch("--ui-debug-mode", "ignored: the model loads in the background while the UI starts"),
    _switch("--skip-load-model-at-start", "ignored: the model loads in the background while the UI starts"),
    _switch("--administrator", "ignored"),
    # security and locking
    _switch("--allow-code", "ignored: no custom-code script"),
    _switch("--disable-safe-unpickle", "as --allow-pickle: .ckpt/.pt/.pth load, with torch.load(weights_only=True)",
            _set("allow_pickle", True, "as --allow-pickle (torch.load with weights_only=True)")),
    _switch("--disable-all-extensions", "as --disable-extensions all", _disable_extensions("all")),
    _switch("--disable-extra-extensions", "as --disable-extensions extra", _disable_extensions("extra")),
    *(_switch(flag, "ignored: settings stay editable") for flag in ("--freeze-settings", "--hide-ui-dir-config")),
    *(_value(flag, "ignored: settings stay editable") for flag in (
        "--freeze-settings-in-sections", "--freeze-specific-settings")),
    # UI and misc
    _value("--theme", "light or dark: the page's theme while the Theme setting says system (?__theme= wins)",
           _always_on("the page's theme while the Theme setting says system")),
    *(_switch(flag, _NO_SUCH) for flag in (
        "--use-textbox-seed", "--disable-console-progressbars", "--enable-console-prompts",
        "--no-progressbar-hiding", "--no-hashing", "--unix-filenames-sanitization", "--no-prompt-history",
        "--controlnet-tracemalloc")),
    *(_value(flag, _NO_SUCH, type=int) for flag in (
        "--max-batch-count", "--filenames-max-length", "--controlnet-preprocessor-cache-size")),
    _value("--controlnet-loglevel", _NO_SUCH),
)


def add_a1111_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``A1111_FLAGS`` to ``parser`` in an "A1111 compatibility" group of ``--help``."""
    group = parser.add_argument_group(
        "A1111 compatibility",
        "AUTOMATIC1111 1.10 launch flags, accepted so existing launch scripts run. Each says what "
        "AIGen Studio does with it; the ignored ones given are named in one line at start-up.")
    for entry in A1111_FLAGS:
        if entry.nargs == 0:
            group.add_argument(entry.flag, dest=entry.dest, action="store_true", help=entry.effect)
        elif entry.honour is not None and entry.type is Path:  # a folder: repeatable, like ours
            group.add_argument(entry.flag, dest=entry.dest, action="append", type=Path, default=[],
                               metavar="DIR", help=entry.effect)
        else:
            nargs = None if entry.nargs == 1 else entry.nargs
            group.add_argument(entry.flag, dest=entry.dest, nargs=nargs, type=entry.type, default=None,
                               help=entry.effect)


def _given(value: Any) -> bool:
    return value is not None and value is not False and value != []


def resolve_a1111_flags(args: argparse.Namespace) -> tuple[argparse.Namespace, list[str]]:
    """``args`` with the given A1111 flags mapped onto ours, and at most two lines for the
    start-up log: the flags applied (and as what), and the ones accepted and ignored.
    ``args`` itself is left unchanged."""
    values = dict(vars(args))
    applied: list[str] = []
    ignored: list[str] = []
    for entry in A1111_FLAGS:
        value = values.get(entry.dest)
        if not _given(value):
            continue
        note = entry.honour(values, value) if entry.honour is not None else None
        if note is None:
            ignored.append(entry.flag)
        else:
            applied.append(f"{entry.flag} ({note})")
    lines = []
    if applied:
        lines.append("A1111 flags applied: " + ", ".join(applied))
    if ignored:
        lines.append("A1111 flags accepted and ignored: " + ", ".join(ignored))
    return argparse.Namespace(**values), lines
