"""Training diagnostics that are cheap enough to leave on.

Hooks on any PyTorch model's activation modules (trainlab's and torch.nn's) and weighted layers
collect statistics on the device (``collect``); rules turn them into findings with advice
(``findings``, thresholds there); ``render`` draws and writes them.

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

``trainlab diagnose RECIPE`` (``trainlab.train.run_diagnostics``) runs the engine's step for a
while with these hooks. This package imports nothing of the engine: it watches whatever model
it is given. Not seen: activations applied as functions inside ``forward`` (``F.relu(x)``); the
report says so.
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
from trainlab.diagnostics.findings import Finding, findings
from trainlab.diagnostics.render import diagnostics_figures, diagnostics_markdown, write_diagnostics

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_WINDOW",
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
