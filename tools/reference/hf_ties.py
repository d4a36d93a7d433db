"""What the transformers proofs share (hf_expected.py for the trained model, hf_random.py for
the random checkpoints): the engine's near-tie codes injected into transformers' int8
activations, the engine run that dumps them, and transformers' token-by-token paths.

Near-ties: where the engine's f32 `x * s` lies within TIE_WINDOW of a rounding tie, the f32
engine and transformers may round to different codes, and either is right. As
tools/reference/golden.py does for the numpy reference, the engine is run with
BITNET_DUMP_TIES and transformers takes the engine's code there (a hook on its quantized
input); the caller reports how many codes differed from transformers' own rounding.
Everything else (weights, norms, attention, logits, argmax) is transformers' own computation.
"""

import os
import subprocess
import tempfile

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")  # transformers' quant ops are @torch.compile

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers.integrations.bitnet import AutoBitLinear, BitLinear, WeightQuant  # noqa: E402

TIE_WINDOW = 5e-4  # as tools/reference/bitnet_ref.py
# The engine's name of the norm whose output each projection quantizes.
SITE = {"q_proj": "attn_norm", "k_proj": "attn_norm", "v_proj": "attn_norm",
        "o_proj": "attn_sub_norm", "gate_proj": "ffn_norm", "up_proj": "ffn_norm",
        "down_proj": "ffn_sub_norm"}


def site_of(name):
    """`model.layers.3.mlp.up_proj` -> `blk.3.ffn_norm`."""
    layer = int(name.split(".layers.")[1].split(".")[0])
    return f"blk.{layer}.{SITE[name.rsplit('.', 1)[1]]}"


def near_ties(xs_row):
    """Elements of one token's `x * s` within TIE_WINDOW of a rounding tie."""
    return [int(e) for e in torch.nonzero((xs_row - xs_row.floor() - 0.5).abs() < TIE_WINDOW)]


class Ties:
    """The engine's near-tie codes, applied to transformers' int8 activations one token at a
    time (`pos` is set by the caller before each token).

    Two linear classes carry transformers' BitNet: `AutoBitLinear` (master weights, online
    ternarisation; the -bf16 repository and training) and `BitLinear` (packed uint8 weights
    and a `weight_scale` divisor; the 2B4T repository). For AutoBitLinear the forward is
    transformers' own (ActQuant, WeightQuant, linear) restated with the hook in between, as
    ActQuant is a function it calls, not a method to wrap. For BitLinear only its
    `activation_quant` method is wrapped: the unpacking, the integer matmul and
    `post_quant_process` stay transformers' code."""

    def __init__(self):
        self.codes, self.pos, self.taken, self.seen = {}, 0, set(), set()

    def load(self, path):
        self.codes = {}
        with open(path) as f:
            for line in f:
                site, pos, elem, _, code = line.split()
                self.codes[(site, int(pos), int(elem))] = int(code)

    def install(self, model):
        for name, mod in model.named_modules():
            if isinstance(mod, AutoBitLinear):
                mod.forward = self.forward_for(mod, site_of(name))
            elif isinstance(mod, BitLinear):
                mod.activation_quant = self.activation_quant_for(mod, site_of(name))

    def apply(self, site, q, xs):
        """Replaces, in place, transformers' code `q` by the engine's at each near-tie of
        this token that the engine reported."""
        flat_q, flat_xs = q.view(-1, q.shape[-1]), xs.view(-1, xs.shape[-1])
        assert flat_q.shape[0] == 1, "one token per call"
        for e in near_ties(flat_xs[0]):
            code = self.codes.get((site, self.pos, e))
            if code is not None:
                # Only one of the tie's two neighbours is a rounding of this value; any
                # other code means the engine computed something else there.
                lo = int(flat_xs[0, e].floor())
                if code not in (max(lo, -128), min(lo + 1, 127)):
                    raise ValueError(f"{site} pos {self.pos} elem {e}: engine code {code} is "
                                     f"not a rounding of x*s = {float(flat_xs[0, e])}")
                self.seen.add((site, self.pos, e))
                if code != int(flat_q[0, e]):
                    self.taken.add((site, self.pos, e))
                    flat_q[0, e] = code

    def forward_for(self, mod, site):
        def forward(x):
            # transformers' ActQuant and AutoBitLinear (online), with the engine's codes at
            # its near-ties: one token per call.
            x = x.float()
            s = 127 / x.abs().max(dim=-1, keepdim=True).values.clamp_(min=1e-5)
            xs = x * s
            q = xs.round().clamp(-128, 127)
            self.apply(site, q, xs)
            return torch.nn.functional.linear(q / s, WeightQuant.apply(mod.weight), mod.bias)
        return forward

    def activation_quant_for(self, mod, site):
        own = mod.activation_quant

        def activation_quant(x, num_bits=8):
            q, s = own(x, num_bits)
            # The product BitLinear.activation_quant rounded, recomputed by the same op on
            # the same tensors, so the same f32 values.
            self.apply(site, q, x * s)
            return q, s
        return activation_quant


class Codes:
    """Records transformers' own int8 codes (no engine input) per site and position, to
    count where its batched and token-by-token paths round differently."""

    def __init__(self):
        self.rows, self.pos = {}, 0

    def install(self, model):
        for name, mod in model.named_modules():
            # q/k/v (and gate/up) quantize the same input: one record per site.
            if name.endswith(("q_proj", "o_proj", "gate_proj", "down_proj")):
                if isinstance(mod, (AutoBitLinear, BitLinear)):
                    mod.register_forward_pre_hook(self.hook_for(site_of(name)))

    def hook_for(self, site):
        def hook(_mod, args):
            x = args[0].float()
            s = 127 / x.abs().max(dim=-1, keepdim=True).values.clamp(min=1e-5)
            q = (x * s).round().clamp(-128, 127)
            for i, row in enumerate(q.view(-1, q.shape[-1])):
                self.rows[(site, self.pos + i)] = row.to(torch.int16).numpy().copy()
        return hook


def differ(a, b):
    """(elements, positions) where two `Codes.rows` records hold different codes."""
    keys = sorted(set(a) & set(b))
    elems = sum(int((a[k] != b[k]).sum()) for k in keys)
    pos = sorted({k[1] for k in keys if (a[k] != b[k]).any()})
    return elems, pos


def engine_ties(binary, gguf, prompt, n):
    """Runs the engine greedily (scalar kernel, one thread, f32 KV) on `prompt` for `n` tokens
    with BITNET_DUMP_TIES; returns the dump's path (in a temporary directory kept alive by
    the caller)."""
    tmp = tempfile.mkdtemp()
    ties, out = os.path.join(tmp, "ties.txt"), os.path.join(tmp, "l.npy")
    subprocess.run([binary, "--model", gguf, "--prompt-tokens", ",".join(map(str, prompt)),
                    "-n", str(n), "--temperature", "0", "--kernel", "scalar", "--threads", "1",
                    "--kv-type", "f32", "--logits-out", out],
                   check=True, capture_output=True, env=dict(os.environ, BITNET_DUMP_TIES=ties))
    open(ties, "a").close()
    return ties


def incremental_logits(model, ids, ties):
    """Logits of every position, feeding one token at a time through the KV cache."""
    rows, past = [], None
    with torch.no_grad():
        for p, t in enumerate(ids):
            ties.pos = p
            out = model(input_ids=torch.tensor([[t]]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            rows.append(out.logits[0, -1].float().numpy())
    return np.stack(rows), past


def greedy_incremental(model, prompt, n, ties, rows=None):
    """Greedy continuation, every token (prompt included) fed one at a time. `rows`, when
    given, receives the logits of every position evaluated (prompt, then each fed token)."""
    logits, past = incremental_logits(model, prompt, ties)
    if rows is not None:
        rows.extend(logits)
    tok, out = int(logits[-1].argmax()), []
    with torch.no_grad():
        for i in range(n):
            out.append(tok)
            ties.pos = len(prompt) + i
            step = model(input_ids=torch.tensor([[tok]]), past_key_values=past, use_cache=True)
            past = step.past_key_values
            if rows is not None:
                rows.append(step.logits[0, -1].float().numpy())
            tok = int(step.logits[0, -1].argmax())
    return out
