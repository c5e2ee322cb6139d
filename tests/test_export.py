"""trainlab export: each format, loaded back by its own runtime (torch.jit, torch.export,
onnxruntime), gives the checkpoint's logits within 1e-5 + 1.3e-6 |logit| (torch.testing's
float32 tolerances) on the run's test images and on another batch size; an export off by more
is refused with one line and leaves no file; a missing ONNX extra is named."""

import builtins
import copy
import math
import sys

import pytest
import torch

from trainlab.cli import main
from trainlab.engine import fit, held_out_split, model_from_checkpoint
from trainlab.errors import TrainlabError
from trainlab.export import FORMATS, export_run, save_torchscript, within_tolerance
from trainlab.recipe import load_recipe

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")

DATA = "synthetic(n=256, classes=4, size=16)"


def _recipe(kind: str):
    return load_recipe(None, [
        f"data.name={DATA}", "train.epochs=1", "train.batch_size=64", "train.device=cpu",
        f"model.kind={kind}", "model.widths=[8, 16]", "diagnostics.every=0",
    ])  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    """A tiny trained run of each built-in kind (batch norm's running statistics moved)."""
    folders = {}
    for kind in ("cnn", "mlp"):
        folders[kind] = tmp_path_factory.mktemp(kind) / "run"
        fit(_recipe(kind), folders[kind], progress=False, report=False)
    return folders


def _test_images():
    from trainlab.data import load_dataset

    return held_out_split(load_dataset(DATA))[0]


def _load(fmt: str, path):
    if fmt == "torchscript":
        return torch.jit.load(str(path))
    if fmt == "export":
        return torch.export.load(str(path)).module()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".model"))


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_round_trips_within_the_tolerance(runs, kind, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    result = export_run(runs[kind], fmt)
    assert result.path == runs[kind] / FORMATS[fmt] and result.images == 64
    reference, _, _ = model_from_checkpoint(runs[kind])
    reference.eval()
    exported = _load(fmt, result.path)  # by its own runtime, not through trainlab
    images = _test_images()
    for x in (images[:64], images[5:8]):  # the checked batch, and another batch size
        assert x.dtype == torch.uint8
        with torch.no_grad():
            want, got = reference(x), exported(x)
        assert got.shape == (len(x), 4)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1.3e-6)
        assert torch.equal(exported(x), got)  # eval mode: the same images, the same logits
    assert _leftovers(runs[kind]) == []


def _shifted_save(shift: float):
    """An export whose classifier bias is moved by ``shift``: every logit off by ``shift``."""

    def save(model, x, path):
        tampered = copy.deepcopy(model)
        with torch.no_grad():
            list(tampered.parameters())[-1].add_(shift)
        save_torchscript(tampered, x, path)

    return save


def test_an_export_off_by_more_than_the_tolerance_is_refused_and_leaves_no_file(
    runs, monkeypatch, tmp_path, capsys
):
    from trainlab import export

    out = tmp_path / "model.pt"
    loader = export.EXPORTERS["torchscript"][1]
    monkeypatch.setitem(export.EXPORTERS, "torchscript", (_shifted_save(1e-4), loader))
    with pytest.raises(TrainlabError, match=r"differ from the checkpoint's by up to 1\.\d+e-04"):
        export_run(runs["cnn"], "torchscript", out)
    assert list(tmp_path.iterdir()) == []
    assert main(["export", str(runs["mlp"]), "--format", "torchscript", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []
    # within the tolerance, the same tampering is kept
    monkeypatch.setitem(export.EXPORTERS, "torchscript", (_shifted_save(2e-6), loader))
    assert export_run(runs["cnn"], "torchscript", out).max_abs_diff == pytest.approx(2e-6, rel=0.1)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_the_tolerance_is_absolute_for_small_logits_relative_for_large():
    want = torch.tensor([[0.0, 1.0, 50.0]])
    # allowed: 1e-5, 1e-5 + 1.3e-6, 1e-5 + 6.5e-5
    assert within_tolerance(want + torch.tensor([[9e-6, 1.1e-5, 7.4e-5]]), want)
    assert not within_tolerance(want + torch.tensor([[1.1e-5, 0.0, 0.0]]), want)
    assert not within_tolerance(want + torch.tensor([[0.0, 0.0, 7.6e-5]]), want)
    assert not within_tolerance(want + torch.tensor([[0.0, math.nan, 0.0]]), want)
    assert not within_tolerance(want[:, :2], want)


def test_a_missing_onnx_extra_is_one_line_naming_it_before_any_work(
    runs, monkeypatch, capsys, tmp_path
):
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "onnxruntime", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(
        TrainlabError, match=r"onnxruntime is missing.*pip install 'trainlab\[onnx\]'"
    ):
        export_run(runs["mlp"], "onnx", model="not consulted: the extra is checked first")
    out = tmp_path / "model.onnx"
    assert main(["export", str(runs["mlp"]), "--format", "onnx", "--out", str(out)]) == 2
    assert "pip install 'trainlab[onnx]'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_network_from_python_must_be_given_again(tmp_path, capsys, one_thread):
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16, 4))
    fit(_recipe("mlp"), tmp_path / "run", model=network, progress=False, report=False)
    assert main(["export", str(tmp_path / "run"), "--format", "export"]) == 2
    assert "came from Python; pass it again" in capsys.readouterr().err
    result = export_run(tmp_path / "run", "export", model=copy.deepcopy(network))
    assert result.max_abs_diff <= 1e-4


def test_an_unknown_format_is_refused():
    with pytest.raises(TrainlabError, match="--format 'tflite': expected one of torchscript"):
        export_run("anything", "tflite")
