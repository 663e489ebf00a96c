"""The command line end to end: ``python webui.py generate`` / ``generate-from-json`` in a
subprocess against a tiny checkpoint in a temporary data dir.

Every subprocess pays several seconds of imports (torch, diffusers, transformers), so the
subprocess runs are few and each one checks several things. The long tail of bad-input
cases (and the refused overwrite) runs through the same ``modules.cli.main`` in-process, where
the heavy libraries are imported already; real subprocesses cover exit 0, exit 1 (a missing
model, through webui.py's ``sys.exit(main())``) and exit 2 from a bad flag.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modules import cli
from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.generation.hires import HiresFix
from modules.processing.intake.api_fields import hires_from_api
from modules.processing.intake.api_fields_img2img import img2img_request_from_api
from modules.processing.output.image_formats import embedded_infotext
from tests.tiny_models import write_tiny_checkpoint

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle on grey"
NEGATIVE = "blurry"
# The same generation as flags (``generate``) and as A1111 API fields (``generate-from-json``).
FLAGS = ["--prompt", PROMPT, "--negative-prompt", NEGATIVE, "--steps", "2", "--width", "64", "--height", "64",
         "--seed", "5", "--sampler", "Euler", "--cfg-scale", "6.5"]
API_FIELDS: dict[str, Any] = {
    "prompt": PROMPT, "negative_prompt": NEGATIVE, "steps": 2, "width": 64, "height": 64, "seed": 5,
    "sampler_name": "Euler", "scheduler": "Automatic", "cfg_scale": 6.5, "n_iter": 2, "batch_size": 1,
    "subseed": -1, "subseed_strength": 0, "tiling": False, "restore_faces": False, "styles": [],
    "send_images": True, "override_settings": {"CLIP_stop_at_last_layers": 1},
}
# Modules a bad flag must not pay for: argparse errors are reported before they are imported.
HEAVY_MODULES = ("torch", "diffusers", "transformers")
# Runs webui.py as __main__ and, at exit, writes which heavy modules got imported to a file.
IMPORT_PROBE = f"""
import atexit, os, runpy, sys
heavy = {HEAVY_MODULES!r}
atexit.register(lambda: open(os.environ["AIGEN_IMPORT_PROBE"], "w").write(
    "\\n".join(m for m in heavy if m in sys.modules)))
sys.argv = ["webui.py", *sys.argv[1:]]
runpy.run_path("webui.py", run_name="__main__")
"""


@dataclass(frozen=True)
class CliRun:
    """What one command-line run gave back."""

    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def stderr_lines(self) -> list[str]:
        # tqdm redraws with carriage returns; treat them as line breaks.
        return [line for line in re.split(r"[\r\n]+", self.stderr) if line.strip()]

    def summary(self) -> dict[str, Any]:
        lines = self.stdout.splitlines()
        assert len(lines) == 1, f"stdout must be exactly one JSON line, got {self.stdout!r}"
        return json.loads(lines[0])


def _env(**extra: str) -> dict[str, str]:
    # CUDA hidden: the tests run on the CPU, as they must without a GPU.
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8", CUDA_VISIBLE_DEVICES="", **extra)


def run_cli(args: Sequence[str], *, probe_file: Path | None = None) -> CliRun:
    """Run ``python webui.py <args>`` from the repository root."""
    if probe_file is None:
        command = [sys.executable, "webui.py", *args]
        env = _env()
    else:
        command = [sys.executable, "-c", IMPORT_PROBE, *args]
        env = _env(AIGEN_IMPORT_PROBE=str(probe_file))
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    return CliRun(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def run_in_process(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> CliRun:
    """Run ``modules.cli.main`` in this process (the heavy imports are paid already)."""
    capsys.readouterr()
    started = time.monotonic()
    try:
        code = cli.main(list(args))
    except SystemExit as error:  # argparse exits through sys.exit
        code = int(error.code or 0)
    out, err = capsys.readouterr()
    return CliRun(code, out, err, time.monotonic() - started)


def _pixels(path: Path | str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding exactly one tiny SD1.x checkpoint in models/Stable-diffusion."""
    root = tmp_path_factory.mktemp("aigen-data")
    write_tiny_checkpoint(root / "models" / "Stable-diffusion", "sd15")
    return root


@pytest.fixture(scope="module")
def first_run(data_dir: Path) -> tuple[CliRun, tuple[str, ...]]:
    """``generate`` with default outputs; also returns the dates the output folder may carry."""
    before = dt.date.today().isoformat()
    run = run_cli(["generate", *FLAGS, "--data-dir", str(data_dir)])
    return run, (before, dt.date.today().isoformat())


def test_generate_prints_one_json_line_and_saves_png_with_infotext(
    data_dir: Path, first_run: tuple[CliRun, tuple[str, ...]]
) -> None:
    run, dates = first_run
    assert run.code == 0, run.stderr
    summary = run.summary()
    assert summary["seeds"] == [5]
    assert isinstance(summary["duration_ms"], int) and not isinstance(summary["duration_ms"], bool)
    assert summary["duration_ms"] >= 0
    assert "Seed: 5" in summary["infotext"] and "Steps: 2" in summary["infotext"]
    assert "Sampler: Euler" in summary["infotext"] and "CFG scale: 6.5" in summary["infotext"]
    assert summary["infotext"].startswith(f"{PROMPT}\nNegative prompt: {NEGATIVE}\n")
    assert summary["infotexts"] == [summary["infotext"]]
    assert len(summary["paths"]) == 1
    path = Path(summary["paths"][0])
    assert path.is_file() and path.suffix == ".png"
    assert path.parent.parent == data_dir / "outputs" / "txt2img-images"
    assert path.parent.name in dates
    assert _files(data_dir / "outputs") == [path]
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (64, 64)
        assert image.info["parameters"] == summary["infotext"]


def test_progress_goes_to_stderr_not_stdout(first_run: tuple[CliRun, tuple[str, ...]]) -> None:
    run, _ = first_run
    assert run.code == 0, run.stderr
    assert "txt2img" in run.stderr and "it/s" in run.stderr  # the tqdm bar
    run.summary()  # stdout is the one JSON line and nothing else
    assert "it/s" not in run.stdout and "\r" not in run.stdout


def test_generate_from_json_matches_generate_and_writes_into_out_folder(
    data_dir: Path, first_run: tuple[CliRun, tuple[str, ...]], tmp_path: Path
) -> None:
    reference, _ = first_run
    assert reference.code == 0, reference.stderr
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(API_FIELDS), encoding="utf-8")
    folder = tmp_path / "chosen" / "folder"
    outputs_before = _files(data_dir / "outputs")

    run = run_cli(["generate-from-json", "--config", str(config), "--data-dir", str(data_dir), "--out", str(folder)])

    assert run.code == 0, run.stderr
    summary = run.summary()
    assert summary["seeds"] == [5, 6]  # n_iter 2: image k uses seed + k
    paths = [Path(p) for p in summary["paths"]]
    assert [p.parent for p in paths] == [folder, folder]
    assert _files(folder) == sorted(paths)
    assert _files(data_dir / "outputs") == outputs_before  # --out folder writes only there
    expected = reference.summary()
    assert summary["infotexts"][0] == expected["infotext"]
    assert "Seed: 6" in summary["infotexts"][1]
    assert np.array_equal(_pixels(paths[0]), _pixels(expected["paths"][0]))
    assert not np.array_equal(_pixels(paths[0]), _pixels(paths[1]))


def test_out_png_writes_exactly_that_file_and_never_overwrites_it(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "some.png"
    run = run_cli(["generate", *FLAGS, "--data-dir", str(data_dir), "--out", str(target)])
    assert run.code == 0, run.stderr
    summary = run.summary()
    assert summary["paths"] == [str(target)]
    assert sorted(tmp_path.iterdir()) == [target]  # no temp files or numbered siblings left
    with Image.open(target) as image:
        assert image.info["parameters"] == summary["infotext"]
    written = target.read_bytes()

    # The second run is refused before any model is loaded; in-process it costs no imports.
    again = run_in_process(["generate", *FLAGS, "--data-dir", str(data_dir), "--out", str(target)], capsys)

    assert again.code == 2, again.stderr
    assert again.stdout == ""
    assert len(again.stderr_lines) == 1, again.stderr
    assert "--out" in again.stderr and str(target) in again.stderr
    assert target.read_bytes() == written
    assert sorted(tmp_path.iterdir()) == [target]


def test_size_left_out_is_the_checkpoints_native_size(data_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    flags = [f for f in FLAGS if f not in ("--width", "--height", "64")]
    run = run_in_process(["generate", *flags, "--data-dir", str(data_dir), "--out", str(tmp_path / "a.png")], capsys)
    assert run.code == 0, run.stderr
    # The tiny fixture's configs: UNet sample_size 8 x VAE downscale 8.
    assert _pixels(tmp_path / "a.png").shape[:2] == (64, 64)
    assert "Size: 64x64" in run.summary()["infotext"]


def test_missing_model_exits_1_naming_the_model_and_the_folder(data_dir: Path) -> None:
    run = run_cli(["generate", "--prompt", "x", "--model", "no-such-model", "--data-dir", str(data_dir)])
    assert run.code == 1, run.stderr
    assert run.stdout == ""
    assert len(run.stderr_lines) == 1, run.stderr
    assert "no-such-model" in run.stderr
    assert str(data_dir / "models" / "Stable-diffusion") in run.stderr


def test_bad_flag_exits_2_in_one_line_before_heavy_imports(tmp_path: Path) -> None:
    probe = tmp_path / "imports.txt"
    run = run_cli(["generate", "--prompt", "x", "--steps", "abc"], probe_file=probe)
    assert run.code == 2, run.stderr
    assert run.stdout == ""
    assert len(run.stderr_lines) == 1, run.stderr
    assert "--steps" in run.stderr and "abc" in run.stderr
    heavy = probe.read_text(encoding="utf-8").split()
    assert heavy == [], f"a bad flag should be reported before importing {heavy} (took {run.seconds:.1f} s)"


def test_distilled_cfg_scale_flag_reaches_the_payload_only_when_given() -> None:
    parser = cli.build_parser()
    given = cli._payload_from_flags(parser.parse_args(["generate", "--prompt", "x", "--distilled-cfg-scale", "2.5"]))
    assert given["distilled_cfg_scale"] == 2.5
    # Left out, the model's own default applies (3.5 on FLUX.1-dev), as for an API client that sends none;
    # so do its family's sampler, schedule, steps and CFG (filled in once the checkpoint is known).
    bare = cli._payload_from_flags(parser.parse_args(["generate", "--prompt", "x"]))
    assert not {"distilled_cfg_scale", "sampler_name", "scheduler", "steps", "cfg_scale", "enable_hr"} & set(bare)


def test_hires_flags_become_a1111s_hires_fields() -> None:
    parser = cli.build_parser()
    flags = ["generate", "--prompt", "x", "--enable-hr", "--hr-scale", "1.5", "--hr-upscaler", "Latent (nearest)",
             "--hr-second-pass-steps", "3", "--hr-sampler", "Euler", "--hr-cfg", "4", "--hr-distilled-cfg", "2.5",
             "--hr-prompt", "sharp"]
    payload = cli._payload_from_flags(parser.parse_args(flags))
    assert {key: payload[key] for key in payload if key.startswith(("hr_", "enable_hr", "denoising"))} == {
        "enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent (nearest)",
        "hr_second_pass_steps": 3, "hr_sampler_name": "Euler", "hr_cfg": 4.0, "hr_distilled_cfg": 2.5,
        "hr_prompt": "sharp"}
    hires = hires_from_api(payload)  # left out, the strength is the hires pass's own default
    assert hires is not None and hires.denoising_strength == HiresFix().denoising_strength == 0.7
    assert (hires.scale, hires.steps, hires.guidance_scale) == (1.5, 3, 4.0)
    strong = cli._payload_from_flags(parser.parse_args([*flags, "--denoising-strength", "0.4"]))
    assert strong["denoising_strength"] == 0.4


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--hr-scale", "2"], "--hr-scale needs --enable-hr"),
     (["--enable-hr", "--init-image", "cat.png"], "--enable-hr is txt2img's")],
)
def test_hires_flags_out_of_place_are_refused_by_name(args: list[str], named: str) -> None:
    with pytest.raises(cli.CliInputError, match=named):
        cli._payload_from_flags(cli.build_parser().parse_args(["generate", "--prompt", "x", *args]))


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--steps", "0"], "steps"),
        (["--width", "63"], "width"),
        (["--height", "4096"], "height"),
        (["--steps", "abc"], "--steps"),
        (["--cfg-scale", "high"], "--cfg-scale"),
        (["--distilled-cfg-scale", "high"], "--distilled-cfg-scale"),
        (["--distilled-cfg-scale", "31"], "distilled_cfg_scale"),
        (["--sampler", "Nope"], "sampler"),
        (["--scheduler", "Nope"], "scheduler"),
        (["--precision", "fp8"], "--precision"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--negative", "y"], "--negative"),  # a prefix of --negative-prompt: no prefix matching
    ],
)
def test_bad_generate_input_exits_2_with_one_line_naming_it(
    args: list[str], named: str, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_in_process(["generate", "--prompt", "x", *args, "--data-dir", str(data_dir)], capsys)
    assert run.code == 2, run.stderr
    assert run.stdout == ""
    assert len(run.stderr_lines) == 1, run.stderr
    assert named in run.stderr
    if "Nope" in args:
        assert "'Nope'" in run.stderr


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (json.dumps({"prompt": "x", "steps": "many"}), "steps"),
        (json.dumps({"prompt": "x", "override_settings": {"samples_format": "gif"}}),
         "override_settings.samples_format"),
        (json.dumps([{"prompt": "x"}]), "JSON object"),
        (json.dumps("prompt"), "JSON object"),
        ('{"prompt": "x", "steps": 2,', "not valid JSON"),
        (None, "cannot read"),
    ],
    ids=["wrong-type", "bad-setting", "array", "string", "invalid-json", "missing-file"],
)
def test_bad_json_exits_2_with_one_line_naming_it(
    content: str | None, named: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cfg.json"
    if content is not None:
        config.write_text(content, encoding="utf-8")
    run = run_in_process(["generate-from-json", "--config", str(config), "--data-dir", str(data_dir)], capsys)
    assert run.code == 2, run.stderr
    assert run.stdout == ""
    assert len(run.stderr_lines) == 1, run.stderr
    assert named in run.stderr
    if content is None or "JSON" in named:
        assert "--config" in run.stderr and str(config) in run.stderr


def test_json_with_unknown_fields_runs_and_reports_them(data_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Payloads saved by other A1111/Forge versions' clients: A1111 ignores what it does not know.
    config = tmp_path / "cfg.json"
    payload = {**API_FIELDS, "n_iter": 1, "seed_enable_extras": True,
               "override_settings": {"sd_foo": 1, "samples_format": "webp"}}
    config.write_text(json.dumps(payload), encoding="utf-8")
    run = run_in_process(["generate-from-json", "--config", str(config), "--data-dir", str(data_dir),
                          "--out", str(tmp_path / "out")], capsys)
    assert run.code == 0, run.stderr
    warnings = run.summary()["warnings"]
    assert [w.split(":")[0] for w in warnings] == ["seed_enable_extras", "override_settings.sd_foo"]
    assert all(f"aigen: warning: {w}" in run.stderr for w in warnings)
    [path] = run.summary()["paths"]
    with Image.open(path) as image:  # the infotext rides in the WEBP's EXIF UserComment
        assert path.endswith(".webp") and image.format == "WEBP" and "Seed: 5" in embedded_infotext(image)


def test_img2img_without_a_strength_flag_gets_the_requests_default(tmp_path: Path) -> None:
    source = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (20, 200, 40)).save(source)
    args = cli.build_parser().parse_args(["generate", "--prompt", "x", "--init-image", str(source)])
    payload = cli._payload_from_flags(args)
    assert "denoising_strength" not in payload
    assert img2img_request_from_api(payload).strength == Img2ImgRequest.strength == 0.75  # A1111's


def test_generate_inpaints_with_flags_and_keeps_the_input_size(data_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    source, mask = tmp_path / "in.png", tmp_path / "mask.png"
    Image.new("RGB", (72, 64), (20, 200, 40)).save(source)
    mask_image = Image.new("L", (72, 64), 0)
    mask_image.paste(255, (0, 0, 24, 64))
    mask_image.save(mask)
    flags = ["--prompt", "x", "--steps", "2", "--seed", "3", "--init-image", str(source), "--mask", str(mask),
             "--mask-blur", "0", "--denoising-strength", "1", "--data-dir", str(data_dir)]
    run = run_in_process(["generate", *flags, "--out", str(tmp_path / "out.png")], capsys)
    assert run.code == 0, run.stderr
    pixels = _pixels(tmp_path / "out.png")
    assert pixels.shape[:2] == (64, 72) and pixels[30, 60].tolist() == [20, 200, 40]
    assert "Denoising strength: 1" in run.summary()["infotext"] and "Mask blur: 0" in run.summary()["infotext"]
    bad = run_in_process(["generate", "--prompt", "x", "--mask", str(mask), "--data-dir", str(data_dir)], capsys)
    assert bad.code == 2 and "--mask needs --init-image" in bad.stderr
    unreadable = run_in_process(["generate", "--prompt", "x", "--init-image", str(tmp_path / "nope.png"),
                                 "--data-dir", str(data_dir)], capsys)
    assert unreadable.code == 2 and "--init-image" in unreadable.stderr


def test_a_batch_saves_a1111s_grid_beside_its_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Into A1111's folders (no ``--out``) a job of several images also saves their grid, as A1111 does."""
    write_tiny_checkpoint(tmp_path / "models" / "Stable-diffusion", "sd15")
    run = run_in_process(["generate", *FLAGS, "--batch-size", "2", "--data-dir", str(tmp_path)], capsys)
    assert run.code == 0, run.stderr
    summary = run.summary()
    assert summary["seeds"] == [5, 6] and len(summary["paths"]) == 2  # the images; the grid is reported apart
    grid = Path(summary["grid"])
    assert grid.name == "grid-0000.png" and grid.parent.parent == tmp_path / "outputs" / "txt2img-grids"
    with Image.open(grid) as image:
        assert image.size == (128, 64) and image.info["parameters"] == summary["infotext"]
