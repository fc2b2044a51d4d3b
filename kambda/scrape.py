"""Several processes' Prometheus texts as one scrape (the gateway's /metrics with the workers').

Replicas of one service export the same series; a scrape must name each series once. Merged
here: a counter's samples (and a histogram's or summary's) are summed across the texts, a gauge
takes the largest value (the workers' gauges, such as a queue's depth or a source's lag, observe
one shared thing), and a ``_created`` sample keeps the earliest time. One text passes unchanged.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString


def _escape(text: str, quote: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if quote else text


def merge(texts: list[bytes]) -> bytes:
    if len(texts) == 1:
        return texts[0]
    families: dict[str, tuple[str, str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode("utf-8", "replace")):
            _, _, samples = families.setdefault(family.name, (family.type, family.documentation, {}))
            for sample in family.samples:
                key = (sample.name, tuple(sample.labels.items()))
                if key not in samples:
                    samples[key] = sample.value
                elif sample.name.endswith("_created"):
                    samples[key] = min(samples[key], sample.value)
                elif family.type == "gauge":
                    samples[key] = max(samples[key], sample.value)
                else:
                    samples[key] = samples[key] + sample.value
    lines = []
    for name, (kind, documentation, samples) in families.items():
        lines.append(f"# HELP {name} {_escape(documentation, False)}")
        lines.append(f"# TYPE {name} {kind}")
        for (sample_name, labels), value in samples.items():
            rendered = ",".join(f'{k}="{_escape(v, True)}"' for k, v in labels)
            lines.append(f"{sample_name}{{{rendered}}} {floatToGoString(value)}" if labels else
                         f"{sample_name} {floatToGoString(value)}")
    return ("\n".join(lines) + "\n").encode() if lines else b""
