"""ControlNet preprocessors ("annotators"): an image in, a control map out.

Names and sliders follow sd-webui-controlnet so API clients send the ``module`` values they
already use (``canny``, ``shuffle``, ``softedge_hed`` ...). The work is done by
controlnet-aux; only the few maps that are one OpenCV call (invert, threshold, blur, tile,
colour grid, XDoG scribble) are computed here.

Annotators that need weights load them from ``models/annotators/`` only, by their usual
file names (``ControlNetHED.pth``, ``table5_pidinet.pth`` ...): a missing file is a
``ModelFileError`` naming it, never a download. Those files are pickles, so they load only
with ``--allow-pickle`` (and then through torch's weights-only unpickler).

A map's shorter side is the requested resolution and it keeps the image's aspect ratio,
as in sd-webui-controlnet; maps are RGB ``PIL.Image``s, white lines on black for the edge
detectors.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from modules.models.files import ModelFileError

__all__ = ["PREPROCESSORS", "PREPROCESSOR_ALIASES", "PreprocessorInfo", "Preprocessors", "ThresholdSlider",
           "UnknownPreprocessorError", "canonical_module"]


class UnknownPreprocessorError(KeyError):
    """No preprocessor of that name; the message lists those there are."""

    def __init__(self, name: str, choices: Sequence[str] | None = None) -> None:
        super().__init__(name)
        self.name = name
        self.choices = tuple(PREPROCESSORS if choices is None else choices)

    def __str__(self) -> str:
        return f"no preprocessor {self.name!r}; available: {', '.join(self.choices)}"


@dataclass(frozen=True)
class ThresholdSlider:
    """What a preprocessor's ``threshold_a``/``threshold_b`` means, and its range."""

    label: str
    minimum: float
    maximum: float
    default: float
    step: float = 1.0


#: The range of a preprocessor's resolution ("processor_res"), as sd-webui-controlnet's slider.
RESOLUTION_RANGE = (64, 2048)


@dataclass(frozen=True)
class PreprocessorInfo:
    """One preprocessor: the annotator files it needs (under ``models/annotators``), its
    default resolution (-1: it takes none, the map has the image's size) and its sliders.

    ``api_name`` and ``label`` are sd-webui-controlnet's two names for it, when they differ
    from ours: its internal key (``/controlnet/module_list``) and its UI alias
    (``?alias_names=true``, ``/controlnet/control_types``).
    """

    name: str
    needs: tuple[str, ...] = ()
    resolution_default: int = 512
    threshold_a: ThresholdSlider | None = None
    threshold_b: ThresholdSlider | None = None
    api_name: str = ""
    label: str = ""

    @property
    def key(self) -> str:
        """sd-webui-controlnet's internal name of this preprocessor."""
        return self.api_name or self.name

    @property
    def alias(self) -> str:
        """sd-webui-controlnet's UI name of this preprocessor."""
        return self.label or self.name


_HED = ("ControlNetHED.pth",)
_PIDINET = ("table5_pidinet.pth",)
_OPENPOSE = ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")

#: Every preprocessor, in the order the UI lists them ("none" first: the image is the map).
PREPROCESSORS: Mapping[str, PreprocessorInfo] = {info.name: info for info in (
    PreprocessorInfo("none", resolution_default=-1),
    PreprocessorInfo("invert", label="invert (from white bg & black line)"),
    PreprocessorInfo("canny", threshold_a=ThresholdSlider("Canny Low Threshold", 1, 255, 100),
                     threshold_b=ThresholdSlider("Canny High Threshold", 1, 255, 200)),
    PreprocessorInfo("shuffle"),
    PreprocessorInfo("lineart_standard", label="lineart_standard (from white bg & black line)"),
    PreprocessorInfo("threshold", threshold_a=ThresholdSlider("Binarization Threshold", 0, 255, 127)),
    PreprocessorInfo("blur_gaussian", threshold_a=ThresholdSlider("Sigma", 0.01, 64.0, 9.0, 0.01)),
    PreprocessorInfo("tile_resample", resolution_default=-1,
                     threshold_a=ThresholdSlider("Down Sampling Rate", 1.0, 8.0, 1.0, 0.01)),
    PreprocessorInfo("color", label="t2ia_color_grid"),
    PreprocessorInfo("scribble_xdog", threshold_a=ThresholdSlider("XDoG Threshold", 1, 64, 32)),
    PreprocessorInfo("softedge_hed", _HED, api_name="hed"),
    PreprocessorInfo("softedge_hedsafe", _HED, api_name="hed_safe"),
    PreprocessorInfo("scribble_hed", _HED),
    PreprocessorInfo("softedge_pidinet", _PIDINET, api_name="pidinet"),
    PreprocessorInfo("softedge_pidisafe", _PIDINET, api_name="pidinet_safe"),
    PreprocessorInfo("scribble_pidinet", _PIDINET, api_name="pidinet_scribble"),
    PreprocessorInfo("lineart_realistic", ("sk_model.pth", "sk_model2.pth"), api_name="lineart"),
    PreprocessorInfo("lineart_coarse", ("sk_model.pth", "sk_model2.pth")),
    PreprocessorInfo("lineart_anime", ("netG.pth",)),
    PreprocessorInfo("mlsd", ("mlsd_large_512_fp32.pth",),
                     threshold_a=ThresholdSlider("MLSD Value Threshold", 0.01, 2.0, 0.1, 0.01),
                     threshold_b=ThresholdSlider("MLSD Distance Threshold", 0.01, 20.0, 0.1, 0.01)),
    PreprocessorInfo("depth_midas", ("dpt_hybrid-midas-501f0c75.pt",), api_name="depth"),
    PreprocessorInfo("normal_bae", ("scannet.pt",)),
    PreprocessorInfo("openpose", _OPENPOSE),
    PreprocessorInfo("openpose_hand", _OPENPOSE),
    PreprocessorInfo("openpose_face", _OPENPOSE),
    PreprocessorInfo("openpose_full", _OPENPOSE),
)}

#: The names sd-webui-controlnet also accepts over its API: each preprocessor's internal key and
#: UI alias, and the older names of its earlier versions.
PREPROCESSOR_ALIASES: Mapping[str, str] = {
    **{other.lower(): info.name for info in PREPROCESSORS.values() for other in (info.key, info.alias)
       if other != info.name},
    "normal_map": "normal_bae", "binary": "threshold", "fake_scribble": "scribble_hed", "scribble": "scribble_hed",
    "tile_gaussian": "blur_gaussian",
}


def canonical_module(name: str) -> str:
    """The preprocessor name for ``name`` as a client may send it (any case, old aliases)."""
    key = name.strip().lower()
    return PREPROCESSOR_ALIASES.get(key, key)


def _target_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """(width, height) whose shorter side is ``resolution``, keeping the aspect ratio."""
    scale = resolution / min(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _resized(pixels: np.ndarray, resolution: int) -> np.ndarray:
    """``pixels`` (H, W, 3) uint8 with the shorter side at ``resolution``."""
    width, height = _target_size((pixels.shape[1], pixels.shape[0]), resolution)
    shrinking = width < pixels.shape[1]
    return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def _gray_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _xdog(pixels: np.ndarray, threshold: float) -> np.ndarray:
    """Scribble lines by a difference of Gaussians (Winnemöller et al. 2012, "XDoG"), thresholded
    as sd-webui-controlnet does: white lines where the blurred images differ enough."""
    fine = cv2.GaussianBlur(pixels.astype(np.float32), (0, 0), 0.5)
    coarse = cv2.GaussianBlur(pixels.astype(np.float32), (0, 0), 5.0)
    difference = (255.0 - np.min(coarse - fine, axis=2)).clip(0, 255)
    lines = np.where(2 * (255.0 - difference) > threshold, 255, 0).astype(np.uint8)
    return _gray_rgb(lines)


def _color_grid(pixels: np.ndarray) -> np.ndarray:
    """sd-webui-controlnet's "color": the image shrunk 64x and blown up as flat colour cells."""
    height, width = pixels.shape[:2]
    small = cv2.resize(pixels, (max(1, width // 64), max(1, height // 64)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def _local_map(module: str, pixels: np.ndarray, a: float) -> np.ndarray | None:
    """The maps that are a line of OpenCV on the resized image; None for controlnet-aux's."""
    if module == "invert":
        return 255 - pixels
    if module == "threshold":
        gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        return _gray_rgb(np.where(gray > a, 255, 0).astype(np.uint8))
    if module == "blur_gaussian":
        return cv2.GaussianBlur(pixels, (0, 0), a)
    if module == "color":
        return _color_grid(pixels)
    if module == "scribble_xdog":
        return _xdog(pixels, a)
    return None


def _import_controlnet_aux(submodule: str, name: str) -> Any:
    """``controlnet_aux.<submodule>.<name>``, imported on first use: the package imports every
    detector (several seconds) and warns about optional extras we do not use."""
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(importlib.import_module(f"controlnet_aux.{submodule}"), name)


#: Maps of pure black and white lines.
_BINARY_MAPS = frozenset({"canny", "mlsd", "scribble_hed", "scribble_pidinet"})
# module -> (controlnet_aux submodule, detector class, the keyword arguments of its call).
_WEIGHTED: Mapping[str, tuple[str, str, Mapping[str, Any]]] = {
    "softedge_hed": ("hed", "HEDdetector", {}),
    "softedge_hedsafe": ("hed", "HEDdetector", {"safe": True}),
    "scribble_hed": ("hed", "HEDdetector", {"scribble": True}),
    "softedge_pidinet": ("pidi", "PidiNetDetector", {}),
    "softedge_pidisafe": ("pidi", "PidiNetDetector", {"safe": True}),
    "scribble_pidinet": ("pidi", "PidiNetDetector", {"scribble": True}),
    "lineart_realistic": ("lineart", "LineartDetector", {}),
    "lineart_coarse": ("lineart", "LineartDetector", {"coarse": True}),
    "lineart_anime": ("lineart_anime", "LineartAnimeDetector", {}),
    "mlsd": ("mlsd", "MLSDdetector", {}),
    "depth_midas": ("midas", "MidasDetector", {}),
    "normal_bae": ("normalbae", "NormalBaeDetector", {}),
    "openpose": ("open_pose", "OpenposeDetector", {}),
    "openpose_hand": ("open_pose", "OpenposeDetector", {"include_hand": True}),
    "openpose_face": ("open_pose", "OpenposeDetector", {"include_face": True}),
    "openpose_full": ("open_pose", "OpenposeDetector", {"include_hand": True, "include_face": True}),
}


class Preprocessors:
    """Runs preprocessors; detectors with weights are loaded from ``annotator_dir`` once and kept.

    Args:
        annotator_dir: ``models/annotators``.
        allow_pickle: whether ``.pth``/``.pt`` annotator files may be read (``--allow-pickle``).
        device: where weighted detectors run ("cpu", "cuda", ...).
    """

    def __init__(self, annotator_dir: Path, allow_pickle: bool = False, device: str = "cpu") -> None:
        self.annotator_dir = Path(annotator_dir)
        self.allow_pickle = allow_pickle
        self.device = device
        self._detectors: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()  # one detector load / numpy-seeded shuffle at a time

    def missing_files(self, module: str) -> list[Path]:
        """The annotator files ``module`` needs that are not in ``models/annotators``."""
        info = PREPROCESSORS[canonical_module(module)]
        return [self.annotator_dir / name for name in info.needs if not (self.annotator_dir / name).is_file()]

    def unavailable(self, module: str) -> ModelFileError | None:
        """Why ``module`` cannot run here, as the error running it would raise (kind "missing" for
        an annotator file that is not there, "pickle_refused" without ``--allow-pickle``), or None."""
        info = PREPROCESSORS[canonical_module(module)]
        missing = self.missing_files(module)
        # The folder as the user knows it ("models/annotators"): messages reach API clients, paths must not.
        folder = Path(*self.annotator_dir.parts[-2:]).as_posix()
        if missing:
            return ModelFileError(missing[0], "missing", f"preprocessor {info.name} needs the annotator file "
                                  f"{missing[0].name}, which is not in {folder} (put {', '.join(info.needs)} "
                                  "there)")
        if info.needs and not self.allow_pickle:
            return ModelFileError(self.annotator_dir / info.needs[0], "pickle_refused",
                                  f"preprocessor {info.name} reads pickled annotator files "
                                  f"({', '.join(info.needs)}); start with --allow-pickle to allow it")
        return None

    def problem(self, module: str) -> str | None:
        """``unavailable``'s message, for checks that report text (a 422, a UI message), or None."""
        error = self.unavailable(module)
        return None if error is None else error.detail

    def run(self, module: str, image: Image.Image, resolution: int = 512, threshold_a: float | None = None,
            threshold_b: float | None = None, seed: int = 0) -> Image.Image:
        """The control map of ``image`` (RGB).

        Args:
            module: a preprocessor name or alias.
            resolution: the map's shorter side in pixels (64..4096); ignored by "none" and
                "tile_resample", whose maps have the image's size.
            threshold_a, threshold_b: the module's sliders (None: its default).
            seed: seeds "shuffle", so one job always gives the same map.

        Raises:
            UnknownPreprocessorError: no such module.
            ValueError: "processor_res: ..." / "threshold_a: ..." out of range.
            ModelFileError: an annotator file is missing, refused or unreadable.
        """
        name = canonical_module(module)
        if name not in PREPROCESSORS:
            raise UnknownPreprocessorError(module)
        info = PREPROCESSORS[name]
        a, b = _threshold(info.threshold_a, threshold_a, "threshold_a"), _threshold(info.threshold_b, threshold_b,
                                                                                    "threshold_b")
        pixels = np.asarray(image.convert("RGB"))
        if info.resolution_default < 0:
            return Image.fromarray(self._full_size_map(name, pixels, a))
        if not 64 <= resolution <= 4096:
            raise ValueError(f"processor_res: {resolution} is outside 64..4096")
        pixels = _resized(pixels, resolution)
        detected = _local_map(name, pixels, a)
        if detected is None:
            detected = self._detected(name, pixels, resolution, a, b, seed)
        if detected.shape[:2] != pixels.shape[:2]:  # controlnet-aux rounds sizes to multiples of 64
            detected = cv2.resize(detected, (pixels.shape[1], pixels.shape[0]), interpolation=cv2.INTER_AREA)
            if name in _BINARY_MAPS:  # keep one-pixel lines, and keep them black and white
                detected = np.where(detected > 63, 255, 0).astype(np.uint8)
        return Image.fromarray(detected).convert("RGB")

    def _full_size_map(self, name: str, pixels: np.ndarray, a: float) -> np.ndarray:
        if name == "tile_resample" and a > 1:  # sd-webui-controlnet's tile: a blurrier copy of the image
            height, width = pixels.shape[:2]
            small = cv2.resize(pixels, (max(1, round(width / a)), max(1, round(height / a))),
                               interpolation=cv2.INTER_AREA)
            return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        return pixels

    def _detected(self, name: str, pixels: np.ndarray, resolution: int, a: float, b: float, seed: int,
                  ) -> np.ndarray:
        """A controlnet-aux detector's map (H, W, 3) uint8 of the resized ``pixels``."""
        sizes = {"detect_resolution": resolution, "image_resolution": resolution, "output_type": "np"}
        if name == "canny":
            return _gray_or_rgb(self._plain("canny", "CannyDetector")(pixels, a, b, **sizes))
        if name == "lineart_standard":
            detector = self._plain("lineart_standard", "LineartStandardDetector")
            return _gray_or_rgb(detector(pixels, detect_resolution=resolution, output_type="np"))
        if name == "shuffle":
            return self._shuffled(pixels, sizes, seed)
        submodule, class_name, options = _WEIGHTED[name]
        detector = self._weighted(name, submodule, class_name)
        if name == "mlsd":
            options = {"thr_v": a, "thr_d": b}
        return _gray_or_rgb(detector(pixels, **sizes, **options))

    def _shuffled(self, pixels: np.ndarray, sizes: Mapping[str, Any], seed: int) -> np.ndarray:
        """Content shuffle with numpy's generator seeded for this call and put back afterwards:
        controlnet-aux draws its random flow field from the global numpy generator."""
        detector = self._plain("shuffle", "ContentShuffleDetector")
        with self._lock:
            saved = np.random.get_state()
            np.random.seed(seed % 2**32)
            try:
                return _gray_or_rgb(detector(pixels, **sizes))
            finally:
                np.random.set_state(saved)

    def _plain(self, submodule: str, class_name: str) -> Callable[..., Any]:
        key = (submodule, class_name)
        if key not in self._detectors:
            self._detectors[key] = _import_controlnet_aux(submodule, class_name)()
        return self._detectors[key]

    def _weighted(self, name: str, submodule: str, class_name: str) -> Callable[..., Any]:
        """The detector of ``name`` with its weights from the annotator folder, loaded once."""
        error = self.unavailable(name)
        if error is not None:
            raise error
        key = (submodule, class_name)
        with self._lock:
            if key not in self._detectors:
                detector_class = _import_controlnet_aux(submodule, class_name)
                try:  # a directory makes controlnet-aux read local files, never the hub
                    detector = detector_class.from_pretrained(str(self.annotator_dir))
                # controlnet-aux's loaders fail on a wrong file in many ways (unpickling, key and shape
                # errors); each is the user's file not fitting, reported as such.
                except Exception as error:
                    raise ModelFileError(self.annotator_dir / PREPROCESSORS[name].needs[0], "unsupported",
                                         f"not a usable {class_name} annotator file ({error})") from None
                self._detectors[key] = detector.to(self.device) if hasattr(detector, "to") else detector
            return self._detectors[key]


def _threshold(slider: ThresholdSlider | None, value: float | None, field: str) -> float:
    """A slider's value, its default when None; out of range is a ValueError naming the field."""
    if slider is None:
        return 0.0
    if value is None:
        return float(slider.default)
    if not slider.minimum <= value <= slider.maximum:
        raise ValueError(f"{field}: {value} is outside {slider.minimum}..{slider.maximum} ({slider.label})")
    return float(value)


def _gray_or_rgb(detected: Any) -> np.ndarray:
    """A detector's output as (H, W, 3) uint8."""
    pixels = np.asarray(detected)
    if pixels.dtype != np.uint8:
        pixels = pixels.clip(0, 255).astype(np.uint8)
    return _gray_rgb(pixels) if pixels.ndim == 2 else pixels[:, :, :3]
