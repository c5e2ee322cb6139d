"""Which of over-fitting's fixes, at which strength, does the small Fashion-MNIST MLP over-fitting
(bench_doctor's ``fm-small/overfitting-3``: 1,000 images, a 1024-1024 MLP at lr 0.05, no
regulariser) need? The doctor tries dropout(0.5), weight decay 5e-4 and pad-crop with flips,
each alone, and keeps the verified one of lowest validation error: pad-crop at nearly every
held-out seed, 1.0-2.6 points below the group's bar (dropout, weight decay 5e-3 and flips at
lr 0.02) at 12 of 16 fresh seeds. A design probe on seen seeds, not a verdict: each variant is
watched as the doctor watches (problems named, watched loss, validation error) and trained in
full, scored on every test image as the benchmark scores a repair (None: diverged in full).

Run:  PYTHONPATH=src .venv/bin/python benchmarks/probe_regularisers.py SEED [SEED ...]
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_doctor as bench  # noqa: E402

SETUP = "fm-small/overfitting-3"
PAD_CROP = ["hflip", "pad_crop(3)"]  # the doctor's augmentation for 28-pixel images


def variants(lr: float) -> dict[str, dict]:
    return {
        "dropout": {"model.dropout": "dropout(0.5)"},
        "dropout, lr / 3": {"model.dropout": "dropout(0.5)", "optim.lr": round(lr / 3, 4)},
        "weight decay 5e-3": {"optim.weight_decay": 5e-3},
        "augmentation": {"augment.train": PAD_CROP},
        "augmentation, lr / 3": {"augment.train": PAD_CROP, "optim.lr": round(lr / 3, 4)},
    }


def probe(seed: int) -> None:
    import torch

    from trainlab.doctor.doctor import _error, apply_change, watch
    from trainlab.doctor.repairs import Change

    torch.set_num_threads(1)
    setup = next(s for s in bench.corpus() if s.name == SETUP)
    recipe = bench.setup_recipe(setup, seed)
    data = bench._dataset(recipe.data.name)
    built = watch(recipe, dataset=data, val_fraction=bench.VAL_FRACTION)
    print(f"seed {seed}, as built: {sorted(built.codes())}, watched loss {built.score:.3f}, "
          f"validation error {_error(built):.3f}", flush=True)  # fmt: skip
    for name, settings in variants(recipe.optim.lr).items():
        changed = apply_change(recipe, Change(settings, ""))
        watched = watch(changed, dataset=data, val_fraction=bench.VAL_FRACTION)
        with tempfile.TemporaryDirectory() as tmp:
            full = bench._in_full(changed, data, Path(tmp) / "run")
        print(f"seed {seed}, {name}: {sorted(watched.codes())}, watched loss {watched.score:.3f}, "
              f"validation error {_error(watched):.3f}, in full {full}", flush=True)  # fmt: skip


if __name__ == "__main__":
    for seed in map(int, sys.argv[1:]):
        probe(seed)
