"""``check_model``: a reader's model, in whatever framework it is, against a NiN spec.

The framework is told by the model's type; that backend's ``probe`` module runs the model and
reports in framework-free terms (:mod:`common.trace`), and everything else is decided here and
in :mod:`.analysis`: the layers, the parameters, the ReLUs and the dropout, then the numbers
(the reference's weights set on the reader's layers, logits and every layer's input against
:mod:`common.reference`) and the gradients (against this project's model in the same
framework). Nothing of the reader's model is changed: its weights and modes are put back.

Tools layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ... import reference
from ... import trace as t
from ...backends import FRAMEWORK_LABELS, framework_of, listed, load_backend_module
from ...shapes import layer_params, layer_shapes
from ...spec import ConvBlock, Dropout, Spec, make_spec
from ...weights import canonical_shapes, param_slots, probe_weights
from .analysis import (
    Finding,
    Observations,
    compare,
    infer_spec,
    is_nin_like,
    structure,
    variant_names,
)
from .result import CheckResult

IMAGES = 8  # real test images the numbers are compared on
PROBE_SEED = 0
# Logits and each layer's input, against the float64 reference, relative to the largest
# absolute value (at least 1). Measured: under 2e-6 in all three frameworks at 224 px.
LOGIT_TOLERANCE = 1e-4
# Each gradient against the project's model in the same framework, relative to the largest
# absolute gradient of that parameter. Measured: up to 1.5e-3 before the second pooling (a
# near-tie in a max pool routes the gradient elsewhere after float32 rounding; float32 in
# either memory layout is that far from float64 too), under 1e-5 after it. A parameter that
# does not train, or a gradient cut off, is off by its whole size.
GRADIENT_TOLERANCE = 1e-2


class NotAModel(ValueError):
    """The object is not a model of any framework this project knows."""


def probe_of(framework: str):
    return load_backend_module(framework, "probe")


def is_model(obj) -> bool:
    """Whether `obj` is a model of a registered backend (a torch nn.Module, Gluon Block, Keras
    Model/Layer, Flax linen or NNX module, nin_jax Network) holding at least one convolution
    or dense layer (functions and classes are not)."""
    if isinstance(obj, type):
        return False
    framework = framework_of(obj)
    if framework is None:
        return False
    probe = probe_of(framework)
    return probe.is_model(obj) and probe.parameterised_layers(obj) > 0


def sample(
    size: int, channels: int, count: int = IMAGES
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(NCHW images, labels, a note or None): the first test images of Fashion-MNIST at
    `size`, or random images when the data is not installed."""
    from ...data import DatasetError, load_fashion_mnist, to_model_input

    try:
        data = load_fashion_mnist()
        grey = to_model_input(data.test_images[:count], size)
        labels = data.test_labels[:count].astype(np.int64)
        note = None
    except DatasetError:
        rng = np.random.default_rng(0)
        grey = rng.random((count, 1, size, size), dtype=np.float32)
        labels = rng.integers(0, 10, count).astype(np.int64)
        note = "Fashion-MNIST is not installed: the numbers use random images"
    # More channels: mirrored copies, so that a mix-up of input channels shows.
    copies = [grey, grey[:, :, :, ::-1], grey[:, :, ::-1, :]]
    images = np.concatenate([copies[index % 3] for index in range(channels)], axis=1)
    return np.ascontiguousarray(images), labels, note


# -- what the reader's own weights show ------------------------------------------------------


def observe(probe, net, images: np.ndarray, trace: t.ModelTrace) -> Observations:
    """What the reader's model does with its own weights on two real images: which layers'
    outputs are never negative later (a ReLU), whether it is random in inference, and where
    training mode makes it random (dropout) and how many zeros that adds (its rate)."""
    images = images[:2]
    count = len(trace.param_shapes)
    output, inputs = probe.run(net, images)
    again, _ = probe.run(net, images)
    probabilities = bool(
        output.ndim == 2 and output.min() >= 0 and np.allclose(output.sum(axis=1), 1, atol=1e-4)
    )
    relu_after: list[bool | None] = []
    for number in range(count):
        following = inputs.get(number + 1) if number + 1 < count else output
        if following is None or (number + 1 == count and probabilities):
            relu_after.append(None)
        else:
            relu_after.append(bool(following.min() >= 0))
    trained, trained_inputs = probe.run(net, images, training=True)
    second, second_inputs = probe.run(net, images, training=True)
    dropout_before = rate = None
    for number in range(count):
        first, other = trained_inputs.get(number), second_inputs.get(number)
        if first is not None and other is not None and not np.array_equal(first, other):
            dropout_before = number
            kept = np.count_nonzero(inputs[number])
            if kept:
                rate = 1.0 - np.count_nonzero(first) / kept
            break
    else:
        if not np.array_equal(trained, second):
            dropout_before = count
    return Observations(
        relu_after, not np.array_equal(output, again), dropout_before, rate, probabilities
    )


# -- the numbers -------------------------------------------------------------------------------


def fits(trace: t.ModelTrace, spec: Spec) -> bool:
    """Whether the parameterised steps have the spec's canonical shapes, one for one."""
    slots = param_slots(spec)
    if len(slots) != len(trace.param_shapes):
        return False
    expected = canonical_shapes(spec)
    return all(
        tuple(weight) == expected[f"{slot.name}.weight"]
        and (bias is None or tuple(bias) == expected[f"{slot.name}.bias"])
        for slot, (weight, bias) in zip(slots, trace.param_shapes)
    )


def slot_arrays(spec: Spec, arrays: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (arrays[f"{slot.name}.weight"], arrays[f"{slot.name}.bias"]) for slot in param_slots(spec)
    ]


def _relative(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(found - expected).max() / max(1.0, float(np.abs(expected).max())))


@dataclass
class Numbers:
    agree: bool
    largest: float | None
    text: str
    first_difference: Finding | None = None


def compare_numbers(
    probe, net, trace: t.ModelTrace, spec: Spec, images: np.ndarray, paths: list[str]
) -> Numbers:
    """The spec's probe weights on the reader's layers: logits and every layer's input
    against the float64 reference."""
    arrays = probe_weights(spec, PROBE_SEED)
    missing_bias = [
        paths[number] for number, (_, bias) in enumerate(trace.param_shapes) if bias is None
    ]
    if missing_bias:
        return Numbers(
            False,
            None,
            f"not compared: {', '.join(missing_bias)} "
            f"{'has' if len(missing_bias) == 1 else 'have'} no bias",
        )
    probe.set_weights(net, slot_arrays(spec, arrays))
    output, inputs = probe.run(net, images)
    expected = reference.forward(spec, arrays, images, capture=True)
    if output.size == expected.logits.size:
        output = output.reshape(expected.logits.shape)
    what = (
        f"with {spec.describe()}'s reference weights on your layers, on {len(images)} "
        "Fashion-MNIST test images"
    )
    if output.shape == expected.logits.shape:
        largest = _relative(output, expected.logits)
        if largest <= LOGIT_TOLERANCE:
            return Numbers(
                True,
                largest,
                f"{what}: logits within {largest:.1e} of common's "
                f"float64 reference (tolerance {LOGIT_TOLERANCE:g}, "
                "relative to the largest logit)",
            )
    else:
        largest = None
    for number, slot in enumerate(param_slots(spec)):
        found, wanted = inputs.get(number), expected.slot_inputs[slot.name]
        if found is None:
            continue
        if found.shape != wanted.shape:
            cause = f"is {found.shape[1:]}, the reference's {wanted.shape[1:]}"
        else:
            gap = _relative(found, wanted)
            if gap <= LOGIT_TOLERANCE:
                continue
            cause = f"differs from the reference's by {gap:.2g}" + _why_input_differs(found, wanted)
        before = (
            f"between {param_slots(spec)[number - 1].name} and {slot.name}"
            if number
            else f"before {slot.name}, the first layer"
        )
        finding = Finding(
            "numbers",
            f"the first difference is {before}: the input of {paths[number]} ({slot.name}) {cause}",
        )
        return Numbers(False, largest, f"{what}: they differ, first {before}", finding)
    gap = "" if largest is None else f" by {largest:.2g}"
    finding = Finding(
        "numbers",
        f"every layer's input agrees, but the logits differ{gap}: the "
        f"head after {param_slots(spec)[-1].name} differs"
        + _why_head_differs(output, expected, spec),
    )
    return Numbers(False, largest, f"{what}: the logits differ{gap}", finding)


def _why_input_differs(found: np.ndarray, wanted: np.ndarray) -> str:
    if found.min() < 0 <= wanted.min():
        return "; it has negative values where the reference's has none (a missing ReLU?)"
    return ""


def _why_head_differs(output: np.ndarray, expected, spec: Spec) -> str:
    if output.shape != expected.logits.shape:
        return f" (the output is {output.shape}, the reference's {expected.logits.shape})"
    maps = expected.slot_outputs[param_slots(spec)[-1].name]
    if _relative(output, maps.max(axis=(2, 3))) <= LOGIT_TOLERANCE:
        return " (global max pooling instead of average)"
    return ""


def compare_gradients(
    probe, net, spec: Spec, images: np.ndarray, labels: np.ndarray, paths: list[str]
) -> tuple[bool, float | None, str, list[Finding]]:
    """The reader's gradients against the project's model of `spec` in the same framework,
    both holding the spec's probe weights, with dropout off."""
    ours = probe.reference(spec)
    probe.trace(ours, (1, spec.in_channels, images.shape[2], images.shape[3]))
    arrays = slot_arrays(spec, probe_weights(spec, PROBE_SEED))
    probe.set_weights(ours, arrays)
    expected = probe.gradients(ours, images, labels)
    found = probe.gradients(net, images, labels)
    findings, largest = [], 0.0
    for number, ((weight, bias), (want_weight, want_bias)) in enumerate(zip(found, expected)):
        for kind, value, wanted in (("weight", weight, want_weight), ("bias", bias, want_bias)):
            if value is None:
                findings.append(
                    Finding(
                        "gradients",
                        f"{paths[number]}'s {kind} gets no gradient: it would not train",
                    )
                )
                continue
            gap = float(np.abs(value - wanted).max() / max(float(np.abs(wanted).max()), 1e-12))
            largest = max(largest, gap)
            if gap > GRADIENT_TOLERANCE:
                findings.append(
                    Finding(
                        "gradients",
                        f"{paths[number]}'s {kind} gradient differs "
                        f"from nin's by {gap:.2g} of its size",
                    )
                )
    agree = not findings
    text = (
        f"every parameter's gradient on one batch ({len(images)} images, dropout off) "
        f"within {largest:.1e} of this project's {spec.describe()} in the same framework "
        f"(tolerance {GRADIENT_TOLERANCE:g})"
        if agree
        else f"{len(findings)} parameter(s) would train differently from this project's "
        f"{spec.describe()}"
    )
    return agree, largest, text, findings


# -- tables ------------------------------------------------------------------------------------


def _paths(steps) -> str:
    paths = [step.path for step in steps]
    if not paths:
        return "-"
    return paths[0] if len(paths) == 1 else f"{paths[0]} .. {paths[-1]}"


def layer_rows(
    spec: Spec, size: int, trace: t.ModelTrace, found, findings: list[Finding]
) -> list[list]:
    """Each of the book's layers beside the reader's layers that do its work; "NO" where the
    shape differs or a finding names the layer."""
    rows = []
    block = -1
    head_pools = [
        step
        for step in found.head
        if step.kind in (t.GLOBAL_AVG_POOL, t.GLOBAL_MAX_POOL, t.AVG_POOL, t.MAX_POOL)
    ]
    head_flat = [step for step in found.head if step.kind in (t.FLATTEN, t.RESHAPE)]
    texts = [finding.text for finding in findings]

    def named(name: str, steps) -> bool:
        return any(
            re.search(rf"\b{re.escape(name)}\b", text)
            or any(
                re.search(rf"(^|\s|\(){re.escape(step.path)}(,|\)|\s|$)", text) for step in steps
            )
            for text in texts
        )

    for name, layer, shape in zip(
        spec.layer_names(), spec.layers, layer_shapes(spec, (1, spec.in_channels, size, size))
    ):
        wanted = shape.output_shape
        kind = type(layer).__name__
        if isinstance(layer, ConvBlock):
            block += 1
            steps = found.blocks[block] if block < len(found.blocks) else []
            got = steps[-1].output_shape if steps else None
        elif kind in ("MaxPool", "Dropout"):
            between = found.between[block] if block < len(found.between) else []
            target = "max_pool" if kind == "MaxPool" else "dropout"
            steps = [
                step
                for step in between
                if (step.kind in (t.MAX_POOL, t.AVG_POOL)) == (target == "max_pool")
                and (step.kind == t.DROPOUT) == (target == "dropout")
            ]
            following = found.blocks[block + 1] if block + 1 < len(found.blocks) else None
            got = following[0].input_shape if following else None
        elif kind == "GlobalAvgPool":
            steps = head_pools
            got = head_pools[-1].output_shape if head_pools else None
        elif kind == "Flatten":
            steps = head_flat
            got = trace.output_shape
        else:
            steps, got = [], None
        # (Keras's global pooling drops the 1x1 unless keepdims=True: the same pooling.)
        agree = got is not None and (
            tuple(got) == tuple(wanted)
            or (kind == "GlobalAvgPool" and tuple(got) == tuple(wanted[:2]))
        )
        unseen = got is None and trace.error is None and kind == "GlobalAvgPool"
        same = "NO" if named(name, steps) or not (agree or unseen) else "yes" if agree else "-"
        rows.append([name, _shape(wanted), _paths(steps), _shape(got), same])
    for extra in found.blocks[block + 1 :]:
        rows.append(["(none)", "-", _paths(extra), _shape(extra[-1].output_shape), "NO"])
    return rows


def _shape(shape) -> str:
    return "-" if shape is None else "(" + ", ".join(map(str, shape)) + ")"


def param_rows(spec: Spec, trace: t.ModelTrace, found) -> list[list]:
    sizes = [
        int(np.prod(weight)) + (int(np.prod(bias)) if bias else 0)
        for weight, bias in trace.param_shapes
    ]
    rows, block = [], -1
    for params in layer_params(spec):
        if params.total == 0:
            continue
        block += 1
        steps = found.blocks[block] if block < len(found.blocks) else []
        yours = sum(sizes[step.param] for step in steps if step.param is not None)
        rows.append([params.name, params.total, yours, params.total == yours])
    for extra in found.blocks[block + 1 :]:
        rows.append(["(none)", 0, sum(sizes[step.param] for step in extra), False])
    for step in found.dense:
        rows.append(["(none)", 0, sizes[step.param], False])
    total = sum(params.total for params in layer_params(spec))
    rows.append(["total", total, trace.total_params, total == trace.total_params])
    return rows


# -- the check ---------------------------------------------------------------------------------


def check_model(
    net,
    spec: Spec | str | None = None,
    *,
    size: int | None = None,
    name: str = "net",
    source: str | None = None,
    notes: list[str] | None = None,
    **options,
) -> CheckResult:
    """Check `net` (a torch nn.Module, Gluon Block, Keras Model or Flax module) against `spec`
    (the book's NiN by default; `options` are make_spec's, e.g. ``num_1x1=1``) at `size` pixels.

    Returns a :class:`CheckResult`: ``print(result)`` shows the report, ``result.passed``
    says whether `net` is the reference. Nothing of `net` is changed. `name` is what the
    report calls the model, its layers being ``name.0``, ``name.conv1``...
    """
    spec = make_spec(spec, **options)
    size = size or spec.input_size
    framework = framework_of(net)
    if framework is None or not probe_of(framework).is_model(net):
        raise NotAModel(
            f"{type(net).__module__}.{type(net).__name__} is not a model of "
            f"{listed(FRAMEWORK_LABELS.values(), 'or')}"
        )
    probe = probe_of(framework)
    notes = list(notes or [])
    images, labels, note = sample(size, spec.in_channels)
    notes += [note] if note else []
    input_shape = (1, spec.in_channels, size, size)
    with probe.preserved(net, input_shape) as changed:
        notes += changed
        trace = probe.trace(net, input_shape)
        _name_paths(trace, name)
        found = structure(trace)
        result = CheckResult(
            source=source or name,
            framework=framework,
            framework_label=FRAMEWORK_LABELS[framework],
            model_type=trace.model_type,
            reference=spec.describe(),
            size=size,
            status=1,
            verdict="",
            notes=notes,
            param_rows=param_rows(spec, trace, found),
        )
        if not _failed(result, spec, size, trace, found):
            _judge(result, probe, net, spec, size, trace, found, images, labels)
    result.layer_rows = layer_rows(spec, size, trace, found, result.findings)
    return result


def _name_paths(trace: t.ModelTrace, name: str) -> None:
    """The probe's paths are relative to the model; the report's start at its name."""

    def full(path):
        return f"{name}.{path}" if path else name

    for step in trace.steps:
        step.path = full(step.path)
    if trace.error and trace.error_at is not None:
        trace.error = f"in {full(trace.error_at)}: {trace.error}"


def _failed(result: CheckResult, spec: Spec, size: int, trace: t.ModelTrace, found) -> bool:
    """Judge a model that is not a NiN, or fails at this size; False for any other."""
    # (A pass that failed has not shown every layer: only a dense layer says "not a NiN".)
    not_nin = is_nin_like(found) if not trace.error or found.dense else None
    failure = Finding("layers", f"it fails at {size}x{size} px: {trace.error}")
    if not_nin:
        result.findings = [Finding("layers", f"not a NiN: {not_nin}")]
        result.findings += [failure] if trace.error else []
        result.verdict = f"not a NiN: {not_nin}"
        return True
    if trace.error:
        structural = [
            item
            for item in compare(spec, size, trace, found, Observations([]))
            if item.area == "layers"
        ]
        result.findings = structural + [failure]
        result.verdict = f"it fails at {size}x{size} px: {trace.error}" + (
            f"; first, {structural[0].text}" if structural else ""
        )
        return True
    return False


def _judge(
    result: CheckResult,
    probe,
    net,
    spec: Spec,
    size: int,
    trace: t.ModelTrace,
    found,
    images: np.ndarray,
    labels: np.ndarray,
) -> None:
    """A NiN-like model that runs: its structure, activations and dropout, then its numbers
    and gradients, against `spec`, or against the known variant it turns out to be."""
    seen = observe(probe, net, images, trace)
    candidate = infer_spec(found, seen, spec.in_channels, spec)
    variant = variant_names(candidate, spec) if candidate is not None else None
    known = bool(variant and variant[0] and not variant[2])
    target = candidate if known else spec
    result.findings = compare(target, size, trace, found, seen)
    result.activations = _activation_text(seen, target, found)
    result.dropout = _dropout_text(seen, found, target)
    paths = [step.path for step in sorted(trace.param_steps, key=lambda step: step.param)]
    agree = False
    if not fits(trace, target):
        result.numbers = (
            f"not compared: your parameters do not have the shapes of {target.describe()}'s"
        )
    else:
        numbers = compare_numbers(probe, net, trace, target, images, paths)
        result.numbers, result.max_logit_difference = numbers.text, numbers.largest
        agree = numbers.agree
        if numbers.first_difference is not None and not any(
            finding.area in ("layers", "head", "activations") for finding in result.findings
        ):
            result.findings.append(numbers.first_difference)
        if agree:
            agree, largest, text, findings = compare_gradients(
                probe, net, target, images, labels, paths
            )
            result.gradients, result.max_gradient_difference = text, largest
            result.findings += findings
    asked = reference_label(spec)
    if known and agree and not result.findings:
        names, flags, _ = variant
        result.variant_flags = flags
        result.verdict = (
            f"this is {candidate.describe()} ({'; '.join(names)}), not {asked}: "
            f"`{' '.join(flags)}` checks it as that"
        )
    elif agree and not result.findings:
        result.status = 0
        result.verdict = f"this is {asked}: the same layers, parameters, numbers and gradients"
    else:
        first = result.findings[0].text if result.findings else result.numbers
        result.verdict = f"it differs from {asked}: {first}"
        if variant and not known:
            result.verdict += (
                f" (as it is, it is {candidate.describe()}: "
                f"`{' '.join(variant[1])}` checks it as that)"
            )


def reference_label(spec: Spec) -> str:
    """ "the book's NiN" for the default spec, else the spec's description."""
    return "the book's NiN" if spec.to_dict() == make_spec("nin").to_dict() else spec.describe()


def _activation_text(seen: Observations, spec: Spec, found) -> str:
    known = [relu for relu in seen.relu_after if relu is not None]
    wanted = [
        conv.relu for layer in spec.layers if isinstance(layer, ConvBlock) for conv in layer.convs
    ]
    if len(known) != len(seen.relu_after) or len(seen.relu_after) != len(wanted):
        return f"{sum(known)} of {len(seen.relu_after)} layers' outputs are never negative"
    if known == wanted:
        last = "" if wanted[-1] else ", but not the last (the linear head)"
        return (
            f"a ReLU after each convolution{last}, as in {spec.describe()} (found by the "
            "numbers: what each convolution passes on is never negative)"
        )
    return (
        f"ReLU after {sum(known)} of {len(known)} convolutions; {spec.describe()} has {sum(wanted)}"
    )


def _dropout_text(seen: Observations, found, spec: Spec) -> str:
    steps = [step for step in found.steps if step.kind == t.DROPOUT]
    names = spec.layer_names()
    wanted = [
        f"Dropout({layer.rate:g}) between {names[index - 1]} and {names[index + 1]}"
        for index, layer in enumerate(spec.layers)
        if isinstance(layer, Dropout)
    ]
    book = f"{spec.describe()} has {wanted[0] if wanted else 'none'}"
    if steps:
        where = "; ".join(
            f"{step.detail}({step.config['rate']:g}) at {step.path}" for step in steps
        )
        return f"{where}; {book}"
    if seen.dropout_before is not None:
        rate = f", rate about {seen.dropout_rate:.2f}" if seen.dropout_rate is not None else ""
        return (
            f"no dropout layer, but training mode is random from the "
            f"{_ordinal(seen.dropout_before + 1)} convolution's input on{rate}; {book}"
        )
    return f"none: training mode gives the same output twice; {book}"


def _ordinal(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"
