#!/usr/bin/env python3
"""Turn the team-written sources data/demo/qa_source_*.txt into data/demo/qa.jsonl.

Source line: topic|passage|query|answer|surrogate1;surrogate2;surrogate3
Ids are "<topic>-<nnn>". The 1st, 4th, 7th, ... sample of each topic (deterministic) is
held out; "irrelevant" lists the ids of 2 passages of other topics from the same split.
Standard library only.
"""
import glob
import json
import os
import random

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
rows, per_topic = [], {}
for fn in sorted(glob.glob(os.path.join(ROOT, "data/demo/qa_source_*.txt"))):
    with open(fn, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("|")
            if len(parts) != 5:
                raise SystemExit(f"{fn}:{ln}: expected 5 fields, got {len(parts)}")
            topic, passage, query, answer, surr = (p.strip() for p in parts)
            k = per_topic[topic] = per_topic.get(topic, 0) + 1
            rows.append({"id": f"{topic}-{k:03d}", "topic": topic, "passage": passage, "query": query,
                         "answer": answer, "surrogates": [s.strip() for s in surr.split(";") if s.strip()],
                         "split": "heldout" if k % 3 == 1 else "train"})
rng = random.Random(4)
for r in rows:
    pool = [o["id"] for o in rows if o["split"] == r["split"] and o["topic"] != r["topic"]]
    r["irrelevant"] = rng.sample(pool, 2)
keys = ["id", "topic", "passage", "query", "answer", "surrogates", "irrelevant", "split"]
with open(os.path.join(ROOT, "data/demo/qa.jsonl"), "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps({k: r[k] for k in keys}, ensure_ascii=False) + "\n")
print(f"wrote {len(rows)} samples: {sum(r['split'] == 'train' for r in rows)} train, "
      f"{sum(r['split'] == 'heldout' for r in rows)} heldout, {len(per_topic)} topics")
