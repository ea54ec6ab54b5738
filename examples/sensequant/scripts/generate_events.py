#!/usr/bin/env python3
"""Generate realistic synthetic outcome events (JSON lines) for SenseQuant's two strategies.

    python3 scripts/generate_events.py [--start 2025-09-01] [--days 28] [--seed 20251010]
                                       [--intraday-hit 0.56] [--swing-precision 0.61]
                                       [--release-id ID] [--out data/backtest/events.jsonl]

Intraday: every trading day 09:15-15:30 IST, each symbol gets a prediction every 30 minutes; about
15 % are "no trade" (signal 0). Swing: two predictions per symbol per day, resolved at the close.
The committed data/backtest/events.jsonl is the default run (fixed seed, four weeks). The same
script with a lower --intraday-hit and a later --start writes post-deploy events with a regression.
"""

import argparse
import datetime as dt
import json
import random

SYMBOLS = ["RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK"]
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def direction(rng: random.Random) -> int:
    return 1 if rng.random() < 0.5 else -1


def trade(rng, ts, strategy, symbol, p_right, scale, release_id, counter):
    signal = 0 if rng.random() < 0.15 else direction(rng)
    if signal == 0:
        outcome = direction(rng)
        ret = 0.0
    else:
        right = rng.random() < p_right
        outcome = signal if right else -signal
        magnitude = abs(rng.gauss(scale, scale * 0.6))
        ret = round(magnitude if right else -magnitude * 0.95, 6)
    event = {
        "id": f"{strategy[:2]}-{counter:07d}",
        "ts": ts.isoformat(),
        "strategy": strategy,
        "symbol": symbol,
        "signal": signal,
        "outcome": outcome,
        "return": ret,
    }
    if release_id:
        event["release_id"] = release_id
    return event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2025-09-01")
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--seed", type=int, default=20251010)
    parser.add_argument("--intraday-hit", type=float, default=0.56)
    parser.add_argument("--swing-precision", type=float, default=0.61)
    parser.add_argument("--release-id", default=None)
    parser.add_argument("--out", default="data/backtest/events.jsonl")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    start = dt.date.fromisoformat(args.start)
    counter = 0
    events = []
    for day in range(args.days):
        date = start + dt.timedelta(days=day)
        if date.weekday() >= 5:
            continue
        open_time = dt.datetime(date.year, date.month, date.day, 9, 15, tzinfo=IST)
        for slot in range(12):
            ts = open_time + dt.timedelta(minutes=30 * slot + 30)
            for symbol in SYMBOLS:
                counter += 1
                events.append(trade(rng, ts, "intraday", symbol, args.intraday_hit, 0.004, args.release_id, counter))
        close = dt.datetime(date.year, date.month, date.day, 15, 30, tzinfo=IST)
        for symbol in SYMBOLS:
            for _ in range(2):
                counter += 1
                events.append(trade(rng, close, "swing", symbol, args.swing_precision, 0.012, args.release_id, counter))
    with open(args.out, "w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
