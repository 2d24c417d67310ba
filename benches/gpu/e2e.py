"""End-to-end benchmark: kiln vs transformers (+ bitsandbytes) generating on the same card.

One invocation, on the GPU machine:

1. creates random-weight Llama checkpoints (f16 safetensors) of the Llama-3.2-1B and
   Llama-3.1-8B shapes with transformers, on the GPU, and copies the Llama 3.1 tokenizer pair
   into each (no weights travel; an existing checkpoint dir is reused);
2. builds one user message whose chat-templated ids are exactly 512 tokens (batch 8 = the same
   message 8 times: equal lengths, no padding);
3. runs transformers (f16 sdpa, bnb NF4, NF4 + double quant, LLM.int8), each (config, batch)
   in a fresh subprocess: load s, time to first token (cold and warm), prefill tok/s, decode
   tok/s over 255 tokens after the first (greedy, EOS suppressed), peak memory;
4. runs the `kiln` binary on the same dirs (f16, bf16, nf4, nf4 + double quant, int8) with
   `--ignore-eos --stats --json` and reads its stats;
5. polls nvidia-smi (~50 ms) for the peak GPU memory of every child;
6. writes OUT/e2e.json (raw numbers, versions, card, driver, date) and OUT/e2e.md (a table per
   shape with kiln/transformers ratios and the f16 bandwidth bound), after every run, so a run
   cut short still leaves its results.

A failing run (OOM, crash, timeout) is recorded with its error and the suite goes on.

Run (from the repository root, with the kiln release binary in `.device/`, the slim
bitsandbytes wheel unpacked in `.bnb/` and the tokenizer artifact of `cargo xtask fetch`):

    bash benches/gpu/e2e_run.sh --kiln .device/kiln --shapes 1b,8b

Time on the H200 (2026-12-04): building the prompt ~25 s, creating a checkpoint 20 s (1B) /
45 s (8B) with the imports, one transformers child 30-45 s (1B) and 40-60 s (8B; int8 75-85 s,
its load alone 20 s), most of it the 256-token generates of a CPU-bound decode loop. The whole
matrix (2 shapes x 5 configs x 2 batches, 16 transformers + 20 kiln children) does not fit in
one 10-minute call: run the 1B shape, then the 8B shape in two calls (`--configs f16,bf16,nf4`
and `--configs nf4dq,int8`), and merge their e2e.json files with `--report`.

`e2e_run.sh` sets PYTHONPATH for `.bnb/`, writes into `$OUT` (e2e.json, e2e.md, e2e.log and
the child logs as e2e-logs.tar.gz) and passes its arguments here.
Useful flags: `--configs f16,bf16,nf4,nf4dq,int8`, `--batches 1,8`, `--impls kiln,hf`,
`--new-tokens 256`, `--work /tmp`, `--timeout 300` (per child), `--budget-s 480` (no new run
starts after that), `--dry-run` (build the prompt, print the commands, run nothing).
Merge the results of several invocations into one report (no torch needed):

    python3 benches/gpu/e2e.py --report A/e2e.json B/e2e.json --out DIR
"""

import argparse
import datetime
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_TOKENIZER = os.path.join(REPO, ".cache", "kiln", "tokenizers", "llama3_1")

PROMPT_TOKENS = 512
SEED = 1234
LLAMA31_BOS = 128000
LLAMA31_EOS = [128001, 128008, 128009]

SHAPES = {
    "1b": {
        "name": "Llama-3.2-1B shape",
        "dir": "kiln-e2e-llama-1b",
        "config": {
            "vocab_size": 128256,
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 64,
            "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": True,
        },
        "rope": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
    "8b": {
        "name": "Llama-3.1-8B shape",
        "dir": "kiln-e2e-llama-8b",
        "config": {
            "vocab_size": 128256,
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
        },
        "rope": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
}

# config -> (kiln flags, transformers config it is compared with, or None when kiln-only)
CONFIGS = {
    "f16": (["--dtype", "f16"], "f16"),
    "bf16": (["--dtype", "bf16"], "f16"),
    "nf4": (["--dtype", "f16", "--quant", "nf4", "--compute-dtype", "f16"], "nf4"),
    "nf4dq": (
        ["--dtype", "f16", "--quant", "nf4", "--double-quant", "--compute-dtype", "f16"],
        "nf4dq",
    ),
    "int8": (["--dtype", "f16", "--quant", "int8"], "int8"),
}
HF_CONFIGS = ("f16", "nf4", "nf4dq", "int8")

# Fixed English text for the prompt; cycled and trimmed to the token count.
TEXT = """\
The old lighthouse stood at the end of a narrow spit of rock, and for more than a century its
keepers had written down the weather twice a day in a row of leather books that now filled a
whole shelf of the tower room. Anyone who climbed the iron stairs could read them: the wind and
its direction, the height of the swell, the ships that passed and the ones that did not return.
Most entries are short and plain. A few run on for pages, when a storm kept the keeper awake
and there was nothing to do but watch the lamp and write. Read one after another, they tell a
slow story of a coast that changed less than the people who looked after it. The early keepers
counted the hours by a brass clock and trimmed the wicks by hand; the later ones had a diesel
engine, a radio and a telephone line that failed in every gale. The last keeper left when the
light was made automatic, and he wrote a final entry that says only that the evening was calm,
the visibility good and the lamp in order. Please read the passage above carefully and then
explain, in a few clear paragraphs, what such a record can teach us about patience, about the
value of small daily observations kept over a long time, and about the way ordinary work
becomes history when someone takes the trouble to write it down. Give concrete examples of
other records of this kind, such as ship logs, garden diaries, tide tables or parish registers,
say what each of them preserves that would otherwise be lost, and end with a short note on how
a modern team might keep a similar record of its own work without letting it become a burden.
"""
FILLERS = ["and", "the", "a", "of", "to", "in", "it", "is", "so", "we"]


def log(msg):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------
# prompt


def chat_ids(tok, text):
    ids = tok.apply_chat_template(
        [{"role": "user", "content": text}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return [int(i) for i in ids]


def build_prompt(tokenizer_dir, target=PROMPT_TOKENS):
    """A user message whose chat-templated ids are exactly `target` tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    base = TEXT.split()
    words = (base * (4 * target // len(base) + 2))[: 4 * target]

    def count(ws):
        return len(chat_ids(tok, " ".join(ws)))

    lo, hi = 1, len(words)
    if count(words) < target:
        raise RuntimeError(f"{len(words)} words give fewer than {target} tokens")
    while lo < hi:  # largest n with count(words[:n]) <= target
        mid = (lo + hi + 1) // 2
        if count(words[:mid]) <= target:
            lo = mid
        else:
            hi = mid - 1
    n = lo
    for _ in range(64):
        ws = list(words[:n])
        c = count(ws)
        for _ in range(target):
            if c == target:
                break
            for f in FILLERS:
                c2 = count(ws + [f])
                if c < c2 <= target:
                    ws.append(f)
                    c = c2
                    break
            else:
                break
        if c == target:
            text = " ".join(ws)
            ids = chat_ids(tok, text)
            assert len(ids) == target
            return {"text": text, "ids": ids, "words": len(ws), "tokens": len(ids)}
        n -= 1
    raise RuntimeError(f"could not build a prompt of exactly {target} tokens")


# ----------------------------------------------------------------------------------------------
# GPU memory polling


def _smi(args):
    try:
        r = subprocess.run(
            ["nvidia-smi", *args], check=False, capture_output=True, text=True, timeout=5
        )
        return r.stdout if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def gpu_used_mib():
    out = _smi(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
    try:
        return float(out.strip().splitlines()[0])
    except (AttributeError, IndexError, ValueError):
        return None


def compute_apps():
    out = _smi(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
    apps = {}
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2:
            try:
                apps[int(parts[0])] = apps.get(int(parts[0]), 0.0) + float(parts[1])
            except ValueError:
                pass
    return apps


class GpuPoller:
    """Max GPU memory of one pid (nvidia-smi compute apps) and of the whole GPU, every ~50 ms.

    In a container nvidia-smi may list host pids (or none); then the per-pid peak stays None and
    the GPU-wide peak minus the baseline before the child started stands in for it (this
    script's own process holds no GPU memory).
    """

    def __init__(self, period=0.05):
        self.period = period
        self.pid = None
        self.pid_peak = None
        self.gpu_peak = None
        self.baseline = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = None

    def start(self, pid):
        self.pid = pid
        self.baseline = gpu_used_mib()
        if self.period > 0:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            t = time.monotonic()
            apps = compute_apps()
            if self.pid in apps:
                self.pid_peak = max(self.pid_peak or 0.0, apps[self.pid])
            used = gpu_used_mib()
            if used is not None:
                self.gpu_peak = max(self.gpu_peak or 0.0, used)
            self.samples += 1
            self._stop.wait(max(0.0, self.period - (time.monotonic() - t)))

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        delta = None
        if self.gpu_peak is not None and self.baseline is not None:
            delta = self.gpu_peak - self.baseline
        peak, method = None, None
        if self.pid_peak is not None:
            peak, method = self.pid_peak, "pid"
        elif delta is not None:
            peak, method = delta, "gpu-delta"
        return {
            "peak_mib": peak,
            "method": method,
            "pid_peak_mib": self.pid_peak,
            "gpu_used_peak_mib": self.gpu_peak,
            "gpu_used_baseline_mib": self.baseline,
            "samples": self.samples,
        }


def run_child(cmd, log_path, timeout, stdout_path=None, poll_s=0.05):
    """Runs cmd, polling GPU memory; stderr (and stdout unless stdout_path) to log_path.

    Never raises: a failure to start, a non-zero exit or a timeout becomes `error`.
    """
    rec = {"cmd": cmd, "log": os.path.basename(log_path)}
    poller = GpuPoller(poll_s)
    t0 = time.perf_counter()
    try:
        with open(log_path, "w") as fe, open(stdout_path or os.devnull, "w") as fo:
            out = fo if stdout_path else fe
            proc = subprocess.Popen(cmd, stdout=out, stderr=fe)
            poller.start(proc.pid)
            try:
                rec["rc"] = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rec["rc"] = None
                rec["error"] = f"timeout after {timeout:.0f} s"
    except OSError as e:
        rec["rc"] = None
        rec["error"] = f"could not start: {e}"
    rec["wall_s"] = time.perf_counter() - t0
    rec["smi"] = poller.stop()
    if rec.get("rc") not in (0, None) and "error" not in rec:
        rec["error"] = f"exit status {rec['rc']}"
    return rec


def tail(path, n=3000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


# ----------------------------------------------------------------------------------------------
# children (run in fresh python processes)


def child_setup(spec, result_path):
    """Versions, device copy bandwidth (optional) and checkpoint creation (optional)."""
    res = {}
    try:
        import torch
        import transformers

        res["torch"] = torch.__version__
        res["transformers"] = transformers.__version__
        res["cuda"] = torch.version.cuda
        for mod in ("bitsandbytes", "accelerate"):
            try:
                res[mod] = __import__(mod).__version__
            except Exception as e:  # noqa: BLE001
                res[mod] = f"unavailable: {e}"
        res["gpu"] = torch.cuda.get_device_name(0)
        if spec.get("bandwidth"):
            res["bandwidth"] = measure_bandwidth(torch)
            print(f"device copy: {res['bandwidth']['gb_s']:.0f} GB/s", flush=True)
        if spec.get("create"):
            res["create"] = create_checkpoint(torch, spec["create"])
    except Exception:  # noqa: BLE001
        res["error"] = traceback.format_exc()
    with open(result_path, "w") as f:
        json.dump(res, f)


def measure_bandwidth(torch):
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    a.fill_(7)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        b.copy_(a)
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    assert int(b[n - 1].item()) == 7
    t = statistics.median(times)
    del a, b
    torch.cuda.empty_cache()
    return {"bytes": n, "copy_s": t, "gb_s": 2 * n / t / 1e9, "times_s": times}


def llama_config(shape):
    from transformers import LlamaConfig

    kw = dict(SHAPES[shape]["config"])
    kw.update(
        bos_token_id=LLAMA31_BOS,
        eos_token_id=LLAMA31_EOS,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        initializer_range=0.02,
    )
    rope = dict(SHAPES[shape]["rope"])
    try:
        cfg = LlamaConfig(**kw, rope_parameters=rope)
        if getattr(cfg, "rope_parameters", None) is None:
            raise TypeError("no rope_parameters")
    except TypeError:  # transformers 4: rope_theta + rope_scaling
        theta = rope.pop("rope_theta")
        cfg = LlamaConfig(**kw, rope_theta=theta, rope_scaling=rope)
    return cfg


def create_checkpoint(torch, spec):
    import inspect

    from transformers import LlamaForCausalLM

    shape, out_dir, tok_dir = spec["shape"], spec["dir"], spec["tokenizer_dir"]
    t0 = time.perf_counter()
    torch.manual_seed(SEED)
    cfg = llama_config(shape)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    model = model.to(torch.float16)
    model.eval()
    torch.cuda.synchronize()
    t_init = time.perf_counter() - t0
    partial = out_dir + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    kwargs = {"max_shard_size": "5GB"}
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        kwargs["safe_serialization"] = True
    model.save_pretrained(partial, **kwargs)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, name), os.path.join(partial, name))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(partial, out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    dt = time.perf_counter() - t0
    print(f"created {shape} ({n_params / 1e9:.2f} B params) in {dt:.1f} s", flush=True)
    return {"params": n_params, "init_s": t_init, "total_s": dt}


def child_hf(spec, result_path):
    """One transformers configuration at one batch size."""
    res = {"impl": "hf", "config": spec["config"], "batch": spec["batch"]}
    try:
        res.update(hf_measure(spec))
    except Exception as e:  # noqa: BLE001
        res["error"] = f"{type(e).__name__}: {e}"
        res["traceback"] = traceback.format_exc()[-4000:]
        try:
            import torch

            res["torch_peak_alloc_bytes"] = torch.cuda.max_memory_allocated()
        except Exception:  # noqa: BLE001, S110 (the error above is what matters)
            pass
    with open(result_path, "w") as f:
        json.dump(res, f)


def hf_measure(spec):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    config, batch, new = spec["config"], spec["batch"], spec["new_tokens"]
    with open(spec["prompt_file"]) as f:
        ids = json.load(f)["ids"]
    # CUDA context before the load timer: load s = from_pretrained until the model is on GPU.
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    qc = None
    if config in ("nf4", "nf4dq"):
        qc = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.float16,
            bnb_4bit_use_double_quant=config == "nf4dq",
        )
    elif config == "int8":
        qc = BitsAndBytesConfig(load_in_8bit=True)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        spec["dir"],
        dtype=torch.float16,
        attn_implementation="sdpa",
        device_map="cuda",
        quantization_config=qc,
    )
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    model.eval()
    print(f"loaded in {load_s:.2f} s", flush=True)
    input_ids = torch.tensor([ids] * batch, dtype=torch.long, device="cuda")
    mask = torch.ones_like(input_ids)
    eos = LLAMA31_EOS

    def gen(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=eos[0],
            )
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        if tuple(out.shape) != (batch, len(ids) + n):
            raise RuntimeError(
                f"generate gave shape {tuple(out.shape)}, wanted {(batch, len(ids) + n)}"
            )
        return dt

    torch.cuda.reset_peak_memory_stats()
    ttft_cold = gen(1)
    gen(8)  # warm-up of the decode path
    ttfts = [gen(1) for _ in range(spec["ttft_reps"])]
    ttft = statistics.median(ttfts)
    print(f"ttft cold {ttft_cold:.3f} s, warm {ttft:.3f} s", flush=True)
    # The first full-length generate runs slower than later ones (fresh cache sizes); it is
    # kept as the cold figure, the median of the later ones is the decode figure.
    first = gen(new)
    fulls = [gen(new)]
    while (
        len(fulls) < spec["decode_reps"] and first + sum(fulls) + fulls[-1] <= spec["rep_budget_s"]
    ):
        fulls.append(gen(new))
    full = statistics.median(fulls)
    decode_s = full - ttft

    def rate(t):
        return batch * (new - 1) / t if t > 0 else None

    r = {
        "load_s": load_s,
        "ttft_s": ttft,
        "ttft_cold_s": ttft_cold,
        "ttft_runs_s": ttfts,
        "prefill_s": ttft,
        "prefill_tok_s": batch * len(ids) / ttft,
        "full_s": full,
        "full_runs_s": fulls,
        "full_first_s": first,
        "decode_s": decode_s,
        "decode_tok_s": rate(decode_s),
        "decode_cold_tok_s": rate(first - ttft),
        "new_tokens": new,
        "prompt_tokens": len(ids),
        "torch_peak_alloc_bytes": torch.cuda.max_memory_allocated(),
        "torch_peak_reserved_bytes": torch.cuda.max_memory_reserved(),
    }
    print(
        f"decode {fmt(r['decode_tok_s'])} tok/s over {len(fulls)} run(s) "
        f"(first run {fmt(r['decode_cold_tok_s'])}), "
        f"peak alloc {r['torch_peak_alloc_bytes'] / 2**20:.0f} MiB",
        flush=True,
    )
    return r


# ----------------------------------------------------------------------------------------------
# kiln


def kiln_cmd(kiln, model_dir, config, batch, new, text):
    cmd = [kiln, "--device", "cuda", "generate", "--model", model_dir, *CONFIGS[config][0]]
    cmd += ["--max-new-tokens", str(new), "--ignore-eos", "--stats", "--json"]
    if batch == 1:
        cmd.append(text)
    else:
        for _ in range(batch):
            cmd += ["--prompt", text]
        cmd += ["--batch-size", str(batch)]
    return cmd


def num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def parse_kiln_stdout(text):
    stats, outputs = None, []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        if isinstance(obj.get("stats"), dict):
            stats = obj["stats"]
        if isinstance(obj.get("tokens"), list):
            outputs.append(len(obj["tokens"]))
    return stats, outputs


def kiln_result(stats, outputs, batch, new, prompt_tokens):
    """The figures of a kiln run from its stats (any key may be missing)."""
    s = stats or {}
    g = {
        k: num(s.get(k))
        for k in (
            "load_s",
            "prompt_tokens",
            "batch",
            "prefill_s",
            "prefill_tok_s",
            "ttft_s",
            "new_tokens",
            "decode_s",
            "decode_tok_s",
            "gpu_mem_bytes",
        )
    }
    r = {"stats": stats, "output_token_counts": outputs, "warnings": []}
    r["load_s"] = g["load_s"]
    r["ttft_total_s"] = g["ttft_s"]  # kiln's ttft_s counts from process start of loading
    if g["ttft_s"] is not None and g["load_s"] is not None:
        r["ttft_s"] = g["ttft_s"] - g["load_s"]
    else:
        r["ttft_s"] = g["prefill_s"]
    r["ttft_cold_s"] = r["ttft_s"]

    # prompt_tokens and new_tokens may be per row or summed over the batch.
    def per_row(v, want):
        if v is not None and batch > 1 and v == want * batch:
            return v / batch
        return v

    pt, nt = per_row(g["prompt_tokens"], prompt_tokens), per_row(g["new_tokens"], new)
    r["prefill_s"] = g["prefill_s"]
    r["prefill_tok_s"] = g["prefill_tok_s"]
    if r["prefill_tok_s"] is None and g["prefill_s"] and pt:
        r["prefill_tok_s"] = batch * pt / g["prefill_s"]
    r["decode_s"] = g["decode_s"]
    r["decode_tok_s"] = g["decode_tok_s"]
    if r["decode_tok_s"] is None and g["decode_s"] and nt:
        r["decode_tok_s"] = batch * (nt - 1) / g["decode_s"]
    r["decode_cold_tok_s"] = r["decode_tok_s"]
    r["prompt_tokens"] = pt
    r["new_tokens"] = nt
    r["kiln_gpu_mem_bytes"] = g["gpu_mem_bytes"]
    if stats is None:
        r["warnings"].append("no stats object in kiln's output")
    if pt is not None and pt != prompt_tokens:
        r["warnings"].append(
            f"PROMPT MISMATCH: kiln counted {g['prompt_tokens']:.0f} prompt tokens at batch "
            f"{batch}, transformers {prompt_tokens} per row"
        )
    if nt is not None and nt != new:
        r["warnings"].append(f"kiln generated {g['new_tokens']:.0f} new tokens, asked for {new}")
    if outputs and (len(outputs) != batch or any(n != new for n in outputs)):
        r["warnings"].append(f"output token counts {outputs}, wanted {batch} x {new}")
    return r


# ----------------------------------------------------------------------------------------------
# report


def safetensors_bytes(model_dir):
    """(total tensor bytes, bytes of the input embedding table) from the safetensors headers."""
    total = embed = 0
    for name in sorted(os.listdir(model_dir)):
        if not name.endswith(".safetensors"):
            continue
        with open(os.path.join(model_dir, name), "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        for key, info in header.items():
            if key == "__metadata__":
                continue
            b = info["data_offsets"][1] - info["data_offsets"][0]
            total += b
            if key.endswith("embed_tokens.weight"):
                embed += b
    return total, embed


def fmt(v, digits=2):
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def mib(v):
    return None if v is None else v / 2**20


def peak_mib(r):
    return (r.get("smi") or {}).get("peak_mib")


def alloc_mib(r):
    if r.get("impl") == "hf":
        return mib(num(r.get("torch_peak_alloc_bytes")))
    return mib(num(r.get("kiln_gpu_mem_bytes")))


def render_md(data):
    meta = data.get("meta", {})
    lines = ["# kiln vs transformers, end to end", ""]
    env = meta.get("env", {})
    bw = (data.get("bandwidth") or {}).get("gb_s")
    lines.append(
        f"{env.get('gpu', '?')}, driver {meta.get('driver', '?')}; torch {env.get('torch', '?')}, "
        f"transformers {env.get('transformers', '?')}, bitsandbytes {env.get('bitsandbytes', '?')}, "
        f"accelerate {env.get('accelerate', '?')}; {meta.get('date', '?')}."
    )
    p = meta.get("prompt", {})
    lines.append(
        f"Random-weight f16 checkpoints; one user message of {p.get('tokens', '?')} chat-templated "
        f"tokens (batch 8 = the same message 8 times); greedy, {meta.get('new_tokens', '?')} new "
        f"tokens, EOS ignored. Device copy: {fmt(bw, 0) if bw else '?'} GB/s."
    )
    lines.append("")
    runs = data.get("runs", [])
    for shape in [s for s in SHAPES if any(r.get("shape") == s for r in runs)]:
        srs = [r for r in runs if r.get("shape") == shape]
        lines += [f"## {SHAPES[shape]['name']}", ""]
        lines.append(
            "| impl | config | batch | load s | TTFT s | cold TTFT s | prefill tok/s | "
            "decode tok/s | first-run decode tok/s | peak GPU MiB | alloc MiB | wall s | load × | "
            "TTFT × | prefill × | decode × | mem × |"
        )
        lines.append("|" + "---|" * 17)
        hf = {
            (r["config"], r["batch"]): r
            for r in srs
            if r.get("impl") == "hf" and not r.get("error")
        }
        notes = []
        order = {c: i for i, c in enumerate(CONFIGS)}
        srs = sorted(
            srs,
            key=lambda r: (
                order.get(r.get("config"), 99),
                r.get("batch", 0),
                r.get("impl") != "hf",
            ),
        )
        for r in srs:
            impl = "kiln" if r.get("impl") == "kiln" else "transformers"
            cfg = r.get("config")
            label = (
                cfg
                if impl == "kiln"
                else {
                    "f16": "f16 sdpa",
                    "nf4": "bnb nf4",
                    "nf4dq": "bnb nf4dq",
                    "int8": "bnb int8",
                }.get(cfg, cfg)
            )
            if r.get("error") or r.get("skipped"):
                why = r.get("skipped") or r.get("error")
                notes.append(
                    f"- {impl} {label} batch {r.get('batch')}: {str(why).strip().splitlines()[-1][:300]}"
                )
                lines.append(
                    f"| {impl} | {label} | {r.get('batch')} | failed: see below |" + " |" * 13
                )
                continue
            ref = (
                hf.get((CONFIGS.get(cfg, (None, None))[1], r.get("batch")))
                if impl == "kiln"
                else None
            )
            cells = [
                r.get("load_s"),
                r.get("ttft_s"),
                r.get("ttft_cold_s"),
                r.get("prefill_tok_s"),
                r.get("decode_tok_s"),
                r.get("decode_cold_tok_s"),
                peak_mib(r),
                alloc_mib(r),
                r.get("wall_s"),
            ]
            if ref:
                rats = [
                    ratio(r.get("load_s"), ref.get("load_s")),
                    ratio(r.get("ttft_s"), ref.get("ttft_s")),
                    ratio(r.get("prefill_tok_s"), ref.get("prefill_tok_s")),
                    ratio(r.get("decode_tok_s"), ref.get("decode_tok_s")),
                    ratio(peak_mib(r), peak_mib(ref)),
                ]
            else:
                rats = [None] * 5
            row = [impl, label, str(r.get("batch"))] + [fmt(c) for c in cells]
            row += [fmt(x) for x in rats]
            lines.append("| " + " | ".join(row) + " |")
            for w in r.get("warnings") or []:
                notes.append(f"- {impl} {label} batch {r.get('batch')}: {w}")
        lines.append("")
        sm = (data.get("shapes") or {}).get(shape) or {}
        dec = sm.get("decode_weight_bytes")
        if dec and bw:
            bound = bw * 1e9 / dec
            line = (
                f"Bandwidth bound (f16, batch 1): {dec / 1e9:.2f} GB of weights read per token "
                f"(the input embedding table excluded when untied; KV cache not counted) / "
                f"{bw:.0f} GB/s = **{bound:.0f} tok/s**."
            )
            for impl, cfg in (("kiln", "f16"), ("kiln", "bf16"), ("hf", "f16")):
                m = [
                    r
                    for r in srs
                    if r.get("impl") == impl
                    and r.get("config") == cfg
                    and r.get("batch") == 1
                    and not r.get("error")
                    and not r.get("skipped")
                ]
                if m and m[0].get("decode_tok_s"):
                    d = m[0]["decode_tok_s"]
                    name = "transformers" if impl == "hf" else "kiln"
                    line += f" {name} {cfg} batch 1: {d:.1f} tok/s = {100 * d / bound:.1f} %."
                    if d > 1.05 * bound:
                        notes.append(
                            f"- {name} {cfg} batch 1 decodes above the bandwidth bound: check the measurement"
                        )
            lines += [line, ""]
        if notes:
            lines += ["Notes:", ""] + notes + [""]
    lines += [
        (
            "TTFT: from the loaded model to the first token. transformers: median of warm runs "
            "(cold = the first generate after load); kiln: `ttft_s - load_s` of `--stats` of the "
            "measured run, a fresh process whose kernels a short compile run of the same config put "
            "in kiln's kernel cache just before (as on any run after the first on a machine); cold = "
            "that compile run's (kernel compilation included; the cache starts empty, so the first "
            "config of a run compiles the most). prefill tok/s = batch × prompt / prefill "
            "time; decode tok/s = batch × (new − 1) / time after the first token; transformers: "
            "median of the full-length generates after the first one, whose figure is the "
            "first-run column (its growing KV cache meets fresh allocation sizes; kiln: its one "
            "run in both columns). load s: "
            "from_pretrained until the model is on the GPU (CUDA context made before). peak GPU MiB: "
            "nvidia-smi, max over the child process (per pid, else GPU-wide used minus the baseline). "
            "alloc MiB: torch max_memory_allocated (transformers) or kiln's gpu_mem_bytes. wall s: the "
            "whole child process. Ratios are kiln / transformers for the same config (bf16 against "
            "transformers f16): above 1 is better for prefill and decode, below 1 for load, TTFT and "
            "memory."
        ),
        "",
    ]
    return "\n".join(lines)


# (prefix, stand-in) pairs: the written results name no machine's paths.
SCRUB = [(REPO, ".")]
SITE = re.compile(r"/[^\s\"'<>:,]*/(?:site|dist)-packages/")
PYLIB = re.compile(r"/[^\s\"'<>:,]*/lib/python3\.\d+/")


def scrub(v):
    if isinstance(v, str):
        for prefix, stand_in in SCRUB:
            v = v.replace(prefix, stand_in)
        return PYLIB.sub("python3/", SITE.sub("site-packages/", v))
    if isinstance(v, list):
        return [scrub(x) for x in v]
    if isinstance(v, dict):
        return {k: scrub(x) for k, x in v.items()}
    return v


def write_outputs(data, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    data = scrub(data)
    tmp = os.path.join(out_dir, "e2e.json.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, "e2e.json"))
    with open(os.path.join(out_dir, "e2e.md"), "w") as f:
        f.write(render_md(data))


def merge_reports(paths, out_dir):
    data = {"meta": {}, "bandwidth": None, "shapes": {}, "runs": []}
    loaded = []
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        loaded.append(d)
        data["meta"] = data["meta"] or d.get("meta", {})
        data["bandwidth"] = data["bandwidth"] or d.get("bandwidth")
        for shape, info in (d.get("shapes") or {}).items():
            data["shapes"][shape] = {**info, **data["shapes"].get(shape, {})}
        data["runs"] += d.get("runs") or []
    data["meta"]["merged_from"] = [d.get("meta", {}).get("date") for d in loaded]
    write_outputs(data, out_dir)
    print(render_md(data))


# ----------------------------------------------------------------------------------------------
# orchestration


def csv_list(s):
    return [x.strip() for x in s.split(",") if x.strip()]


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kiln", help="the kiln binary (kiln runs are skipped without it)")
    ap.add_argument(
        "--tokenizer-dir",
        default=DEFAULT_TOKENIZER,
        help="folder with the Llama 3.1 tokenizer.json and tokenizer_config.json",
    )
    ap.add_argument("--work", default="/tmp", help="where the checkpoints are created")
    ap.add_argument("--out", default=os.environ.get("OUT") or "e2e-out")
    ap.add_argument("--shapes", default="1b,8b")
    ap.add_argument("--configs", default="f16,bf16,nf4,nf4dq,int8")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--impls", default="hf,kiln")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--ttft-reps", type=int, default=3)
    ap.add_argument(
        "--decode-reps",
        type=int,
        default=2,
        help="transformers: timed full-length generates after the first (median)",
    )
    ap.add_argument(
        "--rep-budget-s",
        type=float,
        default=20.0,
        help="transformers: no further timed generate once they would pass this (one always runs)",
    )
    ap.add_argument(
        "--poll-ms", type=float, default=50.0, help="nvidia-smi polling period (0: no polling)"
    )
    ap.add_argument("--timeout", type=float, default=300.0, help="per child process, seconds")
    ap.add_argument(
        "--budget-s", type=float, default=480.0, help="no new run starts after this many seconds"
    )
    ap.add_argument("--dry-run", action="store_true", help="build the prompt, print the commands")
    ap.add_argument("--report", nargs="+", metavar="E2E_JSON", help="merge results into one report")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    ap.add_argument("--_spec", help=argparse.SUPPRESS)
    ap.add_argument("--_result", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._child:
        spec = json.loads(args._spec)
        {"setup": child_setup, "hf": child_hf}[args._child](spec, args._result)
        return
    if args.report:
        merge_reports(args.report, args.out)
        return

    t_start = time.perf_counter()
    shapes, configs = csv_list(args.shapes), csv_list(args.configs)
    batches = [int(b) for b in csv_list(args.batches)]
    impls = csv_list(args.impls)
    for s in shapes:
        if s not in SHAPES:
            sys.exit(f"unknown shape {s!r} (known: {', '.join(SHAPES)})")
    for c in configs:
        if c not in CONFIGS:
            sys.exit(f"unknown config {c!r} (known: {', '.join(CONFIGS)})")
    kiln = os.path.abspath(args.kiln) if args.kiln else None
    if "kiln" in impls and not kiln:
        log("no --kiln: kiln runs are skipped")
        impls = [i for i in impls if i != "kiln"]
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    SCRUB[:0] = [(out, "$OUT"), (os.path.abspath(args.work), "$WORK")]
    if kiln:
        SCRUB.insert(0, (kiln, "kiln"))
    if len(os.path.expanduser("~")) > 1:
        SCRUB.append((os.path.expanduser("~"), "~"))
    # Child logs live beside the checkpoints and travel as one archive in OUT (few files).
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs = os.path.join(os.path.abspath(args.work), f"kiln-e2e-logs-{stamp}")
    os.makedirs(logs, exist_ok=True)

    log(f"prompt from {args.tokenizer_dir}")
    prompt = build_prompt(args.tokenizer_dir)
    prompt_file = os.path.join(logs, "prompt.json")
    with open(prompt_file, "w") as f:
        json.dump(prompt, f)
    log(f"prompt: {prompt['tokens']} tokens, {prompt['words']} words, {len(prompt['text'])} chars")
    if args.dry_run:
        log(f"PROMPT = {prompt['text'][:120]!r} ... {prompt['text'][-60:]!r}")
        log(f"ids: {prompt['ids'][:8]} ... {prompt['ids'][-8:]}")

    data = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
            "new_tokens": args.new_tokens,
            "prompt": {k: prompt[k] for k in ("tokens", "words")} | {"text": prompt["text"]},
            "env": {},
        },
        "bandwidth": None,
        "shapes": {},
        "runs": [],
    }
    smi = _smi(["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    if smi:
        parts = [x.strip() for x in smi.strip().splitlines()[0].split(",")]
        data["meta"]["gpu_smi"] = parts
        data["meta"]["driver"] = parts[1] if len(parts) > 1 else None

    py = [sys.executable, os.path.abspath(__file__)]

    def child_cmd(kind, spec, result):
        return py + ["--_child", kind, "--_spec", json.dumps(spec), "--_result", result]

    # kiln's compiled-kernel cache starts empty for this run (see the compile runs below).
    kernel_cache = os.path.join(args.work, "kiln-kernel-cache")
    shutil.rmtree(kernel_cache, ignore_errors=True)
    os.environ["KILN_KERNEL_CACHE"] = kernel_cache

    def remaining():
        return args.budget_s - (time.perf_counter() - t_start)

    def child_timeout():
        return max(30.0, min(args.timeout, remaining() + 30.0))

    def save():
        if not args.dry_run:
            write_outputs(data, out)
            archive = os.path.join(out, "e2e-logs.tar.gz")
            with tarfile.open(archive + ".tmp", "w:gz") as t:
                t.add(logs, arcname="logs")
            os.replace(archive + ".tmp", archive)

    bandwidth_done = False
    for shape in shapes:
        model_dir = os.path.join(os.path.abspath(args.work), SHAPES[shape]["dir"])
        sm = data["shapes"].setdefault(shape, {"dir": model_dir})
        exists = os.path.exists(os.path.join(model_dir, "config.json"))
        spec = {"bandwidth": not bandwidth_done}
        if not exists:
            spec["create"] = {
                "shape": shape,
                "dir": model_dir,
                "tokenizer_dir": os.path.abspath(args.tokenizer_dir),
            }
        result = os.path.join(logs, f"setup-{shape}.json")
        cmd = child_cmd("setup", spec, result)
        if args.dry_run:
            log(
                f"[{shape}] would run: {' '.join(cmd[:4])} ... ({'create ' + model_dir if not exists else 'reuse ' + model_dir})"
            )
        else:
            log(
                f"[{shape}] setup: {'creating ' + model_dir if not exists else 'reusing ' + model_dir}"
            )
            rec = run_child(cmd, os.path.join(logs, f"setup-{shape}.log"), timeout=600)
            try:
                with open(result) as f:
                    res = json.load(f)
            except (OSError, ValueError):
                res = {
                    "error": rec.get("error") or "no result",
                    "log_tail": tail(os.path.join(logs, f"setup-{shape}.log")),
                }
            sm["setup"] = {
                "wall_s": rec["wall_s"],
                **{k: v for k, v in res.items() if k != "bandwidth"},
            }
            if res.get("bandwidth"):
                data["bandwidth"] = res["bandwidth"]
                bandwidth_done = True
            for k in ("torch", "transformers", "bitsandbytes", "accelerate", "cuda", "gpu"):
                if k in res:
                    data["meta"]["env"][k] = res[k]
            if res.get("error"):
                log(f"[{shape}] setup FAILED: {str(res['error']).strip().splitlines()[-1]}")
            try:
                total, embed = safetensors_bytes(model_dir)
                tied = SHAPES[shape]["config"]["tie_word_embeddings"]
                sm["weight_bytes"] = total
                sm["decode_weight_bytes"] = total if tied else total - embed
            except (OSError, ValueError, KeyError) as e:
                sm["weight_bytes_error"] = str(e)
            save()

        for config in configs:
            for batch in batches:
                for impl in impls:
                    if impl == "hf" and config not in HF_CONFIGS:
                        continue
                    tag = f"{shape}-{impl}-{config}-b{batch}"
                    rec = {"shape": shape, "impl": impl, "config": config, "batch": batch}
                    if impl == "hf":
                        spec = {
                            "config": config,
                            "batch": batch,
                            "new_tokens": args.new_tokens,
                            "dir": model_dir,
                            "prompt_file": prompt_file,
                            "ttft_reps": args.ttft_reps,
                            "decode_reps": args.decode_reps,
                            "rep_budget_s": args.rep_budget_s,
                        }
                        result = os.path.join(logs, f"{tag}.json")
                        cmd = child_cmd("hf", spec, result)
                    else:
                        cmd = kiln_cmd(
                            kiln, model_dir, config, batch, args.new_tokens, prompt["text"]
                        )
                    if args.dry_run:
                        shown = [c if c != prompt["text"] else "PROMPT" for c in cmd]
                        log(f"[{tag}] would run: {' '.join(shown)}")
                        continue
                    if remaining() <= 0:
                        rec["skipped"] = f"budget of {args.budget_s:.0f} s spent"
                        log(f"[{tag}] skipped: budget spent")
                        data["runs"].append(rec)
                        save()
                        continue
                    log(f"[{tag}] running ({remaining():.0f} s of budget left)")
                    if impl == "hf":
                        lp = os.path.join(logs, f"{tag}.log")
                        run = run_child(cmd, lp, timeout=child_timeout(), poll_s=args.poll_ms / 1e3)
                        rec.update(wall_s=run["wall_s"], smi=run["smi"], rc=run.get("rc"))
                        try:
                            with open(result) as f:
                                res = json.load(f)
                        except (OSError, ValueError):
                            res = {"error": run.get("error") or "no result file"}
                        rec.update(res)
                        if run.get("error") and not rec.get("error"):
                            rec["error"] = run["error"]
                        if rec.get("error"):
                            rec["log_tail"] = tail(lp)
                    else:
                        # A first, short run compiles the kernels this config needs into the
                        # kernel cache (its time to first token is the cold one); the measured
                        # run then starts as any later run on this machine does.
                        wp = os.path.join(logs, f"{tag}.compile.stdout")
                        warm = run_child(
                            kiln_cmd(kiln, model_dir, config, batch, 2, prompt["text"]),
                            os.path.join(logs, f"{tag}.compile.log"),
                            timeout=child_timeout(),
                            stdout_path=wp,
                            poll_s=0,
                        )
                        try:
                            with open(wp, errors="replace") as f:
                                warm_stats, _ = parse_kiln_stdout(f.read())
                        except OSError:
                            warm_stats = None
                        op = os.path.join(logs, f"{tag}.stdout")
                        ep = os.path.join(logs, f"{tag}.log")
                        run = run_child(
                            cmd,
                            ep,
                            timeout=child_timeout(),
                            stdout_path=op,
                            poll_s=args.poll_ms / 1e3,
                        )
                        rec.update(wall_s=run["wall_s"], smi=run["smi"], rc=run.get("rc"))
                        rec["cmd"] = [c if c != prompt["text"] else "PROMPT" for c in cmd]
                        try:
                            with open(op, errors="replace") as f:
                                stdout = f.read()
                        except OSError:
                            stdout = ""
                        stats, outputs = parse_kiln_stdout(stdout)
                        rec.update(
                            kiln_result(stats, outputs, batch, args.new_tokens, prompt["tokens"])
                        )
                        rec["compile_run_wall_s"] = warm["wall_s"]
                        ws = warm_stats or {}
                        if num(ws.get("ttft_s")) is not None and num(ws.get("load_s")) is not None:
                            rec["ttft_cold_s"] = num(ws["ttft_s"]) - num(ws["load_s"])
                        else:
                            rec["warnings"].append("the compile run gave no stats")
                        if run.get("error"):
                            rec["log_tail"] = tail(ep)
                            last = [x for x in rec["log_tail"].splitlines() if x.strip()]
                            rec["error"] = run["error"] + (f": {last[-1].strip()}" if last else "")
                            rec["warnings"] = []
                        rec["stderr_tail"] = tail(ep, 1500)
                    rec["impl"] = impl
                    if rec.get("error"):
                        last = str(rec["error"]).strip().splitlines()[-1][:200]
                        log(f"[{tag}] FAILED after {rec['wall_s']:.1f} s: {last}")
                    else:
                        log(
                            f"[{tag}] load {fmt(rec.get('load_s'))} s, ttft {fmt(rec.get('ttft_s'), 3)} s, "
                            f"prefill {fmt(rec.get('prefill_tok_s'))} tok/s, decode {fmt(rec.get('decode_tok_s'))} tok/s, "
                            f"peak {fmt(peak_mib(rec))} MiB ({(rec.get('smi') or {}).get('method')}), wall {rec['wall_s']:.1f} s"
                        )
                    for w in rec.get("warnings") or []:
                        log(f"[{tag}] WARNING: {w}")
                    data["runs"].append(rec)
                    save()
    if not args.dry_run:
        log(f"done in {time.perf_counter() - t_start:.0f} s: {os.path.join(out, 'e2e.md')}")
        print(render_md(data), flush=True)


if __name__ == "__main__":
    main()
