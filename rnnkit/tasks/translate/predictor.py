"""A trained translation model in Python: ``rnnkit.load(run).translate("Where is Tom?")``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

from rnnkit.data.vocab import TokenVocab
from rnnkit.errors import DataError, RnnkitError
from rnnkit.models.seq2seq import Seq2Seq
from rnnkit.tasks.translate.pairs import tokenizer_from_dict
from rnnkit.tasks.translate.run import make_task, run_lexicon
from rnnkit.tasks.translate.task import (
    TranslationDataConfig,
    TranslationModelConfig,
    TranslationTask,
    build_model,
    check_unk_mode,
    translate_ids,
)
from rnnkit.train import load_weights
from rnnkit.train.checkpoint import build_checked, task_checkpoint
from rnnkit.train.trainer import pick_device

MAX_SOURCE_TOKENS = 1000
"""No run translates a sentence of more tokens than this."""
SOURCE_LENGTH_FACTOR = 10
"""A run translates sentences of at most this many times the longest training sentence
(its ``max_length``), and :data:`MAX_SOURCE_TOKENS` at most: e.g. 200 tokens for the default
``max_length`` of 20.  Longer input is refused with an error naming the limit and the length
received; the decoder stops at ``2 * source + 10`` tokens at the latest
(:func:`~rnnkit.tasks.translate.task.max_output_length`), so at 2,010 tokens."""


class TranslatePredictor:
    """An encoder-decoder with its tokenizers, vocabularies and the settings it was trained with.

    ``model`` is the :class:`~rnnkit.models.seq2seq.Seq2Seq` (in eval mode); ``task`` the
    :class:`~rnnkit.tasks.translate.task.TranslationTask` of the run without its data (its
    tokenizers, vocabularies, data and model configs); ``meta`` the checkpoint's task metadata;
    ``run`` the run folder (where the lexicon of ``unk="lexicon"`` is kept).
    """

    def __init__(self, model: Seq2Seq, task: TranslationTask, meta: dict, run: str | Path) -> None:
        self.model, self.task, self.meta, self.run = model, task, meta, Path(run)
        self._lexicon: Optional[dict[str, str]] = None

    @classmethod
    def load(cls, run: str | Path, checkpoint: str = "best", device: str = "auto") -> "TranslatePredictor":
        """The model of a trained run (runs whose checkpoints name the task "translation" too);
        ``checkpoint`` as in :func:`~rnnkit.train.checkpoint.task_checkpoint`."""
        where, meta = task_checkpoint(run, "translate", checkpoint, "translation", model=TranslationModelConfig,
                                      data=TranslationDataConfig)
        model_cfg = TranslationModelConfig(**meta["model"])
        task = TranslationTask({"train": []}, tokenizer_from_dict(meta["src_tokenizer"]),
                               tokenizer_from_dict(meta["tgt_tokenizer"]), TokenVocab.from_dict(meta["src_vocab"]),
                               TokenVocab.from_dict(meta["tgt_vocab"]), TranslationDataConfig(**meta["data"]),
                               model_cfg, meta.get("seed", 0), meta.get("source", ""))
        model = build_checked(where, meta, lambda cfg: build_model(len(task.src_vocab), len(task.tgt_vocab),
                                                                   TranslationModelConfig(**cfg)))
        dev = pick_device(device)
        load_weights(model, where, dev)
        return cls(model.to(dev).eval(), task, meta, run)

    @property
    def max_source_tokens(self) -> int:
        """The longest source sentence (tokens) this run translates: :data:`SOURCE_LENGTH_FACTOR`
        times its longest training sentence, :data:`MAX_SOURCE_TOKENS` at most."""
        return min(MAX_SOURCE_TOKENS, SOURCE_LENGTH_FACTOR * int(self.task.data_cfg.max_length))

    def translate(self, text: str | Sequence[str], beam: int = 5, n_best: int = 1,
                  length_penalty: Optional[float] = None, coverage: Optional[float] = None, unk: str = "none",
                  temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                  seed: Optional[int] = None, attention_png: Optional[str | Path] = None):
        """The translation of ``text`` (a string), or of each sentence of a list (a list).

        The greedy translation (``beam`` 0), the best of a beam search of width ``beam`` with
        length penalty ``length_penalty`` and coverage penalty ``coverage`` (defaults: the
        run's), or one sample (``temperature`` given, with ``top_k``/``top_p``, ``seed``).
        With ``n_best`` > 1, each translation is instead a list of up to ``n_best``
        (text, log-probability) pairs, best first.  ``unk``: leave ``<unk>`` outputs
        (``"none"``) or replace them by the most attended source word (``"copy"``) or its
        translation in the run's lexicon (``"lexicon"``).  With ``attention_png`` the first
        sentence's best translation's attention is drawn there as a heat map.

        A sentence longer than :attr:`max_source_tokens` tokens (10 times the run's longest
        training sentence, 1,000 at most) is refused with a DataError naming the limit and its
        length; split it into sentences.
        """
        import torch

        texts = [text] if isinstance(text, str) else text
        bad = [t for t in texts if not isinstance(t, str)] if isinstance(texts, (list, tuple)) else [text]
        if bad:
            raise TypeError(f"text must be a string or a list of strings, got {type(bad[0]).__name__} {bad[0]!r}")
        if beam < 0:
            raise ValueError(f"beam must be >= 0 (0: greedy), got {beam}")
        if n_best < 1:
            raise ValueError(f"n_best must be >= 1, got {n_best}")
        task = self.task
        check_unk_mode(unk, task.model_cfg.attention)
        lexicon = self._run_lexicon() if unk == "lexicon" else None
        tokenized = [task.src_tok.tokenize(t) for t in texts]
        sources = [task.src_vocab.encode(t) for t in tokenized]
        limit = self.max_source_tokens
        for k, (sentence, ids) in enumerate(zip(texts, sources)):
            if not ids:
                raise DataError(f"nothing to translate: expected a sentence of at least one word, got {sentence!r}")
            if len(ids) > limit:
                which = f"sentence {k + 1}" if len(texts) > 1 else "the sentence"
                raise DataError(f"{which} has {len(ids)} tokens; this run translates at most {limit} tokens per "
                                f"sentence ({SOURCE_LENGTH_FACTOR} x its longest training sentences, --max-length "
                                f"{self.task.data_cfg.max_length}; never more than {MAX_SOURCE_TOKENS}): split it "
                                f"into sentences")
        with_attention = bool(attention_png) or unk != "none"
        if temperature is not None:
            generator = torch.Generator(device=next(self.model.parameters()).device)
            generator.manual_seed(seed if seed is not None else torch.seed())
            hyps = translate_ids(self.model, sources, "sample", temperature=temperature, top_k=top_k, top_p=top_p,
                                 generator=generator, with_attention=with_attention)
        elif beam > 0:
            hyps = translate_ids(self.model, sources, "beam", beam=beam,
                                 alpha=task.data_cfg.length_penalty if length_penalty is None else length_penalty,
                                 n_best=n_best, with_attention=with_attention,
                                 coverage=task.data_cfg.coverage if coverage is None else coverage)
        else:
            hyps = translate_ids(self.model, sources, "greedy", with_attention=with_attention)
        out = [[(task.output_text(h, words, unk, lexicon), h.log_prob) for h in hs]
               for hs, words in zip(hyps, tokenized)]
        if attention_png:
            best = hyps[0][0]
            if best.extras is None:
                raise RnnkitError("this model has no attention (trained with --attention none); no heat map to draw")
            src_tokens = [task.src_vocab.itos[i] for i in sources[0]]
            tgt_tokens = [task.tgt_vocab.itos[i] for i in best.tokens]  # as the model wrote them (<unk> too)
            attention_heatmap(best.extras.float().cpu().numpy(), src_tokens, tgt_tokens, attention_png,
                              title=f"{texts[0]}\n{out[0][0][0]}")
        results = out if n_best > 1 else [outputs[0][0] for outputs in out]
        return results[0] if isinstance(text, str) else results

    def evaluate(self, split: str = "test", data: Optional[str] = None, beam: Optional[int] = None,
                 limit: Optional[int] = None, length_penalty: Optional[float] = None, unk: str = "none",
                 coverage: Optional[float] = None) -> dict:
        """{decoder: {"bleu", "chrf", "pairs", "seconds"}} of greedy decoding and of beam search
        on a split of the run's grouped split (of ``data``, a TSV file of pairs, instead when
        given; its first ``limit`` pairs when given): beam width ``beam``, length penalty
        ``length_penalty`` and coverage penalty ``coverage`` (defaults: the run's), unknown
        words replaced as ``unk`` says (:meth:`translate`; for "lexicon" the run's lexicon is
        fitted on the training pairs and kept in the run when missing).  Writes the outputs
        into the run as ``<split>_<decoder>.txt``."""
        if beam is not None and beam < 0:
            raise ValueError(f"beam must be >= 0 (0 or None: the run's width, {self.task.data_cfg.beam}), got {beam}")
        data_cfg = TranslationDataConfig(**self.meta["data"])
        if data is not None:
            data_cfg.data = data
        task = make_task(data_cfg, self.task.model_cfg, self.meta.get("seed", 0), self.meta)
        if split not in task.pairs:
            raise RnnkitError(f"split {split!r} is not available; this data has {', '.join(task.pairs)}")
        width = beam or data_cfg.beam
        alpha = data_cfg.length_penalty if length_penalty is None else length_penalty
        coverage = data_cfg.coverage if coverage is None else coverage
        lexicon = self._run_lexicon(task) if unk == "lexicon" else None
        results = {}
        for decoder in ("greedy", "beam"):
            start = time.perf_counter()
            scores, outputs = task.scores(self.model, split, limit, decoder=decoder, beam=width, alpha=alpha,
                                          unk=unk, lexicon=lexicon, coverage=coverage if decoder == "beam" else 0.0)
            scores["pairs"] = len(outputs)
            scores["seconds"] = time.perf_counter() - start
            name = (decoder if decoder != "beam" else f"beam{width}") + ("" if unk == "none" else f"_unk-{unk}")
            results[name] = scores
            Path(self.run, f"{split}_{name}.txt").write_text("\n".join(outputs) + "\n", encoding="utf-8")
        return results

    def _run_lexicon(self, task: Optional[TranslationTask] = None) -> dict[str, str]:
        """The run's lexicon, read once (fitted on ``task``'s training pairs when the run has none)."""
        if self._lexicon is None:
            self._lexicon = run_lexicon(self.run, task)
        return self._lexicon


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
