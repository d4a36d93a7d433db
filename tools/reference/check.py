"""Compare bitnet-infer's logits with the float64 reference (bitnet_ref.py) on every fixture.

    python3 tools/reference/check.py [--bin target/release/bitnet-infer] [--tolerance 1e-3]

Fails (exit 1) if a model's max |engine - reference| exceeds the tolerance, or if the argmax
differs at a position where the reference's top-2 margin exceeds 1e-3 (a tie is not a bug).
An activation that lands within f32 noise of a rounding tie may be quantized the other way by
the f32 engine; such near-ties are flipped in the reference (see `reference`, at most MAX_FLIPS)
and listed in the output.
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.dont_write_bytecode = True  # leave no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bitnet_ref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# raw ids after the model's BOS; any ids below the fixtures' vocab size (379) would do
PROMPT = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108]
MARGIN = 1e-3
MAX_FLIPS = 8


def engine_logits(binary, model, tokens):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "logits.npy")
        cmd = [binary, "--model", model, "--prompt-tokens", ",".join(map(str, tokens)),
               "--max-tokens", "1", "--temperature", "0", "--kv-type", "f32", "--threads", "1",
               "--logits-out", out]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {run.returncode}: {run.stderr.strip()}")
        return np.load(out)


def reference(model, tokens, eng, tolerance):
    """Reference logits [T, V], with near-ties (|x*s - k.5| <= bitnet_ref.TIE_WINDOW) rounded
    the engine's way where that is what separates the two. Causal search: at the first position
    t0 off by more than the tolerance, try each near-tie at a position <= t0 on tokens[:t0+1]
    and keep the flip that lowers its error most (two ties at one position may each explain part).
    A real bug is not a few roundings of values within f32 noise of a tie, so it still fails."""
    flips, raw = {}, None
    while True:
        ref = model.forward(tokens, frozenset(flips))
        err = np.abs(eng - ref).max(-1)                     # [T]
        raw = err.max() if raw is None else raw
        bad = np.flatnonzero(err > tolerance)
        if not len(bad) or len(flips) == MAX_FLIPS:
            return ref, flips, raw
        t0 = bad[0]
        # ties at t0 first (the likeliest culprits), closest to .5 first
        ties = sorted((-key[1], d, key, v) for d, key, v in model.ties
                      if key[1] <= t0 and key not in flips)
        best = (0.9 * err[t0], None, None)                  # a flip must lower the error
        for _, _, key, v in ties:
            r = model.forward(tokens[:t0 + 1], frozenset(flips) | {key})
            best = min(best, (np.abs(eng[:t0 + 1] - r).max(), key, v), key=lambda b: b[0])
            if best[0] <= tolerance:
                break
        if best[1] is None:
            return ref, flips, raw
        flips[best[1]] = best[2]


def compare(eng, model, tokens, tolerance):
    """(ok, summary) for engine logits eng [T, V] against the reference model."""
    want = (len(tokens), len(model.embd))
    if eng.shape != want:
        return False, f"engine logits shape {eng.shape}, expected {want}"
    eng = eng.astype(np.float64)
    ref, flips, raw = reference(model, tokens, eng, tolerance)
    diff = np.abs(eng - ref)
    top2 = np.sort(ref, axis=-1)[:, -2:]
    agree = eng.argmax(-1) == ref.argmax(-1)
    bad_pos = np.flatnonzero((top2[:, 1] - top2[:, 0] > MARGIN) & ~agree).tolist()
    ok = diff.max() <= tolerance and not bad_pos
    return ok, (f"max_abs {diff.max():.3e}  max_rel {diff.max() / np.abs(ref).max():.3e}  "
                f"argmax {agree.sum()}/{len(ref)}"
                + (f"  argmax mismatch at positions {bad_pos}" if bad_pos else "")
                + (f"  (max_abs {raw:.3e} before {len(flips)} near-tie flips)" if flips else "")
                + "".join(f"\n      near-tie rounded the other way: {site} pos {t} elem {j} "
                          f"x*s = {v:.9f}" for (site, t, j), v in flips.items()))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/bitnet-infer"))
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "fixtures"))
    ap.add_argument("--prompt-tokens", help="comma-separated token ids, used as is "
                    f"(default: the model's BOS, then {','.join(map(str, PROMPT))})")
    args = ap.parse_args()
    models = sorted(glob.glob(os.path.join(args.fixtures, "*.gguf")))
    if not models:
        sys.exit(f"no *.gguf under {args.fixtures}")
    passed = failed = 0
    t0 = time.time()
    for path in models:
        name = os.path.basename(path)
        try:
            model = bitnet_ref.Model(path)
            if args.prompt_tokens:
                tokens = [int(t) for t in args.prompt_tokens.split(",")]
            else:
                bos = model.g.meta.get("tokenizer.ggml.bos_token_id")
                tokens = ([bos] if bos is not None else []) + PROMPT
            ok, summary = compare(engine_logits(args.bin, path, tokens), model, tokens,
                                  args.tolerance)
        except Exception as e:  # a broken model or binary is a failure, reported by name
            ok, summary = False, f"error: {e}"
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'PASS' if ok else 'FAIL'}  {name:28s} {summary}", flush=True)
    print(f"({time.time() - t0:.1f}s, tolerance {args.tolerance:g})")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
