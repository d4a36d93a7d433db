"""Write (or --check) the fixtures' golden logits: float64 numpy reference logits (bitnet_ref.py)
over a prompt and 8 teacher-forced decode positions, for an f32 and an f16 KV cache.

    python3 tools/reference/golden.py --bin target/release/bitnet-infer [--check]

Per fixtures/<name>.gguf: prompt P = BOS + check.PROMPT. The engine (scalar kernel, one thread,
f32 KV) decodes 9 tokens greedily; D = its first 8 (argmax of logit rows P-1 .. P+6). Then, for
each KV type, the engine is run teacher-forced on D with BITNET_DUMP_TIES, and the reference
computes the logits of P + D taking the engine's observed codes at near-ties. Written:
<name>.golden.npy (f32 KV) and <name>.golden-kv-f16.npy, float32 [len(P) + 8, vocab], and
<name>.golden.json (tokens, file names, observed tie counts).

Fails (exit 1, naming the model) if the reference's argmax differs from D where its top-2 margin
exceeds 1e-3, or the engine is more than --tolerance from the reference; with --check, also if
a committed file is missing or differs from the fresh computation (.npy by more than 1e-5 abs,
.json in any field but the informative observed_ties counts). --check writes nothing.
"""

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

sys.dont_write_bytecode = True  # leave no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bitnet_ref  # noqa: E402
import check  # noqa: E402

N_DECODE = 8
SOURCE = "tools/reference/bitnet_ref.py (numpy float64)"
KV_FILES = {"f32": "{}.golden.npy", "f16": "{}.golden-kv-f16.npy"}
# Committed goldens against a fresh computation: both are float64 numpy rounded to float32,
# so only a different numpy / BLAS summation order may move them, by far less than this.
GOLDEN_TOLERANCE = 1e-5


class Failure(Exception):
    pass


def compute(binary, path, tolerance):
    """({file name: float32 logits}, golden.json dict, summary, detail lines) for one
    fixture."""
    name = os.path.basename(path)[:-len(".gguf")]
    model = bitnet_ref.Model(path)
    bos = model.g.meta.get("tokenizer.ggml.bos_token_id")
    prompt = ([bos] if bos is not None else []) + check.PROMPT
    n_p, vocab = len(prompt), len(model.embd)

    greedy, _ = check.run_engine(binary, path, prompt, "f32", max_tokens=N_DECODE + 1,
                                 kernel="scalar")
    if greedy.shape != (n_p + N_DECODE, vocab):
        raise Failure(f"greedy run: logits shape {greedy.shape}, expected "
                      f"{(n_p + N_DECODE, vocab)} (did it stop at end-of-text?)")
    decode = [int(t) for t in greedy[n_p - 1:n_p + N_DECODE - 1].argmax(-1)]
    tokens = prompt + decode

    arrays, observed, summary, details = {}, {}, [], []
    for kv, pattern in KV_FILES.items():
        eng, ties = check.run_engine(binary, path, prompt, kv, force=decode, kernel="scalar")
        if kv == "f32" and not np.array_equal(eng, greedy):
            raise Failure("the teacher-forced f32 run's logits differ from the greedy run's "
                          "although it was fed the greedy tokens")
        ref = model.forward(tokens, kv, ties)
        n_used, lines = check.tie_report(model)
        if kv == "f32":
            # D is the f32 engine's greedy choice. (An f16 cache moves these random models'
            # logits by ~0.5, so under f16 D is only the forced input; its argmax is checked
            # against the f16 engine's below.)
            rows = ref[n_p - 1:n_p + N_DECODE - 1]
            top2 = np.sort(rows, axis=-1)[:, -2:]
            off = [i for i in range(N_DECODE)
                   if top2[i, 1] - top2[i, 0] > check.MARGIN and rows[i].argmax() != decode[i]]
            if off:
                raise Failure(f"kv {kv}: the reference's argmax differs from the engine's "
                              f"decode tokens at decode steps {off} (reference "
                              f"{[int(rows[i].argmax()) for i in off]}, engine "
                              f"{[decode[i] for i in off]}) with a top-2 margin above "
                              f"{check.MARGIN}")
        diff, bad_pos = check.compare(eng, ref)
        if diff > tolerance or bad_pos:
            raise Failure(f"kv {kv}: engine vs reference max_abs {diff:.3e} (tolerance "
                          f"{tolerance:g}), argmax differs at positions {bad_pos}"
                          + "".join(lines))
        arrays[pattern.format(name)] = ref.astype(np.float32)
        observed[kv] = n_used
        summary.append(f"{kv} max_abs {diff:.3e} (ties observed {n_used})")
        details += [line.replace("near-tie", f"kv {kv}: near-tie", 1) for line in lines]
    doc = {"source": SOURCE, "prompt_tokens": prompt, "decode_tokens": decode,
           "kv": {kv: p.format(name) for kv, p in KV_FILES.items()},
           "observed_ties": observed}
    return arrays, doc, "  ".join(summary), "".join(details)


def dump_json(doc):
    """One key per line, lists inline: reviewable diffs."""
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items()) \
        + "\n}\n"


def compare_committed(fixtures, name, arrays, doc):
    """Raises Failure naming the first committed file that is missing or stale; returns a
    note when only the informative observed_ties counts moved."""
    path = os.path.join(fixtures, f"{name}.golden.json")
    try:
        with open(path) as f:
            committed = json.load(f)
    except (OSError, ValueError) as e:
        raise Failure(f"{path}: {e}") from None
    # observed_ties is a diagnostic: a change in the engine's f32 noise moves it without
    # moving the logits, which the .npy comparison below judges.
    for key in sorted((set(doc) | set(committed)) - {"observed_ties"}):
        if key not in doc or committed.get(key) != doc[key]:
            raise Failure(f"{path}: field {key!r} is {committed.get(key)!r}, a fresh "
                          f"computation gives {doc.get(key)!r}; run golden.py without --check")
    for file, fresh in arrays.items():
        p = os.path.join(fixtures, file)
        try:
            old = np.load(p)
        except (OSError, ValueError) as e:
            raise Failure(f"{p}: {e}") from None
        if old.dtype != np.float32 or old.shape != fresh.shape:
            raise Failure(f"{p}: {old.dtype} {old.shape}, expected float32 {fresh.shape}")
        d = np.abs(old.astype(np.float64) - fresh).max()
        if d > GOLDEN_TOLERANCE:
            raise Failure(f"{p}: differs from a fresh computation by {d:.3e} > "
                          f"{GOLDEN_TOLERANCE:g}; run golden.py without --check")
    if committed.get("observed_ties") != doc["observed_ties"]:
        return (f"  (note: observed_ties now {doc['observed_ties']}, committed "
                f"{committed.get('observed_ties')})")
    return ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="bitnet-infer (a std build)")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; fail if the committed goldens are stale")
    ap.add_argument("--tolerance", type=float, default=1e-3,
                    help="max |engine - reference| (default 1e-3)")
    ap.add_argument("--fixtures", default=os.path.join(check.ROOT, "fixtures"))
    args = ap.parse_args()
    models = sorted(glob.glob(os.path.join(args.fixtures, "*.gguf")))
    if not models:
        sys.exit(f"no *.gguf under {args.fixtures}")
    passed = failed = 0
    t0 = time.time()
    for path in models:
        name = os.path.basename(path)[:-len(".gguf")]
        try:
            arrays, doc, summary, details = compute(args.bin, path, args.tolerance)
            if args.check:
                summary += compare_committed(args.fixtures, name, arrays, doc)
            else:
                for file, a in arrays.items():
                    np.save(os.path.join(args.fixtures, file), a)
                with open(os.path.join(args.fixtures, f"{name}.golden.json"), "w") as f:
                    f.write(dump_json(doc))
            summary, ok = summary + details, True
        except Failure as e:
            ok, summary = False, str(e)
        except Exception as e:  # a broken model or binary is a failure, reported by name
            ok, summary = False, f"error: {e}"
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'PASS' if ok else 'FAIL'}  {name:24s} {summary}", flush=True)
    print(f"({time.time() - t0:.1f}s, {'checked' if args.check else 'wrote'} goldens in "
          f"{args.fixtures}, tolerance {args.tolerance:g})")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
