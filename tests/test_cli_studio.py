"""The command line goes through the studio, as the web UI and the REST API do: a user's
always-on script, the saved settings (config.json) and ``on_model_loaded`` apply to
``aigen generate`` too, and the same payload makes the same image on every path.

The main run is a real ``python webui.py generate`` in a subprocess, as a user types it; the
comparisons run in-process (``modules.cli.main``, the REST routes on a TestClient).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.rest import build_router
from modules.app import build_app_context
from modules.cli_generate import JobFailedError, _result_of, exit_code_for
from modules.processing.jobs.job_store import JobStore
from modules.processing.jobs.queue import WORKER_THREAD_NAME, JobStatus
from modules.settings import SettingsStore
from modules.studio import Studio
from tests.test_cli import REPO_ROOT, CliRun, _env, _pixels, run_cli, run_in_process
from tests.tiny_models import write_tiny_checkpoint

pytestmark = pytest.mark.slow

# An always-on user script: its step hook records each call and halves the latents at the last
# step (so the image shows whether it ran); its on_model_loaded callback records the pipeline.
RECORDER = '''
from pathlib import Path

from modules.extensions.api import AlwaysVisible, Script, register_callback

LOG = Path(__file__).with_name("calls.log")


def _note(line):
    with LOG.open("a", encoding="utf-8") as log:
        log.write(line + "\\n")


def loaded(pipeline):
    _note("model " + type(pipeline).__name__)


register_callback("on_model_loaded", loaded)


class StepRecorder(Script):
    def title(self):
        return "Step recorder"

    def show(self, is_img2img):
        return AlwaysVisible

    def ui(self, is_img2img):
        return {}

    def after_step(self, p, step, latents):
        _note(f"step {step.step}/{step.total_steps}")
        return latents * 0.5 if step.step == step.total_steps - 1 else None
'''
SAVED_SETTINGS = {"CLIP_stop_at_last_layers": 2}
FLAGS = ["--prompt", "a red circle on grey", "--negative-prompt", "blurry", "--steps", "3", "--width", "64",
         "--height", "64", "--seed", "5", "--sampler", "Euler", "--cfg-scale", "6.5"]
# The same generation as A1111 API fields, as a REST client posts it.
PAYLOAD: dict[str, Any] = {"prompt": "a red circle on grey", "negative_prompt": "blurry", "steps": 3, "width": 64,
                           "height": 64, "seed": 5, "sampler_name": "Euler", "cfg_scale": 6.5}


@pytest.fixture(scope="module")
def scripted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the tiny SD1.x checkpoint, the recorder script and a saved clip skip of 2."""
    root = tmp_path_factory.mktemp("aigen-scripted")
    write_tiny_checkpoint(root / "models" / "Stable-diffusion", "sd15")
    (root / "scripts").mkdir()
    (root / "scripts" / "recorder.py").write_text(RECORDER, encoding="utf-8")
    (root / "config.json").write_text(json.dumps(SAVED_SETTINGS), encoding="utf-8")
    return root


def _take_calls(root: Path) -> list[str]:
    """The recorder's log since the last call (then emptied)."""
    log = root / "scripts" / "calls.log"
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


@pytest.fixture(scope="module")
def cli_run(scripted_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[CliRun, list[str]]:
    """``python webui.py generate`` on the scripted data dir, and what the recorder saw."""
    _take_calls(scripted_dir)
    out = tmp_path_factory.mktemp("cli-out") / "image.png"
    run = run_cli(["generate", *FLAGS, "--data-dir", str(scripted_dir), "--out", str(out)])
    return run, _take_calls(scripted_dir)


def test_the_always_on_user_script_and_on_model_loaded_run_from_the_cli(cli_run: tuple[CliRun, list[str]]) -> None:
    run, calls = cli_run
    assert run.code == 0, run.stderr
    assert run.summary()["hook_errors"] == []
    assert calls == ["model StableDiffusionPipeline", "step 0/3", "step 1/3", "step 2/3"]


def test_the_user_script_changes_the_cli_image(scripted_dir: Path, cli_run: tuple[CliRun, list[str]],
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = cli_run
    assert run.code == 0, run.stderr
    without = run_in_process(["generate", *FLAGS, "--data-dir", str(scripted_dir), "--disable-extensions", "all",
                              "--out", str(tmp_path / "plain.png")], capsys)
    assert without.code == 0, without.stderr
    assert _take_calls(scripted_dir) == []  # the script was not loaded
    assert without.summary()["infotext"] == run.summary()["infotext"]  # the script adds no infotext
    assert not np.array_equal(_pixels(tmp_path / "plain.png"), _pixels(run.summary()["paths"][0]))


def test_the_saved_clip_skip_applies_unless_the_flag_says_otherwise(
    scripted_dir: Path, cli_run: tuple[CliRun, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = cli_run
    assert "Clip skip: 2" in run.summary()["infotext"]
    flagged = run_in_process(["generate", *FLAGS, "--clip-skip", "1", "--data-dir", str(scripted_dir),
                              "--out", str(tmp_path / "skip1.png")], capsys)
    assert flagged.code == 0, flagged.stderr
    assert "Clip skip" not in flagged.summary()["infotext"]  # 1 is A1111's default: not written
    assert not np.array_equal(_pixels(tmp_path / "skip1.png"), _pixels(run.summary()["paths"][0]))


def test_the_cli_and_the_rest_api_make_the_same_image_and_infotext(
    scripted_dir: Path, cli_run: tuple[CliRun, list[str]]
) -> None:
    run, _ = cli_run
    assert run.code == 0, run.stderr
    args = argparse.Namespace(data_dir=scripted_dir, ckpt_dir=[], precision="fp32", no_half=False, device="cpu",
                              allow_pickle=False)
    _take_calls(scripted_dir)
    studio = Studio(build_app_context(args), SettingsStore(scripted_dir / "config.json"))
    try:
        app = FastAPI()
        app.include_router(build_router(studio))
        answer = TestClient(app).post("/sdapi/v1/txt2img", json=PAYLOAD)
    finally:
        studio.close()
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [encoded] = body["images"]
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
        rest_pixels = np.asarray(image.convert("RGB"))
    assert np.array_equal(rest_pixels, _pixels(run.summary()["paths"][0]))
    assert json.loads(body["info"])["infotexts"] == run.summary()["infotexts"]
    assert _take_calls(scripted_dir) == ["model StableDiffusionPipeline", "step 0/3", "step 1/3", "step 2/3"]


def test_a_model_path_outside_the_folders_is_the_owners_choice(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``--model`` may name a file anywhere, even one named like a checkpoint in the folders."""
    data = tmp_path / "data"
    write_tiny_checkpoint(data / "models" / "Stable-diffusion", "sd15")
    elsewhere = write_tiny_checkpoint(tmp_path / "elsewhere", "sd15", seed=1)
    assert elsewhere.name == "tiny-sd15.safetensors"
    by_path = run_in_process(["generate", *FLAGS, "--data-dir", str(data), "--model", str(elsewhere),
                              "--out", str(tmp_path / "by-path.png")], capsys)
    by_name = run_in_process(["generate", *FLAGS, "--data-dir", str(data), "--model", "tiny-sd15",
                              "--out", str(tmp_path / "by-name.png")], capsys)
    assert by_path.code == 0 and by_name.code == 0, by_path.stderr + by_name.stderr
    hashes = [re.search(r"Model hash: (\w+)", r.summary()["infotext"]).group(1) for r in (by_path, by_name)]
    assert hashes[0] != hashes[1]
    assert not np.array_equal(_pixels(tmp_path / "by-path.png"), _pixels(tmp_path / "by-name.png"))
    pickle = tmp_path / "elsewhere" / "old.ckpt"
    pickle.write_bytes(b"not really a pickle")
    refused = run_in_process(["generate", "--prompt", "x", "--data-dir", str(data), "--model", str(pickle)], capsys)
    assert refused.code == 1 and refused.stdout == "" and len(refused.stderr_lines) == 1, refused.stderr
    assert "blocked" in refused.stderr and "old" in refused.stderr


def _workers() -> int:
    return sum(thread.name == WORKER_THREAD_NAME and thread.is_alive() for thread in threading.enumerate())


def test_the_cli_leaves_a_servers_job_store_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A job a stopped server left queued is the server's to run again, not the CLI's; and the
    CLI's own job queue is gone once it has answered."""
    write_tiny_checkpoint(tmp_path / "models" / "Stable-diffusion", "sd15")
    store = JobStore(tmp_path / "cache" / "jobs.sqlite")
    store.add("server-job", "txt2img", {"payload": {**PAYLOAD, "seed": 9}})
    workers_before = _workers()
    run = run_in_process(["generate", *FLAGS, "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    assert run.code == 0, run.stderr
    assert _workers() == workers_before  # the CLI's studio was closed: its worker thread has ended
    assert run.summary()["seeds"] == [5]
    jobs, total = store.page()
    assert total == 1 and jobs[0].id == "server-job" and jobs[0].state == "queued"
    assert [p.name for p in (tmp_path / "out").iterdir()] == [Path(run.summary()["paths"][0]).name]
    store.close()


def test_variants_in_the_prompt_are_drawn_per_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tiny_checkpoint(tmp_path / "models" / "Stable-diffusion", "sd15")
    flags = ["--prompt", "a {red|blue} circle", "--steps", "2", "--width", "64", "--height", "64", "--seed", "5",
             "--n-iter", "2"]
    run = run_in_process(["generate", *flags, "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    assert run.code == 0, run.stderr
    prompts = [text.splitlines()[0] for text in run.summary()["infotexts"]]
    assert len(prompts) == 2 and all(p in ("a red circle", "a blue circle") for p in prompts)
    assert len(run.summary()["paths"]) == 2


def _read_into(stream: Any, sink: bytearray) -> None:
    while chunk := stream.read1(4096):
        sink.extend(chunk)


def test_ctrl_c_interrupts_the_job_and_exits_130(tmp_path: Path) -> None:
    write_tiny_checkpoint(tmp_path / "models" / "Stable-diffusion", "sd15")
    command = [sys.executable, "webui.py", "generate", "--prompt", "x", "--steps", "150", "--n-iter", "50",
               "--width", "64", "--height", "64", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stderr = bytearray()
    reader = threading.Thread(target=_read_into, args=(process.stderr, stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        # tqdm's bar, once a step has run: "txt2img:   1%|          | 12/7500 ..."
        while not re.search(rb"\| *[1-9]\d*/7500", bytes(stderr)) and time.monotonic() < deadline:
            assert process.poll() is None, bytes(stderr).decode(errors="replace")
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        stdout = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=10)
    text = bytes(stderr).decode(errors="replace")
    assert process.returncode == 130, text
    assert stdout == b"" and "aigen: interrupted" in text and "Traceback" not in text


def test_script_fields_of_the_json_run_and_save_into_the_out_folder(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``script_name``/``script_args`` and ``alwayson_scripts`` work from ``generate-from-json``;
    the selected script's own grid goes into ``--out`` with the images."""
    write_tiny_checkpoint(tmp_path / "models" / "Stable-diffusion", "sd15")
    payload = {**PAYLOAD, "prompt": "a cat|red", "cfg_scale": 30, "script_name": "Prompt matrix",
               "script_args": {"margin_size": 0},
               "alwayson_scripts": {"Dynamic thresholding": {"args": [True, 99.0, 1.0]}}}
    config, out = tmp_path / "request.json", tmp_path / "out"
    config.write_text(json.dumps(payload), encoding="utf-8")
    run = run_in_process(["generate-from-json", "--config", str(config), "--data-dir", str(tmp_path),
                          "--out", str(out)], capsys)
    assert run.code == 0, run.stderr
    summary = run.summary()
    assert [text.splitlines()[0] for text in summary["infotexts"]] == ["a cat", "a cat, red"]
    assert all("Dynamic thresholding: True" in text for text in summary["infotexts"])
    assert summary["warnings"] == [] and summary["hook_errors"] == []
    files = sorted(p.name for p in out.iterdir())
    assert sorted(Path(p).name for p in summary["paths"]) == [f for f in files if not f.startswith("grid")]
    assert len(files) == 3 and any(f.startswith("grid") for f in files)  # the matrix's grid


@pytest.mark.parametrize(("kind", "error", "code"), [
    ("invalid_request", "override_settings.sd_model_checkpoint: the checkpoint 'x' is not a checkpoint", 1),
    ("invalid_request", "the model file 'up.pth' is truncated", 1),
    ("invalid_request", "alwayson_scripts.Nope.args[0]: must be a number", 2),
    ("unavailable", "sd_model_checkpoint (the server's setting): no checkpoint named 'gone'", 1),
    ("server", "RuntimeError: boom", 1),
])
def test_a_failed_job_exits_1_for_a_model_and_2_for_other_input(kind: str, error: str, code: int) -> None:
    with pytest.raises(JobFailedError) as failed:
        _result_of(JobStatus("j1", "failed", None, error=error, error_kind=kind))
    assert exit_code_for(failed.value) == (code, error)
