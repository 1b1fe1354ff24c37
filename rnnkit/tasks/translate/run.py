"""The translation commands with plain arguments: train, evaluate (sacreBLEU and chrF of
greedy and beam-search outputs), translate (with an attention heat map)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

from rnnkit.data.vocab import TokenVocab
from rnnkit.tasks.translate.pairs import (
    SubwordTokenizer,
    WordTokenizer,
    grouped_split,
    read_pairs,
    tokenizer_from_dict,
)
from rnnkit.tasks.translate.lexicon import load_lexicon, save_lexicon
from rnnkit.errors import DataError, RnnkitError
from rnnkit.tasks.translate.task import (
    TranslationDataConfig,
    TranslationModelConfig,
    TranslationTask,
    build_model,
    check_unk_mode,
    translate_ids,
)
from rnnkit.train import TrainConfig, load_weights, read_state
from rnnkit.train.run import fit_and_report, open_run, build_trainer
from rnnkit.train.checkpoint import task_checkpoint
from rnnkit.train.trainer import pick_device


LEXICON = "lexicon.json.gz"  # in a run folder: source word -> target word (IBM Model 1 on the training pairs)


def run_lexicon(run_dir: str | Path, task: Optional[TranslationTask] = None) -> dict[str, str]:
    """The run's lexicon for unknown-word replacement: read from the run folder, else fitted
    on the task's training pairs and kept there (refused without a task to fit it on)."""
    path = Path(run_dir, LEXICON)
    if path.exists():
        return load_lexicon(path)
    if task is None:
        raise RnnkitError(f"{path} is missing: `rnnkit train translate` writes it, and so does "
                          f"`rnnkit evaluate {run_dir} --unk lexicon` for older runs; or use --unk copy")
    start = time.perf_counter()
    lexicon = task.lexicon()
    save_lexicon(lexicon, path)
    print(f"lexicon: IBM Model 1 on {len(task.pairs['train']):,} training pairs, {len(lexicon):,} source words, "
          f"{time.perf_counter() - start:.0f} s; kept in {path}", flush=True)
    return lexicon


def load_split(cfg: TranslationDataConfig) -> dict:
    if cfg.data is None:
        raise DataError("translation needs --data FILE (a TSV of source<TAB>target pairs, .gz too)")
    pairs = read_pairs(cfg.data, cfg.reverse)
    return grouped_split(pairs, cfg.valid, cfg.test, cfg.split_seed)


def build_tokenizers(cfg: TranslationDataConfig, train_pairs):
    if cfg.tokenizer == "word":
        return WordTokenizer(cfg.lower), WordTokenizer(cfg.lower)
    if cfg.tokenizer == "subword":
        return (SubwordTokenizer.train((s for s, _ in train_pairs), cfg.subword_vocab, cfg.lower),
                SubwordTokenizer.train((t for _, t in train_pairs), cfg.subword_vocab, cfg.lower))
    raise DataError(f"tokenizer must be 'word' or 'subword', got {cfg.tokenizer!r}")


def make_task(data_cfg, model_cfg, seed: int, meta: Optional[dict] = None) -> TranslationTask:
    """The task over the grouped split; tokenizers and vocabularies from ``meta`` (a run's
    checkpoint) when given, else built from the training part."""
    parts = load_split(data_cfg)
    if meta is not None:
        src_tok, tgt_tok = tokenizer_from_dict(meta["src_tokenizer"]), tokenizer_from_dict(meta["tgt_tokenizer"])
        src_vocab, tgt_vocab = TokenVocab.from_dict(meta["src_vocab"]), TokenVocab.from_dict(meta["tgt_vocab"])
    else:
        src_tok, tgt_tok = build_tokenizers(data_cfg, parts["train"])
        min_count = data_cfg.min_count if data_cfg.tokenizer == "word" else 1
        src_vocab = TokenVocab.build((src_tok.tokenize(s) for s, _ in parts["train"]), min_count, data_cfg.max_vocab)
        tgt_vocab = TokenVocab.build((tgt_tok.tokenize(t) for _, t in parts["train"]), min_count, data_cfg.max_vocab)
    return TranslationTask(parts, src_tok, tgt_tok, src_vocab, tgt_vocab, data_cfg, model_cfg, seed, str(data_cfg.data))


def train_translation(data_cfg: TranslationDataConfig, model_cfg: TranslationModelConfig, train_cfg: TrainConfig,
                      run_dir: str | Path, resume: bool = False) -> dict:
    """Train a translation model in ``run_dir``; print validation metrics and an example."""
    run_dir = open_run(run_dir, resume, train_cfg)
    meta = read_state(run_dir)["task"] if resume else None
    task = make_task(data_cfg, model_cfg, train_cfg.seed, meta)
    model = task.build_model()
    trainer = build_trainer(model, task, data_cfg, model_cfg, train_cfg, run_dir, resume)
    if trainer.is_main and task.pairs["train"] and data_cfg.tokenizer == "word":
        run_lexicon(run_dir, task)  # for --unk lexicon of evaluate and translate (subword models rarely write <unk>)
    n_params = sum(p.numel() for p in model.parameters())
    sizes = ", ".join(f"{k} {len(v):,}" for k, v in task.pairs.items())
    print(f"data: {task.source}; pairs {sizes} (grouped by source, seed {data_cfg.split_seed}); "
          f"{len(task.train_ids):,} training pairs of <= {data_cfg.max_length} tokens; vocabularies "
          f"{len(task.src_vocab):,} / {len(task.tgt_vocab):,} ({data_cfg.tokenizer}); model: "
          f"{model_cfg.num_layers}x{model_cfg.hidden_size} {model_cfg.cell.upper()}"
          f"{' bidirectional encoder' if model_cfg.bidirectional else ''}, attention {model_cfg.attention}, "
          f"{n_params:,} parameters; device {trainer.device}", flush=True)
    summary = fit_and_report(trainer, task, run_dir)
    if not trainer.is_main:
        return summary
    if summary["status"] != "interrupted" and task.pairs["valid"]:
        text = task.pairs["valid"][0][0]
        print(f"example: {text} -> {task.translate(model, [text])[0]}", flush=True)
    return summary


def load_translation(run: str | Path, checkpoint: str = "best", device: str = "auto"):
    """(model, meta) of a trained translation run; ``checkpoint`` as in :func:`task_checkpoint`."""
    where, meta = task_checkpoint(run, "translate", checkpoint, "translation")
    model = build_model(len(meta["src_vocab"]["itos"]), len(meta["tgt_vocab"]["itos"]),
                        TranslationModelConfig(**meta["model"]))
    dev = pick_device(device)
    load_weights(model, where, dev)
    return model.to(dev).eval(), meta


def _task_without_data(meta: dict) -> TranslationTask:
    data_cfg = TranslationDataConfig(**meta["data"])
    return TranslationTask({"train": []}, tokenizer_from_dict(meta["src_tokenizer"]),
                           tokenizer_from_dict(meta["tgt_tokenizer"]), TokenVocab.from_dict(meta["src_vocab"]),
                           TokenVocab.from_dict(meta["tgt_vocab"]), data_cfg,
                           TranslationModelConfig(**meta["model"]), meta.get("seed", 0), meta.get("source", ""))


def evaluate_translation(run: str | Path, split: str = "test", data: Optional[str] = None,
                         checkpoint: str = "best", device: str = "auto", beam: Optional[int] = None,
                         decoders: Sequence[str] = ("greedy", "beam"), limit: Optional[int] = None,
                         write: bool = True, alpha: Optional[float] = None, unk: str = "none",
                         coverage: Optional[float] = None) -> dict:
    """{decoder: {"bleu", "chrf", "pairs", "seconds"}} on a split of the run's grouped split
    (of ``data`` instead when given), beam search with width ``beam`` and length penalty
    ``alpha`` and coverage penalty ``coverage`` (defaults: the run's), unknown words replaced as ``unk`` says
    (:meth:`TranslationTask.translate`; the run's lexicon is built and kept when missing).
    Writes ``<split>_<decoder>.txt`` outputs into the run."""
    model, meta = load_translation(run, checkpoint, device)
    data_cfg = TranslationDataConfig(**meta["data"])
    if data is not None:
        data_cfg.data = data
    task = make_task(data_cfg, TranslationModelConfig(**meta["model"]), meta.get("seed", 0), meta)
    width = beam or data_cfg.beam
    alpha = data_cfg.length_penalty if alpha is None else alpha
    coverage = data_cfg.coverage if coverage is None else coverage
    lexicon = run_lexicon(run, task) if unk == "lexicon" else None
    results = {}
    for decoder in decoders:
        start = time.perf_counter()
        scores, outputs = task.scores(model, split, limit, decoder=decoder, beam=width, alpha=alpha, unk=unk,
                                      lexicon=lexicon, coverage=coverage if decoder == "beam" else 0.0)
        scores["pairs"] = len(outputs)
        scores["seconds"] = time.perf_counter() - start
        name = (decoder if decoder != "beam" else f"beam{width}") + ("" if unk == "none" else f"_unk-{unk}")
        results[name] = scores
        if write:
            Path(run, f"{split}_{name}.txt").write_text("\n".join(outputs) + "\n", encoding="utf-8")
    return results


def translate_text(run: str | Path, texts: Sequence[str], beam: int = 0, n_best: int = 1,
                   attention_png: Optional[str] = None, temperature: Optional[float] = None,
                   top_k: Optional[int] = None, top_p: Optional[float] = None, seed: Optional[int] = None,
                   checkpoint: str = "best", device: str = "auto", unk: str = "none",
                   coverage: Optional[float] = None, alpha: Optional[float] = None) -> list[list[tuple[str, float]]]:
    """Per text, its translations with their log-probabilities: the greedy one (``beam`` 0),
    the ``n_best`` of a beam search, or one sample (``temperature`` given).  ``unk``: as in
    :meth:`TranslationTask.translate`, with the lexicon kept in the run folder; ``coverage``:
    the beam's coverage penalty and ``alpha`` its length penalty (defaults: the run's).  With
    ``attention_png`` the first text's best translation's attention is drawn there."""
    import torch

    model, meta = load_translation(run, checkpoint, device)
    task = _task_without_data(meta)
    check_unk_mode(unk, task.model_cfg.attention)
    lexicon = run_lexicon(run) if unk == "lexicon" else None
    tokenized = [task.src_tok.tokenize(t) for t in texts]
    sources = [task.src_vocab.encode(t) for t in tokenized]
    for text, ids in zip(texts, sources):
        if not ids:
            raise DataError(f"nothing to translate in {text!r}")
    with_attention = attention_png is not None or unk != "none"
    if temperature is not None:
        generator = torch.Generator(device=next(model.parameters()).device)
        generator.manual_seed(seed if seed is not None else torch.seed())
        hyps = translate_ids(model, sources, "sample", temperature=temperature, top_k=top_k, top_p=top_p,
                             generator=generator, with_attention=with_attention)
    elif beam > 0:
        hyps = translate_ids(model, sources, "beam", beam=beam,
                             alpha=task.data_cfg.length_penalty if alpha is None else alpha,
                             n_best=n_best, with_attention=with_attention,
                             coverage=task.data_cfg.coverage if coverage is None else coverage)
    else:
        hyps = translate_ids(model, sources, "greedy", with_attention=with_attention)
    out = [[(task.output_text(h, source, unk, lexicon), h.log_prob) for h in hs] for hs, source in zip(hyps, tokenized)]
    if attention_png:
        best = hyps[0][0]
        if best.extras is None:
            raise RnnkitError("this model has no attention (trained with --attention none); no heat map to draw")
        src_tokens = [task.src_vocab.itos[i] for i in sources[0]]
        tgt_tokens = [task.tgt_vocab.itos[i] for i in best.tokens]  # as the model wrote them (<unk> too)
        attention_heatmap(best.extras.float().cpu().numpy(), src_tokens, tgt_tokens, attention_png,
                          title=f"{texts[0]}\n{out[0][0][0]}")
    return out


def attention_heatmap(weights, src_tokens: Sequence[str], tgt_tokens: Sequence[str], path: str | Path,
                      title: Optional[str] = None) -> Path:
    """A PNG heat map of attention weights (T target rows, S source columns)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the attention plot needs matplotlib: pip install 'rnnkit[translate]'") from None
    T, S = weights.shape
    fig, ax = plt.subplots(figsize=(2.2 + 0.55 * S, 1.2 + 0.45 * T), dpi=100)
    image = ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03, label="attention weight")
    ax.set_xticks(range(S), list(src_tokens), rotation=45, ha="right")
    ax.set_yticks(range(T), list(tgt_tokens)[:T])
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
