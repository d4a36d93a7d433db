"""Proof against Hugging Face transformers for the `llama` architecture: a small random
1.58-bit `LlamaForCausalLM`, built and computed by transformers itself, for `cargo test`
(bitnet/tests/hf_random_llama.rs) to check the engine against without torch.

    TORCH_COMPILE_DISABLE=1 /work/main/target/train/venv/bin/python \
        tools/reference/hf_llama_expected.py --bin target/release/bitnet-infer

Writes into --out (default fixtures/hf-random/llama-packed), kept under 300 KB:
  config.json, model.safetensors  the checkpoint in the published layout (Falcon3-*-1.58bit,
                                  Llama3-8B-1.58): `quantization_config` {quant_method bitnet,
                                  linear_class bitlinear, offline}, q/k/v/o/gate/up/down as
                                  uint8 `[out/4, in]` made by transformers' `pack_weights`
                                  plus a `weight_scale` (a divisor in `BitLinear`), an untied
                                  `lm_head`; written by `save_pretrained`
  tokenizer.json, tokenizer_config.json  a tiny byte-level BPE trained with `tokenizers`
  expected-logits.npy             float32 [n_prompt, vocab]: transformers' logits of the
                                  prompt, one token at a time with its KV cache, after
                                  `from_pretrained` reloaded the checkpoint (so transformers'
                                  BitNet quantizer and `BitLinear` compute)
  expected.json                   prompt ids, greedy tokens (transformers, token by token),
                                  near-tie counts, provenance

The model is seeded random, not trained: what it proves is that the engine computes the same
function as transformers on this layout (packing, weight_scale, GQA, rotate-half RoPE through
the converter's q/k permutation and the engine's NORM RoPE, no sub-norms, SiLU, untied head).

Near-ties, as tools/reference/hf_expected.py: the engine runs the same tokens with
BITNET_DUMP_TIES; where its f32 `x * s` lies within TIE_WINDOW of a rounding tie,
transformers takes the engine's int8 code (a replacement of `BitLinear.activation_quant`
that computes transformers' own quantization, then applies those codes). expected.json
counts how many such codes differed from transformers' own rounding. Everything else is
transformers' own computation.
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.integrations.bitnet import BitLinear, pack_weights  # noqa: E402

SEED = 1158
# TQ2_0 blocks are 256 elements along each row: every BitLinear input width (hidden, q
# heads x head_dim, intermediate) must be a multiple of 256.
HIDDEN, FF, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 256, 256, 2, 4, 2, 64
VOCAB = 80
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>"]
TRAIN_TEXT = ("the quick brown fox jumps over the lazy dog. a ternary model has weights of "
              "minus one, zero and plus one; the tokens go in, the logits come out. ") * 4
PROMPT = "the lazy fox jumps over the quick brown dog; a model of"
N_PROMPT = 16
N_GREEDY = 16
TIE_WINDOW = 5e-4  # as tools/reference/bitnet_ref.py
MAX_BYTES = 300_000
PROJ = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
# The engine's tie-dump site of each projection's input (bitnet/src/model/ties.rs): the
# norm whose output it quantizes, or without one (llama) the projection itself.
SITE = {"q_proj": "attn_norm", "k_proj": "attn_norm", "v_proj": "attn_norm",
        "o_proj": "attn_output", "gate_proj": "ffn_norm", "up_proj": "ffn_norm",
        "down_proj": "ffn_down"}


def make_tokenizer(out):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([TRAIN_TEXT], trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=SPECIALS, show_progress=False))
    if tok.get_vocab_size() != VOCAB:
        raise SystemExit(f"tokenizer has {tok.get_vocab_size()} tokens, expected {VOCAB}")
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": SPECIALS[0], "eos_token": SPECIALS[1],
                   "add_bos_token": True}, f, indent=1)
    return tok


def quant_config():
    return {"quant_method": "bitnet", "linear_class": "bitlinear",
            "quantization_mode": "offline", "use_rms_norm": False}


def build_checkpoint(out, tok):
    """A seeded random LlamaForCausalLM whose projections are transformers' BitLinear with
    random trits and weight_scales, saved by save_pretrained."""
    g = torch.Generator().manual_seed(SEED)
    bos, eos = tok.token_to_id(SPECIALS[0]), tok.token_to_id(SPECIALS[1])
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FF,
                      num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM, hidden_act="silu",
                      max_position_embeddings=128, rms_norm_eps=1e-5,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                      tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                      bos_token_id=bos, eos_token_id=eos)
    cfg.quantization_config = quant_config()
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        # Larger than the init's 0.02 so the logits spread over a few units.
        model.model.embed_tokens.weight.normal_(0.0, 1.0, generator=g)
        model.lm_head.weight.normal_(0.0, 0.15, generator=g)
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
    for l, layer in enumerate(model.model.layers):
        for path in PROJ:
            parent, attr = path.split(".")
            lin = getattr(getattr(layer, parent), attr)
            trits = torch.randint(-1, 2, (lin.out_features, lin.in_features), generator=g)
            bl = BitLinear(lin.in_features, lin.out_features, bias=False, dtype=torch.bfloat16)
            bl.weight = pack_weights(trits.clone())  # pack_weights adds 1 in place
            # Per tensor, as published: a bf16 scale the output is divided by.
            ws = 10.0 + 10.0 * torch.rand((1,), generator=g)
            bl.weight_scale = ws.to(torch.bfloat16)
            setattr(getattr(layer, parent), attr, bl)
    model.to(torch.bfloat16)
    model.save_pretrained(out)
    gen = os.path.join(out, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)


class Ties:
    """The engine's near-tie codes, put into transformers' int8 activations one token at a
    time (`pos` is set by the caller before each token)."""

    def __init__(self, path):
        self.codes, self.pos, self.seen, self.taken = {}, 0, set(), set()
        with open(path) as f:
            for line in f:
                site, pos, elem, _, code = line.split()
                self.codes[(site, int(pos), int(elem))] = int(code)

    def install(self, model):
        n = 0
        for name, mod in model.named_modules():
            if isinstance(mod, BitLinear):
                layer = int(name.split(".layers.")[1].split(".")[0])
                mod.activation_quant = self.quant_for(f"blk.{layer}.{SITE[name.rsplit('.', 1)[1]]}")
                n += 1
        if n != LAYERS * len(PROJ):
            raise SystemExit(f"{n} BitLinear modules after from_pretrained, expected "
                             f"{LAYERS * len(PROJ)}: transformers did not quantize")

    def quant_for(self, site):
        def activation_quant(x, num_bits=8):
            # transformers' BitLinear.activation_quant, then the engine's codes at near-ties.
            scale = 127 / x.abs().max(dim=-1, keepdim=True).values.clamp(min=1e-5)
            xs = x * scale
            q = xs.round().clamp(-128, 127)
            fq, fxs = q.view(-1, q.shape[-1]), xs.view(-1, xs.shape[-1])
            assert fq.shape[0] == 1, "one token per call"
            for e in torch.nonzero((fxs[0] - fxs[0].floor() - 0.5).abs() < TIE_WINDOW):
                key = (site, self.pos, int(e))
                code = self.codes.get(key)
                if code is not None:
                    self.seen.add(key)
                    if code != int(fq[0, e]):
                        self.taken.add(key)
                        fq[0, e] = code
            return q.to(torch.int8), scale
        return activation_quant


def run_engine(binary, gguf, prompt, n, tmp):
    """The engine's greedy run (scalar kernel, one thread, f32 KV) with BITNET_DUMP_TIES:
    (logits [len(prompt) + n - 1, vocab], generated ids, tie dump path)."""
    ties, out = os.path.join(tmp, "ties.txt"), os.path.join(tmp, "logits.npy")
    r = subprocess.run([binary, "--model", gguf, "--prompt-tokens", ",".join(map(str, prompt)),
                        "-n", str(n), "--temperature", "0", "--kernel", "scalar", "--threads",
                        "1", "--kv-type", "f32", "--logits-out", out],
                       capture_output=True, text=True, env=dict(os.environ, BITNET_DUMP_TIES=ties))
    if r.returncode != 0:
        raise SystemExit(f"engine failed: {r.stderr}")
    open(ties, "a").close()
    logits = np.load(out)
    gen = [int(t) for t in logits[len(prompt) - 1:].argmax(-1)]
    return logits, gen, ties


def transformers_greedy(model, prompt, n, ties):
    """Logits of every prompt position and n greedy tokens, one token at a time."""
    rows, past, gen = [], None, []
    with torch.no_grad():
        for p, t in enumerate(prompt + [None] * n):
            if t is None:
                t = int(rows[-1].argmax())
                gen.append(t)
                if len(gen) == n:
                    break
            ties.pos = p
            o = model(input_ids=torch.tensor([[t]]), past_key_values=past, use_cache=True)
            past = o.past_key_values
            rows.append(o.logits[0, -1].float().numpy())
    return np.stack(rows), gen


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/bitnet-infer")
    ap.add_argument("--out", default="fixtures/hf-random/llama-packed")
    a = ap.parse_args()
    torch.manual_seed(SEED)
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    os.makedirs(a.out)
    tok = make_tokenizer(a.out)
    build_checkpoint(a.out, tok)

    model = AutoModelForCausalLM.from_pretrained(a.out, dtype=torch.float32).eval()
    bos = model.config.bos_token_id
    prompt = ([bos] + tok.encode(PROMPT).ids)[:N_PROMPT]
    if len(prompt) != N_PROMPT:
        raise SystemExit(f"prompt has {len(prompt)} tokens, expected {N_PROMPT}")

    tmp = tempfile.mkdtemp()
    try:
        gguf = os.path.join(tmp, "model.gguf")
        subprocess.run([a.bin, "convert", a.out, "-o", gguf], check=True, capture_output=True)
        eng_logits, eng_gen, dump = run_engine(a.bin, gguf, prompt, N_GREEDY, tmp)
        ties = Ties(dump)
        ties.install(model)
        logits, greedy = transformers_greedy(model, prompt, N_GREEDY, ties)
    finally:
        shutil.rmtree(tmp)

    expected = logits[:N_PROMPT].astype(np.float32)
    np.save(os.path.join(a.out, "expected-logits.npy"), expected)
    diff = float(np.abs(eng_logits[:N_PROMPT] - expected).max())
    full = float(np.abs(eng_logits - logits[:len(eng_logits)]).max())
    doc = {
        "source": f"transformers {transformers.__version__} LlamaForCausalLM with "
                  f"quantization_config {quant_config()} (BitLinear, packed uint8 + "
                  f"weight_scale), from_pretrained in float32, torch {torch.__version__}; "
                  f"built by tools/reference/hf_llama_expected.py, seed {SEED}",
        "prompt_text": PROMPT,
        "prompt_ids": prompt,
        "greedy_ids": greedy,
        "expected_logits": "expected-logits.npy: float32 [len(prompt_ids), vocab], token by "
                           "token with the KV cache",
        "near_ties_seen": len(ties.seen),
        "near_ties_taken_from_engine": len(ties.taken),
        "engine_when_written": {"max_abs_diff_prompt": diff, "max_abs_diff_with_greedy": full,
                                "greedy_ids": eng_gen},
    }
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(a.out, f)) for f in os.listdir(a.out))
    print(json.dumps({k: doc[k] for k in ("greedy_ids", "near_ties_seen",
                                          "near_ties_taken_from_engine",
                                          "engine_when_written")}, indent=1))
    print(f"{a.out}: {size} bytes")
    if size > MAX_BYTES:
        raise SystemExit(f"{a.out} is {size} bytes, over {MAX_BYTES}")
    if diff > 1e-3 or eng_gen != greedy:
        raise SystemExit(f"engine vs transformers: max abs diff {diff:.3e} on the prompt, "
                         f"greedy engine {eng_gen} vs transformers {greedy}")


if __name__ == "__main__":
    main()
