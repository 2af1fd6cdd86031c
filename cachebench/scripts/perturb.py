#!/usr/bin/env python3
"""Perturbation run for the default policy's constants.

For each constant named on the command line (or every one in CONSTANTS),
rewrites its value ×0.5 and ×2 in the source, rebuilds cachebench in release
mode, runs `cachebench suite --subjects shardcache` on the synthetic
families (and the traces in --traces, if given), restores the source, and
prints every cell's change against the unperturbed build.

    python3 cachebench/scripts/perturb.py --traces /path/to/traces [NAME ...]

The source is restored from a copy taken before each edit, also on errors
and Ctrl-C. Run it from the repository root on a clean checkout.
"""
import argparse
import re
import subprocess
import sys

# (file, constant): every tunable of the default policy.
CONSTANTS = [
    ("src/policy/ghost.rs", "INITIAL_WINDOW"),
    ("src/policy/ghost.rs", "GHOST_SLOTS_PER_ENTRY"),
    ("src/policy/ghost.rs", "STEP_ENTRIES"),
    ("src/policy/ghost.rs", "GHOST_REACH"),
    ("src/policy/ghost.rs", "RETURNS_SPAN"),
    ("src/policy/ghost.rs", "EARLY_SHIFT"),
    ("src/policy/recency.rs", "GROUPS"),
    ("src/policy/tinylfu.rs", "PROTECTED_FIFTHS"),
    ("src/policy/tinylfu.rs", "ADMIT_HASHDOS_THRESHOLD"),
    ("src/policy/tinylfu.rs", "ADMIT_MARGIN_FROM"),
    ("src/policy/sketch.rs", "SAMPLE_FACTOR"),
    ("src/policy/sketch.rs", "MIN_WORDS"),
]


# Constants that are exponents of two: ×0.5 and ×2 of what they stand for
# are one less and one more.
EXPONENTS = {"EARLY_SHIFT"}


def scaled(value, factor, name=""):
    v = value.replace("_", "")
    if name in EXPONENTS:
        return str(int(v) + (1 if factor > 1 else -1))
    if "." in v:
        return repr(min(float(v) * factor, 1.0) if factor > 1 and float(v) < 1 else float(v) * factor)
    return str(max(1, int(int(v) * factor)))


def suite(args):
    cmd = ["./target/release/cachebench", "suite", "--subjects", "shardcache",
           "--sizes", args.sizes, "--ladder", "4"]
    if args.traces:
        cmd += ["--traces", args.traces]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    cells = {}
    for line in out.splitlines():
        m = re.match(r"\| (\S+ @ \d+) \| [\d.]+ \| ([\d.]+) \|", line)
        if m:
            cells[m.group(1)] = float(m.group(2))
    return cells


def build():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "cachebench"], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    chosen = [c for c in CONSTANTS if not args.names or c[1] in args.names]
    build()
    base = suite(args)
    print(f"baseline: {len(base)} cells", flush=True)
    for path, name in chosen:
        src = open(path).read()
        pat = re.compile(rf"(const {name}: \w+ = )([\d_.]+);")
        m = pat.search(src)
        if not m:
            print(f"{name}: not found in {path}", file=sys.stderr)
            continue
        for factor in (0.5, 2.0):
            new = scaled(m.group(2), factor, name)
            try:
                open(path, "w").write(pat.sub(rf"\g<1>{new};", src, count=1))
                build()
                cells = suite(args)
            finally:
                open(path, "w").write(src)
            diffs = {k: cells[k] - base[k] for k in base if k in cells}
            worst = min(diffs.items(), key=lambda kv: kv[1])
            best = max(diffs.items(), key=lambda kv: kv[1])
            down = [f"{k} {d:+.2f}" for k, d in diffs.items() if d < -1.0]
            print(f"{name} x{factor} ({m.group(2)} -> {new}): worst {worst[0]} {worst[1]:+.2f}, "
                  f"best {best[0]} {best[1]:+.2f}; cells down > 1: {len(down)} {down}", flush=True)
    build()


if __name__ == "__main__":
    main()
