"""Expected values for the trained Shakespeare model, from Hugging Face transformers (the
reference implementation of BitNet b1.58 2B4T: `BitNetForCausalLM` with AutoBitLinear online
quantization), for `cargo test` to check the engine against without torch.

    target/train/venv/bin/python tools/reference/hf_expected.py \
        --ckpt target/train/ckpt --out fixtures/shakespeare --bin target/release/bitnet-infer

Reads the checkpoint `tools/train/train.py` wrote and its heldout.txt; writes into --out:
  heldout.txt             the held-out plays (the text perplexity is measured on)
  expected.json           token ids of the probes (from the checkpoint's tokenizer.json via
                          the `tokenizers` library), greedy continuation, perplexity by
                          llama.cpp's rule, the unigram baseline
  expected-logits.npy     float32 [n_probe_tokens, vocab]: transformers' logits of the probe,
                          token by token with its KV cache
  expected-logits-batch.npy  the same from one batched forward pass of the whole probe

transformers' two float paths (one batched pass, or one token at a time with the cache) round
some activations to different int8 codes where `x * s` lies near a rounding tie, and a flipped
code moves later logits by ~1e-2. The engine computes each token the same way whether it is
batched or not, so it is compared with the token-by-token path; expected.json records where
the two transformers paths disagree.

Near-ties: where the engine's f32 `x * s` lies within TIE_WINDOW of a rounding tie, the f32
engine and transformers may round to different codes, and either is right. As
tools/reference/golden.py does for the numpy reference, the engine is run with
BITNET_DUMP_TIES and transformers takes the engine's code there (an AutoBitLinear forward
hook on its quantized input); expected.json counts the codes that differed from
transformers' own rounding. Everything else (weights, norms, attention, logits, argmax) is
transformers' own computation.
"""

import argparse
import json
import math
import os
import shutil

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

# The tie hook, the engine's tie dump and the token-by-token paths (shared with hf_random.py).
from hf_ties import Ties, engine_ties, greedy_incremental, incremental_logits  # noqa: E402

PROBE = "ROMEO.\nBut soft, what light through yonder window breaks?\n"
GREEDY_PROMPT = "KING.\nWhat say you, my lord?\n\n"
N_GREEDY = 64
PPL_CTX = 256
PPL_CHUNKS = 8


def ppl_llama_cpp(model, ids, bos, ctx, chunks):
    """llama.cpp's perplexity: chunks of ctx tokens from an empty cache, the first token
    replaced by BOS, positions ctx/2 .. ctx-2 scored against the next token."""
    nll, nll2, count = 0.0, 0.0, 0
    n = min(len(ids) // ctx, chunks)
    for c in range(n):
        chunk = list(ids[c * ctx:(c + 1) * ctx])
        inp = [bos] + chunk[1:]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([inp])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        for j in range(ctx // 2, ctx - 1):
            x = -float(logp[j, chunk[j + 1]])
            nll += x
            nll2 += x * x
            count += 1
    mean = nll / count
    var = nll2 / count - mean * mean
    ppl = math.exp(mean)
    return {"ctx": ctx, "chunks": n, "n_scored": count, "nll_sum": nll, "ppl": ppl,
            "ppl_stderr": ppl * math.sqrt(var / (count - 1))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", default="target/train/ckpt")
    ap.add_argument("--out", default="fixtures/shakespeare")
    ap.add_argument("--bin", default="target/release/bitnet-infer")
    ap.add_argument("--gguf", default=None, help="the converted model (default: OUT/model.gguf)")
    a = ap.parse_args()
    torch.manual_seed(0)
    os.makedirs(a.out, exist_ok=True)
    tok = Tokenizer.from_file(os.path.join(a.ckpt, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(a.ckpt, dtype=torch.float32)
    model.eval()
    bos = model.config.bos_token_id

    gguf = a.gguf or os.path.join(a.out, "model.gguf")
    probe = [bos] + tok.encode(PROBE).ids
    with torch.no_grad():
        batch = model(input_ids=torch.tensor([probe])).logits[0].float().numpy()
    plain = Ties()
    plain_logits, _ = incremental_logits(model, probe, plain)  # no hook yet: transformers alone
    # A second instance carries the tie hook (one token per call); `model` stays plain for
    # the batched paths below.
    hooked = AutoModelForCausalLM.from_pretrained(a.ckpt, dtype=torch.float32).eval()
    ties = Ties()
    ties.install(hooked)
    ties.load(engine_ties(a.bin, gguf, probe, 0))
    logits, _ = incremental_logits(hooked, probe, ties)
    probe_ties = (len(ties.seen), len(ties.taken))
    np.save(os.path.join(a.out, "expected-logits.npy"), logits.astype(np.float32))
    np.save(os.path.join(a.out, "expected-logits-batch.npy"), batch.astype(np.float32))
    paths_differ = [int(i) for i in np.nonzero(np.abs(plain_logits - batch).max(1) > 1e-3)[0]]
    tie_moved = [int(i) for i in np.nonzero(np.abs(plain_logits - logits).max(1) > 1e-3)[0]]

    prompt = [bos] + tok.encode(GREEDY_PROMPT).ids
    ties.load(engine_ties(a.bin, gguf, prompt, N_GREEDY))
    ties.seen, ties.taken = set(), set()
    greedy = greedy_incremental(hooked, prompt, N_GREEDY, ties)
    greedy_ties = (len(ties.seen), len(ties.taken))
    with torch.no_grad():
        # An explicit mask: generate() infers one that hides every token equal to
        # pad_token_id, and the pad id given here is BOS's.
        ids = torch.tensor([prompt])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=N_GREEDY,
                             do_sample=False, eos_token_id=None, pad_token_id=bos)
    greedy_generate = out[0, len(prompt):].tolist()

    shutil.copyfile(os.path.join(a.ckpt, "heldout.txt"), os.path.join(a.out, "heldout.txt"))
    with open(os.path.join(a.out, "heldout.txt"), encoding="utf-8") as f:
        held = f.read()
    held_ids = [bos] + tok.encode(held).ids
    ppl = ppl_llama_cpp(model, held_ids, bos, PPL_CTX, PPL_CHUNKS)
    # Unigram baseline fitted on the held-out tokens themselves (the most favourable one).
    counts = np.bincount(np.array(held_ids[1:]), minlength=model.config.vocab_size)
    p = counts[counts > 0] / counts.sum()
    unigram = float(np.exp(-(counts[counts > 0] * np.log(p)).sum() / counts.sum()))

    doc = {
        "source": "transformers " + __import__("transformers").__version__
                  + " BitNetForCausalLM (AutoBitLinear online), float32, torch " + torch.__version__,
        "probe_text": PROBE,
        "probe_ids": probe,
        "greedy_prompt_text": GREEDY_PROMPT,
        "greedy_prompt_ids": prompt,
        "greedy_ids": greedy,
        "greedy_text": tok.decode(greedy),
        "greedy_ids_generate": greedy_generate,
        "probe_positions_where_batch_and_incremental_differ": paths_differ,
        "probe_near_ties_seen_and_taken_from_engine": probe_ties,
        "probe_positions_moved_by_taken_ties": tie_moved,
        "greedy_near_ties_seen_and_taken_from_engine": greedy_ties,
        "perplexity": ppl,
        "heldout_tokens": len(held_ids),
        "unigram_ppl": unigram,
    }
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print(json.dumps({k: doc[k] for k in ("greedy_text", "perplexity", "unigram_ppl")}, indent=1))


if __name__ == "__main__":
    main()
