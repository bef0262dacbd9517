"""What ``nin check`` found, as data (JSON between the processes) and as text or Markdown.

Tools layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ...report import format_table
from .analysis import Finding

LAYER_HEADERS = ["book's layer", "book's shape", "your layer(s)", "your shape", "same"]
PARAM_HEADERS = ["book's layer", "book's parameters", "yours", "same"]
SECTIONS = [
    ("layers", "Layers"),
    ("head", "Head"),
    ("activations", "Activations"),
    ("dropout", "Dropout"),
    ("parameters", "Parameters"),
    ("numbers", "Numbers"),
    ("gradients", "Gradients"),
]


@dataclass
class CheckResult:
    """A reader's model checked against a reference. `status` is the exit status: 0 when it
    is the reference, 1 when it differs (`findings` say where and why)."""

    source: str  # "reader.py:net", or the object's name for check_model
    framework: str  # the registry's backend name
    framework_label: str
    model_type: str
    reference: str  # the spec's description, e.g. "nin" or "nin(num_1x1=1)"
    size: int
    status: int
    verdict: str
    findings: list[Finding] = field(default_factory=list)
    layer_rows: list[list] = field(default_factory=list)
    param_rows: list[list] = field(default_factory=list)
    numbers: str = ""
    gradients: str = ""
    activations: str = ""
    dropout: str = ""
    notes: list[str] = field(default_factory=list)
    variant_flags: list[str] = field(default_factory=list)
    max_logit_difference: float | None = None
    max_gradient_difference: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == 0

    # -- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = asdict(self)
        data["findings"] = [finding.to_dict() for finding in self.findings]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CheckResult:
        data = dict(data)
        data["findings"] = [Finding(**item) for item in data.get("findings", [])]
        return cls(**data)

    # -- text -------------------------------------------------------------------------------
    def render(self, *, markdown: bool = False) -> str:
        title = (
            f"{self.source}: a {self.framework_label} model ({self.model_type}), checked "
            f"against {self.reference} at {self.size}x{self.size}"
        )
        lines = [f"# nin check: {self.source}" if markdown else title, ""]
        if markdown:
            lines += [title + ".", ""]
        for note in self.notes:
            lines.append(f"- {note}" if markdown else f"  note: {note}")
        if self.notes:
            lines.append("")
        lines += self._section("Layers (output shapes, NCHW)", markdown)
        lines += [format_table(LAYER_HEADERS, self.layer_rows, markdown=markdown), ""]
        lines += self._section("Parameters", markdown)
        lines += [format_table(PARAM_HEADERS, self.param_rows, markdown=markdown), ""]
        lines += self._section("What differs" if self.findings else "Differences", markdown)
        if self.findings:
            names = dict(SECTIONS)
            for finding in self.findings:
                lines.append(f"- {names.get(finding.area, finding.area)}: {finding.text}")
        else:
            lines.append("- none in the layers, head, activations or dropout")
        lines.append("")
        for label, text in (
            ("Activations", self.activations),
            ("Dropout", self.dropout),
            ("Numbers", self.numbers),
            ("Gradients", self.gradients),
        ):
            if text:
                lines.append(f"**{label}:** {text}" if markdown else f"{label}: {text}")
        lines += ["", (f"**Verdict:** {self.verdict}" if markdown else f"Verdict: {self.verdict}")]
        return "\n".join(lines).rstrip() + "\n"

    @staticmethod
    def _section(title: str, markdown: bool) -> list[str]:
        return [f"## {title}", ""] if markdown else [title]

    def __str__(self) -> str:
        return self.render()

    def _repr_markdown_(self) -> str:  # Jupyter shows the Markdown report
        return self.render(markdown=True)
