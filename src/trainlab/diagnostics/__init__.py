"""Training diagnostics that are cheap enough to leave on.

Attach to any PyTorch model; the hooks watch activation modules (trainlab's and torch.nn's) and
the outputs of Linear/Conv layers, accumulate statistics on the device at every ``every``-th
step, and bring them to the host only in :meth:`Diagnostics.report`. Rules then turn the
statistics into findings with advice (dead ReLUs, saturated tanh/sigmoid units, inputs and
outputs that are not zero-centred, activations that collapse or explode with depth, vanishing
gradients, updates that are too large, non-finite values).

How a training loop uses it (``trainlab.train.train_step`` makes these calls)::

    diag = Diagnostics(model, every=50)            # attaches the hooks
    for step, (x, y) in enumerate(batches):
        diag.begin_step(step)                      # sampled when step % every == 0
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(); loss.backward()
        diag.after_backward()                      # gradient norms
        diag.before_optimizer_step()               # snapshot weights
        optimizer.step()
        diag.after_optimizer_step()                # ||dW|| / ||W|| of the actual step
        # optionally at an epoch's end: diag.snapshot(step) closes the time-series window
    report = diag.report()                         # the one host sync -> DiagnosticsReport
    found = findings(report)                       # list[Finding]
    write_diagnostics(out_dir, report, found)      # diagnostics.html, findings.json, figures/
    section = diagnostics_markdown(report, found)  # for a run report
    diag.detach()

``trainlab.train.run_diagnostics(recipe, out, steps=...)`` runs the engine's step for a short
while with these hooks and writes the report (``trainlab diagnose RECIPE``). This package
imports nothing of the engine: it watches whatever model it is given.

Not seen: activations applied as functions inside ``forward`` (``F.relu(x)``); the report lists
the activation modules it found and says so.
"""

from trainlab.diagnostics.collect import (
    DEFAULT_EVERY,
    DEFAULT_WINDOW,
    Diagnostics,
    DiagnosticsReport,
    LayerSeries,
    NoDiagnostics,
    WeightSeries,
    activation_spec,
)
from trainlab.diagnostics.findings import (
    DEAD_FRACTION,
    DEPTH_RATIO,
    GRAD_RATIO,
    INPUT_MEAN_RATIO,
    OUTPUT_MEAN_RATIO,
    SATURATED_FRACTION,
    UPDATE_RATIO_HIGH,
    Finding,
    findings,
)
from trainlab.diagnostics.render import diagnostics_figures, diagnostics_markdown, write_diagnostics

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_WINDOW",
    "DEAD_FRACTION",
    "DEPTH_RATIO",
    "GRAD_RATIO",
    "INPUT_MEAN_RATIO",
    "OUTPUT_MEAN_RATIO",
    "SATURATED_FRACTION",
    "UPDATE_RATIO_HIGH",
    "Diagnostics",
    "DiagnosticsReport",
    "Finding",
    "LayerSeries",
    "NoDiagnostics",
    "WeightSeries",
    "activation_spec",
    "diagnostics_figures",
    "diagnostics_markdown",
    "findings",
    "write_diagnostics",
]
