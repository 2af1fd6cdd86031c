#!/usr/bin/env python3
"""Interleaves two ARC-format traces into one, for a held-out trace.

Two workloads sharing one cache (two tenants, or two tables of one
service): each line of the output is the next line of one input, the input
picked at random with odds proportional to the lines it has left, so both
end together. The second trace's block numbers are offset by 2^40 so the
two never share a key. Inputs may be plain or zstd-compressed (`.zst`,
read through the `zstd` command); the output is plain text.

    python3 cachebench/scripts/interleave.py OLTP.lis.zst P12.lis.zst MIX.lis
    cargo run --release -p cachebench -- suite --families none --traces MIX.lis

The seed is fixed (`--seed`, default 20261206), so the output is the same
on every machine.
"""
import argparse
import random
import subprocess
import sys

OFFSET = 1 << 40


def lines(path):
    try:
        if path.endswith(".zst"):
            done = subprocess.run(["zstd", "-dc", path], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{path}: zstd failed: {done.stderr.strip()}")
            text = done.stdout
        else:
            with open(path) as f:
                text = f.read()
    except OSError as e:
        sys.exit(f"{path}: {e.strerror}")
    # (line number in the file, line), blank lines skipped.
    return [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=20261206)
    args = p.parse_args()
    rng = random.Random(args.seed)
    a, b = lines(args.first), lines(args.second)
    i = j = 0
    with open(args.out, "w") as out:
        while i < len(a) or j < len(b):
            left_a, left_b = len(a) - i, len(b) - j
            if rng.random() < left_a / (left_a + left_b):
                out.write(a[i][1] + "\n")
                i += 1
            else:
                n, line = b[j]
                fields = line.split()
                try:
                    fields[0] = str(int(fields[0]) + OFFSET)
                except ValueError:
                    sys.exit(f"{args.second}: line {n} does not start with a block number: {line!r}")
                out.write(" ".join(fields) + "\n")
                j += 1


if __name__ == "__main__":
    main()
