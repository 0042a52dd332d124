"""Sums a fledge export (JSON Lines) per version: the counts of its interval lines.

    fledge rollouts export support > support.jsonl
    python3 export_totals.py support.jsonl

Prints {"intervals": N, "versions": {"v1": {"requests": ..., ...}, ...}} — what the rollout's
status.totals says, for an export with nothing dropped. Exits 1 if the file was cut short (no end line).
"""
import json
import sys
from collections import defaultdict


def totals(lines):
    versions = defaultdict(lambda: defaultdict(float))
    intervals, ended = set(), False
    for line in lines:
        record = json.loads(line)
        if record["type"] == "interval":
            intervals.add(record["n"])
            sums = versions[record["version"]]
            for key, value in record["counts"].items():
                if key == "evaluations":
                    for name, e in value.items():
                        for k, v in e.items():
                            sums[f"evaluations.{name}.{k}"] += v
                else:
                    sums[key] += value
        ended = record["type"] == "end"
    return {"intervals": len(intervals), "versions": versions}, ended


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        result, ended = totals(f)
    print(json.dumps(result, indent=2, sort_keys=True))
    sys.exit(0 if ended else 1)
