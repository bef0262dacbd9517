"""common.resources: the chapter's parameter/FLOP/memory calculator, checked against PyTorch.

Memory is checked three ways against PyTorch on CPU (NiN, batch 32, 96x96):

* exactly, tensor by tensor, against what autograd really keeps: every tensor packed through
  ``torch.autograd.graph.saved_tensors_hooks`` during forward and loss, deduplicated by storage
  (``untyped_storage().data_ptr()``, so views and a tensor saved by two ops count once), minus
  the parameters' storages (conv/linear weights are saved too, but counted as parameters);
  plus parameters, gradients after backward and the optimizers' state buffers, measured;
* within 15% against the real peak of one steady-state training step, from the profiler's
  memory timeline (``profile(profile_memory=True, record_shapes=True, with_stack=True)`` and
  ``export_memory_timeline``), which follows every tensor the profiled ops create or use
  (parameters and the input batch appear as pre-existing) and categorises them; the peak also
  holds backward-only gradient buffers and oneDNN layout-reorder copies that the estimate does
  not model, which is why it is a few percent above it;
* inference against the same timeline's peak of an eval-mode, no-grad forward pass.
"""

from __future__ import annotations

import ast
import json
import warnings
from collections import Counter
from pathlib import Path

import pytest

from common import resources as res
from common.shapes import layer_params
from common.spec import Conv, alexnet_spec, nin_spec

from .conftest import FRAMEWORK_MODULES, get_backend, run_python, skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = tuple(sorted(FRAMEWORK_MODULES | {"jax"}))


# ----------------------------------------------------------------------------- parameters


def test_exercise3_block_params_rgb_without_bias():
    result = res.resources(nin_spec(in_channels=3), bias=False)
    blocks = [layer.params for layer in result.layers if layer.kind == "nin_block"]
    assert blocks == [53_280, 745_472, 1_179_648, 34_760]
    assert all(layer.biases == 0 for layer in result.layers)


def test_totals():
    assert res.resources(nin_spec()).params == 1_992_166
    assert res.resources("nin").params == 1_992_166
    assert res.resources(alexnet_spec()).params == 46_764_746


@pytest.mark.parametrize(
    "spec",
    [nin_spec(), nin_spec(in_channels=3, num_1x1=1), alexnet_spec()],
    ids=["nin", "nin_rgb_1x1", "alexnet"],
)
def test_layers_match_shapes_module_and_bias_flag(spec):
    with_bias = res.resources(spec)
    without = res.resources(spec, bias=False)
    assert [layer.name for layer in with_bias.layers] == spec.layer_names()
    expected = layer_params(spec)
    assert [(layer.name, layer.weights, layer.biases) for layer in with_bias.layers] == [
        (p.name, p.weights, p.biases) for p in expected
    ]
    assert [layer.params for layer in with_bias.layers] == [p.total for p in expected]
    # bias=False drops exactly the biases and nothing else
    assert [layer.weights for layer in without.layers] == [
        layer.weights for layer in with_bias.layers
    ]
    assert without.biases == 0
    assert with_bias.params - without.params == with_bias.biases > 0
    assert without.flops == with_bias.flops  # biases are not counted as FLOPs
    assert (
        with_bias.training_memory().params - without.training_memory().params
        == 4 * with_bias.biases
    )


def test_macs_flops_and_activations_by_hand():
    # NiN block 1 at 224, one grey image: 11x11 stride 4 -> 54x54, then two 1x1 convs.
    result = res.resources(nin_spec(), 224, batch_size=2)
    block = result.layer("nin_block_1")
    assert block.output_shape == (2, 96, 54, 54)
    spatial = 2 * 54 * 54
    assert block.macs == spatial * 96 * (1 * 11 * 11 + 96 + 96)
    assert block.flops == 2 * block.macs
    assert block.activations == 2 * 96 * 54 * 54
    assert result.layer("max_pool_1").flops == 0
    assert result.layers[-1].output_shape == (2, 10)
    assert result.flops == 2 * result.macs == sum(layer.flops for layer in result.layers)
    dense = res.resources(alexnet_spec(), batch_size=3).layer("dense_1")
    assert dense.macs == 3 * 6400 * 4096


def test_validation():
    with pytest.raises(ValueError, match="at least"):
        res.resources(nin_spec(), 40)
    with pytest.raises(ValueError, match="exactly 224x224"):
        res.resources(alexnet_spec(), 96)
    with pytest.raises(ValueError, match="batch_size"):
        res.resources(nin_spec(), 96, batch_size=0)
    with pytest.raises(ValueError, match="input_size"):
        res.resources(nin_spec(), 96.0)
    with pytest.raises(ValueError, match="optimizer"):
        res.resources().training_memory("rmsprop")
    with pytest.raises(ValueError, match="device"):
        res.resources().training_memory(device="tpu")
    assert res.resources(nin_spec(), 96).input_shape == (1, 1, 96, 96)
    assert res.resources(nin_spec(input_size=96)).input_size == 96


# ----------------------------------------------------------------------------- memory model


def test_training_memory_breakdown():
    result = res.resources(nin_spec(), 96, batch_size=32)
    params = 4 * 1_992_166
    memories = {name: result.training_memory(name) for name in ("sgd", "momentum", "adam")}
    for copies, memory in zip((0, 1, 2), memories.values()):
        assert memory.params == memory.grads == params
        assert memory.optimizer_state == copies * params
        assert memory.total == (2 + copies) * params + memory.activations
    assert len({memory.activations for memory in memories.values()}) == 1
    # CPU dropout keeps a float32 noise tensor, CUDA's native_dropout a bool mask
    mask = 32 * 384
    assert (
        result.training_memory(device="cpu").activations
        - result.training_memory(device="cuda").activations
    ) == 3 * mask
    # batch-independent parts stay, activations scale with the batch
    double = res.resources(nin_spec(), 96, batch_size=64).training_memory()
    assert double.params == params
    assert double.activations == pytest.approx(2 * memories["sgd"].activations, rel=1e-6)
    assert "total" in memories["sgd"].table() and "MiB" in str(memories["sgd"])


def test_inference_memory_is_params_plus_largest_pair():
    result = res.resources(nin_spec(), 224)
    op, pair = result.largest_inference_pair()
    # conv1 of block 1 writes a 96x54x54 map that ReLU (not in place) copies
    assert op == "nin_block_1.relu1"
    assert pair == 2 * 4 * 96 * 54 * 54
    assert result.inference_memory() == 4 * result.params + pair
    assert res.resources(nin_spec(), 224, batch_size=4).largest_inference_pair()[1] == 4 * pair


def test_formatting_and_comparison():
    assert res.format_bytes(7_968_664) == "7.6 MiB"
    assert res.format_bytes(512) == "512 B"
    assert res.format_bytes(3 * 2**30) == "3.0 GiB"
    assert res.format_count(1_992_166) == "1.99 M"
    assert res.format_count(46_764_746) == "46.8 M"
    assert res.format_count(12) == "12"
    # Rounded, never cut: below the first prefix too, and before the unit is chosen.
    assert res.format_count(12.7) == "13" and res.format_bytes(1023.6) == "1.0 KiB"
    assert res.format_count(999_499) == "999 K" and res.format_count(999_500) == "1 M"
    assert res.format_flops(7.69e8) == "0.769 GFLOPs"

    result = res.resources()
    lines = result.table().splitlines()
    assert len(lines) == 2 + len(result.layers) + 1
    assert lines[-1].startswith("total (1.99 M params)") and "1,992,166" in lines[-1]
    assert "GFLOPs" in lines[-1] and "MiB" in lines[-1]
    assert result.table(markdown=True).startswith("| layer")

    table = res.compare_models([nin_spec(), alexnet_spec()], 224, 32)
    nin_row, alexnet_row = table.splitlines()[2:]
    assert nin_row.split()[0] == "nin" and "1,992,166" in nin_row and "1.99 M" in nin_row
    assert alexnet_row.split()[0] == "alexnet" and "46,764,746" in alexnet_row
    assert "MiB" in alexnet_row and "GFLOPs" in alexnet_row
    assert res.compare_models(["nin", "alexnet"], markdown=True).startswith("| model")


def test_module_imports_no_framework():
    tree = ast.parse((ROOT / "common" / "resources.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    assert not imported & set(FRAMEWORKS)
    code = (
        "import sys, common.resources as r; r.compare_models(); "
        f"print([m for m in {FRAMEWORKS!r} if m in sys.modules])"
    )
    assert run_python(code).strip() == "[]"


# ----------------------------------------------------------------------------- against PyTorch


@pytest.fixture(scope="module")
def torch():
    get_backend("torch")  # skipped (or, in CI, failed) when PyTorch is missing
    import torch

    return torch


def _net(spec, train):
    from nin_torch import build_nin

    net = build_nin(spec)
    return net.train(train)


@pytest.mark.parametrize(
    "spec, size, batch",
    [
        (nin_spec(), 224, 1),
        (nin_spec(), 96, 2),
        (nin_spec(num_1x1=1), 224, 1),
        (alexnet_spec(), 224, 1),
    ],
    ids=["nin224", "nin96x2", "nin_1x1", "alexnet224"],
)
def test_flops_match_torch_flop_counter(torch, spec, size, batch):
    from torch.utils.flop_counter import FlopCounterMode

    net = _net(spec, train=False)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.zeros(batch, spec.in_channels, size, size))
    result = res.resources(spec, size, batch)
    assert result.flops == counter.get_total_flops()
    per_module = {name: sum(counts.values()) for name, counts in counter.get_flop_counts().items()}
    root = type(net).__name__
    for layer in result.layers:
        assert per_module.get(f"{root}.{layer.name}", 0) == layer.flops, layer.name


def _train_step(torch, net, optimizer, x, y):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    optimizer.step()


def _optimizer(torch, name, params):
    if name == "adam":
        return torch.optim.Adam(params)
    return torch.optim.SGD(params, lr=0.01, momentum=0.9 if name == "momentum" else 0.0)


def _batch(torch, spec, size, batch):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, spec.in_channels, size, size, generator=generator)
    y = torch.randint(0, spec.num_classes, (batch,), generator=generator)
    return x, y


SPEC, SIZE, BATCH = nin_spec(), 96, 32


def test_saved_tensors_match_autograd_exactly(torch):
    net = _net(SPEC, train=True)
    x, y = _batch(torch, SPEC, SIZE, BATCH)
    param_storages = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in param_storages:
            saved.setdefault(
                storage.data_ptr(),
                (tuple(tensor.shape), storage.nbytes(), str(tensor.dtype).replace("torch.", "")),
            )
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = torch.nn.functional.cross_entropy(net(x), y)
    assert x.untyped_storage().data_ptr() in saved  # the input batch is kept

    estimate = res.resources(SPEC, SIZE, BATCH)
    model = estimate.saved_tensors("cpu")
    assert Counter((t.nbytes, t.dtype) for t in model) == Counter(
        (nbytes, dtype) for _, nbytes, dtype in saved.values()
    )
    measured_activations = sum(nbytes for _, nbytes, _ in saved.values())
    assert estimate.training_memory("sgd").activations == measured_activations

    # parameters, gradients and optimizer state, measured after a real step
    loss.backward()
    params = sum(p.untyped_storage().nbytes() for p in net.parameters())
    grads = sum(p.grad.untyped_storage().nbytes() for p in net.parameters())
    for name in ("sgd", "momentum", "adam"):
        optimizer = _optimizer(torch, name, net.parameters())
        optimizer.step()
        state = sum(
            value.untyped_storage().nbytes()
            for per_param in optimizer.state.values()
            for key, value in per_param.items()
            if torch.is_tensor(value) and key != "step"
        )
        memory = estimate.training_memory(name)
        assert (memory.params, memory.grads, memory.optimizer_state) == (params, grads, state)
        measured = params + grads + state + measured_activations
        assert memory.total == pytest.approx(measured, rel=0.15)
        assert memory.total == measured  # in fact exact


def _timeline_peak(torch, run, tmp_path) -> int:
    """Peak bytes on the CPU over the profiler's memory timeline of `run()`."""
    from torch.profiler import ProfilerActivity, profile

    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        run()
    path = tmp_path / "memory.json"
    if not hasattr(prof, "export_memory_timeline"):  # deprecated; gone in some future torch
        skip_or_fail("this torch has no profiler memory timeline")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        prof.export_memory_timeline(str(path), device="cpu")
    _, sizes = json.loads(path.read_text())  # [times, [bytes by category]]
    return max(sum(point) for point in sizes)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_training_memory_within_6_percent_of_profiled_peak(torch, tmp_path, optimizer):
    net = _net(SPEC, train=True)
    x, y = _batch(torch, SPEC, SIZE, BATCH)
    opt = _optimizer(torch, optimizer, net.parameters())
    _train_step(torch, net, opt, x, y)  # steady state: optimizer state exists, oneDNN warmed up
    peak = _timeline_peak(torch, lambda: _train_step(torch, net, opt, x, y), tmp_path)
    estimate = res.resources(SPEC, SIZE, BATCH).training_memory(optimizer).total
    # measured (NiN, 32x1x96x96), peak vs estimate: sgd 55.7 MB vs 52.6 MB (-5.6%),
    # momentum 63.7 vs 60.6 (-4.9%), adam 71.7 vs 68.5 (-4.4%)
    assert estimate == pytest.approx(peak, rel=0.06)  # the README's figure


def test_inference_memory_against_profiled_peak(torch, tmp_path):
    net = _net(SPEC, train=False)
    x, _ = _batch(torch, SPEC, SIZE, BATCH)

    def forward():
        with torch.no_grad():
            net(x)

    forward()
    peak = _timeline_peak(torch, forward, tmp_path)
    result = res.resources(SPEC, SIZE, BATCH)
    estimate = result.inference_memory()
    # The estimate (parameters + largest input/output pair) is a floor. PyTorch also holds the
    # caller's input batch, and a oneDNN convolution transiently keeps one more activation-sized
    # copy in a blocked layout (plus a reordered weight): measured 27.0 MB vs 19.9 MB estimated
    # = parameters 8.0 + pair 11.9, and 27.0 = 19.9 + input 1.2 + one activation 5.9 + 0.04.
    largest_activation = 4 * max(layer.activations for layer in result.layers)
    input_batch = 4 * BATCH * SPEC.in_channels * SIZE * SIZE
    assert estimate <= peak <= (estimate + input_batch + largest_activation) * 1.01


def test_the_readmes_figures():
    """README: NiN trains in ~952 MiB and infers in ~281 MiB (batch 128, SGD), AlexNet 845 and
    452 MiB; one 1x1 convolution per block leaves 1,769,112 parameters."""
    from common.resources import format_bytes, resources
    from common.shapes import count_params
    from common.spec import make_spec

    figures = {
        name: (
            format_bytes(result.training_memory("sgd").total),
            format_bytes(result.inference_memory()),
        )
        for name, result in ((name, resources(name, 224, 128)) for name in ("nin", "alexnet"))
    }
    assert figures == {"nin": ("952.4 MiB", "281.0 MiB"), "alexnet": ("844.9 MiB", "451.8 MiB")}
    assert count_params(make_spec("nin", num_1x1=1)) == 1_769_112


# ----------------------------------------------------------------------------- by hand
# The tests against PyTorch above need it installed; these recompute the documented counting
# rules by hand for NiN at 96x96 (batch 32), where every layer's size is easy to follow:
# block 1 -> 96x22x22, pool 1 -> 10x10, block 2 -> 256x10x10, pool 2 -> 4x4, block 3 ->
# 384x4x4, pool 3 -> 384x1x1, block 4 -> 10x1x1.


def _by_hand_saved_bytes(batch: int, mask_bytes: int) -> int:
    float32, int64 = 4, 8
    return (
        batch * 96 * 96 * float32  # the input batch, saved by the first convolution
        + 3 * batch * 96 * 22 * 22 * float32  # block 1: three ReLU outputs
        + batch * 96 * 10 * 10 * int64  # pool 1: argmax indices (its input is a ReLU output)
        + batch * 96 * 10 * 10 * float32  # block 2's input (pool 1's output)
        + 3 * batch * 256 * 10 * 10 * float32
        + batch * 256 * 4 * 4 * int64
        + batch * 256 * 4 * 4 * float32
        + 3 * batch * 384 * 4 * 4 * float32
        + batch * 384 * int64  # pool 3's indices
        + batch * 384 * mask_bytes  # dropout's mask; its input is not saved
        + batch * 384 * float32  # block 4's input (dropout's output)
        + 3 * batch * 10 * float32  # block 4's ReLU outputs; pooling and flatten save nothing
        + batch * 10 * float32  # the loss: log-softmax output,
        + batch * int64  # the int64 targets
        + float32  # and a one-element total weight
    )


def test_saved_activations_follow_the_documented_rules_by_hand():
    result = res.resources(nin_spec(), 96, batch_size=32)
    assert result.training_memory(device="cpu").activations == _by_hand_saved_bytes(32, 4)
    assert result.training_memory(device="cuda").activations == _by_hand_saved_bytes(32, 1)
    saved = result.saved_tensors()
    assert len({tensor.storage for tensor in saved}) == len(saved)  # each storage once
    assert saved[0] == res.SavedTensor("input", "input batch", (32, 1, 96, 96), "float32", 1)
    assert [(t.layer, t.what, t.shape, t.dtype) for t in saved[-3:]] == [
        ("loss", "log-softmax output", (32, 10), "float32"),
        ("loss", "targets", (32,), "int64"),
        ("loss", "total weight", (), "float32"),
    ]
    pool = [t for t in saved if t.layer == "max_pool_1"]
    assert [(t.what, t.shape, t.dtype, t.nbytes) for t in pool] == [
        ("indices", (32, 96, 10, 10), "int64", 32 * 96 * 100 * 8),
        ("output", (32, 96, 10, 10), "float32", 32 * 96 * 100 * 4),  # block 2's input
    ]
    assert [(t.what, t.dtype) for t in saved if t.layer == "dropout"] == [
        ("mask", "float32"),
        ("output", "float32"),  # block 4's input
    ]
    assert [(t.what, t.dtype) for t in result.saved_tensors("cuda") if t.layer == "dropout"] == [
        ("mask", "bool"),
        ("output", "float32"),
    ]
    assert [t.what for t in saved if t.layer == "nin_block_2"] == [
        "relu1 output",
        "relu2 output",
        "relu3 output",
    ]
    # without dropout (rate 0) no mask is saved, and block 4 saves pool 3's output instead
    no_dropout = res.resources(nin_spec(dropout=0.0), 96, batch_size=32).training_memory()
    assert no_dropout.activations == _by_hand_saved_bytes(32, 0)


def test_a_dense_network_saves_inputs_and_relu_outputs():
    """AlexNet's classifier: each dense layer saves its input; the ReLU output it makes is the
    next layer's input; the last dense layer has no ReLU, its output goes to the loss."""
    result = res.resources(alexnet_spec(), 224, batch_size=2)
    tail = [(t.layer, t.what, t.shape, t.dtype) for t in result.saved_tensors()[-11:]]
    assert tail == [
        ("max_pool_3", "indices", (2, 256, 5, 5), "int64"),
        # pool 3's output, saved by dense_1 through Flatten's view: one storage, counted once
        ("max_pool_3", "output", (2, 6400), "float32"),
        ("dense_1", "relu output", (2, 4096), "float32"),
        ("dropout_1", "mask", (2, 4096), "float32"),
        ("dropout_1", "output", (2, 4096), "float32"),
        ("dense_2", "relu output", (2, 4096), "float32"),
        ("dropout_2", "mask", (2, 4096), "float32"),
        ("dropout_2", "output", (2, 4096), "float32"),
        # dense_3 has no ReLU: its output goes to the loss, which keeps its log-softmax
        ("loss", "log-softmax output", (2, 10), "float32"),
        ("loss", "targets", (2,), "int64"),
        ("loss", "total weight", (), "float32"),
    ]


def test_inference_memory_of_the_dense_network():
    """AlexNet at 224: its largest pair is conv 1's 96x54x54 output and its ReLU copy."""
    result = res.resources(alexnet_spec(), 224, batch_size=1)
    op, pair = result.largest_inference_pair()
    assert op == "conv_1.relu1" and pair == 2 * 4 * 96 * 54 * 54
    assert result.inference_memory() == 4 * 46_764_746 + pair
    tiny = res.resources(nin_spec(), 67)
    assert tiny.largest_inference_pair() == ("nin_block_1.relu1", 2 * 4 * 96 * 15 * 15)


def test_layer_rows_by_hand():
    result = res.resources(nin_spec(), 96, batch_size=32)
    assert result.input_shape == (32, 1, 96, 96) and (result.batch_size, result.bias) == (32, True)
    block = result.layer("nin_block_2")
    assert block == res.LayerResources(
        "nin_block_2",
        "nin_block",
        (32, 256, 10, 10),
        256 * 96 * 25 + 2 * 256 * 256,
        3 * 256,
        32 * 100 * 256 * (96 * 25 + 256 + 256),
        2 * 32 * 100 * 256 * (96 * 25 + 256 + 256),
        32 * 256 * 100,
    )
    assert block.params == block.weights + block.biases
    pool = result.layer("max_pool_2")
    assert (pool.kind, pool.output_shape, pool.params, pool.macs, pool.activations) == (
        "max_pool",
        (32, 256, 4, 4),
        0,
        0,
        32 * 256 * 16,
    )
    assert result.layer("flatten").output_shape == (32, 10)
    assert result.weights + result.biases == result.params == 1_992_166
    assert result.biases == 3 * (96 + 256 + 384 + 10)
    assert result.macs == sum(layer.macs for layer in result.layers)
    assert result.activations == sum(layer.activations for layer in result.layers)
    with pytest.raises(KeyError, match="no layer 'conv_1'; layers are nin_block_1, max_pool_1"):
        result.layer("conv_1")
    dense = res.resources(alexnet_spec(), 224, batch_size=3).layer("dense_2")
    assert (dense.kind, dense.weights, dense.biases, dense.macs, dense.flops) == (
        "dense",
        4096 * 4096,
        4096,
        3 * 4096 * 4096,
        2 * 3 * 4096 * 4096,
    )


def test_formatting_at_the_unit_boundaries():
    assert res.format_bytes(0) == "0 B"
    assert res.format_bytes(1023) == "1023 B"
    assert res.format_bytes(1024) == "1.0 KiB"
    assert res.format_bytes(1536) == "1.5 KiB"
    assert res.format_bytes(1024**2 - 1) == "1.0 MiB"  # rounded before the unit is chosen
    assert res.format_bytes(1024**2) == "1.0 MiB"
    assert res.format_bytes(5 * 1024**4) == "5.0 TiB"
    assert res.format_bytes(5000 * 1024**4) == "5000.0 TiB"  # no unit above TiB
    assert res.format_bytes(-2048) == "-2.0 KiB"
    assert res.format_count(999) == "999"
    assert res.format_count(999.4) == "999"
    assert res.format_count(999.5) == "1 K"
    assert res.format_count(1000) == "1 K"
    assert res.format_count(123_456) == "123 K"
    assert res.format_count(2.5e9, "FLOPs") == "2.5 GFLOPs"
    assert res.format_count(7e15) == "7e+03 T"
    assert res.format_count(12, "B") == "12 B"
    assert res.format_flops(1.5e9) == "1.5 GFLOPs"
    assert res.format_flops(0) == "0 GFLOPs"


def test_the_memory_breakdown_table_and_summary():
    result = res.resources(nin_spec(), 96, batch_size=32)
    memory = result.training_memory("adam")
    params = 4 * 1_992_166
    assert memory.items() == [
        ("parameters", params),
        ("gradients", params),
        ("optimizer state (adam)", 2 * params),
        ("activations saved for backward", memory.activations),
        ("total", 4 * params + memory.activations),
    ]
    table = memory.table().splitlines()
    assert table[0].split() == ["component", "bytes", "size"]
    assert table[2].split()[:2] == ["parameters", f"{params:,}"]
    assert table[-1].split()[0] == "total"
    assert memory.table(markdown=True).startswith("| component")
    assert str(memory) == memory.table()
    summary = result.summary("momentum")
    assert summary == (
        f"nin at 32x1x96x96: 1.99 M params, {res.format_flops(result.flops)}, training (momentum) "
        f"{res.format_bytes(result.training_memory('momentum').total)}, inference "
        f"{res.format_bytes(result.inference_memory())}"
    )
    rows = result.table().splitlines()
    assert rows[0].split()[:3] == ["layer", "output", "shape"]
    pool = next(row for row in rows if row.startswith("max_pool_1"))
    assert pool.split()[-5:-3] == ["-", "-"]  # no MACs or FLOPs for a pool
    assert "(32, 96, 10, 10)" in pool
    block = next(row for row in rows if row.startswith("nin_block_1"))
    assert res.format_count(result.layer("nin_block_1").macs) in block


def test_resources_arguments():
    assert res.resources().spec == nin_spec() and res.resources().input_size == 224
    assert res.resources(None, None, 1).batch_size == 1
    for name, value in (("input_size", 0), ("input_size", True), ("batch_size", 1.0)):
        args = {"input_size": 96, "batch_size": 1, name: value}
        with pytest.raises(ValueError, match=f"{name} must be a positive integer, got {value!r}"):
            res.resources(nin_spec(), **args)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; choose from sgd, momentum"):
        res.resources().training_memory("rmsprop")
    with pytest.raises(ValueError, match="unknown device 'tpu'; choose from cpu, cuda"):
        res.resources().saved_tensors("tpu")
    assert res.OPTIMIZER_STATE_COPIES == {"sgd": 0, "momentum": 1, "adam": 2}


def test_compare_models_columns():
    table = res.compare_models(["nin", "alexnet"], 224, 128, optimizer="adam")
    header, _, nin_row, alexnet_row = table.splitlines()
    assert "training memory (adam)" in header and "inference memory" in header
    nin = res.resources("nin", 224, 128)
    assert nin_row.split()[:2] == ["nin", "(128,"]
    assert res.format_bytes(nin.training_memory("adam").total) in nin_row
    assert res.format_bytes(nin.inference_memory()) in nin_row
    assert f"{nin.activations:,}" in nin_row
    assert res.format_flops(nin.flops) in nin_row
    unbiased = res.compare_models(["nin"], 96, bias=False).splitlines()[2]
    assert f"{1_992_166 - 3 * (96 + 256 + 384 + 10):,}" in unbiased
    own_size = res.compare_models([nin_spec(input_size=96)]).splitlines()[2]
    assert "(1, 1, 96, 96)" in own_size


# A network small enough to follow every tensor by hand (batch 2, 2x8x8 input, 4 classes): a
# block whose first convolution is linear (no ReLU, so the next convolution keeps its output),
# pooling, dropout, global pooling, and two dense layers without ReLU (so dense_2 keeps dense_1's
# raw output). Sizes: block 6x8x8, pool 6x4x4, global pooling 6 -> 16 -> 4.
TOY = res.Spec(
    "toy",
    2,
    4,
    (
        res.ConvBlock((Conv(6, 3, padding=1, relu=False), Conv(6, 1))),
        res.MaxPool(2, 2),
        res.Dropout(0.5),
        res.GlobalAvgPool(),
        res.Flatten(),
        res.Dense(16, relu=False),
        res.Dense(4, relu=False),
    ),
    input_size=8,
)
# weights 6*2*3*3 + 6*6 + 6*16 + 16*4 = 304, biases 6 + 6 + 16 + 4 = 32
TOY_PARAMS = 304 + 32


def test_every_saved_tensor_of_a_small_network_by_hand():
    result = res.resources(TOY, batch_size=2)
    assert (result.weights, result.biases) == (304, 32)
    saved = [(t.layer, t.what, t.shape, t.dtype, t.nbytes) for t in result.saved_tensors()]
    assert saved == [
        ("input", "input batch", (2, 2, 8, 8), "float32", 2 * 2 * 64 * 4),  # conv1's input
        # conv1 has no ReLU: conv2 keeps conv1's own output as its input
        ("nin_block", "conv1 output", (2, 6, 8, 8), "float32", 2 * 6 * 64 * 4),
        # kept by relu2 and by the max-pool as its input: one storage, counted once
        ("nin_block", "relu2 output", (2, 6, 8, 8), "float32", 2 * 6 * 64 * 4),
        ("max_pool", "indices", (2, 6, 4, 4), "int64", 2 * 6 * 16 * 8),
        ("dropout", "mask", (2, 6, 4, 4), "float32", 2 * 6 * 16 * 4),
        # dropout's output goes to global pooling, which saves nothing; dense_1 keeps the
        # pooled map through Flatten's view
        ("global_avg_pool", "output", (2, 6), "float32", 2 * 6 * 4),
        ("dense_1", "linear output", (2, 16), "float32", 2 * 16 * 4),  # dense_2's input
        ("loss", "log-softmax output", (2, 4), "float32", 2 * 4 * 4),
        ("loss", "targets", (2,), "int64", 2 * 8),
        ("loss", "total weight", (), "float32", 4),
    ]
    saved_bytes = 1024 + 3072 + 3072 + 1536 + 768 + 48 + 128 + 32 + 16 + 4
    memory = result.training_memory("momentum")
    assert (memory.params, memory.grads, memory.optimizer_state) == (4 * TOY_PARAMS,) * 3
    assert memory.activations == saved_bytes == 9700
    assert memory.total == 3 * 4 * TOY_PARAMS + 9700
    # on CUDA the dropout mask is one byte per element: 2 * 6 * 16 bytes instead of 4x that
    cuda = result.saved_tensors("cuda")
    assert [(t.layer, t.what, t.dtype, t.nbytes) for t in cuda if t.layer == "dropout"] == [
        ("dropout", "mask", "bool", 2 * 6 * 16)
    ]
    assert result.training_memory(device="cuda").activations == 9700 - 3 * 2 * 6 * 16


def test_a_linear_head_keeps_no_relu_output_but_the_same_inference_floor():
    """final_relu=False: block 4's last convolution feeds global pooling, which saves nothing,
    so the 32x10 map a ReLU would have kept is not kept; inference is unchanged."""
    linear = res.resources(nin_spec(final_relu=False), 96, batch_size=32)
    assert [t.what for t in linear.saved_tensors() if t.layer == "nin_block_4"] == [
        "relu1 output",
        "relu2 output",
    ]
    assert linear.training_memory().activations == _by_hand_saved_bytes(32, 4) - 32 * 10 * 4
    assert linear.training_memory(device="cuda").activations == (
        _by_hand_saved_bytes(32, 1) - 32 * 10 * 4
    )
    pair = 2 * 4 * 32 * 96 * 22 * 22  # block 1's conv1 output and its ReLU copy
    assert linear.largest_inference_pair() == ("nin_block_1.relu1", pair)
    assert linear.inference_memory() == 4 * 1_992_166 + pair


def _image_spec(in_channels, input_size, *layers):
    return res.Spec("probe", in_channels, 4, tuple(layers), input_size=input_size)


@pytest.mark.parametrize(
    "spec, batch, expected",
    [
        # conv1 2x8x8 -> 6x8x8 (1024 + 3072 bytes); conv2 and relu2 both 3072 + 3072: the first
        # of the tied ops is reported
        (TOY, 2, ("nin_block.conv2", 6144)),
        # a narrow first block (16x22x22) and block 2's 256x10x10 map and ReLU copy
        (
            nin_spec(widths=(16, 256, 384), input_size=96),
            2,
            ("nin_block_2.relu1", 2 * 4 * 2 * 25600),
        ),
        # a linear 1x1 conv 1x4x4 -> 8x4x4 (16 + 128 floats); pooling 128 + 8x2x2 = 160 floats
        (
            _image_spec(1, 4, res.ConvBlock((Conv(8, 1, relu=False),)), res.MaxPool(2, 2)),
            1,
            ("max_pool.max_pool", 160 * 4),
        ),
        # linear conv 1x2x2 -> 8x2x2 (4 + 32 floats); dropout allocates nothing at inference;
        # global pooling 32 + 8 = 40 floats (in training, dropout's 32 + 32 would be larger)
        (
            _image_spec(
                1,
                2,
                res.ConvBlock((Conv(8, 1, relu=False),)),
                res.Dropout(0.5),
                res.GlobalAvgPool(),
            ),
            1,
            ("global_avg_pool.mean", 40 * 4),
        ),
        # 64 inputs -> 16 units: linear 64 + 16 floats, ReLU 16 + 16, dense_2 16 + 4
        (
            _image_spec(1, 8, res.Flatten(), res.Dense(16), res.Dense(4, relu=False)),
            3,
            ("dense_1.linear", 3 * 80 * 4),
        ),
        # 4 inputs -> 16 units: linear 4 + 16 floats, ReLU 16 + 16 floats
        (
            _image_spec(1, 2, res.Flatten(), res.Dense(16), res.Dense(4, relu=False)),
            3,
            ("dense_1.relu", 3 * 32 * 4),
        ),
    ],
    ids=["tied_convs", "second_block", "pool", "global_pool", "dense_linear", "dense_relu"],
)
def test_largest_inference_pair_beyond_the_first_layer(spec, batch, expected):
    result = res.resources(spec, batch_size=batch)
    assert result.largest_inference_pair() == expected
    assert result.inference_memory() == 4 * result.params + expected[1]


def test_the_resources_table_exactly():
    """`nin resources --size 96 --batch 32`: NiN at 96x96 (see the sizes above). A block's
    weights are also its MACs per output pixel: block 1 96*11*11 + 2*96*96 = 30,048, so
    32*22*22*30,048 = 465,383,424 MACs (0.931 GFLOPs); block 4 10*384*9 + 2*10*10 = 34,760
    weights at 1x1: 32*34,760 = 1,112,320 MACs; all blocks: 3,455,985,920 MACs."""
    result = res.resources(nin_spec(), 96, batch_size=32)
    assert result.macs == 32 * (484 * 30_048 + 100 * 745_472 + 16 * 1_179_648 + 34_760)
    assert result.activations == 32 * (
        96 * 484 + 96 * 100 + 256 * 100 + 256 * 16 + 384 * 16 + 2 * 384 + 3 * 10
    )
    expected = """\
layer                  output shape             weights  biases     params  MACs    FLOPs           activations  act. memory
---------------------  ---------------------  ---------  ------  ---------  ------  --------------  -----------  -----------
nin_block_1            (32, 96, 22, 22)          30,048     288     30,336   465 M    0.931 GFLOPs    1,486,848    5.7 MiB
max_pool_1             (32, 96, 10, 10)               0       0          0       -               -      307,200    1.2 MiB
nin_block_2            (32, 256, 10, 10)        745,472     768    746,240  2.39 G     4.77 GFLOPs      819,200    3.1 MiB
max_pool_2             (32, 256, 4, 4)                0       0          0       -               -      131,072  512.0 KiB
nin_block_3            (32, 384, 4, 4)        1,179,648   1,152  1,180,800   604 M     1.21 GFLOPs      196,608  768.0 KiB
max_pool_3             (32, 384, 1, 1)                0       0          0       -               -       12,288   48.0 KiB
dropout                (32, 384, 1, 1)                0       0          0       -               -       12,288   48.0 KiB
nin_block_4            (32, 10, 1, 1)            34,760      30     34,790  1.11 M  0.00222 GFLOPs          320    1.2 KiB
global_avg_pool        (32, 10, 1, 1)                 0       0          0       -               -          320    1.2 KiB
flatten                (32, 10)                       0       0          0       -               -          320    1.2 KiB
total (1.99 M params)  input (32, 1, 96, 96)  1,989,928   2,238  1,992,166  3.46 G     6.91 GFLOPs    2,966,464   11.3 MiB"""  # noqa: E501
    assert result.table() == expected
    # the default optimizer is SGD: 2 x 4 x 1,992,166 + the saved tensors = 50.2 MiB; inference
    # 4 x 1,992,166 + 2 x 5,947,392 (block 1's pair) = 18.9 MiB
    assert result.training_memory().total == 8 * 1_992_166 + _by_hand_saved_bytes(32, 4)
    assert result.inference_memory() == 4 * 1_992_166 + 2 * 4 * 1_486_848
    assert result.summary() == (
        "nin at 32x1x96x96: 1.99 M params, 6.91 GFLOPs, training (sgd) 50.2 MiB, inference 18.9 MiB"
    )


def test_the_comparison_table_exactly():
    """NiN vs AlexNet as the report prints it (batch 128 at 224x224). NiN's MACs per image are
    its blocks' weights times their output pixels: 30,048*54*54 + 745,472*26*26 +
    1,179,648*12*12 + 34,760*5*5 = 762,297,352, so 128 images take 195 GFLOPs; its activations
    per image are 629,518 elements (x128 = 80,578,304)."""
    nin_macs = 30_048 * 54 * 54 + 745_472 * 26 * 26 + 1_179_648 * 12 * 12 + 34_760 * 5 * 5
    assert res.resources("nin", 224, 128).flops == 2 * 128 * nin_macs == 195_148_122_112
    per_image = 96 * 54 * 54 + 96 * 26 * 26 + 256 * 26 * 26 + 256 * 12 * 12 + 384 * 12 * 12
    per_image += 2 * 384 * 5 * 5 + 10 * 5 * 5 + 10 + 10
    assert per_image == 629_518
    lines = res.compare_models(("nin", "alexnet"), 224, 128).splitlines()
    assert lines[0] == (
        "model    input (NCHW)            params  params (human)  FLOPs       activations  "
        "training memory (sgd)  inference memory"
    )
    assert lines[2:] == [
        "nin      (128, 1, 224, 224)   1,992,166  1.99 M          195 GFLOPs   80,578,304  "
        "952.4 MiB              281.0 MiB",
        "alexnet  (128, 1, 224, 224)  46,764,746  46.8 M          240 GFLOPs   93,619,456  "
        "844.9 MiB              451.8 MiB",
    ]
    # an explicit input size applies to every network: NiN at 96x96, batch 32 (as above)
    assert res.compare_models(["nin"], 96, 32).splitlines()[2] == (
        "nin    (32, 1, 96, 96)  1,992,166  1.99 M          6.91 GFLOPs    2,966,464  "
        "50.2 MiB               18.9 MiB"
    )


def test_the_comparison_right_aligns_human_units():
    """Each network at its own size (batch 1): NiN at 96x96 and the toy network at 8x8. Toy:
    9,376 MACs (conv1 64*6*2*9, conv2 64*6*6, dense 6*16 + 16*4) = 18,752 FLOPs; training
    2 x 4 x 336 + its saved tensors at batch 1 (4,848 bytes + the 4-byte total weight) = 7.4 KiB;
    inference 4 x 336 + conv2's pair 2 x 4 x 384 = 4.3 KiB. NiN: 2 x 4 x 1,992,166 + 1,146,028
    saved = 16.3 MiB; inference 4 x 1,992,166 + 2 x 4 x 96*22*22 = 8.0 MiB."""
    toy = res.resources(TOY, batch_size=1)
    assert toy.flops == 2 * (64 * 6 * 2 * 9 + 64 * 6 * 6 + 6 * 16 + 16 * 4) == 18_752
    assert toy.training_memory().total == 8 * TOY_PARAMS + (9700 - 4) // 2 + 4
    assert toy.inference_memory() == 4 * TOY_PARAMS + 2 * 4 * 384
    nin = res.resources(nin_spec(input_size=96), batch_size=1)
    assert _by_hand_saved_bytes(1, 4) == 1_146_028
    assert nin.training_memory().total == 8 * 1_992_166 + 1_146_028
    lines = res.compare_models([nin_spec(input_size=96), TOY]).splitlines()
    assert lines[2:] == [
        "nin(input_size=96)  (1, 1, 96, 96)  1,992,166  1.99 M             0.216 GFLOPs  "
        "     92,702  16.3 MiB               8.0 MiB",
        "toy                 (1, 2, 8, 8)          336     336          1.88e-05 GFLOPs  "
        "        608   7.4 KiB               4.3 KiB",
    ]


def test_formatting_rounds_at_the_edges():
    # three significant digits round up across a power of ten
    assert res.format_flops(999_500_000) == "1 GFLOPs"
    assert res.format_flops(999_400_000) == "0.999 GFLOPs"
    assert res.format_flops(2_224_640) == "0.00222 GFLOPs"
    # below 1000 a count is a whole number, above it three significant digits
    assert res.format_count(12.25) == "12"
    assert res.format_count(12_250) == "12.2 K"
    assert res.format_bytes(1023.9) == "1.0 KiB" and res.format_bytes(1023.4) == "1023 B"
    assert res.format_bytes(1280) == "1.2 KiB"  # 1.25: round half to even
    # the unit is chosen on the value rounded to one decimal, as it is printed
    assert res.format_bytes(1_048_064) == "1023.5 KiB"  # not "1.0 MiB"
    assert res.format_bytes(1_048_535) == "1.0 MiB"  # 1023.96 KiB, not "1024.0 KiB"
    assert res.format_bytes(1024**4 - 1) == "1.0 TiB"
