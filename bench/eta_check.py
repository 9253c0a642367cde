"""How far the attack stage's first projection is from the time the stage took (issue 29 item 3).

Run a scan (or the demo) with a fresh --cache-dir, keep its stderr, then:

    python bench/eta_check.py scan.log out/results.json

It reads the first ``attack stage: ... projected X more`` line of every surrogate (the clock prints one per
source after its first computed batch) and the seconds each adversarial set took (results.json
``extras.adversarial_sets``), and prints projected vs actual with the host's CPU model. Target: within
±50 % of the actual attack stage.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys


def _seconds(text: str) -> float:
    h = re.search(r"(\d+) h", text)
    m = re.search(r"(\d+) min", text)
    s = re.search(r"(\d+) s\b", text)
    return sum(float(g.group(1)) * k for g, k in ((h, 3600), (m, 60), (s, 1)) if g)


def main(log_path: str, results_path: str) -> None:
    """Print projected against actual attack-stage seconds."""
    lines = [ln for ln in open(log_path, encoding="utf-8") if ln.startswith("attack stage: first")]
    sets = json.load(open(results_path, encoding="utf-8"))["extras"]["adversarial_sets"]
    actual = sum(s["seconds"] for s in sets if s.get("seconds") is not None and not s.get("cache_hit"))
    first = lines[0]
    rate = float(re.search(r"batch ([0-9.]+) s/image", first).group(1))
    projected = _seconds(first.split("projected", 1)[1].split("more", 1)[0])
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?")
    print(f"host: {model}")
    print(f"first projection: {first.strip()}")
    print(f"projected (after the first batch, first batch at {rate} s/image): {projected:.0f} s more")
    print(f"actual attack stage (uncached sets): {actual:.1f} s; error {100 * (projected - actual) / actual:+.0f} %")


if __name__ == "__main__":
    main(*sys.argv[1:3])
