#!/usr/bin/env python3
"""Write a deterministic stand-in for the trained student model as a Python pickle.

    python3 scripts/generate_model.py [--size-mib N] [--seed S] [--out PATH]

The committed data/models/student_model.pkl is the 64 KiB default. Benchmarks and drills that want a
realistic model size (hundreds of MiB) generate one with --size-mib instead of committing it.
"""

import argparse
import pickle
import random
import struct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=float, default=0.0625, help="approximate size in MiB (default 0.0625)")
    parser.add_argument("--seed", type=int, default=20251010)
    parser.add_argument("--out", default="data/models/student_model.pkl")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    n_weights = max(1, int(args.size_mib * 1024 * 1024 / 8))
    weights = struct.pack(f"<{n_weights}d", *(rng.gauss(0.0, 0.1) for _ in range(n_weights)))
    model = {
        "format": "sensequant.student_model",
        "version": "v1.0_20251010",
        "features": ["ret_5m", "ret_30m", "vol_30m", "rsi_14", "vwap_gap", "ofi_5m"],
        "classes": [-1, 0, 1],
        "weights_f64_le": weights,
    }
    with open(args.out, "wb") as out:
        pickle.dump(model, out, protocol=4)


if __name__ == "__main__":
    main()
