"""Dropout and the randomness every stochastic regularizer shares.

**Dropout** (Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks from
Overfitting"): in training each unit is kept with probability ``1 - p`` and zeroed otherwise,
``y = x * m, m ~ Bernoulli(1 - p)``. Two equivalent scalings:

* ``inverted`` (the common one): ``y = x * m / (1 - p)`` in training, ``y = x`` at test;
* ``classic`` (the paper's): ``y = x * m`` in training, ``y = (1 - p) x`` at test.

Both follow trainlab's rule: random in ``train()``, deterministic in ``eval()``, and the eval
output equals the expected train output, ``E[y_train] = y_eval``.

**Channel-wise dropout** (Tompson et al. 2015, "Efficient Object Localization Using
Convolutional Networks", SpatialDropout) drops whole feature maps: one mask value per
(sample, channel), shared over the spatial positions, because neighbouring activations are
strongly correlated and element-wise dropout barely regularizes them.

**Monte-Carlo dropout** (Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation"): keep
dropout on at test time and average ``K`` stochastic passes; see :func:`mc_predict`.

**Randomness.** Every stochastic trainlab module is a :class:`RandomModule`: it never touches
the global RNG. It draws from the generator given at construction, or else from a private
``torch.Generator`` created lazily on the input's device and seeded from ``seed``.
:func:`reseed_all` reseeds every such module in a model from one seed (the training engine
calls it with ``(seed, epoch)`` so a resumed run draws the same masks as an uninterrupted one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import nn

from trainlab.errors import RegistryError
from trainlab.registry import Registry

Seed = int | tuple[int, ...]


def check_probability(name: str, value: float) -> float:
    """Validate a drop probability: a number in [0, 1) (p = 1 would drop everything)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RegistryError(f"{name} must be a number in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise RegistryError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed derived from ``parts``: independent streams for (seed, epoch, module)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _as_seed(seed: Seed) -> int:
    if isinstance(seed, tuple):
        return derive_seed(*seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise RegistryError(f"seed must be an int or a tuple of ints, got {seed!r}")
    return seed


def _device_key(device: torch.device | str) -> tuple[str, int | None]:
    device = torch.device(device)
    index = device.index
    if device.type == "cuda" and index is None:
        index = torch.cuda.current_device()
    return device.type, index


class RandomModule(nn.Module):
    """Base for modules that draw randomness: a private generator per device, never the global RNG.

    ``generator``: a caller-owned ``torch.Generator``, used for inputs on its device.
    ``seed``: seeds the private generators created lazily for other devices (default 0).
    Subclasses call ``self.generator_for(x.device)`` for every draw.

    ``monte_carlo = True`` marks modules that :func:`mc_predict` switches to training mode.
    The constructor is cooperative (``super().__init__(*args, **kwargs)``), so a subclass can
    also derive from ``nn.Linear`` or ``nn.Conv2d``.
    """

    monte_carlo: ClassVar[bool] = False

    def __init__(
        self, *args, seed: Seed = 0, generator: torch.Generator | None = None, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.seed = _as_seed(seed)
        self._generators: dict[tuple[str, int | None], torch.Generator] = {}
        if generator is not None:
            self.set_generator(generator)

    def set_generator(self, generator: torch.Generator) -> None:
        """Draw from ``generator`` (caller-owned) for inputs on its device."""
        if not isinstance(generator, torch.Generator):
            raise RegistryError(f"generator must be a torch.Generator, got {generator!r}")
        self._generators[_device_key(generator.device)] = generator

    def generator_for(self, device: torch.device | str) -> torch.Generator:
        """The generator for ``device``; created from ``seed`` on first use."""
        key = _device_key(device)
        generator = self._generators.get(key)
        if generator is None:
            kind, index = key
            device = torch.device(kind, index) if index is not None else torch.device(kind)
            generator = torch.Generator(device=device)
            generator.manual_seed(self.seed)
            self._generators[key] = generator
        return generator

    def reseed(self, seed: Seed) -> None:
        """Restart every stream of this module from ``seed`` (caller-owned generators too)."""
        self.seed = _as_seed(seed)
        for generator in self._generators.values():
            generator.manual_seed(self.seed)


def random_modules(model: nn.Module) -> Iterator[tuple[str, RandomModule]]:
    """Every :class:`RandomModule` in ``model``, in ``named_modules`` order."""
    for name, module in model.named_modules():
        if isinstance(module, RandomModule):
            yield name, module


def reseed_all(model: nn.Module, seed: Seed) -> int:
    """Reseed every :class:`RandomModule` in ``model`` with ``derive_seed(seed, index)``.

    ``seed`` may be a tuple such as ``(run_seed, epoch)``. Each module gets its own stream, so
    two dropout layers never share masks. Returns how many modules were reseeded.
    """
    base = _as_seed(seed)
    count = 0
    for index, (_, module) in enumerate(random_modules(model)):
        module.reseed(derive_seed(base, index))
        count += 1
    return count


class Dropout(RandomModule):
    """Dropout (Srivastava et al. 2014): ``y = x * m / (1 - p)``, ``m ~ Bernoulli(1 - p)``.

    ``mode='inverted'``: kept units scaled by ``1/(1-p)`` in training, identity at test.
    ``mode='classic'``: kept units unscaled in training, ``y = (1-p) x`` at test.
    ``channelwise=True``: one mask value per (sample, channel), shared over all remaining
    dimensions, so whole feature maps drop (Tompson et al. 2015); for (B, C) inputs it is the
    same as element-wise dropout.

    Random in ``train()``, deterministic in ``eval()``, and ``E[train output] = eval output``
    in both modes.
    """

    monte_carlo: ClassVar[bool] = True

    def __init__(
        self,
        p: float = 0.5,
        mode: str = "inverted",
        channelwise: bool = False,
        *,
        seed: Seed = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(seed=seed, generator=generator)
        self.p = check_probability("p", p)
        if mode not in ("inverted", "classic"):
            raise RegistryError(f"mode must be 'inverted' or 'classic', got {mode!r}")
        self.mode = mode
        self.channelwise = bool(channelwise)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}, channelwise={self.channelwise}"

    def _mask_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        if self.channelwise and x.dim() > 2:
            return (*x.shape[:2], *([1] * (x.dim() - 2)))
        return tuple(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - self.p
        if not self.training:
            return x if self.mode == "inverted" else x * keep
        if self.p == 0.0:
            return x
        mask = torch.empty(self._mask_shape(x), device=x.device, dtype=x.dtype)
        mask.bernoulli_(keep, generator=self.generator_for(x.device))
        if self.mode == "inverted":
            mask.div_(keep)
        return x * mask


@torch.no_grad()
def mc_predict(
    model: nn.Module, x: torch.Tensor, k: int, *, return_var: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Monte-Carlo dropout (Gal & Ghahramani 2016): average ``k`` stochastic forward passes.

    Only modules marked ``monte_carlo`` (trainlab's dropout and DropConnect layers) are put in
    training mode; everything else, BatchNorm included, runs in eval mode, so running
    statistics are used and left untouched. ``torch.nn.Dropout`` is not switched on: it draws
    from the global RNG. Every module's mode is restored afterwards, even on error.
    With ``return_var`` also returns the per-element variance of the ``k`` passes
    (the model's predictive spread).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RegistryError(f"k (number of Monte-Carlo passes) must be an int >= 1, got {k!r}")
    modes = {module: module.training for module in model.modules()}
    stochastic = [m for m in model.modules() if getattr(m, "monte_carlo", False)]
    if not stochastic:
        raise RegistryError(
            "mc_predict: the model has no Monte-Carlo-capable module "
            "(trainlab Dropout or DropConnect layers); its output would be deterministic"
        )
    try:
        model.eval()
        for module in stochastic:
            module.train(True)
        total = model(x).double()
        total_sq = total.square() if return_var else None
        for _ in range(k - 1):
            out = model(x).double()
            total += out
            if return_var:
                total_sq += out.square()
    finally:
        for module, mode in modes.items():
            module.training = mode
    mean = total / k
    if not return_var:
        return mean.to(x.dtype if x.is_floating_point() else torch.float32)
    var = (total_sq / k - mean.square()).clamp_min(0.0) * (k / max(k - 1, 1))
    dtype = x.dtype if x.is_floating_point() else torch.float32
    return mean.to(dtype), var.to(dtype)


DROPOUT: Registry[nn.Module] = Registry("dropout")


@DROPOUT.register("dropout")
def dropout(
    p: float = 0.5, channelwise: bool = False, mode: str = "inverted", seed: Seed = 0
) -> Dropout:
    """``"dropout(0.5)"``, ``"dropout(0.5, channelwise=True)"``: inverted dropout."""
    return Dropout(p, mode=mode, channelwise=channelwise, seed=seed)


@DROPOUT.register("dropout2d", "spatial_dropout")
def dropout2d(p: float = 0.1, mode: str = "inverted", seed: Seed = 0) -> Dropout:
    """``"dropout2d(0.1)"``: channel-wise dropout of whole feature maps (Tompson et al. 2015)."""
    return Dropout(p, mode=mode, channelwise=True, seed=seed)


@DROPOUT.register("classic_dropout")
def classic_dropout(p: float = 0.5, channelwise: bool = False, seed: Seed = 0) -> Dropout:
    """``"classic_dropout(0.5)"``: unscaled in training, scaled by ``1 - p`` at test."""
    return Dropout(p, mode="classic", channelwise=channelwise, seed=seed)
