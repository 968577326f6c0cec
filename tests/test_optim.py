"""SGD against torch.optim.SGD and AlexNet's update rule written out; learning-rate schedules; optimiser state."""
import numpy as np
import pytest

from numconv.layers import Linear, ReLU, Sequential
from numconv.optim import SGD, ReduceLROnPlateau, StepLR

SHAPES = [(3, 4), (5,), (2, 3, 2, 2)]


def _params(rng, dtype=np.float64):
    params = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    grads = [np.zeros_like(p) for p in params]
    return params, grads


def _grad_sequence(rng, steps, dtype=np.float64):
    return [[rng.standard_normal(shape).astype(dtype) for shape in SHAPES] for _ in range(steps)]


def _run(optimizer, grads, sequence, lrs=None):
    """Step ``optimizer`` once per entry of ``sequence``, writing that step's gradients into ``grads`` in place;
    ``lrs`` sets the learning rate before each step."""
    for step, values in enumerate(sequence):
        if lrs is not None:
            optimizer.lr = lrs[step]
        for grad, value in zip(grads, values):
            grad[...] = value
        optimizer.step()


def _torch_run(torch, initial, sequence, lrs, **options):
    tensors = [torch.tensor(p.copy(), requires_grad=True) for p in initial]
    optimizer = torch.optim.SGD(tensors, lr=lrs[0], **options)
    history = []
    for step, values in enumerate(sequence):
        for group in optimizer.param_groups:
            group["lr"] = lrs[step]
        for tensor, value in zip(tensors, values):
            tensor.grad = torch.tensor(value)
        optimizer.step()
        history.append([t.detach().numpy().copy() for t in tensors])
    return history


SGD_CASES = [
    dict(momentum=0.0, weight_decay=0.0),
    dict(momentum=0.9, weight_decay=0.0),
    dict(momentum=0.0, weight_decay=1e-2),
    dict(momentum=0.9, weight_decay=1e-2),
    dict(momentum=0.9, weight_decay=0.0, nesterov=True),
    dict(momentum=0.9, weight_decay=1e-2, nesterov=True),
]


@pytest.mark.parametrize("lr_in_velocity", [False, True], ids=["pytorch-form", "alexnet-form"])
@pytest.mark.parametrize("options", SGD_CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_equals_torch_over_five_steps(options, lr_in_velocity, rng):
    """At a constant learning rate both forms of the update are PyTorch's."""
    torch = pytest.importorskip("torch")
    params, grads = _params(rng)
    initial = [p.copy() for p in params]
    sequence = _grad_sequence(rng, 5)
    want = _torch_run(torch, initial, sequence, [0.05] * 5, **options)
    optimizer = SGD(list(zip(params, grads)), lr=0.05, lr_in_velocity=lr_in_velocity, **options)
    for step, values in enumerate(sequence):
        _run(optimizer, grads, [values])
        for got, expected in zip(params, want[step]):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    # the parameters moved by more than the tolerance: the comparison is not vacuous
    assert not np.allclose(params[0], initial[0], rtol=1e-3)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_float32_equals_torch(nesterov, rng):
    torch = pytest.importorskip("torch")
    params, grads = _params(rng, np.float32)
    sequence = _grad_sequence(rng, 5, np.float32)
    want = _torch_run(torch, params, sequence, [0.1] * 5, momentum=0.9, weight_decay=1e-2, nesterov=nesterov)
    _run(SGD(list(zip(params, grads)), lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=nesterov), grads, sequence)
    for got, expected in zip(params, want[-1]):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


LRS = [0.01, 0.01, 0.01, 0.001, 0.001, 0.001]


def _alexnet_rule(initial, sequence, lrs):
    """Section 5 of the AlexNet paper: v <- 0.9 v - 0.0005 eps w - eps g; w <- w + v."""
    weights = [w.copy() for w in initial]
    velocities = [np.zeros_like(w) for w in initial]
    history = []
    for eps, grads in zip(lrs, sequence):
        for w, v, g in zip(weights, velocities, grads):
            v[...] = 0.9 * v - 0.0005 * eps * w - eps * g
            w += v
        history.append([w.copy() for w in weights])
    return history


def test_alexnet_rule_equals_the_papers_formula_across_a_learning_rate_change(rng):
    params, grads = _params(rng)
    initial = [p.copy() for p in params]
    sequence = _grad_sequence(rng, len(LRS))
    want = _alexnet_rule(initial, sequence, LRS)
    optimizer = SGD(list(zip(params, grads)), lr=LRS[0], momentum=0.9, weight_decay=0.0005, lr_in_velocity=True)
    for step, values in enumerate(sequence):
        _run(optimizer, grads, [values], [LRS[step]])
        for got, expected in zip(params, want[step]):
            np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


def test_pytorch_form_differs_from_the_papers_after_a_learning_rate_change(rng):
    torch = pytest.importorskip("torch")
    params, grads = _params(rng)
    initial = [p.copy() for p in params]
    sequence = _grad_sequence(rng, len(LRS))
    paper = _alexnet_rule(initial, sequence, LRS)
    pytorch = _torch_run(torch, initial, sequence, LRS, momentum=0.9, weight_decay=0.0005)
    optimizer = SGD(list(zip(params, grads)), lr=LRS[0], momentum=0.9, weight_decay=0.0005)
    for step, values in enumerate(sequence):
        _run(optimizer, grads, [values], [LRS[step]])
        for got, expected in zip(params, pytorch[step]):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
        same_as_paper = all(np.allclose(a, b, rtol=1e-9, atol=0) for a, b in zip(pytorch[step], paper[step]))
        # equal while the rate is constant, different once it changes (PyTorch rescales the old velocity)
        assert same_as_paper == (step < 3), step
    moved_paper = paper[3][0] - paper[2][0]
    moved_pytorch = pytorch[3][0] - pytorch[2][0]
    assert np.abs(moved_pytorch).max() < 0.5 * np.abs(moved_paper).max()


def test_sgd_on_a_model_updates_its_parameters_in_place(rng):
    model = Sequential(Linear(4, 3, rng=rng, dtype=np.float64), ReLU(), Linear(3, 2, rng=rng, dtype=np.float64))
    x = rng.standard_normal((5, 4))
    before = [p.copy() for p in model.parameters()]
    optimizer = SGD(model, lr=0.1)
    model.backward(rng.standard_normal(model(x).shape))
    grads = [g.copy() for g in model.gradients()]
    assert any(g.any() for g in grads)
    optimizer.step()
    for param, old, grad in zip(model.parameters(), before, grads):
        np.testing.assert_allclose(param, old - 0.1 * grad, rtol=1e-15, atol=1e-15)
    optimizer.zero_grad()
    assert not any(g.any() for g in model.gradients())


def test_sgd_from_a_model_follows_astype_and_keeps_the_velocity(rng):
    model = Sequential(Linear(4, 3, rng=rng), ReLU(), Linear(3, 2, rng=rng))
    x = rng.standard_normal((5, 4)).astype(np.float32)
    optimizer = SGD(model, lr=0.1, momentum=0.9)
    model.backward(rng.standard_normal(model(x).shape).astype(np.float32))
    optimizer.step()
    velocity = optimizer.velocities[0].copy()
    model.astype(np.float64)
    model.zero_grad()
    before = model.parameters()[0].copy()
    optimizer.step()  # a zero gradient: the step is the momentum term alone
    assert optimizer.velocities[0].dtype == np.float64
    np.testing.assert_allclose(model.parameters()[0], before - 0.1 * 0.9 * velocity.astype(np.float64), rtol=1e-6)


def test_sgd_from_arrays_refuses_to_step_once_the_model_replaced_them(rng):
    model = Sequential(Linear(4, 3, rng=rng), ReLU(), Linear(3, 2, rng=rng))
    optimizer = SGD(list(zip(model.parameters(), model.gradients())), lr=0.1)
    optimizer.step()
    model.astype(np.float64)
    with pytest.raises(ValueError, match="parameter 0 was replaced"):
        optimizer.step()


def test_sgd_refuses_a_parameter_whose_shape_changed(rng):
    model = Sequential(Linear(4, 3, rng=rng))
    optimizer = SGD(model, lr=0.1, momentum=0.9)
    model[0].weight, model[0].weight_grad = np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"parameter 0 now has shape \(2, 4\)"):
        optimizer.step()


def test_sgd_load_state_dict_refuses_values_that_do_not_convert(rng):
    params, grads = _params(rng)
    optimizer = SGD(list(zip(params, grads)), lr=0.1, momentum=0.9)
    state = optimizer.state_dict()
    state["velocity.0"] = state["velocity.0"] * 1j
    with pytest.raises(TypeError, match="complex128"):
        optimizer.load_state_dict(state)


@pytest.mark.parametrize("layout", ["fortran", "transposed"])
def test_sgd_updates_or_rejects_non_contiguous_parameters(layout, rng):
    values = rng.standard_normal((3, 4))
    param = np.asfortranarray(values) if layout == "fortran" else values.T.copy().T
    assert not param.flags.c_contiguous
    grad = rng.standard_normal((3, 4))
    try:
        optimizer = SGD([(param, grad)], lr=0.1)
    except (TypeError, ValueError):
        return  # rejecting it is fine too
    optimizer.step()
    np.testing.assert_allclose(param, values - 0.1 * grad, rtol=1e-15)


# --- schedules ----------------------------------------------------------------------------------------------------


def _optimizer(rng, lr=0.1):
    params, grads = _params(rng)
    return SGD(list(zip(params, grads)), lr=lr, momentum=0.9)


def test_step_lr_multiplies_by_gamma_every_step_size_epochs(rng):
    optimizer = _optimizer(rng)
    scheduler = StepLR(optimizer, step_size=3, gamma=0.5)
    lrs = []
    for epoch in range(1, 10):
        scheduler.step(0.3)  # fit passes the validation error; StepLR ignores it
        lrs.append(optimizer.lr)
    expected = [0.1 * 0.5 ** (epoch // 3) for epoch in range(1, 10)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-15)
    assert lrs[1] == 0.1 and lrs[2] == 0.05 and lrs[5] == 0.025


def test_step_lr_equals_torch(rng):
    torch = pytest.importorskip("torch")
    tensor = torch.zeros(2, requires_grad=True)
    reference = torch.optim.SGD([tensor], lr=0.01)
    torch_scheduler = torch.optim.lr_scheduler.StepLR(reference, step_size=2, gamma=0.1)
    optimizer = _optimizer(rng, lr=0.01)
    scheduler = StepLR(optimizer, step_size=2, gamma=0.1)
    for _ in range(7):
        reference.step()
        torch_scheduler.step()
        scheduler.step()
        assert optimizer.lr == pytest.approx(reference.param_groups[0]["lr"], rel=1e-15)


def test_step_lr_state_dict_resumes_the_phase(rng):
    first = _optimizer(rng)
    scheduler = StepLR(first, step_size=3, gamma=0.1)
    scheduler.step()
    scheduler.step()
    second = _optimizer(rng)
    resumed = StepLR(second, step_size=3, gamma=0.1)
    resumed.load_state_dict(scheduler.state_dict())
    resumed.step()
    assert second.lr == pytest.approx(0.01)


ERRORS = [0.50, 0.40, 0.40, 0.39999, 0.30, 0.35, 0.36, 0.20, 0.20, 0.20, 0.20]
# lr after each epoch, worked out by hand: a non-improvement (0.39999 is not 1e-4 better than 0.4) divides by 10
EXPECTED = {
    0: [1, 1, 0.1, 0.01, 0.01, 1e-3, 1e-4, 1e-4, 1e-5, 1e-6, 1e-7],
    # the third bad epoch in a row (more than patience=2) divides
    2: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.1],
}


@pytest.mark.parametrize("patience", [0, 2])
def test_reduce_lr_on_plateau(patience, rng):
    optimizer = _optimizer(rng, lr=1.0)
    scheduler = ReduceLROnPlateau(optimizer, patience=patience)
    lrs = []
    for error in ERRORS:
        scheduler.step(error)
        lrs.append(optimizer.lr)
    np.testing.assert_allclose(lrs, EXPECTED[patience], rtol=1e-12)


@pytest.mark.parametrize("patience", [0, 2])
def test_reduce_lr_on_plateau_equals_torch(patience, rng):
    torch = pytest.importorskip("torch")
    tensor = torch.zeros(2, requires_grad=True)
    reference = torch.optim.SGD([tensor], lr=1.0)
    torch_scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(reference, mode="min", factor=0.1,
                                                                 patience=patience, threshold=1e-4)
    optimizer = _optimizer(rng, lr=1.0)
    scheduler = ReduceLROnPlateau(optimizer, patience=patience)
    for error in ERRORS + [0.25, 0.19, 0.18, 0.17]:
        torch_scheduler.step(error)
        scheduler.step(error)
        assert optimizer.lr == pytest.approx(reference.param_groups[0]["lr"], rel=1e-12)


def test_reduce_lr_on_plateau_floor_and_state(rng):
    optimizer = _optimizer(rng, lr=0.1)
    scheduler = ReduceLROnPlateau(optimizer, min_lr=0.005)
    for error in [0.5, 0.6, 0.6, 0.6]:
        scheduler.step(error)
    assert optimizer.lr == 0.005
    # a restored scheduler remembers the best error: 0.45 is an improvement on 0.5, 0.55 is not
    state = scheduler.state_dict()
    for error, expected in [(0.45, 0.1), (0.55, 0.01)]:
        other = _optimizer(rng, lr=0.1)
        restored = ReduceLROnPlateau(other)
        restored.load_state_dict(state)
        restored.step(error)
        assert other.lr == pytest.approx(expected)


# --- optimiser state ----------------------------------------------------------------------------------------------


def test_sgd_state_dict_round_trip(rng):
    params, grads = _params(rng)
    options = dict(momentum=0.9, weight_decay=1e-3, nesterov=True)
    optimizer = SGD(list(zip(params, grads)), lr=0.05, **options)
    _run(optimizer, grads, _grad_sequence(rng, 2))
    state = optimizer.state_dict()
    assert set(state) == {"lr", "velocity.0", "velocity.1", "velocity.2"}
    assert all(state[f"velocity.{i}"].any() for i in range(3))
    snapshot = {key: np.array(value, copy=True) for key, value in state.items()}
    later = _grad_sequence(rng, 3)

    copies = [p.copy() for p in params]
    copy_grads = [np.zeros_like(p) for p in params]
    resumed = SGD(list(zip(copies, copy_grads)), lr=0.5, **options)
    resumed.load_state_dict(state)
    assert resumed.lr == 0.05
    fresh_copies = [p.copy() for p in params]
    fresh_grads = [np.zeros_like(p) for p in params]
    fresh = SGD(list(zip(fresh_copies, fresh_grads)), lr=0.05, **options)

    _run(optimizer, grads, later)
    _run(resumed, copy_grads, later)
    _run(fresh, fresh_grads, later)
    for got, want in zip(copies, params):
        np.testing.assert_array_equal(got, want)
    # without the velocities the run goes elsewhere: the state matters
    assert not np.allclose(fresh_copies[0], params[0], rtol=1e-6)
    # the state dict was a copy: stepping did not change it
    for key, value in snapshot.items():
        np.testing.assert_array_equal(state[key], value)


@pytest.mark.parametrize("change", ["missing", "shape"])
def test_sgd_load_state_dict_rejects_mismatched_velocities(change, rng):
    params, grads = _params(rng)
    optimizer = SGD(list(zip(params, grads)), lr=0.1, momentum=0.9)
    state = optimizer.state_dict()
    if change == "missing":
        del state["velocity.1"]
    else:
        state["velocity.1"] = np.zeros(6)
    with pytest.raises(ValueError, match=r"velocity\.1"):
        optimizer.load_state_dict(state)


# --- argument validation ------------------------------------------------------------------------------------------


def _pairs():
    return [(np.zeros(3), np.zeros(3))]


@pytest.mark.parametrize("build,error", [
    (lambda: SGD(_pairs(), lr=-0.1), ValueError),
    (lambda: SGD(_pairs(), lr="0.1"), TypeError),
    (lambda: SGD(_pairs(), lr=float("nan")), ValueError),  # a number, out of range
    (lambda: SGD(_pairs(), lr=0.1, momentum=-0.5), ValueError),
    (lambda: SGD(_pairs(), lr=0.1, weight_decay=-1e-4), ValueError),
    (lambda: SGD(_pairs(), lr=0.1, nesterov=True), ValueError),
    (lambda: SGD(_pairs(), lr=0.1, momentum=0.9, nesterov=1), TypeError),
    (lambda: SGD([], lr=0.1), ValueError),
    (lambda: SGD(Sequential(ReLU()), lr=0.1), ValueError),
    (lambda: StepLR(SGD(_pairs(), lr=0.1), step_size=0), ValueError),
    (lambda: StepLR(SGD(_pairs(), lr=0.1), step_size=1.5), TypeError),  # not an int
    (lambda: ReduceLROnPlateau(SGD(_pairs(), lr=0.1), factor=1.0), ValueError),
    (lambda: ReduceLROnPlateau(SGD(_pairs(), lr=0.1), factor=0.0), ValueError),
    (lambda: ReduceLROnPlateau(SGD(_pairs(), lr=0.1), patience=-1), ValueError),
], ids=["negative-lr", "string-lr", "nan-lr", "negative-momentum", "negative-weight-decay",
        "nesterov-without-momentum", "nesterov-not-bool", "no-params", "model-without-params", "step-size-0",
        "step-size-float", "factor-1", "factor-0", "negative-patience"])
def test_bad_arguments_raise(build, error):
    with pytest.raises(error):
        build()
