"""A reader's model against a spec, from its trace and what its numbers showed: framework-free.

The model is read as NiN blocks: a new block starts at every convolution wider than 1x1, and
the 1x1 convolutions after it belong to it. Blocks are paired with the spec's by position,
convolutions within a pair by position, and every difference is named where it first shows:
a convolution's kernel, stride, padding or channels, a block's count of 1x1 convolutions,
pooling inside a block or between blocks, the head (global pooling, flatten), the ReLUs and
the dropout.

Tools layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ... import trace as t
from ...shapes import conv_shapes, layer_shapes
from ...spec import NIN_BLOCKS, NIN_FAMILY, SPECS, ConvBlock, Dropout, MaxPool, Spec, make_spec


@dataclass(frozen=True)
class Finding:
    """One difference from the reference, in words; `area` is the report section."""

    area: str  # layers, activations, dropout, head, parameters, numbers, gradients
    text: str

    def to_dict(self) -> dict:
        return {"area": self.area, "text": self.text}


# -- the reference, convolution by convolution ---------------------------------------------------


@dataclass(frozen=True)
class RefConv:
    name: str  # "nin_block_1.0", the canonical weight prefix
    layer: str  # "nin_block_1"
    block: int  # 0-based block number
    out_channels: int
    kernel: int
    stride: int
    padding: int
    relu: bool
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class RefTransition:
    """What the spec does between one block and the next: pooling and dropout."""

    pool: MaxPool | None
    dropout: float | None
    pool_name: str | None
    dropout_name: str | None
    next_name: str  # the block after it


def reference_blocks(spec: Spec, size: int) -> list[list[RefConv]]:
    shape: tuple[int, ...] = (1, spec.in_channels, size, size)
    blocks: list[list[RefConv]] = []
    for name, layer, output in zip(spec.layer_names(), spec.layers, layer_shapes(spec, shape)):
        if isinstance(layer, ConvBlock):
            block = len(blocks)
            blocks.append(
                [
                    RefConv(
                        f"{name}.{index}",
                        name,
                        block,
                        conv.out_channels,
                        conv.kernel_size,
                        conv.stride,
                        conv.padding,
                        conv.relu,
                        conv_shape,
                    )
                    for index, (conv, conv_shape) in enumerate(
                        zip(layer.convs, conv_shapes(layer, shape))
                    )
                ]
            )
        shape = output.output_shape
    return blocks


def reference_transitions(spec: Spec) -> list[RefTransition]:
    """After each block but the last: its pooling and dropout."""
    transitions: list[RefTransition] = []
    current: dict = {}
    for name, layer in zip(spec.layer_names(), spec.layers):
        if isinstance(layer, ConvBlock):
            if current.get("started"):
                transitions.append(
                    RefTransition(
                        current.get("pool"),
                        current.get("dropout"),
                        current.get("pool_name"),
                        current.get("dropout_name"),
                        name,
                    )
                )
            current = {"started": True}
        elif isinstance(layer, MaxPool):
            current.update(pool=layer, pool_name=name)
        elif isinstance(layer, Dropout):
            current.update(dropout=layer.rate, dropout_name=name)
    return transitions


# -- the reader's model, block by block -------------------------------------------------------


@dataclass
class Structure:
    """The trace cut into NiN blocks. Gaps hold the steps between two convolutions."""

    steps: list[t.Step]
    blocks: list[list[t.Step]]  # convolutions
    inside: list[list[list[t.Step]]]  # per block: the steps after each conv but its last
    between: list[list[t.Step]]  # after each block but the last
    head: list[t.Step]  # after the last convolution
    dense: list[t.Step] = field(default_factory=list)

    @property
    def convs(self) -> list[t.Step]:
        return [conv for block in self.blocks for conv in block]


def is_spatial(conv: t.Step) -> bool:
    return tuple(conv.config["kernel"]) != (1, 1)


def structure(trace: t.ModelTrace) -> Structure:
    steps = trace.steps
    blocks: list[list[t.Step]] = []
    inside: list[list[list[t.Step]]] = []
    between: list[list[t.Step]] = []
    gap: list[t.Step] = []
    dense = [step for step in steps if step.kind == t.DENSE]
    for step in steps:
        if step.kind != t.CONV:
            gap.append(step)
            continue
        if not blocks or is_spatial(step):
            if blocks:
                between.append(gap)
            blocks.append([step])
            inside.append([])
        else:
            inside[-1].append(gap)
            blocks[-1].append(step)
        gap = []
    return Structure(steps, blocks, inside, between, gap if blocks else [], dense)


def is_nin_like(structure: Structure) -> str | None:
    """None for a NiN-like network, else why it is not one."""
    convs = structure.convs
    if not convs:
        return "it has no convolution"
    found = []
    if structure.dense:
        found.append(f"{len(structure.dense)} dense layer(s)")
    if not any(not is_spatial(conv) for conv in convs):
        found.append(f"{len(convs)} convolution(s), none of them 1x1")
    if found:
        return (
            "it has " + " and ".join(found) + ": NiN is convolutions and 1x1 convolutions "
            "only, with global average pooling at the end"
        )
    return None


# -- what the numbers showed ---------------------------------------------------------------------


@dataclass
class Observations:
    """Facts about the reader's model found numerically, with its own weights, on real
    images: the ReLUs, whether it is random in inference, where training makes it random."""

    relu_after: list[bool | None]  # per parameterised step: are its outputs >= 0 later?
    random_in_inference: bool = False
    dropout_before: int | None = None  # the first parameterised step training makes random
    dropout_rate: float | None = None  # estimated from the zeros dropout added
    probabilities: bool = False  # the outputs are non-negative and sum to 1

    def to_dict(self) -> dict:
        return dict(vars(self))


# -- comparing ---------------------------------------------------------------------------------


def _padding_text(padding) -> str:
    if padding == "same":
        return "'same'"
    (top, bottom), (left, right) = padding
    if top == bottom == left == right:
        return str(top)
    return f"(top {top}, bottom {bottom}, left {left}, right {right})"


def _same_padding(padding, conv: RefConv) -> bool:
    if padding == "same":
        return conv.stride == 1 and 2 * conv.padding == conv.kernel - 1
    return tuple(map(tuple, padding)) == ((conv.padding,) * 2,) * 2


def _pair_text(pair) -> str:
    first, second = pair
    return str(first) if first == second else f"{first}x{second}"


def compare_conv(user: t.Step, ref: RefConv) -> list[str]:
    """How one convolution differs from the spec's (kernel, stride, padding, channels ...)."""
    config = user.config
    causes = []
    kernel = tuple(config["kernel"])
    if kernel != (ref.kernel, ref.kernel):
        causes.append(f"kernel {_pair_text(kernel)} instead of {ref.kernel}")
    if tuple(config["stride"]) != (ref.stride, ref.stride):
        causes.append(f"stride {_pair_text(config['stride'])} instead of {ref.stride}")
    if not _same_padding(config["padding"], ref):
        causes.append(f"padding {_padding_text(config['padding'])} instead of {ref.padding}")
    if config["out_channels"] != ref.out_channels:
        causes.append(f"{config['out_channels']} channels instead of {ref.out_channels}")
    if tuple(config.get("dilation", (1, 1))) != (1, 1):
        causes.append(f"dilation {_pair_text(config['dilation'])} (the book's is 1)")
    if config.get("groups", 1) != 1:
        causes.append(f"{config['groups']} groups (the book's convolutions have 1)")
    if not config.get("bias", True):
        causes.append("no bias")
    return causes


def _where(step: t.Step) -> str:
    return f"{step.path}, {step.detail}"


def _pools(steps: list[t.Step]) -> list[t.Step]:
    kinds = (t.MAX_POOL, t.AVG_POOL, t.GLOBAL_AVG_POOL, t.GLOBAL_MAX_POOL)
    return [step for step in steps if step.kind in kinds]


def _spatial(shape) -> tuple[int, ...]:
    return tuple(shape[2:]) if shape is not None and len(shape) == 4 else ()


def compare(
    spec: Spec, size: int, trace: t.ModelTrace, found: Structure, seen: Observations
) -> list[Finding]:
    """Every difference between the reader's model and `spec`, in the order the data meets it."""
    findings: list[Finding] = []
    ref_blocks = reference_blocks(spec, size)
    transitions = reference_transitions(spec)

    for index, (user_block, ref_block) in enumerate(zip(found.blocks, ref_blocks)):
        layer = ref_block[0].layer
        for user, ref in zip(user_block, ref_block):
            for cause in compare_conv(user, ref):
                findings.append(Finding("layers", f"{ref.name}, your {_where(user)}: {cause}"))
        extra = len(user_block) - len(ref_block)
        if extra:
            have = len(user_block) - 1
            findings.append(
                Finding(
                    "layers", f"{layer}: {have} 1x1 convolution(s) instead of {len(ref_block) - 1}"
                )
            )
        for gap, before, conv in zip(found.inside[index], user_block, user_block[1:]):
            pools = _pools(gap)
            shrinks = _spatial(conv.input_shape) != _spatial(before.output_shape)
            if pools or shrinks:
                what = pools[0].detail if pools else "something that shrinks the maps"
                findings.append(
                    Finding(
                        "layers",
                        f"pooling inside {layer}: {what} before "
                        f"{conv.path}; the book pools only between "
                        "blocks",
                    )
                )
        if index < len(found.between) and index < len(transitions):
            findings += _compare_transition(
                found.between[index],
                transitions[index],
                user_block[-1],
                found.blocks[index + 1][0],
                layer,
            )
    if len(found.blocks) != len(ref_blocks) and trace.output_shape is not None:
        findings.append(
            Finding("layers", f"{len(found.blocks)} NiN blocks instead of {len(ref_blocks)}")
        )
    if trace.output_shape is None:  # the pass failed: what is after it was never seen
        return findings
    findings += _compare_head(spec, trace, found, seen)
    findings += _compare_relus(found, ref_blocks, seen)
    findings += _compare_dropout(spec, found, transitions, seen)
    return findings


def _compare_transition(
    steps: list[t.Step], ref: RefTransition, last: t.Step, first: t.Step, layer: str
) -> list[Finding]:
    findings = []
    pools = _pools(steps)
    shrinks = _spatial(first.input_shape) != _spatial(last.output_shape)
    if ref.pool is None:
        if pools or shrinks:
            what = pools[0].detail if pools else "the maps shrink"
            findings.append(
                Finding("layers", f"pooling after {layer} ({what}) where the book has none")
            )
        return findings
    if not pools and not shrinks:
        findings.append(
            Finding(
                "layers",
                f"no pooling after {layer}: the book has "
                f"{ref.pool_name} (3x3 max pooling, stride 2)",
            )
        )
        return findings
    for pool in pools:
        if pool.kind == t.AVG_POOL:
            findings.append(
                Finding(
                    "layers", f"{ref.pool_name} ({_where(pool)}): average instead of max pooling"
                )
            )
        if pool.kind in (t.MAX_POOL, t.AVG_POOL):
            kernel, stride = tuple(pool.config["kernel"]), tuple(pool.config["stride"])
            wanted = (ref.pool.kernel_size,) * 2, (ref.pool.stride,) * 2
            if (kernel, stride) != wanted:
                findings.append(
                    Finding(
                        "layers",
                        f"{ref.pool_name} ({_where(pool)}): "
                        f"{_pair_text(kernel)}x{_pair_text(kernel)} "
                        f"window, stride {_pair_text(stride)}, instead "
                        f"of {ref.pool.kernel_size}x"
                        f"{ref.pool.kernel_size}, stride "
                        f"{ref.pool.stride}",
                    )
                )
    if len([pool for pool in pools if pool.kind in (t.MAX_POOL, t.AVG_POOL)]) > 1:
        findings.append(
            Finding("layers", f"{len(pools)} pooling layers after {layer}, where the book has one")
        )
    return findings


def _compare_head(
    spec: Spec, trace: t.ModelTrace, found: Structure, seen: Observations
) -> list[Finding]:
    findings = []
    pools = _pools(found.head)
    for pool in pools:
        if pool.kind == t.GLOBAL_MAX_POOL:
            findings.append(
                Finding(
                    "head",
                    f"{_where(pool)}: global max pooling instead of "
                    "global average pooling (NiN averages each class "
                    "map into its score)",
                )
            )
        elif pool.kind in (t.AVG_POOL, t.MAX_POOL):
            window = _pair_text(pool.config["kernel"])
            kind = "an average" if pool.kind == t.AVG_POOL else "a max"
            findings.append(
                Finding(
                    "head",
                    f"{_where(pool)}: {kind} pool with a fixed "
                    f"{window}x{window} window instead of global average "
                    "pooling (it covers the whole map at one input size "
                    "only)",
                )
            )
    softmax = [step for step in found.head if step.kind == t.SOFTMAX]
    if softmax or seen.probabilities:
        where = _where(softmax[0]) if softmax else "the output"
        findings.append(
            Finding(
                "head",
                f"{where}: the model ends in a softmax, so it outputs "
                "probabilities, not logits (the loss applies the "
                "softmax itself)",
            )
        )
    wanted = (1, spec.num_classes)
    if trace.output_shape is not None and len(trace.output_shape) != 2:
        findings.append(
            Finding(
                "head",
                f"missing flatten or reshape after the global pooling: "
                f"the output is {trace.output_shape}, not {wanted}",
            )
        )
    elif trace.output_shape is not None and tuple(trace.output_shape) != wanted:
        findings.append(Finding("head", f"the output is {trace.output_shape}, not {wanted}"))
    return findings


def _compare_relus(
    found: Structure, ref_blocks: list[list[RefConv]], seen: Observations
) -> list[Finding]:
    findings = []
    for user_block, ref_block in zip(found.blocks, ref_blocks):
        for user, ref in zip(user_block, ref_block):
            relu = (
                seen.relu_after[user.param]
                if user.param is not None and user.param < len(seen.relu_after)
                else None
            )
            if relu is None:
                continue
            if ref.relu and not relu:
                findings.append(
                    Finding(
                        "activations",
                        f"no ReLU after {ref.name} "
                        f"({_where(user)}): its outputs reach the "
                        "next layer negative",
                    )
                )
            elif relu and not ref.relu:
                findings.append(
                    Finding(
                        "activations",
                        f"a ReLU after {ref.name} ({_where(user)}), where this head has none",
                    )
                )
    return findings


def _compare_dropout(
    spec: Spec, found: Structure, transitions: list[RefTransition], seen: Observations
) -> list[Finding]:
    findings = []
    if seen.random_in_inference:
        findings.append(
            Finding(
                "dropout",
                "the model is random in inference mode: dropout that "
                "ignores the mode (e.g. F.dropout without "
                "training=self.training) stays on when it predicts",
            )
        )
    wanted = [
        (index, transition) for index, transition in enumerate(transitions) if transition.dropout
    ]
    steps = [step for step in found.steps if step.kind == t.DROPOUT]
    # Where the reader's dropout sits: after which block (by the trace, else by the numbers).
    where: list[tuple[int | None, float | None, str]] = []
    if steps:
        for step in steps:
            block = next(
                (
                    index
                    for index, gap in enumerate(found.between)
                    if any(item is step for item in gap)
                ),
                None,
            )
            if block is None and any(item is step for item in found.head):
                block = len(found.blocks) - 1
            where.append((block, step.config.get("rate"), _where(step)))
    elif seen.dropout_before is not None:
        block = next(
            (
                index - 1
                for index, block in enumerate(found.blocks)
                if block[0].param == seen.dropout_before
            ),
            None,
        )
        where.append((block, seen.dropout_rate, "found by its numbers"))
    if not wanted:
        for _, _, text in where:
            findings.append(Finding("dropout", f"dropout ({text}) where this model has none"))
        return findings
    ((index, transition),) = wanted
    place = f"between {transition.pool_name or f'block {index + 1}'} and {transition.next_name}"
    if not where:
        findings.append(
            Finding(
                "dropout",
                f"no dropout (training mode gives the same output "
                f"twice); the book has Dropout({transition.dropout:g}) "
                f"{place}",
            )
        )
        return findings
    matched = False
    for block, rate, text in where:
        if block == index and not matched:
            matched = True
            if rate is not None and abs(rate - transition.dropout) > (
                1e-9 if text != "found by its numbers" else 0.1
            ):
                findings.append(
                    Finding(
                        "dropout",
                        f"dropout rate {rate:g} ({text}) instead of {transition.dropout:g}",
                    )
                )
        else:
            after = (
                f"after {transitions[block].pool_name or f'block {block + 1}'}"
                if block is not None and 0 <= block < len(transitions)
                else "after the last block"
                if block is not None
                else "elsewhere"
            )
            findings.append(
                Finding("dropout", f"a dropout {after} ({text}); the book's sits {place}")
            )
    if not matched:
        findings.append(
            Finding(
                "dropout", f"no dropout {place}, where the book has Dropout({transition.dropout:g})"
            )
        )
    return findings


# -- which NiN the reader's model is ------------------------------------------------------------


def infer_spec(
    found: Structure, seen: Observations, in_channels: int, reference: Spec
) -> Spec | None:
    """The NiN spec the reader's model has the layers of (None if it is none), taking the
    options it does not show (the input size) from `reference`."""
    if is_nin_like(found) or len(found.blocks) not in (4, 5):
        return None
    counts = {len(block) - 1 for block in found.blocks}
    if len(counts) != 1:
        return None
    geometry = [*NIN_BLOCKS[:3], *([NIN_BLOCKS[3]] * (len(found.blocks) - 3))]
    for block, (_, kernel, stride, padding) in zip(found.blocks, geometry):
        probe = RefConv(
            "", "", 0, block[0].config["out_channels"], kernel, stride, padding, True, ()
        )
        if compare_conv(block[0], probe):
            return None
        widths = {conv.config["out_channels"] for conv in block}
        if len(widths) != 1 or any(
            compare_conv(conv, replace(probe, kernel=1, stride=1, padding=0)) for conv in block[1:]
        ):
            return None
    if any(_pools(gap) for gaps in found.inside for gap in gaps):
        return None
    relus = [
        seen.relu_after[conv.param] if conv.param < len(seen.relu_after) else None
        for conv in found.convs
    ]
    if not all(relus[:-1]):
        return None
    rate = _inferred_rate(found, seen)
    if rate is None:
        return None
    widths = tuple(block[0].config["out_channels"] for block in found.blocks)
    options = dict(
        in_channels=in_channels,
        num_classes=widths[-1],
        num_1x1=counts.pop(),
        dropout=rate,
        final_relu=relus[-1] is not False,
        head_width=widths[3] if len(widths) == 5 else 0,
        widths=widths[:3],
        input_size=reference.input_size,
    )
    try:
        spec = make_spec("nin", **options)
    except ValueError:
        return None
    return family_member(spec)


def _inferred_rate(found: Structure, seen: Observations) -> float | None:
    """The dropout rate of a NiN whose dropout sits where the book's does: before the block
    after the third pooling (0 when there is none); None when it sits elsewhere."""
    steps = [step for step in found.steps if step.kind == t.DROPOUT]
    before_head = found.between[2] if len(found.between) > 2 else []
    if steps:
        if len(steps) != 1 or not any(step is steps[0] for step in before_head):
            return None
        return float(steps[0].config["rate"])
    if seen.dropout_before is None:
        return 0.0
    if (
        len(found.blocks) > 3
        and found.blocks[3][0].param == seen.dropout_before
        and seen.dropout_rate is not None
    ):
        return round(seen.dropout_rate, 1)
    return None


def family_member(spec: Spec) -> Spec:
    """`spec` under its family name (nin-s, nin-l) when it is one, else unchanged."""
    for name, (widths, num_1x1) in NIN_FAMILY.items():
        if (
            name == "nin-m"
            or spec.options.get("widths") != tuple(widths)
            or spec.options.get("num_1x1") != num_1x1
        ):
            continue
        options = {
            key: value for key, value in spec.options.items() if key not in ("widths", "num_1x1")
        }
        member = SPECS[name](**options)
        if member.to_dict()["layers"] == spec.to_dict()["layers"]:
            return member
    return spec


# The variants the chapter and its exercises name, and the flags that select them.
def variant_names(found: Spec, asked: Spec) -> tuple[list[str], list[str], list[str]] | None:
    """(what the variant is, the flags that check against it, other differences) of `found`
    against `asked`; None when the two are the same network."""
    if found.to_dict() == asked.to_dict():
        return None
    names, flags, others = [], [], []
    if found.name != asked.name:
        names.append(
            f"{found.name.upper()}, exercise 5's family"
            if found.name != "nin"
            else "the book's NiN widths"
        )
        flags.append(f"--model {found.name}")
    ours, theirs = found.options, asked.options
    if found.name == asked.name == "nin":
        if ours["num_1x1"] != theirs["num_1x1"]:
            count = ours["num_1x1"]
            names.append(
                f"{count} 1x1 convolution{'s' if count != 1 else ''} per block, "
                "exercise 2's variant"
            )
            flags.append(f"--num-1x1 {count}")
        if tuple(ours["widths"]) != tuple(theirs["widths"]):
            others.append("widths " + ",".join(map(str, ours["widths"])))
            flags.append("--widths " + ",".join(map(str, ours["widths"])))
    if ours.get("final_relu") != theirs.get("final_relu"):
        names.append(
            "the linear head, no ReLU on the class maps"
            if not ours["final_relu"]
            else "the book's head, a ReLU on the class maps"
        )
        flags.append("--linear-head" if not ours["final_relu"] else "--book-head")
    if ours.get("head_width") != theirs.get("head_width"):
        names.append(
            f"a gradual head of width {ours['head_width']}, exercise 4's variant"
            if ours["head_width"]
            else "no gradual head"
        )
        flags.append(f"--head-width {ours['head_width']}")
    if ours.get("dropout") != theirs.get("dropout"):
        others.append(f"dropout {ours['dropout']:g}")
        flags.append(f"--dropout {ours['dropout']:g}")
    if ours.get("num_classes") != theirs.get("num_classes"):
        others.append(f"{ours['num_classes']} classes")
        flags.append(f"--num-classes {ours['num_classes']}")
    if ours.get("in_channels") != theirs.get("in_channels"):
        others.append(f"{ours['in_channels']} input channels")
        flags.append(f"--in-channels {ours['in_channels']}")
    return names, flags, others
