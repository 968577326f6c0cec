"""Stochastic gradient descent with momentum and weight decay, and learning-rate schedules.

AlexNet's rule (Krizhevsky et al. 2012, section 5), v <- 0.9 v - 0.0005 eps w - eps dL/dw; w <- w + v, is
``SGD(model, lr=eps, momentum=0.9, weight_decay=0.0005, lr_in_velocity=True)``. The default is PyTorch's form, where
the learning rate multiplies the velocity at each step; the two agree until the learning rate changes.
"""
from __future__ import annotations

import math

import numpy as np

from numconv import backend, checks

__all__ = ["SGD", "StepLR", "ReduceLROnPlateau"]


class SGD:
    """SGD over a model's parameters (or an iterable of (parameter, gradient) pairs), updated in place.

    Given a model, the parameters are read from it at every step, so the optimiser follows ``model.to(device)`` and
    ``model.astype(dtype)`` made after it was created; each velocity moves with its parameter, keeping its values.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False, lr_in_velocity=False):
        if hasattr(params, "parameters") and hasattr(params, "gradients"):
            self._model, self._fixed_pairs = params, None
        else:
            self._model, self._fixed_pairs = None, [tuple(pair) for pair in params]
        pairs = self.pairs
        if not pairs:
            raise ValueError("SGD got no parameters to optimise")
        self.lr = checks.real(lr, "lr", minimum=0.0)
        self.momentum = checks.real(momentum, "momentum", minimum=0.0)
        self.weight_decay = checks.real(weight_decay, "weight_decay", minimum=0.0)
        nesterov, lr_in_velocity = checks.flag(nesterov, "nesterov"), checks.flag(lr_in_velocity, "lr_in_velocity")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov, self.lr_in_velocity = nesterov, lr_in_velocity
        self.velocities = [backend.zeros(param.shape, param.dtype, backend.backend_of(param)) for param, _ in pairs]

    @property
    def pairs(self) -> list:
        """The current (parameter, gradient) pairs, checked: updates go through flat views, so a strided parameter
        would be updated in a copy and the step lost."""
        pairs = self._fixed_pairs
        if pairs is None:
            pairs = list(zip(self._model.parameters(), self._model.gradients()))
        for index, (param, grad) in enumerate(pairs):
            contiguous = (backend.as_device_array(param).is_c_contiguous() if backend.is_device_array(param)
                          else param.flags.c_contiguous and param.flags.writeable)
            if not contiguous:
                raise ValueError(f"parameter {index} (shape {param.shape}) must be C-contiguous and writeable")
            if tuple(param.shape) != tuple(grad.shape):
                raise ValueError(f"parameter {index} has shape {param.shape} but its gradient {grad.shape}")
            if backend.is_retired(param) or backend.is_retired(grad):
                raise ValueError(f"parameter {index} was replaced by Module.to() or astype() after this optimiser "
                                 f"was made from its arrays; make the optimiser from the model, or after the move")
        return pairs

    def step(self):
        """One update of every parameter from its current gradient."""
        for index, (param, grad) in enumerate(self.pairs):
            velocity = self._velocity_for(index, param)
            update = backend.kernels(backend.backend_of(param, grad, velocity)).pointwise.sgd_update
            update(param.reshape(-1), grad.reshape(-1), velocity.reshape(-1), self.lr, self.momentum,
                   self.weight_decay, self.nesterov, self.lr_in_velocity)

    def _velocity_for(self, index: int, param):
        """The velocity of parameter ``index``, moved to the parameter's backend and dtype if the model moved."""
        velocity = self.velocities[index]
        if tuple(velocity.shape) != tuple(param.shape):
            raise ValueError(f"parameter {index} now has shape {tuple(param.shape)}, its velocity "
                             f"{tuple(velocity.shape)}: the model changed after the optimiser was made")
        where = backend.backend_of(param)
        if backend.backend_of(velocity) != where or velocity.dtype != param.dtype:
            velocity = backend.astype(backend.to_backend(velocity, where), param.dtype)
            self.velocities[index] = velocity
        return velocity

    def zero_grad(self):
        for _, grad in self.pairs:
            backend.fill(grad, 0)

    def state_dict(self) -> dict:
        """The learning rate and host copies of the velocities."""
        state = {"lr": np.asarray(self.lr)}
        state.update({f"velocity.{i}": np.array(backend.to_host(velocity), copy=True)
                      for i, velocity in enumerate(self.velocities)})
        return state

    def load_state_dict(self, state: dict):
        self.lr = float(state["lr"])
        for i, velocity in enumerate(self.velocities):
            key = f"velocity.{i}"
            if key not in state or np.shape(state[key]) != tuple(velocity.shape):
                raise ValueError(f"optimizer state {key!r} is missing or has the wrong shape")
            backend.copy_into(velocity, np.asarray(state[key]))


class StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (call ``step()`` once per epoch)."""

    def __init__(self, optimizer: SGD, step_size: int, gamma: float = 0.1):
        self.optimizer, self.step_size = optimizer, checks.integer(step_size, "step_size", 1)
        self.gamma = checks.real(gamma, "gamma", minimum=0.0)
        self.epoch = 0

    def step(self, metric=None):
        self.epoch += 1
        if self.epoch % self.step_size == 0:
            self.optimizer.lr *= self.gamma

    def state_dict(self) -> dict:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict):
        self.epoch = int(state["epoch"])


class ReduceLROnPlateau:
    """Divide the learning rate by 10 (``factor``) when the monitored validation error has not improved by more
    than ``threshold`` (relative) for ``patience`` epochs: AlexNet's manual schedule made automatic."""

    def __init__(self, optimizer: SGD, factor: float = 0.1, patience: int = 0, threshold: float = 1e-4,
                 min_lr: float = 0.0):
        self.optimizer = optimizer
        self.factor = checks.real(factor, "factor", above=0.0, below=1.0)
        self.patience = checks.integer(patience, "patience", 0)
        self.threshold = checks.real(threshold, "threshold", minimum=0.0)
        self.min_lr = checks.real(min_lr, "min_lr", minimum=0.0)
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, metric):
        """Call once per epoch with the validation error (lower is better)."""
        metric = float(metric)
        if metric < self.best * (1.0 - self.threshold):
            self.best, self.bad_epochs = metric, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
            self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict):
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])
