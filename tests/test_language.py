"""The language: what parses, what it means, and one test per error message (text, line, column).

In each bad spec, `⟨` marks where the error must point; it is removed before parsing.
"""

from __future__ import annotations

import pytest

from archdsl.errors import SpecError
from archdsl.resolve import loads

MARK = "⟨"


def spec(model: str = "", block: str | None = None, layers: str = "2 x b", extra: str = "", head: str = "model m {") -> str:
    block = "    attention gqa(heads=4, kv_heads=2)\n    ffn swiglu(hidden=64)" if block is None else block
    return f"""{head}
  vocab 100
  d_model 64
  context 16
  norm rms
{model}
  block b {{
{block}
  }}
{extra}
  layers {layers}
}}
"""


MOE = "    attention gqa(heads=4, kv_heads=2)\n    ffn moe({})"
LONGROPE = "    attention gqa(heads=4, kv_heads=2)\n    ffn swiglu(hidden=64)\n    rope scaling=longrope("


def located(text: str) -> tuple[str, int, int]:
    index = text.index(MARK)
    before = text[:index]
    line = before.count("\n") + 1
    column = index - (before.rfind("\n") + 1) + 1
    return text.replace(MARK, "", 1), line, column


def errors_of(text: str) -> list:
    with pytest.raises(SpecError) as info:
        loads(text, "t.arch")
    return info.value.diagnostics


# (id, spec with a mark, exact message, hint or None to skip checking it)
CASES = [
    # --- syntax -------------------------------------------------------------------------------
    ("keyword misspelled", f"{MARK}modle m {{}}", "unexpected name 'modle', expected 'model'", "did you mean 'model'?"),
    ("unexpected character", spec(model=f"  d_ff {MARK}@"), "unexpected character '@', expected a value, '{', '}' or the end of the statement", None),
    ("unterminated string", f'model m {MARK}"abc\n', "unterminated string", 'a string ends with " on the same line'),
    ("end of file", f"model m {{\n  vocab 1{MARK}\n", "unexpected end of file", "is a '}' missing? the '{' at line 1, column 9 is not closed"),
    ("missing value", spec(model=f"  final_softcap (1 + {MARK})"), "unexpected ')', expected a value", None),
    ("equals sign", spec(model=f"  vocab {MARK}= 3"), "unexpected '=', expected a value, '{', '}' or the end of the statement", None),
    ("pattern word", spec(layers=f"2 {MARK}y b"), "unexpected name 'y', expected '..', 'of' or 'x'", None),
    ("malformed number", spec(model=f"  final_softcap {MARK}1__0"), "malformed number '1__0'", "underscores may only separate digits, as in 1_000_000"),
    ("number out of range", spec(model=f"  final_softcap {MARK}1e400"), "number '1e400' is out of range", "exponents are limited to ±300"),
    ("number too large", spec(model=f"  final_softcap {MARK}1{'0' * 31}"), "number '1" + "0" * 31 + "' is too large (the limit is 10**30)", None),
    ("too many digits", spec(model=f"  final_softcap {MARK}0.{'1' * 301}"), f"number '0.{'1' * 301}' has too many digits", "at most 300 digits after the point"),
    ("thousands of digits", spec(model=f"  final_softcap {MARK}{'9' * 5000}"), f"number '{'9' * 5000}' is too large (the limit is 10**30)", None),
    ("exponent digits", spec(model=f"  final_softcap {MARK}1e{'9' * 5000}"), f"number '1e{'9' * 5000}' is out of range", "exponents are limited to ±300"),
    ("too many tokens", "model m {\n  vocab " + "1 + " * 9_997 + f"1 {MARK}+ 1\n}}\n", "the spec is too long: more than 20,000 words and symbols", "a spec is a few hundred"),
    ("bad escape", f'model m {MARK}"a\\qb" {{}}', "unknown escape '\\q' in string", None),
    ("after the model", f"model m {{\n}}\n{MARK}}}\n", "unexpected '}' after the end of the model", "the model ends at the '}' on line 2; is there a '}' too many?"),
    ("second model", f"model m {{\n}}\n{MARK}model n {{\n}}\n", "unexpected 'model' after the end of the model", "a file holds one model"),
    ("nested too deeply", spec(model="  final_softcap " + "- " * 100 + f"{MARK}- 1"), "nested too deeply: more than 100 levels of operators, calls or groups", None),
    ("pattern nested too deeply", spec(layers="(" * 100 + f"{MARK}(b" + ")" * 101), "nested too deeply: more than 100 levels of operators, calls or groups", None),
    ("colon", spec(model=f"  final_softcap{MARK}: 3"), "unexpected character ':', expected a value, '{', '}' or the end of the statement", "a setting is written 'key value', without ':'"),
    ("curly quotes", f"model m {MARK}\u201cM\u201d {{}}", "unexpected character '\u201c', expected '{' or a string", 'strings are written in straight double quotes: "..."'),
    ("equals after a key", spec(model=f"  final_softcap {MARK}= 3"), "unexpected '=', expected a value, '{', '}' or the end of the statement", "a setting is written 'key value', without '='; key=value names a part inside a setting, as in rope theta=10_000"),
    ("unclosed parenthesis", spec(block=f"    attention gqa(heads=4, kv_heads=2\n    ffn swiglu(hidden=64)").replace("  }\n\n", f"  {MARK}}}\n\n", 1), "unexpected '}', expected a value, ')' or ','", "is a ')' missing? the '(' at line 8, column 18 is not closed"),
    ("end of line", spec(layers=f"2 x b,{MARK}"), "unexpected end of the line, expected '(', a name or a number", None),
    ("block inside a setting", spec(block=f"    attention gqa {{ heads 4; kv_heads 2; block {MARK}c {{ }} }}\n    ffn swiglu(hidden=64)"), "'block' cannot appear inside a setting", "define blocks and layers at model level"),
    ("layers inside a block", spec(block=f"    {MARK}layers 2 x b"), "'layers' cannot appear inside a block", "define blocks and layers at model level"),
    # --- settings -----------------------------------------------------------------------------
    ("unknown model setting", spec(model=f"  {MARK}vocabulary 3"), "unknown setting 'vocabulary'", "did you mean 'vocab'?"),
    ("unknown setting in a kind", spec(block=f"    attention gqa({MARK}hedas=4, kv_heads=2)\n    ffn swiglu(hidden=64)"), "unknown setting 'hedas' in attention gqa", "did you mean 'heads'?"),
    ("missing required", spec(block=f"    {MARK}attention gqa(kv_heads=2)\n    ffn swiglu(hidden=64)"), "attention gqa needs 'heads'", None),
    ("model needs", f"model {MARK}m {{\n  vocab 10\n  d_model 8\n  context 4\n  block b {{ attention mha(heads=2); ffn mlp(hidden=8) }}\n  layers 1 x b\n}}\n", "the model needs 'norm'", None),
    ("duplicate setting", spec(model=f"  {MARK}vocab 3"), "duplicate setting 'vocab' (first set at line 2, column 3)", None),
    ("duplicate in a kind", spec(block=f"    attention gqa(heads=4, kv_heads=2, {MARK}heads=4)\n    ffn swiglu(hidden=64)"), "duplicate setting 'heads' (first set at line 8, column 19)", None),
    ("kind needed", spec(block=f"    {MARK}attention {{ heads 4 }}\n    ffn swiglu(hidden=64)"), "'attention' needs a kind: mha, gqa, mqa, mla, gated_deltanet, kimi_delta, mamba2, short_conv or none", "for example: attention mha(...)"),
    ("unknown kind", spec(block=f"    attention {MARK}gpa(heads=4)\n    ffn swiglu(hidden=64)"), "unknown attention kind 'gpa'", "did you mean 'gqa'?"),
    ("scalar with a body", spec(model=f"  {MARK}final_softcap {{ x 1 }}"), "'final_softcap' takes a value, not a { } block", None),
    ("scalar with key=value", spec(model=f"  final_softcap {MARK}x=1"), "'final_softcap' takes a value, not x=...", "write: final_softcap VALUE"),
    ("needs a value", spec(block=f"    attention gqa(heads=4, kv_heads=2)\n    ffn swiglu(hidden=64)\n    {MARK}norms"), "'norms' needs a value", None),
    ("embedding norm without a final norm", spec(model=f"  final_norm false\n  embedding {MARK}norm"), "the embedding norm is the final norm's module, and this model has no final norm", "set final_norm true"),
    ("switch with a value", spec(model=f"  final_norm {MARK}maybe"), "'final_norm' is a switch: write 'final_norm' alone, or 'final_norm true' / 'final_norm false'", None),
    ("two values", spec(model=f"  final_softcap 3 {MARK}hidden 4"), "'final_softcap' takes one value, found 3", "separate settings with a new line or ';'"),
    ("string for a name", spec(model=f"  hf {MARK}3"), "'hf' takes a name or a string", None),
    ("none for a number", spec(block=f"    attention gqa(heads={MARK}none, kv_heads=2)\n    ffn swiglu(hidden=64)"), "'heads' cannot be none", None),
    ("whole number", spec(block=f"    attention gqa(heads=4, kv_heads=2, head_dim={MARK}12.5)\n    ffn swiglu(hidden=64)"), "'head_dim' must be a whole number, found 12.5", None),
    ("word expected", spec(block=f"    norms {MARK}3\n    attention gqa(heads=4, kv_heads=2)\n    ffn swiglu(hidden=64)"), "'norms' takes one of: pre, post, sandwich, post_residual, parallel or parallel_separate", None),
    ("unknown word", spec(block=f"    norms {MARK}sandwhich\n    attention gqa(heads=4, kv_heads=2)\n    ffn swiglu(hidden=64)"), "unknown value 'sandwhich' for 'norms'", "did you mean 'sandwich'?"),
    ("none with settings", spec(block=f"    attention gqa(heads=4, kv_heads=2)\n    ffn swiglu(hidden=64)\n    rope {MARK}none theta=3"), "'rope none' takes no settings", None),
    ("value inside a call", spec(block=f"    attention gqa(heads=4, kv_heads=2, {MARK}7)\n    ffn swiglu(hidden=64)"), "unexpected value in gqa(...)", "write settings as name=value, or a switch by its name"),
    ("positive", spec(block=f"    attention gqa(heads=4, kv_heads=2, window={MARK}0)\n    ffn swiglu(hidden=64)"), "'window' must be positive, found 0", None),
    ("at most", spec(block=f"    attention gqa(heads=4, kv_heads=2)\n    ffn swiglu(hidden=64)\n    rope fraction={MARK}1.5"), "'fraction' must be at most 1, found 1.5", None),
    # --- expressions --------------------------------------------------------------------------
    ("unknown name", spec(model=f"  final_softcap {MARK}d_modle / 2"), "unknown name 'd_modle' in an expression", "did you mean 'd_model'?"),
    ("not a number", spec(model=f"  final_softcap {MARK}norm * 2"), "'norm' is not a number and cannot be used in arithmetic", None),
    ("self reference", spec(model=f"  final_softcap {MARK}final_softcap + 1"), "'final_softcap' is defined in terms of itself", None),
    ("string in arithmetic", spec(model=f'  final_softcap {MARK}"x"'), "expected a number, found a string", None),
    ("division by zero", spec(model=f"  final_softcap 1 / ({MARK}2 - 2)"), "division by zero", None),
    ("no value to use", spec(block=f"    attention gqa(heads=4, kv_heads=2, head_dim={MARK}window * 2, window)\n    ffn swiglu(hidden=64)"), "'window' has no single value to use here", None),
    ("exponent too large", spec(model=f"  final_softcap {MARK}1 ** 5000"), "exponent is too large", None),
    ("zero to negative", spec(model=f"  final_softcap {MARK}0 ** -1"), "zero cannot be raised to a negative power", None),
    ("power too large", spec(model=f"  final_softcap {MARK}10 ** 40"), "power is too large (the limit is 10**30)", None),
    ("negative fractional power", spec(model=f"  final_softcap ({MARK}-2) ** 0.5"), "a negative number cannot be raised to a fractional power", None),
    ("value too large", spec(model=f"  final_softcap {MARK}10 ** 20 * 10 ** 20"), "value is too large (the limit is 10**30)", None),
    ("unknown function", spec(model=f"  final_softcap {MARK}sqr(4)"), "unknown function 'sqr'", "did you mean 'sqrt'?"),
    ("named function argument", spec(model=f"  final_softcap {MARK}sqrt(x=4)"), "sqrt() takes no named arguments", None),
    ("sqrt arity", spec(model=f"  final_softcap {MARK}sqrt(4, 5)"), "sqrt() takes one argument, found 2", None),
    ("sqrt negative", spec(model=f"  final_softcap sqrt({MARK}-4)"), "sqrt() of a negative number", None),
    ("min arity", spec(model=f"  final_softcap {MARK}min(4)"), "min() takes two arguments, found 1", None),
    # --- blocks and patterns ------------------------------------------------------------------
    ("model name case", f"model {MARK}Big {{}}", "model name 'Big' must be lower case (it names the generated module)", None),
    ("model name keyword", f"model {MARK}class {{}}", "model name 'class' is a Python keyword", "it becomes a name in generated Python; choose another"),
    ("model name module", f"model {MARK}torch {{}}", "model name 'torch' is the name of a Python module", "the generated file, torch.py, would shadow it; choose another"),
    ("model name stdlib", f"model {MARK}typing {{}}", "model name 'typing' is the name of a Python module", None),
    ("identifier dunder", spec(extra=f"  block {MARK}__x {{ }}"), "block name '__x' must not start with '__'", "Python mangles such names inside classes; it becomes part of names in generated Python"),
    ("identifier ascii", spec(extra=f"  block {MARK}bé {{ }}"), "block name 'bé' must be an ASCII identifier: letters, digits and '_', not starting with a digit", None),
    ("identifier length", spec(extra=f"  block {MARK}{'b' * 70} {{ }}"), "block name is too long (70 characters, the limit is 64)", None),
    ("duplicate block", spec(extra=f"  block {MARK}b {{ }}"), "duplicate block 'b' (first defined at line 7)", None),
    ("no layers", f"model {MARK}m {{\n  vocab 10\n  d_model 8\n  context 4\n  norm rms\n}}\n", "the model has no 'layers' pattern", "for example: layers 28 x dense"),
    ("duplicate layers", spec(extra="  layers 2 x b").replace("  layers 2 x b\n}", f"  {MARK}layers 2 x b\n}}"), "duplicate 'layers' (first at line 11)", None),
    ("unknown base", spec(extra=f"  block c extends {MARK}bb {{ }}"), "block 'c' extends unknown block 'bb'", "did you mean 'b'?"),
    ("extends cycle", spec(extra=f"  block c extends d {{ }}\n  block d extends {MARK}c {{ }}", layers="2 x b, c"), "blocks extend each other in a cycle: c → d → c", None),
    ("repeat count", spec(layers=f"{MARK}0 x b"), "a repeat count must be at least 1, found 0", None),
    ("fractional count", spec(layers=f"{MARK}2.5 x b"), "a repeat count must be a whole number, found 2.5", None),
    ("count too large", spec(layers=f"{MARK}2000000 x b"), "a repeat count 2000000 is too large (the limit is 1,000,000 layers)", None),
    ("pattern too long", spec(layers=f"1000 x (1000 x b), {MARK}b"), "the pattern has more than 1,000,000 layers", None),
    ("unknown block in layers", spec(layers=f"2 x {MARK}bb"), "unknown block 'bb' in layers", "did you mean 'b'?"),
    ("range in a group", spec(layers=f"2 x ({MARK}0..1 b)"), "ranges (a..b) are only allowed at the top level of the pattern", None),
    ("range gap", spec(layers=f"0..1 b, {MARK}3..4 b"), "range 3..4 leaves layer 2 without a block", "ranges must follow each other without gaps"),
    ("range overlap", spec(layers=f"0..3 b, {MARK}2..4 b"), "range 2..4 overlaps the layers before it, which end at layer 3", None),
    ("range backwards", spec(layers=f"0..3 b, 4..{MARK}2 b"), "range 4..2 ends before it starts", None),
    # --- consistency (validators of the IR types) ----------------------------------------------
    ("window and chunk", spec(block=f"    attention gqa(heads=4, kv_heads=2, window=4, {MARK}chunk=8)\n    ffn swiglu(hidden=64)"), "a layer has either a sliding window or attention chunks, not both", None),
    (
        "indexer needs q_rank",
        spec(block=f"    attention mla(heads=4, kv_rank=8, qk_nope_dim=8, qk_rope_dim=4, v_dim=8, {MARK}indexer=lightning(heads=2, head_dim=8, top_k=4))\n    rope theta=10_000\n    ffn swiglu(hidden=64)"),
        "the indexer reads the query latent: it needs q_rank",
        None,
    ),
    (
        "indexer head_dim",
        spec(block=f"    attention mla(heads=4, q_rank=16, kv_rank=8, qk_nope_dim=8, qk_rope_dim=8, v_dim=8, indexer=lightning(heads=2, {MARK}head_dim=4, top_k=4))\n    rope theta=10_000\n    ffn swiglu(hidden=64)"),
        "the indexer's head_dim 4 is less than the 8 features RoPE rotates (qk_rope_dim)",
        None,
    ),
    ("indexer needs rope", spec(block=f"    attention mla(heads=4, q_rank=16, kv_rank=8, qk_nope_dim=8, qk_rope_dim=4, v_dim=8, {MARK}indexer=lightning(heads=2, head_dim=8))\n    ffn swiglu(hidden=64)"), "the indexer rotates its queries and keys: it needs RoPE", None),
    ("top_k", spec(block=MOE.format(f"experts=4, {MARK}top_k=5, hidden=8, router=softmax_topk")), "top_k 5 is larger than the 4 experts", None),
    ("shared negative", spec(block=MOE.format(f"experts=4, top_k=2, hidden=8, {MARK}shared=-1, router=softmax_topk")), "'shared' must not be negative, found -1", None),
    ("shared_hidden alone", spec(block=MOE.format(f"experts=4, top_k=2, hidden=8, {MARK}shared_hidden=16, router=softmax_topk")), "shared_hidden is set but there are no shared experts", "set shared N"),
    ("shared width", spec(block=MOE.format(f"experts=4, top_k=2, hidden=10**30, {MARK}shared=2, router=softmax_topk")), "the shared experts' width hidden × shared is 2e+30, past the limit of 10**30", "set shared_hidden, or fewer shared experts"),
    ("groups split", spec(block=MOE.format(f"experts=6, top_k=2, hidden=8, router=sigmoid({MARK}groups=4)")), "6 experts do not split into 4 equal groups", None),
    ("top_groups", spec(block=MOE.format(f"experts=8, top_k=2, hidden=8, router=sigmoid(groups=2, {MARK}top_groups=3)")), "top_groups 3 is more than the 2 groups", None),
    ("group size", spec(block=MOE.format(f"experts=8, top_k=2, hidden=8, router=sigmoid({MARK}groups=8)")), "groups of 1 expert: a group is scored by its two best experts", None),
    ("groups supply", spec(block=MOE.format(f"experts=8, top_k=3, hidden=8, router=sigmoid(groups=4, {MARK}top_groups=1)")), "1 groups of 2 experts cannot supply top_k 3 experts", None),
    ("input gating", spec(block=MOE.format(f"experts=8, top_k=1, hidden=8, bias, {MARK}router=topk_sigmoid")), "a topk_sigmoid router scales the experts' input, so unchosen experts must turn a zero input into zero", "use experts without biases and with a plain activation (silu, gelu or gelu_tanh)"),
    ("shared act", spec(block=MOE.format(f"experts=8, top_k=1, hidden=8, shared=1, {MARK}act=swiglu_clamped, router=topk_softmax")), "shared experts and the dense MLP use a plain gated activation, not swiglu_clamped", "use silu, gelu or gelu_tanh"),
    ("gqa kv_heads", spec(block=f"    attention {MARK}gqa(heads=4)\n    ffn swiglu(hidden=64)"), "gqa attention needs kv_heads", "add kv_heads N, or use mha (kv_heads = heads) or mqa (kv_heads = 1)"),
    ("head_dim not divisible", spec(block=f"    attention gqa({MARK}heads=6, kv_heads=2)\n    ffn swiglu(hidden=64)"), "head_dim is not set and d_model 64 is not divisible by heads 6", "set head_dim explicitly"),
    ("mha kv", spec(block=f"    attention mha(heads=4, {MARK}kv_heads=2)\n    ffn swiglu(hidden=64)"), "mha has one key/value head per query head, but kv_heads 2 != heads 4", "use gqa for grouped key/value heads"),
    ("mqa kv", spec(block=f"    attention mqa(heads=4, {MARK}kv_heads=2)\n    ffn swiglu(hidden=64)"), "mqa has a single key/value head, but kv_heads is 2", "use gqa for several key/value heads"),
    ("heads divisible", spec(block=f"    attention gqa(heads=4, {MARK}kv_heads=3, head_dim=16)\n    ffn swiglu(hidden=64)"), "heads 4 is not divisible by kv_heads 3", None),
    # LongRoPE: head_dim 16 → 8 feature pairs, a number each
    ("longrope short count", spec(block=f"{LONGROPE}{MARK}short_factor=1 1 1, long_factor=1 1 1, original_context=8)"), "short_factor has 3 numbers; the 16 rotating features form 8 pairs, one number each", None),
    ("longrope counts differ", spec(block=f"{LONGROPE}short_factor=1 1 1 1 1 1 1 1, {MARK}long_factor=1 1, original_context=8)"), "long_factor has 2 numbers and short_factor 8: one each per rotating feature pair", None),
    ("longrope factor not positive", spec(block=f"{LONGROPE}{MARK}short_factor=1 1 1 0 1 1 1 1, long_factor=1 1 1 1 1 1 1 1, original_context=8)"), "'short_factor' must hold positive numbers, found 0", None),
    ("number list none", spec(block=f"{LONGROPE}short_factor={MARK}none, long_factor=1, original_context=8)"), "'short_factor' cannot be none", "short_factor needs numbers"),
    ("number list empty", spec(block=f"{LONGROPE}{MARK}short_factor, long_factor=1 1 1 1 1 1 1 1, original_context=8)"), "'short_factor' needs numbers", None),
    ("sparsemixer top_k", spec(block=MOE.format(f"experts=4, {MARK}top_k=3, hidden=8, router=sparsemixer")), "the sparsemixer router chooses 2 experts per token, not 3", "set top_k=2"),
    ("llama3 factors", spec(block=f"    attention gqa(heads=4, kv_heads=2)\n    ffn swiglu(hidden=64)\n    rope scaling=llama3(factor=8, original_context=64, low_freq_factor=4, {MARK}high_freq_factor=1)"), "high_freq_factor 1 must be at least low_freq_factor 4", None),
    ("rotary features", spec(block=f"    attention gqa(heads=4, kv_heads=2)\n    ffn swiglu(hidden=64)\n    rope {MARK}fraction=0.3"), "rope fraction 0.3 of head_dim 16 gives 4.8 rotary features; it must be a positive even whole number", None),
    ("rms variants", spec(block=f"    {MARK}norm rms(zero_centered)\n    attention gqa(heads=4, kv_heads=2)\n    ffn swiglu(hidden=64)"), "every RMSNorm of a model must agree on zero_centered, weight_fp32 and affine", "set them on the model-level norm only"),
    ("weightless layernorm bias", spec(block=f"    norm layernorm(affine=false, {MARK}bias=true)\n    attention gqa(heads=4, kv_heads=2)\n    ffn swiglu(hidden=64)"), "a layernorm without a weight (affine false) has no bias either", "leave out bias"),
    ("deltanet heads", spec(block=f"    attention gated_deltanet(heads=4, {MARK}key_heads=3, key_dim=16)\n    ffn swiglu(hidden=64)"), "heads 4 is not divisible by key_heads 3", "each query/key head must serve the same number of value heads"),
    (
        "deltanet positions",
        spec(block=f"    attention gated_deltanet(heads=4, key_dim=16)\n    {MARK}rope theta=10_000\n    ffn swiglu(hidden=64)"),
        "gated_deltanet layers take no positions: their convolution (and recurrence) see the tokens in order",
        "write `rope none` in this block (or set rope only in the attention blocks)",
    ),
    ("no sublayer", spec(block=f"    attention none\n    {MARK}ffn none"), "a layer needs a token mixer or a feed-forward; this one has neither", None),
    ("single sublayer norms", spec(block=f"    {MARK}norms post\n    attention none\n    ffn swiglu(hidden=64)"), "a layer of one sublayer takes pre norms (x + f(norm(x))), not post", None),
    ("no mixer positions", spec(block=f"    attention none\n    {MARK}rope theta=10_000\n    ffn swiglu(hidden=64)"), "a layer without a token mixer takes no positions", "write `rope none` in this block"),
    ("mamba groups", spec(block=f"    attention mamba2(heads=4, head_dim=16, state=8, {MARK}groups=3)\n    ffn swiglu(hidden=64)"), "heads 4 is not divisible by groups 3", "each group of B and C serves the same number of heads"),
    (
        "output gate",
        spec(block=f"    attention gqa(heads=4, kv_heads=2, clip_qkv=8, {MARK}output_gate)\n    ffn swiglu(hidden=64)"),
        "an output gate is not supported together with clip_qkv or a QK norm over the whole projection",
        None,
    ),
    ("shared gate", spec(block=MOE.format(f"experts=8, top_k=1, hidden=8, {MARK}shared_gate, router=topk_softmax")), "shared_gate is set but there are no shared experts", "set shared N"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_error_message(case):
    _, marked, message, hint = case
    text, line, column = located(marked)
    diagnostics = errors_of(text)
    found = [(d.message, d.position.line, d.position.column, d.hint) for d in diagnostics if d.position]
    assert any(m == message and (l, c) == (line, column) for m, l, c, _ in found), f"wanted {message!r} at {line}:{column}, got {found}"
    if hint is not None:
        assert any(m == message and h == hint for m, _, _, h in found), found


# Messages tested elsewhere in this file (files), or defensive ones no spec can reach.
NOT_IN_CASES = {
    "{display}: no such file",
    "{display}: is a directory, not a spec file",
    "{display}: not UTF-8 text ({exc.reason} at byte {exc.start})",
    "{display}: cannot read ({exc.strerror})",  # an OSError other than the above; root reads everything here
    "invalid {what or cls.__name__}: {exc.errors()[0]['msg']}",  # the IR rejecting what the reader accepted
}


def test_every_message_has_a_test():
    """Each `error(...)` of the parser, resolver, IR and expressions has a case above (by its text)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "archdsl"
    sources = "".join((root / f).read_text() for f in ("syntax.py", "resolve.py", "ir.py", "expr.py"))
    templates = re.findall(r'error\([^,]+,\s*f?"([^"]+)"', sources)
    tested = " | ".join(c[2] for c in CASES)
    untested = [
        t for t in templates
        if t not in NOT_IN_CASES and not all(w in tested for w in re.split(r"\{[^}]*\}", t) if len(w.strip()) > 3)
    ]
    assert not untested


def test_file_errors(tmp_path):
    from archdsl.resolve import load

    cases = [
        (tmp_path / "missing.arch", "missing.arch: no such file"),
        (tmp_path, "dir: is a directory, not a spec file"),
    ]
    bad = tmp_path / "latin1.arch"
    bad.write_bytes(b"model m { # caf\xe9 }")
    cases.append((bad, "latin1.arch: not UTF-8 text (invalid continuation byte at byte 15)"))
    for path, message in cases:
        with pytest.raises(SpecError) as info:
            load(path, message.split(":")[0])
        assert info.value.first.message == message and info.value.first.position is None


def test_several_errors_are_reported_together():
    text = spec(model="  vocabulary 3\n  final_softcap 0", block="    attention gqa(heads=4, kv_heads=3, head_dim=16)\n    ffn swiglu(hidden=64)")
    messages = [d.message for d in errors_of(text)]
    assert "unknown setting 'vocabulary'" in messages
    assert "'final_softcap' must be positive, found 0" in messages
    assert "heads 4 is not divisible by kv_heads 3" in messages


def test_error_rendering_shows_the_line_and_a_caret():
    text, line, column = located(spec(block=f"    attention gqa(heads=4, {MARK}kv_heads=3, head_dim=16)\n    ffn swiglu(hidden=64)"))
    with pytest.raises(SpecError) as info:
        loads(text, "specs/t.arch")
    rendered = str(info.value).splitlines()
    assert rendered[0] == f"specs/t.arch:{line}:{column}: error: heads 4 is not divisible by kv_heads 3"
    assert rendered[1].endswith(text.splitlines()[line - 1])
    caret_line = rendered[2]
    assert caret_line.index("^") - caret_line.index("|") - 2 == column - 1
    assert caret_line.count("^") == len("kv_heads")


# ---- meaning ----------------------------------------------------------------------------------


def test_expressions_comments_and_separators():
    text = """
# a comment
model m "M" {   # trailing comment
  vocab 1_000; d_model 2 * 32
  context 4 ** 3
  embedding tied scale=sqrt(d_model)
  norm rms(
    eps=1e-6,     # multi-line call
    zero_centered,
  )
  block b {
    attention gqa(heads=8, kv_heads=2, head_dim=d_model / 4, query_scale=head_dim ** -0.5)
    ffn swiglu(hidden=min(3 * d_model, 200))
  }
  layers 3 x b
}
"""
    m = loads(text)
    assert (m.vocab, m.d_model, m.context) == (1000, 64, 64)
    assert m.embedding.scale == 8.0 and m.embedding.tied
    a = m.kinds["b"].attention
    assert (a.head_dim, a.query_scale) == (16, 0.25)
    assert m.kinds["b"].ffn.hidden == 192
    assert m.norm.zero_centered and m.kinds["b"].norm == m.norm


def test_call_and_block_forms_are_the_same():
    inline = loads(spec(block="    attention gqa(heads=4, kv_heads=2, qk_norm, bias=q k v)\n    ffn swiglu(hidden=64)".replace("bias=q k v", "window=4")))
    body = loads(spec(block="    attention gqa {\n      heads 4\n      kv_heads 2\n      qk_norm\n      window 4\n    }\n    ffn swiglu { hidden 64 }"))
    assert inline == body


def test_extends_merges_same_kind_and_replaces_another():
    text = spec(
        block="    attention gqa(heads=4, kv_heads=2, window=8, qk_norm)\n    rope theta=10_000\n    ffn swiglu(hidden=64)",
        extra="  block g extends b {\n    attention { window none }\n    rope theta=1e6 scaling=linear(factor=8)\n  }\n  block h extends b {\n    attention mha(heads=2)\n    rope none\n  }",
        layers="b, g, h",
    )
    m = loads(text)
    b, g, h = (m.kinds[k] for k in "bgh")
    assert g.attention == b.attention.model_copy(update={"window": None})
    assert g.rope.theta == 1e6 and g.rope.scaling.factor == 8
    assert h.attention.kind == "mha" and h.attention.window is None and h.attention.qk_norm == "none"
    assert h.rope is None and h.ffn == b.ffn


def test_model_level_block_settings_are_defaults():
    text = """model m {
  vocab 10
  d_model 32
  context 8
  norm rms
  attention mha(heads=2)
  ffn mlp(hidden=64)
  block a { }
  block b { ffn swiglu(hidden=16) }
  layers a, b
}"""
    m = loads(text)
    assert m.kinds["a"].attention == m.kinds["b"].attention
    assert m.kinds["a"].ffn.kind == "mlp" and m.kinds["b"].ffn.kind == "swiglu"


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("3 x b", "bbb"),
        ("2 x b, c", "bbc"),
        ("5 of (b, c)", "bcbcb"),
        ("7 of (2 x b, c)", "bbcbbcb"),
        ("2 x (b, c), b", "bcbcb"),
        ("0..1 b, 2..4 c", "bbccc"),
        ("0..4 (b, c)", "bcbcb"),
        ("b, 1..2 c", "bcc"),
    ],
)
def test_layer_patterns(pattern, expected):
    m = loads(spec(extra="  block c extends b { }", layers=pattern))
    assert "".join(m.layer_kinds) == expected


def test_unused_kinds_are_validated_but_dropped():
    m = loads(spec(extra="  block c extends b { }"))
    assert list(m.kinds) == ["b"]
    errors_of(spec(extra="  block c extends b { attention { kv_heads 3 } }"))
