"""Command line: the web UI (no command), ``generate`` and ``generate-from-json``.

On success one JSON line goes to stdout (paths, seeds, duration_ms, infotexts); progress goes
to stderr. Exit codes: 0 success, 1 a model problem (missing, broken, refused), 2 bad input
(the one-line message names the field or flag), 130 interrupted by Ctrl+C.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from modules.a1111_flags import add_a1111_flags, precision_value

if TYPE_CHECKING:
    from modules.app import AppContext


__all__ = ["build_parser", "main"]

EXIT_MODEL_ERROR = 1
EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (exit 2) instead of usage + error.

    Prefix matching is off: with it, A1111's ``--api`` was taken for ``--api-auth`` (and any
    unambiguous prefix was a flag), so a typo or a flag we lack turned into another flag.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        argv = sys.argv[1:] if args is None else list(args)
        self._reject_unknown_flags_before_command(argv)
        return super().parse_known_args(argv, namespace)

    def _reject_unknown_flags_before_command(self, argv: Sequence[str]) -> None:
        """Name an unknown ``--flag`` before the command. argparse would take the flag's value
        for the command and report "invalid choice: 'x'" instead (``--api-au x``)."""
        commands = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        if not commands:
            return  # without a command to misreport, argparse names the flag itself
        for token in argv:
            if token == "--" or token in commands[0].choices:
                return
            if token.startswith("--") and token.split("=", 1)[0] not in self._option_string_actions:
                self.error(f"unrecognized arguments: {token}")

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Flags shared by every command (A1111 names where A1111 has them)."""
    parser.add_argument("--ckpt-dir", type=Path, action="append", default=[],
                        help="extra folder to scan for checkpoints (repeatable)")
    parser.add_argument("--data-dir", type=Path, default=None, help="root holding models/, outputs/, cache/")
    parser.add_argument("--lora-dir", type=Path, action="append", default=[],
                        help="extra folder to scan for LoRAs (repeatable; models/Lora is always scanned)")
    parser.add_argument("--embeddings-dir", type=Path, action="append", default=[],
                        help="extra folder of textual-inversion embeddings (repeatable; models/embeddings "
                             "is always scanned)")
    parser.add_argument("--precision", type=precision_value, choices=("auto", "fp32", "fp16", "bf16"),
                        default="auto", help="weights' dtype; auto = fp16 on a GPU, fp32 on the CPU "
                                             "(A1111's full, half and autocast are accepted)")
    parser.add_argument("--no-half", action="store_true", help="keep weights in fp32 on the GPU")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: best available)")
    parser.add_argument("--medvram", action="store_true",
                        help="save VRAM: keep the model in CPU memory, moving the text encoder, UNet and VAE "
                             "to the GPU one at a time while each runs")
    parser.add_argument("--lowvram", action="store_true",
                        help="save more VRAM, much slower: move each layer's weights to the GPU only while it runs")
    parser.add_argument("--disable-extensions", choices=("none", "extra", "all"), default="none",
                        help="skip extensions/ (extra), or also your own scripts/ (all): the way back from an "
                             "extension that breaks start-up")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="load .ckpt/.pt/.bin with torch.load(weights_only=True)")


def _add_generate(commands: Any) -> None:
    gen = commands.add_parser("generate", help="txt2img (or img2img with --init-image) from flags")
    add_common_flags(gen)
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--seed", type=int, default=-1)
    gen.add_argument("--subseed", type=int, default=-1)
    gen.add_argument("--subseed-strength", type=float, default=0.0)
    # Left out, these four are the checkpoint's family's, as the UI starts with: A1111's 20 steps
    # of DPM++ 2M at CFG 7 for SD, Euler at CFG 1 for FLUX.1 (4 steps on schnell).
    gen.add_argument("--steps", type=int, default=None, help="default: the checkpoint family's (SD: 20)")
    gen.add_argument("--cfg-scale", type=float, default=None, help="default: the checkpoint family's (SD: 7)")
    gen.add_argument("--distilled-cfg-scale", type=float, default=None, metavar="FLOAT",
                     help="Forge's Distilled CFG Scale, 0-30 (FLUX.1-dev only; default: the model's, 3.5)")
    gen.add_argument("--sampler", default=None, help='default: the checkpoint family\'s (SD: "DPM++ 2M")')
    gen.add_argument("--scheduler", default=None, help='default: the checkpoint family\'s ("Automatic")')
    gen.add_argument("--width", type=int, default=None, help="default: the checkpoint's native size")
    gen.add_argument("--height", type=int, default=None, help="default: the checkpoint's native size")
    gen.add_argument("--batch-size", type=int, default=1)
    gen.add_argument("--n-iter", type=int, default=1, help="batch count")
    gen.add_argument("--clip-skip", type=int, default=None,
                     help="stop CLIP this many layers from the end (default: the saved setting, 1 unless changed)")
    gen.add_argument("--tiling", action="store_true")
    gen.add_argument("--model", default=None, help="checkpoint name, title, short hash or path")
    gen.add_argument("--vae", default=None,
                     help='"Automatic" (default), "None" (the checkpoint\'s own) or a file in models/VAE')
    gen.add_argument("--text-encoder", action="append", default=[], metavar="NAME",
                     help="a file in models/text_encoder for a checkpoint without its own (FLUX.1: clip_l, "
                          "t5xxl_fp16); repeat it for each. Default: the one file of each kind there")
    gen.add_argument("--out", type=Path, default=None, help="output folder, or a .png file for one image")
    gen.add_argument("--denoising-strength", type=float, default=None,
                     help="img2img (default 0.75) and the hires pass (default 0.7)")
    _add_hires_flags(gen.add_argument_group("Hires. fix (txt2img, given --enable-hr)"))
    i2i = gen.add_argument_group("img2img / inpainting (given --init-image)")
    i2i.add_argument("--init-image", type=Path, default=None, help="start from this image (img2img)")
    i2i.add_argument("--mask", type=Path, default=None, help="inpaint: white = repaint")
    i2i.add_argument("--resize-mode", type=int, choices=range(4), default=0,
                     help="0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale")
    i2i.add_argument("--mask-blur", type=int, default=4)
    i2i.add_argument("--masked-content", choices=("fill", "original", "latent noise", "latent nothing"),
                     default="original")
    i2i.add_argument("--inpaint-not-masked", action="store_true", help="repaint everything but the mask")
    i2i.add_argument("--only-masked", action="store_true", help="inpaint area: only the masked region")
    i2i.add_argument("--only-masked-padding", type=int, default=32)


def _add_hires_flags(hires: Any) -> None:
    """A1111's Hires. fix fields as flags (``--hr-scale`` is ``hr_scale``); left out, the API's
    defaults (x2 with the Latent upscaler, the first pass's steps, sampler and CFG)."""
    hires.add_argument("--enable-hr", action="store_true", help="upscale, then a second img2img pass")
    hires.add_argument("--hr-scale", type=float, default=None, help="upscale by (default 2)")
    hires.add_argument("--hr-resize-x", type=int, default=None, help="upscale to this width instead")
    hires.add_argument("--hr-resize-y", type=int, default=None, help="upscale to this height instead")
    hires.add_argument("--hr-upscaler", default=None, help='default "Latent"; or an upscaler name (Extras)')
    hires.add_argument("--hr-second-pass-steps", type=int, default=None, help="default 0: the first pass's")
    hires.add_argument("--hr-sampler", default=None, help="default: the first pass's")
    hires.add_argument("--hr-scheduler", default=None, help="default: the first pass's")
    hires.add_argument("--hr-prompt", default=None, help="default: the first pass's")
    hires.add_argument("--hr-negative-prompt", default=None, help="default: the first pass's")
    hires.add_argument("--hr-cfg", type=float, default=None, help="Forge's Hires CFG Scale (default: the first "
                                                                  "pass's)")
    hires.add_argument("--hr-distilled-cfg", type=float, default=None,
                       help="Forge's Hires Distilled CFG Scale (FLUX.1-dev; default: the first pass's)")


#: Hires flag -> A1111 payload field, for the flags that map one to one.
_HIRES_FLAGS = {"hr_scale": "hr_scale", "hr_resize_x": "hr_resize_x", "hr_resize_y": "hr_resize_y",
                "hr_upscaler": "hr_upscaler", "hr_second_pass_steps": "hr_second_pass_steps",
                "hr_sampler": "hr_sampler_name", "hr_scheduler": "hr_scheduler", "hr_prompt": "hr_prompt",
                "hr_negative_prompt": "hr_negative_prompt", "hr_cfg": "hr_cfg", "hr_distilled_cfg": "hr_distilled_cfg"}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="aigen", description="AIGen Studio: without a command, starts the web UI")
    add_common_flags(parser)
    from modules.server import add_server_flags

    add_server_flags(parser)
    add_a1111_flags(parser)
    commands = parser.add_subparsers(dest="command", required=False, parser_class=OneLineParser)
    _add_generate(commands)
    from_json = commands.add_parser("generate-from-json", help="txt2img, or img2img when it has init_images, "
                                                                "from a JSON file of A1111 API fields")
    add_common_flags(from_json)
    from_json.add_argument("--config", type=Path, required=True, help="JSON file; '-' reads stdin")
    from_json.add_argument("--out", type=Path, default=None)
    return parser


def _image_flag(path: Path, flag: str) -> Any:
    """Open an image named by a flag; only its header is read until it is used."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except (OSError, UnidentifiedImageError) as error:
        raise CliInputError(f"{flag}: cannot read {path} as an image ({error})") from None


def _img2img_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The img2img/inpaint payload fields of the flags (none without ``--init-image``)."""
    if args.init_image is None:
        if args.mask is not None:
            raise CliInputError("--mask needs --init-image")
        return {}
    fields: dict[str, Any] = {"init_images": [_image_flag(args.init_image, "--init-image")],
                              "resize_mode": args.resize_mode, **_strength_flag(args)}
    if args.mask is not None:
        fields.update({"mask": _image_flag(args.mask, "--mask"), "mask_blur": args.mask_blur,
                       "inpainting_fill": args.masked_content, "inpaint_full_res": args.only_masked,
                       "inpaint_full_res_padding": args.only_masked_padding,
                       "inpainting_mask_invert": int(args.inpaint_not_masked)})
    return fields


def _hires_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The Hires. fix payload fields of the flags (none without ``--enable-hr``)."""
    given = {flag: value for flag in _HIRES_FLAGS if (value := getattr(args, flag)) is not None}
    if not args.enable_hr:
        if given:
            raise CliInputError(f"--{next(iter(given)).replace('_', '-')} needs --enable-hr")
        return {}
    if args.init_image is not None:
        raise CliInputError("--enable-hr is txt2img's; leave out --init-image")
    return {"enable_hr": True, **_strength_flag(args), **{_HIRES_FLAGS[flag]: value for flag, value in given.items()}}


def _strength_flag(args: argparse.Namespace) -> dict[str, float]:
    """``denoising_strength`` when given; left out, the request's own default applies
    (img2img's 0.75, the hires pass's 0.7)."""
    return {} if args.denoising_strength is None else {"denoising_strength": args.denoising_strength}


def _payload_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    given = {field: value for name, field in (("width", "width"), ("height", "height"), ("steps", "steps"),
                                              ("cfg_scale", "cfg_scale"), ("sampler", "sampler_name"),
                                              ("scheduler", "scheduler"))
             if (value := getattr(args, name)) is not None}
    return {**given, **_hires_flags(args), **_img2img_flags(args),
        "prompt": args.prompt, "negative_prompt": args.negative_prompt, "seed": args.seed,
        "subseed": args.subseed, "subseed_strength": args.subseed_strength,
        "batch_size": args.batch_size, "n_iter": args.n_iter,
        "tiling": args.tiling,
        **({"distilled_cfg_scale": args.distilled_cfg_scale} if args.distilled_cfg_scale is not None else {}),
        # Only what the flags say: the saved settings (config.json) fill the rest, as for the UI's jobs.
        "override_settings": {
            **({"CLIP_stop_at_last_layers": args.clip_skip} if args.clip_skip is not None else {}),
            **({"sd_vae": args.vae} if args.vae else {}),
            **_module_flags(args),
        },
        **({"sd_model_checkpoint": args.model} if args.model else {}),
    }


def _module_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Forge's ``forge_additional_modules`` of ``--text-encoder`` (with ``--vae``'s file): the
    parts a FLUX.1 checkpoint runs with. None given: the settings' choice, or the one file of each kind."""
    if not args.text_encoder:
        return {}
    from modules.models.vae import AUTOMATIC, BUILTIN

    vae = [args.vae] if args.vae and args.vae not in (AUTOMATIC, BUILTIN) else []
    return {"forge_additional_modules": [*args.text_encoder, *vae]}


def _payload_from_json(path: Path) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        payload = json.loads(text)
    except OSError as error:
        raise CliInputError(f"--config: cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise CliInputError(f"--config: {path} is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise CliInputError(f"--config: {path} must hold a JSON object of txt2img or img2img fields")
    return payload


class CliInputError(Exception):
    """Bad command-line input that argparse could not catch (exit 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``aigen`` and ``python webui.py <command>``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command is None:
        from modules.server import launch_ui

        return launch_ui(args)
    try:
        payload = _payload_from_flags(args) if args.command == "generate" else _payload_from_json(args.config)
        # Heavy imports (torch, diffusers) only once the input has parsed, so bad flags fail fast.
        from modules.app import build_app_context
        from modules.cli_generate import run_generate

        context: AppContext = build_app_context(args)
        started = time.monotonic()
        summary = run_generate(context, payload, args.out, family_defaults=args.command == "generate")
    except CliInputError as error:
        print(f"aigen: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("aigen: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - classified below, one line each
        from modules.cli_generate import exit_code_for

        code, message = exit_code_for(error)
        print(f"aigen: error: {message}", file=sys.stderr)
        return code
    summary["duration_ms"] = round((time.monotonic() - started) * 1000)
    print(json.dumps(summary, ensure_ascii=False))
    return 0
