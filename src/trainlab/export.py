"""Export a trained model out of trainlab: TorchScript, torch.export or ONNX.

    trainlab export RUN --format torchscript   ->  RUN/model.pt    torch.jit.load(path) (LibTorch)
    trainlab export RUN --format export        ->  RUN/model.pt2   torch.export.load(path).module()
    trainlab export RUN --format onnx          ->  RUN/model.onnx  onnxruntime.InferenceSession

The exported model is the checkpoint's model in eval mode, the normalizer (the training split's
statistics) its first module: it takes uint8 images (N, C, H, W), the data set's own pixels, any
batch size, and returns the logits (N, classes); test-time augmentation (``augment.tta``) is
not part of it, as in ``trainlab eval``. Each export is checked before it is kept: the file is
written aside, loaded back, and its logits on the first 64 images of the run's test split must
match the checkpoint's model, every logit within

    |exported - checkpoint| <= 1e-5 + 1.3e-6 |checkpoint|

(torch.testing.assert_close's float32 tolerances), or the export fails with one line and no
file is left. The relative term is float32's own: logits of a trained model reach 50, where a
float32 step is 3.8e-6, and another runtime's summation order (onnxruntime's convolutions)
moves them by a few steps; an absolute 1e-5 alone refused a correct ONNX export of a
Fashion-MNIST CNN off by 1.3e-5 at a logit of 48.5. TorchScript and torch.export run PyTorch's
own kernels and match exactly. The write is atomic (trainlab.fileio).

TorchScript is deprecated by PyTorch in favour of torch.export; it stays for runtimes that load
it (LibTorch in C++). ONNX goes through torch.onnx's dynamo exporter, which needs onnxscript,
and is checked with onnxruntime: the optional extra ``trainlab[onnx]``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainlab.errors import TrainlabError
from trainlab.fileio import write_with

FORMATS = {"torchscript": "model.pt", "export": "model.pt2", "onnx": "model.onnx"}
CHECK_IMAGES = 64  # test images the export must reproduce
ATOL, RTOL = 1e-5, 1.3e-6  # |exported - checkpoint| <= ATOL + RTOL |checkpoint|, per logit
ONNX_EXTRA = "pip install 'trainlab[onnx]'"


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float  # on the check images, against the checkpoint's model
    images: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format,
                "max_abs_diff": self.max_abs_diff, "images": self.images}  # fmt: skip


def export_run(
    run: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    model: Any = None,
    data_dir: str | None = None,
    images: torch.Tensor | None = None,
) -> ExportResult:
    """Export the model of ``run`` (a run folder or checkpoint) in format ``fmt`` to ``out``
    (default ``RUN/model.<ext>``), checked against the checkpoint's model on ``images`` (default:
    the first 64 of the run's test split). ``model`` is the network again for a run trained
    with ``fit(model=...)``."""
    from trainlab.engine import model_from_checkpoint

    if fmt not in FORMATS:
        raise TrainlabError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    save, load = EXPORTERS[fmt]
    if fmt == "onnx":
        onnx_runtime()  # a missing extra is said before any work
    trained, recipe, _ = model_from_checkpoint(run, model)
    trained.eval()
    x = check_images(recipe, data_dir) if images is None else images[:CHECK_IMAGES]
    with torch.no_grad():
        expected = trained(x)
    folder = Path(run) if Path(run).is_dir() else Path(run).parent
    target = Path(out) if out is not None else folder / FORMATS[fmt]
    diff: list[float] = []

    def write_checked(tmp: Path) -> None:
        save(trained, x, tmp)
        with torch.no_grad():
            got = load(tmp)(x).float()
        diff.append(
            float((got - expected).abs().max()) if got.shape == expected.shape else math.inf
        )
        if not within_tolerance(got, expected):
            raise TrainlabError(
                f"{target}: the {fmt} export's logits differ from the checkpoint's by up to "
                f"{diff[0]:.2e} on {len(x)} test images (allowed: {ATOL:g} + {RTOL:g} |logit|); "
                "nothing was written"
            )

    write_with(target, write_checked)
    return ExportResult(target, fmt, diff[0], len(x))


def within_tolerance(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Every logit within ``ATOL + RTOL |expected|`` of the checkpoint's; NaN never is."""
    if got.shape != expected.shape:
        return False
    return bool(((got - expected).abs() <= ATOL + RTOL * expected.abs()).all())


def check_images(recipe: Any, data_dir: str | None = None) -> torch.Tensor:
    """The first ``CHECK_IMAGES`` of the run's test split (uint8, as the model was trained on)."""
    from trainlab.data import load_dataset
    from trainlab.engine import held_out_split

    ds = load_dataset(recipe.data.name, data_dir or recipe.data.data_dir or None)
    return held_out_split(ds, recipe.data.test_subset)[0][:CHECK_IMAGES]


def onnx_runtime() -> Any:
    """onnxruntime, once onnx and onnxscript (torch.onnx's exporter) import too; else one line
    naming the extra."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise TrainlabError(
            f"ONNX export needs onnx, onnxscript and onnxruntime ({exc.name or exc} is missing): "
            f"{ONNX_EXTRA}"
        ) from exc
    return onnxruntime


# ---------------------------------------------------------------------------------------------
# The formats: save(model, example, path) and load(path) -> a callable of the images.


def _batch_dim() -> Any:
    return {"x": {0: torch.export.Dim("batch", min=1, max=1 << 16)}}


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporters' advice to their own developers (tracer warnings, torchvision's operators
    skipped, deprecations) is not the user's to read: the check below says whether it worked."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        onnx_log.setLevel(level)


def save_torchscript(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    # tracing records the uint8 path of the normalizer; the check compares on the same images
    with torch.no_grad(), quiet_exporter():
        traced = torch.jit.trace(model, (x,), check_trace=False)
        torch.jit.save(traced, str(path))


def load_torchscript(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    with quiet_exporter():
        return torch.jit.load(str(path), map_location="cpu").eval()


def save_exported(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    with quiet_exporter():
        program = torch.export.export(model, (x,), dynamic_shapes=_batch_dim())
    # through a buffer: torch.export.save warns of any file name not ending in .pt2
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    path.write_bytes(buffer.getbuffer())


def load_exported(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    return torch.export.load(io.BytesIO(path.read_bytes())).module()


def save_onnx(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    # external_data=False: the weights inside the one file, not in a PATH.data beside it
    with quiet_exporter():
        torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["logits"],
                          dynamo=True, dynamic_shapes=_batch_dim(), external_data=False,
                          verbose=False)  # fmt: skip


def load_onnx(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    session = onnx_runtime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


EXPORTERS = {
    "torchscript": (save_torchscript, load_torchscript),
    "export": (save_exported, load_exported),
    "onnx": (save_onnx, load_onnx),
}
