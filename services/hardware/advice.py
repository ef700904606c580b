"""GetAdvice: what the model is shown and asked, and how its answer is labelled. No I/O.

The model sees a compact text rendering of one sample and of the rules' recommendations (the
measured numbers, not a raw dump: small models follow a short table better), and is asked to
explain them in plain words. Its answer is model output: labelled so, returned as text, and
never acted upon (the original's "AI" decided what was "safe to apply"; nothing here does).
The caller's question is data inside the prompt, bounded and stripped of control characters.
"""

from __future__ import annotations

from dataclasses import dataclass

from sutazai.hardware.v1 import hardware_service_pb2 as pb
from sutazai.services.hardware.errors import InvalidArgumentError

LABEL = "model output"
"""``GetAdviceResponse.label``: always this."""
MAX_QUESTION_CHARS = 500
MAX_MODEL_CHARS = 256
MAX_PROCESSES_SHOWN = 5
MAX_DISKS_SHOWN = 8
TEMPERATURE = 0.2
"""Low: the advice should stay close to the numbers."""
SYSTEM_PROMPT = (
    "You are a careful system administrator. You are shown measurements of one Linux host "
    "and the recommendations that fixed rules derived from them. Explain in plain words, in "
    "at most 150 words, what the numbers mean and which recommendation matters most and why. "
    "Only use the numbers given; do not invent measurements or commands. If nothing is wrong, "
    "say so briefly."
)
_SEVERITY = {
    pb.SEVERITY_INFO: "info",
    pb.SEVERITY_WARNING: "warning",
    pb.SEVERITY_CRITICAL: "critical",
}


@dataclass(frozen=True, slots=True)
class AdvicePrompt:
    """One generation for the inference service."""

    system: str
    prompt: str
    model: str
    """Empty for the inference service's default model."""
    max_tokens: int


def validate(request: pb.GetAdviceRequest) -> None:
    """Refuse a malformed model name or question.

    Raises:
        InvalidArgumentError: naming the field.

    """
    if len(request.model) > MAX_MODEL_CHARS or not request.model.isprintable():
        raise InvalidArgumentError(
            "model", f"must be a model name of at most {MAX_MODEL_CHARS} printable characters"
        )
    if len(request.question) > MAX_QUESTION_CHARS:
        raise InvalidArgumentError("question", f"at most {MAX_QUESTION_CHARS} characters")


def build_prompt(
    request: pb.GetAdviceRequest,
    sample: pb.HostSample,
    recommendations: list[pb.Recommendation],
    *,
    default_model: str,
    max_tokens: int,
) -> AdvicePrompt:
    """The generation that explains ``sample`` and ``recommendations`` (validated request)."""
    lines = ["Measurements:", *describe_sample(sample), "", "Recommendations of the rules:"]
    if recommendations:
        for item in recommendations:
            severity = _SEVERITY.get(item.severity, "info")
            lines.append(f"- [{severity}] {item.rule}: {item.reason} Suggested: {item.action}")
    else:
        lines.append("- none: no rule fired.")
    question = _clean(request.question)
    lines += ["", f"Question: {question}" if question else "Explain the state of this host."]
    return AdvicePrompt(
        system=SYSTEM_PROMPT,
        prompt="\n".join(lines),
        model=request.model or default_model,
        max_tokens=max_tokens,
    )


def describe_sample(sample: pb.HostSample) -> list[str]:
    """A few lines of text with the sample's numbers, for a model to read."""
    cpu, memory = sample.cpu, sample.memory
    gib = float(2**30)
    lines = [
        f"- CPU: {cpu.percent:.0f}% busy over {cpu.logical_cores} logical cores; load "
        f"{cpu.load_1m:.2f} / {cpu.load_5m:.2f} / {cpu.load_15m:.2f} (1, 5, 15 min).",
        f"- Memory: {memory.percent:.0f}% used of {memory.total_bytes / gib:.1f} GiB, "
        f"{memory.available_bytes / gib:.1f} GiB available; swap {memory.swap_percent:.0f}% "
        f"of {memory.swap_total_bytes / gib:.1f} GiB.",
    ]
    for disk in list(sample.disks)[:MAX_DISKS_SHOWN]:
        lines.append(
            f"- Disk {disk.mountpoint}: {disk.percent:.0f}% used of "
            f"{disk.total_bytes / gib:.1f} GiB, {disk.free_bytes / gib:.1f} GiB free."
        )
    for process in list(sample.top_processes)[:MAX_PROCESSES_SHOWN]:
        owner = " (mesh)" if process.mesh else ""
        lines.append(
            f"- Process {_clean(process.name)[:32]}{owner}: {process.cpu_percent:.0f}% CPU, "
            f"{process.memory_bytes / 2**20:.0f} MiB."
        )
    for reading in list(sample.temperatures)[:MAX_DISKS_SHOWN]:
        lines.append(f"- Temperature {_clean(reading.sensor)[:32]}: {reading.celsius:.0f} °C.")
    for gpu in sample.gpus:
        lines.append(
            f"- GPU {gpu.index}: {gpu.utilization_percent:.0f}% busy, "
            f"{gpu.memory_used_bytes / gib:.1f} of {gpu.memory_total_bytes / gib:.1f} GiB."
        )
    return lines


def _clean(text: str) -> str:
    # Control characters would let a question (or a process name) fake prompt structure.
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())
